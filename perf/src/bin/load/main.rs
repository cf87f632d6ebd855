//! `postern-load`: a thread-per-core HTTP load generator on monoio
//! (io_uring), the instrument Postern's benchmarks measure with.
//!
//! * HTTP/1.1 over TCP or TLS, with optional pipelining;
//!   HTTP/2 over TLS (ALPN `h2`) or cleartext with prior knowledge (h2c),
//!   with a number of streams in flight per connection.
//! * Closed loop (each connection or stream sends its next request when
//!   the last is answered), open loop at a fixed total rate with
//!   latencies timed from when each request was due (`--rate`), or a new
//!   connection per request for handshake rates (`--new-connection`,
//!   with TLS resumption unless `--no-resume`).
//! * Latencies go to HdrHistogram; the report gives req/s, p50 … p99.9
//!   and max, and errors by kind, on stdout and optionally as JSON. A
//!   progress line is shown while it runs when stderr is a terminal.
//!
//! Threads share nothing on the request path: each has its own runtime,
//! connections, histogram and counters, summed when the run ends.

#![forbid(unsafe_code)]

mod conn;
mod h1;
mod h2;
mod run;
mod stats;

use std::io::{IsTerminal, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

use crate::run::{Plan, ThreadPlan};
use crate::stats::{Progress, Stats};

#[derive(Parser)]
#[command(
    name = "postern-load",
    version,
    about = "HTTP/1.1 and HTTP/2 load generator (closed loop, open loop, connection per request)",
    after_help = "Examples:\n  postern-load -c 32 -d 10 http://127.0.0.1:8080/1k\n  postern-load --http2 -c 1 -m 64 -d 10 https://localhost:8443/1k\n  postern-load -c 32 --rate 20000 -d 30 --json out.json https://localhost:8443/1k\n  postern-load --new-connection -c 16 -d 10 https://localhost:8443/"
)]
struct Args {
    /// Target URL (http:// or https://).
    url: String,
    /// Connections in all, spread over the threads.
    #[arg(short, long, default_value_t = 32)]
    connections: usize,
    /// Threads, each with its own io_uring runtime.
    #[arg(short, long, default_value_t = 1)]
    threads: usize,
    /// Seconds to measure.
    #[arg(short, long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before measuring starts.
    #[arg(short, long, default_value_t = 0.0)]
    warmup: f64,
    /// HTTP/2: over TLS with ALPN h2 for https URLs, with prior knowledge (h2c) for http URLs.
    #[arg(long)]
    http2: bool,
    /// HTTP/2 streams in flight per connection.
    #[arg(short = 'm', long, default_value_t = 1)]
    streams: usize,
    /// HTTP/1.1 requests written at once on a connection (pipelining depth).
    #[arg(short, long, default_value_t = 1)]
    pipeline: usize,
    /// Open loop: requests per second in all, each timed from when it was due.
    #[arg(short = 'R', long)]
    rate: Option<f64>,
    /// A new connection (and TLS handshake) for every request.
    #[arg(long)]
    new_connection: bool,
    /// With --new-connection: full TLS handshakes only (no session resumption).
    #[arg(long)]
    no_resume: bool,
    /// Extra request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Seconds a request (or a connect) may take before it counts as a timeout.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// Verify the server's certificate against this PEM file (by default any certificate is accepted, as wrk and h2load do).
    #[arg(long)]
    cacert: Option<String>,
    /// Connect to this address instead of resolving the URL's host.
    #[arg(long)]
    connect_to: Option<SocketAddr>,
    /// Write the result as JSON to this file.
    #[arg(long)]
    json: Option<String>,
    /// How each thread's runtime drives its sockets.
    #[arg(long = "io", value_enum, default_value = "epoll")]
    driver: run::Driver,
}

/// The parts of the URL the run needs.
struct Target {
    https: bool,
    host: String,
    port: u16,
    /// Path and query.
    path: String,
}

