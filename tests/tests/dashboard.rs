//! The admin dashboard (`/ui/` on the admin listener) in a real browser,
//! Debian's headless Chromium driven by playwright-core: the admin root
//! leads to it; a wrong token is refused and shows nothing; with the
//! right one the page shows the published app and the connector, its
//! requests-per-second figure and chart move under load, and a failed
//! request appears among the recent errors with its request id. The page
//! loads nothing from anywhere but the admin listener.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use postern_e2e::backend::{Backend, Reply};
use postern_e2e::client::{self, get};
use postern_e2e::connector::Connector;
use postern_e2e::{free_port, passthrough_app, EdgeBuilder};

#[test]
fn the_dashboard_shows_apps_connectors_and_live_load_in_a_real_browser() {
    let backend = Backend::start(|_| Reply::ok("fine"));
    let dead = free_port();
    let b = EdgeBuilder::new()
        .tunnel()
        .app(&passthrough_app("sample", "https://app.example.com/", backend.addr, ""))
        .app(&format!(
            "name = \"down\"\nexternal_url = \"https://down.example.com/\"\ninternal_url = \"http://127.0.0.1:{dead}/\"\npreauth = \"passthrough\"\n"
        ));
    let roots = b.pki.root_store();
    let edge = b.start();
    let connector = Connector::start(&edge, "default", "", 2);

    // A request that fails, to find among the recent errors.
    let mut s = client::tls(edge.https, "down.example.com", roots.clone());
    let failed = get(&mut s, "down.example.com", "/");
    assert_eq!(failed.status, 502, "{}", failed.text());
    let failed_id = failed.header("x-request-id").expect("a request id");

    // Load while the browser watches.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (stop, roots, https) = (stop.clone(), roots.clone(), edge.https);
        std::thread::spawn(move || {
            let mut s = client::tls(https, "app.example.com", roots);
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let r = get(&mut s, "app.example.com", "/");
                assert_eq!(r.status, 200);
                n += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
            n
        })
    };
    let cfg = serde_json::json!({
        "admin": format!("http://{}", edge.admin),
        "token": edge.admin_token(),
        "app": "sample",
        "connector": connector.id,
        "seconds": 6,
    });
    let out = std::process::Command::new("node")
        .arg(postern_e2e::idp::idp_dir().join("dashboard.mjs"))
        .arg(cfg.to_string())
        .current_dir(postern_e2e::idp::idp_dir())
        .output()
        .expect("node runs");
    stop.store(true, Ordering::Relaxed);
    let sent = load.join().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let seen: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "the browser script failed (is Debian's chromium installed?):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(seen["ok"], true, "{seen:#}");

    // The admin root leads to the dashboard.
    assert!(
        seen["root_url"].as_str().unwrap().ends_with("/ui/"),
        "{seen:#}"
    );
    // A wrong token is refused, and nothing is shown.
    assert!(
        seen["wrong_token"].as_str().unwrap().contains("refused"),
        "{seen:#}"
    );
    assert_eq!(seen["dashboard_after_wrong"], false);
    // The app and the connector.
    assert!(seen["apps"]
        .as_str()
        .unwrap()
        .contains("https://app.example.com/"));
    assert!(seen["connectors"].as_str().unwrap().contains(&connector.id));
    // The figure and the chart move under load.
    let rps: Vec<f64> = seen["rps"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_f64())
        .collect();
    let top = rps.iter().cloned().fold(0.0, f64::max);
    assert!(
        top > 20.0,
        "requests per second seen: {rps:?} ({sent} sent)"
    );
    let points: Vec<u64> = seen["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_u64())
        .collect();
    assert!(
        points.last() > points.first(),
        "the chart did not move: {points:?}"
    );
    // Backend latency of the last second shows while the load runs.
    let p99: Vec<f64> = seen["p99"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_f64())
        .collect();
    assert!(p99.iter().any(|v| *v > 0.0), "backend p99 seen: {p99:?}");
    // The failed request, by its id.
    assert!(
        seen["errors"].as_str().unwrap().contains(&failed_id),
        "recent errors: {}",
        seen["errors"]
    );
    // Nothing but the admin listener was asked for anything.
    let origin = format!("http://{}/", edge.admin);
    for url in seen["requests"].as_array().unwrap() {
        assert!(
            url.as_str().unwrap().starts_with(&origin),
            "the page loaded {url} from elsewhere"
        );
    }
    assert!(
        seen["console"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| !m.as_str().unwrap().contains("Content Security Policy")),
        "CSP violations: {}",
        seen["console"]
    );
    drop(connector);
}
