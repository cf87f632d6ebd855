//! Faults under load. Each test names the promise it checks; all of them
//! hold three: no request hangs past its deadline, no client gets bytes
//! meant for another (every body carries its own id and checksum), and no
//! change the admin API acknowledged is lost.
//!
//! * A backend process killed while it streams bodies.
//! * A connector cut off: its network namespace's link dropped, so its
//!   tunnels go silent rather than closed.
//! * The edge ended with SIGKILL and with SIGTERM, and started again.
//! * The state directory's disk full while the app table is written.

use std::io::{ErrorKind, Read, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use postern_e2e::backend::{find, header_map, id_body, Backend};
use postern_e2e::client::{self, read_response, Stream};
use postern_e2e::connector::Connector;
use postern_e2e::{free_port, passthrough_app, wait_listening, Deployment, EdgeBuilder, Hop};

/// How one request ended, seen by its client.
#[derive(Debug)]
enum Outcome {
    /// A complete response: status and whether the body was the one this
    /// request asked for (only checked for 200).
    Answered { status: u16, own_body: bool },
    /// The connection failed or closed before a complete response.
    Broken(ErrorKind),
    /// Nothing for the client's whole read timeout.
    Hung,
}

/// `GET /id/n` on `s`; how it ended and how long it took.
fn fetch_id(s: &mut dyn Stream, host: &str, n: u64) -> (Outcome, Duration) {
    let started = Instant::now();
    let req = format!("GET /id/{n} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    if let Err(e) = s.write_all(req.as_bytes()).and_then(|_| s.flush()) {
        return (Outcome::Broken(e.kind()), started.elapsed());
    }
    let mut pending = Vec::new();
    let outcome = match read_response(s, &mut pending, "GET") {
        Ok(r) => Outcome::Answered {
            status: r.status,
            own_body: r.status == 200 && r.body == id_body(n),
        },
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Outcome::Hung,
        Err(e) => Outcome::Broken(e.kind()),
    };
    (outcome, started.elapsed())
}

/// One request's record: when it started (since the load began), how it
/// ended, how long it took.
type Record = (Duration, Outcome, Duration);

/// Clients that keep requesting `/id/N` of `host` (a new TLS connection
/// whenever the last one broke) until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<Vec<Record>>>,
    began: Instant,
}

impl Load {
    fn start(
        addr: SocketAddr,
        host: &'static str,
        roots: &rustls::RootCertStore,
        clients: u64,
        read_timeout: Duration,
    ) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let began = Instant::now();
        let threads = (0..clients)
            .map(|c| {
                let (stop, roots) = (stop.clone(), roots.clone());
                std::thread::spawn(move || {
                    let mut records = Vec::new();
                    let mut conn: Option<Box<dyn Stream>> = None;
                    let mut n = c * 1_000_000;
                    while !stop.load(Ordering::SeqCst) {
                        n += 1;
                        let s = match conn.as_mut() {
                            Some(s) => s,
                            None => match connect_tls(addr, host, &roots, read_timeout) {
                                Ok(s) => conn.insert(s),
                                Err(kind) => {
                                    records.push((
                                        began.elapsed(),
                                        Outcome::Broken(kind),
                                        Duration::ZERO,
                                    ));
                                    std::thread::sleep(Duration::from_millis(20));
                                    continue;
                                }
                            },
                        };
                        let at = began.elapsed();
                        let (outcome, took) = fetch_id(s.as_mut(), host, n);
                        if !matches!(outcome, Outcome::Answered { status: 200, .. }) {
                            conn = None;
                        }
                        records.push((at, outcome, took));
                    }
                    records
                })
            })
            .collect();
        Load {
            stop,
            threads,
            began,
        }
    }

    fn since_start(&self) -> Duration {
        self.began.elapsed()
    }

    fn finish(self) -> Vec<Record> {
        self.stop.store(true, Ordering::SeqCst);
        self.threads
            .into_iter()
            .flat_map(|t| t.join().expect("load client panicked"))
            .collect()
    }
}

/// A verified TLS connection whose handshake is done (so a refused or
/// reset connection shows here, as an error kind, not as a panic).
fn connect_tls(
    addr: SocketAddr,
    host: &str,
    roots: &rustls::RootCertStore,
    read_timeout: Duration,
) -> Result<Box<dyn Stream>, ErrorKind> {
    let tcp = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| e.kind())?;
    tcp.set_read_timeout(Some(read_timeout)).unwrap();
    tcp.set_nodelay(true).unwrap();
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots.clone())
    .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from(host.to_string()).unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn
            .complete_io(&mut s.sock)
            .map_err(|e| match e.kind() {
                ErrorKind::WouldBlock => ErrorKind::TimedOut,
                k => k,
            })?;
    }
    Ok(Box::new(s))
}

