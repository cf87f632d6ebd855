//! Routing, forwarding headers, keep-alive, pipelining and backend failures,
//! through the real edge binary.

use std::io::Write;
use std::time::{Duration, Instant};

use postern_e2e::backend::{Backend, RawBackend, Reply};
use postern_e2e::client::{self, get, read_response, request};
use postern_e2e::{passthrough_app as app, EdgeBuilder};

#[test]
fn routes_by_exact_host_wildcard_and_longest_prefix() {
    let exact = Backend::start(|_| Reply::ok("exact"));
    let api = Backend::start(|_| Reply::ok("api"));
    let wild = Backend::start(|_| Reply::ok("wild"));
    let b = EdgeBuilder::new();
    let b = b
        .app(&app("exact", "https://app.example.com/", exact.addr, ""))
        .app(&format!(
            "name = \"api\"\nexternal_url = \"https://app.example.com/api/\"\ninternal_url = \"http://{}/v2/\"\npreauth = \"passthrough\"",
            api.addr
        ))
        .app(&app("wild", "https://*.example.com/", wild.addr, ""));
    let roots = b.pki.root_store();
    let edge = b.start();

    let mut s = client::tls(edge.https, "app.example.com", roots.clone());
    assert_eq!(get(&mut s, "app.example.com", "/").text(), "exact");
    assert_eq!(
        get(&mut s, "app.example.com", "/api/items?x=1").text(),
        "api"
    );
    assert_eq!(
        api.last().target,
        "/v2/items?x=1",
        "external prefix maps to the internal one"
    );
    let r = get(&mut s, "app.example.com", "/api");
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location").as_deref(), Some("/api/"));

    let mut s = client::tls(edge.https, "other.example.com", roots.clone());
    assert_eq!(get(&mut s, "other.example.com", "/api/").text(), "wild");

    let mut s = client::tls(edge.https, "unknown.example.org", roots.clone());
    // An unknown host gets the default certificate (verification fails for
    // this name), so ask without SNI-mismatch by using a matching name.
    drop(s);
    s = client::tls(edge.https, "app.example.com", roots);
    let r = request(&mut s, "GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n");
    assert_eq!(r.status, 200);
    let mut plain = client::tcp(edge.http);
    let r = get(&mut plain, "nothing.example.org", "/");
    assert_eq!(r.status, 404);
    assert!(
        !r.text().contains("127.0.0.1"),
        "404 page reveals nothing internal"
    );
    assert!(r.text().contains("Request ID"));
}

#[test]
fn sni_and_host_mismatch_is_421() {
    let be = Backend::hello();
    let b = EdgeBuilder::new()
        .app(&app("a", "https://app.example.com/", be.addr, ""))
        .app(&app("b", "https://b.example.com/", be.addr, ""));
    let (_edge, mut s) = b.start_and_connect("app.example.com");
    let r = get(&mut s, "b.example.com", "/");
    assert_eq!(r.status, 421);
    assert_eq!(be.count(), 0);
}

#[test]
fn http_listener_redirects_https_only_apps() {
    let be = Backend::hello();
    let b = EdgeBuilder::new()
        .app(&app("a", "https://app.example.com/", be.addr, ""))
        .app(&app(
            "plain",
            "http://plain.example.com/",
            be.addr,
            "cookie = { secure = false }",
        ));
    let edge = b.start();
    let mut s = client::tcp(edge.http);
    let r = get(&mut s, "app.example.com", "/x?y=1");
    assert_eq!(r.status, 301);
    assert_eq!(
        r.header("location").as_deref(),
        Some("https://app.example.com/x?y=1")
    );
    let r = request(
        &mut s,
        "POST /form HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(r.status, 308, "non-GET redirects keep their method");
    let r = get(&mut s, "plain.example.com", "/");
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
}

#[test]
fn forwarding_headers_and_hop_by_hop_removal() {
    let be = Backend::start(|_| {
        Reply::ok("ok")
            .header("Connection", "X-Secret-Hop")
            .header("X-Secret-Hop", "leak")
            .header("Keep-Alive", "timeout=5")
            .header("Location", "http://placeholder/")
    });
    let b = EdgeBuilder::new().app(&app(
        "a",
        "https://app.example.com/",
        be.addr,
        "hsts = true",
    ));
    let (_edge, mut s) = b.start_and_connect("app.example.com");
    let r = request(
        &mut s,
        "GET /p HTTP/1.1\r\nHost: app.example.com\r\nX-Forwarded-For: 203.0.113.9\r\nConnection: keep-alive, X-Drop-Me\r\nX-Drop-Me: 1\r\nTE: trailers\r\nX-Postern-User: forged\r\nX_Postern_Email: forged\r\nUpgrade: h2c\r\nHTTP2-Settings: AAA\r\nX-Request-Id: client-chosen\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let seen = be.last();
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("127.0.0.1"),
        "the edge is the first hop: a client's chain is not trusted"
    );
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.header("x-forwarded-host"), Some("app.example.com"));
    let id = seen.header("x-request-id").unwrap().to_string();
    assert!(id.len() >= 16 && id != "client-chosen");
    assert_eq!(
        seen.header("host"),
        Some(be.addr.to_string().as_str()),
        "Host is the internal host"
    );
    for gone in [
        "x-drop-me",
        "te",
        "x-postern-user",
        "x_postern_email",
        "upgrade",
        "http2-settings",
        "connection",
    ] {
        assert!(
            seen.header(gone).is_none(),
            "{gone} must not reach the backend"
        );
    }
    assert!(r.header("x-secret-hop").is_none() && r.header("keep-alive").is_none());
    assert_eq!(
        r.header("strict-transport-security").as_deref(),
        Some("max-age=31536000")
    );
}

