//! Attack cases 1–14 and 23 of docs/attacks.md (HTTP/1.1 framing), each
//! against the real edge.
//!
//! Requests go to the plain-HTTP listener so the bytes on the wire are
//! exactly the bytes written here; the framing code is the same behind TLS.
//! "Close" is checked by reading until the edge closes: a response followed
//! by silence (no close within 5 s) fails the test.

use std::sync::atomic::Ordering;

use postern_e2e::backend::{Backend, RawBackend, Reply};
use postern_e2e::client::raw_exchange;
use postern_e2e::{Deployment, Edge, EdgeBuilder, Hop};

/// An edge with http app `a.example.com` → backend, and `oidc.example.com`
/// requiring pre-authentication.
fn edge_for(backend: std::net::SocketAddr) -> Edge {
    EdgeBuilder::new()
        .app(&format!(
            "name = \"a\"\nexternal_url = \"http://a.example.com/\"\ninternal_url = \"http://{backend}/\"\npreauth = \"passthrough\"\ncookie = {{ secure = false }}"
        ))
        .app(&format!(
            "name = \"sso\"\nexternal_url = \"https://oidc.example.com/\"\ninternal_url = \"http://{backend}/\"\n"
        ))
        .app(&format!(
            "name = \"sso-http\"\nexternal_url = \"http://oidc.example.com/\"\ninternal_url = \"http://{backend}/\"\ncookie = {{ secure = false }}\n"
        ))
        .edge_idp()
        .start()
}

trait WithIdp {
    fn edge_idp(self) -> Self;
}

impl WithIdp for EdgeBuilder {
    fn edge_idp(mut self) -> Self {
        self.apps.push_str(
            "\n[identity_provider]\nissuer = \"https://login.example.com/\"\nclient_id = \"postern\"\n",
        );
        self
    }
}

/// Sends `raw`, expects exactly one response with `status`, then close.
fn expect_close(edge: &Edge, raw: &str, status: u16) -> String {
    let (resp, closed) = raw_exchange(edge.http, raw.as_bytes());
    let first = resp.lines().next().unwrap_or("");
    assert!(
        first.starts_with(&format!("HTTP/1.1 {status} ")),
        "want {status} for {raw:?}, got {resp:?}"
    );
    assert_eq!(
        resp.matches("HTTP/1.1 ").count(),
        1,
        "exactly one response to {raw:?}: {resp}"
    );
    assert!(closed, "connection must close after {raw:?}");
    resp
}

const SMUGGLED: &str = "GET /smuggled HTTP/1.1\r\nHost: a.example.com\r\n\r\n";

#[test]
fn case_01_content_length_with_transfer_encoding() {
    let be = Backend::hello();
    let edge = edge_for(be.addr);
    expect_close(
        &edge,
        &format!("POST / HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{SMUGGLED}"),
        400,
    );
    assert_eq!(be.count(), 0);
}

#[test]
fn case_02_obfuscated_transfer_encoding() {
    let be = Backend::hello();
    let edge = edge_for(be.addr);
    for (te, status) in [
        ("Transfer-Encoding: xchunked", 501),
        ("Transfer-Encoding: chunked, identity", 400),
        ("Transfer-Encoding: ,chunked", 400),
        ("Transfer-Encoding:\tchunked", 400),
        ("Transfer-Encoding: \x0bchunked", 400),
        (
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked",
            400,
        ),
        (
            "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked",
            400,
        ),
    ] {
        expect_close(
            &edge,
            &format!("POST / HTTP/1.1\r\nHost: a.example.com\r\n{te}\r\n\r\n0\r\n\r\n{SMUGGLED}"),
            status,
        );
    }
    assert_eq!(be.count(), 0, "never forwarded");
}

#[test]
fn case_03_conflicting_content_length() {
    let be = Backend::start(|s| Reply::ok(s.body.clone()));
    let edge = edge_for(be.addr);
    for cl in [
        "Content-Length: 5\r\nContent-Length: 6",
        "Content-Length: 5, 6",
    ] {
        expect_close(
            &edge,
            &format!("POST / HTTP/1.1\r\nHost: a.example.com\r\n{cl}\r\n\r\nhello!{SMUGGLED}"),
            400,
        );
    }
    assert_eq!(be.count(), 0);
    // Identical repeats may collapse.
    let (resp, _) = raw_exchange(
        edge.http,
        b"POST / HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: 5, 5\r\nConnection: close\r\n\r\nhello",
    );
    assert!(
        resp.starts_with("HTTP/1.1 200") && resp.ends_with("hello"),
        "{resp}"
    );
}

