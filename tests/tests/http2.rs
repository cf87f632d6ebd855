//! HTTP/2 towards clients: the same requests over HTTP/1.1 and HTTP/2,
//! through both hops, answered alike; WebSocket over extended CONNECT;
//! an outside conformance suite against the h2c listener; and the
//! HTTP/2 attack cases, written frame by frame.

use std::time::Duration;

use bytes::Bytes;
use postern_e2e::backend::{Backend, Reply};
use postern_e2e::client::{self, request};
use postern_e2e::h2client::{self as h2c, block_on, frame, hpack, request_fields, Raw, H2};
use postern_e2e::{passthrough_app, Deployment, EdgeBuilder, Hop};

/// A backend page linking to its own internal URL (which the edge
/// translates), echoing the request's method, path and body length.
fn echo_backend() -> Backend {
    Backend::start(|seen| {
        if seen.header("upgrade") == Some("websocket") {
            return Reply::ok("")
                .status(101)
                .header("Upgrade", "websocket")
                .header("Connection", "Upgrade")
                .header("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
                .header("Set-Cookie", "ws=1; Path=/");
        }
        let host = seen.header("host").unwrap_or("").to_string();
        Reply::ok(format!(
            "<a href=\"http://{host}/next\">{} {} {}</a>",
            seen.method,
            seen.target,
            seen.body.len()
        ))
        .header("Content-Type", "text/html")
        .header("Set-Cookie", "s=1; Path=/")
    })
}

fn deployment(backend: &Backend, hop: Hop) -> Deployment {
    let b = EdgeBuilder::new().app(&passthrough_app(
        "web",
        "https://app.example.com/",
        backend.addr,
        "translate_body = true\n",
    ));
    Deployment::start(b, hop)
}

/// What a client sees of one answer, whichever protocol carried it.
#[derive(Debug, PartialEq)]
struct Seen {
    status: u16,
    body: String,
    set_cookie: Option<String>,
    has_request_id: bool,
}

fn over_h1(d: &Deployment, sni: &str, host: &str, method: &str, path: &str, body: &str) -> Seen {
    let mut s = d.connect(sni);
    let r = request(
        &mut s,
        &format!(
            "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    Seen {
        status: r.status,
        body: r.text(),
        set_cookie: r.header("set-cookie"),
        has_request_id: r.header("x-request-id").is_some(),
    }
}

fn over_h2(d: &Deployment, sni: &str, host: &str, method: &str, path: &str, body: &str) -> Seen {
    block_on(|| async {
        let mut c = H2::tls(d.edge.https, sni, d.roots.clone()).await;
        let req = http::Request::builder()
            .method(method)
            .uri(format!("https://{host}{path}"))
            .body(())
            .unwrap();
        let body = (!body.is_empty()).then(|| Bytes::from(body.to_string()));
        let r = c.request(req, body).await.expect("an HTTP/2 answer");
        Seen {
            status: r.status,
            body: r.text(),
            set_cookie: r.header("set-cookie"),
            has_request_id: r.header("x-request-id").is_some(),
        }
    })
}

/// The main request kinds give the same answer over HTTP/1.1 and HTTP/2,
/// through both hops: a translated page, a POST body, an unknown host
/// (404), a path normalised away from the app (400), a host the
/// connection was not opened for (421).
#[test]
fn http2_and_http1_answer_alike() {
    let backend = echo_backend();
    for hop in Hop::BOTH {
        let d = deployment(&backend, hop);
        let cases = [
            ("app.example.com", "app.example.com", "GET", "/page?q=1", ""),
            (
                "app.example.com",
                "app.example.com",
                "POST",
                "/form",
                "a=1&b=2",
            ),
            ("other.example.com", "other.example.com", "GET", "/", ""),
            (
                "app.example.com",
                "app.example.com",
                "GET",
                "/a/%2e%2e/%2e%2e/x",
                "",
            ),
            ("app.example.com", "other.example.com", "GET", "/", ""),
        ];
        for (sni, host, method, path, body) in cases {
            let h1 = over_h1(&d, sni, host, method, path, body);
            let h2 = over_h2(&d, sni, host, method, path, body);
            assert_eq!(h1.status, h2.status, "{hop:?} {method} {host}{path}");
            assert!(h2.has_request_id, "{hop:?} {method} {host}{path}");
            if h1.status == 200 {
                // Same translated body, same cookie.
                assert_eq!(h1, h2, "{hop:?} {method} {host}{path}");
                assert!(
                    h2.body.contains("https://app.example.com/next"),
                    "{hop:?}: the link is translated: {}",
                    h2.body
                );
            }
        }
        let (_, c) = d.edge.admin("GET", "/v1/counters", None);
        // GET and POST reached the app over each protocol; the 400 and
        // the 421 were the edge's own answers.
        assert_eq!(c["apps"]["web"]["requests"], 4, "{hop:?}: {c}");
        assert_eq!(c["edge"]["bad_requests"], 2, "{hop:?}: {c}");
        assert_eq!(c["apps"]["web"]["translated_responses"], 4, "{hop:?}: {c}");
        let statuses = [200, 200, 404, 400, 421];
        for (i, want) in statuses.iter().enumerate() {
            let (sni, host, method, path, body) = cases[i];
            assert_eq!(
                over_h2(&d, sni, host, method, path, body).status,
                *want,
                "{hop:?} case {i}"
            );
        }
    }
}

/// Many streams at once on one connection, each answered whole.
#[test]
fn concurrent_streams_on_one_connection() {
    let backend = echo_backend();
    let d = deployment(&backend, Hop::Direct);
    block_on(|| async {
        let c = H2::tls(d.edge.https, "app.example.com", d.roots.clone()).await;
        let mut tasks = Vec::new();
        for i in 0..50 {
            let mut c = H2 {
                send: c.send.clone(),
            };
            tasks.push(monoio::spawn(async move {
                let r = c.get("app.example.com", &format!("/n/{i}")).await.unwrap();
                (i, r.status, r.text())
            }));
        }
        for t in tasks {
            let (i, status, body) = t.await;
            assert_eq!(status, 200);
            assert!(body.contains(&format!("GET /n/{i} 0")), "{body}");
        }
    });
}

/// WebSocket over HTTP/2 (extended CONNECT) reaches an HTTP/1.1 backend
/// as an upgrade with a key, keeps the 101's cookie, and relays both ways;
/// over both hops. (Over HTTP/1.1 the same is covered by the request-path
/// tests.)
#[test]
fn websocket_over_http2_through_both_hops() {
    let backend = echo_backend();
    for hop in Hop::BOTH {
        let d = deployment(&backend, hop);
        block_on(|| async {
            let c = H2::tls(d.edge.https, "app.example.com", d.roots.clone()).await;
            let (resp, mut tx) = c.websocket("app.example.com", "/ws").await;
            assert_eq!(resp.status(), 200, "{hop:?}");
            assert_eq!(
                resp.headers()
                    .get("set-cookie")
                    .map(|v| v.to_str().unwrap()),
                Some("ws=1; Path=/"),
                "{hop:?}"
            );
            let seen = backend.last();
            assert_eq!(seen.method, "GET", "{hop:?}");
            assert_eq!(seen.header("upgrade"), Some("websocket"), "{hop:?}");
            assert!(seen.header("sec-websocket-key").is_some(), "{hop:?}");
            let mut rx = resp.into_body();
            h2c::send_all(&mut tx, Bytes::from_static(b"ping over h2"), false)
                .await
                .unwrap();
            let mut got = Vec::new();
            while got.len() < 12 {
                let chunk = monoio::time::timeout(Duration::from_secs(10), rx.data())
                    .await
                    .expect("echo in time")
                    .expect("the stream stays open")
                    .unwrap();
                let _ = rx.flow_control().release_capacity(chunk.len());
                got.extend_from_slice(&chunk);
            }
            assert_eq!(got, b"ping over h2", "{hop:?}");
        });
    }
}

/// An h2c edge in front of a backend answering 32 KiB to anything, for
/// `http://localhost/` (the authority the conformance suite sends).
fn h2c_edge(extra_edge: &str) -> (postern_e2e::Edge, Backend) {
    h2c_edge_for(
        Backend::start(|_| Reply::ok(vec![b'x'; 32 * 1024])),
        extra_edge,
    )
}

/// An h2c edge publishing `http://localhost/` in front of `backend`.
fn h2c_edge_for(backend: Backend, extra_edge: &str) -> (postern_e2e::Edge, Backend) {
    let edge = EdgeBuilder::new()
        .h2c()
        .edge(extra_edge)
        .app(&passthrough_app(
            "web",
            "http://localhost/",
            backend.addr,
            "[app.cookie]\nsecure = false\n",
        ))
        .start();
    (edge, backend)
}

/// httpwg's RFC 9113 cases, all of them, against the h2c listener
/// (`cargo install --locked httpwg-cli`, which `.ci/run` does).
#[test]
fn httpwg_conformance_suite_passes() {
    let (edge, _backend) = h2c_edge("");
    run_httpwg(edge.http);
}

/// The same cases against the TLS listener: httpwg speaks cleartext only,
/// so a TLS front carries its connections over TLS with ALPN `h2`.
#[test]
fn httpwg_conformance_suite_passes_over_tls() {
    let backend = Backend::start(|_| Reply::ok(vec![b'x'; 32 * 1024]));
    let mut b = EdgeBuilder::new().app(&passthrough_app(
        "web",
        "https://localhost/",
        backend.addr,
        "",
    ));
    b.certs.push(("localhost".into(), vec!["localhost"]));
    let roots = b.pki.root_store();
    let edge = b.start();
    run_httpwg(h2c::tls_front(edge.https, "localhost", roots));
}

/// Runs every httpwg case against `addr` (those `HTTPWG_FILTER` names,
/// when set); fails with the failures' lines.
fn run_httpwg(addr: std::net::SocketAddr) {
    let bin = std::env::var("HTTPWG").unwrap_or_else(|_| "httpwg".into());
    let filter = std::env::var("HTTPWG_FILTER").map_or(Vec::new(), |f| vec!["-f".to_string(), f]);
    // Frames get 2 s (the suite's default, 250 ms, is tight on a loaded
    // machine).
    let out = std::process::Command::new(&bin)
        .args(["--frame-timeout", "2000", "--connect-timeout", "5000"])
        .args(filter)
        .arg("-a")
        .arg(addr.to_string())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin} (cargo install --locked httpwg-cli): {e}"));
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let summary = text
        .lines()
        .filter(|l| {
            [
                "Passed",
                "Test failed",
                "Message",
                "Expected",
                "Wanted",
                "Timed out",
                "left:",
                "right:",
            ]
            .iter()
            .any(|k| l.contains(k))
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(out.status.success(), "httpwg: {summary}");
}

/// The h2c listener still serves HTTP/1.1.
#[test]
fn h2c_listener_serves_both_protocols() {
    let (edge, _backend) = h2c_edge("");
    let mut s = client::tcp(edge.http);
    let r = request(&mut s, "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    assert_eq!(r.status, 200);
    block_on(|| async {
        let mut c = H2::h2c(edge.http).await;
        let r = c.get("localhost", "/").await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), 32 * 1024);
    });
}

const LIMIT: Duration = Duration::from_secs(10);

fn goaway_code(raw: &mut Raw) -> Option<u32> {
    raw.until(LIMIT, |f| f.ty == h2c::GOAWAY)
        .and_then(|f| f.error_code())
}

/// Rapid Reset (CVE-2023-44487): streams opened and reset at once cost
/// the backend little, and a client that keeps doing it is told to calm
/// down.
#[test]
fn rapid_reset_gets_enhance_your_calm() {
    let (edge, backend) = h2c_edge("");
    let mut raw = Raw::h2c(edge.http);
    let block = hpack(&request_fields("localhost", "/"));
    let mut burst = Vec::new();
    for i in 0..1000u32 {
        let id = 2 * i + 1;
        burst.extend(frame(
            h2c::HEADERS,
            h2c::END_HEADERS | h2c::END_STREAM,
            id,
            &block,
        ));
        burst.extend(frame(h2c::RST_STREAM, 0, id, &8u32.to_be_bytes()));
    }
    let _ = raw.try_send(&burst);
    assert_eq!(goaway_code(&mut raw), Some(h2c::ENHANCE_YOUR_CALM));
    assert!(raw.closed_within(LIMIT));
    assert!(
        backend.count() < 1000,
        "{} of 1000 reset requests reached the backend",
        backend.count()
    );
    // Everyone else is still served.
    block_on(|| async {
        let mut c = H2::h2c(edge.http).await;
        assert_eq!(c.get("localhost", "/").await.unwrap().status, 200);
    });
}

/// MadeYouReset (CVE-2025-8671): frames that make the edge reset its own
/// streams (here a WINDOW_UPDATE that overflows an open stream's window)
/// are bounded the same way.
#[test]
fn made_you_reset_gets_enhance_your_calm() {
    let (edge, _backend) = h2c_edge("");
    let mut raw = Raw::h2c(edge.http);
    let block = hpack(&[
        (":method", "POST"),
        (":scheme", "http"),
        (":authority", "localhost"),
        (":path", "/"),
    ]);
    let mut burst = Vec::new();
    for i in 0..1000u32 {
        let id = 2 * i + 1;
        burst.extend(frame(h2c::HEADERS, h2c::END_HEADERS, id, &block));
        burst.extend(frame(
            h2c::WINDOW_UPDATE,
            0,
            id,
            &0x7fff_ffffu32.to_be_bytes(),
        ));
    }
    let _ = raw.try_send(&burst);
    assert_eq!(goaway_code(&mut raw), Some(h2c::ENHANCE_YOUR_CALM));
}

/// A CONTINUATION flood is cut off, memory bounded, with the connection.
#[test]
fn continuation_flood_is_cut_off() {
    let (edge, _backend) = h2c_edge("");
    let mut raw = Raw::h2c(edge.http);
    let mut flood = frame(
        h2c::HEADERS,
        0,
        1,
        &hpack(&request_fields("localhost", "/")),
    );
    let filler = hpack(&[("x-filler", &"a".repeat(4000))]);
    let mut sent = 0;
    while sent < 8 * 1024 * 1024 {
        let f = frame(h2c::CONTINUATION, 0, 1, &filler);
        sent += f.len();
        flood.extend(f);
        if flood.len() > 256 * 1024 {
            if !raw.try_send(&flood) {
                break;
            }
            flood.clear();
        }
    }
    let code = goaway_code(&mut raw);
    assert!(
        matches!(code, Some(h2c::ENHANCE_YOUR_CALM)),
        "GOAWAY {code:?}"
    );
    assert!(edge.memory_kib("VmRSS") < 200 * 1024);
}

/// A client that floods PINGs and SETTINGS without reading is
/// disconnected, its memory bounded.
#[test]
fn ping_flood_without_reading_is_bounded() {
    let (edge, _backend) = h2c_edge("client_send_timeout = 2\n");
    let mut raw = Raw::h2c(edge.http);
    raw.tcp
        .set_write_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut burst = Vec::new();
    for i in 0..2000u64 {
        burst.extend(frame(h2c::PING, 0, 0, &i.to_be_bytes()));
        burst.extend(frame(h2c::SETTINGS, 0, 0, &[]));
    }
    let started = std::time::Instant::now();
    let mut open = true;
    while open && started.elapsed() < Duration::from_secs(30) {
        open = raw.try_send(&burst);
    }
    assert!(!open, "the edge kept taking a flood it could not answer");
    assert!(edge.memory_kib("VmRSS") < 200 * 1024);
}

/// Malformed requests (RFC 9113 §8.1.1) are reset and never forwarded:
/// a connection-specific field, `te` other than `trailers`, a content
/// length its DATA contradicts, a Host other than `:authority`.
#[test]
fn malformed_requests_are_reset_and_not_forwarded() {
    let (edge, backend) = h2c_edge("");
    type Case<'a> = (Vec<(&'a str, &'a str)>, &'a [u8]);
    let base = request_fields("localhost", "/");
    let cases: Vec<Case<'_>> = vec![
        (
            [base.clone(), vec![("connection", "keep-alive")]].concat(),
            b"",
        ),
        ([base.clone(), vec![("te", "gzip")]].concat(), b""),
        (
            [base.clone(), vec![("content-length", "10")]].concat(),
            b"abc",
        ),
        (
            [base.clone(), vec![("host", "other.example.com")]].concat(),
            b"",
        ),
    ];
    for (i, (fields, body)) in cases.into_iter().enumerate() {
        let mut raw = Raw::h2c(edge.http);
        let flags = if body.is_empty() {
            h2c::END_HEADERS | h2c::END_STREAM
        } else {
            h2c::END_HEADERS
        };
        raw.send(&frame(h2c::HEADERS, flags, 1, &hpack(&fields)));
        if !body.is_empty() {
            raw.send(&frame(h2c::DATA, h2c::END_STREAM, 1, body));
        }
        let f = raw
            .until(LIMIT, |f| {
                (f.ty == h2c::RST_STREAM && f.stream == 1)
                    || f.ty == h2c::GOAWAY
                    || f.ty == h2c::HEADERS
            })
            .unwrap_or_else(|| panic!("case {i}: no answer"));
        assert!(
            matches!(f.ty, h2c::RST_STREAM | h2c::GOAWAY)
                && f.error_code() == Some(h2c::PROTOCOL_ERROR),
            "case {i}: {f:?}"
        );
    }
    assert_eq!(
        backend.count(),
        0,
        "a malformed request reached the backend"
    );
}

