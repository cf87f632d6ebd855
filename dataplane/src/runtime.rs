//! Start-up: one monoio runtime per worker thread, pinned to a CPU, each
//! with its own SO_REUSEPORT socket per listener so the kernel spreads
//! connections across workers and no accept queue is shared.
//!
//! io_uring is used when the kernel allows it; otherwise every worker runs
//! on the epoll driver and one warning says so. Workers report their bind
//! results back before the edge declares itself ready, so a port already in
//! use is a start-up error, not a half-started edge.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use monoio::net::{ListenerOpts, TcpListener};
use postern_control::{EdgeConfig, Scheme};

use crate::admin::Control;
use crate::edge::conn::{self as server, ConnInfo};
use crate::io::{Io, Stream};
use crate::snapshot::Published;
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

/// Starts the workers on the published snapshot and certificates.
pub fn start(cfg: &EdgeConfig, control: &Arc<Control>) -> Result<Running, StartError> {
    let published: Arc<Published> = control.published();
    let counters = &control.counters;
    let resolver = control.resolver();
    let server_tls = if cfg.listeners.iter().any(|l| l.scheme == Scheme::Https) {
        let resolver = resolver
            .ok_or_else(|| tls::TlsSetupError::Config("no certificate configured".into()))?;
        Some(tls::server_config(resolver)?)
    } else {
        None
    };

    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let workers = cfg.edge.workers.map_or(cpus, |n| n.get());
    let io_uring = monoio::utils::detect_uring();
    if !io_uring {
        tracing::warn!("io_uring is unavailable (kernel, seccomp policy or MONOIO_FORCE_LEGACY_DRIVER); workers run on the epoll driver");
    }

    // Port 0 means "any free port": pick one here so every worker's
    // SO_REUSEPORT socket shares it.
    let mut addresses = Vec::new();
    for l in &cfg.listeners {
        let mut addr = l.address;
        if addr.port() == 0 {
            let probe =
                std::net::TcpListener::bind(addr).map_err(|err| StartError::Bind { addr, err })?;
            addr = probe
                .local_addr()
                .map_err(|err| StartError::Bind { addr, err })?;
        }
        addresses.push((l.scheme, addr));
    }
    let tunnel_address = match cfg.edge.tunnel_address {
        Some(addr) if addr.port() == 0 => {
            let probe =
                std::net::TcpListener::bind(addr).map_err(|err| StartError::Bind { addr, err })?;
            Some(
                probe
                    .local_addr()
                    .map_err(|err| StartError::Bind { addr, err })?,
            )
        }
        other => other,
    };

    let (ready_tx, ready_rx) = mpsc::channel::<Result<(), StartError>>();
    let mut threads = Vec::new();
    let mut serving = Vec::new();
    for index in 0..workers {
        let addresses = addresses.clone();
        let published = published.clone();
        let control = control.clone();
        let version = Arc::new(std::sync::atomic::AtomicU64::new(0));
        serving.push(version.clone());
        let core_counters = counters.add_core();
        let server_tls = server_tls.clone();
        let ready = ready_tx.clone();
        let pin = cfg.edge.pin_workers.then_some(index % cpus);
        let handshake_timeout = cfg.edge.tls_handshake_timeout;
        let send_timeout = cfg.edge.client_send_timeout;
        let t = std::thread::Builder::new()
            .name(format!("postern-w{index}"))
            .spawn(move || {
                if let Some(cpu) = pin {
                    if let Err(e) = monoio::utils::bind_to_cpu_set([cpu]) {
                        tracing::warn!(worker = index, cpu, error = ?e, "cannot pin worker");
                    }
                }
                let mut rt = match monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
                    .attach_thread_pool(crate::offload::pool())
                    .with_entries(1024)
                    .enable_timer()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready.send(Err(StartError::Worker(index, e)));
                        return;
                    }
                };
                rt.block_on(async move {
                    let worker = Worker::new(
                        index,
                        workers,
                        published,
                        version,
                        core_counters,
                        control.tunnels.clone(),
                    );
                    // Idle workers pick up a new app table within 10 ms too,
                    // so "every worker serves version N" is observable; the
                    // same task shows the worker is alive (`/healthz`).
                    let refresher = worker.clone();
                    monoio::spawn(async move {
                        loop {
                            monoio::time::sleep(Duration::from_millis(10)).await;
                            let _ = refresher.snapshot();
                            refresher.counters.beat();
                        }
                    });
                    let mut listeners = Vec::new();
                    for (scheme, addr) in addresses {
                        let opts = ListenerOpts::new().reuse_port(true).backlog(4096);
                        match TcpListener::bind_with_config(addr, &opts) {
                            Ok(l) => listeners.push((scheme, l)),
                            Err(err) => {
                                let _ = ready.send(Err(StartError::Bind { addr, err }));
                                return;
                            }
                        }
                    }
                    let mut tunnel_listener = None;
                    if let Some(addr) = tunnel_address {
                        let opts = ListenerOpts::new().reuse_port(true).backlog(1024);
                        match TcpListener::bind_with_config(addr, &opts) {
                            Ok(l) => tunnel_listener = Some(l),
                            Err(err) => {
                                let _ = ready.send(Err(StartError::Bind { addr, err }));
                                return;
                            }
                        }
                    }
                    let _ = ready.send(Ok(()));
                    drop(ready);
                    let mut tasks = Vec::new();
                    if let Some(l) = tunnel_listener {
                        tasks.push(monoio::spawn(crate::edge::tunnels::accept_loop(
                            worker.clone(),
                            l,
                            control.clone(),
                        )));
                    }
                    for (scheme, listener) in listeners {
                        let tls = match scheme {
                            Scheme::Https => server_tls.clone(),
                            Scheme::Http => None,
                        };
                        tasks.push(monoio::spawn(accept_loop(
                            worker.clone(),
                            listener,
                            scheme,
                            tls,
                            handshake_timeout,
                            send_timeout,
                        )));
                    }
                    for t in tasks {
                        t.await;
                    }
                });
            })
            .map_err(|e| StartError::Worker(index, e))?;
        threads.push(t);
    }
    drop(ready_tx);
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

