//! HTTP/1.1 connections: keep-alive with optional pipelining, paced for
//! the open loop, or one request per connection.
//!
//! Responses are framed by `Content-Length`, chunked coding or the close
//! of the connection; bodies are counted and skipped where they lie in
//! the read buffer, never copied.

use std::rc::Rc;
use std::time::Instant;

use bytes::{Buf, BytesMut};
use postern_dataplane::io::Io;

use crate::run::Ctx;
use crate::stats::ErrorKind;

/// One connection slot: connects (again after a failure) and sends until
/// the run is over.
pub async fn connection(ctx: Rc<Ctx>, slot: usize) {
    let mut pace = ctx.pace(slot);
    let depth = ctx.plan.pipeline.max(1);
    let mut batch = Vec::with_capacity(ctx.h1_request.len() * depth);
    for _ in 0..depth {
        batch.extend_from_slice(&ctx.h1_request);
    }
    let batch = bytes::Bytes::from(batch);
    let mut buf = BytesMut::with_capacity(64 * 1024);
    while !ctx.over() {
        let due = match &mut pace {
            Some(p) => Some(p.wait().await),
            None => None,
        };
        let started = Instant::now();
        let Some(mut io) = ctx.connected(crate::conn::http1(&ctx.dial)).await else {
            continue;
        };
        buf.clear();
        let mut due = due;
        loop {
            // Timed from when it was due (open loop), from before the
            // connect (a connection per request), or from its write.
            let sent = due.unwrap_or(if ctx.plan.new_connection {
                started
            } else {
                Instant::now()
            });
            let result = exchange(&ctx, &mut io, &mut buf, &batch, depth, sent).await;
            if let Err(kind) = result {
                ctx.error(kind);
                break;
            }
            if ctx.plan.new_connection || ctx.over() {
                break;
            }
            due = match &mut pace {
                Some(p) => Some(p.wait().await),
                None => None,
            };
        }
        if ctx.plan.new_connection {
            // The server sees an orderly close, as from a browser.
            io.shutdown().await;
        }
    }
}

/// Writes `depth` requests at once and reads their responses, each
/// timed from `sent`.
async fn exchange(
    ctx: &Ctx,
    io: &mut Io,
    buf: &mut BytesMut,
    batch: &bytes::Bytes,
    depth: usize,
    sent: Instant,
) -> Result<(), ErrorKind> {
    let (res, _) = io.write_all(batch.clone()).await;
    res.map_err(|_| ErrorKind::Io)?;
    for _ in 0..depth {
        let read = monoio::time::timeout(ctx.plan.timeout, read_response(io, buf)).await;
        match read {
            Ok(Ok((status, bytes))) => ctx.completed(sent, status, bytes),
            Ok(Err(kind)) => return Err(kind),
            Err(_) => return Err(ErrorKind::Timeout),
        }
    }
    Ok(())
}

/// How the body of a response is delimited.
enum Framing {
    Length(usize),
    Chunked,
    Close,
}

/// Reads one response (skipping interim 1xx ones); returns its status and
/// its size on the wire.
async fn read_response(io: &mut Io, buf: &mut BytesMut) -> Result<(u16, usize), ErrorKind> {
    let mut total = 0;
    loop {
        let (status, framing, head_len) = loop {
            match parse_head(buf)? {
                Some(h) => break h,
                None => fill(io, buf).await?,
            }
        };
        buf.advance(head_len);
        total += head_len;
        if (100..200).contains(&status) {
            continue;
        }
        total += match framing {
            Framing::Length(n) => skip(io, buf, n).await?,
            Framing::Chunked => chunked(io, buf).await?,
            Framing::Close => {
                let mut n = buf.len();
                buf.clear();
                loop {
                    match io.read_buf(buf).await {
                        Ok(0) => break,
                        Ok(k) => {
                            n += k;
                            buf.clear();
                        }
                        Err(_) => return Err(ErrorKind::Io),
                    }
                }
                n
            }
        };
        return Ok((status, total));
    }
}

/// Reads more into `buf`; the peer's close is an error here.
async fn fill(io: &mut Io, buf: &mut BytesMut) -> Result<(), ErrorKind> {
    match io.read_buf(buf).await {
        Ok(0) => Err(ErrorKind::Closed),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => Err(ErrorKind::Closed),
        Err(_) => Err(ErrorKind::Io),
    }
}

fn parse_head(buf: &[u8]) -> Result<Option<(u16, Framing, usize)>, ErrorKind> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(ErrorKind::Parse),
    };
    let status = resp.code.unwrap_or(0);
    let mut framing = Framing::Close;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or(ErrorKind::Parse)?;
            framing = Framing::Length(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding")
            && h.value.eq_ignore_ascii_case(b"chunked")
        {
            framing = Framing::Chunked;
            break;
        }
    }
    if status == 204 || status == 304 || (100..200).contains(&status) {
        framing = Framing::Length(0);
    }
    Ok(Some((status, framing, len)))
}

/// Skips `n` body bytes, reading as needed.
async fn skip(io: &mut Io, buf: &mut BytesMut, n: usize) -> Result<usize, ErrorKind> {
    let mut left = n;
    while buf.len() < left {
        left -= buf.len();
        buf.clear();
        fill(io, buf).await?;
    }
    buf.advance(left);
    Ok(n)
}

/// Skips a chunked body and its trailers.
async fn chunked(io: &mut Io, buf: &mut BytesMut) -> Result<usize, ErrorKind> {
    let mut total = 0;
    loop {
        let line = loop {
            if let Some(i) = memchr::memchr(b'\n', buf) {
                break i + 1;
            }
            if buf.len() > 4096 {
                return Err(ErrorKind::Parse);
            }
            fill(io, buf).await?;
        };
        let size_text = buf[..line]
            .split(|&b| b == b';' || b == b'\r' || b == b'\n')
            .next()
            .unwrap_or_default();
        let size = std::str::from_utf8(size_text)
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .ok_or(ErrorKind::Parse)?;
        buf.advance(line);
        total += line;
        if size == 0 {
            // Trailers, up to the empty line.
            loop {
                let end = loop {
                    if let Some(i) = memchr::memchr(b'\n', buf) {
                        break i + 1;
                    }
                    if buf.len() > 16 * 1024 {
                        return Err(ErrorKind::Parse);
                    }
                    fill(io, buf).await?;
                };
                let empty = end <= 2;
                buf.advance(end);
                total += end;
                if empty {
                    return Ok(total);
                }
            }
        }
        total += skip(io, buf, size + 2).await?;
    }
}
