//! `postern`: the edge appliance, its tools, and a one-command quickstart.
//!
//! The binary is a thin shell: it parses the command line, loads and
//! validates configuration through `postern-control`, and hands a
//! validated config to [`runtime::start`]. Everything with a socket lives in
//! the modules below.

/// mimalloc's per-thread free lists suit thread-per-core: requests
/// allocate and free small buffers on one thread, and the tunnel path
/// spends 15-20% less CPU per request than on glibc malloc (measured with
/// scripts/bench-proxy.sh's tunnel setup, same run, A/B).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod accesslog;
mod admin;
mod args;
mod auth;
mod blocking_http;
mod cli;
mod clock;
mod connector;
mod edge;
mod error;
mod handover;
mod http1;
mod io;
mod offload;
mod pages;
mod quickstart;
mod relay;
mod route;
mod runtime;
mod sdnotify;
mod snapshot;
mod timer;
mod tls;
mod tunnel;
mod upstream;
mod worker;

pub use postern_dataplane::translate;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use args::{Cli, Command, ConnectorArgs, ConnectorCommand};
use clap::Parser;

fn connector(args: ConnectorArgs) -> ExitCode {
    match args.command {
        Some(ConnectorCommand::Register {
            edge,
            token,
            state_dir,
        }) => match connector::proxy::EdgeProxy::from_env()
            .and_then(|proxy| connector::register(&edge, &token, &state_dir, proxy.as_ref()))
        {
            Ok(id) => {
                println!(
                    "registered connector {} in group \"{}\" with edge {}\nrun it with: postern connector --state-dir {}",
                    id.id,
                    id.group,
                    id.edge,
                    state_dir.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("postern: {e}");
                ExitCode::from(1)
            }
        },
        None => {
            let Some(state_dir) = args.state_dir else {
                eprintln!("postern: connector: --state-dir is required (the directory given to `postern connector register`)");
                return ExitCode::from(2);
            };
            let settings = match connector::Settings::load(args.config.as_deref()) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("postern: {e}");
                    return ExitCode::from(2);
                }
            };
            // A first start with an edge and a token registers first (how
            // the service unit enrolls from its environment file).
            if let (Some(edge), Some(token)) = (&args.edge, &args.token) {
                if connector::state::Identity::load(&state_dir).is_err() {
                    match connector::register(
                        edge,
                        token,
                        &state_dir,
                        settings.edge_proxy.as_deref(),
                    ) {
                        Ok(id) => {
                            tracing::info!(connector = %id.id, group = %id.group, %edge, "registered")
                        }
                        Err(e) => {
                            eprintln!("postern: {e}");
                            return ExitCode::from(1);
                        }
                    }
                }
            }
            match connector::run(&state_dir, settings) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("postern: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("POSTERN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    if stderr_is_journal() {
        // journald stamps the time itself, and reads each line's
        // priority from its `<N>` prefix (`journalctl -p err` works).
        builder
            .without_time()
            .event_format(JournalPriority(
                tracing_subscriber::fmt::format().without_time(),
            ))
            .init();
    } else {
        builder.init();
    }
}

/// Whether stderr is connected to journald (systemd names the stream in
/// `JOURNAL_STREAM` as `device:inode`).
fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt;
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    stream == format!("{}:{}", meta.dev(), meta.ino())
}

/// Prefixes each log line with its syslog priority for journald.
struct JournalPriority<F>(F);

impl<S, N, F> tracing_subscriber::fmt::FormatEvent<S, N> for JournalPriority<F>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    N: for<'a> tracing_subscriber::fmt::FormatFields<'a> + 'static,
    F: tracing_subscriber::fmt::FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &tracing_subscriber::fmt::FmtContext<'_, S, N>,
        mut writer: tracing_subscriber::fmt::format::Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let priority = match *event.metadata().level() {
            tracing::Level::ERROR => 3,
            tracing::Level::WARN => 4,
            tracing::Level::INFO => 6,
            _ => 7,
        };
        write!(writer, "<{priority}>")?;
        self.0.format_event(ctx, writer, event)
    }
}