#[test]
fn case_04_malformed_content_length() {
    let be = Backend::hello();
    let edge = edge_for(be.addr);
    for v in [
        "+5",
        "-1",
        "0x10",
        "1_0",
        "",
        "99999999999999999999999999",
        "5 5",
    ] {
        expect_close(
            &edge,
            &format!("POST / HTTP/1.1\r\nHost: a.example.com\r\nContent-Length: {v}\r\n\r\nhello"),
            400,
        );
    }
    assert_eq!(be.count(), 0);
}

#[test]
fn case_05_06_malformed_chunks() {
    let be = Backend::hello();
    let edge = edge_for(be.addr);
    let long_ext = format!("5;{}\r\nhello\r\n0\r\n\r\n", "e".repeat(5000));
    for body in [
        "0x5\r\nhello\r\n0\r\n\r\n",
        "+5\r\nhello\r\n0\r\n\r\n",
        " 5\r\nhello\r\n0\r\n\r\n",
        "\r\nhello\r\n0\r\n\r\n",
        "11111111111111111\r\nhello\r\n0\r\n\r\n",
        "5\nhello\r\n0\r\n\r\n",
        "5\rX\r\nhello\r\n0\r\n\r\n",
        "5;ext=a\rb\r\nhello\r\n0\r\n\r\n",
        "5;ext=a\nb\r\nhello\r\n0\r\n\r\n",
        long_ext.as_str(),
    ] {
        expect_close(
            &edge,
            &format!("POST / HTTP/1.1\r\nHost: a.example.com\r\nTransfer-Encoding: chunked\r\n\r\n{body}{SMUGGLED}"),
            400,
        );
    }
    assert!(
        be.seen
            .lock()
            .unwrap()
            .iter()
            .all(|s| s.target != "/smuggled"),
        "nothing after a bad chunk is read as a request"
    );
}

#[test]
fn case_07_obs_fold() {
    let be = Backend::hello();
    let edge = edge_for(be.addr);
    expect_close(
        &edge,
        "GET / HTTP/1.1\r\nHost: a.example.com\r\nX-Folded: a\r\n  b\r\n\r\n",
        400,
    );
    assert_eq!(be.count(), 0);
}

