//! Connections to internal servers, used by a tunnel-less edge (the direct
//! hop) and by the connector: keep-alive pools, name resolution, the
//! choice among an app's servers ([`balance`]) and the HTTP/1.1 exchange
//! ([`exchange`]).
//!
//! Each worker owns its pool (no locks, no cross-core traffic): idle
//! keep-alive connections per (host, port, TLS settings), reused newest
//! first, dropped after [`IDLE_TTL`]. Names are resolved on a control
//! thread, because the system resolver blocks, and cached per worker
//! (answers for [`DNS_TTL`], failures for [`DNS_NEGATIVE_TTL`]).
#![deny(clippy::disallowed_methods)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use monoio::net::TcpStream;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;

pub mod balance;
pub mod exchange;
pub mod h2;

use crate::io::{Io, Stream};
use crate::tls::stream::TlsStream;

/// How long an idle backend connection is kept.
pub const IDLE_TTL: Duration = Duration::from_secs(30);
/// A connection idle for longer than this is checked for a close by the
/// backend before it is reused (one non-blocking peek; busy connections
/// skip it). Backends close idle connections on timeouts of seconds, so a
/// connection reused within this time is all but never already closed.
pub const IDLE_CHECK_AFTER: Duration = Duration::from_secs(1);
/// Idle backend connections one worker keeps in all, whatever their
/// destination: the pool never holds more descriptors than this.
pub const IDLE_TOTAL_MAX: usize = 1024;
/// How often each worker sweeps its idle pool ([`Upstream::sweep`]).
pub const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// How long a resolved backend address is reused.
pub const DNS_TTL: Duration = Duration::from_secs(30);

/// Where a request goes.
#[derive(Debug, Clone)]
pub struct Target {
    pub host: String,
    pub port: u16,
    /// TLS settings of the app, `None` for http backends.
    pub tls: Option<Arc<ClientConfig>>,
    /// A forward proxy to go through: HTTP CONNECT for TLS backends; plain
    /// backends get absolute-form requests on a connection to the proxy.
    pub proxy: Option<Arc<(String, u16)>>,
}

/// Where a pooled connection goes, and the hash it is filed under.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PoolKey {
    host: String,
    port: u16,
    /// Identity of the TLS configuration (apps differ in validation).
    tls: usize,
    proxy: Option<Arc<(String, u16)>>,
    hash: u64,
}

impl Target {
    pub(crate) fn tls_id(&self) -> usize {
        self.tls.as_ref().map_or(0, |c| Arc::as_ptr(c) as usize)
    }

    /// Whether a connection filed under `key` goes where this target does.
    fn matches(&self, key: &PoolKey) -> bool {
        key.port == self.port
            && key.tls == self.tls_id()
            && key.host == self.host
            && key.proxy == self.proxy
    }
}

/// A connection to a backend, with its read-ahead buffer.
pub struct UpstreamConn {
    pub io: Io,
    pub buf: BytesMut,
    /// Came from the pool: a failure before any response byte may mean the
    /// backend closed it while idle, so a safe request can be retried.
    pub reused: bool,
    key: PoolKey,
}

/// Whether an `Authorization` or `WWW-Authenticate` value is NTLM or
/// Negotiate: schemes that authenticate the *connection*, not the
/// request, so a connection carrying them belongs to one client from then
/// on and never goes back to the shared pool.
pub fn is_connection_auth(v: &[u8]) -> bool {
    let word = |w: &[u8]| {
        v.len() >= w.len()
            && v[..w.len()].eq_ignore_ascii_case(w)
            && v.get(w.len()).is_none_or(|&b| b == b' ' || b == b',')
    };
    word(b"NTLM") || word(b"Negotiate")
}

impl UpstreamConn {
    /// Whether this connection goes where `target` does, with the same
    /// TLS and proxy settings.
    pub fn is_for(&self, target: &Target) -> bool {
        target.matches(&self.key)
    }