#[test]
fn translate_headers_off_keeps_the_external_host() {
    let be = Backend::hello();
    let b = EdgeBuilder::new().app(&app(
        "a",
        "https://app.example.com/",
        be.addr,
        "translate_headers = false",
    ));
    let (_edge, mut s) = b.start_and_connect("app.example.com");
    get(&mut s, "app.example.com", "/");
    assert_eq!(be.last().header("host"), Some("app.example.com"));
}

#[test]
fn location_of_the_internal_url_is_translated() {
    let be = Backend::start(|s| {
        let own = s.header("host").unwrap().to_string();
        Reply::ok("")
            .status(302)
            .header("Location", &format!("http://{own}/next?a=1"))
    });
    let b = EdgeBuilder::new().app(&app("a", "https://app.example.com/", be.addr, ""));
    let (_edge, mut s) = b.start_and_connect("app.example.com");
    let r = get(&mut s, "app.example.com", "/");
    assert_eq!(
        r.header("location").as_deref(),
        Some("https://app.example.com/next?a=1")
    );
}

#[test]
fn disabled_app_answers_503() {
    let be = Backend::hello();
    let b = EdgeBuilder::new().app(&app(
        "a",
        "https://app.example.com/",
        be.addr,
        "enabled = false",
    ));
    let (_edge, mut s) = b.start_and_connect("app.example.com");
    assert_eq!(get(&mut s, "app.example.com", "/").status, 503);
    assert_eq!(be.count(), 0);
}

#[test]
fn keep_alive_and_pipelining_answer_in_order() {
    let be = Backend::start(|s| Reply::ok(s.target.clone()));
    let b = EdgeBuilder::new().app(&app("a", "https://app.example.com/", be.addr, ""));
    let (_edge, mut s) = b.start_and_connect("app.example.com");
    let mut batch = String::new();
    for i in 0..20 {
        batch.push_str(&format!(
            "GET /r{i} HTTP/1.1\r\nHost: app.example.com\r\n\r\n"
        ));
    }
    batch
        .push_str("POST /body HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 5\r\n\r\nhello");
    batch.push_str("GET /last HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n");
    s.write_all(batch.as_bytes()).unwrap();
    let mut pending = Vec::new();
    for i in 0..20 {
        let r = read_response(&mut s, &mut pending, "GET").unwrap();
        assert_eq!(r.text(), format!("/r{i}"));
    }
    assert_eq!(
        read_response(&mut s, &mut pending, "POST").unwrap().text(),
        "/body"
    );
    let last = read_response(&mut s, &mut pending, "GET").unwrap();
    assert_eq!(last.text(), "/last");
    assert_eq!(last.header("connection").as_deref(), Some("close"));
    assert!(
        be.connections.load(std::sync::atomic::Ordering::SeqCst) <= 2,
        "upstream keep-alive reuses connections"
    );
}

#[test]
fn chunked_request_and_response_bodies_stream_through() {
    let be = Backend::start(|s| Reply::ok(s.body.clone()).chunked());
    let b = EdgeBuilder::new().app(&app("a", "https://app.example.com/", be.addr, ""));
    let (_edge, mut s) = b.start_and_connect("app.example.com");
    let r = request(
        &mut s,
        "POST / HTTP/1.1\r\nHost: app.example.com\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
    );
    assert_eq!(r.text(), "hello world");
    assert_eq!(r.header("transfer-encoding").as_deref(), Some("chunked"));
    assert_eq!(be.last().header("transfer-encoding"), Some("chunked"));
}

#[test]
fn expect_100_continue() {
    let be = Backend::start(|s| Reply::ok(s.body.clone()));
    let b = EdgeBuilder::new().app(&app("a", "https://app.example.com/", be.addr, ""));
    let (_edge, mut s) = b.start_and_connect("app.example.com");
    s.write_all(b"PUT /x HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        .unwrap();
    let mut pending = Vec::new();
    let interim = read_response(&mut s, &mut pending, "PUT").unwrap();
    assert_eq!(interim.status, 100);
    s.write_all(b"data").unwrap();
    let r = read_response(&mut s, &mut pending, "PUT").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "data"));
    assert!(be.last().header("expect").is_none());
}

