//! Raw byte relay for upgraded connections (WebSocket after a 101).
//!
//! Completion-based reads cannot be cancelled without losing what they
//! read, so the relay waits on *readiness* (cancellation-safe) for both
//! sides and only then issues the read on the side that is ready. Either
//! side closing ends the relay, and so does `idle` passing with nothing
//! relayed either way (each app's `websocket_idle_timeout`; its
//! `websocket_timeout` bounds the whole relay, in the proxy core).
#![deny(clippy::disallowed_methods)]

use std::cell::Cell;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::io::Io;
use crate::tunnel;

/// Relay limit per direction per wake-up.
const RELAY_CHUNK: usize = 16 * 1024;

/// No idle limit (the other end of the relay keeps one).
pub const NO_IDLE: Duration = Duration::from_secs(365 * 24 * 3600);

pub async fn copy_bidirectional(a: &mut Io, b: &mut Io, idle: Duration) {
    let mut buf_a = BytesMut::with_capacity(RELAY_CHUNK);
    let mut buf_b = BytesMut::with_capacity(RELAY_CHUNK);
    loop {
        let which = if a.has_buffered() {
            0
        } else if b.has_buffered() {
            1
        } else {
            let ready = async {
                monoio::select! {
                    r = a.readable() => r.map(|_| 0),
                    r = b.readable() => r.map(|_| 1),
                }
            };
            match crate::timer::timeout(idle, ready).await {
                Ok(Ok(which)) => which,
                // Closed, or silent both ways for too long.
                _ => return,
            }
        };
        let (from, to, buf) = if which == 0 {
            (&mut *a, &mut *b, &mut buf_a)
        } else {
            (&mut *b, &mut *a, &mut buf_b)
        };
        match from.read_buf(buf).await {
            Ok(0) | Err(_) => {
                to.shutdown().await;
                return;
            }
            Ok(_) => {
                let data = buf.split().freeze();
                let (res, _) = to.write_all(data).await;
                if res.is_err() {
                    return;
                }
            }
        }
    }
}

/// Relays an upgraded connection over a tunnel stream until either side
/// ends: `early` (bytes already read from `io`) first, then whatever `io`
/// sends goes out on `tx` and whatever arrives on `rx` is written to `io`.
/// Completion reads cannot be cancelled without losing what they read, so
/// (as in [`copy_bidirectional`]) the relay waits on readiness and reads only a
/// side that is ready; a stream's window is returned once its bytes are
/// written on.
pub async fn over_stream(
    io: &mut Io,
    early: bytes::Bytes,
    tx: &mut h2::SendStream<bytes::Bytes>,
    rx: &mut h2::RecvStream,
    idle: Duration,
) {
    if !early.is_empty() && tunnel::send_data(tx, early, false).await.is_err() {
        return;
    }
    let mut buf = bytes::BytesMut::with_capacity(crate::io::READ_CHUNK);
    loop {
        if !io.has_buffered() {
            let ready = async {
                monoio::select! {
                    r = io.readable() => r.map(|_| None).map_err(|_| ()),
                    d = rx.data() => match d {
                        Some(Ok(data)) => Ok(Some(data)),
                        _ => Err(()),
                    },
                }
            };
            let io_ready = match crate::timer::timeout(idle, ready).await {
                Ok(Ok(None)) => true,
                Ok(Ok(Some(data))) => {
                    let n = data.len();
                    let (res, _) = io.write_all(data).await;
                    if res.is_err() {
                        break;
                    }
                    tunnel::release(rx, n);
                    false
                }
                // Closed, or silent both ways for too long.
                _ => break,
            };
            if !io_ready {
                continue;
            }
        }
        match io.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if tunnel::send_data(tx, buf.split().freeze(), false)
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
    let _ = tx.send_data(bytes::Bytes::new(), true);
    io.shutdown().await;
}

/// Relays an upgraded HTTP/2 client stream (extended CONNECT) over a
/// tunnel stream until either side ends. Both directions run at once:
/// each side's data is sent on as the other's window allows, and its
/// window given back once sent.
pub async fn streams(
    a_rx: &mut h2::RecvStream,
    a_tx: &mut h2::SendStream<bytes::Bytes>,
    b_rx: &mut h2::RecvStream,
    b_tx: &mut h2::SendStream<bytes::Bytes>,
    idle: Duration,
) {
    let last = Cell::new(Instant::now());
    let a_to_b = pump(a_rx, b_tx, &last, idle);
    let b_to_a = pump(b_rx, a_tx, &last, idle);
    monoio::select! {
        _ = a_to_b => {}
        _ = b_to_a => {}
    }
    let _ = a_tx.send_data(bytes::Bytes::new(), true);
    let _ = b_tx.send_data(bytes::Bytes::new(), true);
}

/// One direction of [`streams`]: until `rx` ends, `tx` fails, or neither
/// direction has carried anything for `idle` (`last` is shared).
async fn pump(
    rx: &mut h2::RecvStream,
    tx: &mut h2::SendStream<bytes::Bytes>,
    last: &Cell<Instant>,
    idle: Duration,
) {
    loop {
        let left = (last.get() + idle).saturating_duration_since(Instant::now());
        let data = match crate::timer::timeout(left, rx.data()).await {
            Ok(Some(Ok(data))) => data,
            Ok(_) => return,
            Err(_) if last.get().elapsed() >= idle => return,
            // The other direction was busy meanwhile.
            Err(_) => continue,
        };
        last.set(Instant::now());
        let n = data.len();
        if tunnel::send_data(tx, data, false).await.is_err() {
            return;
        }
        tunnel::release(rx, n);
    }
}
