//! Raw byte relay for upgraded connections (WebSocket after a 101).
//!
//! Completion-based reads cannot be cancelled without losing what they
//! read, so the relay waits on *readiness* (cancellation-safe) for both
//! sides and only then issues the read on the side that is ready. Either
//! side closing ends the relay.
#![deny(clippy::disallowed_methods)]

use bytes::BytesMut;

use crate::io::Io;

/// Relay limit per direction per wake-up.
const RELAY_CHUNK: usize = 16 * 1024;

pub async fn copy_bidirectional(a: &mut Io, b: &mut Io) {
    let mut buf_a = BytesMut::with_capacity(RELAY_CHUNK);
    let mut buf_b = BytesMut::with_capacity(RELAY_CHUNK);
    loop {
        let which = if a.has_buffered() {
            0
        } else if b.has_buffered() {
            1
        } else {
            monoio::select! {
                r = a.readable() => { if r.is_err() { return; } 0 }
                r = b.readable() => { if r.is_err() { return; } 1 }
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
