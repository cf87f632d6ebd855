//! Connectors end to end: registration, relaying through real tunnels,
//! revocation, and the failure paths (no connector, a connector killed or
//! restarted under load).

use std::time::{Duration, Instant};

use postern_e2e::backend::{pattern, Backend, Reply};
use postern_e2e::client::{self, get, request};
use postern_e2e::connector::{register, Connector};
use postern_e2e::{passthrough_app, EdgeBuilder, TempDir};

fn tunnel_edge(apps: &[String]) -> (postern_e2e::Edge, rustls::RootCertStore) {
    let mut b = EdgeBuilder::new().tunnel();
    for a in apps {
        b = b.app(a);
    }
    let roots = b.pki.root_store();
    (b.start(), roots)
}

/// An edge with a tunnel listener publishing `app.example.com` in front of
/// a backend that answers `hello`.
fn hello_edge() -> (Backend, postern_e2e::Edge, rustls::RootCertStore) {
    let backend = Backend::hello();
    let (edge, roots) = tunnel_edge(&[passthrough_app(
        "hello",
        "https://app.example.com/",
        backend.addr,
        "",
    )]);
    (backend, edge, roots)
}

#[test]
fn registration_happy_path_and_every_refusal() {
    let backend = Backend::hello();
    let (edge, _) = tunnel_edge(&[passthrough_app(
        "hello",
        "https://app.example.com/",
        backend.addr,
        "",
    )]);
    let token = edge.enrollment_token("emea");
    let dir = TempDir::new("reg");
    let (ok, text) = register(edge.tunnel(), &token, dir.path());
    assert!(ok, "{text}");
    assert!(text.contains("group \"emea\""), "{text}");
    let identity = std::fs::read_to_string(dir.path().join("connector.json")).unwrap();
    assert!(identity.contains("BEGIN CERTIFICATE") && identity.contains("PRIVATE KEY"));
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("connector.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the identity (with its key) is private");
    }

    // The same token again.
    let (ok, text) = register(edge.tunnel(), &token, TempDir::new("reg2").path());
    assert!(!ok && text.contains("already used"), "{text}");
    // A forged secret with the right shape and CA pin.
    let mut parts: Vec<String> = edge
        .enrollment_token("emea")
        .split('_')
        .map(str::to_string)
        .collect();
    parts[2] = "0".repeat(64);
    let (ok, text) = register(edge.tunnel(), &parts.join("_"), TempDir::new("reg3").path());
    assert!(!ok && text.contains("not valid"), "{text}");
    // A token whose CA pin is not this edge's: refused before the token
    // is ever sent.
    let mut parts: Vec<String> = edge
        .enrollment_token("emea")
        .split('_')
        .map(str::to_string)
        .collect();
    let good = parts.join("_");
    parts[3] = "ab".repeat(16);
    let (ok, text) = register(edge.tunnel(), &parts.join("_"), TempDir::new("reg4").path());
    assert!(!ok && text.contains("CA does not match"), "{text}");
    // ... and that token still works afterwards, because it never left.
    let (ok, text) = register(edge.tunnel(), &good, TempDir::new("reg5").path());
    assert!(ok, "{text}");
    // A revoked token, and a malformed one.
    let revoked = edge.enrollment_token("emea");
    let id = revoked.split('_').nth(1).unwrap();
    let (status, _) = edge.admin("DELETE", &format!("/v1/enrollment-tokens/{id}"), None);
    assert_eq!(status, 204);
    let (ok, text) = register(edge.tunnel(), &revoked, TempDir::new("reg6").path());
    assert!(!ok && text.contains("not valid"), "{text}");
    let (ok, text) = register(edge.tunnel(), "pet_nonsense", TempDir::new("reg7").path());
    assert!(!ok && text.contains("malformed"), "{text}");

    let (_, list) = edge.admin("GET", "/v1/connectors", None);
    let list = list["connectors"].as_array().unwrap().clone();
    assert_eq!(list.len(), 2, "{list:?}");
    assert!(list.iter().all(|c| c["group"] == "emea"
        && c["state"] == "active"
        && c["version"] == env!("CARGO_PKG_VERSION")
        && !c["host_name"].as_str().unwrap().is_empty()));
}

