//! Availability under hostile clients: what a timed-out connection leaves
//! behind (docs/attacks.md, case 51).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use postern_e2e::backend::{Backend, Reply};
use postern_e2e::{passthrough_app, Edge, EdgeBuilder};

/// An edge with `[edge]` settings `settings` and one passthrough app,
/// `http://a.example.com/` → `backend`.
fn edge_for(backend: &Backend, settings: &str) -> Edge {
    EdgeBuilder::new()
        .edge(settings)
        .app(&passthrough_app(
            "a",
            "http://a.example.com/",
            backend.addr,
            "cookie = { secure = false }",
        ))
        .start()
}

/// Open descriptors of process `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Whether the peer closed `s` (EOF or reset) within `limit`.
fn closed_by_peer(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

/// Connections that never send a byte are closed when the handshake or
/// request-head deadline passes, on both listeners: their descriptors and
/// buffers are released, not held until the client gives up.
#[test]
fn silent_connections_are_closed_at_their_deadline() {
    let backend = Backend::hello();
    let edge = edge_for(
        &backend,
        "tls_handshake_timeout = 1\nrequest_header_timeout = 1",
    );
    let before = open_fds(edge.pid());
    let mut silent: Vec<TcpStream> = Vec::new();
    for i in 0..100 {
        let addr = if i % 2 == 0 { edge.https } else { edge.http };
        silent.push(TcpStream::connect(addr).unwrap());
    }
    // Every connection is accepted (and so counted) before we look.
    let deadline = Instant::now() + Duration::from_secs(5);
    while open_fds(edge.pid()) < before + 100 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(open_fds(edge.pid()) >= before + 100, "all accepted");
    let start = Instant::now();
    for (i, s) in silent.iter_mut().enumerate() {
        let left = Duration::from_secs(6).saturating_sub(start.elapsed());
        assert!(
            closed_by_peer(s, left.max(Duration::from_millis(1))),
            "connection {i} is still open {:?} after its 1 s deadline",
            start.elapsed()
        );
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    while open_fds(edge.pid()) > before + 2 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        open_fds(edge.pid()) <= before + 2,
        "the edge still holds {} descriptors (had {before})",
        open_fds(edge.pid())
    );
}

/// A TLS handshake that runs out of time ends with an alert, not silence,
/// whether the client sent nothing or half a ClientHello.
#[test]
fn a_timed_out_handshake_ends_with_an_alert() {
    let backend = Backend::hello();
    let edge = edge_for(&backend, "tls_handshake_timeout = 1");
    for sent in [
        &b""[..],
        &[
            0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
        ],
    ] {
        let mut s = TcpStream::connect(edge.https).unwrap();
        s.write_all(sent).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = Vec::new();
        let mut b = [0u8; 256];
        while let Ok(n) = s.read(&mut b) {
            if n == 0 {
                break;
            }
            got.extend_from_slice(&b[..n]);
        }
        // An alert record: content type 21, a TLS version, length 2.
        assert!(
            got.len() >= 7 && got[0] == 21 && got[1] == 3 && got[3..5] == [0, 2],
            "after sending {sent:?} the edge sent {got:?}"
        );
    }
}

/// Opens `n` connections that send nothing; returns how many the edge
/// closed at once, and the ones still open.
fn flood(addr: std::net::SocketAddr, n: usize) -> (usize, Vec<TcpStream>) {
    let mut open = Vec::new();
    let mut closed = 0;
    let conns: Vec<TcpStream> = (0..n).map(|_| TcpStream::connect(addr).unwrap()).collect();
    for mut s in conns {
        if closed_by_peer(&mut s, Duration::from_millis(300)) {
            closed += 1;
        } else {
            open.push(s);
        }
    }
    (closed, open)
}

/// Over `max_connections_per_source`, or over `max_connections`, a new
/// connection is closed on accept and counted; a place freed is usable
/// again.
#[test]
fn connection_caps_refuse_early_and_count() {
    let backend = Backend::hello();
    let edge = edge_for(
        &backend,
        "max_connections = 12\nmax_connections_per_source = 5",
    );
    let (closed, held) = flood(edge.http, 8);
    assert_eq!((closed, held.len()), (3, 5), "five from one address");
    let (_, c) = edge.admin("GET", "/v1/counters", None);
    assert_eq!(c["edge"]["refused_over_source"], 3, "{c}");
    drop(held);
    // The places come back once the edge sees the closes.
    std::thread::sleep(Duration::from_millis(300));
    let (closed, held) = flood(edge.https, 5);
    assert_eq!((closed, held.len()), (0, 5));
    // The total cap, from addresses of their own (127.0.0.0/8 is all
    // loopback): 5 held from 127.0.0.1, 7 more fit, the rest are refused.
    let mut others = Vec::new();
    let mut refused = 0;
    for i in 2..=11u8 {
        let local = std::net::SocketAddr::from(([127, 0, 0, i], 0));
        let s = socket2_connect(local, edge.http);
        others.push(s);
    }
    for s in others.iter_mut() {
        if closed_by_peer(s, Duration::from_millis(300)) {
            refused += 1;
        }
    }
    assert_eq!(refused, 3, "12 in all: 5 + 7");
    let (_, c) = edge.admin("GET", "/v1/counters", None);
    assert_eq!(c["edge"]["refused_over_total"], 3, "{c}");
    drop(held);
}

/// A TCP connection from a chosen local address.
fn socket2_connect(local: std::net::SocketAddr, to: std::net::SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&local.into()).unwrap();
    s.connect(&to.into()).unwrap();
    s.into()
}

