//! Blocking HTTP/1.1 clients over plain TCP and rustls, independent of the
//! proxy under test. Responses are parsed strictly enough to notice a
//! truncated or mis-framed message.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use crate::backend::header_map;

pub trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

/// Plain TCP with timeouts.
pub fn tcp(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(20))).unwrap();
    s
}

/// A TLS connection verified against `roots`, with SNI `name`.
pub fn tls(
    addr: SocketAddr,
    name: &str,
    roots: rustls::RootCertStore,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let conn = rustls::ClientConnection::new(
        client_config(roots, b"http/1.1"),
        rustls_pki_types::ServerName::try_from(name.to_string()).unwrap(),
    )
    .unwrap();
    rustls::StreamOwned::new(conn, tcp(addr))
}

/// A client configuration trusting `roots` and offering `alpn`.
pub fn client_config(roots: rustls::RootCertStore, alpn: &[u8]) -> Arc<rustls::ClientConfig> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Arc::new(cfg)
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<String> {
        header_map(&self.head)
            .get(&name.to_ascii_lowercase())
            .and_then(|v| v.first().cloned())
    }
    pub fn headers(&self, name: &str) -> Vec<String> {
        header_map(&self.head)
            .get(&name.to_ascii_lowercase())
            .cloned()
            .unwrap_or_default()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response (for a request with `method`) from `s`, consuming
/// exactly its bytes from `pending` + the stream.
pub fn read_response(
    s: &mut dyn Stream,
    pending: &mut Vec<u8>,
    method: &str,
) -> std::io::Result<Response> {
    let head_end = loop {
        if let Some(i) = crate::backend::find(pending, b"\r\n\r\n") {
            break i;
        }
        fill(s, pending)?;
    };
    let head = String::from_utf8_lossy(&pending[..head_end]).into_owned();
    pending.drain(..head_end + 4);
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line in {head:?}")))?;
    let h = header_map(&head);
    let mut body = Vec::new();
    if method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status) {
        // no body
    } else if h
        .get("transfer-encoding")
        .is_some_and(|v| v.iter().any(|x| x.eq_ignore_ascii_case("chunked")))
    {
        loop {
            let line_end = loop {
                if let Some(i) = crate::backend::find(pending, b"\r\n") {
                    break i;
                }
                fill(s, pending)?;
            };
            let size = usize::from_str_radix(
                std::str::from_utf8(&pending[..line_end])
                    .unwrap_or("")
                    .split(';')
                    .next()
                    .unwrap_or(""),
                16,
            )
            .map_err(|_| std::io::Error::other("bad chunk size from proxy"))?;
            pending.drain(..line_end + 2);
            while pending.len() < size + 2 {
                fill(s, pending)?;
            }
            if &pending[size..size + 2] != b"\r\n" {
                return Err(std::io::Error::other("chunk not followed by CRLF"));
            }
            body.extend_from_slice(&pending[..size]);
            pending.drain(..size + 2);
            if size == 0 {
                break;
            }
        }
    } else if let Some(len) = h
        .get("content-length")
        .and_then(|v| v[0].parse::<usize>().ok())
    {
        while pending.len() < len {
            fill(s, pending)?;
        }
        body = pending.drain(..len).collect();
    } else {
        loop {
            match fill(s, pending) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(e),
            }
        }
        body = std::mem::take(pending);
    }
    Ok(Response { status, head, body })
}

fn fill(s: &mut dyn Stream, pending: &mut Vec<u8>) -> std::io::Result<()> {
    let mut buf = [0u8; 16 * 1024];
    let n = match s.read(&mut buf) {
        Ok(n) => n,
        // rustls reports a close without close_notify this way.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => 0,
        Err(e) => return Err(e),
    };
    if n == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    pending.extend_from_slice(&buf[..n]);
    Ok(())
}

/// Sends one request and reads its response on stream `s`.
pub fn request(s: &mut dyn Stream, raw: &str) -> Response {
    s.write_all(raw.as_bytes()).unwrap();
    let method = raw.split(' ').next().unwrap_or("GET").to_string();
    let mut pending = Vec::new();
    read_response(s, &mut pending, &method).unwrap()
}

/// `GET path` with `Host: host` over a fresh connection.
pub fn get(s: &mut dyn Stream, host: &str, path: &str) -> Response {
    request(s, &format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n"))
}

/// Writes raw bytes on a fresh TCP connection and returns everything the
/// server sends until it closes (or 5 s of silence).
pub fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> (String, bool) {
    let mut s = tcp(addr);
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(bytes);
    read_to_close(&mut s)
}

/// Everything `s` sends until it closes, or until its read timeout passes
/// in silence: (text, whether it closed).
pub fn read_to_close(s: &mut dyn Stream) -> (String, bool) {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break false
            }
            Err(_) => break true,
        }
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}
