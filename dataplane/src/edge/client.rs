//! The client side of one request: an HTTP/1.1 connection, or one stream
//! of an HTTP/2 connection.
//!
//! The proxy core runs the same phases for both; only the last step
//! differs, and it is here: how bytes reach the client. The edge's own
//! answers (error pages, redirects, sign-in) are composed once, as
//! HTTP/1.1 messages, and an HTTP/2 stream sends the same status, headers
//! and body in its own framing.

use std::cell::RefCell;
use std::rc::Rc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::conn::Next;
use crate::io::{write_out, Io};

pub enum Client<'a> {
    H1 {
        io: &'a mut Io,
        buf: &'a mut BytesMut,
    },
    H2(&'a mut H2Stream),
}

/// One HTTP/2 request stream, as the proxy core sees it. Both halves are
/// shared cells, borrowed only for a poll at a time: the request body can
/// stream to the backend while the response streams back (gRPC), and a
/// watcher notices the client's reset meanwhile.
pub struct H2Stream {
    pub recv: Rc<RefCell<h2::RecvStream>>,
    /// Shared with the task that watches for the client's reset.
    pub send: Rc<RefCell<H2Send>>,
    /// Longest one write may wait for the client to take it.
    pub send_timeout: Duration,
}

/// Where a stream's answer stands.
pub enum H2Send {
    /// No response head sent yet.
    Head(h2::server::SendResponse<Bytes>),
    /// Head sent, body going.
    Body(h2::SendStream<Bytes>),
    /// The stream is finished on our side (or handed to a relay).
    Done,
}

/// The client left, or stopped reading for too long.
#[derive(Debug)]
pub struct Gone;

impl H2Stream {
    pub fn new(
        recv: h2::RecvStream,
        respond: h2::server::SendResponse<Bytes>,
        send_timeout: Duration,
    ) -> H2Stream {
        H2Stream {
            recv: Rc::new(RefCell::new(recv)),
            send: Rc::new(RefCell::new(H2Send::Head(respond))),
            send_timeout,
        }
    }

    /// Sends the response head; `end` when there is no body.
    pub fn send_head(&mut self, resp: http::Response<()>, end: bool) -> Result<(), Gone> {
        let mut state = self.send.borrow_mut();
        let H2Send::Head(respond) = &mut *state else {
            return Err(Gone);
        };
        let stream = respond.send_response(resp, end).map_err(|_| Gone)?;
        *state = if end {
            H2Send::Done
        } else {
            H2Send::Body(stream)
        };
        Ok(())
    }

    /// Sends body bytes as the client's window allows; `end` ends the
    /// stream with the last of them.
    pub async fn send_data(&mut self, data: Bytes, end: bool) -> Result<(), Gone> {
        let cell = self.send.clone();
        match crate::timer::timeout(self.send_timeout, send_data(&cell, data, end)).await {
            Ok(r) => r,
            Err(_) => {
                if let H2Send::Body(s) = &mut *cell.borrow_mut() {
                    s.send_reset(h2::Reason::CANCEL);
                }
                *cell.borrow_mut() = H2Send::Done;
                Err(Gone)
            }
        }
    }

    /// Ends the body, with trailers when there are any.
    pub async fn end(&mut self, trailers: Option<http::HeaderMap>) -> Result<(), Gone> {
        let mut state = self.send.borrow_mut();
        let r = match (&mut *state, trailers) {
            (H2Send::Body(s), Some(t)) => s.send_trailers(t).map_err(|_| Gone),
            (H2Send::Body(s), None) => s.send_data(Bytes::new(), true).map_err(|_| Gone),
            (H2Send::Done, _) => Ok(()),
            (H2Send::Head(_), _) => Err(Gone),
        };
        *state = H2Send::Done;
        r
    }

    /// Resets the stream: the response cannot be completed (a body cut
    /// short must never look complete).
    pub fn reset(&mut self, reason: h2::Reason) {
        let mut state = self.send.borrow_mut();
        match &mut *state {
            H2Send::Head(r) => r.send_reset(reason),
            H2Send::Body(s) => s.send_reset(reason),
            H2Send::Done => {}
        }
        *state = H2Send::Done;
    }

    /// The body half of the stream, taken for a relay (WebSocket).
    pub fn take_body(&mut self) -> Option<h2::SendStream<Bytes>> {
        match std::mem::replace(&mut *self.send.borrow_mut(), H2Send::Done) {
            H2Send::Body(s) => Some(s),
            _ => None,
        }
    }