/// A head that trickles in, one line at a time, each well inside the
/// timeout, still gets only `request_header_timeout` in all: 408, closed.
#[test]
fn a_trickled_request_head_gets_its_deadline_not_one_per_line() {
    let backend = Backend::hello();
    let edge = edge_for(&backend, "request_header_timeout = 2");
    let (text, ended) = trickle(
        edge.http,
        b"GET / HTTP/1.1\r\nHost: a.example.com\r\n",
        b"X-Slow: 1\r\n",
        Duration::from_millis(600),
    );
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(ended < Duration::from_secs(4), "closed after {ended:?}");
    assert_eq!(backend.count(), 0);
}

/// A request body that trickles (a few bytes a second, each piece well
/// inside the idle timeout) is cut off once its average falls under
/// `min_body_rate` after the grace period: 408, closed.
#[test]
fn a_trickled_request_body_is_held_to_the_minimum_rate() {
    let backend = Backend::hello();
    let edge = edge_for(
        &backend,
        "request_header_timeout = 30\nmin_body_rate = 1000",
    );
    let (text, ended) = trickle(
        edge.http,
        b"POST / HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 100000\r\n\r\n",
        b"0123456789",
        Duration::from_millis(500),
    );
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        ended >= Duration::from_secs(9) && ended < Duration::from_secs(14),
        "cut off after {ended:?}: the grace is 10 s"
    );
}

/// Sends `first`, then `piece` about every `every` until the edge closes
/// (or 20 s pass); returns what the edge said and when it closed.
fn trickle(
    addr: std::net::SocketAddr,
    first: &[u8],
    piece: &[u8],
    every: Duration,
) -> (String, Duration) {
    use std::io::Write;
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(first).unwrap();
    let start = Instant::now();
    s.set_read_timeout(Some(every)).unwrap();
    let mut got = Vec::new();
    let mut b = [0u8; 1024];
    let ended = loop {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "still open after {:?}: {}",
            start.elapsed(),
            String::from_utf8_lossy(&got)
        );
        if s.write_all(piece).is_err() {
            break start.elapsed();
        }
        match s.read(&mut b) {
            Ok(0) => break start.elapsed(),
            Ok(n) => got.extend_from_slice(&b[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break start.elapsed(),
        }
    };
    (String::from_utf8_lossy(&got).into_owned(), ended)
}

/// A client that reads a large response a trickle at a time is dropped
/// once it takes less than `min_send_rate` over the time the edge spends
/// writing to it (after the grace), rather than holding the response, its
/// backend connection and buffers for as long as each write stays inside
/// `client_send_timeout`.
#[test]
fn a_slow_reader_is_held_to_the_minimum_send_rate() {
    let backend = Backend::start(|_| Reply::ok(vec![b'x'; 32 << 20]));
    let edge = edge_for(&backend, "client_send_timeout = 60\nmin_send_rate = 262144");
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&edge.http.into()).unwrap();
    let mut s: TcpStream = sock.into();
    std::io::Write::write_all(&mut s, b"GET /big HTTP/1.1\r\nHost: a.example.com\r\n\r\n").unwrap();
    // 16 KiB a second: far below 256 KiB/s, far above zero.
    let start = Instant::now();
    let mut total = 0usize;
    let mut b = [0u8; 1024];
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let ended = loop {
        assert!(
            start.elapsed() < Duration::from_secs(40),
            "still reading after {:?} ({total} bytes)",
            start.elapsed()
        );
        match s.read(&mut b) {
            Ok(0) | Err(_) => break start.elapsed(),
            Ok(n) => total += n,
        }
        std::thread::sleep(Duration::from_millis(60));
    };
    assert!(total < 32 << 20, "the whole body was read ({total} bytes)");
    assert!(
        ended >= Duration::from_secs(9) && ended < Duration::from_secs(30),
        "dropped after {ended:?} with {total} bytes read"
    );
}

