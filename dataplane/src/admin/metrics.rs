//! The Prometheus text exposition of the edge's counters (`GET /metrics`
//! on the admin listener).

use std::fmt::Write as _;

use postern_control::counters::Totals;

use super::Control;

/// Escapes a label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes the `# HELP` and `# TYPE` lines of a metric family.
fn family(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Prometheus text exposition (format 0.0.4) of every counter.
pub fn text(control: &Control) -> String {
    let t = control.counters.totals();
    let (version, _) = control.apps();
    let mut o = String::with_capacity(4096);
    apps(&mut o, &t);
    edge(&mut o, &t, version);
    workers(&mut o, control);
    connectors(&mut o, control);
    o
}

/// Per-app counters, failures and translation by reason, backend latency.
fn apps(o: &mut String, t: &Totals) {
    type PerApp = fn(&postern_control::counters::AppTotals) -> u64;
    let per_app: [(&str, &str, PerApp); 12] = [
        (
            "postern_requests_total",
            "Requests routed to an app.",
            |a| a.requests,
        ),
        (
            "postern_received_bytes_total",
            "Request body bytes received from clients.",
            |a| a.bytes_in,
        ),
        (
            "postern_sent_bytes_total",
            "Response body bytes sent to clients.",
            |a| a.bytes_out,
        ),
        (
            "postern_translated_responses_total",
            "Response bodies that went through link translation.",
            |a| a.translated_responses,
        ),
        (
            "postern_translated_bytes_total",
            "Decoded response body bytes scanned by link translation.",
            |a| a.translated_bytes,
        ),
        (
            "postern_links_translated_total",
            "Internal URLs rewritten to external URLs in response bodies.",
            |a| a.links_translated,
        ),
        (
            "postern_translate_failed_total",
            "Translated responses cut short (decoded size limit, corrupt encoding).",
            |a| a.translate_failed,
        ),
        (
            "postern_sign_ins_total",
            "Completed sign-ins at the identity provider.",
            |a| a.sign_ins,
        ),
        (
            "postern_policy_denials_total",
            "Signed-in users the app's access rules turned away.",
            |a| a.policy_denials,
        ),
        (
            "postern_session_groups_trimmed_total",
            "Sign-ins whose group list was cut to fit the session cookie.",
            |a| a.groups_trimmed,
        ),
        (
            "postern_session_renewals_total",
            "Sessions renewed with the provider's refresh token.",
            |a| a.session_renewals,
        ),
        (
            "postern_websockets_total",
            "WebSocket upgrades relayed (over HTTP/1.1 or HTTP/2).",
            |a| a.websockets,
        ),
    ];
    for (name, help, value) in per_app {
        family(o, name, "counter", help);
        for (app, a) in &t.apps {
            let _ = writeln!(o, "{name}{{app=\"{}\"}} {}", label(app), value(a));
        }
    }
    family(
        o,
        "postern_failed_requests_total",
        "counter",
        "Requests to an app that failed, by reason.",
    );
    for (app, a) in &t.apps {
        for (reason, n) in &a.failed_by_reason {
            let _ = writeln!(
                o,
                "postern_failed_requests_total{{app=\"{}\",reason=\"{reason}\"}} {n}",
                label(app)
            );
        }
    }
    family(
        o,
        "postern_translate_skipped_total",
        "counter",
        "Response bodies of translating apps left untranslated, by reason.",
    );
    for (app, a) in &t.apps {
        for (reason, n) in &a.translate_skipped_by_reason {
            let _ = writeln!(
                o,
                "postern_translate_skipped_total{{app=\"{}\",reason=\"{reason}\"}} {n}",
                label(app)
            );
        }
    }
    family(
        o,
        "postern_sign_in_failures_total",
        "counter",
        "Failed sign-ins and refused credentials, by reason.",
    );
    for (app, a) in &t.apps {
        for (reason, n) in &a.sign_in_failures_by_reason {
            let _ = writeln!(
                o,
                "postern_sign_in_failures_total{{app=\"{}\",reason=\"{reason}\"}} {n}",
                label(app)
            );
        }
    }
    family(
        o,
        "postern_websockets_open",
        "gauge",
        "WebSockets open now.",
    );
    for (app, a) in &t.apps {
        let _ = writeln!(
            o,
            "postern_websockets_open{{app=\"{}\"}} {}",
            label(app),
            a.websockets_open
        );
    }
    latency(o, t);
}

/// Backend latency per app, as a histogram (`histogram_quantile()` gives
/// any percentile, over any window, across edges).
fn latency(o: &mut String, t: &Totals) {
    family(
        o,
        "postern_backend_latency_seconds",
        "histogram",
        "Time from sending a request to the backend to its response head.",
    );
    for (app, a) in &t.apps {
        let app = label(app);
        let le = &a.backend_latency_le;
        for (i, bound) in postern_control::counters::LATENCY_BOUNDS_S
            .iter()
            .enumerate()
        {
            let _ = writeln!(
                o,
                "postern_backend_latency_seconds_bucket{{app=\"{app}\",le=\"{bound}\"}} {}",
                le.get(i).copied().unwrap_or(0)
            );
        }
        let _ = writeln!(
            o,
            "postern_backend_latency_seconds_bucket{{app=\"{app}\",le=\"+Inf\"}} {}",
            a.backend_latency_count
        );
        let _ = writeln!(
            o,
            "postern_backend_latency_seconds_sum{{app=\"{app}\"}} {}",
            a.backend_latency_sum_ms / 1000.0
        );
        let _ = writeln!(
            o,
            "postern_backend_latency_seconds_count{{app=\"{app}\"}} {}",
            a.backend_latency_count
        );
    }
}

/// Edge-wide counters.
fn edge(o: &mut String, t: &Totals, version: u64) {
    let e = &t.edge;
    for (name, kind, help, v) in [
        (
            "postern_active_connections",
            "gauge",
            "Client connections open now.",
            e.active_connections.to_string(),
        ),
        (
            "postern_connections_accepted_total",
            "counter",
            "Client connections accepted.",
            e.connections_accepted.to_string(),
        ),
        (
            "postern_tls_handshakes_total",
            "counter",
            "Completed TLS handshakes.",
            e.tls_handshakes.to_string(),
        ),
        (
            "postern_tls_handshake_failures_total",
            "counter",
            "Failed or timed-out TLS handshakes.",
            e.tls_handshake_failures.to_string(),
        ),
        (
            "postern_unrouted_requests_total",
            "counter",
            "Requests answered without an app (unknown host, 421, redirects).",
            e.requests_unrouted.to_string(),
        ),
        (
            "postern_bad_requests_total",
            "counter",
            "Requests refused as malformed.",
            e.bad_requests.to_string(),
        ),
        (
            "postern_connection_panics_total",
            "counter",
            "Client connections closed because their handler panicked.",
            e.panics.to_string(),
        ),
        (
            "postern_tunnel_requests_total",
            "counter",
            "Requests relayed over connector tunnels.",
            e.tunnel_requests.to_string(),
        ),
        (
            "postern_token_cache_hits_total",
            "counter",
            "Bearer tokens accepted without a signature check (verified before).",
            e.token_cache_hits.to_string(),
        ),
        (
            "postern_token_cache_misses_total",
            "counter",
            "Bearer tokens that needed a signature check.",
            e.token_cache_misses.to_string(),
        ),
        (
            "postern_jwks_refreshes_total",
            "counter",
            "Identity-provider key sets fetched (scheduled, and for unknown key ids).",
            e.jwks_refreshes.to_string(),
        ),
        (
            "postern_cross_core_relays_total",
            "counter",
            "Requests relayed over a tunnel held by another worker.",
            e.cross_core_relays.to_string(),
        ),
        (
            "postern_refused_connections_total",
            "counter",
            "Connections closed on accept because the edge was at max_connections.",
            e.refused_over_total.to_string(),
        ),
        (
            "postern_refused_source_connections_total",
            "counter",
            "Connections closed on accept because their source address was at max_connections_per_source.",
            e.refused_over_source.to_string(),
        ),
        (
            "postern_refused_tunnel_streams_total",
            "counter",
            "Requests answered 503 because their source address held max_tunnel_streams_per_source tunnel streams.",
            e.refused_tunnel_streams.to_string(),
        ),
        (
            "postern_config_version",
            "gauge",
            "Version of the app table.",
            version.to_string(),
        ),
        (
            "postern_access_log_dropped_total",
            "counter",
            "Access log lines dropped because the writer fell behind.",
            crate::accesslog::DROPPED
                .load(std::sync::atomic::Ordering::Relaxed)
                .to_string(),
        ),
    ] {
        family(o, name, kind, help);
        let _ = writeln!(o, "{name} {v}");
    }
}

/// Each worker's table version and liveness.
fn workers(o: &mut String, control: &Control) {
    family(
        o,
        "postern_worker_config_version",
        "gauge",
        "Version of the app table each worker serves.",
    );
    for (i, v) in control.serving().iter().enumerate() {
        let _ = writeln!(o, "postern_worker_config_version{{worker=\"{i}\"}} {v}");
    }
    let liveness = control.counters.liveness();
    family(
        o,
        "postern_worker_up",
        "gauge",
        "1 while a worker runs and answers, 0 once it stopped (died or stuck for 5 s).",
    );
    for (i, (alive, _)) in liveness.iter().enumerate() {
        let _ = writeln!(
            o,
            "postern_worker_up{{worker=\"{i}\"}} {}",
            u8::from(*alive)
        );
    }
    family(
        o,
        "postern_worker_heartbeat_age_seconds",
        "gauge",
        "Seconds since a worker last showed it runs.",
    );
    for (i, (_, age)) in liveness.iter().enumerate() {
        let _ = writeln!(
            o,
            "postern_worker_heartbeat_age_seconds{{worker=\"{i}\"}} {:.3}",
            age.as_secs_f64()
        );
    }
}

/// Per-connector tunnel counters.
fn connectors(o: &mut String, control: &Control) {
    let connectors = control.tunnels.counters();
    type PerConnector = fn(&crate::edge::tunnels::ConnectorCounters) -> u64;
    let per_connector: [(&str, &str, &str, PerConnector); 3] = [
        (
            "postern_connector_tunnels",
            "gauge",
            "Tunnels a connector holds to this edge now.",
            |c| c.tunnels,
        ),
        (
            "postern_connector_requests_total",
            "counter",
            "Requests relayed to a connector since the edge started.",
            |c| c.requests,
        ),
        (
            "postern_connector_streams_in_flight",
            "gauge",
            "Requests a connector is handling now.",
            |c| c.streams_in_flight,
        ),
    ];
    for (name, kind, help, get) in per_connector {
        family(o, name, kind, help);
        for (id, c) in &connectors {
            let _ = writeln!(
                o,
                "{name}{{connector=\"{}\",group=\"{}\"}} {}",
                label(id),
                label(&c.group),
                get(c)
            );
        }
    }
}