/// A WebSocket silent both ways for `websocket_idle_timeout` is closed,
/// over HTTP/1.1 and HTTP/2; while open it counts in the app's open
/// WebSockets.
#[test]
fn websocket_idle_timeout_and_open_count() {
    let backend = echo_backend();
    let b = EdgeBuilder::new().app(&passthrough_app(
        "web",
        "https://app.example.com/",
        backend.addr,
        "websocket_idle_timeout = 2\n",
    ));
    let d = Deployment::start(b, Hop::Direct);
    let open = |d: &Deployment| {
        let (_, c) = d.edge.admin("GET", "/v1/counters", None);
        (
            c["apps"]["web"]["websockets_open"].as_i64().unwrap(),
            c["apps"]["web"]["websockets"].as_u64().unwrap(),
        )
    };
    // HTTP/1.1.
    let mut s = d.connect("app.example.com");
    use std::io::{Read, Write};
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: app.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").unwrap();
    let mut pending = Vec::new();
    let r = client::read_response(&mut s, &mut pending, "GET").unwrap();
    assert_eq!(r.status, 101);
    assert_eq!(open(&d), (1, 1));
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    // The edge closes the silent relay: the read ends (0 or an error).
    let n = s.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0);
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(10),
        "{took:?}"
    );
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(open(&d), (0, 1));
    // HTTP/2.
    block_on(|| async {
        let c = H2::tls(d.edge.https, "app.example.com", d.roots.clone()).await;
        let (resp, _tx) = c.websocket("app.example.com", "/ws").await;
        assert_eq!(resp.status(), 200);
        let mut rx = resp.into_body();
        let started = std::time::Instant::now();
        let end = monoio::time::timeout(Duration::from_secs(10), rx.data())
            .await
            .expect("the edge ends the silent stream");
        assert!(!matches!(end, Some(Ok(ref d)) if !d.is_empty()), "{end:?}");
        assert!(started.elapsed() >= Duration::from_millis(1500));
    });
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(open(&d), (0, 2));
}

