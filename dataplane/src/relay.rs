//! Raw byte relay for upgraded connections (WebSocket after a 101).
//!
//! Both directions run at once: a peer that stops reading stalls only the
//! direction toward it, never the other. A completion read cannot stay
//! pending while the same connection writes (and cannot be cancelled
//! without losing what it read), so a socket's stream moves into poll
//! form ([`Io::take_poll`]) for the relay's life, where a read and a write
//! can both wait on readiness within one task. Each direction is a pump;
//! [`both_ways`] drives the two with a shared idle clock.
//!
//! An end of stream in one direction is passed on (a TCP half-close, or
//! END_STREAM) and the other direction carries on until it ends too; an
//! error either way ends both. `idle` (each app's
//! `websocket_idle_timeout`) ends the relay when nothing moved either way
//! for that long, and a write that waits longer than the receiving
//! stream's write timeout ends it too (a peer that stopped reading); the
//! app's `websocket_timeout` bounds the whole relay, in the proxy core.
#![deny(clippy::disallowed_methods)]

use std::cell::{Cell, RefCell};
use std::future::{poll_fn, Future};
use std::io;
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::io::Io;
use crate::tunnel;

/// Relay read size per direction.
const RELAY_CHUNK: usize = 16 * 1024;

/// No idle limit (the other end of the relay keeps one).
pub const NO_IDLE: Duration = Duration::from_secs(365 * 24 * 3600);

/// Relays two connections to each other until both directions end, one
/// fails, or `idle` passes with nothing relayed.
pub async fn copy_bidirectional(a: &mut Io, b: &mut Io, idle: Duration) {
    let (a_limit, b_limit) = (a.write_timeout, b.write_timeout);
    let (pa, pb) = match (a.take_poll(), b.take_poll()) {
        (Ok(pa), Ok(pb)) => (pa, pb),
        (Err(e), _) | (_, Err(e)) => {
            tracing::debug!(error = %e, "cannot relay: the socket did not switch to poll form");
            return;
        }
    };
    let (pa, pb) = (RefCell::new(pa), RefCell::new(pb));
    let last = Cell::new(Instant::now());
    both_ways(
        pipe(&pa, &pb, b_limit, &last),
        pipe(&pb, &pa, a_limit, &last),
        &last,
        idle,
    )
    .await;
}

/// Relays an upgraded connection over an HTTP/2 stream until both
/// directions end: `early` (bytes already read from `io`) first, then
/// whatever `io` sends goes out on `tx`, and whatever arrives on `rx` is
/// written to `io`, its window given back once written.
pub async fn over_stream(
    io: &mut Io,
    early: Bytes,
    tx: &mut h2::SendStream<Bytes>,
    rx: &mut h2::RecvStream,
    idle: Duration,
) {
    if !early.is_empty() && tunnel::send_data(tx, early, false).await.is_err() {
        return;
    }
    let limit = io.write_timeout;
    let p = match io.take_poll() {
        Ok(p) => RefCell::new(p),
        Err(e) => {
            tracing::debug!(error = %e, "cannot relay: the socket did not switch to poll form");
            return;
        }
    };
    let last = Cell::new(Instant::now());
    let outward = async {
        let mut buf = vec![0u8; RELAY_CHUNK];
        loop {
            let n = read(&p, &mut buf).await?;
            if n == 0 {
                return tx.send_data(Bytes::new(), true).map_err(h2_error);
            }
            last.set(Instant::now());
            tunnel::send_data(tx, Bytes::copy_from_slice(&buf[..n]), false)
                .await
                .map_err(h2_error)?;
            last.set(Instant::now());
        }
    };
    let inward = async {
        while let Some(data) = rx.data().await {
            let data = data.map_err(h2_error)?;
            last.set(Instant::now());
            let n = data.len();
            write_all(&p, &data, limit).await?;
            tunnel::release(rx, n);
            last.set(Instant::now());
        }
        shutdown(&p, limit).await;
        Ok(())
    };
    both_ways(outward, inward, &last, idle).await;
    // Whatever stopped the relay, the stream ends (a no-op if it has).
    let _ = tx.send_data(Bytes::new(), true);
}

/// Relays an upgraded HTTP/2 client stream (extended CONNECT) over a
/// tunnel stream until both directions end. Each side's data is sent on
/// as the other's window allows, and its window given back once sent.
pub async fn streams(
    a_rx: &mut h2::RecvStream,
    a_tx: &mut h2::SendStream<Bytes>,
    b_rx: &mut h2::RecvStream,
    b_tx: &mut h2::SendStream<Bytes>,
    idle: Duration,
) {
    let last = Cell::new(Instant::now());
    let a_to_b = pump(a_rx, &mut *b_tx, &last);
    let b_to_a = pump(b_rx, &mut *a_tx, &last);
    both_ways(a_to_b, b_to_a, &last, idle).await;
    let _ = a_tx.send_data(Bytes::new(), true);
    let _ = b_tx.send_data(Bytes::new(), true);
}

