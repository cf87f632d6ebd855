//! Support for Postern's end-to-end tests: the real `postern` binary started
//! as a process, a test PKI, small real backends and clients on loopback.
//!
//! Backends and clients here are deliberately plain blocking code on
//! threads: they are independent of the data plane under test, so a bug
//! there cannot hide behind the same bug here.

#![forbid(unsafe_code)]

pub mod backend;
pub mod client;
pub mod connector;
pub mod h2client;
pub mod idp;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The `postern` binary of this build profile, built on first use.
pub fn postern_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(p) = std::env::var_os("POSTERN_BIN") {
            return PathBuf::from(p);
        }
        workspace_bin("postern-dataplane", "postern")
    })
    .clone()
}

/// The `postern-load` generator of this build profile, built on first use.
pub fn load_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| workspace_bin("postern-perf", "postern-load"))
        .clone()
}

/// Builds `bin` of `package` in this test's build profile and returns its
/// path.
fn workspace_bin(package: &str, bin: &str) -> PathBuf {
    // target/<profile>/deps/<test> → target/<profile>
    let exe = std::env::current_exe().expect("current exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf();
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev".to_string(),
        Some(other) => other.to_string(),
        None => "dev".to_string(),
    };
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut cmd = Command::new(env!("CARGO"));
    // Cargo sets per-package variables for the test process; build
    // scripts (ring's) track some of them, and inheriting them would
    // make every nested build a full rebuild.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        let per_package = k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_BIN_")
            || matches!(
                k.as_str(),
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "OUT_DIR"
            );
        if per_package {
            cmd.env_remove(k);
        }
    }
    let status = cmd
        .args([
            "build",
            "--quiet",
            "--profile",
            &profile,
            "-p",
            package,
            "--bin",
            bin,
        ])
        .current_dir(root)
        .status()
        .expect("run cargo build");
    assert!(status.success(), "building {bin} failed");
    profile_dir.join(bin)
}

/// A port nobody listens on right now, never handed out twice by this
/// process, and outside the kernel's ephemeral range: an edge binds its
/// ports with SO_REUSEPORT, so a port the kernel also gave to another
/// test's listener or client would be silently shared.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_start: u32 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(32768);
    let (low, high) = (10_000u32, ephemeral_start.max(12_000));
    let span = high - low;
    let seed = std::process::id().wrapping_mul(2654435761) % span;
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (low + (seed + n) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port between {low} and {high}");
}

/// A fresh temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("postern-e2e-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A test certificate authority.
pub struct Pki {
    ca: rcgen::Certificate,
    ca_key: rcgen::KeyPair,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

impl Pki {
    pub fn new() -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "Postern Test CA");
        let ca = params.self_signed(&ca_key).unwrap();
        let issuer_key = rcgen::KeyPair::from_pem(&ca_key.serialize_pem()).unwrap();
        let issuer = rcgen::Issuer::new(params, issuer_key);
        Pki { ca, ca_key, issuer }
    }

    pub fn ca_pem(&self) -> String {
        let _ = &self.ca_key;
        self.ca.pem()
    }

    /// Issues a leaf for `names` with common name `cn`: (cert PEM, key PEM).
    pub fn issue(&self, cn: &str, names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        // What a public server certificate looks like: for serving TLS,
        // valid for 90 days (TLS scanners hold leaves to that).
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let epoch = rcgen::date_time_ymd(1970, 1, 1);
        params.not_before = epoch + (now - Duration::from_secs(86_400));
        params.not_after = epoch + (now + Duration::from_secs(89 * 86_400));
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    pub fn root_store(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        roots
    }
}

impl Default for Pki {
    fn default() -> Self {
        Pki::new()
    }
}

/// A running `postern edge`, killed on drop.
pub struct Edge {
    pub child: Child,
    pub https: SocketAddr,
    pub http: SocketAddr,
    pub admin: SocketAddr,
    config: PathBuf,
    pub dir: TempDir,
    pub stderr_log: PathBuf,
}

