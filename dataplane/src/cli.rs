//! Operator commands that talk to a running edge's admin API:
//! `postern apps …` and `postern counters`.
//!
//! The admin address and token come from flags, then the environment
//! (`POSTERN_ADMIN`, `POSTERN_TOKEN`), then the state directory (the token
//! file the edge wrote). Output is a human table by default and the API's
//! JSON with `--json`; `counters` prints typeperf-style CSV rows so an
//! operator used to Perfmon reads them without a new vocabulary.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};

#[derive(clap::Args, Clone)]
pub struct Target {
    /// Admin API address of the edge.
    #[arg(
        long,
        env = "POSTERN_ADMIN",
        default_value = "127.0.0.1:9090",
        global = true
    )]
    admin: String,
    /// Admin bearer token (default: read from the state directory).
    #[arg(long, env = "POSTERN_TOKEN", global = true, hide_env_values = true)]
    token: Option<String>,
    /// The edge's state directory, where its admin token is.
    #[arg(long, env = "POSTERN_STATE_DIR", global = true)]
    state_dir: Option<PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(clap::Subcommand)]
pub enum AppsCommand {
    /// List published apps.
    List,
    /// Show one app's settings.
    Show { name: String },
    /// Publish an app.
    Add {
        /// Unique name.
        #[arg(long)]
        name: String,
        /// Public URL, e.g. https://expenses.example.com/
        #[arg(long)]
        external_url: String,
        /// Internal URL, e.g. http://expenses.corp:8080/
        #[arg(long)]
        internal_url: String,
        /// `oidc` (default) or `passthrough`.
        #[arg(long)]
        preauth: Option<String>,
        /// `default`, `long` or seconds.
        #[arg(long)]
        backend_timeout: Option<String>,
        /// Connector group (default `default`).
        #[arg(long)]
        connector_group: Option<String>,
        /// Any other settings, as a JSON object merged into the app.
        #[arg(long)]
        settings: Option<String>,
    },
    /// Stop publishing an app.
    Remove { name: String },
    /// Serve an app again.
    Enable { name: String },
    /// Answer 503 for an app, keeping its configuration.
    Disable { name: String },
}

#[derive(clap::Subcommand)]
pub enum TokensCommand {
    /// Create a single-use enrollment token for a connector.
    Create {
        /// Connector group the connector will join.
        #[arg(long, default_value = "default")]
        group: String,
        /// Lifetime, e.g. 1h, 30m, 2d (default 1h, at most 7d).
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
    /// List enrollment tokens (never their secrets).
    List,
    /// Revoke an unused token.
    Revoke { id: String },
}

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
            println!(
                "{:<14} {:<20} {:<10} {:<12}",
                "ID", "GROUP", "STATE", "EXPIRES (unix)"
            );
            for tok in v["tokens"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                println!(
                    "{:<14} {:<20} {:<10} {:<12}",
                    tok["id"].as_str().unwrap_or(""),
                    tok["group"].as_str().unwrap_or(""),
                    tok["state"].as_str().unwrap_or(""),
                    tok["expires_at"]
                );
            }
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

#[derive(clap::Subcommand)]
pub enum ConnectorsCommand {
    /// List registered connectors with their group and state.
    List,
    /// Revoke a connector: its tunnels close now and it can never
    /// reconnect or renew its certificate.
    Revoke {
        /// Connector id (from `postern connectors list`).
        id: String,
    },
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
            println!(
                "{:<14} {:<24} {:<16} {:<10} {:<8} {:<12}",
                "ID", "HOST", "GROUP", "STATE", "TUNNELS", "VERSION"
            );
            for c in v["connectors"].as_array().map(Vec::as_slice).unwrap_or(&[]) {
                println!(
                    "{:<14} {:<24} {:<16} {:<10} {:<8} {:<12}",
                    c["id"].as_str().unwrap_or(""),
                    c["host_name"].as_str().unwrap_or(""),
                    c["group"].as_str().unwrap_or(""),
                    c["state"].as_str().unwrap_or(""),
                    c["tunnels"],
                    c["version"].as_str().unwrap_or(""),
                );
            }
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

struct Client {
    addr: String,
    token: String,
}

impl Client {
    fn new(t: &Target) -> Result<Client, String> {
        let token = match &t.token {
            Some(tok) => tok.clone(),
            None => {
                let dir = t.state_dir.clone().ok_or(
                    "no admin token: pass --token, set POSTERN_TOKEN, or point --state-dir at the edge's state directory",
                )?;
                let path = dir.join(crate::admin::TOKEN_FILE);
                std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read the admin token {}: {e}", path.display()))?
                    .trim()
                    .to_string()
            }
        };
        Ok(Client {
            addr: t.admin.clone(),
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

fn print_apps_table(apps: &[Value]) {
    println!(
        "{:<20} {:<40} {:<40} {:<8} {:<12}",
        "NAME", "EXTERNAL URL", "INTERNAL URL", "ENABLED", "PREAUTH"
    );
    for a in apps {
        println!(
            "{:<20} {:<40} {:<40} {:<8} {:<12}",
            a["name"].as_str().unwrap_or(""),
            a["external_url"].as_str().unwrap_or(""),
            a["internal_url"].as_str().unwrap_or(""),
            a["enabled"].as_bool().unwrap_or(true),
            a["preauth"].as_str().unwrap_or("oidc"),
        );
    }
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
