//! Real HTTP/1.1 backends on loopback, written independently of Postern.
//!
//! [`Backend::start`] serves requests with a handler over keep-alive
//! connections. Two paths are built in for streaming tests and never
//! buffer: `POST /__sink` reads the body (Content-Length or chunked) and
//! answers with its length and checksum; `GET /__stream/N` sends N bytes of
//! a known pattern. [`RawBackend`] answers every request with fixed bytes,
//! for backends that misbehave on purpose.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A request as the backend saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    /// Header lines in order, names as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn headers_named(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }
}

/// What the handler answers.
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Send the body chunked instead of with Content-Length.
    pub chunked: bool,
    /// Sleep before answering.
    pub delay: Duration,
}

impl Reply {
    pub fn ok(body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status: 200,
            headers: vec![],
            body: body.into(),
            chunked: false,
            delay: Duration::ZERO,
        }
    }
    pub fn status(mut self, s: u16) -> Reply {
        self.status = s;
        self
    }
    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn chunked(mut self) -> Reply {
        self.chunked = true;
        self
    }
    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }
}

type Handler = dyn Fn(&Seen) -> Reply + Send + Sync;

pub struct Backend {
    pub addr: SocketAddr,
    /// Every request seen, in arrival order.
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub connections: Arc<AtomicUsize>,
    stopped: Arc<std::sync::atomic::AtomicBool>,
}

/// The pattern byte at offset `i` of a streamed body.
pub fn pattern(i: u64) -> u8 {
    (i.wrapping_mul(31) ^ (i >> 11)) as u8
}

/// Order-sensitive checksum used by the streaming paths.
#[derive(Default, Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checksum {
    pub len: u64,
    pub hash: u64,
}

impl Checksum {
    pub fn update(&mut self, data: &[u8]) {
        for &b in data {
            self.hash = (self.hash ^ b as u64).wrapping_mul(0x100000001b3);
        }
        self.len += data.len() as u64;
    }
}

/// The body a request for `/id/N` gets from [`Backend::ids`]: its id,
/// then bytes that depend on it, then their checksum, so a client can tell
/// its own answer from another's or a torn one.
pub fn id_body(n: u64) -> Vec<u8> {
    let mut v = format!("id={n};").into_bytes();
    let len = 20_000 + (n as usize * 37) % 30_000;
    v.extend((0..len).map(|i| (i as u64 ^ n.wrapping_mul(0x9e37)) as u8));
    let mut sum = Checksum::default();
    sum.update(&v);
    v.extend_from_slice(format!(";sum={:016x}", sum.hash).as_bytes());
    v
}

