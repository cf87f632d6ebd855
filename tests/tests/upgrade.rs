//! Zero-downtime upgrade and reload. Under a client loop of 10,000
//! requests (over new connections and over kept-alive ones), a new edge
//! process — another copy of the binary, as a package upgrade installs —
//! is started beside the running one and takes its listeners over; then
//! that process is reloaded with SIGUSR2 (what `systemctl reload` sends),
//! which starts the program again to take over once more. Every old
//! process drains and exits 0, and no request fails, on both hops.
//!
//! The clients behave as browsers and HTTP libraries do: a request sent
//! on a kept-alive connection that the server closed before answering
//! any of it is sent again on a new connection (RFC 9112 §9.3.1 allows
//! it; the server never saw it, or saw it and said nothing). Anything
//! else — a refused or reset new connection, an error status, a short
//! or wrong body — is a failure.

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postern_e2e::backend::{Backend, Reply};
use postern_e2e::client::{self, read_response, Stream};
use postern_e2e::{passthrough_app, postern_bin, EdgeBuilder, Hop};

const TOTAL: usize = 10_000;
const CLIENTS: usize = 4;
/// Each client's pace: the loop spans about 10 s, so both takeovers land
/// inside it.
const PACE: Duration = Duration::from_millis(4);

#[derive(Default)]
struct Tally {
    done: AtomicUsize,
    /// Requests sent again after a kept-alive connection closed unanswered.
    resent: AtomicUsize,
    failures: Mutex<Vec<String>>,
    stop: AtomicBool,
}

/// One client: `fresh` opens a connection per request; otherwise one
/// connection is kept alive (and replaced when the server closes it).
fn client(edge: SocketAddr, roots: rustls::RootCertStore, fresh: bool, tally: Arc<Tally>) {
    let connect = || client::tls(edge, "app.example.com", roots.clone());
    let mut kept: Option<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>> = None;
    let mut n = 0u64;
    while !tally.stop.load(Ordering::Relaxed) {
        let claimed = tally.done.fetch_add(1, Ordering::SeqCst);
        if claimed >= TOTAL {
            tally.done.fetch_sub(1, Ordering::SeqCst);
            return;
        }
        n += 1;
        let path = format!("/n/{n}");
        let raw = format!("GET {path} HTTP/1.1\r\nHost: app.example.com\r\n\r\n");
        let outcome = if fresh {
            let mut s = connect();
            exchange(&mut s, &raw).map_err(|e| format!("new connection: {e}"))
        } else {
            let reused = kept.is_some();
            let mut s = kept.take().unwrap_or_else(connect);
            match exchange(&mut s, &raw) {
                Ok(r) => {
                    if r.1 {
                        kept = Some(s);
                    }
                    Ok(r)
                }
                Err(e) if reused && e.unanswered => {
                    tally.resent.fetch_add(1, Ordering::Relaxed);
                    let mut s = connect();
                    let r = exchange(&mut s, &raw)
                        .map_err(|e| format!("new connection after a closed one: {e}"));
                    if matches!(r, Ok((_, true))) {
                        kept = Some(s);
                    }
                    r
                }
                Err(e) => Err(format!("kept-alive connection: {e}")),
            }
        };
        match outcome {
            Ok((body, _)) if body == format!("fine {path}") => {}
            Ok((body, _)) => tally
                .failures
                .lock()
                .unwrap()
                .push(format!("{path}: unexpected answer {body:?}")),
            Err(e) => tally.failures.lock().unwrap().push(format!("{path}: {e}")),
        }
        std::thread::sleep(PACE);
    }
}

struct Failed {
    /// Nothing of the response arrived: the request may be sent again.
    unanswered: bool,
    why: String,
}

impl std::fmt::Display for Failed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