/// SIGTERM drains: an HTTP/2 client gets GOAWAY, its request in flight
/// still gets its whole answer, new connections are refused, and the edge
/// exits 0.
#[test]
fn sigterm_sends_goaway_and_finishes_streams_in_flight() {
    let (mut edge, _backend) = h2c_edge_for(
        Backend::start(|_| Reply::ok("slow answer").delay(Duration::from_millis(1500))),
        "",
    );
    let mut raw = Raw::h2c(edge.http);
    raw.send(&frame(
        h2c::HEADERS,
        h2c::END_HEADERS | h2c::END_STREAM,
        1,
        &hpack(&request_fields("localhost", "/")),
    ));
    std::thread::sleep(Duration::from_millis(300));
    let sent = std::time::Instant::now();
    std::process::Command::new("kill")
        .args(["-TERM", &edge.pid().to_string()])
        .status()
        .unwrap();
    let goaway = raw
        .until(LIMIT, |f| f.ty == h2c::GOAWAY)
        .unwrap_or_else(|| panic!("no GOAWAY; edge: {}", edge.stderr()));
    assert_eq!(goaway.error_code(), Some(0), "NO_ERROR");
    assert!(
        sent.elapsed() < Duration::from_secs(1),
        "{:?}",
        sent.elapsed()
    );
    // Draining: no new connections.
    std::thread::sleep(Duration::from_millis(100));
    assert!(std::net::TcpStream::connect(edge.http).is_err());
    // The stream in flight is answered in full.
    let data = raw
        .until(LIMIT, |f| f.ty == h2c::DATA && f.stream == 1)
        .expect("the answer");
    assert_eq!(data.payload, b"slow answer");
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(s) = edge.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the edge did not exit"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
}
