//! The admin API against a running edge: authentication, app changes
//! validated, persisted and pushed to every worker, and failures that
//! leave the running table untouched.

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use postern_e2e::backend::Backend;
use postern_e2e::client::{self, get};
use postern_e2e::{Edge, EdgeBuilder};
use serde_json::Value;

fn edge_with_app(be: &Backend) -> Edge {
    EdgeBuilder::new()
        .edge("workers = 2")
        .app(&format!(
            "name = \"first\"\nexternal_url = \"http://first.example.com/\"\ninternal_url = \"http://{}/\"\npreauth = \"passthrough\"\ncookie = {{ secure = false }}",
            be.addr
        ))
        .start()
}

fn app_json(name: &str, host: &str, be: &Backend) -> String {
    format!(
        r#"{{"name": "{name}", "external_url": "http://{host}/", "internal_url": "http://{}/", "preauth": "passthrough", "cookie": {{"secure": false}}}}"#,
        be.addr
    )
}

fn status_of(edge: &Edge, host: &str) -> u16 {
    let mut s = client::tcp(edge.http);
    get(&mut s, host, "/").status
}

#[test]
fn token_is_required_and_private() {
    let be = Backend::hello();
    let edge = edge_with_app(&be);
    let token_file = edge.dir.path().join("state/admin.token");
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let (status, body) = edge.admin_call("GET", "/healthz", None, None);
    assert_eq!(status, 200, "health needs no token");
    assert_eq!(body["status"], "ok");
    assert_eq!(
        body["workers_alive"],
        serde_json::json!([true, true]),
        "every worker reports in"
    );
    assert_eq!(edge.admin_call("GET", "/v1/apps", None, None).0, 401);
    assert_eq!(
        edge.admin_call("GET", "/v1/apps", None, Some("wrong")).0,
        401
    );
    let mut almost = edge.admin_token();
    almost.pop();
    almost.push('x');
    assert_eq!(
        edge.admin_call("GET", "/v1/apps", None, Some(&almost)).0,
        401
    );
    let (status, body) = edge.admin("GET", "/v1/apps", None);
    assert_eq!(status, 200);
    assert_eq!(body["apps"][0]["name"], "first");
    // The admin API is not reachable through the public listeners.
    let mut s = client::tcp(edge.http);
    assert_eq!(get(&mut s, "127.0.0.1", "/v1/apps").status, 404);
}

#[test]
fn an_app_added_through_the_api_reaches_every_worker() {
    let be = Backend::hello();
    let edge = edge_with_app(&be);
    assert_eq!(status_of(&edge, "new.example.com"), 404);
    let (status, body) = edge.admin(
        "POST",
        "/v1/apps",
        Some(&app_json("new", "new.example.com", &be)),
    );
    assert_eq!(status, 201, "{body}");
    let version = body["version"].as_u64().unwrap();
    // Every worker reports the new version...
    edge.wait_for_version(version);
    // ...and new connections (spread over workers by the kernel) all route.
    // (How fast the push is, is measured by scripts/bench-push.sh, not here.)
    for _ in 0..20 {
        assert_eq!(status_of(&edge, "new.example.com"), 200);
    }
}

#[test]
fn replace_disable_enable_delete() {
    let be = Backend::hello();
    let other = Backend::start(|_| postern_e2e::backend::Reply::ok("other"));
    let edge = edge_with_app(&be);
    let (status, _) = edge.admin(
        "PUT",
        "/v1/apps/first",
        Some(&app_json("first", "first.example.com", &other)),
    );
    assert_eq!(status, 200);
    std::thread::sleep(Duration::from_millis(30));
    let mut s = client::tcp(edge.http);
    assert_eq!(get(&mut s, "first.example.com", "/").text(), "other");
    assert_eq!(edge.admin("POST", "/v1/apps/first/disable", None).0, 200);
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(status_of(&edge, "first.example.com"), 503);
    let (_, body) = edge.admin("GET", "/v1/apps/first", None);
    assert_eq!(
        body["app"]["enabled"], false,
        "configuration kept while disabled"
    );
    assert_eq!(edge.admin("POST", "/v1/apps/first/enable", None).0, 200);
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(status_of(&edge, "first.example.com"), 200);
    assert_eq!(edge.admin("DELETE", "/v1/apps/first", None).0, 204);
    std::thread::sleep(Duration::from_millis(30));
    assert_eq!(status_of(&edge, "first.example.com"), 404);
    assert_eq!(edge.admin("DELETE", "/v1/apps/first", None).0, 404);
    assert_eq!(edge.admin("GET", "/v1/apps/first", None).0, 404);
}

