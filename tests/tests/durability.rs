//! The control plane's two promises under stress: an acknowledged change
//! survives SIGKILL at any moment (never a torn table), and a thousand
//! changes pushed while traffic flows fail no request.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postern_e2e::backend::Backend;
use postern_e2e::client::{self, get};
use postern_e2e::EdgeBuilder;
use serde_json::Value;

fn app_json(name: &str, be: &Backend) -> String {
    format!(
        r#"{{"name": "{name}", "external_url": "http://{name}.example.com/", "internal_url": "http://{}/", "preauth": "passthrough", "cookie": {{"secure": false}}}}"#,
        be.addr
    )
}

fn names(table: &Value) -> Vec<String> {
    table["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn sigkill_during_writes_never_loses_an_acknowledged_change() {
    let be = Backend::hello();
    let mut edge = EdgeBuilder::new().edge("workers = 1").start();
    // A simple deterministic generator for kill times.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = 0usize;
    for round in 0..12 {
        // Acknowledged state: (version, app names) after the last 2xx.
        let (_, t) = edge.admin("GET", "/v1/apps", None);
        let acked = Arc::new(Mutex::new((t["version"].as_u64().unwrap(), names(&t))));
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let acked = acked.clone();
            let stop = stop.clone();
            let admin = edge.admin;
            let token = edge.admin_token();
            let start = next;
            let be_addr = be.addr;
            std::thread::spawn(move || {
                let mut i = start;
                let mut in_flight = None;
                while !stop.load(Ordering::SeqCst) {
                    let name = format!("app{i}");
                    in_flight = Some(name.clone());
                    let body = format!(
                        r#"{{"name": "{name}", "external_url": "http://{name}.example.com/", "internal_url": "http://{be_addr}/", "preauth": "passthrough", "cookie": {{"secure": false}}}}"#
                    );
                    let r = std::panic::catch_unwind(|| {
                        let mut s = std::net::TcpStream::connect(admin).ok()?;
                        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
                        use std::io::Write;
                        let req = format!(
                            "POST /v1/apps HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        s.write_all(req.as_bytes()).ok()?;
                        let mut pending = Vec::new();
                        let r = client::read_response(&mut s, &mut pending, "POST").ok()?;
                        let v: Value = serde_json::from_slice(&r.body).ok()?;
                        (r.status == 201).then(|| v["version"].as_u64().unwrap())
                    });
                    match r {
                        Ok(Some(version)) => {
                            let mut a = acked.lock().unwrap();
                            a.0 = version;
                            a.1.push(name);
                            in_flight = None;
                            i += 1;
                        }
                        _ => break,
                    }
                }
                (i, in_flight)
            })
        };
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(5 + seed % 60));
        unsafe_kill(edge.pid());
        stop.store(true, Ordering::SeqCst);
        let (reached, in_flight) = writer.join().unwrap();
        next = reached + 1;
        edge = edge.restart();
        let (status, table) = edge.admin("GET", "/v1/apps", None);
        assert_eq!(status, 200, "round {round}: the table loads after SIGKILL");
        let (acked_version, acked_names) = acked.lock().unwrap().clone();
        let version = table["version"].as_u64().unwrap();
        let stored = names(&table);
        eprintln!(
            "round {round}: acked {acked_version}, stored {version}, apps {}",
            stored.len()
        );
        if version == acked_version {
            assert_eq!(stored, acked_names, "round {round}");
        } else {
            // The kill landed after the write reached disk but before the
            // answer reached the client: the one unacknowledged change.
            assert_eq!(version, acked_version + 1, "round {round}: {table}");
            let mut expect = acked_names.clone();
            expect.push(in_flight.expect("a write was in flight"));
            assert_eq!(stored, expect, "round {round}");
        }
    }
}

/// SIGKILL without unsafe code: the kill command.
fn unsafe_kill(pid: u32) {
    let _ = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status();
}

#[test]
fn a_thousand_changes_under_load_fail_no_request() {
    let be = Backend::hello();
    let edge = EdgeBuilder::new()
        .edge("workers = 2")
        .app(&format!(
            "name = \"steady\"\nexternal_url = \"http://steady.example.com/\"\ninternal_url = \"http://{}/\"\npreauth = \"passthrough\"\ncookie = {{ secure = false }}",
            be.addr
        ))
        .start();
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(Mutex::new(Vec::new()));
    let mut load = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed, http) = (stop.clone(), ok.clone(), failed.clone(), edge.http);
        load.push(std::thread::spawn(move || {
            let mut s = client::tcp(http);
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                // New connections now and then, so both workers serve.
                n += 1;
                if n % 25 == 0 {
                    s = client::tcp(http);
                }
                let r = get(&mut s, "steady.example.com", "/");
                if r.status == 200 && r.text() == "hello" {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.lock().unwrap().push(r.status);
                }
            }
        }));
    }
    let started = Instant::now();
    let mut last = 0;
    for i in 0..1000 {
        let (status, body) = if i % 2 == 0 {
            edge.admin(
                "POST",
                "/v1/apps",
                Some(&app_json(&format!("churn{i}"), &be)),
            )
        } else {
            edge.admin("DELETE", &format!("/v1/apps/churn{}", i - 1), None)
        };
        assert!(
            status == 201 || status == 204,
            "change {i}: {status} {body}"
        );
        if status == 201 {
            last = body["version"].as_u64().unwrap();
        }
    }
    let last = last + 1; // the final DELETE
    edge.wait_for_version(last);
    stop.store(true, Ordering::SeqCst);
    for t in load {
        t.join().unwrap();
    }
    let failed = failed.lock().unwrap();
    let ok = ok.load(Ordering::Relaxed);
    eprintln!(
        "1000 changes in {:?}, {ok} requests served meanwhile",
        started.elapsed()
    );
    assert!(
        failed.is_empty(),
        "{} failed requests: {:?}",
        failed.len(),
        &failed[..failed.len().min(10)]
    );
    assert!(ok > 100, "the load actually ran ({ok})");
}