#[test]
fn unreachable_backend_is_502_with_request_id() {
    let port = postern_e2e::free_port();
    let b = EdgeBuilder::new().app(&format!(
        "name = \"a\"\nexternal_url = \"https://app.example.com/\"\ninternal_url = \"http://127.0.0.1:{port}/\"\npreauth = \"passthrough\""
    ));
    let (_edge, mut s) = b.start_and_connect("app.example.com");
    let r = get(&mut s, "app.example.com", "/");
    assert_eq!(r.status, 502);
    let id = r.header("x-request-id").unwrap();
    assert!(r.text().contains(&id), "the page carries the request id");
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    // The connection stays usable after an edge-generated error.
    assert_eq!(get(&mut s, "app.example.com", "/").status, 502);
}

#[test]
fn silent_backend_is_504_after_backend_timeout() {
    let be = RawBackend::silent();
    let b = EdgeBuilder::new().app(&app(
        "a",
        "https://app.example.com/",
        be.addr,
        "backend_timeout = 1",
    ));
    let (_edge, mut s) = b.start_and_connect("app.example.com");
    let start = Instant::now();
    let r = get(&mut s, "app.example.com", "/");
    assert_eq!(r.status, 504);
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(r.text().contains(&r.header("x-request-id").unwrap()));
}

#[test]
fn backend_closing_mid_body_never_looks_complete() {
    backend_abort_mid_body(false);
}

#[test]
fn backend_closing_mid_body_never_looks_complete_through_a_tunnel() {
    backend_abort_mid_body(true);
}

fn backend_abort_mid_body(tunnel: bool) {
    // Promises 100 bytes, sends 5, closes.
    let be = RawBackend::start(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello", true);
    let chunked = RawBackend::start(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n",
        true,
    );
    let mut b = EdgeBuilder::new()
        .app(&app("a", "https://app.example.com/", be.addr, ""))
        .app(&app("b", "https://b.example.com/", chunked.addr, ""));
    if tunnel {
        b = b.tunnel();
    }
    let roots = b.pki.root_store();
    let edge = b.start();
    let _connector =
        tunnel.then(|| postern_e2e::connector::Connector::start(&edge, "default", "", 2));
    let mut s = client::tls(edge.https, "app.example.com", roots.clone());
    s.write_all(b"GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
        .unwrap();
    let mut pending = Vec::new();
    assert!(
        read_response(&mut s, &mut pending, "GET").is_err(),
        "a truncated body must not complete"
    );
    let mut s = client::tls(edge.https, "b.example.com", roots);
    s.write_all(b"GET / HTTP/1.1\r\nHost: b.example.com\r\n\r\n")
        .unwrap();
    let mut pending = Vec::new();
    assert!(
        read_response(&mut s, &mut pending, "GET").is_err(),
        "no final chunk after a backend abort"
    );
}

#[test]
fn heads_and_bodies_split_into_tiny_pieces() {
    // The backend dribbles its response a few bytes at a time.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while postern_e2e::backend::find(&seen, b"hello-body").is_none() {
                    let n = std::io::Read::read(&mut s, &mut buf).unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    seen.extend_from_slice(&buf[..n]);
                }
                let resp = b"HTTP/1.1 200 OK\r\nX-A: 1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nslow\r\n5\r\n-resp\r\n0\r\n\r\n";
                for piece in resp.chunks(3) {
                    if s.write_all(piece).is_err() {
                        return;
                    }
                    s.flush().unwrap();
                    std::thread::sleep(Duration::from_millis(2));
                }
            });
        }
    });
    let b = EdgeBuilder::new().app(&app(
        "a",
        "http://a.example.com/",
        addr,
        "cookie = { secure = false }",
    ));
    let edge = b.start();
    let mut s = client::tcp(edge.http);
    let req = b"POST /p HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 10\r\n\r\nhello-body";
    for piece in req.chunks(2) {
        s.write_all(piece).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
    let mut pending = Vec::new();
    let r = read_response(&mut s, &mut pending, "POST").unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "slow-resp"));
    assert_eq!(r.header("x-a").as_deref(), Some("1"));
}

