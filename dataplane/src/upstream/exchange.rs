//! One HTTP/1.1 exchange with an internal server, shared by the edge's
//! direct hop and the connector: the request head and body out, the
//! response head and body back, and the one retry rule applied to what
//! can go wrong on a reused connection.

use std::time::Duration;

use bytes::Bytes;

use super::UpstreamConn;
use crate::error::{may_retry, Delivery, ProxyError};
use crate::http1::body::{BodyError, BodyReader, Encoder};
use crate::http1::ResponseHead;
use crate::io::write_out;

/// Where a request body comes from (a client connection, or a tunnel
/// stream), read as the backend takes it.
pub trait BodySource {
    fn has_body(&self) -> bool;
    /// Whether body bytes are at hand without waiting.
    fn buffered(&self) -> bool;
    /// The next piece, `None` at the end.
    async fn next(&mut self) -> Result<Option<Bytes>, ProxyError>;
    /// `n` bytes of the body reached the backend (flow control).
    fn consumed(&mut self, _n: usize) {}
}

/// Sends a request (its serialised head in `out`, then the body from
/// `body`, chunked when `chunked`) and reads the response head. An error
/// on a connection that came from the pool, before any answer byte, may
/// be the server having closed it while idle: it is marked retryable when
/// the retry rule allows.
#[allow(clippy::too_many_arguments)]
pub async fn exchange<B: BodySource>(
    up: &mut UpstreamConn,
    out: &mut Vec<u8>,
    chunked: bool,
    body: &mut B,
    method: &[u8],
    upgrade: bool,
    timeout: Duration,
) -> Result<ResponseHead, ProxyError> {
    let has_body = body.has_body();
    let reused = up.reused;
    let lost = |m: &'static str| {
        ProxyError::backend(502, m)
            .retry_if(reused && may_retry(method, has_body, Delivery::Unknown))
    };
    const FAILED: &str = "the connection to the application's server failed";
    // A backend that stops reading the request is as stuck as one that
    // never answers.
    up.io.write_timeout = timeout;
    if has_body && !body.buffered() {
        // Head first: the body may take a while to arrive.
        write_out(&mut up.io, out).await.map_err(|_| lost(FAILED))?;
    }
    let encoder = if chunked {
        Encoder::Chunked
    } else {
        Encoder::Identity
    };
    // The body, the head riding with its first piece.
    while let Some(data) = body.next().await? {
        let n = data.len();
        let res = if encoder == Encoder::Identity && out.is_empty() {
            up.io.write_all(data).await.0
        } else {
            encoder.encode(&data, out);
            write_out(&mut up.io, out).await
        };
        // Part of a body reached the server: never sent again.
        res.map_err(|_| ProxyError::backend(502, FAILED))?;
        body.consumed(n);
    }
    encoder.finish(out);
    if !out.is_empty() {
        write_out(&mut up.io, out).await.map_err(|_| lost(FAILED))?;
    }
    match up.read_head(method == b"HEAD", upgrade, timeout).await {
        Ok(r) => Ok(r),
        Err((502, m)) if up.buf.is_empty() => Err(lost(m)),
        Err((status, m)) => Err(ProxyError::backend(status, m)),
    }
}

/// A response body coming from an internal server.
pub struct BodyIn {
    pub conn: UpstreamConn,
    reader: BodyReader,
    timeout: Duration,
    /// The server keeps the connection after this response.
    keep_alive: bool,
}

/// How much a read may bring at once when asked for large reads.
pub const LARGE_READ: usize = 64 * 1024;

impl BodyIn {
    pub fn new(conn: UpstreamConn, head: &ResponseHead, timeout: Duration) -> BodyIn {
        BodyIn {
            conn,
            reader: BodyReader::new(head.framing),
            timeout,
            keep_alive: head.keep_alive,
        }
    }

    /// The next piece, `None` at the clean end; an error means the body
    /// ended early. `large` reads up to 64 KiB at a time.
    pub async fn next(&mut self, large: bool) -> Result<Option<Bytes>, ProxyError> {
        let buf = &mut self.conn.buf;
        if large && buf.capacity() - buf.len() < LARGE_READ {
            buf.reserve(LARGE_READ);
        }
        self.reader
            .next(&mut self.conn.io, buf, self.timeout)
            .await
            .map_err(|e| match e {
                BodyError::Timeout => ProxyError::backend(
                    504,
                    "the application's server stalled in the middle of its response",
                ),
                BodyError::Malformed(m) => ProxyError::backend(502, m),
                _ => ProxyError::backend(
                    502,
                    "the application's server closed the connection mid-response",
                ),
            })
    }

    pub fn is_done(&self) -> bool {
        self.reader.is_done()
    }

    /// Whether a read would return without waiting.
    pub fn more_ready(&self) -> bool {
        self.reader.is_done() || !self.conn.buf.is_empty()
    }

    /// The connection, if the exchange ended cleanly and it may carry
    /// another.
    pub fn reusable(self) -> Option<UpstreamConn> {
        (self.keep_alive && self.reader.is_done()).then_some(self.conn)
    }
}
