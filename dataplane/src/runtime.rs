//! Start-up: one monoio runtime per worker thread, pinned to a CPU, each
//! with its own SO_REUSEPORT socket per listener so the kernel spreads
//! connections across workers and no accept queue is shared.
//!
//! io_uring is used when the kernel allows it; otherwise every worker runs
//! on the epoll driver and one warning says so. Workers report their bind
//! results back before the edge declares itself ready, so a port already in
//! use is a start-up error, not a half-started edge.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use monoio::net::{ListenerOpts, TcpListener};
use postern_control::{EdgeConfig, Scheme};

use crate::admin::Control;
use crate::handover;

/// Set once the edge begins to drain (SIGTERM); workers notice within
/// 10 ms ([`Worker::check_drain`]).
pub static DRAINING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// When this process started serving, if it took the listeners over from
/// another edge process.
static TOOK_OVER: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// How long after taking over a request for a connector group with no
/// tunnel waits for one instead of failing: connectors move their tunnels
/// to a process that just took over within a second or two. (An edge
/// that started afresh answers such a request 502 at once.)
const TUNNEL_GRACE: Duration = Duration::from_secs(10);

/// What is left of [`TUNNEL_GRACE`], if anything.
pub fn tunnel_grace() -> Option<Duration> {
    let since = TOOK_OVER.get()?.elapsed();
    TUNNEL_GRACE.checked_sub(since).filter(|d| !d.is_zero())
}

/// How long the alert for a timed-out TLS handshake may take to send.
const ALERT_WAIT: Duration = Duration::from_secs(1);
use crate::edge::conn::{self as server, ConnInfo};
use crate::io::{Io, Stream};
use crate::tls::{self, stream::TlsStream};
use crate::worker::Worker;

use postern_control::counters::bump;

/// Counts a connection as closed however its task ends.
struct ConnectionGuard(Rc<Worker>);

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.0.counters.edge.connection_closed();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Tls(#[from] tls::TlsSetupError),
    #[error("cannot listen on {addr}: {err}")]
    Bind {
        addr: SocketAddr,
        err: std::io::Error,
    },
    #[error("cannot start worker {0}: {1}")]
    Worker(usize, std::io::Error),
}