/// Commands that print for a person or a pipe end quietly when the
/// reader goes away (`postern counters | head`), as Unix tools do,
/// instead of failing on the broken pipe. (Servers keep SIGPIPE ignored:
/// a client that disconnects is an error to handle, not an exit.)
fn default_sigpipe() {
    // SAFETY: restoring a signal's default disposition has no
    // preconditions; no handler is involved.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Set for the go-between a reload starts (see [`restart_on_sigusr2`]).
const DETACH_ENV: &str = "POSTERN_DETACH";

/// The go-between of a reload: starts the program again with the same
/// arguments, detached, and exits.
fn detach() -> ExitCode {
    let started = std::env::current_exe().and_then(|program| {
        std::process::Command::new(program)
            .args(std::env::args_os().skip(1))
            .env_remove(DETACH_ENV)
            .spawn()
    });
    match started {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("postern: cannot start the new edge process: {e}");
            ExitCode::from(1)
        }
    }
}

/// Keeps the process off transparent huge pages. mimalloc asks for them
/// on its arenas, so every thread's first allocation used to pin a whole
/// 2 MiB page. An idle quickstart held 47 MB, 35 MB of it in huge pages;
/// now it holds 20 MB (the 4 MB left were faulted before `main`).
/// Throughput and CPU per request did not move beyond the noise
/// (scripts/bench-proxy.sh, both ways in turn), and an idle TLS connection
/// costs a little less (scripts/bench-idle.sh). The setting is the
/// process's, kept across a reload's exec.
fn no_huge_pages() {
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no
    // memory of ours; a kernel without it answers EINVAL, which changes
    // nothing.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

fn main() -> ExitCode {
    no_huge_pages();
    if std::env::var_os(DETACH_ENV).is_some() {
        return detach();
    }
    let cli = Cli::parse();
    if matches!(
        cli.command,
        Command::CheckConfig { .. }
            | Command::Apps { .. }
            | Command::Tokens { .. }
            | Command::Connectors { .. }
            | Command::Counters { .. }
    ) {
        default_sigpipe();
    }
    match cli.command {
        Command::CheckConfig { file } => check_config(&file),
        Command::Apps { target, command } => cli::apps(&target, command),
        Command::Tokens { target, command } => cli::tokens(&target, command),
        Command::Connector(args) => {
            init_logging();
            connector(args)
        }
        Command::Connectors { target, command } => cli::connectors(&target, command),
        Command::Status { target } => {
            default_sigpipe();
            cli::status(&target)
        }
        Command::Counters {
            target,
            interval,
            count,
            paths,
        } => cli::counters(&target, &interval, count, &paths),
        Command::Edge { config } => {
            init_logging();
            let cfg = match postern_control::load_file(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(2);
                }
            };
            run(&cfg, &config, None, None)
        }
        Command::Quickstart(args) => {
            init_logging();
            quickstart::run(args)
        }
    }
}

/// Runs once the edge listens, before it declares itself ready.
type OnReady =
    Box<dyn FnOnce(&std::sync::Arc<admin::Control>, &runtime::Running) -> Result<(), String>>;

