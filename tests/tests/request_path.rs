//! The request path's guarantees, each checked through both hops (direct
//! and tunnel): one normal form of the path for routing and forwarding,
//! headers only the edge may set, and a request body never read as a
//! request.

use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use postern_e2e::backend::{Backend, Reply};
use postern_e2e::client::{get, read_response, read_to_close, request};
use postern_e2e::{passthrough_app, Deployment, EdgeBuilder, Hop};

/// A passthrough `/` app in front of `root`, and an `/admin/` app in front
/// of `admin` (disabled when `admin_enabled` is false), both on
/// app.example.com; each backend answers with the path it saw.
fn two_apps(root: &Backend, admin: &Backend, admin_enabled: bool, hop: Hop) -> Deployment {
    let b = EdgeBuilder::new()
        .app(&format!(
            "name = \"root\"\nexternal_url = \"https://app.example.com/\"\ninternal_url = \"http://{}/internal/a/\"\npreauth = \"passthrough\"",
            root.addr
        ))
        .app(&format!(
            "name = \"admin\"\nexternal_url = \"https://app.example.com/admin/\"\ninternal_url = \"http://{}/adm/\"\npreauth = \"passthrough\"\nenabled = {admin_enabled}",
            admin.addr
        ));
    Deployment::start(b, hop)
}

/// An edge (and, through a tunnel, its connector) publishing one
/// passthrough app.
fn one_app(
    name: &str,
    external: &str,
    backend: std::net::SocketAddr,
    extra: &str,
    hop: Hop,
) -> Deployment {
    let b = EdgeBuilder::new().app(&passthrough_app(name, external, backend, extra));
    Deployment::start(b, hop)
}

fn echo_path() -> Backend {
    Backend::start(|s| Reply::ok(s.target.clone()))
}

#[test]
fn paths_are_normalised_once_and_never_escape_the_prefix() {
    for hop in Hop::BOTH {
        let (root, admin) = (echo_path(), echo_path());
        let d = two_apps(&root, &admin, true, hop);
        let mut s = d.connect("app.example.com");
        for probe in [
            "/a/..%2f..%2fsecret",
            "/a/..;/secret",
            "/a/..\\secret",
            "/a/%5c../secret",
            "/a/%252e%252e/secret",
            "/a/%c0%ae%c0%ae/secret",
            "/a/%2e%2e/secret",
            "/admin%2fx",
            "/x/..%2fadmin/x",
            "/x/%00",
        ] {
            let r = get(&mut s, "app.example.com", probe);
            assert_eq!(r.status, 400, "{hop:?} {probe}: {}", r.text());
            s = d.connect("app.example.com");
        }
        assert_eq!(
            root.count() + admin.count(),
            0,
            "{hop:?}: nothing forwarded"
        );
        // Spellings of the admin app's paths reach the admin app, under
        // its own internal prefix, exactly as routed.
        for probe in ["/%61dmin/x", "//admin/x", "/admin//x", "/%61%64%6D%69%6E/x"] {
            let r = get(&mut s, "app.example.com", probe);
            assert_eq!(
                (r.status, r.text().as_str()),
                (200, "/adm/x"),
                "{hop:?} {probe}"
            );
        }
        let r = get(&mut s, "app.example.com", "/b/%7euser/%41?q=%2e%2e/%2f");
        assert_eq!(
            r.text(),
            "/internal/a/b/~user/A?q=%2e%2e/%2f",
            "{hop:?}: the query is left as sent"
        );
        assert_eq!(root.count(), 1);
    }
}