/// A running edge: its resolved listen addresses.
pub struct Running {
    pub addresses: Vec<(Scheme, SocketAddr)>,
    pub tunnel_address: Option<SocketAddr>,
    pub workers: usize,
    pub io_uring: bool,
    /// Per worker: the app-table version it serves.
    pub serving: Vec<Arc<std::sync::atomic::AtomicU64>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Running {
    /// Blocks until every worker has stopped.
    pub fn wait(self) {
        for t in self.threads {
            let _ = t.join();
        }
    }
}

/// Listening sockets a worker starts on instead of binding its own (taken
/// over from the edge process this one replaces), per listener.
#[derive(Default)]
struct Adopted {
    listeners: Vec<Vec<OwnedFd>>,
    tunnel: Vec<OwnedFd>,
}

/// Starts the workers on the published snapshot and certificates. With
/// `taken`, the workers serve the sockets a running edge handed over
/// (spread over them; a worker left without one binds its own) instead
/// of binding new ones; every socket served is recorded in `offers`, for
/// the next takeover.
pub fn start(
    cfg: &EdgeConfig,
    control: &Arc<Control>,
    taken: Option<&mut handover::Taken>,
    offers: &Arc<handover::Offers>,
) -> Result<Running, StartError> {
    let server_tls = if cfg.listeners.iter().any(|l| l.scheme == Scheme::Https) {
        let resolver = control
            .resolver()
            .ok_or_else(|| tls::TlsSetupError::Config("no certificate configured".into()))?;
        Some(tls::server_config(resolver, cfg.edge.http2.enabled)?)
    } else {
        None
    };

    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = cfg.edge.workers.map_or(cpus, |n| n.get());
    let io_uring = monoio::utils::detect_uring();
    if !io_uring {
        tracing::warn!("io_uring is unavailable (kernel, seccomp policy or MONOIO_FORCE_LEGACY_DRIVER); workers run on the epoll driver");
    }

    let mut addresses = Vec::new();
    for l in &cfg.listeners {
        addresses.push((l.scheme, fixed_port(l.address)?));
    }
    let tunnel_address = cfg.edge.tunnel_address.map(fixed_port).transpose()?;
    let mut adopted: Vec<Adopted> = (0..workers).map(|_| Adopted::default()).collect();
    let took_over = taken.is_some();
    if let Some(t) = taken {
        for (i, &(_, addr)) in addresses.iter().enumerate() {
            for (j, fd) in t
                .take(handover::Kind::Listener, addr)
                .into_iter()
                .enumerate()
            {
                let a = &mut adopted[j % workers];
                a.listeners.resize_with(addresses.len(), Vec::new);
                a.listeners[i].push(fd);
            }
        }
        if let Some(addr) = tunnel_address {
            for (j, fd) in t.take(handover::Kind::Tunnel, addr).into_iter().enumerate() {
                adopted[j % workers].tunnel.push(fd);
            }
        }
    }

    let max_connections = cfg
        .edge
        .max_connections
        .unwrap_or_else(crate::edge::admission::default_max_connections);
    let admission = crate::edge::admission::Admission::new(
        max_connections,
        cfg.edge.max_connections_per_source,
    );
    tracing::info!(
        max_connections,
        per_source = cfg.edge.max_connections_per_source,
        "connection caps"
    );
    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), StartError>>();
    let mut threads = Vec::new();
    let mut serving = Vec::new();
    for (index, adopted) in adopted.into_iter().enumerate() {
        let version = Arc::new(std::sync::atomic::AtomicU64::new(0));
        serving.push(version.clone());
        let plan = WorkerPlan {
            index,
            workers,
            pin: cfg.edge.pin_workers.then_some(index % cpus),
            addresses: addresses.clone(),
            h2c: cfg.listeners.iter().map(|l| l.h2c).collect(),
            tunnel_address,
            control: control.clone(),
            version,
            counters: control.counters.add_core(),
            server_tls: server_tls.clone(),
            handshake_timeout: cfg.edge.tls_handshake_timeout,
            send_timeout: cfg.edge.client_send_timeout,
            min_send_rate: cfg.edge.min_send_rate,
            admission: admission.clone(),
            ready: ready_tx.clone(),
            adopted,
            offers: offers.clone(),
        };
        let t = std::thread::Builder::new()
            .name(format!("postern-w{index}"))
            .spawn(move || plan.run())
            .map_err(|e| StartError::Worker(index, e))?;
        threads.push(t);
    }
    drop(ready_tx);
    if took_over {
        let _ = TOOK_OVER.set(std::time::Instant::now());
    }
    for _ in 0..workers {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(StartError::Worker(
                    0,
                    std::io::Error::other("a worker stopped during start-up"),
                ))
            }
        }
    }
    Ok(Running {
        tunnel_address,
        addresses,
        workers,
        io_uring,
        serving,
        threads,
    })
}

/// Port 0 means "any free port": pick one here so every worker's
/// SO_REUSEPORT socket shares it.
fn fixed_port(addr: SocketAddr) -> Result<SocketAddr, StartError> {
    if addr.port() != 0 {
        return Ok(addr);
    }
    std::net::TcpListener::bind(addr)
        .and_then(|probe| probe.local_addr())
        .map_err(|err| StartError::Bind { addr, err })
}

/// Everything one worker thread starts from.
struct WorkerPlan {
    index: usize,
    workers: usize,
    pin: Option<usize>,
    addresses: Vec<(Scheme, SocketAddr)>,
    /// Per listener: cleartext HTTP/2 with prior knowledge too.
    h2c: Vec<bool>,
    tunnel_address: Option<SocketAddr>,
    control: Arc<Control>,
    version: Arc<std::sync::atomic::AtomicU64>,
    counters: Arc<postern_control::counters::CoreCounters>,
    server_tls: Option<Arc<rustls::ServerConfig>>,
    handshake_timeout: Duration,
    send_timeout: Duration,
    min_send_rate: u64,
    admission: Arc<crate::edge::admission::Admission>,
    ready: mpsc::Sender<Result<(), StartError>>,
    adopted: Adopted,
    offers: Arc<handover::Offers>,
}

