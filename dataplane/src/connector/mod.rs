//! The connector role: runs inside the private network, dials out to the
//! edge and forwards the requests that arrive on its tunnels.
//!
//! `postern connector register` spends an enrollment token once and
//! stores the connector's identity (id, group, edge address, pinned CA,
//! certificate and key) in its state directory, readable by the connector
//! alone. `postern connector` then runs one monoio runtime per CPU; each
//! keeps some of the tunnels (TLS 1.3, client certificate, HTTP/2 with
//! the connector as server) and forwards their streams to internal URLs.
//!
//! How many tunnels: the edge tells each tunnel which of its workers holds
//! it. With `tunnels = 0` (the default) the connector opens one per local
//! runtime (at least two), then keeps dialing, up to four per edge worker,
//! until every edge worker holds at least one, so no edge worker has to
//! relay through another core. A fixed `tunnels = N` opens exactly N.
//!
//! Certificates renew at two thirds of their lifetime over a renewal
//! connection authenticated by the current certificate. SIGTERM sends
//! GOAWAY on every tunnel, lets in-flight streams finish within
//! `drain_timeout`, then exits.

mod forward;
pub mod proxy;
pub mod state;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Deserialize;

use crate::tunnel::{self, meta};
use crate::upstream::Upstream;
use state::Identity;

/// `[connector]` in the connector's TOML file; every key is optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorFile {
    #[serde(default)]
    pub connector: ConnectorSettingsRaw,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectorSettingsRaw {
    /// Tunnels to keep; 0 = enough for every edge worker.
    pub tunnels: Option<usize>,
    /// Local runtimes; default one per CPU.
    pub workers: Option<usize>,
    /// `http://host:port` forward proxy for reaching internal servers.
    pub forward_proxy: Option<String>,
    /// `http://[user:password@]host:port` proxy (HTTP CONNECT) for
    /// reaching the edge; `""` to go direct whatever `https_proxy` says.
    pub edge_proxy: Option<String>,
    pub backend_connect_timeout: Option<u64>,
    /// Seconds in-flight requests get to finish after SIGTERM.
    pub drain_timeout: Option<u64>,
    pub upstream_pool_size: Option<usize>,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub tunnels: usize,
    pub workers: usize,
    pub forward_proxy: Option<Arc<(String, u16)>>,
    /// The proxy to reach the edge through, if any.
    pub edge_proxy: Option<Arc<proxy::EdgeProxy>>,
    pub backend_connect_timeout: Duration,
    pub drain_timeout: Duration,
    pub upstream_pool_size: usize,
}

impl Settings {
    /// Reads and checks the optional TOML file; errors name the key.
    pub fn load(path: Option<&Path>) -> Result<Settings, String> {
        let raw = match path {
            None => ConnectorFile::default(),
            Some(p) => {
                let text =
                    std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
                toml::from_str::<ConnectorFile>(&text)
                    .map_err(|e| format!("{}: {}", p.display(), e.to_string().trim_end()))?
            }
        };
        let c = raw.connector;
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let forward_proxy = match c.forward_proxy.as_deref() {
            None | Some("") => None,
            Some(url) => {
                Some(Arc::new(parse_proxy(url).map_err(|e| {
                    format!("connector.forward_proxy: `{url}` {e}")
                })?))
            }
        };
        let edge_proxy = match c.edge_proxy.as_deref() {
            Some("") => None,
            Some(url) => Some(
                proxy::EdgeProxy::parse(url, "connector.edge_proxy")
                    .map_err(|e| format!("connector.edge_proxy: `{}` {e}", proxy::redact(url)))?,
            ),
            None => proxy::EdgeProxy::from_env()?,
        }
        .map(Arc::new);
        let secs = |name: &str, v: Option<u64>, default: u64, max: u64| {
            let v = v.unwrap_or(default);
            if v == 0 || v > max {
                Err(format!(
                    "connector.{name}: {v} is out of range (1..={max} seconds)"
                ))
            } else {
                Ok(Duration::from_secs(v))
            }
        };
        let workers = c.workers.unwrap_or(cpus);
        if workers == 0 || workers > 1024 {
            return Err(format!(
                "connector.workers: {workers} is out of range (1..=1024)"
            ));
        }
        let tunnels = c.tunnels.unwrap_or(0);
        if tunnels > 1024 {
            return Err(format!(
                "connector.tunnels: {tunnels} is out of range (0..=1024)"
            ));
        }
        Ok(Settings {
            tunnels,
            workers,
            forward_proxy,
            edge_proxy,
            backend_connect_timeout: secs(
                "backend_connect_timeout",
                c.backend_connect_timeout,
                10,
                300,
            )?,
            drain_timeout: secs("drain_timeout", c.drain_timeout, 30, 3600)?,
            upstream_pool_size: c.upstream_pool_size.unwrap_or(64),
        })
    }
}