/// Summary line of a run's records.
fn tally(records: &[Record]) -> String {
    let mut ok = 0;
    let mut by_status = std::collections::BTreeMap::new();
    let mut broken = std::collections::BTreeMap::new();
    let mut hung = 0;
    for (_, o, _) in records {
        match o {
            Outcome::Answered {
                status: 200,
                own_body: true,
            } => ok += 1,
            Outcome::Answered { status, .. } => *by_status.entry(*status).or_insert(0) += 1,
            Outcome::Broken(kind) => *broken.entry(format!("{kind:?}")).or_insert(0) += 1,
            Outcome::Hung => hung += 1,
        }
    }
    let worst = records.iter().map(|r| r.2).max().unwrap_or_default();
    format!(
        "{} requests: {ok} correct, other statuses {by_status:?}, broken connections {broken:?}, {hung} hung; slowest {worst:?}",
        records.len()
    )
}

/// The promises every fault keeps: no request hung, and no 200 carried
/// another request's body (or a torn one).
fn assert_nothing_hung_or_mixed(what: &str, records: &[Record], deadline: Duration) {
    for (at, o, took) in records {
        assert!(
            !matches!(o, Outcome::Hung),
            "{what}: a request started at {at:?} hung: {}",
            tally(records)
        );
        assert!(
            *took <= deadline,
            "{what}: a request started at {at:?} took {took:?} (> {deadline:?})"
        );
        assert!(
            !matches!(
                o,
                Outcome::Answered {
                    status: 200,
                    own_body: false
                }
            ),
            "{what}: a 200 carried the wrong body (request at {at:?})"
        );
    }
}

// ---------------------------------------------------------------------
// A backend killed mid-body.

