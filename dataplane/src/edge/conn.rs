//! One client connection: read a request head, run it through the proxy
//! core, repeat.
//!
//! Requests on a connection are handled strictly in order, which is what
//! makes pipelining safe: the next head is parsed only after the previous
//! response has been written, from whatever bytes followed the previous
//! body in the read buffer. When a message cannot be framed with certainty,
//! or a request body was not read to its end, the connection is closed
//! after the response, so nothing after it is ever read as a request. The
//! app table is taken per request, once its head has arrived, so a change
//! applies to kept-alive connections from their next request.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use postern_control::counters::bump;
use postern_control::Scheme;

use super::client::Client;
use super::proxy;
use crate::http1::body::{self, BodyError};
use crate::http1::parse_request_or_refuse;
use crate::io::{write_out, Io};
use crate::pages;
use crate::upstream::UpstreamConn;
use crate::worker::Worker;

/// What the client connection learned about itself at accept time.
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// The client address as sent in `X-Forwarded-For` (IPv4-mapped
    /// addresses in their IPv4 form), formatted once per connection.
    pub client_ip: Rc<str>,
    pub scheme: Scheme,
    /// SNI name sent in the TLS handshake, lower-case.
    pub sni: Option<Rc<str>>,
    /// What happened to the request in progress, for the access log.
    /// Requests on a connection are sequential, so one cell suffices.
    pub outcome: Cell<Outcome>,
    /// Unique on this edge while the connection lives (it names the
    /// connection to a connector, for connection-bound authentication).
    pub id: u64,
    /// The backend connection this client's NTLM/Negotiate session lives
    /// on, or the tunnel that holds it.
    pub bound: RefCell<Option<Bound>>,
}

/// Where a client connection's connection-bound authentication lives.
pub enum Bound {
    Direct(Box<UpstreamConn>),
    Tunnel(u64),
}

/// The access-log facts of one request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome {
    pub status: u16,
    pub app: Option<usize>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub backend_us: Option<u64>,
}

impl ConnInfo {
    pub fn note(&self, f: impl FnOnce(&mut Outcome)) {
        let mut o = self.outcome.get();
        f(&mut o);
        self.outcome.set(o);
    }
}

/// How a request ended, for the connection loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    KeepAlive,
    Close,
    /// Close, but the client may still be sending a body the edge did not
    /// read: stop sending, then read and discard for a while, so the
    /// client gets to read the answer before the connection goes (closing
    /// with unread bytes would reset it and lose the answer).
    Linger,
}

impl Next {
    pub fn from_keep_alive(keep: bool) -> Next {
        if keep {
            Next::KeepAlive
        } else {
            Next::Close
        }
    }
}

/// Serves a connection; a panic while serving it ends this connection
/// only, and is counted and logged. `buf` holds bytes already read.
pub async fn serve(worker: Rc<Worker>, io: Io, info: ConnInfo, buf: BytesMut) {
    let peer = info.peer;
    let counters = worker.counters.clone();
    if CatchUnwind(Box::pin(serve_requests(worker, io, info, buf)))
        .await
        .is_err()
    {
        bump(&counters.edge.panics, 1);
        tracing::error!(client = %peer, "a connection's handler panicked; that connection was closed");
    }
}