/// Sends `raw` and reads the answer: (body, whether the connection stays
/// open).
fn exchange(s: &mut dyn Stream, raw: &str) -> Result<(String, bool), Failed> {
    let unanswered = |e: std::io::Error| Failed {
        unanswered: true,
        why: e.to_string(),
    };
    s.write_all(raw.as_bytes()).map_err(unanswered)?;
    s.flush().map_err(unanswered)?;
    let mut pending = Vec::new();
    let r = read_response(s, &mut pending, "GET").map_err(|e| Failed {
        unanswered: pending.is_empty(),
        why: e.to_string(),
    })?;
    if r.status != 200 {
        return Err(Failed {
            unanswered: false,
            why: format!("status {}: {}", r.status, r.text()),
        });
    }
    let close = r
        .header("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("close"));
    Ok((r.text(), !close))
}

/// The inode of the socket whose local end is `local` and remote end is
/// `remote`, while some process still holds it (a socket no process holds
/// shows inode 0).
fn held_socket(local: SocketAddr, remote: SocketAddr) -> Option<u64> {
    let hex = |a: SocketAddr| match a {
        SocketAddr::V4(v4) => format!(
            "{:08X}:{:04X}",
            u32::from_le_bytes(v4.ip().octets()),
            v4.port()
        ),
        SocketAddr::V6(_) => String::new(),
    };
    let (l, r) = (hex(local), hex(remote));
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table.lines().skip(1).find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        (f.len() > 9 && f[1] == l && f[2] == r)
            .then(|| f[9].parse::<u64>().ok())
            .flatten()
            .filter(|inode| *inode != 0)
    })
}

/// Starts `program edge --config config` and waits for it to serve.
fn start_edge(program: &std::path::Path, config: &std::path::Path, log: &std::path::Path) -> Child {
    let mut cmd = Command::new(program);
    cmd.args(["edge", "--config"]).arg(config).env(
        "POSTERN_LOG",
        std::env::var("TEST_POSTERN_LOG").unwrap_or_else(|_| "info".into()),
    );
    postern_e2e::spawn_edge(&mut cmd, log)
}

/// Waits (15 s at most) for `child` to end; returns its status.
fn ended(child: &mut Child, what: &str, log: &std::path::Path) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "{what} did not drain and exit: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The process (other than `not`) running `postern edge --config config`.
fn edge_process(config: &std::path::Path, not: &[u32]) -> Option<u32> {
    let want = config.to_string_lossy().into_owned();
    std::fs::read_dir("/proc").ok()?.find_map(|e| {
        let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        (args.iter().any(|a| a == "edge") && args.contains(&want) && !not.contains(&pid))
            .then_some(pid)
    })
}

