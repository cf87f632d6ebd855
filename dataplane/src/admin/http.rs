//! The admin listener: a small REST/JSON server for operators and their
//! tools, on its own threads and its own address (loopback by default,
//! never one of the public listeners).
//!
//! Traffic here is rare and small, so it is plain blocking I/O with one
//! request per connection, bounded everywhere: 32 connections at once,
//! a 64 KiB head, a 1 MiB body, 10 s to send a request. Every route but
//! `/healthz` needs the bearer token, compared in constant time.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use postern_control::AppSpec;
use serde_json::{json, Value};

use super::{certs, ApplyError, Control};
use crate::blocking_http::{read_request, ReadError, Request};

pub const MAX_BODY: usize = 1024 * 1024;
const MAX_HEAD: usize = 64 * 1024;
const MAX_CONNECTIONS: usize = 32;

/// Opens a control-plane listener (the socket `adopted` from the process
/// this one replaces, else one bound to `addr`), records it for the next
/// takeover, and hands each connection to `each` on a thread named
/// `name`, until this process has handed its listeners over.
fn control_listener(
    name: &str,
    kind: crate::handover::Kind,
    addr: SocketAddr,
    adopted: Option<std::os::fd::OwnedFd>,
    offers: &crate::handover::Offers,
    mut each: impl FnMut(TcpStream) + Send + 'static,
) -> std::io::Result<SocketAddr> {
    let listener = match adopted {
        Some(fd) => TcpListener::from(fd),
        None => TcpListener::bind(addr)?,
    };
    let local = listener.local_addr()?;
    // Non-blocking, so the thread can look up from a quiet socket (and
    // another process sharing it may take a connection first).
    listener.set_nonblocking(true)?;
    offers.add(kind, addr, std::os::fd::AsRawFd::as_raw_fd(&listener));
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || loop {
            if crate::handover::HANDED_OVER.load(Ordering::Acquire) {
                return;
            }
            if !readable(&listener, 200) {
                continue;
            }
            let Ok((stream, _)) = listener.accept() else {
                continue;
            };
            let _ = stream.set_nonblocking(false);
            each(stream);
        })?;
    Ok(local)
}

/// Serves the admin API, a thread per connection (32 at most).
pub fn start(
    addr: SocketAddr,
    adopted: Option<std::os::fd::OwnedFd>,
    control: Arc<Control>,
    offers: &crate::handover::Offers,
) -> std::io::Result<SocketAddr> {
    let active = Arc::new(AtomicUsize::new(0));
    control_listener(
        "postern-admin",
        crate::handover::Kind::Admin,
        addr,
        adopted,
        offers,
        move |stream| {
            if active.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                active.fetch_sub(1, Ordering::AcqRel);
                let _ = respond(
                    &stream,
                    503,
                    &json!({"error": "too many admin connections"}),
                );
                return;
            }
            let control = control.clone();
            let active = active.clone();
            let spawned = std::thread::Builder::new()
                .name("postern-admin-conn".into())
                .spawn(move || {
                    serve(stream, &control);
                    active.fetch_sub(1, Ordering::AcqRel);
                });
            if spawned.is_err() {
                // The closure (and its decrement) never ran.
                tracing::warn!("cannot start an admin connection thread");
            }
        },
    )
}

/// Serves `GET /metrics` alone on `addr` (or the socket taken over),
/// without the admin token, for a scraper on a trusted network; anything
/// else gets 404. One scrape at a time, each bounded by 5 s timeouts.
pub fn start_metrics(
    addr: SocketAddr,
    adopted: Option<std::os::fd::OwnedFd>,
    control: Arc<Control>,
    offers: &crate::handover::Offers,
) -> std::io::Result<SocketAddr> {
    control_listener(
        "postern-metrics",
        crate::handover::Kind::Metrics,
        addr,
        adopted,
        offers,
        move |mut stream| {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
            let (status, body) = match read_request(&mut stream, MAX_HEAD, 0) {
                Ok(req)
                    if req.method == "GET" && req.path.split('?').next() == Some("/metrics") =>
                {
                    (200, Value::String(super::metrics::text(&control)))
                }
                Ok(req) => (
                    404,
                    json!({ "error": format!("only GET /metrics is served here, not {} {}", req.method, req.path) }),
                ),
                Err(ReadError::Status(s, msg)) => (s, json!({ "error": msg })),
                Err(ReadError::Gone) => return,
            };
            let _ = respond(&stream, status, &body);
        },
    )
}