impl WorkerPlan {
    /// The worker thread: pins itself, builds its runtime, binds its
    /// sockets, reports ready (or why not), and serves until the end.
    fn run(self) {
        let index = self.index;
        if let Some(cpu) = self.pin {
            if let Err(e) = monoio::utils::bind_to_cpu_set([cpu]) {
                tracing::warn!(worker = index, cpu, error = ?e, "cannot pin worker");
            }
        }
        let rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .attach_thread_pool(crate::offload::pool())
            .with_entries(1024)
            .enable_timer()
            .build();
        match rt {
            Ok(mut rt) => rt.block_on(self.serve()),
            Err(e) => {
                let _ = self.ready.send(Err(StartError::Worker(index, e)));
            }
        }
    }

    async fn serve(self) {
        let worker = Worker::new(
            self.index,
            self.workers,
            self.control.published(),
            self.version,
            self.counters,
            self.control.tunnels.clone(),
            self.control.auth.clone(),
        );
        // Idle workers pick up a new app table within 10 ms too, so "every
        // worker serves version N" is observable; the same task shows the
        // worker is alive (`/healthz`).
        let refresher = worker.clone();
        monoio::spawn(async move {
            for beat in 1u64.. {
                monoio::time::sleep(Duration::from_millis(10)).await;
                let _ = refresher.snapshot();
                refresher.check_drain();
                refresher.counters.beat();
                if beat % (crate::upstream::SWEEP_EVERY.as_millis() as u64 / 10) == 0 {
                    refresher.upstream.sweep();
                }
            }
        });
        let bind = |addr: SocketAddr, backlog: i32| {
            let opts = ListenerOpts::new().reuse_port(true).backlog(backlog);
            TcpListener::bind_with_config(addr, &opts).map_err(|err| StartError::Bind { addr, err })
        };
        // The sockets handed over to this worker, else its own.
        let open = |addr: SocketAddr, backlog: i32, adopted: Vec<OwnedFd>| {
            if adopted.is_empty() {
                return bind(addr, backlog).map(|l| vec![l]);
            }
            adopted
                .into_iter()
                .map(|fd| {
                    TcpListener::from_std(std::net::TcpListener::from(fd))
                        .map_err(|err| StartError::Bind { addr, err })
                })
                .collect()
        };
        let mut adopted = self.adopted;
        adopted
            .listeners
            .resize_with(self.addresses.len(), Vec::new);
        let mut listeners = Vec::new();
        for (i, (&(scheme, addr), fds)) in self
            .addresses
            .iter()
            .zip(std::mem::take(&mut adopted.listeners))
            .enumerate()
        {
            match open(addr, 4096, fds) {
                Ok(ls) => {
                    for l in ls {
                        self.offers
                            .add(handover::Kind::Listener, addr, l.as_raw_fd());
                        listeners.push((i, scheme, l));
                    }
                }
                Err(e) => {
                    let _ = self.ready.send(Err(e));
                    return;
                }
            }
        }
        let mut tunnel_listeners = Vec::new();
        if let Some(addr) = self.tunnel_address {
            match open(addr, 1024, adopted.tunnel) {
                Ok(ls) => {
                    for l in ls {
                        self.offers.add(handover::Kind::Tunnel, addr, l.as_raw_fd());
                        tunnel_listeners.push(l);
                    }
                }
                Err(e) => {
                    let _ = self.ready.send(Err(e));
                    return;
                }
            }
        }
        let _ = self.ready.send(Ok(()));
        drop(self.ready);
        let mut tasks = Vec::new();
        for l in tunnel_listeners {
            tasks.push(monoio::spawn(crate::edge::tunnels::accept_loop(
                worker.clone(),
                l,
                self.control.clone(),
            )));
        }
        for (i, scheme, listener) in listeners {
            let h2c = self.h2c.get(i).copied().unwrap_or(false);
            let tls = match scheme {
                Scheme::Https => self.server_tls.clone(),
                Scheme::Http => None,
            };
            tasks.push(monoio::spawn(accept_loop(
                worker.clone(),
                listener,
                Listening {
                    scheme,
                    h2c,
                    tls,
                    handshake_timeout: self.handshake_timeout,
                    send_timeout: self.send_timeout,
                    min_send_rate: self.min_send_rate,
                    admission: self.admission.clone(),
                },
            )));
        }
        for t in tasks {
            t.await;
        }
        // The listeners closed for a drain: connections still open finish
        // on this runtime; the drain ends the process.
        std::future::pending::<()>().await;
    }
}

