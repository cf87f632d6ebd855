//! A TLS connection in readiness (poll) form, for the HTTP/2 server and
//! for relays that carry both directions at once.
//!
//! The h2 crate drives a connection through tokio's `AsyncRead` and
//! `AsyncWrite`. A client that chose `h2` by ALPN has already finished its
//! handshake on the completion-based [`super::stream::TlsStream`]; its
//! socket becomes a poll-mode socket and its rustls state moves here
//! unchanged, with any ciphertext that was read but not yet decrypted.
//! An upgraded (WebSocket) connection, client or backend side, switches
//! the same way: a completion read cannot be left pending while the same
//! connection writes, a readiness wait can.
//! rustls is sans-I/O, so reading and writing records through a socket
//! that answers `WouldBlock` is all this layer does.

use std::io::{self, Read, Write};
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::task::{Context, Poll};

use monoio::net::tcp::stream_poll::TcpStreamPoll;
use rustls::{ConnectionCommon, SideData};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

pub struct PollTls<C> {
    tcp: TcpStreamPoll,
    conn: C,
    /// Ciphertext read before the switch, fed to rustls first.
    early: Vec<u8>,
    early_pos: usize,
    eof: bool,
    closing: bool,
    /// A flush was put off by one turn of the scheduler (see `poll_flush`).
    deferred: bool,
}

impl<C, SD> PollTls<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<SD>>,
    SD: SideData,
{
    pub fn new(tcp: TcpStreamPoll, conn: C, early: Vec<u8>) -> PollTls<C> {
        PollTls {
            tcp,
            conn,
            early,
            early_pos: 0,
            eof: false,
            closing: false,
            deferred: false,
        }
    }

    /// Writes queued records until rustls has none or the socket is full.
    fn write_records(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.conn.wants_write() {
            let mut w = SyncWrite {
                tcp: &mut self.tcp,
                cx,
            };
            match self.conn.write_tls(&mut w) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Gives rustls more ciphertext (what was read before the switch,
    /// then the socket) and processes it.
    fn read_records(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let read = if self.early_pos < self.early.len() {
            let mut rest = &self.early[self.early_pos..];
            let before = rest.len();
            let r = self.conn.read_tls(&mut rest);
            self.early_pos += before - rest.len();
            if self.early_pos >= self.early.len() {
                self.early = Vec::new();
                self.early_pos = 0;
            }
            r
        } else {
            let mut r = SyncRead {
                tcp: &mut self.tcp,
                cx,
            };
            self.conn.read_tls(&mut r)
        };
        match read {
            Ok(0) => {
                self.eof = true;
                return Poll::Ready(Ok(()));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
            Err(e) => return Poll::Ready(Err(e)),
        }
        if let Err(e) = self.conn.process_new_packets() {
            // The alert rustls queued goes out if the socket takes it now.
            let _ = self.write_records(cx);
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, e)));
        }
        Poll::Ready(Ok(()))
    }
}

struct SyncRead<'a, 'b> {
    tcp: &'a mut TcpStreamPoll,
    cx: &'a mut Context<'b>,
}

impl Read for SyncRead<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut rb = ReadBuf::new(buf);
        match Pin::new(&mut *self.tcp).poll_read(self.cx, &mut rb) {
            Poll::Ready(Ok(())) => Ok(rb.filled().len()),
            Poll::Ready(Err(e)) => Err(e),
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
}

struct SyncWrite<'a, 'b> {
    tcp: &'a mut TcpStreamPoll,
    cx: &'a mut Context<'b>,
}

impl Write for SyncWrite<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match Pin::new(&mut *self.tcp).poll_write(self.cx, buf) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match Pin::new(&mut *self.tcp).poll_write_vectored(self.cx, bufs) {
            Poll::Ready(r) => r,
            Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<C, SD> AsyncRead for PollTls<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<SD>> + Unpin,
    SD: SideData,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            match this.conn.reader().read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // Closed without close_notify: end of stream to HTTP/2,
                // whose own framing tells a truncation.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Poll::Ready(Ok(()));
                }
                Err(e) => return Poll::Ready(Err(e)),
            }
            if this.eof {
                return Poll::Ready(Ok(()));
            }
            // Session tickets and key updates go out before waiting.
            if let Poll::Ready(Err(e)) = this.write_records(cx) {
                return Poll::Ready(Err(e));
            }
            match this.read_records(cx) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
        }
    }
}

impl<C, SD> AsyncWrite for PollTls<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<SD>> + Unpin,
    SD: SideData,
{
    /// Encrypts into rustls's queue; the socket gets it at the next flush,
    /// or at once when the queue is full (rustls bounds it, 64 KiB).
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let mut written = 0;
        loop {
            written += this.conn.writer().write(&buf[written..])?;
            if written == buf.len() {
                return Poll::Ready(Ok(written));
            }
            match this.write_records(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending if written > 0 => return Poll::Ready(Ok(written)),
                Poll::Pending => return Poll::Pending,
            }
            if written == buf.len() {
                return Poll::Ready(Ok(written));
            }
        }
    }

    /// Puts a flush off by one turn of the scheduler: the HTTP/2
    /// connection flushes whenever its frames run out, which with many
    /// streams answering at once is once or twice per response; letting
    /// the other streams' tasks run first gathers their frames into the
    /// same socket write (a write per response became a write per batch).
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.conn.writer().flush()?;
        if this.conn.wants_write() && !this.deferred {
            this.deferred = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        this.deferred = false;
        match this.write_records(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.tcp).poll_flush(cx),
            other => other,
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.closing {
            this.closing = true;
            this.conn.send_close_notify();
        }
        match this.write_records(cx) {
            Poll::Ready(Ok(())) => Pin::new(&mut this.tcp).poll_shutdown(cx),
            other => other,
        }
    }
}

/// A plain socket that already gave some bytes away (read while telling
/// HTTP/1.1 from HTTP/2 with prior knowledge): those are read first.
pub struct Prefixed {
    pub tcp: TcpStreamPoll,
    pub prefix: bytes::Bytes,
}

impl AsyncRead for Prefixed {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}
