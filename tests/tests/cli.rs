//! `postern apps …` and `postern counters` against a running edge.

use std::process::{Command, Output};

use postern_e2e::backend::Backend;
use postern_e2e::client::{self, get};
use postern_e2e::{postern_bin, Edge, EdgeBuilder};

fn cli(edge: &Edge, args: &[&str]) -> Output {
    Command::new(postern_bin())
        .args(args)
        .arg("--admin")
        .arg(edge.admin.to_string())
        .arg("--state-dir")
        .arg(edge.dir.path().join("state"))
        .env_remove("POSTERN_TOKEN")
        .output()
        .unwrap()
}

fn text(o: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn status_of(edge: &Edge, host: &str) -> u16 {
    let mut s = client::tcp(edge.http);
    get(&mut s, host, "/").status
}

#[test]
fn apps_add_list_disable_enable_remove() {
    let be = Backend::hello();
    let edge = EdgeBuilder::new().start();
    let internal = format!("http://{}/", be.addr);
    let o = cli(
        &edge,
        &[
            "apps",
            "add",
            "--name",
            "cli-app",
            "--external-url",
            "http://cli.example.com/",
            "--internal-url",
            &internal,
            "--preauth",
            "passthrough",
            "--settings",
            r#"{"cookie": {"secure": false}}"#,
        ],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(out.contains("published \"cli-app\""), "{out}");
    assert_eq!(status_of(&edge, "cli.example.com"), 200);

    let (out, _) = text(&cli(&edge, &["apps", "list"]));
    assert!(
        out.starts_with("NAME")
            && out.contains("cli-app")
            && out.contains("http://cli.example.com/"),
        "{out}"
    );
    let (out, _) = text(&cli(&edge, &["apps", "list", "--json"]));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["apps"][0]["name"], "cli-app");

    assert!(cli(&edge, &["apps", "disable", "cli-app"]).status.success());
    std::thread::sleep(std::time::Duration::from_millis(30));
    assert_eq!(status_of(&edge, "cli.example.com"), 503);
    assert!(cli(&edge, &["apps", "enable", "cli-app"]).status.success());
    std::thread::sleep(std::time::Duration::from_millis(30));
    assert_eq!(status_of(&edge, "cli.example.com"), 200);
    let (out, _) = text(&cli(&edge, &["apps", "show", "cli-app"]));
    assert!(
        out.contains("internal_url") && out.contains(&internal),
        "{out}"
    );
    assert!(cli(&edge, &["apps", "remove", "cli-app"]).status.success());
    std::thread::sleep(std::time::Duration::from_millis(30));
    assert_eq!(status_of(&edge, "cli.example.com"), 404);
}

#[test]
fn cli_errors_name_the_field() {
    let edge = EdgeBuilder::new().start();
    let o = cli(
        &edge,
        &[
            "apps",
            "add",
            "--name",
            "bad",
            "--external-url",
            "https://bad.example.com",
            "--internal-url",
            "http://x/",
            "--preauth",
            "passthrough",
        ],
    );
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(
        err.contains("app \"bad\": external_url:") && err.contains("(422)"),
        "{err}"
    );
    let o = Command::new(postern_bin())
        .args([
            "apps",
            "list",
            "--admin",
            &edge.admin.to_string(),
            "--token",
            "wrong",
        ])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(text(&o).1.contains("(401)"));
}

#[test]
fn counters_print_typeperf_csv() {
    let be = Backend::hello();
    let edge = EdgeBuilder::new()
        .app(&format!(
            "name = \"expenses\"\nexternal_url = \"http://expenses.example.com/\"\ninternal_url = \"http://{}/\"\npreauth = \"passthrough\"\ncookie = {{ secure = false }}",
            be.addr
        ))
        .start();
    assert_eq!(status_of(&edge, "expenses.example.com"), 200);
    let o = cli(
        &edge,
        &[
            "counters",
            "--interval",
            "100ms",
            "--count",
            "2",
            "\\Postern Edge(*)\\Requests/sec",
            "\\Postern Edge(_Total)\\Config Version",
        ],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "header and two samples: {out}");
    assert!(lines[0].starts_with("\"(PDH-CSV 4.0)\""), "{out}");
    assert!(
        lines[0].contains("\\Postern Edge(expenses)\\Requests/sec"),
        "{out}"
    );
    assert!(
        lines[0].contains("\\Postern Edge(_Total)\\Config Version"),
        "{out}"
    );
    assert!(
        !lines[0].contains("Bytes Sent"),
        "only the asked-for counters"
    );
    let header: Vec<&str> = lines[0].split(',').collect();
    let version_col = header
        .iter()
        .position(|h| h.contains("Config Version"))
        .unwrap();
    for row in &lines[1..] {
        let cells: Vec<&str> = row.split(',').collect();
        assert_eq!(cells.len(), 3, "{row}");
        assert_eq!(cells[version_col], "\"1.000\"", "config version: {row}");
    }
}

#[test]
fn enrollment_tokens_are_single_use_secrets() {
    let edge = EdgeBuilder::new().start();
    let o = cli(
        &edge,
        &["tokens", "create", "--group", "emea", "--ttl", "2h"],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let token = out.trim().to_string();
    assert!(token.starts_with("pet_") && token.len() > 70, "{token}");
    assert!(err.contains("group \"emea\""), "{err}");
    let stored =
        std::fs::read_to_string(edge.dir.path().join("state/enrollment-tokens.json")).unwrap();
    assert!(!stored.contains(&token), "only a hash is stored");
    let (out, _) = text(&cli(&edge, &["tokens", "list"]));
    assert!(out.contains("emea") && out.contains("active"), "{out}");
    assert!(!out.contains(&token));
    let (_, groups) = edge.admin("GET", "/v1/connector-groups", None);
    assert_eq!(groups["groups"][0]["name"], "emea");
    let id = token.split('_').nth(1).unwrap();
    assert!(cli(&edge, &["tokens", "revoke", id]).status.success());
    let (out, _) = text(&cli(&edge, &["tokens", "list"]));
    assert!(!out.contains("emea"), "{out}");
    let o = cli(&edge, &["tokens", "create", "--ttl", "9d"]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("ttl_seconds"), "{}", text(&o).1);
}

#[test]
fn connectors_are_listed_from_the_registry() {
    let edge = EdgeBuilder::new().start();
    let (out, err) = text(&cli(&edge, &["connectors", "list"]));
    assert!(
        out.starts_with("ID") && out.lines().count() == 1,
        "no connector registered yet: {out}{err}"
    );
    // Registry entries (as registration writes them) show with their
    // state; the edge reads the registry at start and keeps it in memory.
    drop(edge);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let registry = serde_json::json!({ "connectors": [
        { "id": "c1", "host_name": "gw1.corp", "version": "0.1.0", "group": "emea", "registered_at": now - 1000, "last_seen": now - 5 },
        { "id": "c2", "host_name": "gw2.corp", "version": "0.1.0", "group": "emea", "registered_at": now - 1000, "last_seen": now - 600 },
        { "id": "c3", "host_name": "gw3.corp", "version": "0.1.0", "group": "emea", "registered_at": now - 9e6 as u64, "last_seen": now - 11 * 86400 }
    ]});
    let (dir, config, https, http) = EdgeBuilder::new().write();
    std::fs::create_dir_all(dir.path().join("state")).unwrap();
    std::fs::write(
        dir.path().join("state/connectors.json"),
        registry.to_string(),
    )
    .unwrap();
    let edge = Edge::start_with(dir, &config, https, http);
    let (out, _) = text(&cli(&edge, &["connectors", "list"]));
    assert!(out.contains("gw1.corp") && out.contains("active"), "{out}");
    assert!(
        out.contains("gw2.corp") && out.contains("inactive"),
        "{out}"
    );
    assert!(!out.contains("gw3.corp"), "removed after 10 days: {out}");
}

/// The command line without --admin: the state directory alone finds
/// the edge (the admin address it recorded in edge.json).
fn cli_by_state(edge: &Edge, args: &[&str]) -> Output {
    Command::new(postern_bin())
        .args(args)
        .arg("--state-dir")
        .arg(edge.dir.path().join("state"))
        .env_remove("POSTERN_TOKEN")
        .env_remove("POSTERN_ADMIN")
        .output()
        .unwrap()
}

#[test]
fn status_apps_set_and_tables_that_fit_find_the_edge_by_its_state() {
    let be = Backend::hello();
    let edge = EdgeBuilder::new()
        .app(&format!(
            "name = \"expenses\"\nexternal_url = \"http://expenses.example.com/\"\ninternal_url = \"http://{}/\"\npreauth = \"passthrough\"",
            be.addr
        ))
        .start();
    assert_eq!(status_of(&edge, "expenses.example.com"), 200);

    let o = cli_by_state(&edge, &["status"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    for want in [
        format!("postern {}", env!("CARGO_PKG_VERSION")),
        "listeners".into(),
        format!("http://{}", edge.http),
        "1 published, 1 enabled".into(),
        "1 served, 0 failed".into(),
    ] {
        assert!(out.contains(&want), "status lacks {want:?}:\n{out}");
    }

    // One setting changed, nested ones too; the rest kept.
    let o = cli_by_state(
        &edge,
        &[
            "apps",
            "set",
            "expenses",
            "backend_timeout=long",
            "hsts=true",
            "cookie.persistent=true",
        ],
    );
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    let (_, app) = edge.admin("GET", "/v1/apps/expenses", None);
    assert_eq!(app["app"]["backend_timeout"], "long", "{app}");
    assert_eq!(app["app"]["hsts"], true, "{app}");
    assert_eq!(app["app"]["cookie"]["persistent"], true, "{app}");
    assert_eq!(app["app"]["preauth"], "passthrough", "{app}");
    // A bad value is refused by the edge, with the field named.
    let o = cli_by_state(&edge, &["apps", "set", "expenses", "backend_timeout=9999"]);
    let (_, err) = text(&o);
    assert!(!o.status.success());
    assert!(err.contains("backend_timeout"), "{err}");
    // Back to the default.
    let o = cli_by_state(&edge, &["apps", "set", "expenses", "hsts=null"]);
    assert!(o.status.success());
    let (_, app) = edge.admin("GET", "/v1/apps/expenses", None);
    assert!(app["app"].get("hsts").is_none(), "{app}");

    // Tables fit their widest cell; expiry is a date.
    let o = cli_by_state(
        &edge,
        &["tokens", "create", "--group", "a-rather-long-group-name"],
    );
    assert!(o.status.success(), "{}", text(&o).1);
    let (out, _) = text(&cli_by_state(&edge, &["tokens", "list"]));
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines.len() >= 2, "{out}");
    let at = lines[0].find("STATE").unwrap();
    assert_eq!(
        &lines[1][at..at + "active".len()],
        "active",
        "columns line up:\n{out}"
    );
    assert!(
        lines[1].contains(" UTC (in 59m)") || lines[1].contains(" UTC (in 1h"),
        "{out}"
    );
    let (out, _) = text(&cli_by_state(&edge, &["apps", "list"]));
    let lines: Vec<&str> = out.lines().collect();
    let at = lines[0].find("ENABLED").unwrap();
    assert_eq!(&lines[1][at..at + 3], "yes", "columns line up:\n{out}");

    // A closed pipe ends the command quietly.
    let mut child = Command::new(postern_bin())
        .args(["counters", "--interval", "50ms", "--count", "200"])
        .arg("--state-dir")
        .arg(edge.dir.path().join("state"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Read;
        let mut first = [0u8; 16];
        child
            .stdout
            .as_mut()
            .unwrap()
            .read_exact(&mut first)
            .unwrap();
    }
    drop(child.stdout.take());
    let o = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains("panicked"), "{err}");
}
