//! Counters agree with what a client sent, and `/metrics` is valid
//! Prometheus text as read by the reference Python parser.

use std::io::Write;
use std::process::{Command, Stdio};

use postern_e2e::backend::Backend;
use postern_e2e::client::{self, get};
use postern_e2e::{free_port, Edge, EdgeBuilder};
use serde_json::Value;

fn edge(be: &Backend) -> Edge {
    EdgeBuilder::new()
        .edge("workers = 2")
        .app(&format!(
            "name = \"a\"\nexternal_url = \"http://a.example.com/\"\ninternal_url = \"http://{}/\"\npreauth = \"passthrough\"\ncookie = {{ secure = false }}",
            be.addr
        ))
        .app(&format!(
            "name = \"down\"\nexternal_url = \"http://down.example.com/\"\ninternal_url = \"http://127.0.0.1:{}/\"\npreauth = \"passthrough\"\ncookie = {{ secure = false }}",
            free_port()
        ))
        .start()
}

/// Sends the same mix every test checks against.
fn send_mix(edge: &Edge) {
    // Separate connections so the kernel spreads them over both workers.
    for _ in 0..40 {
        let mut s = client::tcp(edge.http);
        assert_eq!(get(&mut s, "a.example.com", "/").status, 200);
    }
    for _ in 0..3 {
        let mut s = client::tcp(edge.http);
        assert_eq!(get(&mut s, "down.example.com", "/").status, 502);
    }
    let mut s = client::tcp(edge.http);
    for _ in 0..5 {
        assert_eq!(get(&mut s, "nowhere.example.org", "/").status, 404);
    }
}

#[test]
fn counters_match_the_requests_sent() {
    let be = Backend::hello();
    let edge = edge(&be);
    send_mix(&edge);
    let (status, c) = edge.admin("GET", "/v1/counters", None);
    assert_eq!(status, 200);
    assert_eq!(c["apps"]["a"]["requests"], 40, "{c}");
    assert_eq!(c["apps"]["a"]["failed"], 0);
    assert_eq!(c["apps"]["a"]["bytes_out"], 40 * 5, "40 bodies of `hello`");
    assert_eq!(c["apps"]["a"]["backend_latency_count"], 40);
    assert!(c["apps"]["a"]["backend_latency_p99_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(c["apps"]["down"]["requests"], 3);
    assert_eq!(
        c["apps"]["down"]["failed_by_reason"]["backend_unreachable"],
        3
    );
    assert_eq!(c["edge"]["requests_unrouted"], 5);
    assert_eq!(c["edge"]["connections_accepted"], 44);
    assert_eq!(edge.admin_call("GET", "/v1/counters", None, None).0, 401);
}

#[test]
fn metrics_parse_with_the_prometheus_reference_parser() {
    let be = Backend::hello();
    let edge = edge(&be);
    send_mix(&edge);
    let mut s = client::tcp(edge.admin);
    let r = client::request(
        &mut s,
        &format!(
            "GET /metrics HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            edge.admin_token()
        ),
    );
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/plain; version=0.0.4"));
    let script = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append({"family": fam.name, "type": fam.type, "name": s.name, "labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;
    let mut py = Command::new("python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (with prometheus_client, installed by .ci/run)");
    py.stdin.take().unwrap().write_all(&r.body).unwrap();
    let out = py.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "parser rejected /metrics: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let find = |name: &str, labels: &[(&str, &str)]| -> f64 {
        samples
            .iter()
            .find(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
            .unwrap_or_else(|| panic!("{name} {labels:?} missing"))["value"]
            .as_f64()
            .unwrap()
    };
    assert_eq!(find("postern_requests_total", &[("app", "a")]), 40.0);
    assert_eq!(
        find(
            "postern_failed_requests_total",
            &[("app", "down"), ("reason", "backend_unreachable")]
        ),
        3.0
    );
    assert_eq!(
        find("postern_backend_latency_seconds_count", &[("app", "a")]),
        40.0
    );
    assert_eq!(find("postern_unrouted_requests_total", &[]), 5.0);
    assert_eq!(find("postern_config_version", &[]), 1.0);
    for worker in ["0", "1"] {
        assert_eq!(find("postern_worker_up", &[("worker", worker)]), 1.0);
        assert!(
            find(
                "postern_worker_heartbeat_age_seconds",
                &[("worker", worker)]
            ) < 5.0
        );
        assert_eq!(find("postern_connection_panics_total", &[]), 0.0);
    }
    let families: Vec<&str> = samples.iter().filter_map(|s| s["type"].as_str()).collect();
    assert!(
        families.contains(&"histogram")
            && families.contains(&"gauge")
            && families.contains(&"counter")
    );
    // Backend latency is a histogram: cumulative buckets, +Inf = count.
    let mut buckets: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| {
            s["name"] == "postern_backend_latency_seconds_bucket" && s["labels"]["app"] == "a"
        })
        .map(|s| {
            let le = s["labels"]["le"].as_str().unwrap();
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().unwrap()
            };
            (bound, s["value"].as_f64().unwrap())
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    assert!(buckets.len() > 10, "{buckets:?}");
    assert!(
        buckets.windows(2).all(|w| w[0].1 <= w[1].1),
        "cumulative: {buckets:?}"
    );
    assert_eq!(buckets.last().unwrap(), &(f64::INFINITY, 40.0));
    assert!(find("postern_backend_latency_seconds_sum", &[("app", "a")]) > 0.0);
}