/// Waits up to `ms` for a connection on `listener`.
fn readable(listener: &TcpListener, ms: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd: std::os::fd::AsRawFd::as_raw_fd(listener),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: poll reads and writes the one pollfd it is given.
    unsafe { libc::poll(&mut pfd, 1, ms) > 0 }
}

fn respond(mut stream: &TcpStream, status: u16, body: &Value) -> std::io::Result<()> {
    let (text, ctype) = if status == 204 {
        (String::new(), "application/json")
    } else if let Value::String(metrics) = body {
        (metrics.clone(), "text/plain; version=0.0.4; charset=utf-8")
    } else {
        let mut t = serde_json::to_string_pretty(body).unwrap_or_default();
        t.push('\n');
        (t, "application/json")
    };
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
        crate::pages::reason(status),
        text.len()
    );
    if status == 401 {
        head.push_str("WWW-Authenticate: Bearer realm=\"postern-admin\"\r\n");
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(text.as_bytes())
}

/// The dashboard's files. They are served without the token: they hold
/// no data, and every figure on the page comes from the API with the
/// token the operator enters.
fn ui_file(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "/ui/" => Some(("text/html; charset=utf-8", include_str!("ui/index.html"))),
        "/ui/app.js" => Some(("text/javascript; charset=utf-8", include_str!("ui/app.js"))),
        "/ui/app.css" => Some(("text/css; charset=utf-8", include_str!("ui/app.css"))),
        _ => None,
    }
}

