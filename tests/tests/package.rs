//! The Debian package, as a user would use it: `cargo deb` builds
//! `postern_<version>_amd64.deb`; it installs into a minimal Debian root
//! (debootstrap `minbase` with systemd), which boots under
//! `systemd-nspawn`; `systemd-analyze verify` has nothing to say about
//! the units; both units start (`Type=notify`: `systemctl start` returns
//! once the binary said READY), the connector registers from its
//! environment file, and the edge serves an app through it to a client
//! outside the container. `systemctl reload` hands the edge over to a new
//! process (a new main PID) that serves too, and both units stop cleanly.
//!
//! The container shares the host's network, so the backend and the
//! client run here, on loopback. The Debian root is cached between runs
//! (`$XDG_CACHE_HOME/postern/debian-root`, built once from
//! deb.debian.org); each run works on a copy. `POSTERN_DEB` names a
//! package built beforehand (CI builds it once); otherwise the test runs
//! `cargo deb`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use postern_e2e::backend::{Backend, Reply};
use postern_e2e::{free_port, TempDir};

/// Runs `cmd`; panics with its output unless it succeeds; returns stdout.
fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The package: `POSTERN_DEB`, or one `cargo deb` builds now.
fn package() -> PathBuf {
    if let Ok(p) = std::env::var("POSTERN_DEB") {
        return PathBuf::from(p);
    }
    let out = run(Command::new("cargo")
        .args(["deb", "-p", "postern-dataplane", "--locked"])
        .current_dir(workspace()));
    let path = out
        .lines()
        .rev()
        .find(|l| l.trim_end().ends_with(".deb"))
        .expect("cargo deb names the package it wrote");
    PathBuf::from(path.trim())
}

/// A minimal Debian root with systemd (and man-db, so the units' man
/// page references are checked too), built once and cached.
fn debian_root() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cache"))
        .join("postern");
    // Named after what it holds: a different list builds a new root.
    let root = cache.join("debian-root-systemd-dbus-mandb-procps");
    if root.join(".postern-complete").exists() {
        return root;
    }
    std::fs::create_dir_all(&cache).unwrap();
    let building = cache.join("debian-root.building");
    let _ = std::fs::remove_dir_all(cache.join("debian-root"));
    let _ = std::fs::remove_dir_all(&building);
    run(Command::new("debootstrap")
        .args([
            "--variant=minbase",
            "--include=systemd,systemd-sysv,dbus,man-db,procps",
            "bookworm",
        ])
        .arg(&building)
        .arg("http://deb.debian.org/debian"));
    std::fs::write(building.join(".postern-complete"), b"").unwrap();
    let _ = std::fs::remove_dir_all(&root);
    std::fs::rename(&building, &root).unwrap();
    root
}

/// A booted container: its `systemd-nspawn` process and its init.
struct Container {
    nspawn: Child,
    init: u32,
    root: PathBuf,
    console: PathBuf,
}

