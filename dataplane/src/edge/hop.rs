//! The hop: how a request crosses from the edge to the app's server.
//!
//! The proxy core ([`super::proxy`]) runs the same phases for every
//! request; only the hop differs. [`super::direct`] dials the internal
//! server itself; [`super::tunnel`] relays over an HTTP/2 tunnel to a
//! connector. A hop gets the request and its body as a [`ClientBody`] it
//! reads at its own pace, and hands back a [`HopResponse`] the core
//! streams to the client. Whatever the hop did with the body, the core
//! then knows whether all of it was read, and closes the client connection
//! when it was not, so leftover body bytes are never parsed as a request.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use postern_control::counters::{bump, AppCounters};

use super::client::{Client, H2Stream};
use super::conn::ConnInfo;
use super::proxy::Exchange;
use super::response::RespHead;
use crate::error::ProxyError;
use crate::http1::body::{BodyError, BodyReader, ChunkedDecoder, Decoded, Framing};
use crate::http1::RequestHead;
use crate::io::Io;

/// The client's request body, read as the hop asks for it.
pub struct ClientBody<'a> {
    src: Source<'a>,
    timeout: Duration,
    /// When the first read for the body began, and the bytes since: the
    /// body must average `min_rate` bytes/s once past the grace period.
    started: Option<std::time::Instant>,
    received: u64,
    min_rate: u64,
    /// A `100 Continue` is owed before the first read from the socket.
    expect_continue: bool,
    /// The body streams alongside the response (an HTTP/2 backend): a
    /// client may pause as long as it likes.
    streaming: bool,
    has_body: bool,
    counters: &'a AppCounters,
    info: &'a ConnInfo,
}

/// Where the body comes from.
enum Source<'a> {
    /// The HTTP/1.1 connection, framed by the request head.
    H1 {
        io: &'a mut Io,
        buf: &'a mut BytesMut,
        reader: BodyReader,
    },
    /// An HTTP/2 stream's DATA frames (read ahead into `ahead`).
    H2 {
        recv: Rc<RefCell<h2::RecvStream>>,
        ahead: VecDeque<Bytes>,
        ahead_len: usize,
        ended: bool,
    },
}