#[test]
fn bad_input_is_refused_clearly_and_changes_nothing() {
    let be = Backend::hello();
    let edge = edge_with_app(&be);
    let (_, before) = edge.admin("GET", "/v1/apps", None);

    let (status, body) = edge.admin(
        "POST",
        "/v1/apps",
        Some(
            &app_json("x", "x.example.com", &be)
                .replace("http://x.example.com/", "http://x.example.com"),
        ),
    );
    assert_eq!(status, 422);
    let problem = body["problems"][0].as_str().unwrap();
    assert!(
        problem.starts_with("app \"x\": external_url:") && problem.contains("trailing slash"),
        "{body}"
    );

    let (status, body) = edge.admin("POST", "/v1/apps", Some(r#"{"name": "x", "external_url": "http://x.example.com/", "internal_url": "http://a/", "preauth": "passthrough", "transalte_body": true}"#));
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("unknown field `transalte_body`"),
        "{body}"
    );

    let (status, body) = edge.admin(
        "POST",
        "/v1/apps",
        Some(r#"{"name": "x", "external_url": 5}"#),
    );
    assert_eq!(status, 400);
    assert!(
        body["error"].as_str().unwrap().contains("external_url")
            || body["error"].as_str().unwrap().contains("invalid type"),
        "{body}"
    );

    assert_eq!(edge.admin("POST", "/v1/apps", Some("{not json")).0, 400);
    assert_eq!(
        edge.admin(
            "POST",
            "/v1/apps",
            Some(&app_json("first", "dup.example.com", &be))
        )
        .0,
        409
    );
    let (status, _) = edge.admin(
        "POST",
        "/v1/apps",
        Some(&app_json("y", "first.example.com", &be)),
    );
    assert_eq!(status, 422, "the same external URL twice");
    let huge = format!("{{\"name\": \"{}\"}}", "a".repeat(1024 * 1024 + 10));
    assert_eq!(edge.admin("POST", "/v1/apps", Some(&huge)).0, 413);
    assert_eq!(edge.admin("PATCH", "/v1/apps/first", None).0, 405);
    assert_eq!(edge.admin("GET", "/v1/nothing", None).0, 404);

    let (_, after) = edge.admin("GET", "/v1/apps", None);
    assert_eq!(before, after, "nothing changed");
}

#[test]
fn a_disk_that_refuses_the_write_gets_503_and_no_change() {
    let be = Backend::hello();
    let edge = edge_with_app(&be);
    // A directory where the temporary file must go makes the write fail
    // (permissions would not stop a root test run).
    let blocker = edge.dir.path().join("state/.apps.json.tmp");
    std::fs::create_dir(&blocker).unwrap();
    let (status, body) = edge.admin(
        "POST",
        "/v1/apps",
        Some(&app_json("n", "n.example.com", &be)),
    );
    assert_eq!(status, 503, "{body}");
    let (_, table) = edge.admin("GET", "/v1/apps", None);
    assert_eq!(table["apps"].as_array().unwrap().len(), 1);
    assert_eq!(status_of(&edge, "n.example.com"), 404, "not applied");
    std::fs::remove_dir(&blocker).unwrap();
    assert_eq!(
        edge.admin(
            "POST",
            "/v1/apps",
            Some(&app_json("n", "n.example.com", &be))
        )
        .0,
        201
    );
}

#[test]
fn changes_survive_a_restart_and_the_file_seeds_only_the_first_start() {
    let be = Backend::hello();
    let edge = edge_with_app(&be);
    assert_eq!(
        edge.admin(
            "POST",
            "/v1/apps",
            Some(&app_json("added", "added.example.com", &be))
        )
        .0,
        201
    );
    assert_eq!(edge.admin("DELETE", "/v1/apps/first", None).0, 204);
    let edge = edge.restart();
    let (_, table) = edge.admin("GET", "/v1/apps", None);
    let names: Vec<&str> = table["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["added"]);
    assert_eq!(table["version"], Value::from(3));
    assert_eq!(status_of(&edge, "added.example.com"), 200);
    assert_eq!(status_of(&edge, "first.example.com"), 404);
}

#[test]
fn sighup_reloads_the_apps_of_the_configuration_file() {
    let be = Backend::hello();
    let edge = edge_with_app(&be);
    let config = edge.dir.path().join("edge.toml");
    let original = std::fs::read_to_string(&config).unwrap();
    let hup = |pid: u32| {
        std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap();
    };
    // A broken file changes nothing.
    std::fs::write(
        &config,
        original.replace("internal_url = \"http://", "internal_url = \"gopher://"),
    )
    .unwrap();
    hup(edge.pid());
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(status_of(&edge, "first.example.com"), 200);
    assert_eq!(edge.admin("GET", "/v1/apps", None).1["version"], 1);
    assert!(
        edge.stderr().contains("reload refused"),
        "{}",
        edge.stderr()
    );
    // A valid one becomes the table.
    let added = format!(
        "{original}\n[[app]]\nname = \"second\"\nexternal_url = \"http://second.example.com/\"\ninternal_url = \"http://{}/\"\npreauth = \"passthrough\"\ncookie = {{ secure = false }}\n",
        be.addr
    );
    std::fs::write(&config, added).unwrap();
    hup(edge.pid());
    let deadline = Instant::now() + Duration::from_secs(5);
    while status_of(&edge, "second.example.com") != 200 {
        assert!(Instant::now() < deadline, "reload did not apply");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(edge.admin("GET", "/v1/apps", None).1["version"], 2);
}

#[test]
fn uploaded_certificates_are_served_at_once_and_survive_restarts() {
    let be = Backend::hello();
    let b = EdgeBuilder::new().app(&format!(
        "name = \"portal\"\nexternal_url = \"https://portal.example.org/\"\ninternal_url = \"http://{}/\"\npreauth = \"passthrough\"",
        be.addr
    ));
    let roots = b.pki.root_store();
    let (cert, key) = b.pki.issue("portal", &["portal.example.org"]);
    let (_, other_key) = b.pki.issue("other", &["other.example.org"]);
    let edge = b.start();
    let handshake = |edge: &Edge| {
        let mut s = client::tls(edge.https, "portal.example.org", roots.clone());
        std::io::Write::write_all(
            &mut s,
            b"GET / HTTP/1.1\r\nHost: portal.example.org\r\nConnection: close\r\n\r\n",
        )
        .and_then(|_| {
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut s, &mut v).map(|_| v)
        })
        .map(|v| String::from_utf8_lossy(&v).starts_with("HTTP/1.1 200"))
        .unwrap_or(false)
    };
    assert!(
        !handshake(&edge),
        "no certificate for portal.example.org yet"
    );
    let body = |c: &str, k: &str| {
        serde_json::json!({ "name": "portal", "cert_pem": c, "key_pem": k }).to_string()
    };

    let (status, v) = edge.admin(
        "POST",
        "/v1/certificates",
        Some(&body(
            &cert,
            "-----BEGIN PRIVATE KEY-----\nbad\n-----END PRIVATE KEY-----\n",
        )),
    );
    assert_eq!(status, 422);
    assert!(v["error"].as_str().unwrap().starts_with("key_pem:"), "{v}");
    let (status, v) = edge.admin("POST", "/v1/certificates", Some(&body(&cert, &other_key)));
    assert_eq!(status, 422);
    assert!(
        v["error"].as_str().unwrap().contains("does not match"),
        "{v}"
    );
    let (status, v) = edge.admin("POST", "/v1/certificates", Some(&body("not a cert", &key)));
    assert_eq!(status, 422);
    assert!(v["error"].as_str().unwrap().starts_with("cert_pem:"), "{v}");
    let (status, v) = edge.admin(
        "POST",
        "/v1/certificates",
        Some(r#"{"name": "p12", "pkcs12_base64": "AAAA", "password": "x"}"#),
    );
    assert_eq!(status, 422);
    assert!(
        v["error"].as_str().unwrap().starts_with("pkcs12_base64:"),
        "{v}"
    );
    // A real PKCS#12 file (as openssl exports it), with a wrong password.
    let p12 = pkcs12(&edge, &cert, &key, "s3cret");
    let upload = |password: &str| {
        serde_json::json!({ "name": "portal", "pkcs12_base64": p12, "password": password })
            .to_string()
    };
    let (status, v) = edge.admin("POST", "/v1/certificates", Some(&upload("wrong")));
    assert_eq!(status, 422);
    assert!(v["error"].as_str().unwrap().starts_with("password:"), "{v}");
    assert!(edge.is_alive_ref());

    let (status, v) = edge.admin("POST", "/v1/certificates", Some(&upload("s3cret")));
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["dns_names"][0], "portal.example.org");
    assert!(handshake(&edge), "served from the next handshake");
    let (_, list) = edge.admin("GET", "/v1/certificates", None);
    assert!(list["certificates"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["source"] == "uploaded"));

    let edge = edge.restart();
    assert!(handshake(&edge), "kept across restarts");
    assert_eq!(edge.admin("DELETE", "/v1/certificates/portal", None).0, 204);
    assert!(!handshake(&edge));
    assert_eq!(edge.admin("DELETE", "/v1/certificates/portal", None).0, 404);
}

/// `openssl pkcs12 -export` of a certificate and key, base64.
fn pkcs12(edge: &Edge, cert: &str, key: &str, password: &str) -> String {
    let dir = edge.dir.path();
    std::fs::write(dir.join("p12-cert.pem"), cert).unwrap();
    std::fs::write(dir.join("p12-key.pem"), key).unwrap();
    let out = std::process::Command::new("openssl")
        .args(["pkcs12", "-export", "-in"])
        .arg(dir.join("p12-cert.pem"))
        .arg("-inkey")
        .arg(dir.join("p12-key.pem"))
        .args(["-passout", &format!("pass:{password}")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut b64 = std::process::Command::new("openssl")
        .args(["base64", "-A"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut b64.stdin.take().unwrap(), &out.stdout).unwrap();
    let text = b64.wait_with_output().unwrap();
    String::from_utf8(text.stdout).unwrap().trim().to_string()
}
