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

use std::collections::VecDeque;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use postern_control::counters::{bump, AppCounters};

use super::client::Client;
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
        recv: &'a mut h2::RecvStream,
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
            Client::H2(s) => Source::H2 {
                ended: s.recv.is_end_stream() || !head.framing.has_body(),
                recv: &mut s.recv,
                ahead: VecDeque::new(),
                ahead_len: 0,
            },
        };
        ClientBody {
            src,
            timeout: ctx.snapshot.settings.request_header_timeout,
            started: None,
            received: 0,
            min_rate: ctx.snapshot.settings.min_body_rate,
            expect_continue: head.expect_continue,
            has_body: head.framing.has_body(),
            counters: ctx.counters,
            info: ctx.info,
        }
    }

    pub fn has_body(&self) -> bool {
        self.has_body
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
    recv: &mut h2::RecvStream,
    timeout: Duration,
) -> Result<Option<Bytes>, ProxyError> {
    loop {
        match crate::timer::timeout(timeout, recv.data()).await {
            Err(_) => return Err(body_timeout()),
            Ok(None) => return Ok(None),
            Ok(Some(Ok(data))) => {
                let _ = recv.flow_control().release_capacity(data.len());
                if !data.is_empty() {
                    return Ok(Some(data));
                }
            }
            Ok(Some(Err(_))) => return Err(ProxyError::client_gone()),
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

    /// Whatever the server sent after its upgrade answer, for the client.
    /// Then relays bytes both ways until either side ends: over HTTP/1.1
    /// after the upgrade's head in `out` (not yet sent) and `early` (bytes
    /// the client sent after its request); over HTTP/2 once the head has
    /// been sent on the stream.
    async fn relay_upgraded(self, client: &mut Client<'_>, out: &mut Vec<u8>, early: Bytes);
}