impl<'a> ClientBody<'a> {
    pub fn new(
        ctx: &Exchange<'a>,
        client: &'a mut Client<'_>,
        head: &RequestHead,
    ) -> ClientBody<'a> {
        let src = match client {
            Client::H1 { io, buf } => Source::H1 {
                io,
                buf,
                reader: BodyReader::new(head.framing),
            },
            Client::H2(s) => return ClientBody::detached(ctx, s, head),
        };
        ClientBody::with(ctx, src, head)
    }

    /// The body of an HTTP/2 request, read through the stream's shared
    /// cell: the client stays free for writing the response meanwhile.
    pub fn detached(ctx: &Exchange<'a>, s: &H2Stream, head: &RequestHead) -> ClientBody<'a> {
        let src = Source::H2 {
            ended: s.recv.borrow().is_end_stream() || !head.framing.has_body(),
            recv: s.recv.clone(),
            ahead: VecDeque::new(),
            ahead_len: 0,
        };
        ClientBody::with(ctx, src, head)
    }

    fn with(ctx: &Exchange<'a>, src: Source<'a>, head: &RequestHead) -> ClientBody<'a> {
        ClientBody {
            src,
            timeout: ctx.snapshot.settings.request_header_timeout,
            started: None,
            received: 0,
            min_rate: ctx.snapshot.settings.min_body_rate,
            expect_continue: head.expect_continue,
            streaming: false,
            has_body: head.framing.has_body(),
            counters: ctx.counters,
            info: ctx.info,
        }
    }

    pub fn has_body(&self) -> bool {
        self.has_body
    }

    /// Streams alongside the response: no idle limit, no minimum rate
    /// (a bidirectional call's client may be silent while the server
    /// talks).
    pub fn streaming(&mut self) {
        self.streaming = true;
    }

    /// Whether every byte of the body has been read (always, without one).
    pub fn is_done(&self) -> bool {
        !self.has_body
            || match &self.src {
                Source::H1 { reader, .. } => reader.is_done(),
                Source::H2 { ended, ahead, .. } => *ended && ahead.is_empty(),
            }
    }

    /// How long the next read may take: the idle limit, or less when the
    /// body would otherwise fall under its minimum average rate (the
    /// grace period, then `received / min_rate` seconds in all).
    fn read_timeout(&mut self, received: u64) -> Duration {
        if self.streaming {
            return STREAMING_IDLE;
        }
        if self.min_rate == 0 {
            return self.timeout;
        }
        let now = std::time::Instant::now();
        let started = *self.started.get_or_insert(now);
        let allowed = Duration::from_secs_f64(received as f64 / self.min_rate as f64)
            .max(postern_control::config::BODY_RATE_GRACE);
        let left = (started + allowed).saturating_duration_since(now);
        self.timeout.min(left.max(Duration::from_millis(1)))
    }

    /// Whether body bytes are already read and waiting.
    pub fn buffered(&self) -> bool {
        match &self.src {
            Source::H1 { buf, .. } => !buf.is_empty(),
            Source::H2 { ahead, .. } => !ahead.is_empty(),
        }
    }

    /// Sends the `100 Continue` the client waits for, if one is owed and
    /// no body byte has arrived yet.
    async fn send_continue(&mut self) -> Result<(), ProxyError> {
        if let Source::H1 { io, buf, .. } = &mut self.src {
            if std::mem::take(&mut self.expect_continue) && buf.is_empty() {
                let (res, _) = io.write_all(&b"HTTP/1.1 100 Continue\r\n\r\n"[..]).await;
                res.map_err(|_| ProxyError::client_gone())?;
            }
        }
        Ok(())
    }

    /// Reads the body ahead into the connection's buffer until all of it,
    /// or its first `limit` bytes, are in, before the hop opens anything
    /// towards the app: a client trickling a body then holds only its own
    /// connection, never a tunnel stream or a backend connection, and a
    /// body of up to `limit` bytes reaches the app in one go.
    pub async fn read_ahead(&mut self, limit: usize) -> Result<(), ProxyError> {
        if self.is_done() {
            return Ok(());
        }
        self.send_continue().await?;
        if let Source::H1 { reader, .. } = &self.src {
            let mut probe = ReadAhead::new(reader.framing());
            loop {
                let Source::H1 { buf, .. } = &self.src else {
                    return Ok(());
                };
                if probe.enough(buf, limit) {
                    return Ok(());
                }
                let len = buf.len() as u64;
                let timeout = self.read_timeout(len);
                let Source::H1 { io, buf, .. } = &mut self.src else {
                    return Ok(());
                };
                match crate::http1::body::read_with_timeout(io, buf, timeout).await {
                    Ok(0) => return Ok(()), // the body reader reports the truncation
                    Ok(_) => {}
                    Err(BodyError::Timeout) => return Err(body_timeout()),
                    Err(_) => return Err(ProxyError::client_gone()),
                }
            }
        }
        loop {
            let Source::H2 {
                ahead_len, ended, ..
            } = &self.src
            else {
                return Ok(());
            };
            if *ended || *ahead_len >= limit {
                return Ok(());
            }
            let len = *ahead_len as u64;
            let timeout = self.read_timeout(len);
            let Source::H2 {
                recv,
                ahead,
                ahead_len,
                ended,
            } = &mut self.src
            else {
                return Ok(());
            };
            match h2_read(recv, timeout).await? {
                Some(data) => {
                    *ahead_len += data.len();
                    ahead.push_back(data);
                }
                None => *ended = true,
            }
        }
    }

    /// The next piece of the body, `None` at its end.
    pub async fn next(&mut self) -> Result<Option<Bytes>, ProxyError> {
        if self.is_done() {
            return Ok(None);
        }
        self.send_continue().await?;
        let timeout = self.read_timeout(self.received);
        let data = match &mut self.src {
            Source::H1 { io, buf, reader } => match reader.next(io, buf, timeout).await {
                Ok(Some(data)) => data,
                Ok(None) => return Ok(None),
                Err(BodyError::Malformed(m)) => return Err(ProxyError::client(400, m)),
                Err(BodyError::Timeout) => return Err(body_timeout()),
                Err(_) => return Err(ProxyError::client_gone()),
            },
            Source::H2 {
                recv, ahead, ended, ..
            } => match ahead.pop_front() {
                Some(data) => data,
                None => match h2_read(recv, timeout).await? {
                    Some(data) => data,
                    None => {
                        *ended = true;
                        return Ok(None);
                    }
                },
            },
        };
        let n = data.len() as u64;
        self.received += n;
        bump(&self.counters.bytes_in, n);
        self.info.note(|o| o.bytes_in += n);
        Ok(Some(data))
    }
}

