//! One byte-stream type for every socket the data plane touches.
//!
//! Client connections are plain TCP or TLS (server side); backend
//! connections are plain TCP or TLS (client side). The HTTP code is written
//! once against [`Io`] instead of being generic over four stream types,
//! which keeps compile times and binary size down; the `match` per call is
//! noise next to a syscall.
#![deny(clippy::disallowed_methods)]

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use rustls::{ClientConnection, ServerConnection};

use crate::tls::stream::TlsStream;

/// Read size used when growing a read buffer.
pub const READ_CHUNK: usize = 16 * 1024;

pub enum Stream {
    Tcp(TcpStream),
    ServerTls(Box<TlsStream<ServerConnection>>),
    ClientTls(Box<TlsStream<ClientConnection>>),
}

/// A stream plus the longest a single write may wait for the peer to read:
/// a peer that stops reading must not pin a connection (and its buffers)
/// forever.
pub struct Io {
    pub stream: Stream,
    pub write_timeout: Duration,
}

impl Io {
    pub fn new(stream: Stream, write_timeout: Duration) -> Io {
        Io {
            stream,
            write_timeout,
        }
    }

    /// Appends what arrives next to `buf` (reserving room first); `Ok(0)`
    /// means the peer closed its side.
    pub async fn read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        match &mut self.stream {
            Stream::Tcp(s) => {
                // monoio reads into a BytesMut from its *start*; a slice
                // over the spare capacity makes the read append instead.
                let owned = std::mem::take(buf);
                let (len, cap) = (owned.len(), owned.capacity());
                let (res, slice) = s.read(owned.slice_mut(len..cap)).await;
                *buf = slice.into_inner();
                res
            }
            Stream::ServerTls(s) => s.read_buf(buf).await,
            Stream::ClientTls(s) => s.read_buf(buf).await,
        }
    }

    /// Writes all of `data` within the write timeout, handing the buffer
    /// back for reuse. A timed-out write leaves the stream unusable.
    pub async fn write_all<T>(&mut self, data: T) -> (io::Result<()>, T)
    where
        T: monoio::buf::IoBuf + AsRef<[u8]> + Default,
    {
        let limit = self.write_timeout;
        match crate::timer::timeout(limit, self.write_inner(data)).await {
            Ok(r) => r,
            // The buffer went down with the cancelled write; the stream is
            // finished, so an empty one is all the caller needs back.
            Err(_) => (
                Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "peer stopped reading",
                )),
                T::default(),
            ),
        }
    }

    async fn write_inner<T>(&mut self, data: T) -> (io::Result<()>, T)
    where
        T: monoio::buf::IoBuf + AsRef<[u8]>,
    {
        match &mut self.stream {
            Stream::Tcp(s) => {
                let (res, data) = s.write_all(data).await;
                (res.map(|_| ()), data)
            }
            Stream::ServerTls(s) => {
                let res = s.write_all(data.as_ref()).await;
                (res, data)
            }
            Stream::ClientTls(s) => {
                let res = s.write_all(data.as_ref()).await;
                (res, data)
            }
        }
    }

    /// Closes our sending side (TLS close_notify first), bounded by the
    /// write timeout.
    pub async fn shutdown(&mut self) {
        let limit = self.write_timeout;
        let _ = monoio::time::timeout(limit, async {
            match &mut self.stream {
                Stream::Tcp(s) => {
                    let _ = s.shutdown().await;
                }
                Stream::ServerTls(s) => s.shutdown().await,
                Stream::ClientTls(s) => s.shutdown().await,
            }
        })
        .await;
    }
}

/// Writes all of `out` and leaves it empty, keeping its allocation for the
/// next message.
pub async fn write_out(io: &mut Io, out: &mut Vec<u8>) -> io::Result<()> {
    let data = std::mem::take(out);
    let (res, mut data) = io.write_all(data).await;
    data.clear();
    *out = data;
    res
}

impl Io {
    /// Whether a read would return without touching the socket.
    pub fn has_buffered(&mut self) -> bool {
        match &mut self.stream {
            Stream::Tcp(_) => false,
            Stream::ServerTls(s) => s.has_buffered(),
            Stream::ClientTls(s) => s.has_buffered(),
        }
    }

    /// Waits until the socket has something to read (cancellation-safe).
    pub async fn readable(&self) -> io::Result<()> {
        match &self.stream {
            Stream::Tcp(s) => s.readable(false).await,
            Stream::ServerTls(s) => s.tcp.readable(false).await,
            Stream::ClientTls(s) => s.tcp.readable(false).await,
        }
    }
}