/// Starts the edge and blocks; `banner` is printed once it is ready.
fn run(
    cfg: &postern_control::EdgeConfig,
    config_path: &Path,
    banner: Option<String>,
    on_ready: Option<OnReady>,
) -> ExitCode {
    let state_dir = cfg
        .edge
        .state_dir
        .clone()
        .unwrap_or_else(|| cfg.base_dir.join("state"));
    // The program as started: a reload starts it again even after a
    // package upgrade replaced the file.
    let program = std::env::current_exe().ok();
    // An edge already running on this state directory hands its
    // listeners over, and drains once this one serves.
    let mut taken = match handover::take_over(&state_dir) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("postern: {e}");
            return ExitCode::from(1);
        }
    };
    if let Some(t) = &taken {
        tracing::info!(
            pid = t.from,
            "taking over the listeners of the edge running on this state directory"
        );
    }
    let (control, cfg) = match admin::Control::open(cfg.clone(), &state_dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("postern: {e}");
            return ExitCode::from(1);
        }
    };
    if let Err(e) = accesslog::init(&cfg.edge.access_log, cfg.edge.access_log_json) {
        eprintln!(
            "postern: cannot open the access log {}: {e}",
            cfg.edge.access_log
        );
        return ExitCode::from(1);
    }
    let offers = std::sync::Arc::new(handover::Offers::default());
    match runtime::start(&cfg, &control, taken.as_mut(), &offers) {
        Ok(running) => {
            control.set_serving(running.serving.clone());
            control.auth.start();
            let admin_socket = taken
                .as_mut()
                .map(|t| t.take(handover::Kind::Admin, cfg.edge.admin_address))
                .and_then(|mut fds| fds.pop());
            let admin = match admin::http::start(
                cfg.edge.admin_address,
                admin_socket,
                control.clone(),
                &offers,
            ) {
                Ok(a) => a,
                Err(e) => {
                    eprintln!(
                        "postern: cannot listen on admin address {}: {e}",
                        cfg.edge.admin_address
                    );
                    return ExitCode::from(1);
                }
            };
            let metrics = match cfg.edge.metrics_address {
                None => None,
                Some(addr) => {
                    let socket = taken
                        .as_mut()
                        .map(|t| t.take(handover::Kind::Metrics, addr))
                        .and_then(|mut fds| fds.pop());
                    match admin::http::start_metrics(addr, socket, control.clone(), &offers) {
                        Ok(a) => Some(a),
                        Err(e) => {
                            eprintln!("postern: cannot listen on metrics address {addr}: {e}");
                            return ExitCode::from(1);
                        }
                    }
                }
            };
            if let Some(m) = metrics {
                tracing::info!(%m, "metrics (GET /metrics, no token) listening");
            }
            for (scheme, addr) in &running.addresses {
                tracing::info!(%scheme, %addr, workers = running.workers, io_uring = running.io_uring, "listening");
            }
            if let Some(addr) = running.tunnel_address {
                tracing::info!(%addr, "tunnel listener for connectors");
            }
            tracing::info!(%admin, state_dir = %state_dir.display(), "admin API listening");
            control.set_info(serde_json::json!({
                "version": env!("CARGO_PKG_VERSION"),
                "pid": std::process::id(),
                "workers": running.workers,
                "io_uring": running.io_uring,
                "listeners": running
                    .addresses
                    .iter()
                    .map(|(scheme, addr)| serde_json::json!({ "scheme": scheme.to_string(), "address": addr.to_string() }))
                    .collect::<Vec<_>>(),
                "tunnel_address": running.tunnel_address.map(|a| a.to_string()),
                "admin_address": admin.to_string(),
                "metrics_address": metrics.map(|m| m.to_string()),
                "state_dir": state_dir.display().to_string(),
                "config": config_path.display().to_string(),
            }));
            if let Err(e) = drain_on_sigterm(control.clone(), cfg.edge.drain_timeout) {
                tracing::warn!(error = %e, "cannot install the SIGTERM handler; SIGTERM ends the edge at once");
            }
            if let Err(e) = reload_on_sighup(config_path.to_path_buf(), control.clone()) {
                tracing::warn!(error = %e, "cannot install the SIGHUP handler; reload with the admin API instead");
            }
            match &program {
                Some(p) => {
                    if let Err(e) = restart_on_sigusr2(p.clone()) {
                        tracing::warn!(error = %e, "cannot install the SIGUSR2 handler; start a new `postern edge` on this state directory to take over instead");
                    }
                }
                None => {
                    tracing::warn!("cannot tell which program this is; SIGUSR2 (reload) is off")
                }
            }
            if let Some(f) = on_ready {
                if let Err(e) = f(&control, &running) {
                    eprintln!("postern: {e}");
                    return ExitCode::from(1);
                }
            }
            if let Some(t) = taken.take() {
                for s in t.unclaimed() {
                    tracing::info!(socket = %s, "not in this configuration: closed here, the old process closes it when it drains");
                }
                // The service manager follows this process from now on
                // (before the old one is told, so it never sees the
                // service without a main process).
                sdnotify::notify(&format!("MAINPID={}\nREADY=1", std::process::id()));
                if let Err(e) = t.ready() {
                    tracing::warn!(error = %e, "the old edge process did not confirm it drains; both serve until it stops");
                }
            } else {
                sdnotify::notify("READY=1");
            }
            // Where the command line finds this edge (its admin address).
            if let Err(e) =
                postern_control::store::save_json(&state_dir, EDGE_INFO_FILE, &control.info())
            {
                tracing::warn!(error = %e, "cannot record this edge in its state directory; `postern` commands need --admin");
            }
            let steps = std::sync::Arc::new(Takeover {
                control: control.clone(),
                drain_timeout: cfg.edge.drain_timeout,
            });
            if let Err(e) = handover::serve(&state_dir, offers, steps) {
                tracing::warn!(error = %e, "cannot serve takeovers; a reload or upgrade will have to stop this edge first");
            }
            let watched = control.clone();
            sdnotify::start_watchdog(move || {
                let alive = watched.counters.liveness();
                !alive.is_empty() && alive.iter().all(|l| l.0)
            });
            if let Some(b) = banner {
                println!("{b}");
            }
            println!("postern edge ready");
            running.wait();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("postern: {e}");
            ExitCode::from(1)
        }
    }
}

/// What a running edge records about itself in its state directory.
pub const EDGE_INFO_FILE: &str = "edge.json";

