//! One client's behaviour never takes the tunnels from the others
//! (docs/attacks.md, cases 55–58): slow bodies hold no tunnel stream, slow
//! readers stall only their own stream, one address holds a bounded share
//! of the streams, and a burst of aborted requests leaves the tunnel up.
//!
//! The attacking clients come from 127.0.0.1; the client that must keep
//! being served comes from 127.0.0.2, another address as far as the edge
//! can tell.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use postern_e2e::backend::{Backend, Reply};
use postern_e2e::client::{read_response, Response};
use postern_e2e::{passthrough_app, Deployment, EdgeBuilder, Hop};

/// A tunnel edge (two tunnels from one connector) with `[edge]` settings
/// `settings`, publishing `http://a.example.com/` → `backend`.
fn tunnel_edge(backend: &Backend, settings: &str) -> Deployment {
    let b = EdgeBuilder::new().edge(settings).app(&passthrough_app(
        "a",
        "http://a.example.com/",
        backend.addr,
        "cookie = { secure = false }",
    ));
    Deployment::start(b, Hop::Tunnel)
}

/// A TCP connection from `local` (any port).
fn connect_from(local: [u8; 4], to: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::from((local, 0)).into()).unwrap();
    s.connect(&to.into()).unwrap();
    s.into()
}

/// A normal client's GET from 127.0.0.2, on its own connection; it must
/// be answered within `limit`.
fn normal_get(to: SocketAddr, path: &str, limit: Duration) -> Response {
    let mut s = connect_from([127, 0, 0, 2], to);
    s.set_read_timeout(Some(limit)).unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: a.example.com\r\n\r\n").as_bytes())
        .unwrap();
    read_response(&mut s, &mut Vec::new(), "GET")
        .unwrap_or_else(|e| panic!("the normal client's GET {path} failed: {e}"))
}

/// Tunnel streams the edge has in flight now, over all connectors.
fn streams_in_flight(d: &Deployment) -> u64 {
    let (_, c) = d.edge.admin("GET", "/v1/counters", None);
    c["connectors"]
        .as_object()
        .map(|m| {
            m.values()
                .filter_map(|v| v["streams_in_flight"].as_u64())
                .sum()
        })
        .unwrap_or(0)
}

/// Slow request bodies (slow POST) are read ahead at the edge: while the
/// first 64 KiB trickle in, the request holds only its own connection,
/// no tunnel stream.
#[test]
fn slow_request_bodies_hold_no_tunnel_stream() {
    let backend = Backend::hello();
    let d = tunnel_edge(&backend, "max_tunnel_streams_per_source = 100000");
    let mut slow = Vec::new();
    for _ in 0..300 {
        let mut s = TcpStream::connect(d.edge.http).unwrap();
        s.write_all(
            b"POST /upload HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 50000\r\n\r\npart",
        )
        .unwrap();
        slow.push(s);
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(streams_in_flight(&d), 0, "slow bodies hold tunnel streams");
    for _ in 0..10 {
        let r = normal_get(d.edge.http, "/", Duration::from_secs(5));
        assert_eq!(r.status, 200);
    }
    assert_eq!(
        backend.count(),
        10,
        "nothing of the slow bodies reached the app"
    );
    // A body that does arrive is relayed whole.
    let mut s = TcpStream::connect(d.edge.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"POST /__sink HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 100000\r\n\r\n")
        .unwrap();
    s.write_all(&vec![b'x'; 100_000]).unwrap();
    let r = read_response(&mut s, &mut Vec::new(), "POST").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("100000"), "{}", r.text());
    drop(slow);
}

