//! HTTP/2 clients for the edge: the h2 crate over TLS (ALPN `h2`) or
//! cleartext with prior knowledge, run on a monoio runtime of the test's
//! own ([`block_on`]); and a raw frame writer and reader for the attack
//! cases, which must send frames no conforming library would.

use std::future::Future;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Runs the future `f` makes on a fresh single-threaded runtime, on a
/// thread of its own: the test's thread keeps its blocking sockets free of
/// the runtime's signals (an io_uring runtime left reads interrupted).
pub fn block_on<F, Fut, T>(f: F) -> T
where
    F: FnOnce() -> Fut + Send,
    Fut: Future<Output = T>,
    T: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
                .enable_timer()
                .build()
                .expect("a test runtime")
                .block_on(f())
        })
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e))
    })
}

/// An open HTTP/2 connection to the edge.
pub struct H2 {
    pub send: h2::client::SendRequest<Bytes>,
}

/// A response read to its end.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
    pub trailers: Option<http::HeaderMap>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

fn builder() -> h2::client::Builder {
    let mut b = h2::client::Builder::new();
    b.initial_window_size(1 << 20)
        .initial_connection_window_size(4 << 20);
    b
}

impl H2 {
    /// TLS with SNI `name` verified against `roots`, ALPN `h2` only.
    pub async fn tls(addr: SocketAddr, name: &str, roots: rustls::RootCertStore) -> H2 {
        let tcp = monoio::net::TcpStream::connect_addr(addr).await.unwrap();
        let tcp = tcp.try_into_poll_io().map_err(|(e, _)| e).unwrap();
        let cfg = crate::client::client_config(roots, b"h2");
        let name = rustls_pki_types::ServerName::try_from(name.to_string()).unwrap();
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .expect("TLS with ALPN h2");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (send, conn) = builder().handshake(tls).await.expect("HTTP/2 handshake");
        monoio::spawn(async move {
            let _ = conn.await;
        });
        H2 { send }
    }

    /// Cleartext with prior knowledge.
    pub async fn h2c(addr: SocketAddr) -> H2 {
        let tcp = monoio::net::TcpStream::connect_addr(addr).await.unwrap();
        let tcp = tcp.try_into_poll_io().map_err(|(e, _)| e).unwrap();
        let (send, conn) = builder().handshake(tcp).await.expect("HTTP/2 handshake");
        monoio::spawn(async move {
            let _ = conn.await;
        });
        H2 { send }
    }

    /// Sends a request with an optional body and reads the whole response.
    pub async fn request(
        &mut self,
        req: http::Request<()>,
        body: Option<Bytes>,
    ) -> Result<Resp, h2::Error> {
        let mut send = self.send.clone().ready().await?;
        let (resp, mut tx) = send.send_request(req, body.is_none())?;
        if let Some(b) = body {
            send_all(&mut tx, b, true).await?;
        }
        read(resp.await?).await
    }

    /// Opens a WebSocket with an extended CONNECT (RFC 8441): the answer
    /// and the stream's sending half.
    pub async fn websocket(
        &self,
        authority: &str,
        path: &str,
    ) -> (http::Response<h2::RecvStream>, h2::SendStream<Bytes>) {
        let mut send = self.send.clone().ready().await.unwrap();
        let mut req = http::Request::builder()
            .method("CONNECT")
            .uri(format!("https://{authority}{path}"))
            .header("sec-websocket-version", "13")
            .body(())
            .unwrap();
        req.extensions_mut()
            .insert(h2::ext::Protocol::from_static("websocket"));
        let (resp, tx) = send.send_request(req, false).unwrap();
        (resp.await.unwrap(), tx)
    }

    /// `GET https://{authority}{path}`.
    pub async fn get(&mut self, authority: &str, path: &str) -> Result<Resp, h2::Error> {
        self.request(get(authority, path), None).await
    }
}

/// A GET request for `authority` and `path`.
pub fn get(authority: &str, path: &str) -> http::Request<()> {
    http::Request::get(format!("https://{authority}{path}"))
        .body(())
        .unwrap()
}

/// Reads a response's body and trailers.
pub async fn read(resp: http::Response<h2::RecvStream>) -> Result<Resp, h2::Error> {
    let (parts, mut body) = resp.into_parts();
    let mut data = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk?;
        let _ = body.flow_control().release_capacity(chunk.len());
        data.extend_from_slice(&chunk);
    }
    let trailers = body.trailers().await?;
    Ok(Resp {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body: data,
        trailers,
    })
}

/// Sends `data` as the window allows.
pub async fn send_all(
    tx: &mut h2::SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
) -> Result<(), h2::Error> {
    if data.is_empty() && end {
        return tx.send_data(data, true);
    }
    while !data.is_empty() {
        tx.reserve_capacity(data.len());
        let n = match std::future::poll_fn(|cx| tx.poll_capacity(cx)).await {
            Some(n) => n?,
            None => return Err(h2::Error::from(h2::Reason::CANCEL)),
        };
        let piece = data.split_to(n.min(data.len()));
        tx.send_data(piece, end && data.is_empty())?;
    }
    Ok(())
}

// ---- Raw frames ----

pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
pub const DATA: u8 = 0;
pub const HEADERS: u8 = 1;
pub const RST_STREAM: u8 = 3;
pub const SETTINGS: u8 = 4;
pub const PING: u8 = 6;
pub const GOAWAY: u8 = 7;
pub const WINDOW_UPDATE: u8 = 8;
pub const CONTINUATION: u8 = 9;
pub const END_STREAM: u8 = 1;
pub const END_HEADERS: u8 = 4;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;
pub const PROTOCOL_ERROR: u32 = 1;