    /// Reads the backend's response head. Informational answers are
    /// skipped, except a 101 when the request asked to `upgrade`. An error
    /// is the status for the client and what to tell it.
    pub async fn read_head(
        &mut self,
        is_head: bool,
        upgrade: bool,
        timeout: Duration,
    ) -> Result<crate::http1::ResponseHead, (u16, &'static str)> {
        use crate::http1::body::{read_with_timeout, BodyError};
        loop {
            match crate::http1::parse_response(&mut self.buf, is_head) {
                Ok(Some(r)) if r.status == 101 && upgrade => return Ok(r),
                Ok(Some(r)) if (100..200).contains(&r.status) => continue,
                Ok(Some(r)) => return Ok(r),
                Ok(None) => {}
                Err(e) => return Err((e.status, e.reason)),
            }
            match read_with_timeout(&mut self.io, &mut self.buf, timeout).await {
                Ok(0) | Err(BodyError::Io(_)) => {
                    return Err((
                        502,
                        "the application's server closed the connection without answering",
                    ))
                }
                Ok(_) => {}
                Err(BodyError::Timeout) => {
                    return Err((504, "the application's server did not answer in time"))
                }
                Err(_) => return Err((502, "the application's server failed")),
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot resolve the backend host {0}")]
    Resolve(String),
    #[error("cannot connect to the backend: {0}")]
    Connect(io::Error),
    #[error("timed out connecting to the backend")]
    ConnectTimeout,
    #[error("TLS with the backend failed: {0}")]
    Tls(io::Error),
    #[error("the forward proxy refused the tunnel: {0}")]
    Proxy(String),
}

/// A name lookup's answer, and when it was made.
enum Cached {
    Found(Vec<SocketAddr>, Instant),
    Failed(Instant),
}

/// Lookups per (host, port).
type DnsCache = HashMap<(String, u16), Cached>;

/// How long a failed lookup is remembered.
pub const DNS_NEGATIVE_TTL: Duration = Duration::from_secs(5);
/// Names remembered per worker.
pub const DNS_CACHE_MAX: usize = 4096;
/// Lookups one worker may have waiting at once.
pub const DNS_MAX_PENDING: usize = 32;

struct Idle {
    conn: UpstreamConn,
    since: Instant,
}

/// A hasher for keys that already are keyed hashes.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Per-worker backend access.
pub struct Upstream {
    /// Idle connections by the keyed hash of their [`PoolKey`] (the map
    /// itself only passes that hash through); each entry is checked
    /// against the target, so a collision costs a miss, never a wrong
    /// connection.
    idle: RefCell<HashMap<u64, Vec<Idle>, BuildHasherDefault<PassThrough>>>,
    keys: std::collections::hash_map::RandomState,
    /// Round-robin position per app (see [`balance`]).
    rr: RefCell<HashMap<String, usize>>,
    /// Servers that refused a connection lately, and since when.
    down: RefCell<HashMap<(String, u16), Instant>>,
    dns: RefCell<DnsCache>,
    dns_pending: std::cell::Cell<usize>,
    /// Idle connections in the pool, all destinations together.
    idle_total: std::cell::Cell<usize>,
    max_idle: usize,
    connect_timeout: Duration,
    /// HTTP/2 connections to backends ([`h2`]).
    h2: RefCell<HashMap<h2::H2Key, ::h2::client::SendRequest<bytes::Bytes>>>,
}

impl Upstream {
    pub fn new(max_idle: usize, connect_timeout: Duration) -> Rc<Upstream> {
        Rc::new(Upstream {
            idle: RefCell::new(HashMap::default()),
            keys: Default::default(),
            rr: RefCell::new(HashMap::new()),
            down: RefCell::new(HashMap::new()),
            dns: RefCell::new(HashMap::new()),
            dns_pending: std::cell::Cell::new(0),
            idle_total: std::cell::Cell::new(0),
            max_idle,
            connect_timeout,
            h2: RefCell::new(HashMap::new()),
        })
    }

    /// A pooled connection to `target`, or a new one.
    pub async fn open(&self, target: &Target) -> Result<UpstreamConn, UpstreamError> {
        let hash = self.keys.hash_one((
            target.host.as_str(),
            target.port,
            target.tls_id(),
            target.proxy.as_deref(),
        ));
        if let Some(conn) = self.take_idle(target, hash) {
            return Ok(conn);
        }
        let key = PoolKey {
            host: target.host.clone(),
            port: target.port,
            tls: target.tls_id(),
            proxy: target.proxy.clone(),
            hash,
        };
        // Connecting (TCP, then maybe a TLS handshake) is the cold path and
        // its future is large; boxing it keeps every request's future, which
        // is moved on each request, small.
        Box::pin(self.connect(target, key)).await
    }

    /// The most recently parked idle connection to `target`, if one is
    /// still fresh and open (stale or closed ones on the way are dropped).
    fn take_idle(&self, target: &Target, hash: u64) -> Option<UpstreamConn> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(&hash)?;
        let now = Instant::now();
        while let Some(i) = list.iter().rposition(|e| target.matches(&e.conn.key)) {
            let entry = list.remove(i);
            self.idle_total.set(self.idle_total.get() - 1);
            let age = now.saturating_duration_since(entry.since);
            if age >= IDLE_TTL || (age >= IDLE_CHECK_AFTER && entry.conn.io.idle_peer_gone()) {
                continue;
            }
            let mut conn = entry.conn;
            conn.reused = true;
            return Some(conn);
        }
        None
    }

    /// Returns a connection whose last exchange ended cleanly.
    pub fn release(&self, mut conn: UpstreamConn) {
        if self.max_idle == 0 || !conn.buf.is_empty() {
            // Bytes after a complete response mean the backend is confused.
            return;
        }
        conn.buf.clear();
        if self.idle_total.get() >= IDLE_TOTAL_MAX {
            self.drop_oldest();
        }
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(conn.key.hash).or_default();
        if list.len() >= self.max_idle {
            list.remove(0);
        } else {
            self.idle_total.set(self.idle_total.get() + 1);
        }
        list.push(Idle {
            conn,
            since: Instant::now(),
        });
    }

    /// Closes the pool's longest-idle connection (the pool is full).
    fn drop_oldest(&self) {
        let mut idle = self.idle.borrow_mut();
        let oldest = idle
            .iter()
            .filter_map(|(&h, list)| list.first().map(|e| (e.since, h)))
            .min();
        if let Some((_, h)) = oldest {
            if let Some(list) = idle.get_mut(&h) {
                list.remove(0);
                self.idle_total.set(self.idle_total.get() - 1);
            }
        }
    }

    /// Closes idle connections past [`IDLE_TTL`] and those their backend
    /// has closed, so an idle pool holds no dead descriptors. Run by each
    /// worker every few seconds.
    pub fn sweep(&self) {
        let now = Instant::now();
        let mut idle = self.idle.borrow_mut();
        let mut kept = 0;
        idle.retain(|_, list| {
            list.retain(|e| {
                now.saturating_duration_since(e.since) < IDLE_TTL && !e.conn.io.idle_peer_gone()
            });
            kept += list.len();
            !list.is_empty()
        });
        self.idle_total.set(kept);
    }

    /// The addresses of `host:port`. Names are looked up on a control
    /// thread (the system resolver blocks); answers are kept for
    /// [`DNS_TTL`], failures for [`DNS_NEGATIVE_TTL`], at most
    /// [`DNS_CACHE_MAX`] names per worker, and at most
    /// [`DNS_MAX_PENDING`] lookups wait at once: a flood of names that do
    /// not resolve (random labels under a wildcard app) fails fast instead
    /// of queueing, and a name that resolved before keeps its last answer
    /// while a fresh lookup cannot be made.
    async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, UpstreamError> {
        if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse() {
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        let key = (host.to_string(), port);
        let stale = match self.dns.borrow().get(&key) {
            Some(Cached::Found(addrs, at)) if at.elapsed() < DNS_TTL => return Ok(addrs.clone()),
            Some(Cached::Failed(at)) if at.elapsed() < DNS_NEGATIVE_TTL => {
                return Err(UpstreamError::Resolve(host.to_string()))
            }
            Some(Cached::Found(addrs, _)) => Some(addrs.clone()),
            _ => None,
        };
        if self.dns_pending.get() >= DNS_MAX_PENDING {
            return stale.ok_or_else(|| {
                UpstreamError::Resolve(format!("{host} (too many name lookups in progress)"))
            });
        }
        self.dns_pending.set(self.dns_pending.get() + 1);
        let name = key.clone();
        let looked_up = monoio::time::timeout(
            self.connect_timeout,
            crate::offload::run(move || {
                use std::net::ToSocketAddrs;
                #[allow(clippy::disallowed_methods)] // on a control thread
                let found = name
                    .to_socket_addrs()
                    .map(|a| a.collect::<Vec<SocketAddr>>());
                found
            }),
        )
        .await;
        self.dns_pending.set(self.dns_pending.get() - 1);
        // A lookup that fails or takes too long is remembered as failed:
        // asking again at once would only queue another slow lookup.
        let answer = match looked_up {
            Ok(Some(Ok(addrs))) if !addrs.is_empty() => Some(addrs),
            _ => None,
        };
        let mut dns = self.dns.borrow_mut();
        if dns.len() >= DNS_CACHE_MAX {
            dns.retain(|_, c| match c {
                Cached::Found(_, at) => at.elapsed() < DNS_TTL,
                Cached::Failed(at) => at.elapsed() < DNS_NEGATIVE_TTL,
            });
            if dns.len() >= DNS_CACHE_MAX {
                dns.clear();
            }
        }
        match answer {
            Some(addrs) => {
                dns.insert(key, Cached::Found(addrs.clone(), Instant::now()));
                Ok(addrs)
            }
            None => {
                dns.insert(key, Cached::Failed(Instant::now()));
                stale.ok_or(UpstreamError::Resolve(host.to_string()))
            }
        }
    }

    async fn connect(&self, target: &Target, key: PoolKey) -> Result<UpstreamConn, UpstreamError> {
        let (dial_host, dial_port) = match &target.proxy {
            Some(p) => (p.0.as_str(), p.1),
            None => (target.host.as_str(), target.port),
        };
        let addrs = self.resolve(dial_host, dial_port).await?;
        let mut last = None;
        let deadline = Instant::now() + self.connect_timeout;
        for addr in addrs {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(UpstreamError::ConnectTimeout);
            }
            match monoio::time::timeout(left, TcpStream::connect_addr(addr)).await {
                Ok(Ok(mut tcp)) => {
                    let _ = tcp.set_nodelay(true);
                    if let (Some(_), Some(_)) = (&target.proxy, &target.tls) {
                        let left = deadline.saturating_duration_since(Instant::now());
                        match monoio::time::timeout(left, proxy_connect(&mut tcp, target)).await {
                            Ok(r) => r?,
                            Err(_) => return Err(UpstreamError::ConnectTimeout),
                        }
                    }
                    let io = match &target.tls {
                        None => Stream::Tcp(tcp),
                        Some(cfg) => {
                            let name = ServerName::try_from(
                                target
                                    .host
                                    .trim_start_matches('[')
                                    .trim_end_matches(']')
                                    .to_string(),
                            )
                            .map_err(|e| UpstreamError::Tls(io::Error::other(e)))?;
                            let conn = rustls::ClientConnection::new(cfg.clone(), name)
                                .map_err(|e| UpstreamError::Tls(io::Error::other(e)))?;
                            let mut tls = Box::new(TlsStream::new(tcp, conn));
                            let left = deadline.saturating_duration_since(Instant::now());
                            match monoio::time::timeout(left, tls.handshake()).await {
                                Ok(Ok(())) => Stream::ClientTls(tls),
                                Ok(Err(e)) => return Err(UpstreamError::Tls(e)),
                                Err(_) => return Err(UpstreamError::ConnectTimeout),
                            }
                        }
                    };
                    return Ok(UpstreamConn {
                        // The request sets its own backend timeout.
                        io: Io::new(io, self.connect_timeout),
                        buf: BytesMut::with_capacity(crate::io::READ_CHUNK),
                        reused: false,
                        key,
                    });
                }
                Ok(Err(e)) => last = Some(UpstreamError::Connect(e)),
                Err(_) => return Err(UpstreamError::ConnectTimeout),
            }
        }
        Err(last.unwrap_or(UpstreamError::Resolve(target.host.clone())))
    }
}

/// Asks a forward proxy for a tunnel to the target (HTTP CONNECT).
async fn proxy_connect(tcp: &mut TcpStream, target: &Target) -> Result<(), UpstreamError> {
    use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
    let authority = if target.host.contains(':') && !target.host.starts_with('[') {
        format!("[{}]:{}", target.host, target.port)
    } else {
        format!("{}:{}", target.host, target.port)
    };
    let req = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    let (res, _) = tcp.write_all(req.into_bytes()).await;
    res.map_err(UpstreamError::Connect)?;
    // Read the proxy's answer byte-exactly up to the blank line, so no
    // byte of the TLS stream that follows is consumed here.
    let mut head = Vec::with_capacity(256);
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            return Err(UpstreamError::Proxy("answer head too long".into()));
        }
        let (res, byte) = tcp.read(vec![0u8; 1]).await;
        match res {
            Ok(1) => head.push(byte[0]),
            Ok(_) => return Err(UpstreamError::Proxy("closed the connection".into())),
            Err(e) => return Err(UpstreamError::Connect(e)),
        }
    }
    let mut buf = BytesMut::from(&head[..]);
    match crate::http1::parse_response(&mut buf, true) {
        Ok(Some(r)) if (200..300).contains(&r.status) => Ok(()),
        Ok(Some(r)) => Err(UpstreamError::Proxy(format!(
            "{} {}",
            r.status,
            String::from_utf8_lossy(&r.reason)
        ))),
        _ => Err(UpstreamError::Proxy("unreadable answer".into())),
    }
}

#[cfg(test)]
mod tests;