/// `http://host:port[/]` → (host, port).
fn parse_proxy(url: &str) -> Result<(String, u16), &'static str> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("must start with http://")?
        .trim_end_matches('/');
    if rest.contains('/') || rest.contains('@') || rest.is_empty() {
        return Err("must be http://host:port");
    }
    let (host, port) =
        postern_control::url::split_host_port(rest).map_err(|_| "must be http://host:port")?;
    Ok((host.to_string(), port.unwrap_or(80)))
}

/// State shared by every runtime of the connector.
pub struct Shared {
    pub identity: RwLock<Identity>,
    pub client_tls: RwLock<Arc<rustls::ClientConfig>>,
    pub settings: Settings,
    pub state_dir: PathBuf,
    draining: AtomicBool,
    /// Tunnels currently open, by slot: the edge worker each landed on.
    coverage: Mutex<Coverage>,
}

#[derive(Default)]
struct Coverage {
    edge_workers: usize,
    by_slot: HashMap<usize, usize>,
    slots: usize,
    /// Slots asked to drain and dial again (they share an edge worker
    /// with another slot while some edge worker has none).
    redial: std::collections::HashSet<usize>,
    /// Redials since coverage was last complete (bounded).
    redials: usize,
}

impl Coverage {
    /// Every edge worker holds at least one of our tunnels.
    fn covered(&self) -> bool {
        self.edge_workers == 0
            || (0..self.edge_workers).all(|w| self.by_slot.values().any(|&x| x == w))
    }
}

