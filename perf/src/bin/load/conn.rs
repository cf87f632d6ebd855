//! Opening a connection to the target: TCP, then TLS when the URL says
//! `https`, then (for HTTP/2) the h2 handshake.
//!
//! The TLS layer is the data plane's own (`postern_dataplane::tls`):
//! rustls with the ring provider over completion I/O, and for HTTP/2 the
//! same state moved to poll form once the handshake is done. So the load
//! generator costs what the edge costs per byte, and its figures compare
//! with the edge's own.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use monoio::net::TcpStream;
use postern_dataplane::io::{Io, Stream};
use postern_dataplane::tls::poll::PollTls;
use postern_dataplane::tls::stream::TlsStream;
use rustls::pki_types::ServerName;
use rustls::ClientConnection;

use crate::stats::ErrorKind;

/// Where and how to connect.
pub struct Dial {
    pub addr: SocketAddr,
    /// TLS config and server name, for `https` URLs.
    pub tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    pub connect_timeout: Duration,
    /// Longest a single write may wait.
    pub write_timeout: Duration,
}

/// How the TLS handshake went, for the handshake-rate scenarios.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    None,
    Full,
    Resumed,
}

async fn tcp(dial: &Dial) -> Result<TcpStream, ErrorKind> {
    match monoio::time::timeout(dial.connect_timeout, TcpStream::connect_addr(dial.addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(_)) => Err(ErrorKind::Connect),
        Err(_) => Err(ErrorKind::Timeout),
    }
}

async fn tls(
    dial: &Dial,
    tcp: TcpStream,
    want_alpn: &[u8],
) -> Result<(TlsStream<ClientConnection>, Handshake), ErrorKind> {
    let Some((cfg, name)) = &dial.tls else {
        return Err(ErrorKind::Tls);
    };
    let conn = ClientConnection::new(cfg.clone(), name.clone()).map_err(|_| ErrorKind::Tls)?;
    let mut s = TlsStream::new(tcp, conn);
    match monoio::time::timeout(dial.connect_timeout, s.handshake()).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return Err(ErrorKind::Tls),
        Err(_) => return Err(ErrorKind::Timeout),
    }
    if s.conn.alpn_protocol() != Some(want_alpn) {
        return Err(ErrorKind::Tls);
    }
    let kind = match s.conn.handshake_kind() {
        Some(rustls::HandshakeKind::Resumed) => Handshake::Resumed,
        _ => Handshake::Full,
    };
    Ok((s, kind))
}

/// An HTTP/1.1 connection.
pub async fn http1(dial: &Dial) -> Result<(Io, Handshake), ErrorKind> {
    let tcp = tcp(dial).await?;
    if dial.tls.is_none() {
        return Ok((
            Io::new(Stream::Tcp(tcp), dial.write_timeout),
            Handshake::None,
        ));
    }
    let (s, kind) = tls(dial, tcp, b"http/1.1").await?;
    Ok((
        Io::new(Stream::ClientTls(Box::new(s)), dial.write_timeout),
        kind,
    ))
}

/// An HTTP/2 connection (TLS with ALPN `h2`, or prior knowledge over
/// plain TCP), its driver spawned on this thread's runtime.
pub async fn http2(dial: &Dial) -> Result<(h2::client::SendRequest<Bytes>, Handshake), ErrorKind> {
    let tcp = tcp(dial).await?;
    let mut builder = h2::client::Builder::new();
    // Large windows, as h2load's defaults: flow control should not be
    // what is measured.
    builder
        .initial_window_size((1 << 24) - 1)
        .initial_connection_window_size((1 << 30) - 1);
    if dial.tls.is_none() {
        let io = tcp.try_into_poll_io().map_err(|_| ErrorKind::Io)?;
        let (send, conn) = timed_handshake(dial, builder.handshake(io)).await?;
        monoio::spawn(async move {
            let _ = conn.await;
        });
        return Ok((send, Handshake::None));
    }
    let (s, kind) = tls(dial, tcp, b"h2").await?;
    let (tcp, conn, early) = s.into_parts();
    let tcp = tcp.try_into_poll_io().map_err(|_| ErrorKind::Io)?;
    let io = PollTls::new(tcp, conn, early);
    let (send, conn) = timed_handshake(dial, builder.handshake(io)).await?;
    monoio::spawn(async move {
        let _ = conn.await;
    });
    Ok((send, kind))
}

async fn timed_handshake<F, T>(dial: &Dial, f: F) -> Result<T, ErrorKind>
where
    F: std::future::Future<Output = Result<T, h2::Error>>,
{
    match monoio::time::timeout(dial.connect_timeout, f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) => Err(ErrorKind::Reset),
        Err(_) => Err(ErrorKind::Timeout),
    }
}
