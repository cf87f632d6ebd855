//! One byte-stream type for every socket the data plane touches.
//!
//! Client connections are plain TCP or TLS (server side); backend
//! connections are plain TCP or TLS (client side). The HTTP code is written
//! once against [`Io`] instead of being generic over four stream types,
//! which keeps compile times and binary size down; the `match` per call is
//! noise next to a syscall.

use std::io;

use bytes::BytesMut;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use rustls::{ClientConnection, ServerConnection};

use crate::tls::stream::TlsStream;

/// Read size used when growing a read buffer.
pub const READ_CHUNK: usize = 16 * 1024;

pub enum Io {
    Tcp(TcpStream),
    ServerTls(Box<TlsStream<ServerConnection>>),
    ClientTls(Box<TlsStream<ClientConnection>>),
}

impl Io {
    /// Appends what arrives next to `buf` (reserving room first); `Ok(0)`
    /// means the peer closed its side.
    pub async fn read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        match self {
            Io::Tcp(s) => {
                // monoio reads into a BytesMut from its *start*; a slice
                // over the spare capacity makes the read append instead.
                let owned = std::mem::take(buf);
                let (len, cap) = (owned.len(), owned.capacity());
                let (res, slice) = s.read(owned.slice_mut(len..cap)).await;
                *buf = slice.into_inner();
                res
            }
            Io::ServerTls(s) => s.read_buf(buf).await,
            Io::ClientTls(s) => s.read_buf(buf).await,
        }
    }

    /// Writes all of `data`, handing the buffer back for reuse.
    pub async fn write_all<T>(&mut self, data: T) -> (io::Result<()>, T)
    where
        T: monoio::buf::IoBuf + AsRef<[u8]>,
    {
        match self {
            Io::Tcp(s) => {
                let (res, data) = s.write_all(data).await;
                (res.map(|_| ()), data)
            }
            Io::ServerTls(s) => {
                let res = s.write_all(data.as_ref()).await;
                (res, data)
            }
            Io::ClientTls(s) => {
                let res = s.write_all(data.as_ref()).await;
                (res, data)
            }
        }
    }

    /// Closes our sending side (TLS close_notify first).
    pub async fn shutdown(&mut self) {
        match self {
            Io::Tcp(s) => {
                let _ = s.shutdown().await;
            }
            Io::ServerTls(s) => s.shutdown().await,
            Io::ClientTls(s) => s.shutdown().await,
        }
    }
}

impl Io {
    /// Whether a read would return without touching the socket.
    pub fn has_buffered(&mut self) -> bool {
        match self {
            Io::Tcp(_) => false,
            Io::ServerTls(s) => s.has_buffered(),
            Io::ClientTls(s) => s.has_buffered(),
        }
    }

    /// Waits until the socket has something to read (cancellation-safe).
    pub async fn readable(&self) -> io::Result<()> {
        match self {
            Io::Tcp(s) => s.readable(false).await,
            Io::ServerTls(s) => s.tcp.readable(false).await,
            Io::ClientTls(s) => s.tcp.readable(false).await,
        }
    }
}