impl Container {
    fn boot(root: &Path, console: &Path) -> Container {
        let nspawn = Command::new("systemd-nspawn")
            .args(["--register=no", "--keep-unit", "-q", "-b", "-D"])
            .arg(root)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(console).unwrap())
            .stderr(Stdio::from(
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(console)
                    .unwrap(),
            ))
            .spawn()
            .expect("systemd-nspawn runs");
        let mut c = Container {
            init: 0,
            nspawn,
            root: root.to_path_buf(),
            console: console.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while c.init == 0 {
            assert!(
                Instant::now() < deadline,
                "the container's init did not start:\n{}",
                c.console_text()
            );
            if let Ok(Some(s)) = c.nspawn.try_wait() {
                panic!("systemd-nspawn ended ({s}):\n{}", c.console_text());
            }
            c.init = descendant_named(c.nspawn.id(), "systemd").unwrap_or(0);
            std::thread::sleep(Duration::from_millis(50));
        }
        // Booted far enough to start units (a minimal root may end
        // "degraded": some unit that needs hardware failed).
        let mut out = String::new();
        while Instant::now() < deadline {
            out = c.sh_unchecked("systemctl is-system-running --wait");
            // Until systemd has its socket, systemctl cannot reach it.
            if !out.contains("Failed to connect to bus") {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        assert!(
            out.contains("running") || out.contains("degraded"),
            "the container did not boot: {out}\n{}",
            c.console_text()
        );
        c
    }

    fn console_text(&self) -> String {
        std::fs::read_to_string(&self.console).unwrap_or_default()
    }

    fn command(&self, script: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.args([
            "-t",
            &self.init.to_string(),
            "-m",
            "-u",
            "-i",
            "-p",
            "-r",
            "-w",
        ])
        .args(["/bin/sh", "-c", script])
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env_remove("NOTIFY_SOCKET");
        cmd
    }

    /// Runs `script` in the container; panics unless it succeeds.
    fn sh(&self, script: &str) -> String {
        run(&mut self.command(script))
    }

    /// Runs `script` in the container: its stdout and stderr, whatever
    /// its status.
    fn sh_unchecked(&self, script: &str) -> String {
        let out = self.command(script).output().expect("nsenter runs");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    }

    /// `systemctl start unit`; panics with the unit's journal if it fails.
    fn start(&self, unit: &str) {
        let out = self.sh_unchecked(&format!(
            "systemctl start {unit} && echo started || journalctl --no-pager -n 60 -u {unit}"
        ));
        assert!(
            out.trim_end().ends_with("started"),
            "{unit} did not start:\n{out}"
        );
    }

    fn write(&self, path: &str, text: &str) {
        let p = self.root.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.command("systemctl poweroff").output();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.nspawn.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }
}

/// The first process named `name` below `pid` (breadth first).
fn descendant_named(pid: u32, name: &str) -> Option<u32> {
    let mut queue = vec![pid];
    while let Some(p) = queue.pop() {
        let comm = std::fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
        if p != pid && comm.trim() == name {
            return Some(p);
        }
        for task in std::fs::read_dir(format!("/proc/{p}/task")).ok()?.flatten() {
            let children =
                std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            queue.extend(
                children
                    .split_whitespace()
                    .filter_map(|c| c.parse::<u32>().ok()),
            );
        }
    }
    None
}

/// `GET /` with `Host: host` on `addr`: (status, body), or the error.
fn get(addr: std::net::SocketAddr, host: &str) -> Result<(u16, String), String> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no status in {text:?}"))?;
    let body = text.split_once("\r\n\r\n").map_or("", |p| p.1).to_string();
    Ok((status, body))
}

/// Waits (30 s at most) until `app.example.com` answers through the
/// edge with the backend's words.
fn served(edge: std::net::SocketAddr, c: &Container) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match get(edge, "app.example.com") {
            Ok((200, body)) if body == "served from the host" => return,
            other => assert!(
                Instant::now() < deadline,
                "not served through the connector: {other:?}\n{}",
                c.sh_unchecked("journalctl --no-pager -n 60 -u postern-edge -u postern-connector")
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn the_debian_package_installs_and_both_units_serve_through_a_connector() {
    let deb = package();
    let name = deb.file_name().unwrap().to_string_lossy().into_owned();
    let version = env!("CARGO_PKG_VERSION");
    assert_eq!(name, format!("postern_{version}_amd64.deb"));
    let contents = run(Command::new("dpkg-deb").arg("--contents").arg(&deb));
    for path in [
        "./usr/bin/postern",
        "./usr/lib/systemd/system/postern-edge.service",
        "./usr/lib/systemd/system/postern-connector.service",
        "./etc/postern/edge.toml",
        "./etc/postern/connector.toml",
        "./usr/share/man/man1/postern.1",
        "./usr/share/man/man1/postern-edge.1",
        "./usr/share/man/man1/postern-connector.1",
        "./usr/share/bash-completion/completions/postern",
        "./usr/share/zsh/vendor-completions/_postern",
        "./usr/share/fish/vendor_completions.d/postern.fish",
        "./usr/share/doc/postern/configuration.md",
    ] {
        assert!(
            contents.lines().any(|l| l.ends_with(path)),
            "{path} is not in the package:\n{contents}"
        );
    }

    let base = debian_root();
    let work = TempDir::new("package");
    let root = work.path().join("root");
    run(Command::new("cp").arg("-a").arg(&base).arg(&root));
    // (/tmp is a fresh tmpfs inside the container.)
    std::fs::copy(&deb, root.join("var/tmp/postern.deb")).unwrap();
    run(Command::new("systemd-nspawn")
        .args(["--register=no", "--keep-unit", "-q", "-D"])
        .arg(&root)
        .args(["dpkg", "-i", "/var/tmp/postern.deb"]));

    let backend = Backend::start(|_| Reply::ok("served from the host"));
    let (http, admin, tunnel) = (free_port(), free_port(), free_port());
    let container = Container::boot(&root, &work.path().join("console.log"));

    // The units as shipped: systemd-analyze has nothing to say.
    let verify = container.sh_unchecked(
        "systemd-analyze verify /usr/lib/systemd/system/postern-edge.service /usr/lib/systemd/system/postern-connector.service",
    );
    assert!(verify.trim().is_empty(), "systemd-analyze verify: {verify}");

    container.write(
        "/etc/postern/edge.toml",
        &format!(
            r#"[edge]
state_dir = "/var/lib/postern"
admin_address = "127.0.0.1:{admin}"
tunnel_address = "127.0.0.1:{tunnel}"
drain_timeout = 5
access_log = "journald"

[[listener]]
address = "127.0.0.1:{http}"
scheme = "http"
public_port = 80

[[app]]
name = "app"
external_url = "http://app.example.com/"
internal_url = "http://{}/"
preauth = "passthrough"
"#,
            backend.addr
        ),
    );
    container.start("postern-edge");
    assert_eq!(
        container.sh("systemctl is-active postern-edge").trim(),
        "active"
    );
    let token = container.sh(&format!(
        "postern tokens create --group default --admin 127.0.0.1:{admin} --state-dir /var/lib/postern"
    ));
    container.write(
        "/etc/postern/connector.env",
        &format!(
            "POSTERN_EDGE=127.0.0.1:{tunnel}\nPOSTERN_ENROLLMENT_TOKEN={}\n",
            token.trim()
        ),
    );
    container.start("postern-connector");
    let edge: std::net::SocketAddr = format!("127.0.0.1:{http}").parse().unwrap();
    served(edge, &container);
    // Each request is a journal entry with native fields.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let entries = container
            .sh_unchecked("journalctl --no-pager -o verbose POSTERN_APP=app POSTERN_STATUS=200");
        if entries.contains("POSTERN_REQUEST_ID=") && entries.contains("POSTERN_PATH=/") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no access-log entry in the journal: {entries}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // A reload hands the edge to a new process, which serves too.
    let pid = |c: &Container| c.sh("systemctl show -p MainPID --value postern-edge");
    let before = pid(&container);
    container.sh("systemctl reload postern-edge");
    let deadline = Instant::now() + Duration::from_secs(20);
    while pid(&container) == before {
        assert!(
            Instant::now() < deadline,
            "the reload did not hand over:\n{}",
            container.sh_unchecked("journalctl --no-pager -n 60 -u postern-edge")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    served(edge, &container);
    assert_eq!(
        container.sh("systemctl is-active postern-edge").trim(),
        "active"
    );

    // Both stop cleanly: no failed unit, and no error in either log
    // (their lines carry journal priorities, so `-p err` finds errors).
    container.sh("systemctl stop postern-connector && systemctl stop postern-edge");
    let states = container.sh_unchecked("systemctl is-failed postern-connector postern-edge");
    assert!(!states.contains("failed"), "{states}");
    let errors = container.sh_unchecked(
        "journalctl --no-pager -q -p err -u postern-edge -u postern-connector -o cat",
    );
    assert!(errors.trim().is_empty(), "errors logged: {errors}");
    let warnings = container.sh_unchecked(
        "journalctl --no-pager -q -p warning -u postern-edge -u postern-connector -o cat",
    );
    eprintln!("warnings logged (allowed): {warnings}");
}
