//! What only the tunnel hop has: a forward proxy on the connector's side,
//! and HTTPS backends checked by the connector. (WebSocket, several
//! internal servers with sticky sessions and the rest are scenarios of
//! both hops, in `request_path.rs`.)

use std::time::Duration;

use postern_e2e::backend::{Backend, ForwardProxy, Reply};
use postern_e2e::client::{self, get};
use postern_e2e::connector::Connector;
use postern_e2e::{passthrough_app, EdgeBuilder};

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
