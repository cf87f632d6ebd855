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
mod auth;
mod blocking_http;
mod cli;
mod clock;
mod connector;
mod edge;
mod error;
mod http1;
mod io;
mod offload;
mod pages;
mod quickstart;
mod relay;
mod route;
mod runtime;
mod snapshot;
mod timer;
mod tls;
mod tunnel;
mod upstream;
mod worker;

pub use postern_dataplane::translate;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "postern",
    version,
    about = "Publish private web apps without opening inbound ports."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the edge, a connector and a sample app on this machine, in one process.
    Quickstart(quickstart::Args),
    /// Run the edge appliance from a configuration file.
    Edge {
        /// The edge configuration (TOML).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration file and print the resulting app table.
    CheckConfig {
        /// The edge configuration (TOML).
        file: PathBuf,
    },
    /// Manage published apps on a running edge.
    Apps {
        #[command(flatten)]
        target: cli::Target,
        #[command(subcommand)]
        command: cli::AppsCommand,
    },
    /// Run a connector (inside the private network), or register one.
    Connector(ConnectorArgs),
    /// Connectors registered with this edge.
    Connectors {
        #[command(flatten)]
        target: cli::Target,
        #[command(subcommand)]
        command: cli::ConnectorsCommand,
    },
    /// Enrollment tokens for connectors.
    Tokens {
        #[command(flatten)]
        target: cli::Target,
        #[command(subcommand)]
        command: cli::TokensCommand,
    },
    /// Sample counters like typeperf: CSV rows of Perfmon counter paths.
    Counters {
        #[command(flatten)]
        target: cli::Target,
        /// Time between samples (e.g. 1s, 500ms).
        #[arg(long, default_value = "1s")]
        interval: String,
        /// Number of samples (default: until interrupted).
        #[arg(long)]
        count: Option<u64>,
        /// Counter paths, wildcards allowed, e.g. '\\Postern Edge(*)\\Requests/sec'.
        paths: Vec<String>,
    },
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true)]
struct ConnectorArgs {
    #[command(subcommand)]
    command: Option<ConnectorCommand>,
    /// Where the connector's identity (from `register`) is kept.
    #[arg(long, env = "POSTERN_CONNECTOR_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// Optional connector settings (TOML, `[connector]` table).
    #[arg(long)]
    config: Option<PathBuf>,
}

#[derive(Subcommand)]
enum ConnectorCommand {
    /// Register with an edge using a one-time enrollment token.
    Register {
        /// The edge's tunnel listener, HOST:PORT.
        #[arg(long)]
        edge: String,
        /// The token printed by `postern tokens create`.
        #[arg(long, env = "POSTERN_ENROLLMENT_TOKEN")]
        token: String,
        #[arg(long)]
        state_dir: PathBuf,
    },
}

fn connector(args: ConnectorArgs) -> ExitCode {
    match args.command {
        Some(ConnectorCommand::Register {
            edge,
            token,
            state_dir,
        }) => match connector::register(&edge, &token, &state_dir) {
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
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => check_config(&file),
        Command::Apps { target, command } => cli::apps(&target, command),
        Command::Tokens { target, command } => cli::tokens(&target, command),
        Command::Connector(args) => {
            init_logging();
            connector(args)
        }
        Command::Connectors { target, command } => cli::connectors(&target, command),
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
    match runtime::start(&cfg, &control) {
        Ok(running) => {
            control.set_serving(running.serving.clone());
            control.auth.start();
            let admin = match admin::http::start(cfg.edge.admin_address, control.clone()) {
                Ok(a) => a,
                Err(e) => {
                    eprintln!(
                        "postern: cannot listen on admin address {}: {e}",
                        cfg.edge.admin_address
                    );
                    return ExitCode::from(1);
                }
            };
            for (scheme, addr) in &running.addresses {
                tracing::info!(%scheme, %addr, workers = running.workers, io_uring = running.io_uring, "listening");
            }
            if let Some(addr) = running.tunnel_address {
                tracing::info!(%addr, "tunnel listener for connectors");
            }
            tracing::info!(%admin, state_dir = %state_dir.display(), "admin API listening");
            if let Err(e) = drain_on_sigterm(control.clone(), cfg.edge.drain_timeout) {
                tracing::warn!(error = %e, "cannot install the SIGTERM handler; SIGTERM ends the edge at once");
            }
            if let Err(e) = reload_on_sighup(config_path.to_path_buf(), control.clone()) {
                tracing::warn!(error = %e, "cannot install the SIGHUP handler; reload with the admin API instead");
            }
            if let Some(f) = on_ready {
                if let Err(e) = f(&control, &running) {
                    eprintln!("postern: {e}");
                    return ExitCode::from(1);
                }
            }
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

/// SIGTERM drains the edge: the listeners close, idle connections close,
/// HTTP/2 clients get GOAWAY, and requests in flight finish; the process
/// exits 0 once no client connection is left, or when `drain_timeout`
/// has passed.
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
            let started = std::time::Instant::now();
            runtime::DRAINING.store(true, std::sync::atomic::Ordering::Release);
            tracing::info!(timeout_s = limit.as_secs(), "SIGTERM: draining");
            loop {
                std::thread::sleep(std::time::Duration::from_millis(20));
                let open = control.counters.totals().edge.active_connections;
                if open <= 0 {
                    tracing::info!(took_ms = started.elapsed().as_millis() as u64, "drained");
                    break;
                }
                if started.elapsed() >= limit {
                    tracing::warn!(open, "drain timeout passed; closing the connections left");
                    break;
                }
            }
            accesslog::flush();
            std::process::exit(0);
        })?;
    Ok(())
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