impl Shared {
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

/// Per-runtime state.
pub struct Local {
    pub shared: Arc<Shared>,
    pub upstream: Rc<Upstream>,
    /// Backend TLS configurations by (validate, extra CA header, ALPN h2).
    tls_configs: RefCell<HashMap<(bool, String, bool), Arc<rustls::ClientConfig>>>,
    /// Tunnel slots running on this runtime (including ones added to
    /// cover edge workers); the runtime ends only when all have drained.
    live_slots: Cell<usize>,
}

impl Local {
    /// Backend TLS settings for `validate` and the app's extra CA (the
    /// value of the `postern-ca` header), asking for `h2` by ALPN when the
    /// backend speaks HTTP/2; built once per runtime.
    pub fn tls_config(
        &self,
        validate: bool,
        ca: &str,
        h2: bool,
    ) -> Result<Arc<rustls::ClientConfig>, String> {
        let key = (validate, ca.to_string(), h2);
        if let Some(c) = self.tls_configs.borrow().get(&key) {
            return Ok(c.clone());
        }
        let roots = if ca.is_empty() {
            None
        } else {
            let mut v = Vec::new();
            for part in ca.split(',') {
                let der =
                    crate::admin::certs::base64_decode(part).ok_or("the app's CA is not base64")?;
                v.push(rustls_pki_types::CertificateDer::from(der));
            }
            Some(v)
        };
        let mut cfg =
            crate::tls::backend_client_config_with(validate, roots).map_err(|e| e.to_string())?;
        if h2 {
            let mut c = (*cfg).clone();
            c.alpn_protocols = vec![crate::tls::ALPN_H2.to_vec()];
            cfg = Arc::new(c);
        }
        let mut cache = self.tls_configs.borrow_mut();
        if cache.len() > 256 {
            cache.clear();
        }
        cache.insert(key, cfg.clone());
        Ok(cfg)
    }
}

/// `postern connector register`.
pub fn register(
    edge: &str,
    token: &str,
    state_dir: &Path,
    proxy: Option<&proxy::EdgeProxy>,
) -> Result<Identity, String> {
    let parts: Vec<&str> = token.trim().split('_').collect();
    if parts.len() != 4 || parts[0] != "pet" || parts[3].len() != 32 {
        return Err(
            "the token is malformed: expected the whole text printed by `postern tokens create` (pet_<id>_<secret>_<ca>)"
                .into(),
        );
    }
    let pin = parts[3];
    let host_name = state::host_name();
    let (key_pem, csr) = postern_control::ca::new_request(&host_name).map_err(|e| e.to_string())?;
    let cfg = crate::tls::enroll_client_config(pin).map_err(|e| e.to_string())?;
    let req = tunnel::EnrollRequest {
        token: parts[..3].join("_"),
        csr,
        host_name,
        version: env!("CARGO_PKG_VERSION").to_string(),
    };
    let reply: tunnel::Reply = state::exchange(edge, cfg, &req, proxy)?;
    if let Some(e) = reply.error {
        return Err(format!("the edge refused the registration: {e}"));
    }
    let identity = Identity {
        id: reply.id,
        group: reply.group,
        edge: edge.to_string(),
        ca: reply.ca,
        certificate: reply.certificate,
        key: key_pem,
        issued_at: postern_control::enroll::now(),
        lifetime_secs: reply.lifetime_secs,
    };
    identity.check_ca_pin(pin)?;
    identity.save(state_dir)?;
    Ok(identity)
}

/// `postern connector`: runs until SIGTERM (then drains) or SIGINT.
pub fn run(state_dir: &Path, settings: Settings) -> Result<(), String> {
    let identity = Identity::load(state_dir)?;
    let client_tls = identity.client_config()?;
    tracing::info!(connector = %identity.id, group = %identity.group, edge = %identity.edge, "connector starting");
    if let Some(p) = settings
        .edge_proxy
        .as_deref()
        .filter(|p| p.serves(&identity.edge))
    {
        tracing::info!(proxy = %format!("{}:{}", p.host, p.port), from = p.source, "reaching the edge through an HTTP proxy");
    }
    let shared = Arc::new(Shared {
        identity: RwLock::new(identity),
        client_tls: RwLock::new(client_tls),
        settings: settings.clone(),
        state_dir: state_dir.to_path_buf(),
        draining: AtomicBool::new(false),
        coverage: Mutex::new(Coverage::default()),
    });
    let term = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGTERM, term.clone())
        .map_err(|e| format!("cannot install the SIGTERM handler: {e}"))?;
    {
        let shared = shared.clone();
        std::thread::Builder::new()
            .name("postern-renew".into())
            .spawn(move || state::renew_loop(shared))
            .map_err(|e| e.to_string())?;
    }
    let workers = settings.workers;
    let initial = if settings.tunnels == 0 {
        workers.max(2)
    } else {
        settings.tunnels
    };
    shared
        .coverage
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .slots = initial;
    let mut threads = Vec::new();
    for index in 0..workers {
        let shared = shared.clone();
        let slots: Vec<usize> = (0..initial).filter(|s| s % workers == index).collect();
        let t = std::thread::Builder::new()
            .name(format!("postern-c{index}"))
            .spawn(move || {
                let mut rt = match monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
                    .attach_thread_pool(crate::offload::pool())
                    .with_entries(1024)
                    .enable_timer()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start a connector runtime");
                        return;
                    }
                };
                rt.block_on(async move {
                    let local = Rc::new(Local {
                        upstream: Upstream::new(
                            shared.settings.upstream_pool_size,
                            shared.settings.backend_connect_timeout,
                        ),
                        shared: shared.clone(),
                        tls_configs: RefCell::new(HashMap::new()),
                        live_slots: Cell::new(0),
                    });
                    let sweeper = local.clone();
                    monoio::spawn(async move {
                        loop {
                            monoio::time::sleep(crate::upstream::SWEEP_EVERY).await;
                            sweeper.upstream.sweep();
                        }
                    });
                    let mut tasks = Vec::new();
                    for slot in slots {
                        tasks.push(monoio::spawn(slot_loop(local.clone(), slot)));
                    }
                    if shared.settings.tunnels == 0 {
                        tasks.push(monoio::spawn(cover_edge_workers(
                            local.clone(),
                            index,
                            workers,
                        )));
                    }
                    for t in tasks {
                        t.await;
                    }
                    // Slots added later are not in `tasks`: wait for them
                    // too, so no tunnel is cut without its GOAWAY.
                    while local.live_slots.get() > 0 {
                        monoio::time::sleep(Duration::from_millis(10)).await;
                    }
                });
            })
            .map_err(|e| e.to_string())?;
        threads.push(t);
    }
    // Wait for SIGTERM, then drain: the tunnels send GOAWAY and finish.
    // A service manager hears READY once a tunnel is open (or after 10 s
    // of dialing, so a start never hangs on an unreachable edge), and a
    // watchdog ping while every runtime runs.
    let started = Instant::now();
    let watchdog = crate::sdnotify::watchdog_every();
    let mut pinged = Instant::now();
    let mut ready = false;
    while !term.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(50));
        if threads.iter().all(|t| t.is_finished()) {
            return Err("every connector runtime stopped".into());
        }
        if !ready {
            let up = !shared
                .coverage
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .by_slot
                .is_empty();
            if up {
                crate::sdnotify::notify("READY=1\nSTATUS=tunnels open to the edge");
                ready = true;
            } else if started.elapsed() > Duration::from_secs(10) {
                crate::sdnotify::notify("READY=1\nSTATUS=no tunnel to the edge yet; still dialing");
                ready = true;
            }
        }
        if let Some(every) = watchdog {
            if pinged.elapsed() >= every && !threads.iter().any(|t| t.is_finished()) {
                crate::sdnotify::notify("WATCHDOG=1");
                pinged = Instant::now();
            }
        }
    }
    crate::sdnotify::notify("STOPPING=1");
    tracing::info!("SIGTERM: draining tunnels");
    shared.draining.store(true, Ordering::Release);
    let deadline = Instant::now() + settings.drain_timeout + Duration::from_secs(1);
    for t in threads {
        while !t.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    tracing::info!("connector stopped");
    Ok(())
}

