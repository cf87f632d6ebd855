//! The load generator (`postern-load`, in `perf/`) measures what it
//! claims, against a real edge: every protocol and mode completes without
//! errors, the open loop holds its rate, latencies are the server's, and
//! an overloaded server is charged for the requests that waited (the
//! open loop times each request from when it was due).

use std::time::Duration;

use postern_e2e::backend::{Backend, Reply};
use postern_e2e::{load_bin, passthrough_app, EdgeBuilder, TempDir};

/// An edge publishing `app.example.com` over https and http (h2c on) in
/// front of `backend`.
fn edge(backend: &Backend) -> postern_e2e::Edge {
    EdgeBuilder::new()
        .h2c()
        .app(&passthrough_app(
            "tls",
            "https://app.example.com/",
            backend.addr,
            "",
        ))
        .app(&passthrough_app(
            "plain",
            "http://app.example.com/",
            backend.addr,
            "[app.cookie]\nsecure = false\n",
        ))
        .start()
}

/// Runs postern-load against `addr` and returns its JSON result.
fn load(addr: std::net::SocketAddr, args: &[&str]) -> serde_json::Value {
    let dir = TempDir::new("load");
    let json = dir.path().join("result.json");
    let out = std::process::Command::new(load_bin())
        .args(args)
        .arg("--connect-to")
        .arg(addr.to_string())
        .arg("--json")
        .arg(&json)
        .output()
        .expect("run postern-load");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "postern-load {args:?}: {text}");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON result"))
            .expect("valid JSON");
    assert_eq!(v["tool"], "postern-load");
    v
}

fn n(v: &serde_json::Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or_else(|| panic!("{key} in {v}"))
}

#[test]
fn every_protocol_and_mode_completes_without_errors() {
    let backend = Backend::start(|_| Reply::ok(vec![b'x'; 1024]));
    let edge = edge(&backend);
    let https = "https://app.example.com/1k";
    let http = "http://app.example.com/1k";
    let cases: Vec<(&str, std::net::SocketAddr, Vec<&str>)> = vec![
        (
            "HTTP/1.1 over TLS",
            edge.https,
            vec!["-c", "4", "-d", "1", https],
        ),
        (
            "HTTP/1.1 pipelined",
            edge.http,
            vec!["-c", "2", "-p", "4", "-d", "1", http],
        ),
        (
            "HTTP/2 over TLS",
            edge.https,
            vec!["--http2", "-c", "1", "-m", "8", "-d", "1", https],
        ),
        (
            "h2c, two threads",
            edge.http,
            vec!["--http2", "-t", "2", "-c", "2", "-m", "4", "-d", "1", http],
        ),
        (
            "connection per request",
            edge.https,
            vec!["--new-connection", "-c", "2", "-d", "1", https],
        ),
        (
            "connection per request, full handshakes",
            edge.https,
            vec![
                "--new-connection",
                "--no-resume",
                "-c",
                "2",
                "-d",
                "1",
                https,
            ],
        ),
    ];
    for (what, addr, args) in cases {
        let v = load(addr, &args);
        assert!(n(&v, "requests") > 20, "{what}: {v}");
        assert_eq!(v["errors"], serde_json::json!({}), "{what}: {v}");
        assert!(n(&v, "bytes") >= n(&v, "requests") * 1024, "{what}: {v}");
        let (full, resumed) = (n(&v["handshakes"], "full"), n(&v["handshakes"], "resumed"));
        if what == "connection per request" {
            // One handshake per request (the last ones may be in flight).
            assert!(full + resumed >= n(&v, "requests"), "{what}: {v}");
            assert!(resumed > full, "{what}: sessions are resumed: {v}");
        } else if what.ends_with("full handshakes") {
            assert_eq!(resumed, 0, "{what}: {v}");
            assert!(full >= n(&v, "requests"), "{what}: {v}");
        }
    }
}

#[test]
fn open_loop_holds_its_rate() {
    let backend = Backend::ids(Duration::from_millis(20));
    let edge = edge(&backend);
    let v = load(
        edge.https,
        &[
            "-c",
            "4",
            "--rate",
            "100",
            "-d",
            "2",
            "https://app.example.com/",
        ],
    );
    let requests = n(&v, "requests");
    assert!((190..=210).contains(&requests), "100 req/s for 2 s: {v}");
    assert!(
        n(&v["latency_us"], "p50") >= 20_000,
        "the backend takes 20 ms: {v}"
    );
}

#[test]
fn latency_is_the_servers_and_an_overload_is_charged() {
    let backend = Backend::ids(Duration::from_millis(50));
    let edge = edge(&backend);
    // Closed loop: one connection, one request at a time, each 50 ms.
    let v = load(
        edge.https,
        &["-c", "1", "-d", "1.5", "https://app.example.com/"],
    );
    let p50 = n(&v["latency_us"], "p50");
    assert!((50_000..80_000).contains(&p50), "{v}");
    assert!((15..=30).contains(&n(&v, "requests")), "{v}");
    // Open loop at twice what one connection can carry: requests fall
    // further behind their schedule, and their latency says so.
    let v = load(
        edge.https,
        &[
            "-c",
            "1",
            "--rate",
            "40",
            "-d",
            "2",
            "https://app.example.com/",
        ],
    );
    assert!(n(&v["latency_us"], "p90") > 400_000, "{v}");
}
