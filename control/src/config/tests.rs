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
fn http2_backends_need_the_matching_scheme_and_one_server() {
    let app = |protocol: &str, url: &str, extra: &str| {
        parse(&format!(
            r#"
[[app]]
name = "grpc"
external_url = "https://grpc.example.com/"
internal_url = "{url}"
internal_protocol = "{protocol}"
preauth = "passthrough"
{extra}
"#
        ))
    };
    for (protocol, url) in [("h2", "https://app.corp/"), ("h2c", "http://app.corp/")] {
        let cfg = app(protocol, url, "").unwrap();
        assert_ne!(cfg.apps[0].internal_protocol, InternalProtocol::Http1);
        let e = app(protocol, url, "internal_servers = [\"b.corp:443\"]").unwrap_err();
        assert_eq!(
            e.problems,
            ["app \"grpc\": internal_servers: not available with HTTP/2 backends yet; an h2 or h2c app has one server (its internal_url)"],
            "{protocol}"
        );
    }
    let e = app("h2", "http://app.corp/", "").unwrap_err();
    assert_eq!(
        e.problems,
        ["app \"grpc\": internal_protocol: `h2` needs an https internal_url (use `h2c` for cleartext)"]
    );
}

const TWO_PROVIDERS: &str = r#"
[[identity_provider]]
name = "staff"
issuer = "https://login.example.com/staff"
client_id = "postern"
client_secret_file = "staff.secret"

[[identity_provider]]
name = "partners"
issuer = "https://partners.example.net/"
client_id = "postern-p"
private_key_file = "partners.pem"
clock_skew = 30
ca_file = "partners-ca.pem"
scopes = ["openid", "email"]
"#;

fn oidc_app(name: &str, provider: Option<&str>) -> String {
    format!(
        "[[app]]\nname = \"{name}\"\nexternal_url = \"https://{name}.example.com/\"\ninternal_url = \"http://{name}.corp/\"\n{}",
        provider.map_or(String::new(), |p| format!("identity_provider = \"{p}\"\n"))
    )
}

#[test]
fn several_named_providers_and_apps_that_name_theirs() {
    let cfg = parse(&format!(
        "{TWO_PROVIDERS}\n{}\n{}",
        oidc_app("hr", Some("staff")),
        oidc_app("portal", Some("partners"))
    ))
    .unwrap();
    let p = &cfg.identity_providers;
    assert_eq!(p.len(), 2);
    assert_eq!(
        p[0].client_auth,
        ClientAuth::SecretFile("/etc/postern/staff.secret".into())
    );
    assert_eq!(p[0].clock_skew, 60);
    assert_eq!(
        p[1].client_auth,
        ClientAuth::PrivateKeyJwt("/etc/postern/partners.pem".into())
    );
    assert_eq!(p[1].clock_skew, 30);
    assert_eq!(
        p[1].ca_file.as_deref(),
        Some(Path::new("/etc/postern/partners-ca.pem"))
    );
    assert_eq!(cfg.apps[0].identity_provider.as_deref(), Some("staff"));
    assert_eq!(cfg.apps[1].identity_provider.as_deref(), Some("partners"));

    // One unnamed provider is `default`, and apps need not name it.
    let one = parse(&format!(
        "[identity_provider]\nissuer = \"https://login.example.com/\"\nclient_id = \"c\"\n{}",
        oidc_app("hr", None)
    ))
    .unwrap();
    assert_eq!(one.identity_providers[0].name, "default");
    assert_eq!(one.identity_providers[0].client_auth, ClientAuth::None);
    assert_eq!(one.apps[0].identity_provider.as_deref(), Some("default"));
}

#[test]
fn provider_mistakes_are_named() {
    let p = problems(&format!(
        "{TWO_PROVIDERS}\n{}\n{}\n{}",
        oidc_app("a", None),
        oidc_app("b", Some("contractors")),
        "[[app]]\nname = \"c\"\nexternal_url = \"https://c.example.com/\"\ninternal_url = \"http://c.corp/\"\npreauth = \"passthrough\"\nidentity_provider = \"staff\"\n"
    ));
    assert_eq!(p.len(), 3, "{p:?}");
    assert!(
        p[0].starts_with(
            "app \"a\": identity_provider: several providers are configured (staff, partners)"
        ),
        "{p:?}"
    );
    assert!(p[1].starts_with("app \"b\": identity_provider: `contractors` is not configured (configured: staff, partners)"), "{p:?}");
    assert!(
        p[2].starts_with("app \"c\": identity_provider: only apps with preauth"),
        "{p:?}"
    );

    let p = problems(
        r#"
[[identity_provider]]
issuer = "https://a.example.com/"
client_id = "c"
client_secret_file = "s"
private_key_file = "k"
clock_skew = 601

[[identity_provider]]
issuer = "ftp://b.example.com/"
client_id = ""
"#,
    );
    assert_eq!(p.len(), 5, "{p:?}");
    assert!(p[0].contains("client_secret_file and private_key_file are exclusive"));
    assert!(p[1].contains("clock_skew: 601 is out of range"));
    assert!(p[2].contains("a second provider with this name"));
    assert!(p[3].contains("issuer: `ftp://b.example.com/` is not an http(s) URL"));
    assert!(p[4].contains("client_id: must not be empty"));

    // A misspelt key in a provider table is named.
    let e = parse("[identity_provider]\nissuer = \"https://a/\"\nclient_id = \"c\"\nclient_secrt_file = \"x\"\n")
        .unwrap_err();
    assert!(e.to_string().contains("client_secrt_file"), "{e}");
}

#[test]
fn an_http_app_needs_no_cookie_setting_but_refuses_a_secure_one() {
    let cfg = parse(
        r#"
[[app]]
name = "plain"
external_url = "http://plain.example.com/"
internal_url = "http://plain.corp/"
preauth = "passthrough"
"#,
    )
    .unwrap();
    assert!(!cfg.apps[0].cookie.secure);
    let p = problems(
        r#"
[[app]]
name = "plain"
external_url = "http://plain.example.com/"
internal_url = "http://plain.corp/"
preauth = "passthrough"
cookie = { secure = true }
"#,
    );
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(p[0].starts_with("app \"plain\": cookie.secure:"), "{p:?}");
}
