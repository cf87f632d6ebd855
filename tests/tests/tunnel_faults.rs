//! Connector faults under load: one of two connectors killed, both
//! restarted one after the other, and a slow reader sharing a tunnel.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use postern_e2e::backend::{id_body, Backend, Reply};
use postern_e2e::client::{self, get};
use postern_e2e::connector::Connector;
use postern_e2e::{passthrough_app, EdgeBuilder};

/// Waits (10 s at most) until `cond` holds.
fn wait_for(cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "condition not reached in 10 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// An edge with a tunnel listener publishing `app.example.com` in front of
/// `backend`, and two connectors (with `config`) holding tunnels to every
/// edge worker.
fn edge_with_two_connectors(
    backend: &Backend,
    config: &str,
) -> (
    postern_e2e::Edge,
    rustls::RootCertStore,
    Connector,
    Connector,
) {
    let b = EdgeBuilder::new().tunnel().app(&passthrough_app(
        "app",
        "https://app.example.com/",
        backend.addr,
        "",
    ));
    let roots = b.pki.root_store();
    let edge = b.start();
    let one = Connector::start(&edge, "default", config, 2);
    let two = Connector::start(&edge, "default", config, 2);
    edge.wait_every_worker(&one.id);
    edge.wait_every_worker(&two.id);
    (edge, roots, one, two)
}

#[test]
fn killing_one_of_two_connectors_under_load_fails_no_get() {
    let backend = Backend::ids(Duration::from_millis(300));
    let (edge, roots, mut a, _b2) = edge_with_two_connectors(&backend, "");

    let ok = Arc::new(AtomicUsize::new(0));
    let bad_gateway = Arc::new(AtomicUsize::new(0));
    let wrong = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let threads: Vec<_> = (0..200u64)
        .map(|n| {
            let (roots, ok, bg, wrong) = (
                roots.clone(),
                ok.clone(),
                bad_gateway.clone(),
                wrong.clone(),
            );
            let addr = edge.https;
            std::thread::spawn(move || {
                let mut s = client::tls(addr, "app.example.com", roots);
                s.sock
                    .set_read_timeout(Some(Duration::from_secs(30)))
                    .unwrap();
                let r = get(&mut s, "app.example.com", &format!("/id/{n}"));
                match r.status {
                    200 if r.body == id_body(n) => {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    502 => {
                        assert!(r.text().contains(&r.header("x-request-id").unwrap()));
                        bg.fetch_add(1, Ordering::SeqCst);
                    }
                    s => wrong.lock().unwrap().push((n, s, r.body.len())),
                }
            })
        })
        .collect();
    // Kill once requests are surely held: the backend has seen some, and
    // each waits 300 ms there.
    wait_for(|| backend.count() >= 40);
    a.kill();
    for t in threads {
        t.join()
            .expect("a client thread failed (hang or torn response)");
    }
    let (ok, bg) = (
        ok.load(Ordering::SeqCst),
        bad_gateway.load(Ordering::SeqCst),
    );
    let resent = backend.count().saturating_sub(200);
    eprintln!(
        "after SIGKILL of one connector: {ok} correct bodies, {bg} answered 502, {resent} GETs sent again"
    );
    assert!(
        wrong.lock().unwrap().is_empty(),
        "{:?}",
        wrong.lock().unwrap()
    );
    // The GETs the dead connector held (the backend saw them once through
    // it) went again through the survivor.
    assert!(resent > 0, "the kill landed while requests were in flight");
    assert_eq!((ok, bg), (200, 0));
    assert!(started.elapsed() < Duration::from_secs(30));
    // After the kill (once the edge has seen its tunnels close) every
    // request goes to the survivor.
    wait_for(|| edge.tunnels_of(&a.id) == 0);
    let mut s = client::tls(edge.https, "app.example.com", roots);
    for n in 0..20 {
        let r = get(&mut s, "app.example.com", &format!("/id/{n}"));
        assert_eq!(r.status, 200);
        assert_eq!(r.body, id_body(n));
    }
}

#[test]
fn rolling_restart_of_two_connectors_fails_no_request() {
    let backend = Backend::ids(Duration::from_millis(20));
    let (edge, roots, mut a, mut c) = edge_with_two_connectors(&backend, "drain_timeout = 10");

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let load: Vec<_> = (0..8u64)
        .map(|t| {
            let (roots, stop, done, failures) =
                (roots.clone(), stop.clone(), done.clone(), failures.clone());
            let addr = edge.https;
            std::thread::spawn(move || {
                let mut s = client::tls(addr, "app.example.com", roots);
                let mut n = t * 100_000;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let r = get(&mut s, "app.example.com", &format!("/id/{n}"));
                    if r.status != 200 || r.body != id_body(n) {
                        failures.lock().unwrap().push((n, r.status, r.text()));
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    for conn in [&mut a, &mut c] {
        let status = conn
            .terminate(Duration::from_secs(15))
            .expect("drained and exited");
        assert!(
            status.success(),
            "exit after SIGTERM: {status:?}\n{}",
            conn.log_text()
        );
        assert!(conn.log_text().contains("draining"), "{}", conn.log_text());
        conn.spawn();
        edge.wait_every_worker(&conn.id);
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::SeqCst);
    for t in load {
        t.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    if !failures.is_empty() {
        let log = edge.stderr();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        panic!(
            "{} failed: {:?}\nedge log (last lines, newest first):\n{}\nconnector {}:\n{}\nconnector {}:\n{}",
            failures.len(),
            &failures[..failures.len().min(5)],
            tail.join("\n"),
            a.id,
            a.log_text(),
            c.id,
            c.log_text()
        );
    }
    eprintln!(
        "rolling restart: {} requests, none failed",
        done.load(Ordering::SeqCst)
    );
    assert!(done.load(Ordering::SeqCst) > 100, "the load ran");
}

#[test]
fn a_slow_reader_does_not_stall_its_tunnel() {
    let backend = Backend::hello();
    let b = EdgeBuilder::new()
        .edge("workers = 1")
        .tunnel()
        .app(&passthrough_app(
            "app",
            "https://app.example.com/",
            backend.addr,
            "",
        ));
    let roots = b.pki.root_store();
    let edge = b.start();
    // One tunnel: everything shares it.
    let _c = Connector::start(&edge, "default", "tunnels = 1\nworkers = 1", 1);
    // A client asks for 64 MiB and reads none of it.
    let mut slow = client::tls(edge.https, "app.example.com", roots.clone());
    slow.write_all(b"GET /__stream/67108864 HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
        .unwrap();
    let mut first = [0u8; 1024];
    let _ = slow.read(&mut first).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    // Others on the same tunnel are served promptly.
    let started = Instant::now();
    for _ in 0..20 {
        let mut s = client::tls(edge.https, "app.example.com", roots.clone());
        let r = get(&mut s, "app.example.com", "/");
        assert_eq!(r.status, 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The stalled response is bounded by flow control, not buffered whole.
    let rss_kib = edge.memory_kib("VmRSS");
    assert!(rss_kib < 200 * 1024, "edge RSS {rss_kib} KiB");
}

#[test]
fn a_post_held_by_a_dying_connector_is_answered_502_and_never_sent_twice() {
    let backend = Backend::start(|_| Reply::ok("done").delay(Duration::from_millis(800)));
    let (edge, roots, mut a, _c) = edge_with_two_connectors(&backend, "");
    let threads: Vec<_> = (0..16u64)
        .map(|n| {
            let roots = roots.clone();
            let addr = edge.https;
            std::thread::spawn(move || {
                let mut s = client::tls(addr, "app.example.com", roots);
                let body = format!("order-{n}");
                let r = postern_e2e::client::request(
                    &mut s,
                    &format!(
                        "POST /orders HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    ),
                );
                r.status
            })
        })
        .collect();
    wait_for(|| backend.count() >= 8);
    a.kill();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 502),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&502),
        "the kill caught some: {statuses:?}"
    );
    let seen = backend.seen.lock().unwrap();
    let mut bodies: Vec<&[u8]> = seen.iter().map(|s| s.body.as_slice()).collect();
    let all = bodies.len();
    bodies.sort();
    bodies.dedup();
    assert_eq!(bodies.len(), all, "a POST reached the backend twice");
}