/// Builder for an edge configuration with one https and one http listener
/// and a certificate for `*.example.com` and `app.example.com`.
pub struct EdgeBuilder {
    pub pki: Pki,
    pub certs: Vec<(String, Vec<&'static str>)>,
    pub apps: String,
    pub edge_section: String,
    /// Other top-level tables (e.g. `[identity_provider]`).
    pub sections: String,
    /// The http listener also takes HTTP/2 with prior knowledge.
    pub h2c: bool,
}

impl EdgeBuilder {
    pub fn new() -> EdgeBuilder {
        EdgeBuilder {
            pki: Pki::new(),
            certs: vec![
                ("wildcard".into(), vec!["*.example.com"]),
                ("exact".into(), vec!["app.example.com"]),
            ],
            apps: String::new(),
            edge_section: String::new(),
            sections: String::new(),
            h2c: false,
        }
    }

    /// The http listener also takes HTTP/2 with prior knowledge.
    pub fn h2c(mut self) -> Self {
        self.h2c = true;
        self
    }

    /// Adds `[[app]]` TOML (without the header line).
    pub fn app(mut self, body: &str) -> Self {
        self.apps.push_str("\n[[app]]\n");
        self.apps.push_str(body);
        self.apps.push('\n');
        self
    }

    /// Relays every app through connectors (a tunnel listener on a free
    /// port).
    pub fn tunnel(self) -> Self {
        let port = free_port();
        self.edge(&format!("tunnel_address = \"127.0.0.1:{port}\""))
    }

    /// Adds top-level TOML tables before the apps.
    pub fn section(mut self, toml: &str) -> Self {
        self.sections.push('\n');
        self.sections.push_str(toml);
        self.sections.push('\n');
        self
    }

    pub fn edge(mut self, extra: &str) -> Self {
        self.edge_section.push_str(extra);
        self.edge_section.push('\n');
        self
    }

    /// Writes the files and the configuration; returns (dir, config path, https, http).
    pub fn write(&self) -> (TempDir, PathBuf, SocketAddr, SocketAddr) {
        let dir = TempDir::new("edge");
        let https: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let mut edge_section = if self.edge_section.contains("workers") {
            self.edge_section.clone()
        } else {
            format!("workers = 2\n{}", self.edge_section)
        };
        if !edge_section.contains("admin_address") {
            edge_section.push_str(&format!("admin_address = \"127.0.0.1:{}\"\n", free_port()));
        }
        let mut cfg = format!(
            "[edge]\n{}\n[[listener]]\naddress = \"{https}\"\nscheme = \"https\"\npublic_port = 443\n\n[[listener]]\naddress = \"{http}\"\nscheme = \"http\"\npublic_port = 80\nh2c = {}\n",
            edge_section, self.h2c
        );
        for (cn, names) in &self.certs {
            let (cert, key) = self.pki.issue(cn, names);
            std::fs::write(dir.path().join(format!("{cn}.pem")), cert).unwrap();
            std::fs::write(dir.path().join(format!("{cn}.key")), key).unwrap();
            cfg.push_str(&format!(
                "\n[[certificate]]\ncert_file = \"{cn}.pem\"\nkey_file = \"{cn}.key\"\n"
            ));
        }
        cfg.push_str(&self.sections);
        cfg.push_str(&self.apps);
        let path = dir.path().join("edge.toml");
        std::fs::write(&path, cfg).unwrap();
        (dir, path, https, http)
    }