/// Sends a dashboard file (or a redirect to the dashboard) with a policy
/// that lets the page load nothing but its own files and talk to nothing
/// but this API.
fn respond_ui(mut stream: &TcpStream, path: &str) -> std::io::Result<bool> {
    let (status, ctype, body, location) = match (path, ui_file(path)) {
        (_, Some((ctype, body))) => (200, ctype, body, None),
        ("/" | "/ui", None) => (308, "text/plain; charset=utf-8", "", Some("/ui/")),
        _ => return Ok(false),
    };
    let mut head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\
         Content-Security-Policy: default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n\
         X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\nX-Frame-Options: DENY\r\n",
        crate::pages::reason(status),
        body.len()
    );
    if let Some(l) = location {
        head.push_str(&format!("Location: {l}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body.as_bytes())?;
    Ok(true)
}

fn serve(mut stream: TcpStream, control: &Control) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let (status, body, unread) = match read_request(&mut stream, MAX_HEAD, MAX_BODY) {
        Ok(req)
            if req.method == "GET"
                && matches!(
                    respond_ui(&stream, req.path.split('?').next().unwrap_or("")),
                    Ok(true)
                ) =>
        {
            return;
        }
        Ok(req) => {
            let (s, b) = route(&req, control);
            (s, b, false)
        }
        Err(ReadError::Status(s, msg)) => (s, json!({ "error": msg }), true),
        Err(ReadError::Gone) => return,
    };
    let _ = respond(&stream, status, &body);
    if unread {
        linger(&mut stream);
    }
}

/// After refusing a request whose body was not read, let the client finish
/// sending (bounded) so closing does not reset the connection under the
/// response it has yet to read.
fn linger(stream: &mut TcpStream) {
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let mut sink = [0u8; 16 * 1024];
    let mut left = 4 * MAX_BODY;
    while left > 0 {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
}

fn authorized(req: &Request, control: &Control) -> bool {
    let Some(value) = &req.authorization else {
        return false;
    };
    let Some(token) = value.strip_prefix("Bearer ") else {
        return false;
    };
    constant_time_eq(token.trim().as_bytes(), control.token().as_bytes())
}

/// Compares without an early exit, so timing reveals only the length
/// (which is fixed for generated tokens).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a
        .iter()
        .zip(b)
        .fold(0u8, |acc, (x, y)| acc | std::hint::black_box(x ^ y));
    diff == 0
}

fn route(req: &Request, control: &Control) -> (u16, Value) {
    let path = req.path.split('?').next().unwrap_or("");
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let method = req.method.as_str();
    if segments == ["healthz"] && method != "GET" {
        return (
            405,
            json!({ "error": format!("{method} is not allowed on {path}") }),
        );
    }
    if segments == ["healthz"] {
        return health(control);
    }
    if !authorized(req, control) {
        return (
            401,
            json!({ "error": "a valid admin bearer token is required (Authorization: Bearer <token>)" }),
        );
    }
    match (method, segments.as_slice()) {
        ("GET", ["metrics"]) => (200, Value::String(super::metrics::text(control))),
        ("GET", ["v1", "status"]) => status(control),
        ("GET", ["v1", "recent-errors"]) => (200, json!({ "errors": super::recent::list() })),
        ("GET", ["v1", "counters"]) => {
            let (version, _) = control.apps();
            let totals = control.counters.totals();
            (
                200,
                json!({ "config_version": version, "workers_serving": control.serving(), "edge": totals.edge, "apps": totals.apps, "connectors": control.tunnels.counters(), "backend_latency_bounds_s": postern_control::counters::LATENCY_BOUNDS_S }),
            )
        }
        ("GET", ["v1", "certificates"]) => {
            let certs = control.certs.lock().unwrap_or_else(|e| e.into_inner());
            let list: Vec<Value> = certs
                .list()
                .into_iter()
                .map(|(name, source, names)| json!({ "name": name, "source": source, "dns_names": names }))
                .collect();
            (200, json!({ "certificates": list }))
        }
        ("POST", ["v1", "certificates"]) => upload_certificate(req, control),
        ("DELETE", ["v1", "certificates", name]) => {
            let mut certs = control.certs.lock().unwrap_or_else(|e| e.into_inner());
            match certs.remove(name) {
                Ok(()) => (204, Value::Null),
                Err(e @ certs::CertError::NotFound(_)) => (404, json!({ "error": e.to_string() })),
                Err(e) => (503, json!({ "error": e.to_string() })),
            }
        }
        ("GET", ["v1", "connectors"]) => list_connectors(control),
        ("POST", ["v1", "connectors", id, "revoke"]) => match control.revoke_connector(id) {
            Ok(true) => (200, json!({ "id": id, "state": "revoked" })),
            Ok(false) => (
                404,
                json!({ "error": format!("no connector has the id \"{id}\"") }),
            ),
            Err(e) => (503, json!({ "error": e.to_string() })),
        },
        ("GET", ["v1", "connector-groups"]) => connector_groups(control),
        ("POST", ["v1", "enrollment-tokens"]) => create_token(req, control),
        ("GET", ["v1", "enrollment-tokens"]) => match control.list_tokens() {
            Ok(t) => (200, json!({ "tokens": t })),
            Err(e) => (503, json!({ "error": e.to_string() })),
        },
        ("DELETE", ["v1", "enrollment-tokens", id]) => match control.revoke_token(id) {
            Ok(true) => (204, Value::Null),
            Ok(false) => (
                404,
                json!({ "error": format!("no enrollment token has id \"{id}\"") }),
            ),
            Err(e) => (503, json!({ "error": e.to_string() })),
        },
        ("GET", ["v1", "apps"]) => {
            let (version, apps) = control.apps();
            (200, json!({ "version": version, "apps": apps }))
        }
        ("POST", ["v1", "apps"]) => add_app(req, control),
        ("GET", ["v1", "apps", name]) => {
            let (version, apps) = control.apps();
            match apps.into_iter().find(|a| a.name == *name) {
                Some(app) => (200, json!({ "version": version, "app": app })),
                None => err_body(&ApplyError::NotFound(name.to_string())),
            }
        }
        ("PUT", ["v1", "apps", name]) => replace_app(req, control, name),
        ("DELETE", ["v1", "apps", name]) => remove_app(control, name),
        ("POST", ["v1", "apps", name, action @ ("enable" | "disable")]) => {
            enable_app(control, name, action)
        }
        ("GET", ["v1", "session-keys"]) => session_keys(control),
        ("POST", ["v1", "session-keys", "rotate"]) => match control.auth.rotate() {
            Ok(_) => session_keys(control),
            Err(e) => (503, json!({ "error": e })),
        },
        (_, segments) if is_endpoint(segments) => (
            405,
            json!({ "error": format!("{method} is not allowed on {path}") }),
        ),
        _ => (404, json!({ "error": format!("no such endpoint: {path}") })),
    }
}

/// `GET /v1/session-keys`: when the session-cookie and assertion keys
/// last rotated and next will; how many keys open cookies.
fn session_keys(control: &Control) -> (u16, Value) {
    let (rotated_at, next) = control.auth.rotation_times();
    (
        200,
        json!({
            "rotated_at": rotated_at,
            "next_rotation": next,
            "valid_keys": control.auth.cookie_keys.get().export().len(),
        }),
    )
}

/// `GET /healthz`: the table version each worker serves, and whether
/// every worker is alive.
fn health(control: &Control) -> (u16, Value) {
    let (version, _) = control.apps();
    let serving = control.serving();
    let ready = !serving.is_empty() && serving.iter().all(|v| *v == version);
    // A worker that stopped beating (died, or stuck) makes the edge
    // unhealthy: a load balancer should stop sending it traffic.
    let alive: Vec<bool> = control.counters.liveness().iter().map(|l| l.0).collect();
    let healthy = !alive.is_empty() && alive.iter().all(|a| *a);
    (
        if healthy { 200 } else { 503 },
        json!({
            "status": if healthy { "ok" } else { "degraded" },
            "app_table_version": version,
            "workers_serving": serving,
            "all_workers_current": ready,
            "workers_alive": alive,
        }),
    )
}

/// `POST /v1/certificates`: PEM pair or PKCS#12.
fn upload_certificate(req: &Request, control: &Control) -> (u16, Value) {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Upload {
        name: String,
        cert_pem: Option<String>,
        key_pem: Option<String>,
        pkcs12_base64: Option<String>,
        password: Option<String>,
    }
    let up: Upload = match serde_json::from_slice(&req.body) {
        Ok(u) => u,
        Err(e) => {
            return (
                400,
                json!({ "error": format!("the body is not a valid certificate upload: {e}") }),
            )
        }
    };
    let invalid = |field: &str, why: String| {
        let m = format!("{field}: {why}");
        (422, json!({ "error": m, "problems": [m] }))
    };
    let (cert, key) = match (up.cert_pem, up.key_pem, up.pkcs12_base64) {
        (Some(c), Some(k), None) => (c, k),
        (None, None, Some(p12)) => {
            let Some(der) = certs::base64_decode(&p12) else {
                return invalid("pkcs12_base64", "not valid base64".into());
            };
            match certs::pkcs12_to_pem(&der, up.password.as_deref().unwrap_or("")) {
                Ok(pair) => pair,
                Err(certs::CertError::Invalid(field, why)) => return invalid(field, why),
                Err(e) => return (503, json!({ "error": e.to_string() })),
            }
        }
        _ => {
            return invalid(
                "cert_pem",
                "send either cert_pem and key_pem, or pkcs12_base64 with its password".into(),
            )
        }
    };
    let mut certs = control.certs.lock().unwrap_or_else(|e| e.into_inner());
    match certs.upload(&up.name, &cert, &key) {
        Ok(names) => (201, json!({ "name": up.name, "dns_names": names })),
        Err(certs::CertError::Invalid(field, why)) => invalid(field, why),
        Err(e) => (503, json!({ "error": e.to_string() })),
    }
}

/// `GET /v1/connectors`, with each connector's tunnels per worker.
fn list_connectors(control: &Control) -> (u16, Value) {
    let workers = control.serving().len();
    let list: Vec<Value> = control
        .connectors()
        .into_iter()
        .map(|c| {
            let by_worker = control.tunnels.by_worker(&c.record.id, workers);
            let mut v = json!(c);
            v["tunnels_by_worker"] = json!(by_worker);
            v
        })
        .collect();
    (200, json!({ "connectors": list }))
}

/// `GET /v1/status`: the process at a glance — version, uptime,
/// listeners, health, apps, connectors and the main counters.
fn status(control: &Control) -> (u16, Value) {
    let (_, health) = health(control);
    let (version, apps) = control.apps();
    let enabled = apps.iter().filter(|a| a.enabled.unwrap_or(true)).count();
    let connectors = control.connectors();
    let active = connectors
        .iter()
        .filter(|c| c.state == postern_control::registry::State::Active)
        .count();
    let totals = control.counters.totals();
    let mut v = control.info();
    v["health"] = health;
    v["app_table_version"] = json!(version);
    v["apps"] = json!({ "total": apps.len(), "enabled": enabled });
    v["connectors"] = json!({
        "registered": connectors.len(),
        "active": active,
        "tunnels": control.tunnels.list().len(),
    });
    let requests: u64 = totals.apps.values().map(|a| a.requests).sum();
    let failed: u64 = totals.apps.values().map(|a| a.failed).sum();
    v["counters"] = json!({
        "requests": requests,
        "failed_requests": failed,
        "unrouted_requests": totals.edge.requests_unrouted,
        "active_connections": totals.edge.active_connections,
        "tls_handshakes": totals.edge.tls_handshakes,
    });
    (200, v)
}

/// `GET /v1/connector-groups`: groups named by apps or tokens.
fn connector_groups(control: &Control) -> (u16, Value) {
    let (_, apps) = control.apps();
    let mut groups: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for a in apps {
        let g = a
            .connector_group
            .clone()
            .unwrap_or_else(|| "default".into());
        groups.entry(g).or_default().push(a.name);
    }
    if let Ok(tokens) = control.list_tokens() {
        for t in tokens {
            groups.entry(t.group).or_default();
        }
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(name, apps)| json!({ "name": name, "apps": apps }))
        .collect();
    (200, json!({ "groups": groups }))
}

/// `POST /v1/enrollment-tokens`.
fn create_token(req: &Request, control: &Control) -> (u16, Value) {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct NewToken {
        group: Option<String>,
        ttl_seconds: Option<u64>,
    }
    let body = if req.body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        &req.body[..]
    };
    let spec: NewToken = match serde_json::from_slice(body) {
        Ok(s) => s,
        Err(e) => {
            return (
                400,
                json!({ "error": format!("the body is not a valid token request: {e}") }),
            )
        }
    };
    let group = spec.group.unwrap_or_else(|| "default".into());
    let ttl = spec
        .ttl_seconds
        .unwrap_or(postern_control::enroll::DEFAULT_TTL_SECS);
    match control.create_token(&group, ttl) {
        Ok((rec, token)) => (
            201,
            json!({ "id": rec.id, "token": token, "group": rec.group, "expires_at": rec.expires_at }),
        ),
        Err(postern_control::enroll::EnrollError::Invalid(m)) => {
            (422, json!({ "error": m, "problems": [m] }))
        }
        Err(e) => (503, json!({ "error": e.to_string() })),
    }
}