/// An API that puts `/` inside a path segment (`projects/group%2Fname`)
/// opts in with `allow_encoded_slash`: it gets `%2F` as sent, never as a
/// separator, and still no climb out of its prefix.
#[test]
fn encoded_slashes_reach_only_an_app_that_takes_them() {
    for hop in Hop::BOTH {
        let (strict, lenient) = (echo_path(), echo_path());
        let b = EdgeBuilder::new()
            .app(&passthrough_app(
                "strict",
                "https://strict.example.com/",
                strict.addr,
                "",
            ))
            .app(&passthrough_app(
                "api",
                "https://api.example.com/v4/",
                lenient.addr,
                "allow_encoded_slash = true",
            ));
        let d = Deployment::start(b, hop);
        let mut s = d.connect("api.example.com");
        let r = get(
            &mut s,
            "api.example.com",
            "/v4/projects/group%2fname/issues",
        );
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "/projects/group%2Fname/issues"),
            "{hop:?}"
        );
        for probe in ["/v4/..%2f..%2fsecret", "/v4/a%2f..%2f..%2fsecret"] {
            let r = get(&mut s, "api.example.com", probe);
            assert_eq!(r.status, 400, "{hop:?} {probe}: {}", r.text());
            s = d.connect("api.example.com");
        }
        let mut s = d.connect("strict.example.com");
        let r = get(&mut s, "strict.example.com", "/projects/group%2fname");
        assert_eq!(r.status, 400, "{hop:?}: {}", r.text());
        assert!(r.text().contains("encoded `/`"), "{hop:?}: {}", r.text());
        assert_eq!(strict.count(), 0, "{hop:?}");
        assert_eq!(lenient.count(), 1, "{hop:?}");
    }
}

#[test]
fn a_disabled_app_is_not_reachable_by_spelling() {
    for hop in Hop::BOTH {
        let (root, admin) = (echo_path(), echo_path());
        let d = two_apps(&root, &admin, false, hop);
        let mut s = d.connect("app.example.com");
        for probe in ["/admin/x", "/%61dmin/x", "//admin/x", "/ADMIN/../admin/x"] {
            let r = get(&mut s, "app.example.com", probe);
            assert!(
                r.status == 503 || r.status == 400,
                "{hop:?} {probe}: {}",
                r.status
            );
            s = d.connect("app.example.com");
        }
        assert_eq!(root.count() + admin.count(), 0, "{hop:?}");
    }
}

const SPOOFED: &[&str] = &[
    "X-Postern_User",
    "X_Postern-Groups",
    "X-Postern-Email",
    "x_postern_jwt_assertion",
    "Forwarded",
    "X-Real-IP",
    "X_Real_IP",
    "True-Client-IP",
    "X-Original-URL",
    "X-Rewrite-URL",
    "X-Forwarded-Port",
    "X-Forwarded-Prefix",
    "X-Forwarded-Ssl",
    "X_Forwarded_Proto",
    "Postern-Servers",
    "Postern_Host",
];

#[test]
fn clients_cannot_set_the_edges_headers() {
    for hop in Hop::BOTH {
        for trusted in [false, true] {
            let be = Backend::hello();
            let extra = if trusted {
                "trusted_forwarded_for = [\"127.0.0.0/8\"]"
            } else {
                "trusted_forwarded_for = [\"192.0.2.0/24\"]"
            };
            let d = one_app("a", "https://app.example.com/", be.addr, extra, hop);
            let mut s = d.connect("app.example.com");
            let mut req = String::from("GET /p HTTP/1.1\r\nHost: app.example.com\r\n");
            for name in SPOOFED {
                req.push_str(&format!("{name}: forged\r\n"));
            }
            req.push_str("X-Forwarded-For: 203.0.113.9\r\nX_Forwarded_For: 203.0.113.10\r\n\r\n");
            let r = request(&mut s, &req);
            assert_eq!(r.status, 200, "{hop:?}");
            let seen = be.last();
            for (name, value) in &seen.headers {
                assert!(
                    !value.contains("forged"),
                    "{hop:?}: {name}: {value} reached the backend"
                );
            }
            let want = if trusted {
                "203.0.113.9, 203.0.113.10, 127.0.0.1"
            } else {
                "127.0.0.1"
            };
            assert_eq!(
                seen.headers_named("x-forwarded-for").join(", "),
                want,
                "{hop:?} trusted={trusted}"
            );
            assert_eq!(seen.header("x-forwarded-proto"), Some("https"));
            // Underscore spellings of the framing headers are refused.
            let r = request(
                &mut s,
                "POST /p HTTP/1.1\r\nHost: app.example.com\r\nContent_Length: 5\r\n\r\nhello",
            );
            assert_eq!(r.status, 400, "{hop:?}");
            assert_eq!(be.count(), 1, "{hop:?}");
        }
    }
}

