//! HTTPS backends (certificate validation on and off, private CA).

use postern_e2e::backend::{Backend, Reply};
use postern_e2e::client::{self, get};
use postern_e2e::{Edge, EdgeBuilder, Pki};

/// An edge publishing `https://app.example.com/` → `https://localhost:PORT/`
/// with `extra` app settings; `ca.pem` in the config directory holds `ca`.
fn edge_to(backend_port: u16, extra: &str, ca: Option<&Pki>) -> (Edge, rustls::RootCertStore) {
    let b = EdgeBuilder::new().app(&format!(
        "name = \"a\"\nexternal_url = \"https://app.example.com/\"\ninternal_url = \"https://localhost:{backend_port}/\"\npreauth = \"passthrough\"\n{extra}"
    ));
    let roots = b.pki.root_store();
    let (dir, path, https, http) = b.write();
    if let Some(ca) = ca {
        std::fs::write(dir.path().join("ca.pem"), ca.ca_pem()).unwrap();
    }
    (Edge::start_with(dir, &path, https, http), roots)
}

#[test]
fn https_backend_validated_against_a_private_ca() {
    let internal = Pki::new();
    let (cert, key) = internal.issue("backend", &["localhost"]);
    let be = Backend::start_tls(&cert, &key, |s| Reply::ok(format!("tls:{}", s.target)));
    let (edge, roots) = edge_to(
        be.addr.port(),
        "backend_ca_file = \"ca.pem\"",
        Some(&internal),
    );
    let mut s = client::tls(edge.https, "app.example.com", roots);
    let r = get(&mut s, "app.example.com", "/x");
    assert_eq!((r.status, r.text().as_str()), (200, "tls:/x"));
    // Pooled TLS connection reused for the next request.
    assert_eq!(get(&mut s, "app.example.com", "/y").text(), "tls:/y");
    assert_eq!(be.connections.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[test]
fn untrusted_or_misnamed_backend_certificates_are_502() {
    let internal = Pki::new();
    // Not signed by a CA the edge trusts (system roots only).
    let (cert, key) = internal.issue("backend", &["localhost"]);
    let be = Backend::start_tls(&cert, &key, |_| Reply::ok("should not be reached"));
    let (edge, roots) = edge_to(be.addr.port(), "", None);
    let mut s = client::tls(edge.https, "app.example.com", roots);
    assert_eq!(get(&mut s, "app.example.com", "/").status, 502);
    assert_eq!(be.count(), 0);

    // Trusted CA, wrong name.
    let (cert, key) = internal.issue("backend", &["other.test"]);
    let be = Backend::start_tls(&cert, &key, |_| Reply::ok("should not be reached"));
    let (edge, roots) = edge_to(
        be.addr.port(),
        "backend_ca_file = \"ca.pem\"",
        Some(&internal),
    );
    let mut s = client::tls(edge.https, "app.example.com", roots);
    assert_eq!(get(&mut s, "app.example.com", "/").status, 502);
    assert_eq!(be.count(), 0);
}

#[test]
fn validation_off_accepts_a_self_signed_backend() {
    let internal = Pki::new();
    let (cert, key) = internal.issue("backend", &["something-else.test"]);
    let be = Backend::start_tls(&cert, &key, |_| Reply::ok("trusted by choice"));
    let (edge, roots) = edge_to(be.addr.port(), "validate_backend_tls = false", None);
    let mut s = client::tls(edge.https, "app.example.com", roots);
    assert_eq!(
        get(&mut s, "app.example.com", "/").text(),
        "trusted by choice"
    );
}