/// One frame: its 9-byte header, built by hand, then the payload.
pub fn frame(ty: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len();
    let mut f = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, ty, flags];
    f.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK block of literal fields without indexing or Huffman coding.
pub fn hpack(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0);
        int7(&mut out, name.len());
        out.extend_from_slice(name.as_bytes());
        int7(&mut out, value.len());
        out.extend_from_slice(value.as_bytes());
    }
    out
}

/// An HPACK integer with a 7-bit prefix (Huffman bit clear).
fn int7(out: &mut Vec<u8>, mut n: usize) {
    if n < 127 {
        out.push(n as u8);
        return;
    }
    out.push(127);
    n -= 127;
    while n >= 128 {
        out.push((n % 128 + 128) as u8);
        n /= 128;
    }
    out.push(n as u8);
}

/// The request fields of a GET for `authority` and `path`.
pub fn request_fields<'a>(authority: &'a str, path: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        (":method", "GET"),
        (":scheme", "http"),
        (":authority", authority),
        (":path", path),
    ]
}

/// A frame as read back.
#[derive(Debug, Clone)]
pub struct Frame {
    pub ty: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The error code of a GOAWAY or RST_STREAM.
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.ty {
            GOAWAY => 4,
            RST_STREAM => 0,
            _ => return None,
        };
        self.payload
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// A blocking HTTP/2 connection with prior knowledge that writes whatever
/// bytes it is given.
pub struct Raw {
    pub tcp: TcpStream,
    pending: Vec<u8>,
}

impl Raw {
    /// Connects, sends the preface and empty SETTINGS.
    pub fn h2c(addr: SocketAddr) -> Raw {
        let tcp = TcpStream::connect(addr).unwrap();
        tcp.set_nodelay(true).unwrap();
        let mut r = Raw {
            tcp,
            pending: Vec::new(),
        };
        r.send(PREFACE);
        r.send(&frame(SETTINGS, 0, 0, &[]));
        r
    }

    /// Writes bytes; `false` once the edge has closed.
    pub fn try_send(&mut self, bytes: &[u8]) -> bool {
        self.tcp.write_all(bytes).is_ok()
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).unwrap();
    }

    /// The next frame within `limit`; `None` on close or timeout.
    pub fn next(&mut self, limit: Duration) -> Option<Frame> {
        let deadline = Instant::now() + limit;
        loop {
            if self.pending.len() >= 9 {
                let len = (usize::from(self.pending[0]) << 16)
                    | (usize::from(self.pending[1]) << 8)
                    | usize::from(self.pending[2]);
                if self.pending.len() >= 9 + len {
                    let f: Vec<u8> = self.pending.drain(..9 + len).collect();
                    return Some(Frame {
                        ty: f[3],
                        flags: f[4],
                        stream: u32::from_be_bytes([f[5], f[6], f[7], f[8]]) & 0x7fff_ffff,
                        payload: f[9..].to_vec(),
                    });
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.tcp.set_read_timeout(Some(left)).unwrap();
            let mut buf = [0u8; 16384];
            match self.tcp.read(&mut buf) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.pending.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// Reads frames until one satisfies `f`, within `limit`.
    pub fn until(&mut self, limit: Duration, f: impl Fn(&Frame) -> bool) -> Option<Frame> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let fr = self.next(left)?;
            if f(&fr) {
                return Some(fr);
            }
        }
    }

    /// Whether the edge closed the connection within `limit` (reads and
    /// drops whatever comes before the end).
    pub fn closed_within(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.tcp.set_read_timeout(Some(left)).unwrap();
            let mut buf = [0u8; 16384];
            match self.tcp.read(&mut buf) {
                Ok(0) => return true,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
                Ok(_) => {}
            }
        }
    }
}

/// A TLS front for a cleartext-only HTTP/2 tool: every connection to the
/// returned address is carried, as it comes, over a TLS connection to
/// `target` (SNI `name` verified against `roots`, ALPN `h2` only), so the
/// tool's frames reach the edge's TLS listener unchanged. An end or error
/// on either side is passed on. The front serves until the test process
/// ends.
pub fn tls_front(target: SocketAddr, name: &str, roots: rustls::RootCertStore) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    listener.set_nonblocking(true).unwrap();
    let cfg = crate::client::client_config(roots, b"h2");
    let name = rustls_pki_types::ServerName::try_from(name.to_string()).unwrap();
    std::thread::spawn(move || {
        // The epoll driver: its accept sets close-on-exec, io_uring's does
        // not, and an edge another test starts meanwhile would inherit the
        // socket and hold it open after this front closes it.
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .expect("a test runtime")
            .block_on(async move {
                let listener = monoio::net::TcpListener::from_std(listener).unwrap();
                while let Ok((plain, _)) = listener.accept().await {
                    let (cfg, name) = (cfg.clone(), name.clone());
                    monoio::spawn(async move {
                        let Ok(mut plain) = plain.try_into_poll_io() else {
                            return;
                        };
                        let Ok(tcp) = monoio::net::TcpStream::connect_addr(target).await else {
                            return;
                        };
                        let _ = tcp.set_nodelay(true);
                        let Ok(tcp) = tcp.try_into_poll_io() else {
                            return;
                        };
                        let Ok(mut tls) = tokio_rustls::TlsConnector::from(cfg)
                            .connect(name, tcp)
                            .await
                        else {
                            return;
                        };
                        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
                        let _ = tokio::io::copy_bidirectional(&mut plain, &mut tls).await;
                    });
                }
            })
    });
    addr
}