    /// Sends an answer the edge composed as an HTTP/1.1 message (status
    /// line, headers, `Content-Length` body) in HTTP/2 framing.
    pub async fn send_composed(&mut self, msg: &[u8]) -> Result<(), Gone> {
        let Some((resp, body)) = composed_to_h2(msg) else {
            self.reset(h2::Reason::INTERNAL_ERROR);
            return Err(Gone);
        };
        let end = body.is_empty();
        self.send_head(resp, end)?;
        if !end {
            self.send_data(Bytes::copy_from_slice(body), true).await?;
        }
        Ok(())
    }
}

/// Writes `data`, waiting for window as needed.
async fn send_data(cell: &RefCell<H2Send>, mut data: Bytes, end: bool) -> Result<(), Gone> {
    if data.is_empty() {
        if !end {
            return Ok(());
        }
        return match &mut *cell.borrow_mut() {
            H2Send::Body(s) => s.send_data(data, true).map_err(|_| Gone),
            _ => Err(Gone),
        };
    }
    while !data.is_empty() {
        let want = data.len();
        let granted = std::future::poll_fn(|cx| {
            let mut state = cell.borrow_mut();
            let H2Send::Body(s) = &mut *state else {
                return Poll::Ready(Err(Gone));
            };
            if s.capacity() < want {
                s.reserve_capacity(want);
            }
            match s.poll_capacity(cx) {
                Poll::Ready(Some(Ok(n))) => Poll::Ready(Ok(n)),
                Poll::Ready(_) => Poll::Ready(Err(Gone)),
                Poll::Pending => Poll::Pending,
            }
        })
        .await?;
        if granted == 0 {
            continue;
        }
        let piece = data.split_to(granted.min(data.len()));
        let last = end && data.is_empty();
        match &mut *cell.borrow_mut() {
            H2Send::Body(s) => s.send_data(piece, last).map_err(|_| Gone)?,
            _ => return Err(Gone),
        }
    }
    if end {
        *cell.borrow_mut() = H2Send::Done;
    }
    Ok(())
}

/// Status, headers and body of a composed HTTP/1.1 answer, as HTTP/2:
/// connection-specific fields dropped.
fn composed_to_h2(msg: &[u8]) -> Option<(http::Response<()>, &[u8])> {
    let mut slots = [httparse::EMPTY_HEADER; 32];
    let mut parsed = httparse::Response::new(&mut slots);
    let httparse::Status::Complete(len) = parsed.parse(msg).ok()? else {
        return None;
    };
    let mut resp = http::Response::new(());
    *resp.status_mut() = http::StatusCode::from_u16(parsed.code?).ok()?;
    let map = resp.headers_mut();
    for h in parsed.headers.iter() {
        if crate::http1::is_hop_by_hop(h.name.as_bytes())
            && !h.name.eq_ignore_ascii_case("content-length")
        {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(h.name.as_bytes()),
            http::HeaderValue::from_bytes(h.value),
        ) {
            map.append(n, v);
        }
    }
    Some((resp, &msg[len..]))
}

impl Client<'_> {
    /// Sends an answer the edge composed in `out` (a whole HTTP/1.1
    /// message); over HTTP/1.1 the connection is kept unless `close`.
    pub async fn send_composed(&mut self, out: &mut Vec<u8>, close: bool) -> Next {
        match self {
            Client::H1 { io, .. } => {
                if write_out(io, out).await.is_err() || close {
                    Next::Close
                } else {
                    Next::KeepAlive
                }
            }
            Client::H2(s) => {
                let _ = s.send_composed(out).await;
                out.clear();
                Next::Close
            }
        }
    }

    /// Writes body bytes as they are.
    pub async fn write_bytes(&mut self, data: Bytes) -> Result<(), Gone> {
        match self {
            Client::H1 { io, .. } => io.write_all(data).await.0.map_err(|_| Gone),
            Client::H2(s) => s.send_data(data, false).await,
        }
    }

    /// Writes (and empties) the connection's output buffer.
    pub async fn write_out(&mut self, out: &mut Vec<u8>) -> Result<(), Gone> {
        match self {
            Client::H1 { io, .. } => write_out(io, out).await.map_err(|_| Gone),
            Client::H2(s) => {
                if out.is_empty() {
                    return Ok(());
                }
                let data = Bytes::from(std::mem::take(out));
                s.send_data(data, false).await
            }
        }
    }
}
