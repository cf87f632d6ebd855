use super::*;

const BASE: &str = r#"
[[listener]]
address = "127.0.0.1:8443"
scheme = "https"
public_port = 443

[[listener]]
address = "127.0.0.1:8080"
scheme = "http"
public_port = 80

[[certificate]]
cert_file = "cert.pem"
key_file = "key.pem"
"#;

fn parse(apps: &str) -> Result<EdgeConfig, ConfigError> {
    parse_str(
        &format!("{BASE}\n{apps}"),
        "test.toml",
        Path::new("/etc/postern"),
    )
}

#[test]
fn defaults_match_the_product_table() {
    let cfg = parse(
        r#"
[[app]]
name = "expenses"
external_url = "https://expenses.example.com/"
internal_url = "http://expenses.corp:8080/"
preauth = "passthrough"
"#,
    )
    .unwrap();
    let a = &cfg.apps[0];
    assert_eq!(a.backend_timeout.duration(), Duration::from_secs(85));
    assert!(a.translate_headers && !a.translate_body && a.validate_backend_tls);
    assert!(a.websocket && a.enabled && a.hsts.is_none());
    assert_eq!(a.connector_group, "default");
    assert_eq!(a.cors_preflight, CorsPreflight::Deny);
    assert_eq!(
        a.cookie,
        CookieSettings {
            http_only: true,
            secure: true,
            persistent: false,
            same_site: SameSite::Lax
        }
    );
    assert_eq!(
        cfg.certificates[0].cert_file,
        Path::new("/etc/postern/cert.pem")
    );
}

#[test]
fn every_setting_parses() {
    let cfg = parse(
        r#"
[identity_provider]
issuer = "https://login.example.com/"
client_id = "postern"

[[app]]
name = "hr"
external_url = "https://*.example.com/hr/"
internal_url = "https://*.corp:8443/"
internal_servers = ["hr2.corp:8443", "10.0.0.7:8443"]
sticky = "cookie"
internal_protocol = "http1"
preauth = "oidc"
connector_group = "emea"
backend_timeout = 3600
translate_headers = false
translate_body = true
validate_backend_tls = false
backend_ca_file = "ca.pem"
cookie = { http_only = true, secure = true, persistent = true, same_site = "strict" }
hsts = { max_age = 63072000, include_subdomains = true, preload = true }
homepage_url = "https://hr.example.com/hr/start"
access = { users = ["a@example.com"], email_domains = ["example.com"], groups = ["g1"], claims = { dept = "hr" }, require_mfa = true, source_cidrs = ["10.0.0.0/8", "2001:db8::/32"] }
sso = { headers = true, assertion = true }
cors_preflight = "allow"
websocket = false
enabled = false
"#,
    )
    .unwrap();
    let a = &cfg.apps[0];
    assert_eq!(a.backend_timeout, BackendTimeout::Seconds(3600));
    assert_eq!(a.internal_servers[1], ("10.0.0.7".to_string(), 8443));
    assert_eq!(
        a.hsts.as_ref().unwrap().header_value(),
        "max-age=63072000; includeSubDomains; preload"
    );
    assert_eq!(a.access.source_cidrs.len(), 2);
    assert!(!a.enabled && !a.websocket);
}

fn problems(apps: &str) -> Vec<String> {
    parse(apps).unwrap_err().problems
}

#[test]
fn errors_name_the_app_the_field_and_the_reason() {
    let p = problems(
        r#"
[[app]]
name = "expenses"
external_url = "https://expenses.example.com"
internal_url = "http://expenses.corp:8080/"
preauth = "passthrough"
backend_timeout = 4000
"#,
    );
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p[0].starts_with("app \"expenses\": external_url:") && p[0].contains("trailing slash"));
    assert!(p[1].starts_with("app \"expenses\": backend_timeout: 4000 seconds is out of range"));
}

#[test]
fn unknown_keys_are_errors() {
    let p = problems(
        r#"
[[app]]
name = "x"
external_url = "https://x.example.com/"
internal_url = "http://x.corp/"
translate_bodies = true
"#,
    );
    assert!(p[0].contains("unknown field `translate_bodies`"), "{p:?}");
    assert!(p[0].contains("line"), "{p:?}");
}

#[test]
fn oidc_without_a_provider_is_refused() {
    let p = problems(
        r#"
[[app]]
name = "x"
external_url = "https://x.example.com/"
internal_url = "http://x.corp/"
"#,
    );
    assert!(p[0].starts_with("app \"x\": preauth:"), "{p:?}");
}

#[test]
fn duplicate_routes_and_names_are_refused() {
    let p = problems(
        r#"
[[app]]
name = "a"
external_url = "https://x.example.com/"
internal_url = "http://x.corp/"
preauth = "passthrough"
[[app]]
name = "a"
external_url = "https://X.example.com/"
internal_url = "http://y.corp/"
preauth = "passthrough"
"#,
    );
    assert_eq!(p.len(), 2, "{p:?}");
    assert!(p[0].contains("name: used by more than one app"));
    assert!(p[1].contains("already published by app \"a\""));
}