/// The next non-empty DATA of an HTTP/2 request, its window given back
/// at once (the hop holds at most one piece); `None` at the end.
async fn h2_read(
    recv: &RefCell<h2::RecvStream>,
    timeout: Duration,
) -> Result<Option<Bytes>, ProxyError> {
    loop {
        let data = std::future::poll_fn(|cx| recv.borrow_mut().poll_data(cx));
        match crate::timer::timeout(timeout, data).await {
            Err(_) => return Err(body_timeout()),
            Ok(None) => return Ok(None),
            Ok(Some(Ok(data))) => {
                let _ = recv
                    .borrow_mut()
                    .flow_control()
                    .release_capacity(data.len());
                if !data.is_empty() {
                    return Ok(Some(data));
                }
            }
            Ok(Some(Err(_))) => return Err(ProxyError::client_gone()),
        }
    }
}

/// How long a streaming body may pause (it ends with its call long before).
const STREAMING_IDLE: Duration = Duration::from_secs(365 * 24 * 3600);

/// The rest of a request body on its way to an HTTP/2 stream (a backend's
/// or a tunnel's) while the response comes back. Each step either takes
/// the next piece from the client or sends what the stream's window
/// allows; a piece taken stays here until sent, so a step can be dropped
/// at any await without losing bytes.
pub struct Pump {
    pub tx: h2::SendStream<Bytes>,
    pending: Option<Bytes>,
    pub done: bool,
}

impl Pump {
    /// `done` when the request had no body (its stream already ended).
    pub fn new(tx: h2::SendStream<Bytes>, done: bool) -> Pump {
        Pump {
            tx,
            pending: None,
            done,
        }
    }

