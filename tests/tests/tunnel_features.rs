//! What travels through a tunnel besides plain requests: WebSocket, a
//! forward proxy on the connector's side, and HTTPS backends checked by
//! the connector. (Several internal servers with sticky sessions are a
//! scenario of both hops, in `request_path.rs`.)

use std::io::{Read, Write};
use std::time::Duration;

use postern_e2e::backend::{Backend, ForwardProxy, Reply};
use postern_e2e::client::{self, get, read_response};
use postern_e2e::connector::Connector;
use postern_e2e::{passthrough_app, EdgeBuilder};

#[test]
fn websocket_through_the_tunnel_keeps_cookies_and_echoes() {
    let be = Backend::start(|_| {
        Reply::ok("")
            .status(101)
            .header("Upgrade", "websocket")
            .header("Connection", "Upgrade")
            .header("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
            .header("Set-Cookie", "affinity=1; Path=/")
    });
    let b = EdgeBuilder::new().tunnel().app(&passthrough_app(
        "ws",
        "https://app.example.com/",
        be.addr,
        "",
    ));
    let roots = b.pki.root_store();
    let edge = b.start();
    let _c = Connector::start(&edge, "default", "", 2);
    let mut s = client::tls(edge.https, "app.example.com", roots);
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: app.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .unwrap();
    let mut pending = Vec::new();
    let r = read_response(&mut s, &mut pending, "GET").unwrap();
    assert_eq!(r.status, 101);
    assert_eq!(
        r.header("set-cookie").as_deref(),
        Some("affinity=1; Path=/")
    );
    assert_eq!(
        r.header("sec-websocket-accept").as_deref(),
        Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    );
    let seen = be.last();
    assert_eq!(seen.method, "GET");
    assert_eq!(seen.header("upgrade"), Some("websocket"));
    assert_eq!(
        seen.header("sec-websocket-key"),
        Some("dGhlIHNhbXBsZSBub25jZQ==")
    );
    for round in 0..3 {
        let msg = format!("frame-{round}-{}", "x".repeat(round * 5000));
        s.write_all(msg.as_bytes()).unwrap();
        let mut got = std::mem::take(&mut pending);
        while got.len() < msg.len() {
            let mut buf = [0u8; 8192];
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "closed early");
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, msg.as_bytes());
    }
}

#[test]
fn connector_forward_proxy_for_http_and_https_backends() {
    let pki_backend = postern_e2e::Pki::new();
    let (cert, key) = pki_backend.issue("intranet", &["localhost"]);
    let tls_be = Backend::start_tls(&cert, &key, |_| Reply::ok("secure"));
    let plain_be = Backend::start(|s| Reply::ok(format!("plain {}", s.target)));
    let proxy = ForwardProxy::start();
    let dir = postern_e2e::TempDir::new("ca");
    let ca = dir.path().join("intranet-ca.pem");
    std::fs::write(&ca, pki_backend.ca_pem()).unwrap();
    let b = EdgeBuilder::new()
        .tunnel()
        .app(&passthrough_app("plain", "https://app.example.com/", plain_be.addr, ""))
        .app(&format!(
            "name = \"secure\"\nexternal_url = \"https://secure.example.com/\"\ninternal_url = \"https://localhost:{}/\"\npreauth = \"passthrough\"\nbackend_ca_file = \"{}\"",
            tls_be.addr.port(),
            ca.display()
        ));
    let roots = b.pki.root_store();
    let edge = b.start();
    let _c = Connector::start(
        &edge,
        "default",
        &format!("forward_proxy = \"http://{}\"", proxy.addr),
        2,
    );
    let mut s = client::tls(edge.https, "app.example.com", roots.clone());
    let r = get(&mut s, "app.example.com", "/p?q=1");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "plain /p?q=1");
    let mut s = client::tls(edge.https, "secure.example.com", roots);
    let r = get(&mut s, "secure.example.com", "/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "secure");
    let lines = proxy.lines.lock().unwrap().clone();
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("GET http://{}/p?q=1 ", plain_be.addr))),
        "{lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("CONNECT localhost:{} ", tls_be.addr.port()))),
        "{lines:?}"
    );
    let _ = Duration::ZERO;
}
