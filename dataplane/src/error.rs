//! One error type for the request path, and one way to answer it.
//!
//! Every failure knows where it came from (the client, the edge itself,
//! the app's backend, or the connector relaying to it) and whether the
//! request may be sent again. [`ProxyError::status`] and
//! [`ProxyError::closes`] are the only mapping to what the client sees:
//! the status and page, and whether the connection survives.

use std::borrow::Cow;

use postern_control::counters::FailReason;

/// Where an error came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The client sent something wrong, too slowly, or went away.
    Client,
    /// The edge cannot serve the request (no connector, a header the
    /// tunnel cannot carry).
    Edge,
    /// The app's server failed, refused or was too slow.
    Backend,
    /// The connector carrying the request failed.
    Connector,
}

/// How a request was (or was not) delivered when its hop failed: what
/// decides whether it may be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Nothing of the request left the edge.
    NotSent,
    /// The next hop says it did not process the request (HTTP/2
    /// REFUSED_STREAM, or a stream above a GOAWAY's last id).
    Refused,
    /// It may have been processed (a reused connection closed without an
    /// answer).
    Unknown,
}

/// Methods that change nothing on the server, so sending them twice is
/// harmless (RFC 9110 §9.2.1).
pub fn is_safe_method(method: &[u8]) -> bool {
    matches!(method, b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE")
}

/// The retry rule, for every hop: a request goes again only when all of
/// it is still at hand (no body was streamed), and either it provably did
/// not reach the server or its method is safe.
pub fn may_retry(method: &[u8], has_body: bool, delivery: Delivery) -> bool {
    match delivery {
        Delivery::NotSent => true,
        Delivery::Refused => !has_body,
        Delivery::Unknown => !has_body && is_safe_method(method),
    }
}

#[derive(Debug)]
pub struct ProxyError {
    pub source: Source,
    /// How the failure is counted for the app.
    pub reason: FailReason,
    /// The status for the client; `None` when no answer can be sent (the
    /// client is gone, or the response had already started).
    pub status: Option<u16>,
    pub message: Cow<'static, str>,
    /// Whether the request may be sent again (see [`may_retry`]).
    pub retry: bool,
}

impl ProxyError {
    pub fn new(
        source: Source,
        reason: FailReason,
        status: u16,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        ProxyError {
            source,
            reason,
            status: Some(status),
            message: message.into(),
            retry: false,
        }
    }

    /// The client sent something the edge refuses.
    pub fn client(status: u16, message: impl Into<Cow<'static, str>>) -> Self {
        ProxyError::new(Source::Client, FailReason::ClientError, status, message)
    }

    /// The client went away or its connection failed: nothing to answer.
    pub fn client_gone() -> Self {
        ProxyError {
            status: None,
            ..ProxyError::client(0, "the client connection failed")
        }
    }

    /// The app's server failed: 504 when it was too slow, 502 otherwise.
    pub fn backend(status: u16, message: impl Into<Cow<'static, str>>) -> Self {
        let reason = if status == 504 {
            FailReason::BackendTimeout
        } else {
            FailReason::BackendError
        };
        ProxyError::new(Source::Backend, reason, status, message)
    }

    /// Marks the error as one after which the request may go again.
    pub fn retry_if(mut self, allowed: bool) -> Self {
        self.retry = allowed;
        self
    }

    /// Whether the client connection must close after the answer: a
    /// client's own error leaves its stream in an unknown state.
    pub fn closes(&self) -> bool {
        self.source == Source::Client || self.status.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_rule() {
        for m in [&b"GET"[..], b"HEAD", b"OPTIONS"] {
            assert!(may_retry(m, false, Delivery::Unknown));
            assert!(!may_retry(m, true, Delivery::Unknown));
        }
        for m in [&b"POST"[..], b"DELETE", b"PUT", b"PATCH", b"LOCK"] {
            assert!(!may_retry(m, false, Delivery::Unknown), "{m:?}");
            assert!(may_retry(m, false, Delivery::Refused), "{m:?}");
            assert!(!may_retry(m, true, Delivery::Refused), "{m:?}");
            assert!(may_retry(m, true, Delivery::NotSent), "{m:?}");
        }
    }
}