/// Keeps dialing until every edge worker holds a tunnel (auto mode). Every
/// runtime runs one of these; slot N belongs to runtime N mod runtimes, so
/// added tunnels spread over the runtimes like the first ones. At the cap
/// of four tunnels per edge worker, a tunnel that shares its edge worker
/// with another is drained and dialed again (the kernel picks the worker
/// per connection), at most 64 times until every worker is covered.
async fn cover_edge_workers(local: Rc<Local>, index: usize, runtimes: usize) {
    loop {
        monoio::time::sleep(Duration::from_millis(50)).await;
        if local.shared.draining() {
            return;
        }
        let slot = {
            let mut c = local
                .shared
                .coverage
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            // Only once every existing slot has landed somewhere, and only
            // the runtime the next slot belongs to.
            if c.covered() {
                c.redials = 0;
                continue;
            }
            if c.edge_workers == 0 || c.by_slot.len() < c.slots || !c.redial.is_empty() {
                continue;
            }
            if c.slots >= 4 * c.edge_workers {
                if index == 0 && c.redials < 64 {
                    let crowded = c.by_slot.iter().find(|&(slot, w)| {
                        c.by_slot.iter().any(|(other, x)| other != slot && x == w)
                    });
                    if let Some((&slot, _)) = crowded {
                        c.redials += 1;
                        c.redial.insert(slot);
                    }
                }
                continue;
            }
            if c.slots % runtimes != index {
                continue;
            }
            c.slots += 1;
            c.slots - 1
        };
        monoio::spawn(slot_loop(local.clone(), slot));
    }
}

