//! The slow-client battery: slowhttptest (Debian package `slowhttptest`)
//! attacks an edge in its three modes (slowloris, slow body, slow read)
//! with 3,000 connections, direct and through a connector, while a normal
//! client opens a new TLS connection for a GET every 100 ms from another
//! address. The edge runs under a 4,096-descriptor limit. The normal
//! client must succeed at least 99% of the time in every run.
//!
//! slowhttptest exits 0 whatever happens, so its CSV is read for the
//! attack's size; the verdict comes from the normal client.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use postern_e2e::backend::Backend;
use postern_e2e::client::read_response;
use postern_e2e::connector::Connector;
use postern_e2e::{passthrough_app, Edge, EdgeBuilder, Hop, TempDir};

const ATTACK_CONNECTIONS: usize = 3000;
const NOFILE: u64 = 4096;
/// How long the normal client measures, once the attack is up.
const MEASURE: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy)]
enum Mode {
    Slowloris,
    SlowBody,
    SlowRead,
}

impl Mode {
    fn args(self) -> Vec<String> {
        let v: &[&str] = match self {
            Mode::Slowloris => &["-H", "-i", "5"],
            Mode::SlowBody => &["-B", "-i", "5", "-s", "65536"],
            // Windows of 512–1024 bytes, 32 bytes read every 5 s, the
            // 1 MiB response asked for three times per connection.
            Mode::SlowRead => &[
                "-X", "-w", "512", "-y", "1024", "-n", "5", "-z", "32", "-k", "3",
            ],
        };
        v.iter().map(|s| s.to_string()).collect()
    }

    fn path(self) -> &'static str {
        match self {
            Mode::SlowRead => "/__stream/1048576",
            _ => "/",
        }
    }
}

/// An edge under the descriptor limit publishing `https://localhost/`,
/// and its connector for the tunnel hop.
fn deploy(backend: &Backend, hop: Hop) -> (Edge, Option<Connector>, rustls::RootCertStore) {
    let mut b = EdgeBuilder::new().app(&passthrough_app(
        "a",
        "https://localhost/",
        backend.addr,
        "",
    ));
    b.certs.push(("local".into(), vec!["localhost"]));
    if hop == Hop::Tunnel {
        b = b.tunnel();
    }
    let roots = b.pki.root_store();
    let (dir, path, https, http) = b.write();
    let edge = Edge::start_with_nofile(dir, &path, https, http, NOFILE);
    let connector = (hop == Hop::Tunnel).then(|| Connector::start(&edge, "default", "", 2));
    (edge, connector, roots)
}

/// One GET on a new TLS connection from 127.0.0.2: its latency, if it
/// succeeded within 5 s.
fn normal_get(edge: SocketAddr, roots: &rustls::RootCertStore) -> Option<Duration> {
    let start = Instant::now();
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    sock.bind(&SocketAddr::from(([127, 0, 0, 2], 0)).into())
        .ok()?;
    sock.connect_timeout(&edge.into(), Duration::from_secs(5))
        .ok()?;
    let tcp: TcpStream = sock.into();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    tcp.set_write_timeout(Some(Duration::from_secs(5))).ok()?;
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .ok()?
    .with_root_certificates(roots.clone())
    .with_no_client_auth();
    let conn = rustls::ClientConnection::new(
        Arc::new(cfg),
        rustls_pki_types::ServerName::try_from("localhost").ok()?,
    )
    .ok()?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    s.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let r = read_response(&mut s, &mut Vec::new(), "GET").ok()?;
    (r.status == 200 && start.elapsed() < Duration::from_secs(5)).then(|| start.elapsed())
}

/// The largest number of connections slowhttptest held open at once,
/// from its CSV (`seconds,closed,pending,connected,service available`).
fn peak_connected(csv: &std::path::Path) -> usize {
    std::fs::read_to_string(csv)
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(3)?.trim().parse().ok())
        .max()
        .unwrap_or(0)
}

struct Outcome {
    hop: Hop,
    mode: Mode,
    peak: usize,
    tried: usize,
    ok: usize,
    p99: Duration,
    rss_kib: u64,
}

fn run(hop: Hop, mode: Mode) -> Outcome {
    let backend = Backend::hello();
    let (edge, _connector, roots) = deploy(&backend, hop);
    let dir = TempDir::new("slowhttptest");
    let prefix = dir.path().join("attack");
    let url = format!("https://localhost:{}{}", edge.https.port(), mode.path());
    let mut attack = Command::new("slowhttptest")
        .args(mode.args())
        .args([
            "-c",
            &ATTACK_CONNECTIONS.to_string(),
            "-r",
            "1000",
            "-l",
            "60",
        ])
        .args(["-p", "5", "-g", "-o"])
        .arg(&prefix)
        .args(["-u", &url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("slowhttptest is installed (.ci/run installs it)");
    // Let the attack ramp up (1,000 connections a second).
    std::thread::sleep(Duration::from_secs(5));
    let mut latencies = Vec::new();
    let mut tried = 0;
    let start = Instant::now();
    while start.elapsed() < MEASURE {
        let t = Instant::now();
        tried += 1;
        if let Some(l) = normal_get(edge.https, &roots) {
            latencies.push(l);
        }
        std::thread::sleep(Duration::from_millis(100).saturating_sub(t.elapsed()));
    }
    let rss_kib = edge.memory_kib("VmRSS");
    let _ = attack.kill();
    let _ = attack.wait();
    latencies.sort();
    let p99 = latencies
        .get((latencies.len() * 99 / 100).min(latencies.len().saturating_sub(1)))
        .copied()
        .unwrap_or(Duration::MAX);
    Outcome {
        hop,
        mode,
        peak: peak_connected(&prefix.with_extension("csv")),
        tried,
        ok: latencies.len(),
        p99,
        rss_kib,
    }
}

#[test]
fn a_normal_client_is_served_through_slow_client_attacks() {
    let mut outcomes = Vec::new();
    for hop in Hop::BOTH {
        for mode in [Mode::Slowloris, Mode::SlowBody, Mode::SlowRead] {
            outcomes.push(run(hop, mode));
        }
    }
    eprintln!("hop     mode        attack peak  normal ok      p99      edge RSS");
    for o in &outcomes {
        eprintln!(
            "{:<7} {:<11} {:>11}  {:>4}/{:<4}  {:>8.1?}  {:>6} MiB",
            format!("{:?}", o.hop),
            format!("{:?}", o.mode),
            o.peak,
            o.ok,
            o.tried,
            o.p99,
            o.rss_kib / 1024
        );
    }
    for o in &outcomes {
        assert!(
            o.ok * 100 >= o.tried * 99,
            "{:?} {:?}: the normal client succeeded {} of {} times",
            o.hop,
            o.mode,
            o.ok,
            o.tried
        );
    }
}