fn wait_until(tally: &Tally, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while tally.done.load(Ordering::SeqCst) < count {
        assert!(Instant::now() < deadline, "the client loop stalled");
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn upgrade_and_reload(hop: Hop) {
    let backend = Backend::start(|seen| Reply::ok(format!("fine {}", seen.target)));
    let mut b = EdgeBuilder::new()
        .edge("drain_timeout = 5")
        .app(&passthrough_app(
            "app",
            "https://app.example.com/",
            backend.addr,
            "",
        ));
    if hop == Hop::Tunnel {
        b = b.tunnel();
    }
    let roots = b.pki.root_store();
    let (dir, config, https, http) = b.write();
    let dir_path = dir.path().to_path_buf();
    // The first process (its handle also serves the connector's
    // enrollment through the admin API, which moves along with it).
    let mut edge = postern_e2e::Edge::start_with(dir, &config, https, http);
    let first_log = edge.stderr_log.clone();
    let connector = (hop == Hop::Tunnel)
        .then(|| postern_e2e::connector::Connector::start(&edge, "default", "", 2));
    let first = &mut edge.child;

    let tally = Arc::new(Tally::default());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (roots, tally) = (roots.clone(), tally.clone());
            std::thread::spawn(move || client(https, roots, i % 2 == 0, tally))
        })
        .collect();

    // The upgrade: another copy of the program, started beside the first.
    wait_until(&tally, TOTAL / 4);
    let upgraded = dir_path.join("postern-upgraded");
    std::fs::copy(postern_bin(), &upgraded).unwrap();
    let second_log = dir_path.join("second.log");
    let at = tally.done.load(Ordering::SeqCst);
    let mut second = start_edge(&upgraded, &config, &second_log);
    let status = ended(first, "the first edge process", &first_log);
    assert!(
        status.success(),
        "{hop:?}: the first process ended with {status:?}: {}",
        std::fs::read_to_string(&first_log).unwrap_or_default()
    );
    eprintln!(
        "{hop:?}: upgrade done between request {at} and {}",
        tally.done.load(Ordering::SeqCst)
    );
    for line in std::fs::read_to_string(&first_log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("drain") || l.contains("WARN") || l.contains("ERROR"))
    {
        eprintln!("{hop:?} first process: {line}");
    }

    // The reload: SIGUSR2 starts the program again, which takes over.
    wait_until(&tally, TOTAL * 3 / 5);
    // A connection left idle across the reload: the draining process
    // closes it, and the client must see that close (a process started
    // by the reload must not hold a copy of the socket).
    let mut idle = client::tls(https, "app.example.com", roots.clone());
    match exchange(
        &mut idle,
        "GET /idle HTTP/1.1\r\nHost: app.example.com\r\n\r\n",
    ) {
        Ok((_, true)) => {}
        Ok((_, false)) => panic!("{hop:?}: the idle connection was closed before the reload"),
        Err(e) => panic!("{hop:?}: the idle connection's request failed: {e}"),
    }
    let at = tally.done.load(Ordering::SeqCst);
    let sent = Command::new("kill")
        .args(["-USR2", &second.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let status = ended(&mut second, "the reloaded edge process", &second_log);
    assert!(
        status.success(),
        "{hop:?}: the reloaded process ended with {status:?}: {}",
        std::fs::read_to_string(&second_log).unwrap_or_default()
    );
    eprintln!(
        "{hop:?}: reload done between request {at} and {}",
        tally.done.load(Ordering::SeqCst)
    );
    let third = edge_process(&config, &[edge.child.id(), second.id()])
        .expect("the process the reload started serves");
    idle.sock
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut byte = [0u8; 1];
    match std::io::Read::read(&mut idle, &mut byte) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Ok(_) => panic!("{hop:?}: the idle connection got bytes after the drain"),
        Err(e) => panic!(
            "{hop:?}: the idle connection still looks open 5 s after its process exited ({e})"
        ),
    }
    // No process still holds the edge's side of it: a process the reload
    // started would otherwise have inherited the socket and keep it (and
    // its file descriptor) for as long as it runs.
    let client_end = idle.sock.local_addr().unwrap();
    if let Some(inode) = held_socket(https, client_end) {
        let holders: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| {
                let pid = e.ok()?.file_name().to_str()?.to_string();
                pid.parse::<u32>().ok()?;
                let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
                let link = format!("socket:[{inode}]");
                fds.filter_map(|f| std::fs::read_link(f.ok()?.path()).ok())
                    .any(|l| l.to_string_lossy() == link)
                    .then_some(pid)
            })
            .collect();
        panic!(
            "{hop:?}: the edge's side of a connection closed by the draining process is still open (inode {inode}), held by process {holders:?} (the last edge process is {third})"
        );
    }

    for c in clients {
        c.join().unwrap();
    }
    let failures = tally.failures.lock().unwrap().clone();
    eprintln!(
        "{hop:?}: {} requests, {} sent again after a kept-alive connection closed unanswered, {} failed",
        tally.done.load(Ordering::SeqCst),
        tally.resent.load(Ordering::SeqCst),
        failures.len()
    );
    assert_eq!(tally.done.load(Ordering::SeqCst), TOTAL);
    assert!(
        failures.is_empty(),
        "{hop:?}: {} of {TOTAL} requests failed, e.g. {:?}\nsecond process: {}",
        failures.len(),
        &failures[..failures.len().min(5)],
        std::fs::read_to_string(&second_log).unwrap_or_default()
    );
    assert_eq!(
        backend.count(),
        TOTAL + 1,
        "{hop:?}: each request (and the idle connection's) reached the backend once"
    );

    // Moving tunnels is routine: the connector warned of nothing (until
    // the edge stops below, when it cannot reach one).
    if let Some(c) = &connector {
        let log = c.log_text();
        let warnings: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect();
        assert!(
            warnings.is_empty(),
            "{hop:?}: the connector warned across the upgrade and reload:\n{}",
            warnings.join("\n")
        );
    }
    // The last process drains on SIGTERM as well.
    let _ = Command::new("kill")
        .args(["-TERM", &third.to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::path::Path::new(&format!("/proc/{third}")).exists() {
        assert!(
            Instant::now() < deadline,
            "the last edge process did not exit"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(connector);
    drop(edge);
}

#[test]
fn an_upgrade_and_a_reload_under_load_fail_no_request() {
    for hop in Hop::BOTH {
        upgrade_and_reload(hop);
    }
}