/// Apps for the desync probes: `/b/` in front of a recording backend,
/// `/dead/` in front of a port nobody listens on.
fn desync_edge(b: &Backend, hop: Hop) -> Deployment {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap();
    drop(dead);
    let builder = EdgeBuilder::new()
        .app(&format!(
            "name = \"b\"\nexternal_url = \"https://app.example.com/b/\"\ninternal_url = \"http://{}/b/\"\npreauth = \"passthrough\"",
            b.addr
        ))
        .app(&format!(
            "name = \"dead\"\nexternal_url = \"https://app.example.com/dead/\"\ninternal_url = \"http://{dead_addr}/\"\npreauth = \"passthrough\"\nbackend_timeout = 5"
        ));
    Deployment::start(builder, hop)
}

const SMUGGLED: &str = "GET /b/SMUGGLED HTTP/1.1\r\nHost: app.example.com\r\n\r\n";

#[test]
fn a_request_body_is_never_read_as_a_request() {
    for hop in Hop::BOTH {
        let be = Backend::hello();
        let d = desync_edge(&be, hop);
        // An upgrade that carries a body.
        let mut s = d.connect("app.example.com");
        s.sock
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        write!(
            s,
            "GET /b/ws HTTP/1.1\r\nHost: app.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nContent-Length: {}\r\n\r\n{SMUGGLED}",
            SMUGGLED.len()
        )
        .unwrap();
        let (text, closed) = read_to_close(&mut s);
        assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{hop:?}: {text:?}");
        assert!(closed, "{hop:?}: the connection must close");
        // A POST whose backend fails before reading the body, small and
        // 400 KB, sent in one write.
        for copies in [1, 400 * 1024 / SMUGGLED.len()] {
            let body = SMUGGLED.repeat(copies);
            let mut s = d.connect("app.example.com");
            s.sock
                .set_read_timeout(Some(Duration::from_secs(3)))
                .unwrap();
            let req = format!(
                "POST /dead/upload HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = s.write_all(req.as_bytes());
            let (text, closed) = read_to_close(&mut s);
            assert!(
                text.starts_with("HTTP/1.1 502") || text.starts_with("HTTP/1.1 504"),
                "{hop:?}: {text}"
            );
            assert_eq!(text.matches("HTTP/1.1 ").count(), 1, "{hop:?}");
            // Kept open only when the whole body was read (a small one
            // may be); a cut body always closes.
            if copies > 1 {
                assert!(closed && text.contains("Connection: close"), "{hop:?}");
            }
        }
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(be.count(), 0, "{hop:?}: a body was served as a request");
    }
}

#[test]
fn a_changed_app_table_applies_to_kept_alive_connections() {
    for hop in Hop::BOTH {
        let be = Backend::hello();
        let d = one_app("a", "https://app.example.com/", be.addr, "", hop);
        let mut s = d.connect("app.example.com");
        assert_eq!(get(&mut s, "app.example.com", "/").status, 200);
        let (status, v) = d.edge.admin("POST", "/v1/apps/a/disable", None);
        assert_eq!(status, 200, "{v}");
        d.edge.wait_for_version(v["version"].as_u64().unwrap());
        assert_eq!(
            get(&mut s, "app.example.com", "/").status,
            503,
            "{hop:?}: the same connection sees the change"
        );
        assert_eq!(be.count(), 1);
    }
}

/// A backend that answers the first request on each connection and keeps
/// it open, then reads the second request and closes without answering,
/// as a server that crashed mid-request would. Counts requests by method.
struct FlakyBackend {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

impl FlakyBackend {
    fn start() -> FlakyBackend {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let rec = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let rec = rec.clone();
                std::thread::spawn(move || {
                    let mut r = BufReader::new(stream);
                    for n in 0.. {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let mut length = 0;
                        loop {
                            let mut h = String::new();
                            if r.read_line(&mut h).unwrap_or(0) == 0 {
                                return;
                            }
                            if h == "\r\n" {
                                break;
                            }
                            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:")
                            {
                                length = v.trim().parse().unwrap_or(0);
                            }
                        }
                        let mut body = vec![0u8; length];
                        let _ = r.read_exact(&mut body);
                        let method = line.split(' ').next().unwrap_or("").to_string();
                        rec.lock().unwrap().push(method);
                        if n >= 1 {
                            return; // processed, then gone without a word
                        }
                        let _ = r
                            .get_mut()
                            .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                    }
                });
            }
        });
        FlakyBackend { addr, seen }
    }

    fn count(&self, method: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|m| *m == method)
            .count()
    }
}