#[test]
fn a_client_that_stops_reading_is_dropped() {
    let be = Backend::hello();
    let b = EdgeBuilder::new().edge("client_send_timeout = 1").app(&app(
        "a",
        "http://a.example.com/",
        be.addr,
        "cookie = { secure = false }",
    ));
    let edge = b.start();
    let mut s = client::tcp(edge.http);
    let size = 200u64 * 1024 * 1024;
    s.write_all(format!("GET /__stream/{size} HTTP/1.1\r\nHost: a.example.com\r\n\r\n").as_bytes())
        .unwrap();
    std::thread::sleep(Duration::from_secs(4));
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match std::io::Read::read(&mut s, &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n as u64,
        }
    }
    assert!(
        total < size,
        "the edge gave up on the stalled client ({total} bytes delivered)"
    );
}

#[test]
fn a_slow_request_head_gets_408() {
    let be = Backend::hello();
    let b = EdgeBuilder::new()
        .edge("request_header_timeout = 1")
        .app(&app(
            "a",
            "http://a.example.com/",
            be.addr,
            "cookie = { secure = false }",
        ));
    let edge = b.start();
    let start = Instant::now();
    let (resp, closed) = client::raw_exchange(edge.http, b"GET / HTTP/1.1\r\nHost: a.exa");
    assert!(resp.starts_with("HTTP/1.1 408"), "{resp}");
    assert!(closed && start.elapsed() < Duration::from_secs(4));
    assert_eq!(be.count(), 0);
}

#[test]
fn epoll_fallback_serves_and_warns_once() {
    let be = Backend::hello();
    let b = EdgeBuilder::new().edge("workers = 2").app(&app(
        "a",
        "https://app.example.com/",
        be.addr,
        "",
    ));
    let roots = b.pki.root_store();
    let (dir, path, https, http) = b.write();
    let edge = postern_e2e::Edge::start_with_env(
        dir,
        &path,
        https,
        http,
        &[("MONOIO_FORCE_LEGACY_DRIVER", "1")],
    );
    let mut s = client::tls(edge.https, "app.example.com", roots);
    assert_eq!(get(&mut s, "app.example.com", "/").text(), "hello");
    let log = edge.stderr();
    assert_eq!(
        log.matches("epoll driver").count(),
        1,
        "one warning, not one per worker: {log}"
    );
}

#[test]
fn an_empty_post_keeps_its_content_length() {
    let be =
        Backend::start(|s| Reply::ok(s.header("content-length").unwrap_or("none").to_string()));
    let b = EdgeBuilder::new().app(&app(
        "a",
        "http://a.example.com/",
        be.addr,
        "cookie = { secure = false }",
    ));
    let edge = b.start();
    let mut s = client::tcp(edge.http);
    let r = request(
        &mut s,
        "POST /f HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(r.text(), "0");
    // And the connection is still good for the next request.
    assert_eq!(get(&mut s, "a.example.com", "/").text(), "none");
}

#[test]
fn responses_carry_the_request_id_the_backend_saw() {
    let be = Backend::hello();
    let b = EdgeBuilder::new().app(&app(
        "a",
        "http://a.example.com/",
        be.addr,
        "cookie = { secure = false }",
    ));
    let edge = b.start();
    let mut s = client::tcp(edge.http);
    let r = get(&mut s, "a.example.com.", "/");
    assert_eq!(
        r.status, 200,
        "a fully qualified Host (trailing dot) is the same host"
    );
    let id = r.header("x-request-id").unwrap();
    assert_eq!(id.len(), 24);
    assert_eq!(be.last().header("x-request-id"), Some(id.as_str()));
    let next = get(&mut s, "a.example.com", "/")
        .header("x-request-id")
        .unwrap();
    assert_ne!(id, next);
}

#[test]
fn access_log_has_one_json_line_per_request() {
    let be = Backend::hello();
    let b = EdgeBuilder::new()
        .edge("access_log = \"access.log\"\naccess_log_format = \"json\"")
        .app(&app(
            "a",
            "http://a.example.com/",
            be.addr,
            "cookie = { secure = false }",
        ));
    let edge = b.start();
    let mut s = client::tcp(edge.http);
    let ok = get(&mut s, "a.example.com", "/x?y=1");
    assert_eq!(get(&mut s, "nowhere.example.org", "/").status, 404);
    let path = edge.dir.path().join("access.log");
    let deadline = Instant::now() + Duration::from_secs(5);
    let lines = loop {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= 2 || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(lines.len(), 2, "{lines:?}");
    let first = &lines[0];
    assert_eq!(
        first["request_id"],
        ok.header("x-request-id").unwrap().as_str()
    );
    assert_eq!(first["app"], "a");
    assert_eq!(first["method"], "GET");
    assert_eq!(first["path"], "/x?y=1");
    assert_eq!(first["status"], 200);
    assert_eq!(first["bytes_out"], 5);
    assert_eq!(first["client"], "127.0.0.1");
    assert!(first["total_ms"].as_f64().unwrap() >= first["backend_ms"].as_f64().unwrap());
    assert_eq!(lines[1]["status"], 404);
    assert!(lines[1]["app"].is_null());
}
