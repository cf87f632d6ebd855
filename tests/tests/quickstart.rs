//! `postern quickstart`: the sample app over the real path (edge, tunnel,
//! in-process connector), and the signed-in sample app behind the demo
//! OpenID provider.

use std::process::{Child, Command, Stdio};

use postern_e2e::client::{self, get};
use postern_e2e::idp::Browser;
use postern_e2e::{free_port, TempDir};

/// A running quickstart on free ports; killed when dropped.
struct Quickstart {
    child: Child,
    dir: TempDir,
    banner: String,
    https: u16,
    http: u16,
    app: u16,
    admin: u16,
    idp: u16,
}

impl Quickstart {
    fn start() -> Quickstart {
        let dir = TempDir::new("quickstart");
        let (https, http, app, private) = (free_port(), free_port(), free_port(), free_port());
        let (admin, tunnel, idp) = (free_port(), free_port(), free_port());
        let mut child = Command::new(postern_e2e::postern_bin())
            .arg("quickstart")
            .args(["--https-port", &https.to_string()])
            .args(["--http-port", &http.to_string()])
            .args(["--app-port", &app.to_string()])
            .args(["--private-app-port", &private.to_string()])
            .args(["--idp-port", &idp.to_string()])
            .args(["--admin-port", &admin.to_string()])
            .args(["--tunnel-port", &tunnel.to_string()])
            .arg("--state-dir")
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
        let mut q = Quickstart {
            child,
            dir,
            banner: String::new(),
            https,
            http,
            app,
            admin,
            idp,
        };
        q.banner = banner.expect("quickstart became ready");
        q
    }

    /// The certificate quickstart generated, as the only trusted root.
    fn roots(&self) -> rustls::RootCertStore {
        let pem = std::fs::read(self.dir.path().join("localhost.pem")).unwrap();
        let mut roots = rustls::RootCertStore::empty();
        use rustls_pki_types::pem::PemObject;
        for c in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
            roots.add(c.unwrap()).unwrap();
        }
        roots
    }
}

impl Quickstart {
    /// Stops the quickstart; its directory (configuration, state) stays.
    fn stop(mut self) -> TempDir {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::mem::replace(&mut self.dir, TempDir::new("quickstart-stopped"))
    }
}