/// One stream-to-stream direction of [`streams`], until `rx` ends (passed
/// on as END_STREAM) or either side fails.
async fn pump(
    rx: &mut h2::RecvStream,
    tx: &mut h2::SendStream<Bytes>,
    last: &Cell<Instant>,
) -> io::Result<()> {
    while let Some(data) = rx.data().await {
        let data = data.map_err(h2_error)?;
        last.set(Instant::now());
        let n = data.len();
        tunnel::send_data(tx, data, false).await.map_err(h2_error)?;
        tunnel::release(rx, n);
        last.set(Instant::now());
    }
    tx.send_data(Bytes::new(), true).map_err(h2_error)
}

/// One socket-to-socket direction of [`copy_bidirectional`], until `from`
/// ends (passed on as a half-close of `to`) or either side fails.
async fn pipe<R, W>(
    from: &RefCell<R>,
    to: &RefCell<W>,
    limit: Duration,
    last: &Cell<Instant>,
) -> io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut buf = vec![0u8; RELAY_CHUNK];
    loop {
        let n = read(from, &mut buf).await?;
        if n == 0 {
            shutdown(to, limit).await;
            return Ok(());
        }
        last.set(Instant::now());
        write_all(to, &buf[..n], limit).await?;
        last.set(Instant::now());
    }
}

/// Runs both directions until both have ended or either fails, or until
/// nothing has moved either way (`last`) for `idle`.
async fn both_ways<A, B>(a: A, b: B, last: &Cell<Instant>, idle: Duration)
where
    A: Future<Output = io::Result<()>>,
    B: Future<Output = io::Result<()>>,
{
    let (mut a, mut b) = (pin!(a), pin!(b));
    let mut idle_out = pin!(idle_watch(last, idle));
    let (mut a_done, mut b_done) = (false, false);
    poll_fn(|cx| {
        if !a_done {
            if let Poll::Ready(r) = a.as_mut().poll(cx) {
                if r.is_err() {
                    return Poll::Ready(());
                }
                a_done = true;
            }
        }
        if !b_done {
            if let Poll::Ready(r) = b.as_mut().poll(cx) {
                if r.is_err() {
                    return Poll::Ready(());
                }
                b_done = true;
            }
        }
        if a_done && b_done {
            return Poll::Ready(());
        }
        idle_out.as_mut().poll(cx)
    })
    .await
}

/// Ends once `last` is `idle` old.
async fn idle_watch(last: &Cell<Instant>, idle: Duration) {
    loop {
        let left = (last.get() + idle).saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        let _ = crate::timer::timeout(left, std::future::pending::<()>()).await;
    }
}

/// Reads what `from` has next; 0 is its end. The cell is borrowed only
/// inside each poll, so the other direction may write it meanwhile.
async fn read<R: AsyncRead + Unpin>(from: &RefCell<R>, buf: &mut [u8]) -> io::Result<usize> {
    poll_fn(|cx| {
        let mut rb = ReadBuf::new(buf);
        match Pin::new(&mut *from.borrow_mut()).poll_read(cx, &mut rb) {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(rb.filled().len())),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Writes and flushes all of `data`, failing if the peer takes longer
/// than `limit` (it stopped reading).
async fn write_all<W: AsyncWrite + Unpin>(
    to: &RefCell<W>,
    data: &[u8],
    limit: Duration,
) -> io::Result<()> {
    let write = async {
        let mut rest = data;
        while !rest.is_empty() {
            let n = poll_fn(|cx| Pin::new(&mut *to.borrow_mut()).poll_write(cx, rest)).await?;
            if n == 0 {
                return Err(io::ErrorKind::WriteZero.into());
            }
            rest = &rest[n..];
        }
        poll_fn(|cx| Pin::new(&mut *to.borrow_mut()).poll_flush(cx)).await
    };
    match crate::timer::timeout(limit, write).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "peer stopped reading",
        )),
    }
}

/// Closes `to`'s sending side (TLS close_notify first), bounded by `limit`.
async fn shutdown<W: AsyncWrite + Unpin>(to: &RefCell<W>, limit: Duration) {
    let close = poll_fn(|cx| Pin::new(&mut *to.borrow_mut()).poll_shutdown(cx));
    let _ = crate::timer::timeout(limit, close).await;
}

fn h2_error(e: h2::Error) -> io::Error {
    io::Error::other(e)
}