#[test]
fn a_request_that_may_have_been_processed_is_never_sent_twice() {
    for hop in Hop::BOTH {
        let be = FlakyBackend::start();
        let b = EdgeBuilder::new().edge("workers = 1").app(&passthrough_app(
            "a",
            "https://app.example.com/",
            be.addr,
            "",
        ));
        let d = match hop {
            Hop::Direct => Deployment::start(b, hop),
            Hop::Tunnel => {
                // One connector runtime, so its pool holds one connection.
                let b = b.tunnel();
                let roots = b.pki.root_store();
                let edge = b.start();
                let c = postern_e2e::connector::Connector::start(
                    &edge,
                    "default",
                    "workers = 1\ntunnels = 1",
                    1,
                );
                Deployment {
                    edge,
                    connector: Some(c),
                    roots,
                }
            }
        };
        for method in ["POST", "DELETE", "GET"] {
            // Prime a pooled connection, then use it again.
            let mut s = d.connect("app.example.com");
            let r = request(
                &mut s,
                "GET /prime HTTP/1.1\r\nHost: app.example.com\r\n\r\n",
            );
            assert_eq!(r.status, 200, "{hop:?}");
            let before = be.count(method);
            let r = request(
                &mut s,
                &format!(
                    "{method} /x HTTP/1.1\r\nHost: app.example.com\r\nContent-Length: 0\r\n\r\n"
                ),
            );
            let sent = be.count(method) - before;
            if method == "GET" {
                // Safe: tried again on a fresh connection, which answers.
                assert_eq!((r.status, sent), (200, 2), "{hop:?} {method}");
            } else {
                assert_eq!(r.status, 502, "{hop:?} {method}");
                assert_eq!(sent, 1, "{hop:?}: {method} must reach the backend once");
            }
        }
    }
}

#[test]
fn source_addresses_are_enforced() {
    for hop in Hop::BOTH {
        let be = Backend::hello();
        let b = EdgeBuilder::new()
            .app(&passthrough_app(
                "outside",
                "https://app.example.com/",
                be.addr,
                "access = { source_cidrs = [\"192.0.2.0/24\", \"2001:db8::/32\"] }",
            ))
            .app(&passthrough_app(
                "inside",
                "https://app.example.com/in/",
                be.addr,
                "access = { source_cidrs = [\"10.0.0.0/8\", \"127.0.0.0/8\"] }",
            ));
        let d = Deployment::start(b, hop);
        let mut s = d.connect("app.example.com");
        let r = get(&mut s, "app.example.com", "/x");
        assert_eq!(r.status, 403, "{hop:?}");
        assert_eq!(be.count(), 0, "{hop:?}");
        let r = get(&mut s, "app.example.com", "/in/x");
        assert_eq!(r.status, 200, "{hop:?}");
        let (_, c) = d.edge.admin("GET", "/v1/counters", None);
        assert_eq!(
            c["apps"]["outside"]["failed_by_reason"]["forbidden"], 1,
            "{c}"
        );
    }
}

