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
use std::pin::Pin;
use std::task::{Context, Poll};

use monoio::net::tcp::stream_poll::TcpStreamPoll;
use monoio::net::TcpStream;
use rustls::{ClientConnection, ServerConnection};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::tls::poll::PollTls;
use crate::tls::stream::TlsStream;

/// Read size used when growing a read buffer.
pub const READ_CHUNK: usize = 16 * 1024;
/// Read size while a peer trickles bytes in: below it a read counts as a
/// trickle (see [`Io::read_buf`]).
pub const IDLE_READ: usize = 1024;

pub enum Stream {
    Tcp(TcpStream),
    ServerTls(Box<TlsStream<ServerConnection>>),
    ClientTls(Box<TlsStream<ClientConnection>>),
    /// The socket moved to a relay in poll form ([`Io::take_poll`]); the
    /// connection is over for this `Io`: reads see the end, writes fail.
    Moved,
}

/// A stream plus the longest a single write may wait for the peer to read:
/// a peer that stops reading must not pin a connection (and its buffers)
/// forever.
pub struct Io {
    pub stream: Stream,
    pub write_timeout: Duration,
    pace: Option<Pace>,
    /// Bytes the last read brought; below [`IDLE_READ`] the next read is
    /// a small one (see [`Io::read_buf`]).
    last_read: usize,
    /// Keep reading small while the peer trickles (client connections).
    trickle: bool,
}

/// Gives an output buffer let go while idle its working size again, once
/// there is something to write: a request whose body is still trickling
/// in does not hold it.
pub fn out_ready(out: &mut Vec<u8>) {
    if out.capacity() == 0 {
        out.reserve(READ_CHUNK);
    }
}

/// Reads into `buf`'s spare capacity, appending. monoio reads into a
/// BytesMut from its *start*; a slice over the spare capacity makes the
/// read append instead.
async fn read_spare(s: &mut TcpStream, buf: &mut BytesMut) -> io::Result<usize> {
    let owned = std::mem::take(buf);
    let (len, cap) = (owned.len(), owned.capacity());
    let (res, slice) = s.read(owned.slice_mut(len..cap)).await;
    *buf = slice.into_inner();
    res
}

/// A minimum average send rate for a peer that reads slowly: over the
/// time spent in writes (idle time between messages does not count), the
/// peer must take `min_rate` bytes a second once past the grace time.
struct Pace {
    min_rate: u64,
    sent: u64,
    /// Ticks of the coarse clock spent waiting in writes.
    writing: u64,
}

/// Write time every connection gets before its rate is held to the
/// minimum, in coarse ticks.
const PACE_GRACE_TICKS: u64 = 10_000 / crate::timer::TICK.as_millis() as u64;

impl Io {
    pub fn new(stream: Stream, write_timeout: Duration) -> Io {
        Io {
            stream,
            write_timeout,
            pace: None,
            last_read: usize::MAX,
            trickle: false,
        }
    }

    /// A client-facing stream: while the peer sends less than a small
    /// read's worth at a time (a head or body trickling in), reads stay
    /// small and buffers are let go between them, so a slow client holds
    /// about what an idle one does.
    pub fn trickle_aware(mut self) -> Io {
        self.trickle = true;
        self
    }

    /// Holds this peer to `min_rate` bytes/s of reading (0: no minimum).
    pub fn paced(mut self, min_rate: u64) -> Io {
        self.pace = (min_rate > 0).then_some(Pace {
            min_rate,
            sent: 0,
            writing: 0,
        });
        self
    }

    /// The time a write of `len` bytes may take: the write timeout, or
    /// less when the peer would fall under its minimum rate.
    fn write_limit(&self, len: usize) -> Duration {
        let Some(p) = &self.pace else {
            return self.write_timeout;
        };
        let tick = crate::timer::TICK.as_millis() as u64;
        let earned = (p.sent + len as u64).saturating_mul(1000) / p.min_rate / tick;
        let left = earned.max(PACE_GRACE_TICKS).saturating_sub(p.writing);
        self.write_timeout
            .min(Duration::from_millis(left.max(1) * tick))
    }

