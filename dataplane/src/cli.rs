//! Operator commands that talk to a running edge's admin API:
//! `postern status`, `apps …`, `connectors …`, `tokens …` and `counters`.
//!
//! The state directory comes from `--state-dir`, else `POSTERN_STATE_DIR`,
//! else `/var/lib/postern` (the packaged edge's), else a running
//! quickstart's; the admin address and token from flags, then the
//! environment (`POSTERN_ADMIN`, `POSTERN_TOKEN`), then that directory
//! (the token file and `edge.json` the edge wrote). Output is a table
//! sized to its contents by default and the API's JSON with `--json`;
//! `counters` prints typeperf-style CSV rows so an operator used to
//! Perfmon reads them without a new vocabulary.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};

use crate::args::{AppsCommand, ConnectorsCommand, Target, TokensCommand};

/// `90s`, `30m`, `1h`, `2d` → seconds.
fn parse_ttl(s: &str) -> Result<u64, String> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration such as 30m, 1h or 2d"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (use s, m, h or d)")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{s}` is too long"))
}

pub fn tokens(t: &Target, cmd: TokensCommand) -> ExitCode {
    let result = match cmd {
        TokensCommand::Create { group, ttl } => {
            let ttl = match parse_ttl(&ttl) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!("postern: --ttl {e}");
                    return ExitCode::from(2);
                }
            };
            let body = json!({ "group": group, "ttl_seconds": ttl });
            run_call(t, "POST", "/v1/enrollment-tokens", Some(&body)).map(|v| {
                if t.json {
                    println!("{v:#}");
                } else {
                    println!("{}", v["token"].as_str().unwrap_or(""));
                    eprintln!(
                        "single-use token {} for group \"{}\", valid for {ttl} s; it is shown only now\n\
                         on the connector: postern connector register --edge EDGE_HOST:TUNNEL_PORT --token <the token above> --state-dir DIR",
                        v["id"].as_str().unwrap_or(""),
                        v["group"].as_str().unwrap_or("")
                    );
                }
            })
        }
        TokensCommand::List => run_call(t, "GET", "/v1/enrollment-tokens", None).map(|v| {
            if t.json {
                println!("{v:#}");
                return;
            }
            let rows: Vec<Vec<String>> = v["tokens"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[])
                .iter()
                .map(|tok| {
                    vec![
                        text(&tok["id"]),
                        text(&tok["group"]),
                        text(&tok["state"]),
                        when(tok["expires_at"].as_u64()),
                    ]
                })
                .collect();
            table(&["ID", "GROUP", "STATE", "EXPIRES"], &rows);
        }),
        TokensCommand::Revoke { id } => {
            run_call(t, "DELETE", &format!("/v1/enrollment-tokens/{id}"), None).map(|_| {
                if !t.json {
                    println!("revoked {id}");
                }
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

pub fn connectors(t: &Target, cmd: ConnectorsCommand) -> ExitCode {
    if let ConnectorsCommand::Revoke { id } = &cmd {
        return match run_call(t, "POST", &format!("/v1/connectors/{id}/revoke"), None) {
            Ok(v) if t.json => {
                println!("{v:#}");
                ExitCode::SUCCESS
            }
            Ok(_) => {
                println!("connector {id} revoked; its tunnels are closed");
                ExitCode::SUCCESS
            }
            Err(code) => code,
        };
    }
    match run_call(t, "GET", "/v1/connectors", None) {
        Ok(v) if t.json => {
            println!("{v:#}");
            ExitCode::SUCCESS
        }
        Ok(v) => {
            let rows: Vec<Vec<String>> = v["connectors"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or(&[])
                .iter()
                .map(|c| {
                    vec![
                        text(&c["id"]),
                        text(&c["host_name"]),
                        text(&c["group"]),
                        text(&c["state"]),
                        text(&c["tunnels"]),
                        text(&c["version"]),
                        when(c["last_seen"].as_u64()),
                    ]
                })
                .collect();
            table(
                &[
                    "ID",
                    "HOST",
                    "GROUP",
                    "STATE",
                    "TUNNELS",
                    "VERSION",
                    "LAST SEEN",
                ],
                &rows,
            );
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

/// Where a packaged edge keeps its state.
const SYSTEM_STATE_DIR: &str = "/var/lib/postern";

impl Target {
    /// The edge's state directory: the flag (or `POSTERN_STATE_DIR`),
    /// else `/var/lib/postern` when it holds an admin token, else the
    /// state of a quickstart running on this machine.
    pub fn state_dir(&self) -> Option<PathBuf> {
        if let Some(d) = &self.state_dir {
            return Some(d.clone());
        }
        let system = PathBuf::from(SYSTEM_STATE_DIR);
        if system.join(crate::admin::TOKEN_FILE).exists() {
            return Some(system);
        }
        let quickstart = crate::quickstart::default_dir();
        crate::handover::running(&quickstart).then_some(quickstart)
    }

    /// The admin address: the flag (or `POSTERN_ADMIN`), else what the
    /// edge recorded in its state directory, else 127.0.0.1:9090.
    fn admin_address(&self, state_dir: Option<&std::path::Path>) -> String {
        if let Some(a) = &self.admin {
            return a.clone();
        }
        state_dir
            .and_then(|d| std::fs::read_to_string(d.join(crate::EDGE_INFO_FILE)).ok())
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .and_then(|v| v["admin_address"].as_str().map(str::to_string))
            .unwrap_or_else(|| "127.0.0.1:9090".to_string())
    }
}

struct Client {
    addr: String,
    token: String,
}

impl Client {
    fn new(t: &Target) -> Result<Client, String> {
        let dir = t.state_dir();
        let token = match &t.token {
            Some(tok) => tok.clone(),
            None => {
                let dir = dir.as_deref().ok_or(
                    "no admin token: no edge state found (POSTERN_STATE_DIR, /var/lib/postern or a running quickstart); pass --state-dir, or --token (POSTERN_TOKEN)",
                )?;
                let path = dir.join(crate::admin::TOKEN_FILE);
                std::fs::read_to_string(&path)
                    .map_err(|e| {
                        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                            " (it is readable by root only: use sudo)"
                        } else {
                            ""
                        };
                        format!("cannot read the admin token {}: {e}{hint}", path.display())
                    })?
                    .trim()
                    .to_string()
            }
        };
        Ok(Client {
            addr: t.admin_address(dir.as_deref()),
            token,
        })
    }

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value), String> {
        let mut s = TcpStream::connect(&self.addr)
            .map_err(|e| format!("cannot reach the admin API at {}: {e}", self.addr))?;
        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            self.token,
            body.len()
        );
        s.write_all(req.as_bytes()).map_err(|e| e.to_string())?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&resp);
        let (head, body) = text
            .split_once("\r\n\r\n")
            .ok_or("malformed answer from the admin API")?;
        let status: u16 = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or("malformed status from the admin API")?;
        let value = serde_json::from_str(body).unwrap_or(Value::String(body.to_string()));
        Ok((status, value))
    }
}

/// Prints an API error the way the API phrased it.
fn api_error(status: u16, body: &Value) -> ExitCode {
    eprintln!(
        "postern: {} ({status})",
        body["error"].as_str().unwrap_or("request failed")
    );
    if let Some(problems) = body["problems"].as_array() {
        for p in problems {
            eprintln!("  - {}", p.as_str().unwrap_or_default());
        }
    }
    ExitCode::from(1)
}

fn run_call(t: &Target, method: &str, path: &str, body: Option<&Value>) -> Result<Value, ExitCode> {
    let client = Client::new(t).map_err(|e| {
        eprintln!("postern: {e}");
        ExitCode::from(2)
    })?;
    match client.call(method, path, body) {
        Ok((s, v)) if (200..300).contains(&s) => Ok(v),
        Ok((s, v)) => Err(api_error(s, &v)),
        Err(e) => {
            eprintln!("postern: {e}");
            Err(ExitCode::from(1))
        }
    }
}

/// Prints rows under `headers`, each column as wide as its widest cell.
fn table(headers: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// A Unix time for people: `2026-12-02 09:30 UTC (in 45m)`.
fn when(unix: Option<u64>) -> String {
    let Some(t) = unix else {
        return "-".into();
    };
    let now = postern_control::enroll::now();
    let rel = if t >= now {
        format!("in {}", crate::clock::span(t - now))
    } else {
        format!("{} ago", crate::clock::span(now - t))
    };
    format!("{} ({rel})", crate::clock::minutes(t))
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn print_apps_table(apps: &[Value]) {
    let rows: Vec<Vec<String>> = apps
        .iter()
        .map(|a| {
            vec![
                text(&a["name"]),
                text(&a["external_url"]),
                text(&a["internal_url"]),
                if a["enabled"].as_bool().unwrap_or(true) {
                    "yes".into()
                } else {
                    "no".into()
                },
                a["preauth"].as_str().unwrap_or("oidc").to_string(),
            ]
        })
        .collect();
    table(
        &["NAME", "EXTERNAL URL", "INTERNAL URL", "ENABLED", "PREAUTH"],
        &rows,
    );
}

/// `postern status`.
pub fn status(t: &Target) -> ExitCode {
    let v = match run_call(t, "GET", "/v1/status", None) {
        Ok(v) => v,
        Err(code) => return code,
    };
    if t.json {
        println!("{v:#}");
        return ExitCode::SUCCESS;
    }
    let listeners: Vec<String> = v["listeners"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
        .iter()
        .map(|l| format!("{}://{}", text(&l["scheme"]), text(&l["address"])))
        .collect();
    let health = &v["health"];
    let alive = health["workers_alive"].as_array().map_or(0, Vec::len);
    let rows = [
        (
            "edge",
            format!(
                "postern {}, pid {}, up {} (since {})",
                text(&v["version"]),
                text(&v["pid"]),
                crate::clock::span(v["uptime_seconds"].as_u64().unwrap_or(0)),
                crate::clock::minutes(v["started_at"].as_u64().unwrap_or(0)),
            ),
        ),
        (
            "health",
            format!(
                "{}: {alive} worker(s) on {}, app table version {} ({})",
                text(&health["status"]),
                if v["io_uring"].as_bool().unwrap_or(false) {
                    "io_uring"
                } else {
                    "epoll"
                },
                text(&v["app_table_version"]),
                if health["all_workers_current"].as_bool().unwrap_or(false) {
                    "every worker serves it"
                } else {
                    "not every worker serves it yet"
                },
            ),
        ),
        ("listeners", listeners.join(", ")),
        ("tunnels at", text(&v["tunnel_address"])),
        ("admin API", text(&v["admin_address"])),
        ("state", text(&v["state_dir"])),
        (
            "apps",
            format!(
                "{} published, {} enabled",
                text(&v["apps"]["total"]),
                text(&v["apps"]["enabled"])
            ),
        ),
        (
            "connectors",
            format!(
                "{} registered, {} active, {} tunnel(s) open",
                text(&v["connectors"]["registered"]),
                text(&v["connectors"]["active"]),
                text(&v["connectors"]["tunnels"])
            ),
        ),
        (
            "requests",
            format!(
                "{} served, {} failed, {} unrouted; {} open connection(s), {} TLS handshakes",
                text(&v["counters"]["requests"]),
                text(&v["counters"]["failed_requests"]),
                text(&v["counters"]["unrouted_requests"]),
                text(&v["counters"]["active_connections"]),
                text(&v["counters"]["tls_handshakes"])
            ),
        ),
    ];
    for (k, val) in rows {
        println!("{k:<11} {val}");
    }
    if health["status"] == "ok" {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Applies `KEY=VALUE` pairs to an app's JSON (see `apps set --help`).
fn apply_settings(app: &mut Value, settings: &[String]) -> Result<(), String> {
    for pair in settings {
        let (key, raw) = pair
            .split_once('=')
            .ok_or_else(|| format!("`{pair}` is not KEY=VALUE"))?;
        if key.is_empty() || key.split('.').any(str::is_empty) {
            return Err(format!("`{pair}`: the key is empty"));
        }
        if key == "name" {
            return Err(
                "an app's name cannot change (remove it and add it under the new name)".into(),
            );
        }
        let value =
            serde_json::from_str::<Value>(raw).unwrap_or_else(|_| Value::String(raw.into()));
        let mut parts: Vec<&str> = key.split('.').collect();
        let last = parts.pop().unwrap_or(key);
        let mut target = &mut *app;
        for p in parts {
            if !target[p].is_object() {
                target[p] = json!({});
            }
            target = &mut target[p];
        }
        let obj = target
            .as_object_mut()
            .ok_or_else(|| format!("`{key}`: not a table"))?;
        if value.is_null() {
            obj.remove(last);
        } else {
            obj.insert(last.to_string(), value);
        }
    }
    Ok(())
}

pub fn apps(t: &Target, cmd: AppsCommand) -> ExitCode {
    let result = match cmd {
        AppsCommand::List => run_call(t, "GET", "/v1/apps", None).map(|v| {
            if t.json {
                println!("{v:#}");
            } else {
                print_apps_table(v["apps"].as_array().map(Vec::as_slice).unwrap_or(&[]));
            }
        }),
        AppsCommand::Show { name } => {
            run_call(t, "GET", &format!("/v1/apps/{name}"), None).map(|v| {
                if t.json {
                    println!("{v:#}");
                } else if let Some(obj) = v["app"].as_object() {
                    for (k, val) in obj {
                        println!("{k:<22} {val}");
                    }
                }
            })
        }
        AppsCommand::Add {
            name,
            external_url,
            internal_url,
            preauth,
            backend_timeout,
            connector_group,
            settings,
        } => {
            let mut app =
                json!({ "name": name, "external_url": external_url, "internal_url": internal_url });
            if let Some(p) = preauth {
                app["preauth"] = json!(p);
            }
            if let Some(bt) = backend_timeout {
                app["backend_timeout"] = bt.parse::<i64>().map(|n| json!(n)).unwrap_or(json!(bt));
            }
            if let Some(g) = connector_group {
                app["connector_group"] = json!(g);
            }
            if let Some(extra) = settings {
                match serde_json::from_str::<Value>(&extra) {
                    Ok(Value::Object(map)) => {
                        for (k, v) in map {
                            app[k] = v;
                        }
                    }
                    _ => {
                        eprintln!(
                            "postern: --settings must be a JSON object, e.g. '{{\"hsts\": true}}'"
                        );
                        return ExitCode::from(2);
                    }
                }
            }
            run_call(t, "POST", "/v1/apps", Some(&app)).map(|v| {
                if t.json {
                    println!("{v:#}");
                } else {
                    println!("published \"{name}\" (app table version {})", v["version"]);
                }
            })
        }
        AppsCommand::Set { name, settings } => {
            run_call(t, "GET", &format!("/v1/apps/{name}"), None).and_then(|v| {
                let mut app = v["app"].clone();
                if let Err(e) = apply_settings(&mut app, &settings) {
                    eprintln!("postern: {e}");
                    return Err(ExitCode::from(2));
                }
                run_call(t, "PUT", &format!("/v1/apps/{name}"), Some(&app)).map(|v| {
                    if t.json {
                        println!("{v:#}");
                    } else {
                        println!("changed \"{name}\" (app table version {})", v["version"]);
                    }
                })
            })
        }
        AppsCommand::Remove { name } => run_call(t, "DELETE", &format!("/v1/apps/{name}"), None)
            .map(|_| {
                if !t.json {
                    println!("removed \"{name}\"");
                }
            }),
        AppsCommand::Enable { name } => switch(t, &name, "enable"),
        AppsCommand::Disable { name } => switch(t, &name, "disable"),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(code) => code,
    }
}

fn switch(t: &Target, name: &str, action: &str) -> Result<(), ExitCode> {
    run_call(t, "POST", &format!("/v1/apps/{name}/{action}"), None).map(|v| {
        if t.json {
            println!("{v:#}");
        } else {
            println!("{action}d \"{name}\" (app table version {})", v["version"]);
        }
    })
}

/// One Perfmon counter: its path and how to read it from /v1/counters.
struct PerfCounter {
    path: String,
    /// JSON pointer into the counters document.
    pointer: String,
    /// Shown as a rate per second (difference over the interval).
    rate: bool,
}

fn perf_counters(doc: &Value) -> Vec<PerfCounter> {
    let mut list = Vec::new();
    let mut add = |instance: &str, name: &str, pointer: String, rate: bool| {
        list.push(PerfCounter {
            path: format!("\\Postern Edge({instance})\\{name}"),
            pointer,
            rate,
        });
    };
    add(
        "_Total",
        "Active Connections",
        "/edge/active_connections".into(),
        false,
    );
    add(
        "_Total",
        "Connections/sec",
        "/edge/connections_accepted".into(),
        true,
    );
    add(
        "_Total",
        "TLS Handshakes/sec",
        "/edge/tls_handshakes".into(),
        true,
    );
    add(
        "_Total",
        "Unrouted Requests/sec",
        "/edge/requests_unrouted".into(),
        true,
    );
    add(
        "_Total",
        "Cross-Core Relays/sec",
        "/edge/cross_core_relays".into(),
        true,
    );
    add(
        "_Total",
        "Token Cache Hits/sec",
        "/edge/token_cache_hits".into(),
        true,
    );
    add(
        "_Total",
        "Token Cache Misses/sec",
        "/edge/token_cache_misses".into(),
        true,
    );
    add(
        "_Total",
        "JWKS Refreshes",
        "/edge/jwks_refreshes".into(),
        false,
    );
    add("_Total", "Config Version", "/config_version".into(), false);
    if let Some(apps) = doc["apps"].as_object() {
        for app in apps.keys() {
            let p = |f: &str| format!("/apps/{}/{f}", app.replace('~', "~0").replace('/', "~1"));
            add(app, "Requests/sec", p("requests"), true);
            add(app, "Failed Requests/sec", p("failed"), true);
            add(app, "Bytes Received/sec", p("bytes_in"), true);
            add(app, "Bytes Sent/sec", p("bytes_out"), true);
            add(app, "Links Translated/sec", p("links_translated"), true);
            add(app, "Translated Bytes/sec", p("translated_bytes"), true);
            add(app, "Sign-ins/sec", p("sign_ins"), true);
            add(app, "Sign-in Failures/sec", p("sign_in_failures"), true);
            add(app, "Policy Denials/sec", p("policy_denials"), true);
            add(app, "Session Renewals/sec", p("session_renewals"), true);
            add(app, "WebSockets/sec", p("websockets"), true);
            add(app, "Open WebSockets", p("websockets_open"), false);
            add(
                app,
                "Backend Latency p50 (ms)",
                p("backend_latency_p50_ms"),
                false,
            );
            add(
                app,
                "Backend Latency p99 (ms)",
                p("backend_latency_p99_ms"),
                false,
            );
        }
    }
    if let Some(connectors) = doc["connectors"].as_object() {
        for id in connectors.keys() {
            for (name, field, rate) in [
                ("Active Tunnels", "tunnels", false),
                ("Requests/sec", "requests", true),
                ("Requests In Flight", "streams_in_flight", false),
            ] {
                list.push(PerfCounter {
                    path: format!("\\Postern Connector({id})\\{name}"),
                    pointer: format!("/connectors/{id}/{field}"),
                    rate,
                });
            }
        }
    }
    list
}

/// `\\host\Object(inst)\Counter` → `\Object(inst)\Counter`.
fn strip_machine(path: &str) -> &str {
    match path.strip_prefix("\\\\") {
        Some(rest) => rest.find('\\').map_or(rest, |i| &rest[i..]),
        None => path,
    }
}

/// Case-insensitive glob with `*` and `?`, as typeperf accepts.
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

fn parse_interval(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.split_at(
        s.find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(s.len()),
    );
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not an interval such as 1s or 500ms"))?;
    let secs = match unit {
        "" | "s" => n,
        "ms" => n / 1000.0,
        "m" => n * 60.0,
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (use ms, s or m)")),
    };
    if !(0.01..=3600.0).contains(&secs) {
        return Err(format!("`{s}` is outside 10ms..1h"));
    }
    Ok(Duration::from_secs_f64(secs))
}

pub fn counters(t: &Target, interval: &str, count: Option<u64>, patterns: &[String]) -> ExitCode {
    let interval = match parse_interval(interval) {
        Ok(d) => d,
        Err(e) => {
            eprintln!("postern: --interval {e}");
            return ExitCode::from(2);
        }
    };
    let first = match run_call(t, "GET", "/v1/counters", None) {
        Ok(v) => v,
        Err(code) => return code,
    };
    if t.json {
        println!("{first:#}");
        return ExitCode::SUCCESS;
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    let selected: Vec<PerfCounter> = perf_counters(&first)
        .into_iter()
        .filter(|c| patterns.is_empty() || patterns.iter().any(|p| glob(strip_machine(p), &c.path)))
        .collect();
    if selected.is_empty() {
        eprintln!("postern: no counter matches {}", patterns.join(", "));
        return ExitCode::from(1);
    }
    let mut header = String::from("\"(PDH-CSV 4.0)\"");
    for c in &selected {
        header.push_str(&format!(",\"\\\\{host}{}\"", c.path));
    }
    println!("{header}");
    let mut prev = first;
    let mut n = 0u64;
    loop {
        if count.is_some_and(|c| n >= c) {
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(interval);
        let cur = match run_call(t, "GET", "/v1/counters", None) {
            Ok(v) => v,
            Err(code) => return code,
        };
        let mut row = format!("\"{}\"", timestamp());
        for c in &selected {
            let now = cur
                .pointer(&c.pointer)
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            let value = if c.rate {
                let before = prev
                    .pointer(&c.pointer)
                    .and_then(Value::as_f64)
                    .unwrap_or(0.0);
                (now - before).max(0.0) / interval.as_secs_f64()
            } else {
                now
            };
            row.push_str(&format!(",\"{value:.3}\""));
        }
        println!("{row}");
        let _ = std::io::stdout().flush();
        prev = cur;
        n += 1;
    }
}

/// `MM/DD/YYYY HH:MM:SS.mmm` in UTC, as typeperf writes it.
fn timestamp() -> String {
    let c = crate::clock::now();
    format!(
        "{:02}/{:02}/{:04} {:02}:{:02}:{:02}.{:03}",
        c.month, c.day, c.year, c.hour, c.minute, c.second, c.millis
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_pairs_edit_the_app() {
        let mut app = json!({"name": "a", "backend_timeout": "default", "cookie": {"secure": true}, "hsts": true});
        apply_settings(
            &mut app,
            &[
                "backend_timeout=long".into(),
                "cookie.secure=false".into(),
                "translate_body=true".into(),
                "sso.headers=true".into(),
                "hsts=null".into(),
                "internal_servers=[\"b:80\"]".into(),
                "connector_group=\"42\"".into(),
            ],
        )
        .unwrap();
        assert_eq!(
            app,
            json!({"name": "a", "backend_timeout": "long", "cookie": {"secure": false},
                   "translate_body": true, "sso": {"headers": true},
                   "internal_servers": ["b:80"], "connector_group": "42"})
        );
        assert!(apply_settings(&mut app, &["nokey".into()]).is_err());
        assert!(apply_settings(&mut app, &["name=b".into()]).is_err());
        assert!(apply_settings(&mut app, &["a..b=1".into()]).is_err());
    }

    #[test]
    fn globs_like_typeperf() {
        assert!(glob(
            "\\Postern Edge(*)\\Requests/sec",
            "\\Postern Edge(expenses)\\Requests/sec"
        ));
        assert!(glob(
            "\\postern edge(exp?nses)\\*",
            "\\Postern Edge(expenses)\\Bytes Sent/sec"
        ));
        assert!(!glob(
            "\\Postern Edge(hr)\\*",
            "\\Postern Edge(expenses)\\Requests/sec"
        ));
    }

    #[test]
    fn machine_names_are_optional() {
        assert_eq!(
            strip_machine("\\\\edge1\\Postern Edge(a)\\Requests/sec"),
            "\\Postern Edge(a)\\Requests/sec"
        );
        assert_eq!(
            strip_machine("\\Postern Edge(a)\\X"),
            "\\Postern Edge(a)\\X"
        );
    }

    #[test]
    fn ttls() {
        assert_eq!(parse_ttl("1h").unwrap(), 3600);
        assert_eq!(parse_ttl("90").unwrap(), 90);
        assert_eq!(parse_ttl("2d").unwrap(), 172_800);
        assert!(parse_ttl("1w").is_err() && parse_ttl("h").is_err());
    }

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("1s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_interval("250ms").unwrap(), Duration::from_millis(250));
        assert!(
            parse_interval("0s").is_err()
                && parse_interval("1h").is_err()
                && parse_interval("x").is_err()
        );
    }

    #[test]
    fn timestamps_are_civil_dates() {
        let t = timestamp();
        assert_eq!(t.len(), 23, "{t}");
        assert_eq!(&t[2..3], "/");
    }
}
