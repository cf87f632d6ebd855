//! The metrics as a real Prometheus (Debian's package) scrapes them: the
//! edge's token-free `metrics_address`, scraped every second with the
//! scrape configuration shipped in `docs/prometheus.yml`; under a known
//! load, Prometheus's HTTP API gives the request rate back, and every
//! query of `docs/grafana-dashboard.json` runs against it, the request,
//! latency and connection panels with data. The admin token stays
//! needed on the admin listener, and the metrics listener serves nothing
//! else.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use postern_e2e::backend::{Backend, Reply};
use postern_e2e::client::{self, get};
use postern_e2e::connector::Connector;
use postern_e2e::{free_port, passthrough_app, EdgeBuilder, TempDir};
use serde_json::Value;

struct Prometheus {
    child: Child,
    addr: SocketAddr,
    _dir: TempDir,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Plain HTTP GET; (status, body).
fn http_get(addr: SocketAddr, target: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn percent_encode(q: &str) -> String {
    q.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Runs an instant query; the `data.result` list.
fn query(p: &Prometheus, q: &str) -> Vec<Value> {
    let (status, body) = http_get(
        p.addr,
        &format!("/api/v1/query?query={}", percent_encode(q)),
    );
    assert_eq!(status, 200, "{q}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success", "{q}: {body}");
    v["data"]["result"].as_array().unwrap().clone()
}

fn start_prometheus(target: SocketAddr) -> Prometheus {
    let dir = TempDir::new("prometheus");
    // The shipped example, pointed at this edge and scraped every second.
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/prometheus.yml"
    ))
    .unwrap();
    assert!(
        shipped.contains("127.0.0.1:9464"),
        "the example scrapes 127.0.0.1:9464"
    );
    let config = shipped
        .replace("127.0.0.1:9464", &target.to_string())
        .replace("scrape_interval: 15s", "scrape_interval: 1s");
    let path = dir.path().join("prometheus.yml");
    std::fs::write(&path, config).unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("prometheus.log")).unwrap())
        .spawn()
        .expect("prometheus runs (Debian package prometheus)");
    let p = Prometheus {
        child,
        addr,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if TcpStream::connect(addr).is_ok() && http_get(addr, "/-/ready").0 == 200 {
            return p;
        }
        assert!(Instant::now() < deadline, "prometheus did not become ready");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_real_prometheus_scrapes_the_request_rate_and_the_dashboard_queries_run() {
    let backend = Backend::start(|_| Reply::ok("fine"));
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let b = EdgeBuilder::new()
        .tunnel()
        .edge(&format!("metrics_address = \"{metrics}\""))
        .app(&passthrough_app(
            "sample",
            "https://app.example.com/",
            backend.addr,
            "",
        ));
    let roots = b.pki.root_store();
    let edge = b.start();
    let _connector = Connector::start(&edge, "default", "", 2);

    // The metrics listener: /metrics without a token, nothing else.
    let (status, body) = http_get(metrics, "/metrics");
    assert_eq!(status, 200);
    assert!(body.contains("# TYPE postern_backend_latency_seconds histogram"));
    assert_eq!(http_get(metrics, "/v1/apps").0, 404);
    assert_eq!(
        http_get(edge.admin, "/metrics").0,
        401,
        "the admin API still wants its token"
    );

    let prometheus = start_prometheus(metrics);
    // About 100 requests per second for 12 s.
    let started = Instant::now();
    let mut s = client::tls(edge.https, "app.example.com", roots);
    let mut sent = 0u64;
    while started.elapsed() < Duration::from_secs(12) {
        let r = get(&mut s, "app.example.com", "/");
        assert_eq!(r.status, 200);
        sent += 1;
        let due = Duration::from_millis(10 * sent);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    let rate_sent = sent as f64 / started.elapsed().as_secs_f64();

    let rate = query(
        &prometheus,
        "sum(rate(postern_requests_total{app=\"sample\"}[5s]))",
    );
    let measured: f64 = rate
        .first()
        .and_then(|r| r["value"][1].as_str())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    eprintln!("sent {rate_sent:.1} req/s, Prometheus measured {measured:.1} req/s");
    assert!(
        measured > rate_sent * 0.6 && measured < rate_sent * 1.4,
        "Prometheus measured {measured:.1} req/s for {rate_sent:.1} sent"
    );

    // Every query of the shipped Grafana dashboard runs.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/grafana-dashboard.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut ran = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"]
                .as_str()
                .unwrap()
                .replace("$__rate_interval", "5s");
            let result = query(&prometheus, &expr);
            let title = panel["title"].as_str().unwrap();
            let needs_data = [
                "Requests per second",
                "Backend latency",
                "Open client",
                "Connector tunnels",
                "Workers up",
            ];
            if needs_data.iter().any(|t| title.starts_with(t)) {
                assert!(!result.is_empty(), "panel {title:?} ({expr}) has no data");
            }
            ran += 1;
        }
    }
    assert!(ran >= 8, "{ran} dashboard queries");
    let p99 = query(
        &prometheus,
        "histogram_quantile(0.99, sum by (le) (rate(postern_backend_latency_seconds_bucket{app=\"sample\"}[5s])))",
    );
    let p99: f64 = p99[0]["value"][1].as_str().unwrap().parse().unwrap();
    assert!(p99 > 0.0 && p99 < 1.0, "backend p99 {p99} s");
}