struct SlotGuard(Rc<Local>);

impl Drop for SlotGuard {
    fn drop(&mut self) {
        self.0.live_slots.set(self.0.live_slots.get() - 1);
    }
}

/// One tunnel, redialed with jittered exponential backoff until draining.
async fn slot_loop(local: Rc<Local>, slot: usize) {
    local.live_slots.set(local.live_slots.get() + 1);
    let _live = SlotGuard(local.clone());
    let mut backoff = Duration::from_millis(100);
    loop {
        if local.shared.draining() {
            return;
        }
        let started = Instant::now();
        let planned = match tunnel_once(&local, slot).await {
            Ok(planned) => planned,
            Err(e) => {
                tracing::warn!(slot, error = %e, "tunnel failed");
                false
            }
        };
        local
            .shared
            .coverage
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .by_slot
            .remove(&slot);
        if local.shared.draining() {
            return;
        }
        if planned {
            // Dialing again to land on another edge worker: no backoff.
            continue;
        }
        if started.elapsed() > Duration::from_secs(30) {
            backoff = Duration::from_millis(100);
        }
        let jitter = jitter_ms(backoff.as_millis() as u64 / 2 + 1);
        monoio::time::sleep(backoff / 2 + Duration::from_millis(jitter)).await;
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

fn jitter_ms(max: u64) -> u64 {
    let mut b = [0u8; 8];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u64::from_le_bytes(b) % max.max(1)
}

/// One tunnel from dial to close; `Ok(true)` when it closed to be dialed
/// again at once (see [`cover_edge_workers`]).
async fn tunnel_once(local: &Rc<Local>, slot: usize) -> Result<bool, String> {
    let shared = &local.shared;
    let edge = shared
        .identity
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .edge
        .clone();
    let tcp = match shared
        .settings
        .edge_proxy
        .as_deref()
        .filter(|p| p.serves(&edge))
    {
        Some(p) => monoio::time::timeout(Duration::from_secs(10), p.connect(&edge))
            .await
            .map_err(|_| {
                format!(
                    "timed out reaching the edge {edge} through the proxy {}:{}",
                    p.host, p.port
                )
            })??,
        None => {
            let addr = state::resolve(&edge)?;
            monoio::time::timeout(
                Duration::from_secs(10),
                monoio::net::TcpStream::connect_addr(addr),
            )
            .await
            .map_err(|_| format!("timed out connecting to the edge {edge}"))?
            .map_err(|e| format!("cannot connect to the edge {edge}: {e}"))?
        }
    };
    let _ = tcp.set_nodelay(true);
    let tcp = tcp.try_into_poll_io().map_err(|(e, _)| e.to_string())?;
    let cfg = shared
        .client_tls
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let name = rustls_pki_types::ServerName::try_from(postern_control::ca::TUNNEL_SERVER_NAME)
        .map_err(|e| e.to_string())?;
    let tls = monoio::time::timeout(
        Duration::from_secs(10),
        tokio_rustls::TlsConnector::from(cfg).connect(name, tcp),
    )
    .await
    .map_err(|_| "TLS handshake with the edge timed out".to_string())?
    .map_err(|e| format!("TLS with the edge failed: {e}"))?;
    let mut conn = h2::server::Builder::new()
        .initial_window_size(tunnel::STREAM_WINDOW)
        .initial_connection_window_size(tunnel::CONNECTION_WINDOW)
        .max_header_list_size(tunnel::MAX_HEADER_LIST)
        .max_concurrent_streams(tunnel::MAX_STREAMS)
        .max_pending_accept_reset_streams(tunnel::MAX_PENDING_RESETS)
        .max_local_error_reset_streams(Some(tunnel::MAX_PENDING_RESETS))
        .enable_connect_protocol()
        .handshake::<_, Bytes>(tls)
        .await
        .map_err(|e| {
            format!("the edge closed the tunnel while setting it up (revoked or unregistered connector?): {e}")
        })?;
    tracing::info!(slot, %edge, "tunnel open");
    let ping = conn.ping_pong();
    let mut heartbeat = std::pin::pin!(async {
        match ping {
            Some(p) => tunnel::heartbeat(p).await,
            None => std::future::pending().await,
        }
    });
    // Connection-bound authentication of the edge's clients on this tunnel.
    let bound = Rc::new(forward::BoundConns::default());
    let mut draining = false;
    let mut planned = false;
    let mut drain_deadline = None;
    loop {
        if !draining && !planned {
            let moving = shared
                .coverage
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .redial
                .remove(&slot);
            if moving || shared.draining() {
                draining = true;
                planned = moving && !shared.draining();
                conn.graceful_shutdown();
                drain_deadline = Some(Instant::now() + shared.settings.drain_timeout);
            }
        }
        if let Some(d) = drain_deadline {
            if Instant::now() >= d {
                conn.abrupt_shutdown(h2::Reason::NO_ERROR);
                return Ok(planned);
            }
        }
        let tick = monoio::time::sleep(Duration::from_millis(100));
        monoio::select! {
            next = conn.accept() => match next {
                None => return Ok(planned),
                Some(Err(e)) => return Err(format!("tunnel error: {e}")),
                Some(Ok((req, respond))) => {
                    if req.uri().path() == tunnel::HELLO_PATH {
                        hello(&local.shared, slot, &req, respond);
                        continue;
                    }
                    if req.uri().path() == tunnel::MOVE_PATH && !draining {
                        let mut respond = respond;
                        // The edge process drains: dial again now (the
                        // process that took its listener over answers).
                        // This tunnel stays open for the draining process's
                        // last requests until it closes it.
                        let _ = respond.send_response(http::Response::new(()), true);
                        tracing::info!(slot, "the edge asked to move this tunnel; dialing a new one");
                        monoio::spawn(finish_moved(conn, local.clone(), bound, shared.settings.drain_timeout));
                        return Ok(true);
                    }
                    monoio::spawn(forward::handle(local.clone(), bound.clone(), req, respond));
                }
            },
            _ = heartbeat.as_mut() => return Err("the edge stopped answering heartbeats".into()),
            _ = tick => {}
        }
    }
}

/// Serves a tunnel being moved until the draining edge process closes it,
/// or for `limit` at most (then GOAWAY, and its streams are cut).
async fn finish_moved<T>(
    mut conn: h2::server::Connection<T, Bytes>,
    local: Rc<Local>,
    bound: Rc<forward::BoundConns>,
    limit: Duration,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut deadline = std::pin::pin!(monoio::time::sleep(limit));
    loop {
        monoio::select! {
            next = conn.accept() => match next {
                None | Some(Err(_)) => return,
                Some(Ok((req, respond))) => {
                    monoio::spawn(forward::handle(local.clone(), bound.clone(), req, respond));
                }
            },
            _ = deadline.as_mut() => {
                conn.abrupt_shutdown(h2::Reason::NO_ERROR);
                return;
            }
        }
    }
}

/// The edge says which of its workers holds this tunnel.
fn hello(
    shared: &Shared,
    slot: usize,
    req: &http::Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
) {
    let parsed = req
        .headers()
        .get(meta::WORKER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once('/'))
        .and_then(|(i, n)| Some((i.parse::<usize>().ok()?, n.parse::<usize>().ok()?)));
    if let Some((index, count)) = parsed.filter(|(i, n)| i < n && *n <= 4096) {
        let mut c = shared.coverage.lock().unwrap_or_else(|e| e.into_inner());
        c.edge_workers = count;
        c.by_slot.insert(slot, index);
        tracing::debug!(
            slot,
            edge_worker = index,
            edge_workers = count,
            "tunnel placed"
        );
    }
    let _ = respond.send_response(http::Response::new(()), true);
}