/// `POST /v1/apps`.
fn add_app(req: &Request, control: &Control) -> (u16, Value) {
    let spec = match parse_spec(&req.body) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let name = spec.name.clone();
    let result = control.change(|apps| {
        if apps.iter().any(|a| a.name == name) {
            return Err(ApplyError::Conflict(name.clone()));
        }
        apps.push(spec);
        Ok(())
    });
    answer(result, 201, control, Some(&name))
}

/// `PUT /v1/apps/{name}`.
fn replace_app(req: &Request, control: &Control, name: &str) -> (u16, Value) {
    let mut spec = match parse_spec(&req.body) {
        Ok(s) => s,
        Err(e) => return e,
    };
    if spec.name.is_empty() {
        spec.name = name.to_string();
    }
    if spec.name != *name {
        return err_body(&ApplyError::BadRequest(format!(
            "name: the body names \"{}\" but the URL names \"{name}\"",
            spec.name
        )));
    }
    let result = control.change(|apps| match apps.iter_mut().find(|a| a.name == *name) {
        Some(slot) => {
            *slot = spec;
            Ok(())
        }
        None => Err(ApplyError::NotFound(name.to_string())),
    });
    answer(result, 200, control, Some(name))
}

/// Whether `segments` name an admin endpoint (for 405 against 404).
fn is_endpoint(segments: &[&str]) -> bool {
    matches!(
        segments,
        ["v1", "apps"]
            | ["v1", "apps", _]
            | ["v1", "apps", _, "enable" | "disable"]
            | ["metrics"]
            | ["v1", "counters"]
            | ["v1", "connector-groups"]
            | ["v1", "connectors"]
            | ["v1", "connectors", _, "revoke"]
            | ["v1", "certificates"]
            | ["v1", "certificates", _]
            | ["v1", "enrollment-tokens"]
            | ["v1", "enrollment-tokens", _]
            | ["v1", "session-keys"]
            | ["v1", "session-keys", "rotate"]
    )
}