fn parse_url(url: &str) -> Result<Target, String> {
    let (https, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!(
            "`{url}`: the URL must start with http:// or https://"
        ));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("`{url}`: the URL needs a host (and no user name)"));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            let port = p
                .parse()
                .map_err(|_| format!("`{url}`: `{p}` is not a port number"))?;
            (h.to_string(), port)
        }
        _ => (authority.to_string(), if https { 443 } else { 80 }),
    };
    Ok(Target {
        https,
        host,
        port,
        path: path.to_string(),
    })
}

fn fail(msg: impl std::fmt::Display) -> ! {
    eprintln!("postern-load: {msg}");
    std::process::exit(2);
}

fn main() {
    let args = Args::parse();
    let target = parse_url(&args.url).unwrap_or_else(|e| fail(e));
    if args.connections == 0 || args.threads == 0 || args.streams == 0 || args.pipeline == 0 {
        fail("--connections, --threads, --streams and --pipeline must be at least 1");
    }
    let valid_duration = args.duration > 0.0 && args.duration.is_finite();
    let valid_warmup = args.warmup >= 0.0 && args.warmup.is_finite();
    if !valid_duration || !valid_warmup {
        fail("--duration must be above 0 seconds and --warmup at least 0");
    }
    if let Some(r) = args.rate {
        let valid = r > 0.0 && r.is_finite();
        if !valid {
            fail("--rate must be above 0 requests per second");
        }
        if args.pipeline > 1 {
            fail("--rate (open loop) times each request from when it was due; it cannot be combined with --pipeline");
        }
    }
    if args.pipeline > 1 && args.http2 {
        fail("--pipeline is for HTTP/1.1; HTTP/2 uses --streams");
    }
    if args.no_resume && !args.new_connection {
        fail("--no-resume applies to --new-connection runs");
    }
    let threads = args.threads.min(args.connections);
    let addr = match args.connect_to {
        Some(a) => a,
        None => (target.host.trim_matches(['[', ']']), target.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .unwrap_or_else(|| fail(format!("cannot resolve `{}`", target.host))),
    };
    let tls = target.https.then(|| {
        let cfg = tls_config(&args, args.http2);
        let name = rustls::pki_types::ServerName::try_from(
            target.host.trim_matches(['[', ']']).to_string(),
        )
        .unwrap_or_else(|_| fail(format!("`{}` is not a valid TLS server name", target.host)));
        (cfg, name)
    });

    let authority = if (target.https && target.port == 443) || (!target.https && target.port == 80)
    {
        target.host.clone()
    } else {
        format!("{}:{}", target.host, target.port)
    };
    let mut extra = Vec::new();
    for h in &args.headers {
        let Some((name, value)) = h.split_once(':') else {
            fail(format!("header `{h}`: expected `Name: value`"));
        };
        let (name, value) = (name.trim(), value.trim());
        if http::HeaderName::from_bytes(name.as_bytes()).is_err()
            || http::HeaderValue::from_str(value).is_err()
        {
            fail(format!("header `{h}`: not a valid field name or value"));
        }
        extra.push((name.to_string(), value.to_string()));
    }
    let mut h1 = format!("GET {} HTTP/1.1\r\nHost: {authority}\r\n", target.path);
    for (n, v) in &extra {
        h1.push_str(&format!("{n}: {v}\r\n"));
    }
    h1.push_str("\r\n");
    let uri: http::Uri = format!(
        "{}://{authority}{}",
        if target.https { "https" } else { "http" },
        target.path
    )
    .parse()
    .unwrap_or_else(|e| fail(format!("`{}`: {e}", args.url)));
    let mut h2_headers = http::HeaderMap::new();
    for (n, v) in &extra {
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(n.to_ascii_lowercase().as_bytes()),
            http::HeaderValue::from_str(v),
        ) {
            h2_headers.append(n, v);
        }
    }

    let timeout = Duration::from_secs_f64(args.timeout.max(0.001));
    let start = Instant::now();
    let record_from = start + Duration::from_secs_f64(args.warmup);
    let plan = Plan {
        record_from,
        stop_at: record_from + Duration::from_secs_f64(args.duration),
        connections: args.connections,
        pipeline: args.pipeline,
        streams: args.streams,
        http2: args.http2,
        rate: args.rate,
        new_connection: args.new_connection,
        timeout,
    };
    let driver = args.driver;
    let mut progress = Vec::new();
    let mut handles = Vec::new();
    let mut first = 0;
    for t in 0..threads {
        let n = args.connections / threads + usize::from(t < args.connections % threads);
        let p = Arc::new(Progress::default());
        progress.push(p.clone());
        let tp = ThreadPlan {
            dial: conn::Dial {
                addr,
                tls: tls.clone(),
                connect_timeout: timeout,
                write_timeout: timeout,
            },
            plan: plan.clone(),
            h1_request: bytes::Bytes::from(h1.clone()),
            h2_parts: (http::Method::GET, uri.clone(), h2_headers.clone()),
            connections: n,
            first_connection: first,
            progress: p,
        };
        first += n;
        handles.push(
            std::thread::Builder::new()
                .name(format!("load-{t}"))
                .spawn(move || run::thread(tp, driver))
                .expect("a load thread"),
        );
    }

    let mode = if args.new_connection {
        if args.no_resume || !target.https {
            "a new connection per request"
        } else {
            "a new connection per request (TLS resumption allowed)"
        }
    } else if args.rate.is_some() {
        "open loop"
    } else {
        "closed loop"
    };
    let protocol = match (args.http2, target.https) {
        (false, false) => "HTTP/1.1",
        (false, true) => "HTTP/1.1 over TLS",
        (true, false) => "HTTP/2 (h2c)",
        (true, true) => "HTTP/2 over TLS",
    };
    let shape = if args.http2 && !args.new_connection {
        format!(
            "{} connections x {} streams",
            args.connections, args.streams
        )
    } else if args.pipeline > 1 {
        format!(
            "{} connections, pipeline {}",
            args.connections, args.pipeline
        )
    } else {
        format!("{} connections", args.connections)
    };
    let rate = args.rate.map_or(String::new(), |r| format!(", {r} req/s"));
    let io = match driver {
        run::Driver::Epoll => "epoll",
        run::Driver::Uring => "io_uring",
    };
    println!(
        "postern-load {}: {protocol}, {threads} threads ({io}), {shape}, {mode}{rate}, {} s",
        args.url, args.duration
    );
    show_progress(&progress, record_from, plan.stop_at);

    let mut total = Stats::default();
    for h in handles {
        match h.join() {
            Ok(s) => total.merge(&s),
            Err(_) => fail("a load thread panicked"),
        }
    }
    let secs = args.duration;
    report(&total, secs);
    if let Some(path) = &args.json {
        let percentiles: Vec<_> = [
            0.5, 0.75, 0.9, 0.95, 0.99, 0.995, 0.999, 0.9995, 0.9999, 1.0,
        ]
        .iter()
        .map(|&q| serde_json::json!([q, total.quantile_us(q)]))
        .collect();
        let json = serde_json::json!({
            "tool": "postern-load",
            "url": args.url,
            "protocol": protocol,
            "mode": mode,
            "threads": threads,
            "io": io,
            "connections": args.connections,
            "streams": args.streams,
            "pipeline": args.pipeline,
            "rate": args.rate,
            "duration_s": secs,
            "warmup_s": args.warmup,
            "requests": total.requests,
            "rps": total.requests as f64 / secs,
            "bytes": total.bytes,
            "latency_us": {
                "min": if total.latency.is_empty() { 0 } else { total.latency.min() },
                "mean": total.latency.mean(),
                "p50": total.quantile_us(0.5),
                "p90": total.quantile_us(0.9),
                "p99": total.quantile_us(0.99),
                "p99.9": total.quantile_us(0.999),
                "max": total.latency.max(),
            },
            "percentiles": percentiles,
            "errors": total.errors.iter().map(|(k, n)| (k.name().to_string(), serde_json::json!(n))).collect::<serde_json::Map<_, _>>(),
            "handshakes": { "full": total.handshakes_full, "resumed": total.handshakes_resumed },
        });
        if let Err(e) = std::fs::write(path, format!("{json:#}\n")) {
            fail(format!("cannot write {path}: {e}"));
        }
    }
}