/// The edge's RSS growth per connection, over `n` connections each made
/// by `open` (after a warm-up of each worker's allocator and pools).
fn memory_per_connection<C>(
    n: usize,
    open: impl Fn(std::net::SocketAddr, &rustls::RootCertStore) -> C,
) -> u64 {
    let backend = Backend::hello();
    let b = EdgeBuilder::new()
        .edge("max_connections_per_source = 100000")
        .app(&passthrough_app(
            "a",
            "https://app.example.com/",
            backend.addr,
            "",
        ));
    let roots = b.pki.root_store();
    let edge = b.start();
    for _ in 0..50 {
        let mut s = postern_e2e::client::tls(edge.https, "app.example.com", roots.clone());
        assert_eq!(
            postern_e2e::client::get(&mut s, "app.example.com", "/").status,
            200
        );
    }
    std::thread::sleep(Duration::from_millis(300));
    let before = edge.memory_kib("VmRSS");
    let held: Vec<C> = (0..n).map(|_| open(edge.https, &roots)).collect();
    std::thread::sleep(Duration::from_millis(500));
    let after = edge.memory_kib("VmRSS");
    let per_conn = (after.saturating_sub(before)) * 1024 / n as u64;
    eprintln!("{n} connections: {before} -> {after} KiB, {per_conn} bytes each");
    drop(held);
    per_conn
}

/// [`memory_per_connection`] for TLS connections that each did `what`
/// first.
fn memory_per_tls_connection(
    n: usize,
    what: impl Fn(&mut rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>),
) -> u64 {
    memory_per_connection(n, |addr, roots| {
        let mut s = postern_e2e::client::tls(addr, "app.example.com", roots.clone());
        what(&mut s);
        s
    })
}

/// A connection's first act: send `bytes` (and nothing more).
fn sends(
    bytes: &'static [u8],
) -> impl Fn(&mut rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>) {
    move |s| {
        s.write_all(bytes).unwrap();
        s.flush().unwrap();
    }
}

fn at_most(per_conn: u64, bound: u64, what: &str) {
    assert!(
        per_conn <= bound,
        "{per_conn} bytes per {what} (at most {bound})"
    );
}

/// An idle keep-alive TLS connection costs the edge little memory: its
/// buffers are let go while it waits (a small read stays pending) and a
/// request's state lives on the heap only while the request does.
/// Measured as the edge's RSS growth over 800 such connections.
#[test]
fn idle_tls_connections_cost_little_memory() {
    let per_conn = memory_per_tls_connection(800, |s| {
        assert_eq!(
            postern_e2e::client::get(s, "app.example.com", "/").status,
            200
        );
    });
    // 97 KB each before buffers were let go while idle.
    at_most(per_conn, 16 * 1024, "idle TLS connection");
}

/// A slowloris connection (a request head started, then a line now and
/// then) holds small buffers too: reads stay small while bytes trickle.
#[test]
fn trickling_tls_connections_cost_little_memory() {
    let per_conn = memory_per_tls_connection(
        800,
        sends(b"GET / HTTP/1.1\r\nHost: app.example.com\r\nX-a: b\r\n"),
    );
    // 52 KB each when the first bytes of a head made reads full-size.
    at_most(per_conn, 16 * 1024, "trickling TLS connection");
}

/// A slow POST (a head, then its body a few bytes at a time) holds small
/// buffers as well: the output buffer is taken only once the body is read
/// ahead.
#[test]
fn trickling_request_bodies_cost_little_memory() {
    let per_conn = memory_per_tls_connection(
        800,
        sends(b"POST / HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 65536\r\n\r\nab"),
    );
    // 79 KB each before reads stayed small while a body trickled in and
    // the output buffer waited for the read-ahead.
    at_most(per_conn, 24 * 1024, "connection trickling a body");
}

/// Connections that open and send nothing (not even a ClientHello) cost
/// little while they wait for their handshake deadline.
#[test]
fn silent_connections_cost_little_memory() {
    let per_conn = memory_per_connection(800, |addr, _| TcpStream::connect(addr).unwrap());
    // 26 KB each when the first handshake read was full-size.
    at_most(per_conn, 8 * 1024, "silent connection");
}

/// Out of file descriptors (EMFILE), the edge pauses accepting for a
/// moment instead of spinning on the error, says so at most once per 10 s
/// per worker, and serves again once descriptors are free.
#[test]
fn running_out_of_descriptors_pauses_accepts_and_says_so_once() {
    let backend = Backend::hello();
    let b = EdgeBuilder::new()
        // Caps out of the way: the descriptor limit is what is reached.
        .edge("max_connections = 100000\nmax_connections_per_source = 100000")
        .app(&passthrough_app(
            "a",
            "http://a.example.com/",
            backend.addr,
            "cookie = { secure = false }",
        ));
    let (dir, path, https, http) = b.write();
    let edge = Edge::start_with_nofile(dir, &path, https, http, 128);
    let held: Vec<TcpStream> = (0..300)
        .filter_map(|_| TcpStream::connect(edge.http).ok())
        .collect();
    std::thread::sleep(Duration::from_secs(3));
    let warnings = edge
        .stderr()
        .lines()
        .filter(|l| l.contains("accept failed"))
        .count();
    assert!(
        (1..=2).contains(&warnings),
        "{warnings} accept warnings in 3 s:\n{}",
        edge.stderr()
    );
    drop(held);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (answer, _) = postern_e2e::client::raw_exchange(
            edge.http,
            b"GET / HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n",
        );
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "not serving again: {answer}");
    }
}