    /// Appends what arrives next to `buf` (reserving room first); `Ok(0)`
    /// means the peer closed its side.
    ///
    /// The first read after [`Io::release_idle`] is a small one: into at
    /// most [`IDLE_READ`] bytes of fresh buffer (a TLS stream reads that
    /// much ciphertext), so a connection waiting for its next request
    /// holds little memory. On a [`Io::trickle_aware`] stream reads stay
    /// small, and buffers are let go between them, while each brings less
    /// than that (a head or body trickling in): a slow client holds about
    /// what an idle one does. Otherwise reads are full-size.
    ///
    /// (Waiting on readiness instead would hold no buffer at all, 1 KiB
    /// less per idle connection, but its extra operation costs about
    /// 2,000 instructions per keep-alive request, 7%: the small read wins.)
    pub async fn read_buf(&mut self, buf: &mut BytesMut) -> io::Result<usize> {
        let small = self.last_read < IDLE_READ && !self.has_buffered();
        if small {
            // What trickled in so far moves to a buffer its size rather
            // than keep a full-size one through the wait.
            if buf.capacity() - buf.len() > 2 * IDLE_READ {
                *buf = BytesMut::from(&buf[..]);
            }
            self.release_idle();
            self.next_read_small();
            if buf.capacity() == buf.len() {
                buf.reserve(IDLE_READ);
            }
        } else if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        let n = match &mut self.stream {
            Stream::Tcp(s) => read_spare(s, buf).await,
            Stream::ServerTls(s) => s.read_buf(buf).await,
            Stream::ClientTls(s) => s.read_buf(buf).await,
            Stream::Moved => Ok(0),
        }?;
        self.last_read = if self.trickle { n } else { usize::MAX };
        Ok(n)
    }

    /// Makes a TLS stream's next socket read a small one.
    fn next_read_small(&mut self) {
        match &mut self.stream {
            Stream::Tcp(_) => {}
            Stream::ServerTls(s) => s.next_read_small(),
            Stream::ClientTls(s) => s.next_read_small(),
            Stream::Moved => {}
        }
    }

