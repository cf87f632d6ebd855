//! Smaller edges of the protocol that an attacker or a careless backend
//! can reach: words only the edge and connector may say, idle backend
//! connections the backend has closed, methods and heads the edge refuses
//! (and logs).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postern_e2e::backend::{find, Backend, Reply};
use postern_e2e::client::{raw_exchange, request};
use postern_e2e::{passthrough_app, Deployment, EdgeBuilder, Hop};

fn one_app(backend: std::net::SocketAddr, hop: Hop) -> Deployment {
    let b = EdgeBuilder::new().app(&passthrough_app(
        "a",
        "https://app.example.com/",
        backend,
        "",
    ));
    Deployment::start(b, hop)
}

#[test]
fn a_backend_cannot_speak_for_the_edge_or_the_connector() {
    for hop in Hop::BOTH {
        let be = Backend::start(|_| {
            Reply::ok("the backend's own answer")
                .header("Postern-Error", "forged failure")
                .header("Postern-Bound", "1")
                .header("Postern-Server", "abcdef")
                .header("postern_error", "forged too")
        });
        let d = one_app(be.addr, hop);
        let mut s = d.connect("app.example.com");
        for _ in 0..2 {
            let r = request(&mut s, "GET /x HTTP/1.1\r\nHost: app.example.com\r\n\r\n");
            assert_eq!(r.status, 200, "{hop:?}: {}", r.head);
            assert_eq!(r.text(), "the backend's own answer", "{hop:?}");
            assert!(
                !r.head.to_ascii_lowercase().contains("postern"),
                "{hop:?}: {}",
                r.head
            );
        }
    }
}

/// A backend that answers one request per connection, keeps the
/// connection alive, then closes it after `idle_close` of idleness; it
/// records, per connection, whether the other side closed too within 15 s.
struct ClosingBackend {
    addr: std::net::SocketAddr,
    /// Per connection: `Some(true)` once the proxy closed its end.
    closed_by_proxy: Arc<Mutex<Vec<Option<bool>>>>,
}

impl ClosingBackend {
    fn start(idle_close: Duration) -> ClosingBackend {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let closed_by_proxy = Arc::new(Mutex::new(Vec::new()));
        let record = closed_by_proxy.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let record = record.clone();
                let slot = {
                    let mut r = record.lock().unwrap();
                    r.push(None);
                    r.len() - 1
                };
                std::thread::spawn(move || {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    stream
                        .set_read_timeout(Some(Duration::from_secs(15)))
                        .unwrap();
                    // One request: its head, and a Content-Length body.
                    let end = loop {
                        if let Some(i) = find(&buf, b"\r\n\r\n") {
                            break i + 4;
                        }
                        match stream.read(&mut chunk) {
                            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                            _ => return,
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                    let len: usize = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse().unwrap());
                    while buf.len() < end + len {
                        match stream.read(&mut chunk) {
                            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                            _ => return,
                        }
                    }
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                    std::thread::sleep(idle_close);
                    let _ = stream.shutdown(Shutdown::Write);
                    // The proxy should now close its end (EOF here).
                    let closed = matches!(stream.read(&mut chunk), Ok(0));
                    record.lock().unwrap()[slot] = Some(closed);
                });
            }
        });
        ClosingBackend {
            addr,
            closed_by_proxy,
        }
    }
}

/// A pooled connection its backend has closed is neither reused (a POST,
/// which may not be retried, would fail with 502) nor kept open: the pool
/// closes its end within seconds.
#[test]
fn idle_backend_connections_closed_by_the_backend_are_dropped() {
    for hop in Hop::BOTH {
        let be = ClosingBackend::start(Duration::from_millis(1200));
        let d = one_app(be.addr, hop);
        let mut s = d.connect("app.example.com");
        let post = "POST /form HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(request(&mut s, post).status, 200, "{hop:?}");
        // The backend closes its connection while it sits in the pool.
        std::thread::sleep(Duration::from_millis(2500));
        let r = request(&mut s, post);
        assert_eq!(r.status, 200, "{hop:?}: {}", r.text());
        // Both backend connections end closed by the proxy (the first at
        // reuse, the second by the pool's sweep), within the 15 s the
        // backend waits.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let seen = be.closed_by_proxy.lock().unwrap().clone();
            if seen.len() >= 2 && seen.iter().all(Option::is_some) {
                assert!(seen.iter().all(|c| *c == Some(true)), "{hop:?}: {seen:?}");
                break;
            }
            assert!(Instant::now() < deadline, "{hop:?}: {seen:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// TRACE is refused (it would reflect the edge's headers to the client),
/// an invalid Host is a 400 even beside an absolute URL, and requests
/// refused while their head is read are in the access log.
#[test]
fn refused_requests_never_reach_the_backend_and_are_logged() {
    for hop in Hop::BOTH {
        let be = Backend::hello();
        let b = EdgeBuilder::new()
            .edge("access_log = \"access.log\"\naccess_log_format = \"json\"")
            .app(&passthrough_app(
                "a",
                "http://app.example.com/",
                be.addr,
                "cookie = { secure = false }",
            ));
        let d = Deployment::start(b, hop);
        let probes: Vec<(Vec<u8>, u16)> = vec![
            (
                b"TRACE / HTTP/1.1\r\nHost: app.example.com\r\n\r\n".to_vec(),
                405,
            ),
            (
                b"GET http://app.example.com/ HTTP/1.1\r\nHost: not a host\r\n\r\n".to_vec(),
                400,
            ),
            (
                format!(
                    "GET /{} HTTP/1.1\r\nHost: app.example.com\r\n\r\n",
                    "u".repeat(9000)
                )
                .into_bytes(),
                414,
            ),
        ];
        for (raw, want) in &probes {
            let (answer, _) = raw_exchange(d.edge.http, raw);
            let status: u16 = answer
                .split_whitespace()
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            assert_eq!(status, *want, "{hop:?}: {answer}");
        }
        assert_eq!(be.count(), 0, "{hop:?}");
        // One access-log line per refused request, with its status.
        let path = d.edge.dir.path().join("access.log");
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let statuses: Vec<u64> = text
                .lines()
                .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
                .filter_map(|v| v["status"].as_u64())
                .collect();
            if statuses.len() >= probes.len() {
                assert_eq!(statuses, [405, 400, 414], "{hop:?}: {text}");
                let first: serde_json::Value =
                    serde_json::from_str(text.lines().next().unwrap()).unwrap();
                assert_eq!(first["method"], "TRACE", "{text}");
                assert_eq!(first["path"], "/", "{text}");
                break;
            }
            assert!(Instant::now() < deadline, "{hop:?}: {text}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