/// What a public listener's connections start from.
struct Listening {
    scheme: Scheme,
    h2c: bool,
    tls: Option<Arc<rustls::ServerConfig>>,
    handshake_timeout: Duration,
    send_timeout: Duration,
    min_send_rate: u64,
    admission: Arc<crate::edge::admission::Admission>,
}

/// A warning that says itself at most once per interval, with how many
/// times it was held back.
struct RateLimited {
    last: Option<std::time::Instant>,
    held: u64,
}

impl RateLimited {
    const EVERY: Duration = Duration::from_secs(10);

    /// Whether to log now, and how many occurrences were held back.
    fn allow(&mut self) -> Option<u64> {
        let now = std::time::Instant::now();
        match self.last {
            Some(t) if now.duration_since(t) < Self::EVERY => {
                self.held += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.held))
            }
        }
    }
}

/// Accept loops still running in this process; a drain ends the process
/// only once none is left (so no connection is accepted and then lost).
pub static ACCEPT_LOOPS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Counts one accept loop while it lives.
pub struct AcceptLoop(());

impl AcceptLoop {
    pub fn start() -> AcceptLoop {
        ACCEPT_LOOPS.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        AcceptLoop(())
    }
}

impl Drop for AcceptLoop {
    fn drop(&mut self) {
        ACCEPT_LOOPS.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
    }
}

/// The next connection on `listener`, or `None` once the worker drains.
/// The accept is cancelled, not dropped: a connection the kernel had
/// already handed to it is returned and served (a dropped accept would
/// leave that client hanging, and the socket may live on in another
/// process that took it over).
pub async fn accept_unless_draining(
    worker: &Worker,
    listener: &TcpListener,
) -> Option<std::io::Result<(monoio::net::TcpStream, SocketAddr)>> {
    if worker.is_draining() {
        return None;
    }
    let canceller = monoio::io::Canceller::new();
    let mut accept = std::pin::pin!(listener.cancelable_accept(canceller.handle()));
    monoio::select! {
        a = accept.as_mut() => Some(a),
        _ = worker.drain_wait() => {
            let _cancelled = canceller.cancel();
            accept.await.ok().map(Ok)
        }
    }
}