/// The `N` of an `/id/N` target (0 when there is none).
fn id_of(target: &str) -> u64 {
    target
        .strip_prefix("/id/")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl Backend {
    /// A backend answering `/id/N` with [`id_body`]`(N)` after `delay`.
    pub fn ids(delay: Duration) -> Backend {
        Backend::start(move |seen| Reply::ok(id_body(id_of(&seen.target))).delay(delay))
    }

    /// Like [`Backend::ids`], listening on `ip`.
    pub fn ids_on(ip: &str, delay: Duration) -> Backend {
        Backend::start_on(ip, move |seen| {
            Reply::ok(id_body(id_of(&seen.target))).delay(delay)
        })
    }

    pub fn start(handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Backend {
        Backend::spawn("127.0.0.1", None, Arc::new(handler))
    }

    /// Like [`Backend::start`], listening on `ip` (for clients in another
    /// network namespace).
    pub fn start_on(ip: &str, handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static) -> Backend {
        Backend::spawn(ip, None, Arc::new(handler))
    }

    /// The same backend over TLS with the given certificate and key (PEM).
    pub fn start_tls(
        cert_pem: &str,
        key_pem: &str,
        handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
    ) -> Backend {
        use rustls_pki_types::pem::PemObject;
        let certs = rustls_pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        Backend::spawn("127.0.0.1", Some(Arc::new(cfg)), Arc::new(handler))
    }

    /// Accepts connections on a thread, one thread per connection, TLS
    /// first when `tls` is set.
    fn spawn(ip: &str, tls: Option<Arc<rustls::ServerConfig>>, handler: Arc<Handler>) -> Backend {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let stopped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let seen = seen.clone();
            let connections = connections.clone();
            let stopped = stopped.clone();
            std::thread::spawn(move || {
                for stream in listener.incoming().flatten() {
                    if stopped.load(Ordering::SeqCst) {
                        return;
                    }
                    connections.fetch_add(1, Ordering::SeqCst);
                    let (handler, seen, tls) = (handler.clone(), seen.clone(), tls.clone());
                    let stopped = stopped.clone();
                    std::thread::spawn(move || {
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(120)));
                        let _ = match tls {
                            None => serve(stream, &*handler, &seen, &stopped),
                            Some(cfg) => {
                                let conn = rustls::ServerConnection::new(cfg).unwrap();
                                serve(
                                    rustls::StreamOwned::new(conn, stream),
                                    &*handler,
                                    &seen,
                                    &stopped,
                                )
                            }
                        };
                    });
                }
            });
        }
        Backend {
            addr,
            seen,
            connections,
            stopped,
        }
    }

    /// A backend answering `200 hello` to everything.
    pub fn hello() -> Backend {
        Backend::start(|_| Reply::ok("hello"))
    }

    pub fn last(&self) -> Seen {
        self.seen
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("no request seen")
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Stops the server: the listener closes, and each open connection
    /// closes instead of answering its next request.
    pub fn stop(self) {
        self.stopped.store(true, Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(self.addr);
        // The accept thread returns (dropping the listener) on that
        // connection; wait until the port refuses.
        for _ in 0..200 {
            if std::net::TcpStream::connect(self.addr).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn serve<S: Read + Write>(
    stream: S,
    handler: &Handler,
    seen: &Mutex<Vec<Seen>>,
    stopped: &std::sync::atomic::AtomicBool,
) -> std::io::Result<()> {
    let mut r = BufReader::with_capacity(64 * 1024, stream);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 || stopped.load(Ordering::SeqCst) {
            return Ok(());
        }
        let line = line.trim_end().to_string();
        let mut parts = line.splitn(3, ' ');
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h)? == 0 {
                return Ok(());
            }
            let h = h.trim_end_matches(['\r', '\n']);
            if h.is_empty() {
                break;
            }
            let (k, v) = h.split_once(':').unwrap_or((h, ""));
            headers.push((k.to_string(), v.trim().to_string()));
        }
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let chunked = get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        let length: u64 = get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let upgrade = get("upgrade");

        if target == "/__sink" {
            let mut sum = Checksum::default();
            read_body(&mut r, chunked, length, |d| sum.update(d))?;
            let body = format!("{} {:016x}", sum.len, sum.hash);
            write!(
                r.get_mut(),
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )?;
            continue;
        }
        if let Some(n) = target.strip_prefix("/__stream/") {
            let n: u64 = n.parse().unwrap_or(0);
            write!(r.get_mut(), "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {n}\r\n\r\n")?;
            let mut buf = vec![0u8; 64 * 1024];
            let mut off = 0u64;
            while off < n {
                let k = ((n - off) as usize).min(buf.len());
                for (i, b) in buf[..k].iter_mut().enumerate() {
                    *b = pattern(off + i as u64);
                }
                r.get_mut().write_all(&buf[..k])?;
                off += k as u64;
            }
            continue;
        }
        let mut body = Vec::new();
        read_body(&mut r, chunked, length, |d| body.extend_from_slice(d))?;
        let req = Seen {
            method,
            target,
            headers: headers.clone(),
            body,
        };
        seen.lock().unwrap().push(req.clone());
        let reply = handler(&req);
        if !reply.delay.is_zero() {
            std::thread::sleep(reply.delay);
        }
        let mut out = format!("HTTP/1.1 {} X\r\n", reply.status).into_bytes();
        for (k, v) in &reply.headers {
            out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        if reply.status == 101 {
            out.extend_from_slice(b"\r\n");
            r.get_mut().write_all(&out)?;
            if upgrade.is_some() {
                // Echo upgraded bytes until the peer closes.
                let mut buf = [0u8; 4096];
                let pending = r.buffer().to_vec();
                r.consume(pending.len());
                r.get_mut().write_all(&pending)?;
                loop {
                    let n = r.read(&mut buf)?;
                    if n == 0 {
                        return Ok(());
                    }
                    r.get_mut().write_all(&buf[..n])?;
                }
            }
            return Ok(());
        }
        let no_body = req.method == "HEAD" || reply.status == 204 || reply.status == 304;
        if reply.chunked {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n\r\n");
            if !no_body {
                for piece in reply.body.chunks(7) {
                    out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
                    out.extend_from_slice(piece);
                    out.extend_from_slice(b"\r\n");
                }
                out.extend_from_slice(b"0\r\n\r\n");
            }
        } else {
            out.extend_from_slice(
                format!("Content-Length: {}\r\n\r\n", reply.body.len()).as_bytes(),
            );
            if !no_body {
                out.extend_from_slice(&reply.body);
            }
        }
        r.get_mut().write_all(&out)?;
    }
}

fn read_body<S: Read>(
    r: &mut BufReader<S>,
    chunked: bool,
    length: u64,
    mut sink: impl FnMut(&[u8]),
) -> std::io::Result<()> {
    if chunked {
        loop {
            let mut line = String::new();
            r.read_line(&mut line)?;
            let size = u64::from_str_radix(line.trim_end().split(';').next().unwrap_or(""), 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk line {line:?}")))?;
            if size == 0 {
                loop {
                    let mut t = String::new();
                    r.read_line(&mut t)?;
                    if t.trim_end().is_empty() {
                        return Ok(());
                    }
                }
            }
            copy_exact(r, size, &mut sink)?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
        }
    } else {
        copy_exact(r, length, &mut sink)
    }
}

fn copy_exact<S: Read>(
    r: &mut BufReader<S>,
    mut n: u64,
    sink: &mut impl FnMut(&[u8]),
) -> std::io::Result<()> {
    while n > 0 {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let k = (buf.len() as u64).min(n) as usize;
        sink(&buf[..k]);
        r.consume(k);
        n -= k as u64;
    }
    Ok(())
}

/// Answers every request head with the same raw bytes, then closes.
pub struct RawBackend {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicUsize>,
    /// Every byte received, across connections.
    pub received: Arc<Mutex<Vec<u8>>>,
}

impl RawBackend {
    pub fn start(response: &'static [u8], close_after: bool) -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let received = Arc::new(Mutex::new(Vec::new()));
        let c = connections.clone();
        let rec = received.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                c.fetch_add(1, Ordering::SeqCst);
                let rec = rec.clone();
                std::thread::spawn(move || {
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        let Ok(n) = stream.read(&mut chunk) else {
                            return;
                        };
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        rec.lock().unwrap().extend_from_slice(&chunk[..n]);
                        while let Some(end) = find(&buf, b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            if stream.write_all(response).is_err() {
                                return;
                            }
                            if close_after {
                                return;
                            }
                        }
                    }
                });
            }
        });
        RawBackend {
            addr,
            connections,
            received,
        }
    }

    pub fn received_text(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().unwrap()).into_owned()
    }

    /// A backend that accepts connections and never answers.
    pub fn silent() -> RawBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let c = connections.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for stream in listener.incoming().flatten() {
                c.fetch_add(1, Ordering::SeqCst);
                held.push(stream);
            }
        });
        RawBackend {
            addr,
            connections,
            received: Arc::new(Mutex::new(Vec::new())),
        }
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Parsed `name: value` pairs of a response head (lower-case names).
pub fn header_map(head: &str) -> HashMap<String, Vec<String>> {
    let mut m: HashMap<String, Vec<String>> = HashMap::new();
    for line in head.lines().skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            m.entry(k.trim().to_ascii_lowercase())
                .or_default()
                .push(v.trim().to_string());
        }
    }
    m
}