#[test]
fn external_url_needs_a_listener_and_no_reserved_suffix() {
    let p = parse_str(
        &format!(
            "[edge]\nreserved_suffixes = [\"edge.internal\"]\n{BASE}\n{}",
            r#"
[[app]]
name = "a"
external_url = "https://x.example.com:9443/"
internal_url = "http://x.corp/"
preauth = "passthrough"
[[app]]
name = "b"
external_url = "https://b.edge.internal/"
internal_url = "http://x.corp/"
preauth = "passthrough"
"#
        ),
        "t",
        Path::new("/"),
    )
    .unwrap_err()
    .problems;
    assert!(p[0].contains("not served by any listener"), "{p:?}");
    assert!(p[1].contains("reserved suffix"), "{p:?}");
}

#[test]
fn cidrs() {
    assert!(parse_cidr("10.0.0.0/8").is_some());
    assert!(parse_cidr("10.0.0.1").is_some());
    assert!(parse_cidr("10.0.0.0/33").is_none());
    assert!(parse_cidr("10.0.0.0/+8").is_none());
    assert!(parse_cidr("::/0").is_some());
    let c = |s: &str| parse_cidr(s).unwrap();
    let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
    assert!(c("10.0.0.0/8").contains(ip("10.200.1.1")));
    assert!(!c("10.0.0.0/8").contains(ip("11.0.0.1")));
    assert!(c("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")));
    assert!(c("0.0.0.0/0").contains(ip("203.0.113.9")));
    assert!(c("192.0.2.7").contains(ip("192.0.2.7")));
    assert!(!c("192.0.2.7").contains(ip("192.0.2.8")));
    assert!(c("2001:db8::/32").contains(ip("2001:db8:1::1")));
    assert!(!c("2001:db8::/32").contains(ip("2001:db9::1")));
    assert!(c("::/0").contains(ip("::1")));
    assert!(!c("::/0").contains(ip("10.0.0.1")));
}

#[test]
fn the_decoded_size_guard_has_a_default_and_a_range() {
    let cfg = parse("").unwrap();
    assert_eq!(cfg.edge.translate_max_decoded_size, 64 << 20);
    let cfg = parse_str(
        &format!("[edge]\ntranslate_max_decoded_mib = 2\n{BASE}"),
        "test.toml",
        Path::new("/etc/postern"),
    )
    .unwrap();
    assert_eq!(cfg.edge.translate_max_decoded_size, 2 << 20);
    let err = parse_str(
        &format!("[edge]\ntranslate_max_decoded_mib = 0\n{BASE}"),
        "test.toml",
        Path::new("/etc/postern"),
    )
    .unwrap_err();
    assert!(
        err.problems[0].contains("edge.translate_max_decoded_mib: 0 is outside 1..=4096"),
        "{err}"
    );
}

#[test]
fn apps_cannot_point_at_the_edge_itself() {
    let app = |internal: &str, extra: &str| {
        parse(&format!(
            "[[app]]\nname = \"x\"\nexternal_url = \"https://x.example.com/\"\ninternal_url = \"{internal}\"\npreauth = \"passthrough\"\n{extra}"
        ))
    };
    // The admin API (default 127.0.0.1:9090) and the listeners, by alias.
    for internal in [
        "http://127.0.0.1:9090/",
        "http://localhost:9090/",
        "http://[::ffff:127.0.0.1]:9090/",
        "http://0.0.0.0:9090/",
        "http://[::1]:9090/",
        "http://127.0.0.1:8443/",
        "https://localhost:8443/",
        "http://localhost:8080/",
        "http://2130706433:8080/",
        "http://app.localhost:8080/",
    ] {
        let e = app(internal, "").expect_err(internal);
        assert!(
            e.problems
                .iter()
                .any(|p| p.contains("internal_url") && p.contains("the edge itself")),
            "{internal}: {e}"
        );
    }
    let e = app(
        "http://10.0.0.1/",
        "internal_servers = [\"localhost:9090\"]",
    )
    .unwrap_err();
    assert!(e.problems[0].contains("internal_servers[0]"), "{e}");
    // Another port on this machine is a backend like any other.
    assert!(app("http://127.0.0.1:9091/", "").is_ok());
    // Link-local and metadata addresses need the app to say so.
    for internal in [
        "http://169.254.169.254/",
        "http://metadata.google.internal/",
        "http://[fe80::1]:8080/",
    ] {
        let e = app(internal, "").expect_err(internal);
        assert!(e.to_string().contains("allow_link_local"), "{e}");
        assert!(
            app(internal, "allow_link_local = true").is_ok(),
            "{internal}"
        );
    }
}

#[test]
fn http2_backends_are_refused_until_they_are_served() {
    for (protocol, url) in [("h2", "https://app.corp/"), ("h2c", "http://app.corp/")] {
        let e = parse(&format!(
            r#"
[[app]]
name = "grpc"
external_url = "https://grpc.example.com/"
internal_url = "{url}"
internal_protocol = "{protocol}"
preauth = "passthrough"
"#
        ))
        .unwrap_err();
        assert_eq!(
            e.problems,
            ["app \"grpc\": internal_protocol: HTTP/2 to backends is not available in this version; use `http1` (the default)"],
            "{protocol}"
        );
    }
}