#[test]
fn apps_pointing_at_the_edge_are_refused_and_loops_end_in_508() {
    // Pointing at the edge's own addresses is refused at validation.
    let be = Backend::hello();
    let edge = EdgeBuilder::new()
        .app(&passthrough_app(
            "a",
            "https://app.example.com/",
            be.addr,
            "",
        ))
        .start();
    let admin = edge.admin;
    for internal in [
        format!("http://{admin}/"),
        format!("http://localhost:{}/", admin.port()),
        format!("http://[::ffff:127.0.0.1]:{}/", admin.port()),
        format!("http://0.0.0.0:{}/", admin.port()),
        format!("https://127.0.0.1:{}/", edge.https.port()),
    ] {
        let body = format!(
            "{{\"name\": \"self\", \"external_url\": \"https://self.example.com/\", \"internal_url\": \"{internal}\", \"preauth\": \"passthrough\"}}"
        );
        let (status, v) = edge.admin("POST", "/v1/apps", Some(&body));
        assert_eq!(status, 422, "{internal}: {v}");
        assert!(v.to_string().contains("the edge itself"), "{internal}: {v}");
    }
    // Two edges pointing at each other: the loop ends at the first edge
    // that sees its own mark, with 508.
    let app = |port: u16| {
        format!(
            "name = \"loop\"\nexternal_url = \"http://loop.example.com/\"\ninternal_url = \"http://127.0.0.1:{port}/\"\npreauth = \"passthrough\"\ncookie = {{ secure = false }}\ntranslate_headers = false"
        )
    };
    let (dir_a, path_a, https_a, http_a) = EdgeBuilder::new().write();
    let (dir_b, path_b, https_b, http_b) = EdgeBuilder::new().app(&app(http_a.port())).write();
    let mut cfg = std::fs::read_to_string(&path_a).unwrap();
    cfg.push_str(&format!("\n[[app]]\n{}\n", app(http_b.port())));
    std::fs::write(&path_a, cfg).unwrap();
    let a = postern_e2e::Edge::start_with(dir_a, &path_a, https_a, http_a);
    let _b = postern_e2e::Edge::start_with(dir_b, &path_b, https_b, http_b);
    let (text, _) = postern_e2e::client::raw_exchange(
        a.http,
        b"GET / HTTP/1.1\r\nHost: loop.example.com\r\nConnection: close\r\n\r\n",
    );
    assert!(text.starts_with("HTTP/1.1 508 "), "{text}");
}

#[test]
fn sticky_sessions_across_two_servers_and_failover() {
    for hop in Hop::BOTH {
        let one = Backend::start(|_| Reply::ok("server-one"));
        let two = Backend::start(|_| Reply::ok("server-two"));
        let d = one_app(
            "web",
            "https://app.example.com/shop/",
            one.addr,
            &format!("internal_servers = [\"{}\"]\nsticky = \"cookie\"", two.addr),
            hop,
        );

        // Without a cookie, requests spread over both servers.
        let mut seen = std::collections::HashSet::new();
        let mut cookie = None;
        for _ in 0..8 {
            let mut s = d.connect("app.example.com");
            let r = get(&mut s, "app.example.com", "/shop/");
            assert_eq!(r.status, 200, "{hop:?}");
            seen.insert(r.text());
            cookie = r.header("set-cookie");
        }
        assert_eq!(seen.len(), 2, "{hop:?}: both servers used: {seen:?}");
        let cookie = cookie.expect("an affinity cookie");
        assert!(cookie.starts_with("postern-affinity="), "{cookie}");
        assert!(
            cookie.contains("; Path=/shop/;") && cookie.ends_with("; Secure"),
            "{hop:?}: scoped to the app, secure over https: {cookie}"
        );
        let pair = cookie.split(';').next().unwrap().to_string();

        // With it, every request lands on the same server.
        let mut s = d.connect("app.example.com");
        let mut first = None;
        for _ in 0..10 {
            let r = request(
                &mut s,
                &format!("GET /shop/ HTTP/1.1\r\nHost: app.example.com\r\nCookie: {pair}\r\n\r\n"),
            );
            assert_eq!(r.status, 200);
            assert!(
                r.header("set-cookie").is_none(),
                "{hop:?}: no new cookie while it holds"
            );
            let who = r.text();
            assert_eq!(first.get_or_insert(who.clone()), &who, "{hop:?}");
        }

        // That server goes away: the session fails over, with a new cookie.
        let first = first.unwrap();
        let (gone, other) = if first == "server-one" {
            (one, "server-two")
        } else {
            (two, "server-one")
        };
        gone.stop();
        let mut s = d.connect("app.example.com");
        let r = request(
            &mut s,
            &format!("GET /shop/ HTTP/1.1\r\nHost: app.example.com\r\nCookie: {pair}\r\n\r\n"),
        );
        assert_eq!(r.status, 200, "{hop:?}: {}", r.text());
        assert_eq!(r.text(), other, "{hop:?}");
        let moved = r.header("set-cookie").expect("a cookie for the new server");
        assert_ne!(moved.split(';').next().unwrap(), pair, "{hop:?}");
    }
}