async fn accept_loop(
    worker: Rc<Worker>,
    listener: TcpListener,
    scheme: Scheme,
    tls: Option<Arc<rustls::ServerConfig>>,
    handshake_timeout: Duration,
    send_timeout: Duration,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly
                // instead of spinning.
                tracing::warn!(worker = worker.index, error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let worker = worker.clone();
        let tls = tls.clone();
        monoio::spawn(async move {
            worker.counters.edge.connection_opened();
            let _open = ConnectionGuard(worker.clone());
            let (io, sni) = match tls {
                None => (Stream::Tcp(tcp), None),
                Some(cfg) => {
                    let conn = match rustls::ServerConnection::new(cfg) {
                        Ok(c) => c,
                        Err(_) => return,
                    };
                    let mut stream = Box::new(TlsStream::new(tcp, conn));
                    let edge = &worker.counters.edge;
                    match monoio::time::timeout(handshake_timeout, stream.handshake()).await {
                        Ok(Ok(())) => bump(&edge.tls_handshakes, 1),
                        Ok(Err(e)) => {
                            bump(&edge.tls_handshake_failures, 1);
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            bump(&edge.tls_handshake_failures, 1);
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    }
                    let sni = stream.conn.server_name().map(|s| s.to_ascii_lowercase());
                    (Stream::ServerTls(stream), sni)
                }
            };
            let io = Io::new(io, send_timeout);
            let client_ip = peer.ip().to_canonical().to_string();
            let info = ConnInfo {
                peer,
                client_ip,
                scheme,
                sni,
                outcome: Default::default(),
                id: worker.next_conn_id(),
                bound: Default::default(),
            };
            server::serve(worker, io, info).await;
        });
    }
}
