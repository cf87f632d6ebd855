//! rustls over monoio's completion-based sockets.
//!
//! rustls is sans-I/O: it consumes ciphertext from any `io::Read` and
//! produces it into any `io::Write`. io_uring wants owned buffers, so this
//! adapter keeps one ciphertext buffer per direction, reads from the socket
//! into it, feeds it to rustls incrementally (rustls may refuse more while
//! its plaintext buffer is full, so the unconsumed tail stays queued), and
//! hands plaintext to the caller without zero-filling (via `BufRead`).
//! Owning the adapter also gives the HTTP layer the negotiated SNI name and
//! protocol version, which the 421 check needs.

use std::io::{self, BufRead, Write};
use std::ops::{Deref, DerefMut};

use bytes::BytesMut;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::net::TcpStream;
use rustls::{ConnectionCommon, SideData};

/// Largest TLS record on the wire plus header slack.
const CIPHERTEXT_BUF: usize = 16 * 1024 + 512;

pub struct TlsStream<C> {
    pub tcp: TcpStream,
    pub conn: C,
    rbuf: Vec<u8>,
    rpos: usize,
    wbuf: Vec<u8>,
    tcp_eof: bool,
    /// The next socket read is a small one ([`crate::io::IDLE_READ`]).
    small: bool,
    /// Client-facing: after a socket read that brought less than a small
    /// read's worth (TLS records trickling in), the next is small too.
    trickle: bool,
}

impl<C, SD> TlsStream<C>
where
    C: DerefMut + Deref<Target = ConnectionCommon<SD>>,
    SD: SideData,
{
    pub fn new(tcp: TcpStream, conn: C) -> Self {
        TlsStream {
            tcp,
            conn,
            rbuf: Vec::new(),
            rpos: 0,
            wbuf: Vec::new(),
            tcp_eof: false,
            small: false,
            trickle: false,
        }
    }

    /// Reads small while the peer trickles (see the `trickle` field),
    /// starting with the first read: a connection that has not sent its
    /// ClientHello yet (most hellos fit in a small read) holds no
    /// full-size buffer.
    pub fn trickle_aware(&mut self) {
        self.trickle = true;
        self.small = true;
    }

    /// The socket, the TLS state, and ciphertext read but not yet given
    /// to rustls: everything a poll-mode stream needs to carry on.
    pub fn into_parts(self) -> (TcpStream, C, Vec<u8>) {
        let rest = self.rbuf.get(self.rpos..).unwrap_or_default().to_vec();
        (self.tcp, self.conn, rest)
    }

    /// Makes the next socket read a small one.
    pub fn next_read_small(&mut self) {
        self.small = true;
    }

    /// Drives the handshake to completion.
    pub async fn handshake(&mut self) -> io::Result<()> {
        while self.conn.is_handshaking() {
            if self.conn.wants_write() {
                self.flush_tls().await?;
                continue;
            }
            if self.tcp_eof {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed during the TLS handshake",
                ));
            }
            self.feed().await?;
        }
        self.flush_tls().await
    }

    /// Gives rustls more ciphertext: the queued tail first, else one socket
    /// read. Protocol errors send rustls's alert before returning.
    async fn feed(&mut self) -> io::Result<()> {
        if self.rpos >= self.rbuf.len() {
            let mut buf = std::mem::take(&mut self.rbuf);
            buf.clear();
            let want = if self.small {
                crate::io::IDLE_READ
            } else {
                CIPHERTEXT_BUF
            };
            if buf.capacity() < want || (self.small && buf.capacity() > 2 * want) {
                buf = Vec::with_capacity(want);
            }
            let (res, buf) = self.tcp.read(buf).await;
            self.rbuf = buf;
            self.rpos = 0;
            let n = res?;
            self.small = self.trickle && n < crate::io::IDLE_READ;
            if n == 0 {
                self.tcp_eof = true;
                // Tell rustls about end-of-stream so it can tell a clean
                // close_notify from a truncation.
                let _ = self.conn.read_tls(&mut io::empty());
                return Ok(());
            }
        }
        let mut pending = &self.rbuf[self.rpos..];
        let before = pending.len();
        let read = self.conn.read_tls(&mut pending);
        self.rpos += before - pending.len();
        let full = match read {
            Ok(_) => false,
            // rustls's buffers are full: process what it holds, and let the
            // caller drain plaintext before feeding it more.
            Err(e) if e.kind() == io::ErrorKind::Other => true,
            Err(e) => return Err(e),
        };
        match self.conn.process_new_packets() {
            Err(e) => {
                let _ = self.flush_tls().await;
                Err(io::Error::new(io::ErrorKind::InvalidData, e))
            }
            Ok(state) if full && state.plaintext_bytes_to_read() == 0 => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "TLS peer sent more than can be buffered",
            )),
            Ok(_) => Ok(()),
        }
    }

    /// Writes every TLS record rustls has queued.
    pub async fn flush_tls(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            let mut buf = std::mem::take(&mut self.wbuf);
            buf.clear();
            self.conn.write_tls(&mut buf)?;
            let (res, buf) = self.tcp.write_all(buf).await;
            self.wbuf = buf;
            res?;
        }
        Ok(())
    }

    /// Appends decrypted bytes to `dst`; `Ok(0)` is end of stream.
    pub async fn read_buf(&mut self, dst: &mut BytesMut) -> io::Result<usize> {
        loop {
            match self.conn.reader().fill_buf() {
                Ok(chunk) if !chunk.is_empty() => {
                    let n = chunk.len();
                    dst.extend_from_slice(chunk);
                    self.conn.reader().consume(n);
                    return Ok(n);
                }
                Ok(_) => return Ok(0),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // Closed without close_notify: to HTTP framing this is just
                // end of stream; truncation is caught by the message framing.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if self.tcp_eof && self.rpos >= self.rbuf.len() {
                return Ok(0);
            }
            // Our own writes (for example session tickets) go out before we
            // wait for the peer.
            self.flush_tls().await?;
            self.feed().await?;
        }
    }

    /// Encrypts and sends all of `data`.
    pub async fn write_all(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = self.conn.writer().write(data)?;
            data = &data[n..];
            self.flush_tls().await?;
            if n == 0 && !self.conn.wants_write() {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "TLS connection no longer accepts data",
                ));
            }
        }
        Ok(())
    }

    /// Sends close_notify and shuts the socket for writing.
    pub async fn shutdown(&mut self) {
        self.conn.send_close_notify();
        let _ = self.flush_tls().await;
        let _ = self.tcp.shutdown().await;
    }

    /// Frees the ciphertext buffers when nothing is pending in them (an
    /// idle connection then holds only rustls's own state); they are
    /// allocated again on the next read or write.
    pub fn release_buffers(&mut self) {
        if self.rpos >= self.rbuf.len() {
            self.rbuf = Vec::new();
            self.rpos = 0;
        }
        if self.wbuf.is_empty() {
            self.wbuf = Vec::new();
        }
    }

    /// Plaintext or unprocessed ciphertext is already in memory.
    pub fn has_buffered(&mut self) -> bool {
        self.rpos < self.rbuf.len()
            || self.tcp_eof
            || self.conn.reader().fill_buf().is_ok_and(|c| !c.is_empty())
    }
}