/// What this edge does when a new process takes its place.
struct Takeover {
    control: std::sync::Arc<admin::Control>,
    drain_timeout: std::time::Duration,
}

impl handover::Steps for Takeover {
    fn freeze(&self) {
        if let Err(e) = self.control.flush_registry() {
            tracing::warn!(error = %e, "cannot record connector activity before the takeover");
        }
        postern_control::store::hold_writes(true);
    }

    fn thaw(&self) {
        postern_control::store::hold_writes(false);
    }

    fn hand_over(&self) {
        handover::HANDED_OVER.store(true, std::sync::atomic::Ordering::Release);
        sdnotify::go_quiet();
        let control = self.control.clone();
        let limit = self.drain_timeout;
        let spawned = std::thread::Builder::new()
            .name("postern-drain".into())
            .spawn(move || drain(&control, limit, "handed over to a new edge process"));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the drain; exiting now");
            std::process::exit(0);
        }
    }
}

/// Drains the edge and exits 0: the listeners stop accepting, idle
/// connections close, HTTP/2 clients get GOAWAY, connectors are asked to
/// move their tunnels, and requests in flight finish; the process exits
/// once no client connection is left, or when `limit` has passed.
fn drain(control: &admin::Control, limit: std::time::Duration, why: &str) -> ! {
    let started = std::time::Instant::now();
    runtime::DRAINING.store(true, std::sync::atomic::Ordering::Release);
    tracing::info!(timeout_s = limit.as_secs(), reason = why, "draining");
    // Connectors asked to move close their tunnels here once their
    // streams are done; an older connector that does not know the request
    // is given a few seconds beyond the last client connection.
    let mut clients_gone: Option<std::time::Instant> = None;
    loop {
        std::thread::sleep(std::time::Duration::from_millis(20));
        let open = control.counters.totals().edge.active_connections;
        // Until every accept loop has stopped, a connection may still be
        // on its way in.
        let accepting = runtime::ACCEPT_LOOPS.load(std::sync::atomic::Ordering::Acquire);
        // A tunnel still being set up is asked to move once it is up.
        let setting_up = edge::tunnels::SETTING_UP.load(std::sync::atomic::Ordering::Acquire);
        if open > 0 || accepting > 0 || setting_up > 0 {
            clients_gone = None;
        } else {
            let since = *clients_gone.get_or_insert_with(std::time::Instant::now);
            let tunnels = control.tunnels.list().len();
            if tunnels == 0 || since.elapsed() >= std::time::Duration::from_secs(5) {
                tracing::info!(
                    took_ms = started.elapsed().as_millis() as u64,
                    tunnels_left = tunnels,
                    "drained"
                );
                break;
            }
        }
        if started.elapsed() >= limit {
            tracing::warn!(open, "drain timeout passed; closing the connections left");
            break;
        }
    }
    accesslog::flush();
    std::process::exit(0);
}

/// SIGTERM drains the edge (see [`drain`]).
fn drain_on_sigterm(
    control: std::sync::Arc<admin::Control>,
    limit: std::time::Duration,
) -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM])?;
    std::thread::Builder::new()
        .name("postern-sigterm".into())
        .spawn(move || {
            if signals.forever().next().is_none() {
                return;
            }
            sdnotify::notify("STOPPING=1");
            drain(&control, limit, "SIGTERM")
        })?;
    Ok(())
}

/// SIGUSR2 (`systemctl reload`) starts this program again with the same
/// arguments; the new process takes the listeners over, re-reading the
/// configuration file, and this one drains. A new process that fails
/// leaves this one serving.
fn restart_on_sigusr2(program: PathBuf) -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGUSR2])?;
    std::thread::Builder::new()
        .name("postern-sigusr2".into())
        .spawn(move || {
            for _ in signals.forever() {
                if handover::HANDED_OVER.load(std::sync::atomic::Ordering::Acquire) {
                    continue;
                }
                tracing::info!(program = %program.display(), "SIGUSR2: starting a new edge process to take over");
                // Started through a go-between that exits at once, so the
                // new process is the service manager's child (not this
                // one's): systemd then sees it exit, long after this one.
                let mut command = std::process::Command::new(&program);
                command
                    .args(std::env::args_os().skip(1))
                    .env(DETACH_ENV, "1")
                    // The watchdog belongs to whichever process is main.
                    .env_remove("WATCHDOG_PID");
                inherit_only_stdio(&mut command);
                let started = command.status();
                match started {
                    Ok(s) if s.success() => {}
                    Ok(s) => tracing::error!(status = %s, program = %program.display(), "cannot start a new edge process; this one carries on"),
                    Err(e) => tracing::error!(error = %e, program = %program.display(), "cannot start a new edge process; this one carries on"),
                }
            }
        })?;
    Ok(())
}