/// A progress line on a terminal, once a second, until the run ends.
fn show_progress(progress: &[Arc<Progress>], record_from: Instant, stop_at: Instant) {
    let tty = std::io::stderr().is_terminal();
    let sum = || -> (u64, u64) {
        progress.iter().fold((0, 0), |(c, e), p| {
            (
                c + p.completed.load(std::sync::atomic::Ordering::Relaxed),
                e + p.errors.load(std::sync::atomic::Ordering::Relaxed),
            )
        })
    };
    let mut last = (0u64, Instant::now());
    loop {
        let now = Instant::now();
        if now >= stop_at {
            break;
        }
        std::thread::sleep((stop_at - now).min(Duration::from_secs(1)));
        if !tty {
            continue;
        }
        let now = Instant::now();
        let (done, errors) = sum();
        let rate = (done - last.0) as f64 / now.duration_since(last.1).as_secs_f64().max(1e-3);
        last = (done, now);
        let phase = if now < record_from {
            "warm-up"
        } else {
            "measuring"
        };
        let left = stop_at.saturating_duration_since(now).as_secs();
        let mut err = std::io::stderr();
        let _ = write!(
            err,
            "\r\x1b[2K  {phase}: {rate:>10.0} req/s  {done:>10} done  {errors} errors  {left} s left"
        );
        let _ = err.flush();
    }
    if tty {
        let _ = write!(std::io::stderr(), "\r\x1b[2K");
    }
}