    pub fn start(self) -> Edge {
        let (dir, path, https, http) = self.write();
        Edge::start_with(dir, &path, https, http)
    }
}

/// `[[app]]` body for a passthrough app publishing `external` in front of
/// `backend`, with `extra` settings appended.
pub fn passthrough_app(name: &str, external: &str, backend: SocketAddr, extra: &str) -> String {
    format!(
        "name = \"{name}\"\nexternal_url = \"{external}\"\ninternal_url = \"http://{backend}/\"\npreauth = \"passthrough\"\n{extra}"
    )
}

impl EdgeBuilder {
    /// Starts the edge and opens a verified TLS connection with SNI `name`.
    pub fn start_and_connect(
        self,
        name: &str,
    ) -> (
        Edge,
        rustls::StreamOwned<rustls::ClientConnection, TcpStream>,
    ) {
        let roots = self.pki.root_store();
        let edge = self.start();
        let s = client::tls(edge.https, name, roots);
        (edge, s)
    }
}

impl Default for EdgeBuilder {
    fn default() -> Self {
        EdgeBuilder::new()
    }
}

impl Edge {
    pub fn start_with(dir: TempDir, config: &Path, https: SocketAddr, http: SocketAddr) -> Edge {
        Edge::start_with_env(dir, config, https, http, &[])
    }

    /// Like [`Edge::start_with`], with extra environment variables.
    pub fn start_with_env(
        dir: TempDir,
        config: &Path,
        https: SocketAddr,
        http: SocketAddr,
        env: &[(&str, &str)],
    ) -> Edge {
        Edge::launch(dir, config, https, http, env, None)
    }

    /// Like [`Edge::start_with`], under a file-descriptor limit of `nofile`
    /// from the first instruction on (as a unit's `LimitNOFILE` sets it).
    pub fn start_with_nofile(
        dir: TempDir,
        config: &Path,
        https: SocketAddr,
        http: SocketAddr,
        nofile: u64,
    ) -> Edge {
        Edge::launch(dir, config, https, http, &[], Some(nofile))
    }