/// A backend that authenticates connections, as IIS does with NTLM: a
/// three-step handshake on one connection, after which that connection
/// is served as the signed-in user without further credentials.
fn ntlm_backend() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut r = BufReader::new(stream);
                let mut user: Option<String> = None;
                let mut challenged = false;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let mut auth = None;
                    loop {
                        let mut h = String::new();
                        if r.read_line(&mut h).unwrap_or(0) == 0 {
                            return;
                        }
                        if h == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = h.split_once(':') {
                            if k.eq_ignore_ascii_case("authorization") {
                                auth = Some(v.trim().to_string());
                            }
                        }
                    }
                    let reply = match auth.as_deref() {
                        Some("NTLM TlRMTVNTUAABAAAA") => {
                            challenged = true;
                            ("401 Unauthorized", "NTLM TlRMTVNTUAACAAAA", String::new())
                        }
                        Some(a) if a.starts_with("NTLM TlRMTVNTUAADAAAA-") && challenged => {
                            user = Some(a["NTLM TlRMTVNTUAADAAAA-".len()..].to_string());
                            ("200 OK", "", format!("hello {}", user.as_deref().unwrap()))
                        }
                        _ => match &user {
                            Some(u) => ("200 OK", "", format!("hello {u}")),
                            None => ("401 Unauthorized", "NTLM", String::new()),
                        },
                    };
                    let www = if reply.1.is_empty() {
                        String::new()
                    } else {
                        format!("WWW-Authenticate: {}\r\n", reply.1)
                    };
                    let resp = format!(
                        "HTTP/1.1 {}\r\n{www}Content-Length: {}\r\n\r\n{}",
                        reply.0,
                        reply.2.len(),
                        reply.2
                    );
                    if r.get_mut().write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn windows_authentication_never_leaks_to_another_client() {
    for hop in Hop::BOTH {
        let be = ntlm_backend();
        let b = EdgeBuilder::new()
            .app(&passthrough_app(
                "intranet",
                "https://app.example.com/",
                be,
                "",
            ))
            .app(&passthrough_app(
                "other",
                "https://app.example.com/other/",
                be,
                "",
            ));
        let d = Deployment::start(b, hop);
        let get_as = |s: &mut dyn postern_e2e::client::Stream, path: &str, auth: Option<&str>| {
            let auth = auth.map_or(String::new(), |a| format!("Authorization: {a}\r\n"));
            request(
                s,
                &format!("GET {path} HTTP/1.1\r\nHost: app.example.com\r\n{auth}\r\n"),
            )
        };
        // Alice signs in on her connection, and stays signed in on it.
        let mut alice = d.connect("app.example.com");
        let r = get_as(&mut alice, "/", None);
        assert_eq!(r.status, 401, "{hop:?}");
        let r = get_as(&mut alice, "/", Some("NTLM TlRMTVNTUAABAAAA"));
        assert_eq!(
            (r.status, r.header("www-authenticate").as_deref()),
            (401, Some("NTLM TlRMTVNTUAACAAAA")),
            "{hop:?}"
        );
        let r = get_as(&mut alice, "/", Some("NTLM TlRMTVNTUAADAAAA-alice"));
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "hello alice"),
            "{hop:?}"
        );
        for _ in 0..3 {
            let r = get_as(&mut alice, "/", None);
            assert_eq!(
                (r.status, r.text().as_str()),
                (200, "hello alice"),
                "{hop:?}"
            );
        }
        // Nobody else is ever served on Alice's backend connection, on
        // this app or another one in front of the same server.
        for round in 0..6 {
            let mut bob = d.connect("app.example.com");
            let path = if round % 2 == 0 { "/" } else { "/other/" };
            let r = get_as(&mut bob, path, None);
            assert_eq!(r.status, 401, "{hop:?} {path}: {}", r.text());
            let r = get_as(&mut alice, "/", None);
            assert_eq!(r.text(), "hello alice", "{hop:?}");
        }
    }
}

