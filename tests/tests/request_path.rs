//! The request path's guarantees, each checked through both hops (direct
//! and tunnel): one normal form of the path for routing and forwarding,
//! headers only the edge may set, and a request body never read as a
//! request.

use postern_e2e::backend::{Backend, Reply};
use postern_e2e::client::{get, request};
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
            let b = EdgeBuilder::new().app(&passthrough_app(
                "a",
                "https://app.example.com/",
                be.addr,
                extra,
            ));
            let d = Deployment::start(b, hop);
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