/// A minimal forward proxy: `CONNECT host:port` tunnels, and absolute-form
/// requests (`GET http://host:port/path`) forwarded in origin form. It
/// records every request line it handled.
pub struct ForwardProxy {
    pub addr: SocketAddr,
    pub lines: Arc<Mutex<Vec<String>>>,
}

impl ForwardProxy {
    pub fn start() -> ForwardProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let seen = lines.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let _ = proxy_one(client, &seen);
                });
            }
        });
        ForwardProxy { addr, lines }
    }
}

fn proxy_one(client: std::net::TcpStream, seen: &Mutex<Vec<String>>) -> std::io::Result<()> {
    let mut r = BufReader::new(client.try_clone()?);
    let mut line = String::new();
    r.read_line(&mut line)?;
    let line = line.trim_end().to_string();
    let mut head = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h)? == 0 {
            return Ok(());
        }
        if h.trim_end().is_empty() {
            break;
        }
        head.push(h);
    }
    seen.lock().unwrap().push(line.clone());
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (upstream_addr, first) = if method == "CONNECT" {
        (target.to_string(), None)
    } else {
        let rest = target.strip_prefix("http://").unwrap_or(target);
        let (auth, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let mut req = format!(
            "{method} {} HTTP/1.1\r\n",
            if path.is_empty() { "/" } else { path }
        );
        for h in &head {
            req.push_str(h);
        }
        req.push_str("\r\n");
        (auth.to_string(), Some(req))
    };
    let mut upstream = std::net::TcpStream::connect(&upstream_addr)?;
    let mut client_w = client;
    match first {
        None => client_w.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")?,
        Some(req) => upstream.write_all(req.as_bytes())?,
    }
    // Whatever the client sent after the head, then relay both ways.
    let pending = r.buffer().to_vec();
    upstream.write_all(&pending)?;
    let mut up_r = upstream.try_clone()?;
    let mut cl_w = client_w.try_clone()?;
    let t = std::thread::spawn(move || {
        let _ = std::io::copy(&mut up_r, &mut cl_w);
        let _ = cl_w.shutdown(std::net::Shutdown::Write);
    });
    let mut cl_r = r.into_inner();
    let _ = std::io::copy(&mut cl_r, &mut upstream);
    let _ = upstream.shutdown(std::net::Shutdown::Write);
    let _ = t.join();
    Ok(())
}