/// Makes `command`'s program start with standard input, output and error
/// only. Sockets the workers accept are not close-on-exec (io_uring's
/// accept does not set the flag), so a new edge process would otherwise
/// inherit every client connection and tunnel open at the moment: it
/// would keep them open after this process closes them (the peer never
/// sees the close) and hold their descriptors for as long as it runs.
/// What the new process needs comes across the takeover socket instead.
fn inherit_only_stdio(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and
    // makes only async-signal-safe system calls (no allocation, no
    // locks). Descriptors are marked close-on-exec rather than closed, so
    // the pipe on which the standard library reports a failed exec still
    // works.
    unsafe {
        command.pre_exec(|| {
            let first = 3;
            if libc::syscall(
                libc::SYS_close_range,
                first,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            ) == 0
            {
                return Ok(());
            }
            // Kernels before 5.11: every descriptor up to the limit.
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            let top = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
                limit.rlim_cur.min(1 << 20) as libc::c_int
            } else {
                1 << 16
            };
            for fd in first as libc::c_int..top {
                let flags = libc::fcntl(fd, libc::F_GETFD);
                if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                    libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
                }
            }
            Ok(())
        });
    }
}

/// SIGHUP re-reads the configuration file and makes its `[[app]]` list
/// the app table (one new version, persisted and pushed like an API
/// change). A file that does not validate changes nothing and is logged.
/// Listener, certificate and edge settings take effect on restart.
fn reload_on_sighup(path: PathBuf, control: std::sync::Arc<admin::Control>) -> std::io::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGHUP])?;
    std::thread::Builder::new()
        .name("postern-sighup".into())
        .spawn(move || {
            for _ in signals.forever() {
                if handover::HANDED_OVER.load(std::sync::atomic::Ordering::Acquire) {
                    tracing::info!(
                        "SIGHUP ignored: this process drains; the new one reads the file"
                    );
                    continue;
                }
                let cfg = match postern_control::load_file(&path) {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!("reload refused, nothing changed: {e}");
                        continue;
                    }
                };
                match control.change(|apps| {
                    *apps = cfg.app_specs.clone();
                    Ok(())
                }) {
                    Ok(version) => {
                        tracing::info!(version, file = %path.display(), "reloaded the app table")
                    }
                    Err(admin::ApplyError::Invalid(problems)) => {
                        tracing::error!("reload refused, nothing changed: {}", problems.join("; "))
                    }
                    Err(e) => tracing::error!("reload refused, nothing changed: {e}"),
                }
            }
        })?;
    Ok(())
}

fn check_config(file: &std::path::Path) -> ExitCode {
    let cfg = match postern_control::load_file(file) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let mut failed = false;
    for c in &cfg.certificates {
        match tls::load_certificate(c) {
            Ok(loaded) => println!(
                "certificate {}: {}",
                loaded.source.display(),
                loaded.names.join(", ")
            ),
            Err(e) => {
                eprintln!(
                    "{}: invalid configuration\n  - certificate: {e}",
                    file.display()
                );
                failed = true;
            }
        }
    }
    for l in &cfg.listeners {
        println!(
            "listener {}://{} (public port {})",
            l.scheme, l.address, l.public_port
        );
    }
    match cfg.edge.tunnel_address {
        Some(t) => println!(
            "tunnel listener {t}: apps are relayed through connectors of their connector_group"
        ),
        None => println!(
            "no tunnel_address: the edge proxies straight to internal URLs (no connectors)"
        ),
    }
    println!(
        "{:<20} {:<40} {:<40} {:<8} {:<12} {:<8}",
        "APP", "EXTERNAL URL", "INTERNAL URL", "ENABLED", "PREAUTH", "TIMEOUT"
    );
    for a in &cfg.apps {
        println!(
            "{:<20} {:<40} {:<40} {:<8} {:<12} {:<8}",
            a.name,
            a.external_url.to_string(),
            a.internal_url.to_string(),
            a.enabled,
            format!("{:?}", a.preauth).to_lowercase(),
            format!("{}s", a.backend_timeout.duration().as_secs()),
        );
    }
    if failed {
        ExitCode::from(2)
    } else {
        println!("configuration OK: {} app(s)", cfg.apps.len());
        ExitCode::SUCCESS
    }
}