/// Slow readers of large responses (slow read) stall their own streams
/// only: the tunnel's connection window has room for every stream's.
#[test]
fn slow_readers_do_not_stall_the_tunnel() {
    let backend = Backend::hello();
    // Slow readers are kept for the whole test (no minimum rate, no send
    // timeout), so only the windows stand between them and the others.
    let d = tunnel_edge(
        &backend,
        "max_tunnel_streams_per_source = 100000\nmin_send_rate = 0\nclient_send_timeout = 300",
    );
    let mut slow = Vec::new();
    for _ in 0..300 {
        // A small receive buffer, as slow-read attacks use: the kernel
        // takes little of the response off the edge's hands.
        let sock =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        sock.set_recv_buffer_size(4096).unwrap();
        sock.connect(&d.edge.http.into()).unwrap();
        let mut s: TcpStream = sock.into();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /__stream/16777216 HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
            .unwrap();
        // Read a little, so each response has started, then stop reading.
        let mut b = [0u8; 1024];
        let _ = s.read(&mut b);
        slow.push(s);
    }
    let start = Instant::now();
    for i in 0..10 {
        let r = normal_get(d.edge.http, "/__stream/1048576", Duration::from_secs(10));
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), 1_048_576, "response {i} is whole");
    }
    eprintln!(
        "ten 1 MiB responses beside 300 slow readers: {:?}",
        start.elapsed()
    );
    drop(slow);
}

/// One address holds at most `max_tunnel_streams_per_source` streams; the
/// rest of its requests get 503 with Retry-After, counted, while other
/// addresses are served.
#[test]
fn one_address_holds_a_bounded_share_of_the_tunnels() {
    let backend = Backend::start(|_| Reply::ok("slow").delay(Duration::from_millis(1500)));
    let d = tunnel_edge(&backend, "max_tunnel_streams_per_source = 4");
    let http = d.edge.http;
    let held: Vec<_> = (0..6)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = TcpStream::connect(http).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                s.write_all(b"GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
                    .unwrap();
                read_response(&mut s, &mut Vec::new(), "GET").unwrap()
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let other = normal_get(http, "/", Duration::from_secs(10));
    assert_eq!(other.status, 200, "another address is served");
    let answers: Vec<Response> = held.into_iter().map(|t| t.join().unwrap()).collect();
    let mut statuses: Vec<u16> = answers.iter().map(|r| r.status).collect();
    statuses.sort();
    assert_eq!(statuses, [200, 200, 200, 200, 503, 503]);
    for r in answers.iter().filter(|r| r.status == 503) {
        assert_eq!(r.header("retry-after").as_deref(), Some("1"), "{}", r.head);
    }
    let (_, c) = d.edge.admin("GET", "/v1/counters", None);
    assert_eq!(c["edge"]["refused_tunnel_streams"], 2, "{c}");
}

/// Hundreds of requests whose clients vanish at once (each abort resets a
/// tunnel stream) leave the tunnel up: requests in flight beside them
/// are answered.
#[test]
fn a_burst_of_aborted_requests_leaves_the_tunnel_up() {
    let backend = Backend::start(|s| {
        if s.target == "/slow" {
            Reply::ok("answered").delay(Duration::from_millis(1500))
        } else {
            Reply::ok("ok")
        }
    });
    let d = tunnel_edge(&backend, "max_tunnel_streams_per_source = 100000");
    let http = d.edge.http;
    for round in 0..3 {
        // Uploads past the read-ahead, so each holds a stream.
        let mut doomed = Vec::new();
        for _ in 0..400 {
            let mut s = TcpStream::connect(http).unwrap();
            s.write_all(
                b"POST /__sink HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 10000000\r\n\r\n",
            )
            .unwrap();
            s.write_all(&vec![b'x'; 70 * 1024]).unwrap();
            doomed.push(s);
        }
        let legit: Vec<_> = (0..20)
            .map(|_| std::thread::spawn(move || normal_get(http, "/slow", Duration::from_secs(15))))
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        // All at once, with a reset rather than a close.
        for s in &doomed {
            let sock = socket2::SockRef::from(s);
            sock.set_linger(Some(Duration::ZERO)).unwrap();
        }
        drop(doomed);
        for t in legit {
            let r = t.join().unwrap();
            assert_eq!(
                (r.status, r.text()),
                (200, "answered".into()),
                "round {round}"
            );
        }
    }
    // No tunnel failed (the connector says so when one does).
    let log = d.connector.as_ref().unwrap().log_text();
    assert!(!log.contains("tunnel failed"), "{log}");
}