/// A backend in its own process (so it can be killed): `/big` is 8 MiB
/// with a Content-Length and `/chunked` 8 MiB chunked, both written in
/// 64 KiB pieces every 20 ms; anything else is `alive`.
const STREAMER: &str = r#"
import http.server, socketserver, sys, time
PIECE = bytes(range(256)) * 256
PIECES = 128
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def do_GET(self):
        if self.path.startswith("/big"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(PIECE) * PIECES))
            self.end_headers()
            for _ in range(PIECES):
                self.wfile.write(PIECE); self.wfile.flush(); time.sleep(0.02)
        elif self.path.startswith("/chunked"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(PIECES):
                self.wfile.write(b"%x\r\n" % len(PIECE) + PIECE + b"\r\n")
                self.wfile.flush(); time.sleep(0.02)
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_response(200)
            self.send_header("Content-Length", "5")
            self.end_headers()
            self.wfile.write(b"alive")
class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
S(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"#;

const BIG: usize = 65536 * 128;

struct Streamer(Child);

impl Streamer {
    fn start(port: u16) -> Streamer {
        let child = Command::new("python3")
            .args(["-c", STREAMER, &port.to_string()])
            .stdout(Stdio::null())
            .spawn()
            .expect("python3 runs the streaming backend");
        wait_listening(format!("127.0.0.1:{port}").parse().unwrap());
        Streamer(child)
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Streamer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How a download of a body the backend never finished ended.
struct Download {
    /// Body bytes (after the head) the client received.
    received: usize,
    /// The last bytes seen, to tell a finished chunked body.
    tail: Vec<u8>,
    head: String,
    /// The read that ended it: `None` for a clean close.
    ended_by: Option<ErrorKind>,
    ended_at: Instant,
}

fn download(
    addr: SocketAddr,
    roots: &rustls::RootCertStore,
    path: &str,
    progress: &AtomicUsize,
) -> Download {
    let mut s = connect_tls(addr, "stream.example.com", roots, Duration::from_secs(10))
        .expect("connect to the edge");
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: stream.example.com\r\n\r\n").as_bytes())
        .unwrap();
    let mut data = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut counted = 0;
    let ended_by = loop {
        match s.read(&mut buf) {
            Ok(0) => break None,
            Ok(n) => data.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::UnexpectedEof => break None,
            Err(e) => break Some(e.kind()),
        }
        // Report progress once the head and 256 KiB of body are in.
        if counted == 0 && data.len() > 256 * 1024 {
            counted = 1;
            progress.fetch_add(1, Ordering::SeqCst);
        }
    };
    let ended_at = Instant::now();
    let head_end = find(&data, b"\r\n\r\n").expect("a response head") + 4;
    Download {
        received: data.len() - head_end,
        tail: data[data.len().saturating_sub(7)..].to_vec(),
        head: String::from_utf8_lossy(&data[..head_end]).into_owned(),
        ended_by,
        ended_at,
    }
}

/// Promise: when a backend dies mid-body, each client it was sending to
/// sees its connection end promptly and its body visibly incomplete (short
/// of its Content-Length, or without the last chunk), never a clean end;
/// clients of other apps notice nothing; the app answers 502 while the
/// backend is down and serves again once it is back.
fn backend_killed_mid_body(hop: Hop) {
    let port = free_port();
    let mut streamer = Streamer::start(port);
    let steady = Backend::ids(Duration::ZERO);
    let b = EdgeBuilder::new()
        .app(&passthrough_app(
            "stream",
            "https://stream.example.com/",
            format!("127.0.0.1:{port}").parse().unwrap(),
            "",
        ))
        .app(&passthrough_app(
            "steady",
            "https://steady.example.com/",
            steady.addr,
            "",
        ));
    let d = Deployment::start(b, hop);
    let load = Load::start(
        d.edge.https,
        "steady.example.com",
        &d.roots,
        3,
        Duration::from_secs(10),
    );

    let progress = Arc::new(AtomicUsize::new(0));
    let downloads: Vec<_> = (0..6)
        .map(|i| {
            let (addr, roots, progress) = (d.edge.https, d.roots.clone(), progress.clone());
            let path = if i % 2 == 0 { "/big" } else { "/chunked" };
            std::thread::spawn(move || (path, download(addr, &roots, path, &progress)))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while progress.load(Ordering::SeqCst) < 6 {
        assert!(Instant::now() < deadline, "downloads did not start");
        std::thread::sleep(Duration::from_millis(10));
    }
    let killed = Instant::now();
    streamer.kill();

    for t in downloads {
        let (path, got) = t.join().expect("download thread");
        assert!(
            got.head.starts_with("HTTP/1.1 200"),
            "{hop:?}: {}",
            got.head
        );
        assert_ne!(
            got.ended_by,
            Some(ErrorKind::WouldBlock),
            "{hop:?} {path}: the client was left waiting after the backend died"
        );
        let after = got.ended_at.duration_since(killed);
        assert!(
            after < Duration::from_secs(5),
            "{hop:?} {path}: the connection ended {after:?} after the kill"
        );
        if path == "/big" {
            let h = header_map(&got.head);
            assert_eq!(h["content-length"][0], BIG.to_string(), "{hop:?}");
            assert!(
                got.received < BIG,
                "{hop:?}: a killed backend's body looked complete"
            );
        } else {
            assert!(
                !got.tail.ends_with(b"0\r\n\r\n"),
                "{hop:?}: a killed backend's chunked body got a last chunk"
            );
        }
    }

    // While it is down: 502, promptly.
    let mut s = d.connect("stream.example.com");
    s.sock
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let asked = Instant::now();
    let r = client::get(&mut s, "stream.example.com", "/small");
    assert_eq!(r.status, 502, "{hop:?}: {}", r.text());
    assert!(asked.elapsed() < Duration::from_secs(5));

    // Back up: served again (a pooled connection to the dead process is
    // never used).
    let _streamer = Streamer::start(port);
    let mut s = d.connect("stream.example.com");
    let r = client::get(&mut s, "stream.example.com", "/small");
    assert_eq!((r.status, r.text().as_str()), (200, "alive"), "{hop:?}");

    let records = load.finish();
    eprintln!("{hop:?}: other app during the kill: {}", tally(&records));
    assert_nothing_hung_or_mixed("other app", &records, Duration::from_secs(5));
    assert!(records.len() > 10, "{hop:?}: {}", tally(&records));
    assert!(
        records.iter().all(|r| matches!(
            r.1,
            Outcome::Answered {
                status: 200,
                own_body: true
            }
        )),
        "{hop:?}: the other app's clients noticed: {}",
        tally(&records)
    );
}

#[test]
fn a_backend_killed_mid_body_ends_only_its_own_responses_direct() {
    backend_killed_mid_body(Hop::Direct);
}

#[test]
fn a_backend_killed_mid_body_ends_only_its_own_responses_through_a_tunnel() {
    backend_killed_mid_body(Hop::Tunnel);
}

// ---------------------------------------------------------------------
// A connector cut off.

/// A network namespace joined to this one by a veth pair: `host_ip` on
/// this side, `.2` of the same /30 inside. Removed on drop.
struct Netns {
    name: String,
    host_if: String,
    ns_if: String,
    host_ip: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    fn new() -> Netns {
        let tag = std::process::id() % 10_000;
        let subnet = format!("10.{}.{}", 100 + tag / 250 % 100, tag % 250);
        let net = Netns {
            name: format!("postern-cut-{tag}"),
            host_if: format!("pce{tag}"),
            ns_if: format!("pcc{tag}"),
            host_ip: format!("{subnet}.1"),
        };
        let ns_ip = format!("{subnet}.2");
        // A namespace left by an earlier run with the same id goes first.
        let _ = Command::new("ip")
            .args(["netns", "del", &net.name])
            .output();
        let _ = Command::new("ip")
            .args(["link", "del", &net.host_if])
            .output();
        ip(&["netns", "add", &net.name]);
        ip(&[
            "link",
            "add",
            &net.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &net.ns_if,
            "netns",
            &net.name,
        ]);
        ip(&[
            "addr",
            "add",
            &format!("{}/30", net.host_ip),
            "dev",
            &net.host_if,
        ]);
        ip(&["link", "set", &net.host_if, "up"]);
        ip(&[
            "-n",
            &net.name,
            "addr",
            "add",
            &format!("{ns_ip}/30"),
            "dev",
            &net.ns_if,
        ]);
        ip(&["-n", &net.name, "link", "set", &net.ns_if, "up"]);
        ip(&["-n", &net.name, "link", "set", "lo", "up"]);
        net
    }

    /// Takes the link down at both ends: packets are dropped, nobody sends
    /// a FIN or a reset.
    fn set_link(&self, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&["link", "set", &self.host_if, state]);
        ip(&["-n", &self.name, "link", "set", &self.ns_if, state]);
    }

    fn exec_prefix(&self) -> [&str; 4] {
        ["ip", "netns", "exec", &self.name]
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Promise: when a connector's link drops silently, the edge notices
/// within 15 s (the heartbeat); every GET the dead tunnel held is sent
/// again over the other connector then, so each gets its own body, none
/// later than 15 s (a response already streaming through the cut ends
/// visibly torn instead); and the cut connector's tunnels come back once
/// the link does.
#[test]
fn a_connector_cut_off_by_a_dropped_link_is_noticed_and_comes_back() {
    let net = Netns::new();
    let backend = Backend::ids_on(&net.host_ip, Duration::from_millis(50));
    let b = EdgeBuilder::new()
        .edge(&format!(
            "tunnel_address = \"{}:{}\"",
            net.host_ip,
            free_port()
        ))
        .app(&passthrough_app(
            "app",
            "https://app.example.com/",
            backend.addr,
            "",
        ));
    let roots = b.pki.root_store();
    let edge = b.start();
    let kept = Connector::start(&edge, "default", "", 2);
    let cut = Connector::start_under(&edge, "default", "", 2, &net.exec_prefix());
    edge.wait_every_worker(&kept.id);
    edge.wait_every_worker(&cut.id);

    let load = Load::start(
        edge.https,
        "app.example.com",
        &roots,
        8,
        Duration::from_secs(30),
    );
    std::thread::sleep(Duration::from_secs(1));
    let before_served = backend.count();
    let dropped = load.since_start();
    net.set_link(false);
    let deadline = Instant::now() + Duration::from_secs(20);
    while edge.tunnels_of(&cut.id) > 0 {
        assert!(
            Instant::now() < deadline,
            "the edge still counts the cut connector's tunnels 20 s on"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let noticed = load.since_start();
    std::thread::sleep(Duration::from_secs(2));
    let records = load.finish();
    let detection = noticed - dropped;
    eprintln!(
        "link dropped at {dropped:?}, tunnels gone after {detection:?}; {}",
        tally(&records)
    );
    assert!(before_served > 0);
    assert!(
        detection <= Duration::from_secs(15),
        "noticed after {detection:?}"
    );
    assert_nothing_hung_or_mixed("cut connector", &records, Duration::from_secs(15));
    // Safe requests the dead tunnel held went again over the other
    // connector once the edge gave the tunnel up. Only a response already
    // streaming through the cut (its head sent, so it cannot go again)
    // ends torn: the client sees its connection close mid-body.
    for (at, o, _) in &records {
        let ok = matches!(
            o,
            Outcome::Answered {
                status: 200,
                own_body: true
            }
        );
        let torn_in_flight = matches!(o, Outcome::Broken(_)) && *at < noticed;
        assert!(
            ok || torn_in_flight,
            "a request at {at:?} ended {o:?}: {}\nedge log:\n{}",
            tally(&records),
            edge.stderr()
        );
    }

    net.set_link(true);
    let deadline = Instant::now() + Duration::from_secs(60);
    while edge.tunnels_of(&cut.id) < 2 {
        assert!(
            Instant::now() < deadline,
            "the cut connector did not come back within 60 s of its link: {}",
            cut.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut s = client::tls(edge.https, "app.example.com", roots);
    for n in 0..20 {
        let (o, _) = fetch_id(&mut s, "app.example.com", n);
        assert!(
            matches!(
                o,
                Outcome::Answered {
                    status: 200,
                    own_body: true
                }
            ),
            "{o:?}"
        );
    }
}

// ---------------------------------------------------------------------
// The edge killed or terminated.

/// Promise: whatever ends the edge (SIGKILL, SIGTERM), each request in
/// flight ends with its own body or a broken connection, never a hang or
/// another's bytes; the change the admin API acknowledged just before is
/// served after the restart; and once the edge (and, on the tunnel hop,
/// its connector) is back, every request succeeds.
fn edge_ended_under_load(signal: &str, hop: Hop) {
    let backend = Backend::ids(Duration::from_millis(30));
    let b = EdgeBuilder::new().app(&passthrough_app(
        "app",
        "https://app.example.com/",
        backend.addr,
        "",
    ));
    let Deployment {
        edge,
        connector: _connector,
        roots,
    } = Deployment::start(b, hop);
    let load = Load::start(
        edge.https,
        "app.example.com",
        &roots,
        6,
        Duration::from_secs(10),
    );
    std::thread::sleep(Duration::from_millis(800));
    let (status, reply) = edge.admin(
        "POST",
        "/v1/apps",
        Some(&format!(
            r#"{{"name":"added","external_url":"https://added.example.com/","internal_url":"http://{}/","preauth":"passthrough"}}"#,
            backend.addr
        )),
    );
    assert_eq!(status, 201, "{reply}");
    let (edge, ended, took) = edge.restart_after(signal);
    eprintln!("{hop:?}: SIG{signal} ended the edge in {took:?}: {ended:?}");
    assert!(ended.is_some(), "SIG{signal} did not end the edge in 10 s");

    // The acknowledged app is there and served (over the tunnel once the
    // connector has dialled the new process).
    let deadline = Instant::now() + Duration::from_secs(30);
    let back = loop {
        let served = connect_tls(
            edge.https,
            "added.example.com",
            &roots,
            Duration::from_secs(10),
        )
        .ok()
        .map(|mut s| fetch_id(s.as_mut(), "added.example.com", 7).0);
        if matches!(
            served,
            Some(Outcome::Answered {
                status: 200,
                own_body: true
            })
        ) {
            break load.since_start();
        }
        assert!(
            Instant::now() < deadline,
            "{hop:?}: the app added before SIG{signal} is not served: {served:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let (_, apps) = edge.admin("GET", "/v1/apps", None);
    assert!(apps.to_string().contains("added.example.com"), "{apps}");
    std::thread::sleep(Duration::from_secs(1));
    let records = load.finish();
    eprintln!("{hop:?} SIG{signal}: {}", tally(&records));
    assert_nothing_hung_or_mixed(
        &format!("{hop:?} SIG{signal}"),
        &records,
        Duration::from_secs(10),
    );
    for (at, o, _) in &records {
        // Between the end and the connector's return the tunnel app may
        // honestly answer 502/503; nothing else.
        if let Outcome::Answered { status, .. } = o {
            assert!(
                matches!(status, 200 | 502 | 503),
                "{hop:?}: a request at {at:?} got {status}"
            );
        }
        if *at > back {
            assert!(
                matches!(
                    o,
                    Outcome::Answered {
                        status: 200,
                        own_body: true
                    }
                ),
                "{hop:?}: a request at {at:?}, after the edge was back, ended {o:?}"
            );
        }
    }
    assert!(
        records.iter().any(|r| r.0 > back),
        "{hop:?}: no request after the restart"
    );
}

#[test]
fn the_edge_killed_under_load_loses_no_acknowledged_change() {
    for hop in Hop::BOTH {
        edge_ended_under_load("KILL", hop);
    }
}

#[test]
fn the_edge_terminated_under_load_loses_no_acknowledged_change() {
    for hop in Hop::BOTH {
        edge_ended_under_load("TERM", hop);
    }
}

// ---------------------------------------------------------------------
// A full disk.

/// A small tmpfs mounted over a directory; unmounted on drop.
struct SmallDisk(std::path::PathBuf);

impl SmallDisk {
    fn mount(dir: &std::path::Path, size: &str) -> SmallDisk {
        std::fs::create_dir_all(dir).unwrap();
        let out = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mount tmpfs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        SmallDisk(dir.to_path_buf())
    }

    /// Fills the disk with `filler` until a write fails for lack of space.
    fn fill(&self) -> std::path::PathBuf {
        let path = self.0.join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let block = vec![0u8; 4096];
        loop {
            match f.write_all(&block) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        path
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn app_json(name: &str, backend: SocketAddr) -> String {
    format!(
        r#"{{"name":"{name}","external_url":"https://{name}.example.com/","internal_url":"http://{backend}/","preauth":"passthrough"}}"#
    )
}

/// Promise: a change that cannot be written for lack of space is refused
/// with an error naming the file and the cause, is not applied, and leaves
/// the table on disk whole; serving goes on; once there is space the same
/// change succeeds and survives a SIGKILL.
#[test]
fn a_full_disk_during_a_state_write_acknowledges_nothing_it_did_not_keep() {
    let backend = Backend::ids(Duration::ZERO);
    let b = EdgeBuilder::new().app(&passthrough_app(
        "app",
        "https://app.example.com/",
        backend.addr,
        "",
    ));
    let roots = b.pki.root_store();
    let (dir, path, https, http) = b.write();
    let disk = SmallDisk::mount(&dir.path().join("state"), "1m");
    let edge = postern_e2e::Edge::start_with(dir, &path, https, http);
    let (status, reply) = edge.admin("POST", "/v1/apps", Some(&app_json("first", backend.addr)));
    assert_eq!(status, 201, "{reply}");
    let load = Load::start(
        edge.https,
        "app.example.com",
        &roots,
        2,
        Duration::from_secs(10),
    );

    let filler = disk.fill();
    let (status, reply) = edge.admin("POST", "/v1/apps", Some(&app_json("second", backend.addr)));
    eprintln!("on a full disk: {status} {reply}");
    assert!(
        status >= 500,
        "a change on a full disk was acknowledged: {status} {reply}"
    );
    let text = reply.to_string();
    assert!(
        text.contains("apps.json") && text.to_lowercase().contains("no space"),
        "the error names the file and the cause: {text}"
    );
    let (_, apps) = edge.admin("GET", "/v1/apps", None);
    assert!(!apps.to_string().contains("second.example.com"), "{apps}");
    assert!(apps.to_string().contains("first.example.com"), "{apps}");
    let mut s = client::tls(edge.https, "second.example.com", roots.clone());
    let r = client::get(&mut s, "second.example.com", "/id/1");
    assert_ne!(r.status, 200, "a refused change was applied");

    std::fs::remove_file(&filler).unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(&disk.0)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "a failed write left {leftovers:?}");
    let (status, reply) = edge.admin("POST", "/v1/apps", Some(&app_json("second", backend.addr)));
    assert_eq!(status, 201, "{reply}");
    let records = load.finish();
    eprintln!("serving while the disk was full: {}", tally(&records));
    assert_nothing_hung_or_mixed("full disk", &records, Duration::from_secs(5));
    assert!(records.iter().all(|r| matches!(
        r.1,
        Outcome::Answered {
            status: 200,
            own_body: true
        }
    )));

    let edge = edge.restart();
    for name in ["app", "first", "second"] {
        let host = format!("{name}.example.com");
        let mut s = client::tls(edge.https, &host, roots.clone());
        let (o, _) = fetch_id(&mut s, &host, 3);
        assert!(
            matches!(
                o,
                Outcome::Answered {
                    status: 200,
                    own_body: true
                }
            ),
            "{host} after the restart: {o:?}"
        );
    }
    drop(edge);
    drop(disk);
}
