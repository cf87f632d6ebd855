//! HTTPS backends (certificate validation on and off, private CA) and the
//! quickstart command.

use std::process::{Command, Stdio};

use postern_e2e::backend::{Backend, Reply};
use postern_e2e::client::{self, get};
use postern_e2e::{free_port, Edge, EdgeBuilder, Pki, TempDir};

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

#[test]
fn quickstart_serves_the_sample_app_over_https() {
    let dir = TempDir::new("quickstart");
    let (https, http, app) = (free_port(), free_port(), free_port());
    let (admin, tunnel) = (free_port(), free_port());
    let mut child = Command::new(postern_e2e::postern_bin())
        .args([
            "quickstart",
            "--https-port",
            &https.to_string(),
            "--http-port",
            &http.to_string(),
        ])
        .args([
            "--app-port",
            &app.to_string(),
            "--admin-port",
            &admin.to_string(),
            "--tunnel-port",
            &tunnel.to_string(),
            "--state-dir",
        ])
        .arg(dir.path())
        .env("POSTERN_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        let mut text = String::new();
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            text.push_str(&line);
            text.push('\n');
            if line.contains("postern edge ready") {
                let _ = tx.send(text.clone());
            }
        }
    });
    let banner = rx.recv_timeout(std::time::Duration::from_secs(30));
    let result = std::panic::catch_unwind(|| {
        let banner = banner.expect("quickstart became ready");
        assert!(
            banner.contains(&format!("https://localhost:{https}/")),
            "{banner}"
        );
        assert!(banner.contains("Ctrl-C"), "says how to stop: {banner}");
        // Trust the certificate quickstart generated, and check it is real.
        let pem = std::fs::read(dir.path().join("localhost.pem")).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        use rustls_pki_types::pem::PemObject;
        for c in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
            roots.add(c.unwrap()).unwrap();
        }
        let addr = format!("127.0.0.1:{https}").parse().unwrap();
        let mut s = client::tls(addr, "localhost", roots);
        let r = get(&mut s, "localhost", "/");
        assert_eq!(r.status, 200);
        let page = r.text();
        assert!(page.contains("Contoso Expenses"));
        // The sample page hard-codes its internal address in attributes,
        // CSS, inline scripts, a JSON blob, escaped and percent-encoded;
        // through the edge none of it survives, and every translated link
        // resolves through the edge.
        let external = format!("https://localhost:{https}");
        let mut links = std::collections::BTreeSet::new();
        for doc in [
            "/",
            "/style.css",
            "/logo.svg",
            "/reports/",
            "/api/summary.json",
        ] {
            let r = get(&mut s, "localhost", doc);
            assert_eq!(r.status, 200, "{doc}");
            let text = r.text();
            let unescaped = text
                .replace("\\/", "/")
                .replace("%3A", ":")
                .replace("%2F", "/");
            assert!(
                !unescaped.contains(&format!("localhost:{app}")),
                "{doc} still names the internal address:\n{text}"
            );
            for (i, _) in unescaped.match_indices(&external) {
                let rest = &unescaped[i + external.len()..];
                let end = rest
                    .find(['"', '\'', ')', ' ', '<', '>', '\n'])
                    .unwrap_or(rest.len());
                let path = if rest[..end].is_empty() {
                    "/"
                } else {
                    &rest[..end]
                };
                links.insert(path.to_string());
            }
        }
        for want in [
            "/style.css",
            "/logo.svg",
            "/reports/",
            "/api/summary.json",
            "/old-home",
            "/",
        ] {
            assert!(links.contains(want), "{want} in {links:?}");
        }
        assert!(page.contains("next=https%3A%2F%2Flocalhost%3A"), "{page}");
        for path in &links {
            let r = get(&mut s, "localhost", path);
            assert!(
                r.status == 200 || r.status == 302,
                "{path} answered {} through the edge",
                r.status
            );
        }
        let r = get(&mut s, "localhost", "/old-home");
        assert_eq!(
            r.header("location"),
            Some(format!("https://localhost:{https}/reports/")),
            "redirects to the internal URL are translated"
        );
        let mut plain = client::tcp(format!("127.0.0.1:{http}").parse().unwrap());
        let r = get(&mut plain, "localhost", "/");
        assert_eq!(r.status, 301);
        // Those requests took the tunnel to the in-process connector.
        assert!(banner.contains("connector"), "{banner}");
        let token = std::fs::read_to_string(dir.path().join("state/admin.token")).unwrap();
        let admin_get = |path: &str| {
            let mut s = client::tcp(format!("127.0.0.1:{admin}").parse().unwrap());
            let r = postern_e2e::client::request(
                &mut s,
                &format!(
                    "GET {path} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
                    token.trim()
                ),
            );
            serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()
        };
        let c = admin_get("/v1/counters");
        assert!(c["edge"]["tunnel_requests"].as_u64().unwrap() >= 2, "{c}");
        let list = admin_get("/v1/connectors");
        assert_eq!(list["connectors"][0]["state"], "active", "{list}");
        assert!(
            list["connectors"][0]["tunnels"].as_u64().unwrap() >= 2,
            "{list}"
        );
    });
    let _ = child.kill();
    let _ = child.wait();
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}
