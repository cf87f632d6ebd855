//! The edge's side of the tunnels: the listener connectors dial, and the
//! registry of open tunnels every worker picks from.
//!
//! Each worker accepts tunnels on its own SO_REUSEPORT socket and drives
//! their HTTP/2 connections on its own runtime. The registry is shared:
//! it changes only when a tunnel opens or closes (a mutex and a version
//! bump), and each worker keeps its own copy of the list, refreshed when
//! the version moves, so picking a tunnel takes no lock. A worker prefers
//! its own tunnels; when it has none for a group it uses another
//! worker's (the h2 handles are thread-safe and monoio wakes across
//! threads), and counts a cross-core relay.
#![deny(clippy::disallowed_methods)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use monoio::net::{TcpListener, TcpStream};

use crate::admin::Control;
use crate::tunnel::{self, meta, Reply};
use crate::worker::Worker;

/// One open tunnel.
pub struct Tunnel {
    pub serial: u64,
    pub connector: String,
    pub group: String,
    /// The edge worker whose runtime drives the connection.
    pub worker: usize,
    pub send: h2::client::SendRequest<Bytes>,
    /// Streams the owning worker has open (written by that worker only).
    local_streams: AtomicUsize,
    /// Requests the owning worker relayed (written by that worker only).
    local_requests: AtomicU64,
    /// Streams and requests of other workers' cross-worker relays.
    remote_streams: AtomicUsize,
    remote_requests: AtomicU64,
    /// No new streams: the connector said GOAWAY, was revoked, or died.
    closing: AtomicBool,
    /// Revoked: the connection task ends the tunnel.
    killed: AtomicBool,
    waker: Mutex<Option<Waker>>,
}

impl Tunnel {
    /// Streams in flight, from every worker.
    pub fn streams(&self) -> usize {
        self.local_streams.load(Ordering::Relaxed) + self.remote_streams.load(Ordering::Relaxed)
    }

    /// Requests relayed, from every worker.
    pub fn requests(&self) -> u64 {
        self.local_requests.load(Ordering::Relaxed) + self.remote_requests.load(Ordering::Relaxed)
    }

    pub fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Ends the tunnel now (revocation).
    pub fn close(&self) {
        self.closing.store(true, Ordering::Release);
        self.killed.store(true, Ordering::Release);
        if let Some(w) = self.waker.lock().unwrap_or_else(|e| e.into_inner()).take() {
            w.wake();
        }
    }

    /// Stops new streams if `e` says the connection is going away.
    pub fn close_if_going_away(&self, e: &h2::Error) {
        if e.is_go_away() || e.is_io() {
            self.retire();
        }
    }

    /// No new streams; the ones in flight finish (a draining connector).
    pub fn retire(&self) {
        self.closing.store(true, Ordering::Release);
    }