    /// One step: `Ok(false)` once the body has ended and the stream with
    /// it. A client that fails mid-body resets the stream.
    pub async fn step(&mut self, body: &mut ClientBody<'_>) -> Result<bool, ProxyError> {
        if self.done {
            return Ok(false);
        }
        let Some(data) = &mut self.pending else {
            match body.next().await {
                Ok(Some(d)) => self.pending = Some(d),
                Ok(None) => {
                    self.done = true;
                    let _ = self.tx.send_data(Bytes::new(), true);
                    return Ok(false);
                }
                Err(e) => {
                    self.done = true;
                    self.tx.send_reset(h2::Reason::CANCEL);
                    return Err(e);
                }
            }
            return Ok(true);
        };
        self.tx.reserve_capacity(data.len());
        let granted = match std::future::poll_fn(|cx| self.tx.poll_capacity(cx)).await {
            Some(Ok(n)) => n,
            // The stream is gone: its answer (or failure) says why.
            _ => {
                self.done = true;
                return Ok(false);
            }
        };
        if granted > 0 {
            let piece = data.split_to(granted.min(data.len()));
            if data.is_empty() {
                self.pending = None;
            }
            if self.tx.send_data(piece, false).is_err() {
                self.done = true;
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Waits for `head` while the body keeps flowing.
    pub async fn alongside<F: std::future::Future>(
        &mut self,
        body: &mut ClientBody<'_>,
        head: F,
    ) -> Result<F::Output, ProxyError> {
        let mut head = std::pin::pin!(head);
        loop {
            if self.done {
                return Ok(head.await);
            }
            monoio::select! {
                h = &mut head => return Ok(h),
                r = self.step(body) => { r?; }
            }
        }
    }
}

fn body_timeout() -> ProxyError {
    ProxyError::client(
        408,
        "the request body did not arrive in time, or too slowly",
    )
}

/// Whether a body read ahead is in far enough: all of a Content-Length
/// body, or up to the limit; for a chunked body, its end (found by a
/// decoder run over the bytes as they arrive, each byte copied once) or
/// the limit.
struct ReadAhead {
    framing: Framing,
    chunked: Option<(ChunkedDecoder, BytesMut)>,
    scanned: usize,
}

impl ReadAhead {
    fn new(framing: Framing) -> ReadAhead {
        ReadAhead {
            framing,
            chunked: (framing == Framing::Chunked).then(Default::default),
            scanned: 0,
        }
    }

    fn enough(&mut self, buf: &BytesMut, limit: usize) -> bool {
        if buf.len() >= limit {
            return true;
        }
        match self.framing {
            Framing::Length(n) => buf.len() as u64 >= n,
            Framing::Chunked => {
                let Some((decoder, pending)) = &mut self.chunked else {
                    return true;
                };
                pending.extend_from_slice(&buf[self.scanned..]);
                self.scanned = buf.len();
                loop {
                    match decoder.decode(pending) {
                        Ok(Decoded::Data(_)) => {}
                        Ok(Decoded::NeedMore) => return false,
                        // At its end, or malformed (the body reader says so).
                        Ok(Decoded::End) | Err(_) => return true,
                    }
                }
            }
            _ => true,
        }
    }
}

/// A hop: sends a request on and returns the response head.
pub trait Hop {
    type Response: HopResponse;

    /// Sends the request, streaming its body from `body`, and waits for
    /// the response head. Retries that the retry rule allows happen
    /// inside. `out` is the connection's write buffer, free to use.
    async fn send(
        &mut self,
        ctx: &Exchange<'_>,
        head: &RequestHead,
        body: &mut ClientBody<'_>,
        out: &mut Vec<u8>,
    ) -> Result<Self::Response, ProxyError>;
}

/// A response coming back over a hop.
pub trait HopResponse {
    fn head(&self) -> &RespHead;

    /// Whether the server accepted the request's upgrade (HTTP/1.1 `101`,
    /// or `200` to an extended CONNECT).
    fn upgraded(&self) -> bool;

    /// The next piece of the body, `None` at its clean end; an error means
    /// the body ended early and the client must see it incomplete.
    /// `large` asks for reads of up to 64 KiB.
    async fn next(&mut self, large: bool) -> Result<Option<Bytes>, ProxyError>;

    /// Whether more body bytes are at hand without waiting.
    fn more_ready(&self) -> bool;

    /// The client has taken `n` bytes of the body (flow control).
    fn consumed(&mut self, n: usize);

    /// The body was relayed to its end: the connection may be reused (by
    /// any request, or only by this client's when it carries its
    /// connection-bound authentication).
    fn finish(self, ctx: &Exchange<'_>);

    /// The request body's stream, when the rest of the body goes on
    /// while the response comes back (HTTP/2 backends).
    fn request_pump(&mut self) -> Option<Pump> {
        None
    }

    /// The response's trailers, once its body has ended.
    async fn trailers(&mut self) -> Option<http::HeaderMap> {
        None
    }

    /// Whatever the server sent after its upgrade answer, for the client.
    /// Then relays bytes both ways until either side ends: over HTTP/1.1
    /// after the upgrade's head in `out` (not yet sent) and `early` (bytes
    /// the client sent after its request); over HTTP/2 once the head has
    /// been sent on the stream.
    /// `idle`: how long both directions may be silent before it ends.
    async fn relay_upgraded(
        self,
        client: &mut Client<'_>,
        out: &mut Vec<u8>,
        early: Bytes,
        idle: Duration,
    );
}