async fn serve_requests(worker: Rc<Worker>, mut io: Io, info: ConnInfo, mut buf: BytesMut) {
    // Both grow on demand and are let go while the connection waits idle.
    let mut out: Vec<u8> = Vec::new();
    let mut first = true;
    loop {
        let (header_timeout, keepalive_timeout) = {
            let s = &worker.snapshot().settings;
            (s.request_header_timeout, s.keepalive_timeout)
        };
        // Once part of a head is in, the whole head gets
        // `request_header_timeout`, however it trickles in.
        let mut head_deadline: Option<std::time::Instant> = None;
        let head = loop {
            match parse_request_or_refuse(&mut buf) {
                Ok(Some(h)) => break Some(h),
                Ok(None) => {}
                Err(r) => {
                    bump(&worker.counters.edge.bad_requests, 1);
                    let line = match &r.line {
                        Some((m, t)) => (&m[..], &t[..]),
                        None => request_line_words(&buf),
                    };
                    let (status, reason) = (r.error.status, r.error.reason);
                    Box::pin(reject_head(
                        &worker, &mut io, &mut out, &info, line, status, reason,
                    ))
                    .await;
                    break None;
                }
            }
            let timeout = if buf.is_empty() && !first {
                keepalive_timeout
            } else if buf.is_empty() {
                header_timeout
            } else {
                let now = std::time::Instant::now();
                let deadline = *head_deadline.get_or_insert(now + header_timeout);
                deadline.saturating_duration_since(now)
            };
            // Waiting for a request, the connection lets its buffers go
            // and waits with a small read (idle keep-alive connections
            // are most of an edge's connections); the buffers grow again
            // as bytes arrive, and stay small while they trickle in.
            if buf.is_empty() && !io.has_buffered() {
                buf = BytesMut::new();
                out = Vec::new();
                io.release_idle();
            }
            // A timed-out read takes the buffer down with it; remember
            // whether a request had started.
            let partial = !buf.is_empty();
            let read = if partial || first {
                body::read_with_timeout(&mut io, &mut buf, timeout).await
            } else {
                // Waiting idle between requests: a drain closes the
                // connection (nothing is lost; the read is cancelled).
                let read = body::read_with_timeout(&mut io, &mut buf, timeout);
                monoio::select! {
                    r = read => r,
                    _ = worker.drain_wait() => break None,
                }
            };
            match read {
                Ok(0) | Err(BodyError::Io(_)) => break None,
                Ok(_) => {}
                Err(BodyError::Timeout) if partial => {
                    let msg = "the request head did not arrive in time";
                    let line = request_line_words(&buf);
                    Box::pin(reject_head(
                        &worker, &mut io, &mut out, &info, line, 408, msg,
                    ))
                    .await;
                    break None;
                }
                Err(_) => break None,
            }
        };
        let Some(head) = head else { break };
        first = false;
        // The table as of this request's arrival.
        let snapshot = worker.snapshot();
        // The request's state (several KiB) lives on the heap while the
        // request does, so a connection waiting idle keeps only this loop.
        let mut client = Client::H1 {
            io: &mut io,
            buf: &mut buf,
        };
        let next = Box::pin(proxy::handle(
            &worker,
            &snapshot,
            &mut client,
            &mut out,
            &info,
            head,
        ))
        .await;
        match next {
            // A draining edge closes after the answer.
            Next::KeepAlive if worker.is_draining() => break,
            Next::KeepAlive => continue,
            Next::Close => break,
            Next::Linger => {
                Box::pin(async {
                    io.shutdown().await;
                    linger(&mut io, &mut buf).await;
                })
                .await;
                return;
            }
        }
    }
    // The rare and final paths (refusals, shutdown, lingering) are boxed:
    // kept inline, their state would size the connection's future, which
    // an idle connection holds.
    Box::pin(io.shutdown()).await;
}

/// Answers a request refused before its head was complete (400, 408,
/// 414, 431 and the like) and logs it: the access log shows these too,
/// with as much of the request line as arrived.
async fn reject_head(
    worker: &Worker,
    io: &mut Io,
    out: &mut Vec<u8>,
    info: &ConnInfo,
    (method, target): (&[u8], &[u8]),
    status: u16,
    reason: &str,
) {
    let id = worker.next_request_id();
    out.clear();
    pages::error_page(out, status, reason, &id, true, &[]);
    let bytes_out = out.len() as u64;
    let _ = write_out(io, out).await;
    if crate::accesslog::enabled() {
        crate::accesslog::log(&crate::accesslog::Entry {
            request_id: &id,
            app: None,
            client: &info.client_ip,
            method: &method[..method.len().min(MAX_LOGGED_METHOD)],
            path: &target[..target.len().min(MAX_LOGGED_TARGET)],
            status,
            bytes_in: 0,
            bytes_out,
            total_us: 0,
            backend_us: None,
        });
    }
}

/// The method and target of a (possibly partial or malformed) request
/// line, for the log; `-` when absent.
fn request_line_words(buf: &[u8]) -> (&[u8], &[u8]) {
    let line_end = memchr::memchr2(b'\r', b'\n', buf).unwrap_or(buf.len());
    let mut words = buf[..line_end]
        .split(|&b| b == b' ')
        .filter(|w| !w.is_empty());
    let method = words.next().unwrap_or(b"-");
    let target = words.next().unwrap_or(b"-");
    (method, target)
}

/// How much of a refused request line the access log keeps.
const MAX_LOGGED_METHOD: usize = 32;
const MAX_LOGGED_TARGET: usize = 1024;

/// How long, and how much, a lingering close reads and discards.
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(5);
const LINGER_BYTES: usize = 16 * 1024 * 1024;

async fn linger(io: &mut Io, buf: &mut BytesMut) {
    let deadline = std::time::Instant::now() + LINGER_TIME;
    let mut total = 0;
    while total < LINGER_BYTES {
        buf.clear();
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match monoio::time::timeout(left, io.read_buf(buf)).await {
            Ok(Ok(n)) if n > 0 => total += n,
            _ => return,
        }
    }
}

/// Resolves to `Err` if polling the inner future panicked. A panic leaves
/// only that connection's state half-updated, and it is dropped at once.
pub struct CatchUnwind<F>(pub Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, ()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = self.0.as_mut();
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(v)) => Poll::Ready(Ok(v)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => Poll::Ready(Err(())),
        }
    }
}

#[cfg(test)]
mod tests;
