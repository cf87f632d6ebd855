//! Connectors as real processes: registration with a token from the
//! edge's admin API, start, SIGTERM, SIGKILL.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{postern_bin, Edge, TempDir};

pub struct Connector {
    pub child: Option<Child>,
    pub dir: TempDir,
    pub id: String,
    pub log: PathBuf,
    config: Option<String>,
    /// Command the process runs under (e.g. `ip netns exec NAME`).
    prefix: Vec<String>,
}

/// `postern connector register`; (exit ok, stdout + stderr).
pub fn register(tunnel: SocketAddr, token: &str, state_dir: &std::path::Path) -> (bool, String) {
    let out = Command::new(postern_bin())
        .args(["connector", "register", "--edge"])
        .arg(tunnel.to_string())
        .args(["--token", token, "--state-dir"])
        .arg(state_dir)
        .output()
        .expect("run postern connector register");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

impl Edge {
    /// A fresh enrollment token for `group` from the admin API.
    pub fn enrollment_token(&self, group: &str) -> String {
        let (status, v) = self.admin(
            "POST",
            "/v1/enrollment-tokens",
            Some(&format!("{{\"group\":\"{group}\"}}")),
        );
        assert_eq!(status, 201, "token: {v}");
        v["token"].as_str().expect("token in reply").to_string()
    }

    /// The tunnel listener's address from the configuration.
    pub fn tunnel(&self) -> SocketAddr {
        std::fs::read_to_string(self.dir.path().join("edge.toml"))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("tunnel_address = \""))
            .and_then(|v| v.trim_end_matches('"').parse().ok())
            .expect("edge has a tunnel_address")
    }

    /// Open tunnels of connector `id` as the admin API reports them.
    pub fn tunnels_of(&self, id: &str) -> u64 {
        let (_, v) = self.admin("GET", "/v1/connectors", None);
        v["connectors"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["id"] == id)
            .and_then(|c| c["tunnels"].as_u64())
            .unwrap_or(0)
    }

    /// Waits until connector `id` holds at least `n` tunnels.
    pub fn wait_tunnels(&self, id: &str, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.tunnels_of(id) < n {
            assert!(
                Instant::now() < deadline,
                "connector {id} has {} tunnels, want {n}",
                self.tunnels_of(id)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Edge {
    /// Waits until every edge worker holds a tunnel of connector `id`.
    pub fn wait_every_worker(&self, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let (_, v) = self.admin("GET", "/v1/connectors", None);
            let by_worker: Vec<u64> = v["connectors"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["id"] == id)
                .and_then(|c| c["tunnels_by_worker"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(serde_json::Value::as_u64)
                .collect();
            if !by_worker.is_empty() && by_worker.iter().all(|n| *n > 0) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "connector {id} tunnels per worker: {by_worker:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Connector {
    /// Registers a new connector for `group` and starts it; returns once
    /// it holds `tunnels` tunnels. `config` is the `[connector]` table body.
    pub fn start(edge: &Edge, group: &str, config: &str, tunnels: u64) -> Connector {
        Connector::start_under(edge, group, config, tunnels, &[])
    }

    /// Like [`Connector::start`], the process started under `prefix` (a
    /// command and its arguments, such as `ip netns exec NAME`).
    pub fn start_under(
        edge: &Edge,
        group: &str,
        config: &str,
        tunnels: u64,
        prefix: &[&str],
    ) -> Connector {
        let dir = TempDir::new("connector");
        let token = edge.enrollment_token(group);
        let (ok, text) = register(edge.tunnel(), &token, dir.path());
        assert!(ok, "register failed: {text}");
        let id: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("connector.json")).unwrap(),
        )
        .unwrap();
        let mut c = Connector {
            child: None,
            id: id["id"].as_str().unwrap().to_string(),
            log: dir.path().join("connector.log"),
            dir,
            config: (!config.is_empty()).then(|| config.to_string()),
            prefix: prefix.iter().map(|s| s.to_string()).collect(),
        };
        c.spawn();
        let deadline = Instant::now() + Duration::from_secs(20);
        while edge.tunnels_of(&c.id) < tunnels {
            assert!(
                Instant::now() < deadline,
                "connector {} has {} tunnels, want {tunnels}; its log:\n{}",
                c.id,
                edge.tunnels_of(&c.id),
                c.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        c
    }

    /// Starts the process (again) on the same state directory.
    pub fn spawn(&mut self) {
        let mut cmd = match self.prefix.split_first() {
            None => Command::new(postern_bin()),
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(postern_bin());
                c
            }
        };
        cmd.args(["connector", "--state-dir"]).arg(self.dir.path());
        if let Some(cfg) = &self.config {
            let path = self.dir.path().join("connector.toml");
            std::fs::write(&path, format!("[connector]\n{cfg}\n")).unwrap();
            cmd.arg("--config").arg(path);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = cmd
            .env(
                "POSTERN_LOG",
                std::env::var("TEST_POSTERN_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start connector");
        self.child = Some(child);
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM; waits for the drain to finish (at most `limit`).
    pub fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        self.kill();
    }
}