impl Drop for Quickstart {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn quickstart_serves_the_sample_app_over_https() {
    let q = Quickstart::start();
    let (https, http, app, admin) = (q.https, q.http, q.app, q.admin);
    let (dir, banner) = (&q.dir, Ok::<_, ()>(q.banner.clone()));
    let result = std::panic::catch_unwind(|| {
        let banner = banner.expect("quickstart became ready");
        assert!(
            banner.contains(&format!("https://localhost:{https}/")),
            "{banner}"
        );
        assert!(banner.contains("Ctrl-C"), "says how to stop: {banner}");
        // Trust the certificate quickstart generated, and check it is real.
        let roots = q.roots();
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
        let token = std::fs::read_to_string(dir.path().join("admin.token")).unwrap();
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
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// The newcomer's sign-in: the banner names the signed-in app, its user
/// and password; the app sends a browser to the demo provider, whose form
/// signs the user in; the app then shows who the edge says the user is.
/// A script gets a bearer token from the provider as the banner shows,
/// and a wrong password is refused at the provider.
#[test]
fn quickstart_signs_a_newcomer_in_at_the_demo_provider() {
    let q = Quickstart::start();
    let app = format!("https://private.localhost:{}/", q.https);
    assert!(q.banner.contains(&app), "{}", q.banner);
    let password = q
        .banner
        .split("password ")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .expect("the banner shows the demo password")
        .to_string();
    let edge = format!("127.0.0.1:{}", q.https).parse().unwrap();

    // Not signed in: a script gets 401, a browser goes to the provider.
    let mut s = client::tls(edge, "private.localhost", q.roots());
    assert_eq!(get(&mut s, "private.localhost", "/").status, 401);
    let mut browser = Browser::new(edge, q.roots());
    let (_, r) = browser.sign_in(&format!("{app}reports/"), "demo", "wrong");
    assert_eq!(r.status, 200);
    assert!(
        r.text().contains("Wrong user name or password"),
        "{}",
        r.text()
    );

    let mut browser = Browser::new(edge, q.roots());
    let (url, r) = browser.sign_in(&format!("{app}reports/"), "demo", &password);
    assert_eq!(
        (url.as_str(), r.status),
        (format!("{app}reports/").as_str(), 200)
    );
    let (_, home) = browser.follow(&app);
    let page = home.text();
    assert!(page.contains("Contoso Expenses (signed in)"), "{page}");
    assert!(
        page.contains("<th>x-postern-user</th><td>demo</td>"),
        "{page}"
    );
    assert!(page.contains("demo@example.com"), "{page}");
    assert!(
        !page.contains(&format!("localhost:{}", q.app)),
        "links are translated on the signed-in app too: {page}"
    );

    // The banner's bearer-token recipe.
    let secret = std::fs::read_to_string(q.dir.path().join("demo-client.secret")).unwrap();
    let body = format!("grant_type=password&login=x&username=demo&password={password}");
    let basic = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        format!("postern-quickstart:{}", secret.trim()),
    );
    let mut idp = client::tcp(format!("127.0.0.1:{}", q.idp).parse().unwrap());
    let r = client::request(
        &mut idp,
        &format!(
            "POST /token HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic {basic}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let tokens: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let id_token = tokens["id_token"].as_str().unwrap();
    let mut s = client::tls(edge, "private.localhost", q.roots());
    let r = client::request(
        &mut s,
        &format!("GET /api/summary.json HTTP/1.1\r\nHost: private.localhost\r\nAuthorization: Bearer {id_token}\r\n\r\n"),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("\"total\""), "{}", r.text());

    // Sign-out ends the session, at the provider too.
    let (_, out) = browser.follow(&format!("{app}.postern/logout"));
    assert!(out.text().contains("You are signed out"), "{}", out.text());
    let r = browser.get(&app);
    assert_eq!(r.status, 302, "signed out: back to the provider");
}

/// The demo provider lives only inside `postern quickstart`: `postern
/// edge` run from the quickstart's own configuration serves nothing on the
/// provider's port, and the signed-in app says its provider cannot be
/// reached.
#[test]
fn postern_edge_never_serves_the_demo_provider() {
    let q = Quickstart::start();
    let (https, http, idp) = (q.https, q.http, q.idp);
    let roots = q.roots();
    let dir = q.stop();
    let config = dir.path().join("edge.toml");
    let edge = postern_e2e::Edge::start_with(
        dir,
        &config,
        format!("127.0.0.1:{https}").parse().unwrap(),
        format!("127.0.0.1:{http}").parse().unwrap(),
    );
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", idp)).is_err(),
        "nothing listens on the demo provider's port"
    );
    let mut s = client::tls(edge.https, "private.localhost", roots);
    let r = client::request(
        &mut s,
        "GET / HTTP/1.1\r\nHost: private.localhost\r\nAccept: text/html\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("cannot be reached"), "{}", r.text());
}

/// A second quickstart on the same state says so and changes nothing;
/// `--reset` starts afresh once the first has stopped.
#[test]
fn a_second_quickstart_changes_nothing_and_reset_starts_afresh() {
    let q = Quickstart::start();
    let cert = std::fs::read(q.dir.path().join("localhost.pem")).unwrap();
    let config = std::fs::read(q.dir.path().join("edge.toml")).unwrap();
    let second = Command::new(postern_e2e::postern_bin())
        .arg("quickstart")
        .arg("--state-dir")
        .arg(q.dir.path())
        .args(["--https-port", &free_port().to_string()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success());
    assert!(
        err.contains("already running") && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(q.dir.path().join("localhost.pem")).unwrap(),
        cert
    );
    assert_eq!(
        std::fs::read(q.dir.path().join("edge.toml")).unwrap(),
        config
    );
    // The quickstart still serves.
    let mut s = client::tls(
        format!("127.0.0.1:{}", q.https).parse().unwrap(),
        "localhost",
        q.roots(),
    );
    assert_eq!(get(&mut s, "localhost", "/").status, 200);
    // `postern status` finds it by its state directory alone.
    let status = Command::new(postern_e2e::postern_bin())
        .arg("status")
        .arg("--state-dir")
        .arg(q.dir.path())
        .env_remove("POSTERN_ADMIN")
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(out.contains("1 registered, 1 active"), "{out}");

    let dir = q.stop();
    std::fs::write(dir.path().join("marker"), b"left by the first run").unwrap();
    // A port held by this test: the reset happens, then the start fails.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let reset = Command::new(postern_e2e::postern_bin())
        .arg("quickstart")
        .arg("--reset")
        .arg("--state-dir")
        .arg(dir.path())
        .args([
            "--https-port",
            &busy.local_addr().unwrap().port().to_string(),
        ])
        .args(["--http-port", &free_port().to_string()])
        .args(["--app-port", &free_port().to_string()])
        .args(["--private-app-port", &free_port().to_string()])
        .args(["--idp-port", &free_port().to_string()])
        .args(["--admin-port", &free_port().to_string()])
        .args(["--tunnel-port", &free_port().to_string()])
        .env("POSTERN_LOG", "warn")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&reset.stderr);
    assert!(!reset.status.success(), "{err}");
    assert!(
        err.contains("removed the earlier quickstart state"),
        "{err}"
    );
    assert!(
        !dir.path().join("marker").exists(),
        "--reset removed the old state"
    );
}