/// `DELETE /v1/apps/{name}`.
fn remove_app(control: &Control, name: &str) -> (u16, Value) {
    let result = control.change(|apps| {
        let before = apps.len();
        apps.retain(|a| a.name != *name);
        if apps.len() == before {
            return Err(ApplyError::NotFound(name.to_string()));
        }
        Ok(())
    });
    match result {
        Ok(_) => (204, Value::Null),
        Err(e) => err_body(&e),
    }
}

/// `POST /v1/apps/{name}/enable` and `.../disable`.
fn enable_app(control: &Control, name: &str, action: &str) -> (u16, Value) {
    let enabled = action == "enable";
    let result = control.change(|apps| match apps.iter_mut().find(|a| a.name == *name) {
        Some(app) => {
            app.enabled = Some(enabled);
            Ok(())
        }
        None => Err(ApplyError::NotFound(name.to_string())),
    });
    answer(result, 200, control, Some(name))
}

fn parse_spec(body: &[u8]) -> Result<AppSpec, (u16, Value)> {
    serde_json::from_slice::<AppSpec>(body).map_err(|e| {
        (
            400,
            json!({ "error": format!("the body is not a valid app: {e}") }),
        )
    })
}

fn answer(
    result: Result<u64, ApplyError>,
    ok: u16,
    control: &Control,
    name: Option<&str>,
) -> (u16, Value) {
    match result {
        Ok(version) => {
            let (_, apps) = control.apps();
            let app = name.and_then(|n| apps.into_iter().find(|a| a.name == n));
            (ok, json!({ "version": version, "app": app }))
        }
        Err(e) => err_body(&e),
    }
}

fn err_body(e: &ApplyError) -> (u16, Value) {
    match e {
        ApplyError::Invalid(problems) => (
            422,
            json!({ "error": "the app table would be invalid", "problems": problems }),
        ),
        ApplyError::NotFound(_) => (404, json!({ "error": e.to_string() })),
        ApplyError::Conflict(_) => (409, json!({ "error": e.to_string() })),
        ApplyError::BadRequest(_) => (400, json!({ "error": e.to_string() })),
        ApplyError::Storage(_) => (503, json!({ "error": e.to_string() })),
    }
}