/// Sends a WebSocket upgrade for `/ws` on app.example.com; returns the
/// answer and whatever arrived after its head.
fn websocket_upgrade(
    s: &mut dyn postern_e2e::client::Stream,
) -> (postern_e2e::client::Response, Vec<u8>) {
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: app.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
    )
    .unwrap();
    let mut pending = Vec::new();
    let r = read_response(s, &mut pending, "GET").unwrap();
    (r, pending)
}

#[test]
fn websocket_keeps_cookies_and_carries_both_directions() {
    for hop in Hop::BOTH {
        let be = Backend::start(|_| {
            Reply::ok("")
                .status(101)
                .header("Upgrade", "websocket")
                .header("Connection", "Upgrade")
                .header("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
                .header("Set-Cookie", "affinity=1; Path=/")
        });
        let d = one_app("ws", "https://app.example.com/", be.addr, "", hop);
        let mut s = d.connect("app.example.com");
        let (r, mut pending) = websocket_upgrade(&mut s);
        assert_eq!(r.status, 101, "{hop:?}");
        assert_eq!(
            r.header("set-cookie").as_deref(),
            Some("affinity=1; Path=/"),
            "{hop:?}: the 101's cookies are kept"
        );
        assert_eq!(
            r.header("sec-websocket-accept").as_deref(),
            Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="),
            "{hop:?}"
        );
        let seen = be.last();
        assert_eq!(seen.method, "GET", "{hop:?}");
        assert_eq!(seen.header("upgrade"), Some("websocket"), "{hop:?}");
        assert_eq!(
            seen.header("sec-websocket-key"),
            Some("dGhlIHNhbXBsZSBub25jZQ=="),
            "{hop:?}"
        );
        // The backend echoes what it gets after its 101.
        for round in 0..3 {
            let msg = format!("frame-{round}-{}", "x".repeat(round * 5000));
            s.write_all(msg.as_bytes()).unwrap();
            let mut got = std::mem::take(&mut pending);
            while got.len() < msg.len() {
                let mut buf = [0u8; 8192];
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "{hop:?}: closed early");
                got.extend_from_slice(&buf[..n]);
            }
            assert_eq!(got, msg.as_bytes(), "{hop:?}");
        }
    }
}

/// A WebSocket backend that, after its 101, floods the client with
/// 64 MiB it never expects read, while it counts what the client sends;
/// `got` learns once `want` bytes have arrived.
fn flooding_ws_backend(want: usize) -> (std::net::SocketAddr, std::sync::mpsc::Receiver<usize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (got, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else {
            return;
        };
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read(&mut byte).unwrap_or(0) == 0 {
                return;
            }
            head.push(byte[0]);
        }
        s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n").unwrap();
        let mut w = s.try_clone().unwrap();
        std::thread::spawn(move || {
            let chunk = vec![b'f'; 1 << 20];
            for _ in 0..64 {
                if w.write_all(&chunk).is_err() {
                    return;
                }
            }
        });
        let mut n = 0;
        let mut buf = vec![0u8; 64 * 1024];
        while n < want {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(k) => n += k,
            }
        }
        let _ = got.send(n);
    });
    (addr, rx)
}

#[test]
fn websocket_directions_never_wait_for_each_other() {
    const UP: usize = 256 * 1024;
    for hop in Hop::BOTH {
        let (addr, got) = flooding_ws_backend(UP);
        let d = one_app("ws", "https://app.example.com/", addr, "", hop);
        let mut s = d.connect("app.example.com");
        let (r, _) = websocket_upgrade(&mut s);
        assert_eq!(r.status, 101, "{hop:?}");
        // The client reads nothing while the backend floods it: the relay's
        // writes toward the client stall once every buffer on the way is
        // full. What the client sends must still reach the backend.
        std::thread::sleep(Duration::from_secs(1));
        for piece in vec![b'u'; UP].chunks(16 * 1024) {
            s.write_all(piece).unwrap();
        }
        assert_eq!(
            got.recv_timeout(Duration::from_secs(10)),
            Ok(UP),
            "{hop:?}: the client's bytes waited behind the stalled direction"
        );
        // And the stalled direction is still alive.
        let mut buf = [0u8; 4096];
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0 && buf[..n].iter().all(|&b| b == b'f'), "{hop:?}");
    }
}
