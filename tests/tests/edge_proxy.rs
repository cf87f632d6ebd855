//! A connector behind a corporate outbound proxy: it reaches the edge
//! only through a real HTTP proxy (tinyproxy, Debian's package) that
//! wants a user and password and allows CONNECT to the edge's tunnel port
//! alone. Registration, the tunnels and the requests they carry all go
//! through it; a wrong password is refused with an error that says so.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use postern_e2e::backend::{Backend, Reply};
use postern_e2e::client::get;
use postern_e2e::{free_port, passthrough_app, postern_bin, EdgeBuilder, TempDir};

struct Proxy {
    child: Child,
    port: u16,
    log: std::path::PathBuf,
    _dir: TempDir,
}

impl Proxy {
    /// tinyproxy on loopback: user `svc`, password `pa-ss.1`, CONNECT to
    /// `allowed_port` only.
    fn start(allowed_port: u16) -> Proxy {
        let dir = TempDir::new("tinyproxy");
        let port = free_port();
        let log = dir.path().join("tinyproxy.log");
        let conf = dir.path().join("tinyproxy.conf");
        std::fs::write(
            &conf,
            format!(
                "Port {port}\nListen 127.0.0.1\nTimeout 60\nLogFile \"{}\"\nLogLevel Info\nMaxClients 64\nAllow 127.0.0.1\nBasicAuth svc pa-ss.1\nConnectPort {allowed_port}\n",
                log.display()
            ),
        )
        .unwrap();
        let child = Command::new("tinyproxy")
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tinyproxy runs (Debian package tinyproxy)");
        postern_e2e::wait_listening(format!("127.0.0.1:{port}").parse().unwrap());
        Proxy {
            child,
            port,
            log,
            _dir: dir,
        }
    }

    fn url(&self, password: &str) -> String {
        format!("http://svc:{password}@127.0.0.1:{}", self.port)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_connector_reaches_the_edge_only_through_an_authenticating_proxy() {
    let backend = Backend::start(|_| Reply::ok("inside"));
    let b = EdgeBuilder::new().tunnel().app(&passthrough_app(
        "app",
        "https://app.example.com/",
        backend.addr,
        "",
    ));
    let roots = b.pki.root_store();
    let edge = b.start();
    let tunnel = edge.tunnel();
    let proxy = Proxy::start(tunnel.port());
    // Percent-encoded, as a URL may carry it.
    let good = proxy.url("pa%2Dss.1");

    // A wrong password: registration fails, and says why.
    let state = TempDir::new("proxied-connector");
    let token = edge.enrollment_token("default");
    let register = |proxy_url: &str| {
        Command::new(postern_bin())
            .args(["connector", "register", "--edge", &tunnel.to_string()])
            .args(["--token", &token, "--state-dir"])
            .arg(state.path())
            .env("https_proxy", proxy_url)
            .output()
            .unwrap()
    };
    let refused = register(&proxy.url("wrong"));
    let text = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success(),
        "registered with a wrong password"
    );
    assert!(
        text.contains("wants credentials") && text.contains("were refused"),
        "{text}"
    );

    // The right one, from the environment for registration and from
    // the configuration file for the tunnels.
    let registered = register(&good);
    assert!(
        registered.status.success(),
        "{}",
        String::from_utf8_lossy(&registered.stderr)
    );
    let id: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(state.path().join("connector.json")).unwrap(),
    )
    .unwrap();
    let id = id["id"].as_str().unwrap().to_string();
    let config = state.path().join("connector.toml");
    std::fs::write(
        &config,
        format!("[connector]\ntunnels = 2\nedge_proxy = \"{good}\"\n"),
    )
    .unwrap();
    let log = state.path().join("connector.log");
    let mut connector = Command::new(postern_bin())
        .args(["connector", "--state-dir"])
        .arg(state.path())
        .arg("--config")
        .arg(&config)
        .env_remove("https_proxy")
        .env("POSTERN_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while edge.tunnels_of(&id) < 2 {
        assert!(
            Instant::now() < deadline,
            "no tunnels through the proxy: {}\nproxy: {}",
            std::fs::read_to_string(&log).unwrap_or_default(),
            proxy.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..20 {
        let mut s = postern_e2e::client::tls(edge.https, "app.example.com", roots.clone());
        let r = get(&mut s, "app.example.com", "/");
        assert_eq!((r.status, r.text().as_str()), (200, "inside"));
    }
    let connector_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        connector_log.contains("reaching the edge through an HTTP proxy"),
        "{connector_log}"
    );
    // Registration and both tunnels went through the proxy.
    let proxied = proxy
        .log_text()
        .matches(&format!("CONNECT 127.0.0.1:{}", tunnel.port()))
        .count();
    assert!(
        proxied >= 3,
        "{proxied} CONNECTs seen:\n{}",
        proxy.log_text()
    );
    let _ = connector.kill();
    let _ = connector.wait();
}
