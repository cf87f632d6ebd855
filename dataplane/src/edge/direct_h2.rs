//! The direct hop to an HTTP/2 backend (`internal_protocol = "h2"` or
//! `"h2c"`): one stream per request on the worker's connection to the
//! backend. The request body streams alongside the response (gRPC's
//! bidirectional calls), trailers come back to HTTP/2 clients, a client's
//! reset or a passed deadline resets the backend's stream, and a gRPC
//! deadline (`grpc-timeout`) shortens the wait to it.

use std::time::{Duration, Instant};

use bytes::Bytes;
use postern_control::counters::FailReason;

use super::hop::{ClientBody, Hop, HopResponse, Pump};
use super::proxy::Exchange;
use super::response::{RespHead, RespHeaders};
use crate::error::{ProxyError, Source};
use crate::http1::body::Framing;
use crate::http1::RequestHead;
use crate::upstream::Target;

pub struct DirectH2Hop;

pub struct H2Response {
    head: RespHead,
    recv: h2::RecvStream,
    pump: Option<Pump>,
    /// When the response must be over (a gRPC deadline), if any.
    deadline: Option<Instant>,
    timeout: Duration,
    received: u64,
}

fn backend_error(
    reason: FailReason,
    status: u16,
    msg: impl Into<std::borrow::Cow<'static, str>>,
) -> ProxyError {
    ProxyError::new(Source::Backend, reason, status, msg)
}

/// A gRPC deadline (`grpc-timeout: 5S`, RFC-style units H M S m u n).
pub fn grpc_timeout(head: &RequestHead) -> Option<Duration> {
    let v = head.headers.iter().find(|h| h.is("grpc-timeout"))?;
    let v = std::str::from_utf8(&v.value).ok()?;
    let (n, unit) = v.split_at(v.len().checked_sub(1)?);
    let n: u64 = n.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

impl Hop for DirectH2Hop {
    type Response = H2Response;

    async fn send(
        &mut self,
        ctx: &Exchange<'_>,
        head: &RequestHead,
        body: &mut ClientBody<'_>,
        _out: &mut Vec<u8>,
    ) -> Result<H2Response, ProxyError> {
        let app = ctx.app;
        if head.upgrade.is_some() {
            return Err(ProxyError::client(
                501,
                "WebSocket is relayed to HTTP/1.1 backends only; this application's backend speaks HTTP/2",
            ));
        }
        let timeout = app.app.backend_timeout.duration();
        let deadline = grpc_timeout(head).map(|d| Instant::now() + d);
        let wait = deadline.map_or(timeout, |d| {
            timeout.min(d.saturating_duration_since(Instant::now()))
        });
        let target = Target {
            host: ctx.internal_host.clone(),
            port: app.app.internal_url.port,
            tls: app.backend_tls.clone(),
            proxy: None,
        };
        let req = super::request::h2_request(ctx, head, false, false)
            .map_err(|e| ProxyError::client(400, format!("the request cannot be relayed: {e}")))?;
        let mut send = ctx
            .worker
            .upstream
            .h2(&target)
            .await
            .map_err(|e| backend_error(FailReason::BackendUnreachable, 502, e.to_string()))?;
        let has_body = body.has_body();
        let (response, tx) = send.send_request(req, !has_body).map_err(|e| {
            backend_error(
                FailReason::BackendError,
                502,
                format!("the backend refused the stream: {e}"),
            )
        })?;
        let mut pump = Pump::new(tx, !has_body);
        let head_wait = crate::timer::timeout(wait, response);
        let response = match pump.alongside(body, head_wait).await? {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                return Err(backend_error(
                    FailReason::BackendError,
                    502,
                    format!("the backend failed the request: {e}"),
                ))
            }
            Err(_) => {
                // The backend's stream goes with the pump (reset on drop).
                pump.tx.send_reset(h2::Reason::CANCEL);
                return Err(backend_error(
                    FailReason::BackendTimeout,
                    504,
                    "the application's server did not answer in time",
                ));
            }
        };
        let (parts, recv) = response.into_parts();
        let status = parts.status.as_u16();
        let length = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| crate::http1::parse_content_length(v.as_bytes()));
        let framing = if head.is_head() || status == 204 || status == 304 || recv.is_end_stream() {
            Framing::Empty
        } else if let Some(n) = length {
            Framing::Length(n)
        } else {
            Framing::Chunked
        };
        let reason = parts.status.canonical_reason().unwrap_or("Unknown");
        Ok(H2Response {
            head: RespHead {
                status,
                reason: Bytes::from_static(reason.as_bytes()),
                headers: RespHeaders::H2(parts.headers),
                framing,
                connection_tokens: Default::default(),
                server: None,
            },
            recv,
            pump: (!pump.done).then_some(pump),
            deadline,
            timeout,
            received: 0,
        })
    }
}

impl HopResponse for H2Response {
    fn head(&self) -> &RespHead {
        &self.head
    }

    fn upgraded(&self) -> bool {
        false
    }

    async fn next(&mut self, _large: bool) -> Result<Option<Bytes>, ProxyError> {
        if self.head.framing == Framing::Empty && self.recv.is_end_stream() {
            return Ok(None);
        }
        // A streaming response may pause as long as its call lasts: the
        // backend timeout bounds each wait unless a deadline says more.
        let wait = match self.deadline {
            Some(d) => d.saturating_duration_since(Instant::now()),
            None => self.timeout,
        };
        match crate::timer::timeout(wait, self.recv.data()).await {
            Ok(Some(Ok(data))) => {
                self.received += data.len() as u64;
                Ok(Some(data))
            }
            Ok(None) => match self.head.framing {
                Framing::Length(want) if want != self.received => Err(backend_error(
                    FailReason::BackendError,
                    502,
                    "the response ended before its declared length",
                )),
                _ => Ok(None),
            },
            Ok(Some(Err(e))) => Err(backend_error(
                FailReason::BackendError,
                502,
                format!("the backend's stream failed mid-response: {e}"),
            )),
            Err(_) => Err(backend_error(
                FailReason::BackendTimeout,
                504,
                "the response stalled past its deadline or the backend timeout",
            )),
        }
    }

    fn more_ready(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn consumed(&mut self, n: usize) {
        crate::tunnel::release(&mut self.recv, n);
    }

    fn finish(self, _ctx: &Exchange<'_>) {}

    fn request_pump(&mut self) -> Option<Pump> {
        self.pump.take()
    }

    async fn trailers(&mut self) -> Option<http::HeaderMap> {
        self.recv.trailers().await.ok().flatten()
    }

    async fn relay_upgraded(
        self,
        _client: &mut super::client::Client<'_>,
        _out: &mut Vec<u8>,
        _early: Bytes,
        _idle: std::time::Duration,
    ) {
    }
}
