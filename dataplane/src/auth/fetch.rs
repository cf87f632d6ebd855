//! A small blocking HTTP/1.1 client for talking to identity providers:
//! discovery, signing keys and the token endpoint. It runs on control
//! threads only (name lookups and socket waits block), one request per
//! connection, with a bounded answer and timeouts on every step.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

/// Largest answer read from a provider (discovery and key sets are a few
/// KiB; a provider sending more is broken or hostile).
pub const MAX_ANSWER: usize = 1024 * 1024;
const TIMEOUT: Duration = Duration::from_secs(10);

/// A provider's answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

/// Where a URL points.
struct Target<'a> {
    tls: bool,
    host: &'a str,
    port: u16,
    path: &'a str,
}

fn target(url: &str) -> Result<Target<'_>, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("{url}: only http and https URLs can be fetched"));
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(end);
    let path = path.split('#').next().unwrap_or("");
    let (host, port) =
        postern_control::url::split_host_port(authority).map_err(|e| format!("{url}: {e}"))?;
    if host.is_empty() {
        return Err(format!("{url}: no host"));
    }
    Ok(Target {
        tls,
        host: host.trim_start_matches('[').trim_end_matches(']'),
        port: port.unwrap_or(if tls { 443 } else { 80 }),
        path: if path.is_empty() { "/" } else { path },
    })
}

/// One request: `GET` when `form` is `None`, else a form `POST`.
pub fn request(
    tls: &Arc<rustls::ClientConfig>,
    url: &str,
    headers: &[(&str, &str)],
    form: Option<&str>,
) -> Result<Answer, String> {
    let t = target(url)?;
    let addr = (t.host, t.port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {}: {e}", t.host))?
        .next()
        .ok_or_else(|| format!("{} resolves to no address", t.host))?;
    let tcp = TcpStream::connect_timeout(&addr, TIMEOUT)
        .map_err(|e| format!("cannot connect to {} ({addr}): {e}", t.host))?;
    let _ = tcp.set_read_timeout(Some(TIMEOUT));
    let _ = tcp.set_write_timeout(Some(TIMEOUT));
    let _ = tcp.set_nodelay(true);

    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: postern\r\nAccept: application/json\r\nConnection: close\r\n",
        if form.is_some() { "POST" } else { "GET" },
        t.path,
        host_header(&t),
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(body) = form {
        head.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    head.push_str("\r\n");
    head.push_str(form.unwrap_or(""));

    let raw = if t.tls {
        let name = rustls_pki_types::ServerName::try_from(t.host.to_string())
            .map_err(|e| format!("{}: {e}", t.host))?;
        let conn = rustls::ClientConnection::new(tls.clone(), name)
            .map_err(|e| format!("TLS with {}: {e}", t.host))?;
        let mut s = rustls::StreamOwned::new(conn, tcp);
        exchange(&mut s, head.as_bytes()).map_err(|e| format!("{url}: {e}"))?
    } else {
        let mut s = tcp;
        exchange(&mut s, head.as_bytes()).map_err(|e| format!("{url}: {e}"))?
    };
    parse(&raw).map_err(|e| format!("{url}: {e}"))
}

fn host_header(t: &Target<'_>) -> String {
    let host = if t.host.contains(':') {
        format!("[{}]", t.host)
    } else {
        t.host.to_string()
    };
    if t.port == if t.tls { 443 } else { 80 } {
        host
    } else {
        format!("{host}:{}", t.port)
    }
}

/// Writes the request and reads until the answer is complete by its
/// framing, the server closes, or the bound.
fn exchange<S: Read + Write>(s: &mut S, request: &[u8]) -> Result<Vec<u8>, String> {
    s.write_all(request)
        .and_then(|_| s.flush())
        .map_err(|e| format!("sending the request failed: {e}"))?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&chunk[..n]);
                if raw.len() > MAX_ANSWER + 64 * 1024 {
                    return Err(format!("the answer is larger than {MAX_ANSWER} bytes"));
                }
                // A server that keeps the connection open despite
                // `Connection: close` has still said all it will.
                if complete(&raw) {
                    break;
                }
            }
            // A TLS peer that closes without close_notify: what came is
            // checked against its framing below.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("reading the answer failed: {e}")),
        }
    }
    Ok(raw)
}

/// Whether `raw` holds a whole response by its own framing (a
/// Content-Length body, or the last chunk).
fn complete(raw: &[u8]) -> bool {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let Ok(httparse::Status::Complete(head_len)) = resp.parse(raw) else {
        return false;
    };
    let rest = &raw[head_len..];
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            return std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .is_some_and(|n| rest.len() >= n);
        }
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return dechunk(rest).is_ok();
        }
    }
    false
}

/// Splits a complete response into status and body (Content-Length,
/// chunked, or up to the close).
fn parse(raw: &[u8]) -> Result<Answer, String> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(raw) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Err("the answer ended inside its head".into()),
        Err(e) => return Err(format!("the answer is not HTTP: {e}")),
    };
    let status = resp.code.unwrap_or(0);
    let mut length = None;
    let mut chunked = false;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok());
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = h.value.to_ascii_lowercase().ends_with(b"chunked");
        }
    }
    let rest = &raw[head_len..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        if rest.len() < n {
            return Err(format!(
                "the answer ended after {} of {n} bytes",
                rest.len()
            ));
        }
        rest[..n].to_vec()
    } else {
        rest.to_vec()
    };
    if body.len() > MAX_ANSWER {
        return Err(format!("the answer is larger than {MAX_ANSWER} bytes"));
    }
    Ok(Answer { status, body })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = memchr::memmem::find(rest, b"\r\n").ok_or("a chunk ended early")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|_| "a bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "a bad chunk size")?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if rest.len() < size + 2 || body.len() + size > MAX_ANSWER {
            return Err("a chunk ended early or the answer is too large".into());
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_their_parts() {
        let t = target("https://login.example.com/tenant/v2.0?x=1").unwrap();
        assert!(t.tls);
        assert_eq!(
            (t.host, t.port, t.path),
            ("login.example.com", 443, "/tenant/v2.0?x=1")
        );
        let t = target("http://127.0.0.1:8080").unwrap();
        assert_eq!((t.host, t.port, t.path), ("127.0.0.1", 8080, "/"));
        let t = target("http://[::1]:9/jwks").unwrap();
        assert_eq!((t.host, t.port), ("::1", 9));
        assert!(target("ftp://x/").is_err());
        assert!(target("https:///x").is_err());
    }

    #[test]
    fn answers_are_framed_by_length_or_chunks() {
        let a = parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}extra").unwrap();
        assert_eq!((a.status, &a.body[..]), (200, &b"{}"[..]));
        let a = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{\"\r\n3;x=y\r\na\":\r\n1\r\n1\r\n0\r\n\r\n").unwrap();
        assert_eq!(a.body, b"{\"a\":1");
        let a = parse(b"HTTP/1.1 404 Not Found\r\n\r\nnope").unwrap();
        assert_eq!((a.status, &a.body[..]), (404, &b"nope"[..]));
        assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort").is_err());
        assert!(parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err());
        assert!(parse(b"garbage").is_err());
    }
}