    fn launch(
        dir: TempDir,
        config: &Path,
        https: SocketAddr,
        http: SocketAddr,
        env: &[(&str, &str)],
        nofile: Option<u64>,
    ) -> Edge {
        let stderr_log = dir.path().join("edge.stderr");
        // prlimit sets the limit and then execs the edge (same pid).
        let mut cmd = match nofile {
            None => Command::new(postern_bin()),
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}"))
                    .arg("--")
                    .arg(postern_bin());
                c
            }
        };
        cmd.args(["edge", "--config"])
            .arg(config)
            .env(
                "POSTERN_LOG",
                std::env::var("TEST_POSTERN_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .envs(env.iter().copied());
        let child = spawn_edge(&mut cmd, &stderr_log);
        let admin = std::fs::read_to_string(config)
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("admin_address = \""))
            .and_then(|v| v.trim_end_matches('"').parse().ok())
            .unwrap_or_else(|| "127.0.0.1:9090".parse().unwrap());
        Edge {
            child,
            https,
            http,
            admin,
            config: config.to_path_buf(),
            dir,
            stderr_log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size of the edge process, in KiB (`VmRSS` or `VmHWM`).
    pub fn memory_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap()
    }

    /// Whether the process is still running (not crashed).
    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Like [`Edge::is_alive`], without reaping: the process exists and is
    /// not a zombie.
    pub fn is_alive_ref(&self) -> bool {
        std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .map(|s| !s.contains(") Z "))
            .unwrap_or(false)
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }

    /// The admin bearer token the edge generated.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("state/admin.token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// Kills the process (SIGKILL) and starts it again on the same files.
    pub fn restart(self) -> Edge {
        self.restart_after("KILL").0
    }

    /// Sends `signal` (a `kill` name: `TERM`, `KILL`), waits (10 s at most)
    /// for the process to end and starts it again on the same files;
    /// returns the new edge, how the old one ended and how long it took.
    pub fn restart_after(
        mut self,
        signal: &str,
    ) -> (Edge, Option<std::process::ExitStatus>, Duration) {
        let sent = Instant::now();
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status();
        let mut ended = None;
        while sent.elapsed() < Duration::from_secs(10) {
            if let Ok(Some(status)) = self.child.try_wait() {
                ended = Some(status);
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let took = sent.elapsed();
        if ended.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let dir = TempDir(std::mem::take(&mut self.dir.0));
        let config = self.config.clone();
        let (https, http, admin) = (self.https, self.http, self.admin);
        std::mem::forget(self);
        // A killed process's io_uring is torn down by the kernel after the
        // process is reaped, and sockets with operations in flight (our
        // listeners' pending accepts) close only then. Until they do, they
        // stay in the SO_REUSEPORT group and take (then reset) new
        // connections, so wait until nothing listens any more.
        let deadline = Instant::now() + Duration::from_secs(10);
        let tunnel = std::fs::read_to_string(&config)
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("tunnel_address = \""))
            .and_then(|v| v.trim_end_matches('"').parse::<SocketAddr>().ok());
        for addr in [https, http, admin].into_iter().chain(tunnel) {
            while TcpStream::connect(addr).is_ok() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        (Edge::start_with(dir, &config, https, http), ended, took)
    }

    /// Calls the admin API: (status, parsed JSON body or Null).
    pub fn admin_call(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        token: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut s = client::tcp(self.admin);
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n");
        if let Some(t) = token {
            req.push_str(&format!("Authorization: Bearer {t}\r\n"));
        }
        let body = body.unwrap_or("");
        req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
        let r = client::request(&mut s, &req);
        let json = serde_json::from_slice(&r.body).unwrap_or(serde_json::Value::Null);
        (r.status, json)
    }

    /// Waits until every worker serves app-table `version` (10 s at most).
    pub fn wait_for_version(&self, version: u64) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (_, h) = self.admin_call("GET", "/healthz", None, None);
            let serving: Vec<u64> = h["workers_serving"]
                .as_array()
                .map(|a| a.iter().filter_map(serde_json::Value::as_u64).collect())
                .unwrap_or_default();
            if !serving.is_empty() && serving.iter().all(|v| *v == version) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "workers serve {serving:?}, want {version}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Calls the admin API with the edge's own token.
    pub fn admin(&self, method: &str, path: &str, body: Option<&str>) -> (u16, serde_json::Value) {
        self.admin_call(method, path, body, Some(&self.admin_token()))
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts an edge process from `cmd` (its stderr to `log`) and waits
/// (30 s at most) until it says it is ready; a thread keeps reading its
/// stdout (and its successors', which inherit it) from then on.
pub fn spawn_edge(cmd: &mut Command, log: &Path) -> Child {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("start postern");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("postern edge ready") {
                let _ = tx.send(());
            }
        }
    });
    if rx.recv_timeout(Duration::from_secs(30)).is_err() {
        let _ = child.kill();
        panic!(
            "edge did not become ready: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
    child
}

/// Waits until `addr` accepts connections.
pub fn wait_listening(addr: SocketAddr) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect(addr).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{addr} is not listening");
}

/// The hop between the edge and an app's backend: scenarios that hold for
/// both run once per hop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    /// The edge dials the internal URL itself.
    Direct,
    /// The edge relays over a tunnel to a connector, which dials it.
    Tunnel,
}

impl Hop {
    pub const BOTH: [Hop; 2] = [Hop::Direct, Hop::Tunnel];
}

/// An edge (and, through a tunnel, its connector) serving `b`'s apps.
pub struct Deployment {
    pub edge: Edge,
    pub connector: Option<connector::Connector>,
    pub roots: rustls::RootCertStore,
}

impl Deployment {
    pub fn start(b: EdgeBuilder, hop: Hop) -> Deployment {
        let b = match hop {
            Hop::Direct => b,
            Hop::Tunnel => b.tunnel(),
        };
        let roots = b.pki.root_store();
        let edge = b.start();
        let connector =
            (hop == Hop::Tunnel).then(|| connector::Connector::start(&edge, "default", "", 2));
        Deployment {
            edge,
            connector,
            roots,
        }
    }

    /// A verified TLS connection to the edge with SNI `name`.
    pub fn connect(&self, name: &str) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
        client::tls(self.edge.https, name, self.roots.clone())
    }
}