#[test]
fn requests_travel_edge_tunnel_connector_backend() {
    let backend = Backend::start(|seen| {
        if seen.target.ends_with("/echo") {
            Reply::ok(seen.body.clone()).header("Location", "http://ignored.invalid/x")
        } else {
            Reply::ok(format!("path={}", seen.target)).chunked()
        }
    });
    let (edge, roots) = tunnel_edge(&[
        format!(
            "name = \"hello\"\nexternal_url = \"https://app.example.com/app/\"\ninternal_url = \"http://{}/base/\"\npreauth = \"passthrough\"",
            backend.addr
        ),
        passthrough_app("files", "https://files.example.com/", backend.addr, ""),
    ]);
    let conn = Connector::start(&edge, "default", "", 2);
    edge.wait_every_worker(&conn.id);
    let mut s = client::tls(edge.https, "app.example.com", roots.clone());
    let r = get(&mut s, "app.example.com", "/app/x?q=1");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "path=/base/x?q=1");
    let seen = backend.last();
    assert_eq!(seen.header("host"), Some(backend.addr.to_string().as_str()));
    assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
    assert_eq!(seen.header("x-forwarded-host"), Some("app.example.com"));
    assert_eq!(seen.header("x-forwarded-for"), Some("127.0.0.1"));
    let rid = r.header("x-request-id").expect("request id");
    assert_eq!(seen.header("x-request-id"), Some(rid.as_str()));
    assert!(
        seen.headers
            .iter()
            .all(|(k, _)| !k.to_ascii_lowercase().starts_with("postern-")),
        "tunnel metadata never reaches the backend: {:?}",
        seen.headers
    );

    // A request body, and client-sent tunnel metadata that must not steer
    // the connector.
    let body = "x".repeat(100_000);
    let r = request(
        &mut s,
        &format!(
            "POST /app/echo HTTP/1.1\r\nHost: app.example.com\r\npostern-servers: 127.0.0.1:9\r\nX-Forwarded-For: 10.0.0.1\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), body.len());
    let seen = backend.last();
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("127.0.0.1"),
        "a client's own chain is not trusted"
    );

    // A large download streams through intact, chunked or not.
    let mut f = client::tls(edge.https, "files.example.com", roots);
    let n: u64 = 8 * 1024 * 1024 + 17;
    let r = get(&mut f, "files.example.com", &format!("/__stream/{n}"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len() as u64, n);
    assert!(r
        .body
        .iter()
        .enumerate()
        .all(|(i, b)| *b == pattern(i as u64)));
    // Both edge workers hold a tunnel of their own: nothing crossed cores.
    let (_, c) = edge.admin("GET", "/v1/counters", None);
    assert_eq!(c["edge"]["cross_core_relays"], 0, "{c}");
    assert!(c["edge"]["tunnel_requests"].as_u64().unwrap() >= 3, "{c}");
    let mine = &c["connectors"][&conn.id];
    assert!(mine["requests"].as_u64().unwrap() >= 3, "{c}");
    assert!(mine["tunnels"].as_u64().unwrap() >= 2, "{c}");
    assert_eq!(mine["group"], "default");
    let metrics = {
        let mut s = client::tcp(edge.admin);
        let r = request(
            &mut s,
            &format!(
                "GET /metrics HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
                edge.admin_token()
            ),
        );
        r.text()
    };
    assert!(
        metrics.contains(&format!(
            "postern_connector_tunnels{{connector=\"{}\",group=\"default\"}}",
            conn.id
        )),
        "{metrics}"
    );
    drop(conn);
}

#[test]
fn a_group_without_connectors_answers_502_quickly() {
    let backend = Backend::hello();
    let (edge, roots) = tunnel_edge(&[passthrough_app(
        "lonely",
        "https://app.example.com/",
        backend.addr,
        "connector_group = \"nobody\"",
    )]);
    let mut s = client::tls(edge.https, "app.example.com", roots);
    let started = Instant::now();
    let r = get(&mut s, "app.example.com", "/");
    assert!(started.elapsed() < Duration::from_secs(2));
    assert_eq!(r.status, 502);
    let text = r.text();
    assert!(text.contains("no connector of the group"), "{text}");
    assert!(text.contains("nobody"), "{text}");
    assert!(
        text.contains(&r.header("x-request-id").unwrap_or_default()) || text.contains("request")
    );
    assert_eq!(backend.count(), 0);
}

#[test]
fn revoking_disconnects_at_once_and_refuses_for_good() {
    let (_backend, edge, roots) = hello_edge();
    let conn = Connector::start(&edge, "default", "", 2);
    let mut s = client::tls(edge.https, "app.example.com", roots.clone());
    assert_eq!(get(&mut s, "app.example.com", "/").status, 200);
    let (status, v) = edge.admin("POST", &format!("/v1/connectors/{}/revoke", conn.id), None);
    assert_eq!(status, 200, "{v}");
    let deadline = Instant::now() + Duration::from_secs(2);
    while edge.tunnels_of(&conn.id) > 0 {
        assert!(Instant::now() < deadline, "tunnels still open after revoke");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut s = client::tls(edge.https, "app.example.com", roots);
    assert_eq!(get(&mut s, "app.example.com", "/").status, 502);
    // The connector keeps trying; the edge keeps refusing.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(edge.tunnels_of(&conn.id), 0);
    let (_, list) = edge.admin("GET", "/v1/connectors", None);
    assert_eq!(list["connectors"][0]["state"], "revoked");
    let (status, _) = edge.admin("POST", "/v1/connectors/doesnotexist/revoke", None);
    assert_eq!(status, 404);
    // Revocation survives an edge restart.
    let edge = edge.restart();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(edge.tunnels_of(&conn.id), 0);
}

#[test]
fn a_worker_without_a_tunnel_relays_through_another_workers_tunnel() {
    let backend = Backend::start(|s| Reply::ok(format!("seen {}", s.target)));
    let (edge, roots) = tunnel_edge(&[passthrough_app(
        "hello",
        "https://app.example.com/",
        backend.addr,
        "",
    )]);
    // One tunnel for two edge workers: half the connections land on the
    // worker that has none.
    let _c = Connector::start(&edge, "default", "tunnels = 1", 1);
    for n in 0..40 {
        let mut s = client::tls(edge.https, "app.example.com", roots.clone());
        let r = get(&mut s, "app.example.com", &format!("/n/{n}"));
        assert_eq!(r.status, 200);
        assert_eq!(r.text(), format!("seen /n/{n}"));
        // A large body crosses cores intact too.
        if n % 10 == 0 {
            let r = get(&mut s, "app.example.com", "/__stream/3000000");
            assert_eq!(r.body.len(), 3_000_000);
            assert!(r
                .body
                .iter()
                .enumerate()
                .all(|(i, b)| *b == pattern(i as u64)));
        }
    }
    let (_, c) = edge.admin("GET", "/v1/counters", None);
    let cross = c["edge"]["cross_core_relays"].as_u64().unwrap();
    assert!(cross > 0, "some requests crossed cores: {c}");
    assert!(cross < c["edge"]["tunnel_requests"].as_u64().unwrap());
}

#[test]
fn backend_timeouts_and_unreachable_servers_through_the_tunnel() {
    let slow = Backend::start(|_| Reply::ok("late").delay(Duration::from_secs(3)));
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let (edge, roots) = tunnel_edge(&[
        passthrough_app(
            "slow",
            "https://app.example.com/",
            slow.addr,
            "backend_timeout = 1",
        ),
        passthrough_app("dead", "https://dead.example.com/", dead_addr, ""),
    ]);
    let _c = Connector::start(&edge, "default", "", 2);
    let mut s = client::tls(edge.https, "app.example.com", roots.clone());
    let started = Instant::now();
    let r = get(&mut s, "app.example.com", "/");
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(started.elapsed() < Duration::from_millis(2500));
    assert!(r.text().contains(&r.header("x-request-id").unwrap()));
    let mut s = client::tls(edge.https, "dead.example.com", roots);
    let r = get(&mut s, "dead.example.com", "/");
    assert_eq!(r.status, 502);
    assert!(r.text().contains("could not be reached"), "{}", r.text());
    let (_, c) = edge.admin("GET", "/v1/counters", None);
    assert_eq!(
        c["apps"]["slow"]["failed_by_reason"]["backend_timeout"], 1,
        "{c}"
    );
    assert_eq!(
        c["apps"]["dead"]["failed_by_reason"]["backend_unreachable"], 1,
        "{c}"
    );
}

#[test]
fn a_frozen_connector_is_noticed_within_15_seconds() {
    let (_backend, edge, roots) = hello_edge();
    let frozen = Connector::start(&edge, "default", "", 2);
    let alive = Connector::start(&edge, "default", "", 2);
    std::process::Command::new("kill")
        .args(["-STOP", &frozen.pid().to_string()])
        .status()
        .unwrap();
    let started = Instant::now();
    while edge.tunnels_of(&frozen.id) > 0 {
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the frozen connector's tunnels are still listed"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!("frozen connector dropped after {:?}", started.elapsed());
    // Meanwhile and afterwards, the live connector serves everything.
    let mut s = client::tls(edge.https, "app.example.com", roots);
    for _ in 0..10 {
        assert_eq!(get(&mut s, "app.example.com", "/").status, 200);
    }
    assert!(edge.tunnels_of(&alive.id) >= 2);
    std::process::Command::new("kill")
        .args(["-CONT", &frozen.pid().to_string()])
        .status()
        .unwrap();
}

#[test]
fn certificates_renew_at_two_thirds_of_their_lifetime() {
    let backend = Backend::hello();
    let b = EdgeBuilder::new()
        .tunnel()
        .edge("connector_cert_lifetime = 60")
        .app(&passthrough_app(
            "hello",
            "https://app.example.com/",
            backend.addr,
            "",
        ));
    let roots = b.pki.root_store();
    let edge = b.start();
    let mut c = Connector::start(&edge, "default", "", 2);
    let path = c.dir.path().join("connector.json");
    let read = || -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
    };
    let first = read();
    assert_eq!(first["lifetime_secs"], 60);
    let issued = first["issued_at"].as_u64().unwrap();
    // Renewal is due 40 s after issue; look just before, then after.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    std::thread::sleep(Duration::from_secs((issued + 37).saturating_sub(now)));
    assert_eq!(
        read()["certificate"],
        first["certificate"],
        "not renewed early"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let renewed = loop {
        let now = read();
        if now["certificate"] != first["certificate"] {
            break now;
        }
        assert!(Instant::now() < deadline, "no renewal: {}", c.log_text());
        std::thread::sleep(Duration::from_millis(200));
    };
    let renewed_after = renewed["issued_at"].as_u64().unwrap() - issued;
    assert!(
        (39..=45).contains(&renewed_after),
        "renewed after {renewed_after} s"
    );
    assert_ne!(
        renewed["key"], first["key"],
        "a fresh key with each certificate"
    );
    assert_eq!(renewed["id"], first["id"]);
    // The renewed identity opens tunnels on its own (once the edge has
    // seen the old process's tunnels close).
    c.kill();
    let deadline = Instant::now() + Duration::from_secs(10);
    while edge.tunnels_of(&c.id) > 0 {
        assert!(Instant::now() < deadline, "old tunnels still listed");
        std::thread::sleep(Duration::from_millis(10));
    }
    c.spawn();
    edge.wait_every_worker(&c.id);
    let mut s = client::tls(edge.https, "app.example.com", roots);
    assert_eq!(get(&mut s, "app.example.com", "/").status, 200);
}

#[test]
fn connector_command_errors_say_what_to_do() {
    let dir = TempDir::new("unregistered");
    let out = std::process::Command::new(postern_e2e::postern_bin())
        .args(["connector", "--state-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("not registered") && text.contains("connector register"),
        "{text}"
    );

    let cfg = dir.path().join("connector.toml");
    std::fs::write(&cfg, "[connector]\ntunels = 2\n").unwrap();
    let out = std::process::Command::new(postern_e2e::postern_bin())
        .args(["connector", "--state-dir"])
        .arg(dir.path())
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("connector.toml") && text.contains("tunels"),
        "{text}"
    );

    std::fs::write(
        &cfg,
        "[connector]\nforward_proxy = \"socks5://proxy:1080\"\n",
    )
    .unwrap();
    let out = std::process::Command::new(postern_e2e::postern_bin())
        .args(["connector", "--state-dir"])
        .arg(dir.path())
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(
        text.contains("connector.forward_proxy") && text.contains("http://"),
        "{text}"
    );

    // An edge that is not there.
    let token = format!(
        "pet_{}_{}_{}",
        "a".repeat(12),
        "b".repeat(64),
        "c".repeat(32)
    );
    let (ok, text) = register("127.0.0.1:1".parse().unwrap(), &token, dir.path());
    assert!(!ok && text.contains("cannot connect to the edge"), "{text}");
}

/// A TLS client to the tunnel listener trusting the edge's CA, with `alpn`.
fn tunnel_client(
    edge: &postern_e2e::Edge,
    alpn: &[u8],
) -> rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream> {
    use rustls_pki_types::pem::PemObject;
    let pem = std::fs::read(edge.dir.path().join("state/ca.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![alpn.to_vec()];
    let conn = rustls::ClientConnection::new(
        std::sync::Arc::new(cfg),
        "tunnel.postern.internal".try_into().unwrap(),
    )
    .unwrap();
    rustls::StreamOwned::new(conn, client::tcp(edge.tunnel()))
}

#[test]
fn hostile_clients_on_the_tunnel_listener_get_nothing() {
    use std::io::{Read, Write};
    let (_backend, edge, roots) = hello_edge();
    // Not TLS at all.
    let mut raw = client::tcp(edge.tunnel());
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = [0u8; 256];
    let n = raw.read(&mut buf).unwrap_or(0);
    assert!(n == 0 || buf[0] == 0x15, "a TLS alert or nothing");
    // A tunnel without a client certificate: closed before any HTTP/2.
    let mut s = tunnel_client(&edge, b"postern-tunnel/1");
    let _ = s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(got.is_empty(), "{got:?}");
    // A renewal without a certificate: nothing.
    let mut s = tunnel_client(&edge, b"postern-renew/1");
    let _ = s.write_all(b"{\"csr\":\"x\"}\n");
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    assert!(got.is_empty(), "{got:?}");
    // An enrollment line past 64 KiB: a clear refusal.
    let mut s = tunnel_client(&edge, b"postern-enroll/1");
    let mut big = b"{\"token\":\"".to_vec();
    big.extend(std::iter::repeat_n(b'a', 70_000));
    big.extend_from_slice(b"\"}\n");
    let _ = s.write_all(&big);
    let mut got = String::new();
    let _ = s.read_to_string(&mut got);
    assert!(got.contains("64 KiB"), "{got}");
    // Malformed JSON and a bad CSR with a good token: refused, token kept.
    let token = edge.enrollment_token("default");
    let secret: Vec<&str> = token.split('_').collect();
    let mut s = tunnel_client(&edge, b"postern-enroll/1");
    let line = format!(
        "{{\"token\":\"{}\",\"csr\":\"not a csr\",\"host_name\":\"h\",\"version\":\"1\"}}\n",
        secret[..3].join("_")
    );
    s.write_all(line.as_bytes()).unwrap();
    let mut got = String::new();
    let _ = s.read_to_string(&mut got);
    assert!(got.contains("signing request is not valid"), "{got}");
    let (ok, text) = register(edge.tunnel(), &token, TempDir::new("after-bad-csr").path());
    assert!(ok, "the token survived the bad request: {text}");
    // A client that says nothing is dropped after the exchange timeout.
    let started = Instant::now();
    let mut s = tunnel_client(&edge, b"postern-enroll/1");
    let _ = s.write_all(b"");
    let _ = s.flush();
    let mut got = String::new();
    let _ = s.read_to_string(&mut got);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    // The edge is unharmed.
    let _c = Connector::start(&edge, "default", "", 2);
    let mut s = client::tls(edge.https, "app.example.com", roots);
    assert_eq!(get(&mut s, "app.example.com", "/").status, 200);
}

#[test]
fn connectors_come_back_by_themselves_after_an_edge_restart() {
    let (_backend, edge, roots) = hello_edge();
    let c = Connector::start(&edge, "default", "", 2);
    let edge = edge.restart();
    let started = Instant::now();
    edge.wait_every_worker(&c.id);
    eprintln!("tunnels back {:?} after the restart", started.elapsed());
    assert!(started.elapsed() < Duration::from_secs(10));
    let mut s = client::tls(edge.https, "app.example.com", roots);
    assert_eq!(get(&mut s, "app.example.com", "/").status, 200);
    // Same identity, same CA: no new registration was needed.
    let (_, list) = edge.admin("GET", "/v1/connectors", None);
    assert_eq!(list["connectors"].as_array().unwrap().len(), 1);
}

#[test]
fn a_connector_covers_every_one_of_many_edge_workers() {
    let backend = Backend::hello();
    let b = EdgeBuilder::new()
        .edge("workers = 8\npin_workers = false")
        .tunnel()
        .app(&passthrough_app(
            "hello",
            "https://app.example.com/",
            backend.addr,
            "",
        ));
    let roots = b.pki.root_store();
    let edge = b.start();
    // The kernel picks a worker per connection; the connector keeps
    // dialing (and moves tunnels that share a worker) until all 8 hold one.
    let c = Connector::start(&edge, "default", "workers = 2", 2);
    edge.wait_every_worker(&c.id);
    let (_, list) = edge.admin("GET", "/v1/connectors", None);
    let total = list["connectors"][0]["tunnels"].as_u64().unwrap();
    assert!(total <= 32, "at most four per edge worker: {list}");
    eprintln!(
        "8 edge workers covered with {total} tunnels after {} dials",
        c.log_text().matches("tunnel open").count()
    );
    let mut s = client::tls(edge.https, "app.example.com", roots);
    for _ in 0..16 {
        assert_eq!(get(&mut s, "app.example.com", "/").status, 200);
    }
}