#[test]
fn case_08_14_bare_lf_is_rebuilt_with_crlf_and_bare_cr_refused() {
    let be = RawBackend::start(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", false);
    let edge = edge_for(be.addr);
    let (resp, _) = raw_exchange(
        edge.http,
        b"\r\nGET /lf HTTP/1.1\nHost: a.example.com\nX-Test: 1\nConnection: close\n\n",
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let sent = be.received_text();
    assert!(sent.starts_with("GET /lf HTTP/1.1\r\n"), "{sent:?}");
    assert!(sent.contains("X-Test: 1\r\n"));
    assert!(
        !sent.replace("\r\n", "").contains('\n'),
        "every line sent onwards ends in CRLF: {sent:?}"
    );
    expect_close(
        &edge,
        "GET / HTTP/1.1\r\nHost: a.example.com\rX-Bad: 1\r\n\r\n",
        400,
    );
}

#[test]
fn case_09_bad_header_syntax() {
    let be = Backend::hello();
    let edge = edge_for(be.addr);
    for h in [
        "X-Space : v",
        "X(Bad): v",
        ": empty-name",
        "X-Nul: a\0b",
        "X-Cr: a\rb",
    ] {
        expect_close(
            &edge,
            &format!("GET / HTTP/1.1\r\nHost: a.example.com\r\n{h}\r\n\r\n"),
            400,
        );
    }
    assert_eq!(be.count(), 0);
}

#[test]
fn case_10_host_rules() {
    let be = Backend::start(|s| Reply::ok(s.target.clone()));
    let edge = edge_for(be.addr);
    expect_close(&edge, "GET / HTTP/1.1\r\n\r\n", 400);
    expect_close(
        &edge,
        "GET / HTTP/1.1\r\nHost: a.example.com\r\nHost: b.example.com\r\n\r\n",
        400,
    );
    expect_close(
        &edge,
        "POST / HTTP/1.0\r\nHost: a.example.com\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    );
    // Absolute form routes on its own authority, not the Host header.
    let (resp, _) = raw_exchange(
        edge.http,
        b"GET http://a.example.com/abs HTTP/1.1\r\nHost: elsewhere.example.org\r\nConnection: close\r\n\r\n",
    );
    assert!(
        resp.starts_with("HTTP/1.1 200") && resp.ends_with("/abs"),
        "{resp}"
    );
    let (resp, _) = raw_exchange(
        edge.http,
        b"GET http://elsewhere.example.org/abs HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
}

#[test]
fn case_11_body_of_a_refused_request_is_never_parsed() {
    let be = Backend::hello();
    let edge = edge_for(be.addr);
    // The edge answers itself (sign-in required, unknown host) without
    // reading the body: it must close rather than parse the body.
    for host in ["oidc.example.com", "unknown.example.org"] {
        let status = if host.starts_with("oidc") { 503 } else { 404 };
        expect_close(
            &edge,
            &format!(
                "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n{SMUGGLED}",
                SMUGGLED.len()
            ),
            status,
        );
    }
    assert_eq!(be.count(), 0);
}

#[test]
fn case_12_upgrade_only_after_101() {
    // The backend refuses the upgrade with a normal response: the
    // connection stays HTTP and the next bytes are parsed as a request.
    let be = Backend::start(|s| Reply::ok(s.target.clone()));
    let edge = edge_for(be.addr);
    let (resp, _) = raw_exchange(
        edge.http,
        b"GET /ws HTTP/1.1\r\nHost: a.example.com\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\nGET /next HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(resp.matches("HTTP/1.1 200").count(), 2, "{resp}");
    assert!(resp.ends_with("/next"));
    // h2c upgrades are stripped.
    let (resp, _) = raw_exchange(
        edge.http,
        b"GET /h2c HTTP/1.1\r\nHost: a.example.com\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\nConnection: close\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    let seen = be.last();
    assert!(seen.header("upgrade").is_none() && seen.header("http2-settings").is_none());
}

#[test]
fn case_13_bad_backend_responses_are_502_and_drop_the_upstream() {
    for hop in Hop::BOTH {
        for response in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
        ] {
            let be = RawBackend::start(response, false);
            let b = EdgeBuilder::new().app(&format!(
                "name = \"a\"\nexternal_url = \"http://a.example.com/\"\ninternal_url = \"http://{}/\"\npreauth = \"passthrough\"\ncookie = {{ secure = false }}",
                be.addr
            ));
            let d = Deployment::start(b, hop);
            for _ in 0..2 {
                let (resp, _) = raw_exchange(
                    d.edge.http,
                    b"GET / HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n\r\n",
                );
                assert!(resp.starts_with("HTTP/1.1 502"), "{hop:?}: {resp}");
            }
            assert_eq!(
                be.connections.load(Ordering::SeqCst),
                2,
                "{hop:?}: each bad response closes its upstream connection"
            );
        }
    }
}

#[test]
fn case_23_head_url_and_header_count_limits() {
    let be = Backend::hello();
    let edge = edge_for(be.addr);
    let long_url = format!(
        "GET /{} HTTP/1.1\r\nHost: a.example.com\r\n\r\n",
        "u".repeat(8 * 1024 + 1)
    );
    expect_close(&edge, &long_url, 414);
    let big_head = format!(
        "GET / HTTP/1.1\r\nHost: a.example.com\r\nX-Big: {}\r\n\r\n",
        "v".repeat(64 * 1024)
    );
    expect_close(&edge, &big_head, 431);
    let mut many = String::from("GET / HTTP/1.1\r\nHost: a.example.com\r\n");
    for i in 0..100 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    expect_close(&edge, &many, 431);
    assert_eq!(be.count(), 0);
    // 99 extra headers plus Host is exactly the limit and passes.
    let mut ok = String::from("GET / HTTP/1.1\r\nHost: a.example.com\r\nConnection: close\r\n");
    for i in 0..98 {
        ok.push_str(&format!("X-H{i}: v\r\n"));
    }
    ok.push_str("\r\n");
    let (resp, _) = raw_exchange(edge.http, ok.as_bytes());
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
}