    fn poll_closed(&self, cx: &mut std::task::Context<'_>) -> Poll<()> {
        *self.waker.lock().unwrap_or_else(|e| e.into_inner()) = Some(cx.waker().clone());
        if self.killed.load(Ordering::Acquire) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}

/// Counts a stream against its tunnel while it lives. Dropped on the
/// worker that took it.
pub struct Lease {
    pub tunnel: Arc<Tunnel>,
    /// Taken by a worker other than the tunnel's own.
    pub cross: bool,
    /// The client address's place under `max_tunnel_streams_per_source`.
    pub source: Option<crate::edge::admission::Admitted>,
}

impl Lease {
    fn take(tunnel: &Arc<Tunnel>, worker: usize) -> Lease {
        let cross = tunnel.worker != worker;
        if cross {
            tunnel.remote_streams.fetch_add(1, Ordering::Relaxed);
            tunnel.remote_requests.fetch_add(1, Ordering::Relaxed);
        } else {
            single_writer_add(&tunnel.local_streams, 1);
            let n = tunnel.local_requests.load(Ordering::Relaxed);
            tunnel.local_requests.store(n + 1, Ordering::Relaxed);
        }
        Lease {
            tunnel: tunnel.clone(),
            cross,
            source: None,
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.cross {
            self.tunnel.remote_streams.fetch_sub(1, Ordering::Relaxed);
        } else {
            single_writer_add(&self.tunnel.local_streams, usize::MAX);
        }
    }
}

/// Adds (wrapping) to a counter only the calling worker writes: a plain
/// load and store, no locked instruction.
fn single_writer_add(c: &AtomicUsize, n: usize) {
    c.store(c.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

pub type TunnelList = Arc<Vec<Arc<Tunnel>>>;

/// The fewest tunnel streams one address may hold by default.
pub const MIN_SHARE: usize = 64;

/// Every open tunnel of this edge.
pub struct Tunnels {
    /// Tunnel streams held per client address.
    sources: Arc<crate::edge::admission::Admission>,
    /// `max_tunnel_streams_per_source`, if set.
    per_source: Option<usize>,
    version: AtomicU64,
    list: Mutex<TunnelList>,
    serial: AtomicU64,
    /// Connectors revoked while this edge runs (the registry file holds
    /// the durable list).
    revoked: Mutex<HashSet<String>>,
    /// Requests carried by tunnels that have since closed, per connector.
    retired_requests: Mutex<std::collections::HashMap<String, u64>>,
}

/// One connector's tunnel counters.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct ConnectorCounters {
    pub group: String,
    pub tunnels: u64,
    pub requests: u64,
    pub streams_in_flight: u64,
}

impl Tunnels {
    pub fn new(per_source: Option<usize>) -> Tunnels {
        Tunnels {
            sources: crate::edge::admission::Admission::new(usize::MAX, usize::MAX),
            per_source,
            version: Default::default(),
            list: Default::default(),
            serial: Default::default(),
            revoked: Default::default(),
            retired_requests: Default::default(),
        }
    }

    /// A place for one more tunnel stream of a client at `source`, when
    /// it holds fewer than `max_tunnel_streams_per_source`, or by default
    /// half of what the `open` tunnels can carry (at least [`MIN_SHARE`]).
    pub fn admit_stream(
        &self,
        source: std::net::IpAddr,
        open: usize,
    ) -> Option<crate::edge::admission::Admitted> {
        let cap = self
            .per_source
            .unwrap_or_else(|| (open * tunnel::MAX_STREAMS as usize / 2).max(MIN_SHARE));
        self.sources.admit_within(source, cap).ok()
    }

    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub fn list(&self) -> TunnelList {
        self.list.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn edit(&self, f: impl FnOnce(&mut Vec<Arc<Tunnel>>)) {
        let mut guard = self.list.lock().unwrap_or_else(|e| e.into_inner());
        let mut next: Vec<Arc<Tunnel>> = guard.as_ref().clone();
        f(&mut next);
        *guard = Arc::new(next);
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    /// Open tunnels of connector `id`.
    pub fn count(&self, id: &str) -> u32 {
        self.list().iter().filter(|t| t.connector == id).count() as u32
    }

    /// Per-connector counters: open tunnels, requests relayed (since the
    /// edge started), streams in flight.
    pub fn counters(&self) -> std::collections::BTreeMap<String, ConnectorCounters> {
        let mut out: std::collections::BTreeMap<String, ConnectorCounters> = self
            .retired_requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(id, n)| {
                (
                    id.clone(),
                    ConnectorCounters {
                        requests: *n,
                        ..Default::default()
                    },
                )
            })
            .collect();
        for t in self.list().iter() {
            let c = out.entry(t.connector.clone()).or_default();
            c.group = t.group.clone();
            c.tunnels += 1;
            c.requests += t.requests();
            c.streams_in_flight += t.streams() as u64;
        }
        out
    }

    /// Open tunnels of connector `id` per edge worker.
    pub fn by_worker(&self, id: &str, workers: usize) -> Vec<u32> {
        let mut v = vec![0u32; workers];
        for t in self.list().iter().filter(|t| t.connector == id) {
            if let Some(n) = v.get_mut(t.worker) {
                *n += 1;
            }
        }
        v
    }

    /// Ends every tunnel of `id` now and refuses new ones.
    pub fn revoke(&self, id: &str) {
        self.revoked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.to_string());
        for t in self.list().iter().filter(|t| t.connector == id) {
            t.close();
        }
    }

    pub fn is_revoked(&self, id: &str) -> bool {
        self.revoked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .contains(id)
    }
}

/// Picks the tunnel for a request of `group`: the `held` one if it is
/// usable (it holds this client's connection-bound session), else the
/// least busy healthy one with a free stream, this worker's own first,
/// then another worker's (`Lease::cross`); when every one is full, the
/// least busy (the request waits there for a stream). `skip` holds
/// tunnels that already refused this request.
pub fn pick(
    list: &[Arc<Tunnel>],
    group: &str,
    worker: usize,
    skip: &[u64],
    held: Option<u64>,
) -> Option<Lease> {
    let mut best: Option<&Arc<Tunnel>> = None;
    let mut best_key = (true, true, true, usize::MAX);
    for t in list {
        if t.group != group || t.is_closing() || skip.contains(&t.serial) {
            continue;
        }
        let streams = t.streams();
        let full = streams >= tunnel::MAX_STREAMS as usize;
        let key = (
            held != Some(t.serial) && full,
            held != Some(t.serial),
            t.worker != worker,
            streams,
        );
        if key < best_key {
            best_key = key;
            best = Some(t);
        }
    }
    Some(Lease::take(best?, worker))
}

/// Accepts tunnels (and enrollments) on one worker.
pub async fn accept_loop(worker: Rc<Worker>, listener: TcpListener, control: Arc<Control>) {
    let _live = crate::runtime::AcceptLoop::start();
    loop {
        let Some(accepted) = crate::runtime::accept_unless_draining(&worker, &listener).await
        else {
            // Draining: connectors dial the process that took over.
            return;
        };
        let (tcp, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(worker = worker.index, error = %e, "tunnel accept failed");
                monoio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let worker = worker.clone();
        let control = control.clone();
        let mut setup = SettingUp::start();
        monoio::spawn(async move {
            if let Err(e) = serve(worker, tcp, peer, control, &mut setup).await {
                tracing::debug!(%peer, error = %e, "tunnel connection ended");
            }
        });
    }
}

/// Tunnel-listener connections not yet serving as tunnels (in their TLS
/// handshake or hello, or in an enrollment or renewal exchange). A
/// draining process waits for them, so a connector that dialed it just
/// before the listener moved is asked to move too rather than cut off.
pub static SETTING_UP: AtomicUsize = AtomicUsize::new(0);

/// Counts one connection in [`SETTING_UP`] until it is listed as a tunnel
/// or ends.
struct SettingUp {
    counted: bool,
}

impl SettingUp {
    fn start() -> SettingUp {
        SETTING_UP.fetch_add(1, Ordering::AcqRel);
        SettingUp { counted: true }
    }

    fn done(&mut self) {
        if std::mem::take(&mut self.counted) {
            SETTING_UP.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl Drop for SettingUp {
    fn drop(&mut self) {
        self.done();
    }
}

async fn serve(
    worker: Rc<Worker>,
    tcp: TcpStream,
    peer: SocketAddr,
    control: Arc<Control>,
    setup: &mut SettingUp,
) -> std::io::Result<()> {
    let tcp = tcp.try_into_poll_io().map_err(|(e, _)| e)?;
    let Some(tls_config) = control.tunnel_tls() else {
        return Ok(());
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_config);
    let mut tls = monoio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
        .await
        .map_err(|_| std::io::Error::other("TLS handshake timed out"))??;
    let (_, conn) = tls.get_ref();
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    let connector = conn
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| crate::tls::der::dns_names(c).ok())
        .and_then(|names| {
            names
                .iter()
                .find_map(|n| postern_control::ca::connector_id(n).map(str::to_string))
        });
    match (alpn.as_deref(), connector) {
        (Some(tunnel::ALPN_ENROLL), _) => {
            // Spending the token, signing and recording the connector
            // touch the disk: a control thread does it.
            let control = control.clone();
            let what = "the registration";
            control_exchange(&mut tls, what, move |req| control.enroll(&req, peer)).await
        }
        (Some(tunnel::ALPN_RENEW), Some(id)) => {
            let control = control.clone();
            let what = "the renewal";
            let renew = move |req: tunnel::RenewRequest| control.renew(&id, &req.csr);
            control_exchange(&mut tls, what, renew).await
        }
        (Some(tunnel::ALPN_TUNNEL), Some(id)) => {
            let group = match control.tunnel_group(&id) {
                Ok(g) => g,
                Err(why) => {
                    tracing::warn!(connector = %id, %peer, "tunnel refused: {why}");
                    return Ok(());
                }
            };
            run_tunnel(worker, tls, id, group, peer, control, setup).await
        }
        _ => {
            tracing::debug!(%peer, "tunnel connection without a known protocol or certificate");
            Ok(())
        }
    }
}

/// One request-reply exchange with a connector (enrollment, renewal):
/// reads its JSON request within [`EXCHANGE_TIMEOUT`], answers it on a
/// control thread, writes the reply and closes.
async fn control_exchange<Req, F>(tls: &mut TunnelIo, what: &str, answer: F) -> std::io::Result<()>
where
    Req: serde::de::DeserializeOwned + Send + 'static,
    F: FnOnce(Req) -> Reply + Send + 'static,
{
    let read = monoio::time::timeout(EXCHANGE_TIMEOUT, tunnel::read_json(tls));
    let reply = match read.await.unwrap_or_else(|_| Err(timed_out())) {
        Ok(req) => crate::offload::run(move || answer(req))
            .await
            .unwrap_or_else(|| Reply {
                error: Some(format!("the edge could not process {what}")),
                ..Default::default()
            }),
        Err(e) => Reply {
            error: Some(e.to_string()),
            ..Default::default()
        },
    };
    finish(tls, &reply).await
}

/// How long an enrollment or renewal exchange may take in all.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

fn timed_out() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        "the request did not arrive in time",
    )
}

/// Writes the reply and closes, within [`EXCHANGE_TIMEOUT`].
async fn finish(tls: &mut TunnelIo, reply: &Reply) -> std::io::Result<()> {
    monoio::time::timeout(EXCHANGE_TIMEOUT, async {
        tunnel::write_json(tls, reply).await?;
        tokio::io::AsyncWriteExt::shutdown(tls).await
    })
    .await
    .unwrap_or_else(|_| Err(timed_out()))
}

type TunnelIo = tokio_rustls::server::TlsStream<monoio::net::tcp::stream_poll::TcpStreamPoll>;

async fn run_tunnel(
    worker: Rc<Worker>,
    tls: TunnelIo,
    connector: String,
    group: String,
    peer: SocketAddr,
    control: Arc<Control>,
    setup: &mut SettingUp,
) -> std::io::Result<()> {
    let (send, mut conn) = h2::client::Builder::new()
        .initial_window_size(tunnel::STREAM_WINDOW)
        .initial_connection_window_size(tunnel::CONNECTION_WINDOW)
        .max_header_list_size(tunnel::MAX_HEADER_LIST)
        .max_concurrent_reset_streams(256)
        .handshake::<_, Bytes>(tls)
        .await
        .map_err(std::io::Error::other)?;
    let ping = conn.ping_pong();
    let tunnels = control.tunnels.clone();
    let tunnel = Arc::new(Tunnel {
        serial: tunnels.serial.fetch_add(1, Ordering::Relaxed) + 1,
        connector: connector.clone(),
        group: group.clone(),
        worker: worker.index,
        send: send.clone(),
        local_streams: AtomicUsize::new(0),
        local_requests: AtomicU64::new(0),
        remote_streams: AtomicUsize::new(0),
        remote_requests: AtomicU64::new(0),
        closing: AtomicBool::new(false),
        killed: AtomicBool::new(false),
        waker: Mutex::new(None),
    });
    // Tell the connector where this tunnel landed before serving on it.
    let hello = hello(send, worker.index, worker.workers);
    let mut conn = std::pin::pin!(conn);
    let hello_ok = monoio::select! {
        r = hello => r,
        r = conn.as_mut() => { tracing::debug!(error = ?r.err(), "tunnel closed during hello"); false }
    };
    if !hello_ok {
        return Ok(());
    }
    tunnels.edit(|l| l.push(tunnel.clone()));
    setup.done();
    control.connector_seen(&connector);
    tracing::info!(%connector, %group, %peer, worker = worker.index, "tunnel open");
    let mut heartbeat = std::pin::pin!(async {
        match ping {
            Some(p) => tunnel::heartbeat(p).await,
            None => std::future::pending().await,
        }
    });
    let mut asked_to_move = false;
    let why = loop {
        let closed = std::future::poll_fn(|cx| tunnel.poll_closed(cx));
        // When this process drains, the connector is asked to dial again
        // (reaching the process that took the listener over); this tunnel
        // keeps serving the process's last requests until it exits.
        let drain = async {
            if asked_to_move {
                std::future::pending::<()>().await;
            }
            worker.drain_wait().await;
        };
        monoio::select! {
            r = conn.as_mut() => break match r { Ok(()) => "closed by the connector".to_string(), Err(e) => e.to_string() },
            _ = heartbeat.as_mut() => break "heartbeat unanswered".to_string(),
            _ = closed => break "revoked".to_string(),
            _ = drain => {
                asked_to_move = true;
                monoio::spawn(ask_to_move(tunnel.send.clone(), connector.clone()));
            }
        }
    };
    tunnel.retire();
    tunnels.edit(|l| l.retain(|t| t.serial != tunnel.serial));
    *tunnels
        .retired_requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .entry(connector.clone())
        .or_default() += tunnel.requests();
    control.connector_seen(&connector);
    tracing::info!(%connector, %peer, reason = %why, "tunnel closed");
    Ok(())
}

/// Asks the connector to move this tunnel: it dials a new one at once
/// and keeps this one open until this process closes it.
async fn ask_to_move(send: h2::client::SendRequest<Bytes>, connector: String) {
    let Ok(req) = http::Request::builder()
        .method("POST")
        .uri(format!("https://postern{}", tunnel::MOVE_PATH))
        .body(())
    else {
        return;
    };
    let asked = async {
        let mut ready = send.ready().await.ok()?;
        let (resp, _) = ready.send_request(req, true).ok()?;
        resp.await.ok()
    };
    match monoio::time::timeout(Duration::from_secs(10), asked).await {
        Ok(Some(r)) if r.status() == 200 => {
            tracing::info!(%connector, "draining: asked the connector to move its tunnel")
        }
        _ => tracing::debug!(%connector, "draining: the connector did not confirm the move"),
    }
    MOVES_ASKED.fetch_add(1, Ordering::AcqRel);
}

/// Tunnels this draining process has asked to move (answered or not): the
/// drain ends once every open tunnel has been asked, so connectors dial
/// the new process before this one closes their tunnels.
pub static MOVES_ASKED: AtomicUsize = AtomicUsize::new(0);

async fn hello(send: h2::client::SendRequest<Bytes>, index: usize, count: usize) -> bool {
    let req = match http::Request::builder()
        .method("POST")
        .uri(format!("https://postern{}", tunnel::HELLO_PATH))
        .header(meta::WORKER, format!("{index}/{count}"))
        .body(())
    {
        Ok(r) => r,
        Err(_) => return false,
    };
    let Ok(send_ready) = monoio::time::timeout(Duration::from_secs(10), send.clone().ready()).await
    else {
        return false;
    };
    let Ok(mut ready) = send_ready else {
        return false;
    };
    let Ok((resp, _)) = ready.send_request(req, true) else {
        return false;
    };
    matches!(
        monoio::time::timeout(Duration::from_secs(10), resp).await,
        Ok(Ok(r)) if r.status() == 200
    )
}