fn report(s: &Stats, secs: f64) {
    let rps = s.requests as f64 / secs;
    println!(
        "  requests   {} in {secs} s: {rps:.1} req/s, {:.2} MB/s",
        s.requests,
        s.bytes as f64 / secs / 1e6
    );
    if s.requests > 0 {
        println!(
            "  latency    p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  (mean {:.0}, µs)",
            s.quantile_us(0.5),
            s.quantile_us(0.9),
            s.quantile_us(0.99),
            s.quantile_us(0.999),
            s.latency.max(),
            s.latency.mean()
        );
    }
    if s.handshakes_full + s.handshakes_resumed > 0 {
        println!(
            "  handshakes {} full, {} resumed",
            s.handshakes_full, s.handshakes_resumed
        );
    }
    if s.errors.is_empty() {
        println!("  errors     none");
    } else {
        let list: Vec<String> = s
            .errors
            .iter()
            .map(|(k, n)| format!("{} {n}", k.name()))
            .collect();
        println!("  errors     {} ({})", s.error_count(), list.join(", "));
    }
}

fn tls_config(args: &Args, http2: bool) -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .unwrap_or_else(|e| fail(format!("TLS versions: {e}")));
    let mut cfg = match &args.cacert {
        Some(path) => {
            use rustls::pki_types::pem::PemObject;
            let mut roots = rustls::RootCertStore::empty();
            let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
                .unwrap_or_else(|e| fail(format!("--cacert {path}: {e}")));
            for c in certs {
                let c = c.unwrap_or_else(|e| fail(format!("--cacert {path}: {e}")));
                roots
                    .add(c)
                    .unwrap_or_else(|e| fail(format!("--cacert {path}: {e}")));
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        None => builder
            .dangerous()
            // Load tests run against self-signed test certificates, as wrk
            // and h2load do; handshake signatures are still checked.
            .with_custom_certificate_verifier(Arc::new(
                postern_dataplane::tls::verify::NoVerification(provider),
            ))
            .with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![if http2 {
        b"h2".to_vec()
    } else {
        b"http/1.1".to_vec()
    }];
    if args.no_resume {
        cfg.resumption = rustls::client::Resumption::disabled();
    }
    Arc::new(cfg)
}