    /// Writes all of `data` within the write timeout, handing the buffer
    /// back for reuse. A timed-out write leaves the stream unusable.
    pub async fn write_all<T>(&mut self, data: T) -> (io::Result<()>, T)
    where
        T: monoio::buf::IoBuf + AsRef<[u8]> + Default,
    {
        let len = data.as_ref().len();
        let limit = self.write_limit(len);
        let started = self.pace.as_ref().map(|_| crate::timer::now_tick());
        let result = crate::timer::timeout(limit, self.write_inner(data)).await;
        if let (Some(p), Some(t0)) = (&mut self.pace, started) {
            p.writing += crate::timer::now_tick().saturating_sub(t0);
            p.sent += len as u64;
        }
        match result {
            Ok(r) => r,
            // The buffer went down with the cancelled write; the stream is
            // finished, so an empty one is all the caller needs back. What
            // the kernel still holds for this peer is dropped with it: the
            // close becomes a reset.
            Err(_) => {
                self.reset_on_close();
                (
                    Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "peer stopped reading",
                    )),
                    T::default(),
                )
            }
        }
    }

    /// Makes the close of this stream a reset (`SO_LINGER` 0), dropping
    /// whatever the kernel still holds for a peer that stopped reading.
    fn reset_on_close(&self) {
        let fd = self.fd();
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: setsockopt reads `linger` for the call only; `fd` is this
        // stream's own open socket.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
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
            Stream::Moved => (Err(io::ErrorKind::NotConnected.into()), data),
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
                Stream::Moved => {}
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
    /// The socket, or -1 once it moved (calls on it then fail with EBADF).
    fn fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        match &self.stream {
            Stream::Tcp(s) => s.as_raw_fd(),
            Stream::ServerTls(s) => s.tcp.as_raw_fd(),
            Stream::ClientTls(s) => s.tcp.as_raw_fd(),
            Stream::Moved => -1,
        }
    }

    /// Whether an idle connection is no longer usable, checked without
    /// waiting: the peer closed or reset it, or (plain TCP) sent bytes
    /// nobody asked for. A TLS peer may legitimately send records while
    /// idle (session tickets), so only its end counts.
    pub fn idle_peer_gone(&self) -> bool {
        let mut byte = 0u8;
        // SAFETY: recv writes at most one byte into `byte`, which outlives
        // the call; `fd` is this stream's own open socket; MSG_DONTWAIT
        // keeps the call from blocking the worker.
        let n = unsafe {
            libc::recv(
                self.fd(),
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        match n {
            0 => true,
            1.. => matches!(self.stream, Stream::Tcp(_)),
            _ => io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock,
        }
    }

    /// Frees the stream's own buffers while it waits idle (TLS keeps
    /// ciphertext buffers; plain TCP has none).
    pub fn release_idle(&mut self) {
        self.last_read = 0;
        match &mut self.stream {
            Stream::Tcp(_) => {}
            Stream::ServerTls(s) => s.release_buffers(),
            Stream::ClientTls(s) => s.release_buffers(),
            Stream::Moved => {}
        }
    }

    /// Whether a read would return without touching the socket.
    pub fn has_buffered(&mut self) -> bool {
        match &mut self.stream {
            Stream::Tcp(_) | Stream::Moved => false,
            Stream::ServerTls(s) => s.has_buffered(),
            Stream::ClientTls(s) => s.has_buffered(),
        }
    }

    /// Moves the socket, with its TLS state and anything read but not yet
    /// consumed, into poll form for a relay that reads and writes it at
    /// once. This `Io` is finished afterwards.
    pub fn take_poll(&mut self) -> io::Result<PollIo> {
        match std::mem::replace(&mut self.stream, Stream::Moved) {
            Stream::Tcp(s) => Ok(PollIo::Tcp(s.try_into_poll_io().map_err(|(e, _)| e)?)),
            Stream::ServerTls(s) => {
                let (tcp, conn, early) = s.into_parts();
                let tcp = tcp.try_into_poll_io().map_err(|(e, _)| e)?;
                Ok(PollIo::ServerTls(Box::new(PollTls::new(tcp, conn, early))))
            }
            Stream::ClientTls(s) => {
                let (tcp, conn, early) = s.into_parts();
                let tcp = tcp.try_into_poll_io().map_err(|(e, _)| e)?;
                Ok(PollIo::ClientTls(Box::new(PollTls::new(tcp, conn, early))))
            }
            Stream::Moved => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

/// A socket in poll form (see [`Io::take_poll`]): one type for the relay
/// to drive, as [`Io`] is for the completion form.
pub enum PollIo {
    Tcp(TcpStreamPoll),
    ServerTls(Box<PollTls<ServerConnection>>),
    ClientTls(Box<PollTls<ClientConnection>>),
}

impl AsyncRead for PollIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PollIo::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            PollIo::ServerTls(s) => Pin::new(&mut **s).poll_read(cx, buf),
            PollIo::ClientTls(s) => Pin::new(&mut **s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for PollIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            PollIo::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            PollIo::ServerTls(s) => Pin::new(&mut **s).poll_write(cx, buf),
            PollIo::ClientTls(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PollIo::Tcp(s) => Pin::new(s).poll_flush(cx),
            PollIo::ServerTls(s) => Pin::new(&mut **s).poll_flush(cx),
            PollIo::ClientTls(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            PollIo::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            PollIo::ServerTls(s) => Pin::new(&mut **s).poll_shutdown(cx),
            PollIo::ClientTls(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}