async fn accept_loop(worker: Rc<Worker>, listener: TcpListener, l: Listening) {
    let _live = AcceptLoop::start();
    let Listening {
        scheme,
        h2c,
        tls,
        handshake_timeout,
        send_timeout,
        min_send_rate,
        admission,
    } = l;
    let mut accept_warning = RateLimited {
        last: None,
        held: 0,
    };
    loop {
        let Some(accepted) = accept_unless_draining(&worker, &listener).await else {
            // Draining: this process stops accepting; new clients go to
            // another edge, or to the process that took the socket over.
            return;
        };
        let (tcp, peer) = match accepted {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors (or kernel memory): stop
                // accepting for a moment, so the connections already open
                // can finish and free theirs, instead of spinning on the
                // error; say so at most once per 10 s.
                let exhausted = matches!(
                    e.raw_os_error(),
                    Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
                );
                if let Some(held) = accept_warning.allow() {
                    tracing::warn!(worker = worker.index, error = %e, repeated = held, "accept failed; pausing accepts");
                }
                let pause = if exhausted { 100 } else { 10 };
                monoio::time::sleep(Duration::from_millis(pause)).await;
                continue;
            }
        };
        let admitted = match admission.admit(peer.ip()) {
            Ok(a) => a,
            Err(why) => {
                let edge = &worker.counters.edge;
                match why {
                    crate::edge::admission::Refused::OverTotal => bump(&edge.refused_over_total, 1),
                    crate::edge::admission::Refused::OverSource => {
                        bump(&edge.refused_over_source, 1)
                    }
                }
                // Closed at once: nothing is read, nothing allocated.
                drop(tcp);
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        // Counted before this loop can return: a drain that sees no open
        // connection and no accept loop left has lost nobody.
        worker.counters.edge.connection_opened();
        let open = ConnectionGuard(worker.clone());
        let worker = worker.clone();
        let tls = tls.clone();
        monoio::spawn(async move {
            let _admitted = admitted;
            let _open = open;
            let (stream, sni) = match tls {
                None => (Stream::Tcp(tcp), None),
                Some(cfg) => {
                    let conn = match rustls::ServerConnection::new(cfg) {
                        Ok(c) => c,
                        Err(_) => return,
                    };
                    let mut stream = Box::new(TlsStream::new(tcp, conn));
                    stream.trickle_aware();
                    let edge = &worker.counters.edge;
                    // Boxed: its state is needed only until the handshake
                    // is done, not for the connection's whole life.
                    let handshake =
                        Box::pin(monoio::time::timeout(handshake_timeout, stream.handshake()));
                    match handshake.await {
                        Ok(Ok(())) => bump(&edge.tls_handshakes, 1),
                        Ok(Err(e)) => {
                            bump(&edge.tls_handshake_failures, 1);
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            bump(&edge.tls_handshake_failures, 1);
                            tracing::debug!(%peer, "TLS handshake timed out");
                            // Say so with an alert rather than vanish; a
                            // client that does not read it is not waited for.
                            stream.conn.send_close_notify();
                            let _ = crate::timer::timeout(ALERT_WAIT, stream.flush_tls()).await;
                            return;
                        }
                    }
                    let sni = stream
                        .conn
                        .server_name()
                        .map(|s| Rc::from(s.to_ascii_lowercase()));
                    (Stream::ServerTls(stream), sni)
                }
            };
            let client_ip: Rc<str> = peer.ip().to_canonical().to_string().into();
            let info = ConnInfo {
                peer,
                client_ip,
                scheme,
                sni,
                outcome: Default::default(),
                id: worker.next_conn_id(),
                bound: Default::default(),
            };
            match stream {
                Stream::ServerTls(tls) if tls.conn.alpn_protocol() == Some(tls::ALPN_H2) => {
                    let (tcp, conn, early) = tls.into_parts();
                    match tcp.try_into_poll_io() {
                        Ok(tcp) => {
                            let io = tls::poll::PollTls::new(tcp, conn, early);
                            crate::edge::h2::serve(worker, io, info).await;
                        }
                        Err((e, _)) => {
                            tracing::debug!(%peer, error = %e, "cannot switch to HTTP/2")
                        }
                    }
                }
                stream => {
                    let mut io = Io::new(stream, send_timeout)
                        .paced(min_send_rate)
                        .trickle_aware();
                    let mut buf = bytes::BytesMut::new();
                    if h2c {
                        match sniff_preface(&mut io, &mut buf, handshake_timeout).await {
                            Sniffed::H2 => {
                                let Stream::Tcp(tcp) = io.stream else { return };
                                match tcp.try_into_poll_io() {
                                    Ok(tcp) => {
                                        let io = tls::poll::Prefixed {
                                            tcp,
                                            prefix: buf.freeze(),
                                        };
                                        crate::edge::h2::serve(worker, io, info).await;
                                    }
                                    Err((e, _)) => {
                                        tracing::debug!(%peer, error = %e, "cannot switch to HTTP/2")
                                    }
                                }
                                return;
                            }
                            Sniffed::Closed => return,
                            Sniffed::H1 => {}
                        }
                    }
                    server::serve(worker, io, info, buf).await;
                }
            }
        });
    }
}

enum Sniffed {
    H2,
    H1,
    Closed,
}

/// On an `h2c` listener: reads until the first bytes tell the HTTP/2
/// preface from an HTTP/1.1 request line (they differ by the fourth
/// byte, or sooner). What was read stays in `buf` for either.
async fn sniff_preface(io: &mut Io, buf: &mut bytes::BytesMut, limit: Duration) -> Sniffed {
    let preface = crate::edge::h2::PREFACE;
    let deadline = std::time::Instant::now() + limit;
    loop {
        let n = buf.len().min(preface.len());
        if buf[..n] != preface[..n] {
            return Sniffed::H1;
        }
        if n == preface.len() {
            return Sniffed::H2;
        }
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match crate::timer::timeout(left, io.read_buf(buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Sniffed::Closed,
            Ok(Ok(_)) => {}
            // A request line that never finishes: the HTTP/1.1 loop
            // answers it as it answers any slow head.
            Err(_) => return Sniffed::H1,
        }
    }
}
