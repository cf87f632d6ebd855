//! Pre-authentication end to end: the real `postern` binary signs users
//! in at a real OpenID provider (`oidc-provider` under Node), over the
//! direct and the tunnel path alike.

use postern_e2e::backend::{Backend, Reply};
use postern_e2e::client;
use postern_e2e::idp::{absolute, idp_config, provider_toml, Browser, Idp};
use postern_e2e::{Deployment, EdgeBuilder, Hop, TempDir};
use serde_json::json;

const APP: &str = "https://app.example.com/";

fn users() -> serde_json::Value {
    json!([
        {"id": "alice", "password": "pw-alice", "email": "alice@example.com", "name": "Alice",
         "groups": ["staff", "finance"]},
        {"id": "mallory", "password": "pw-mallory", "email": "mallory@evil.example", "groups": []},
    ])
}

/// A backend that echoes the identity headers and cookies it got.
fn echo_backend() -> Backend {
    Backend::start(|seen| {
        let h = |n: &str| seen.headers_named(n).join("|");
        Reply::ok(format!(
            "path={} user={} email={} groups={} cookie={} assertion={}",
            seen.target,
            h("x-postern-user"),
            h("x-postern-email"),
            h("x-postern-groups"),
            h("cookie"),
            !h("x-postern-jwt-assertion").is_empty(),
        ))
    })
}

struct Setup {
    d: Deployment,
    idp: Idp,
    backend: Backend,
    _secrets: TempDir,
}

fn setup(hop: Hop, app_extra: &str) -> Setup {
    let backend = echo_backend();
    let other = format!(
        "name = \"other\"\nexternal_url = \"https://other.example.com/\"\ninternal_url = \"http://{}/\"\npreauth = \"oidc\"\n",
        backend.addr
    );
    let (d, idp, secrets) = oidc_edge(
        &idp_config(&[APP, "https://other.example.com/"], users()),
        &backend,
        &format!("{app_extra}\n[app.sso]\nheaders = true\nassertion = true\n"),
        &[other],
        hop,
    );
    Setup {
        d,
        idp,
        backend,
        _secrets: secrets,
    }
}

/// Waits until the edge has fetched the provider's discovery and keys (an
/// oidc app answers 503 until then).
fn wait_provider_reached(d: &Deployment) {
    // Attempts back off to one every 30 s; the first come within 15 s.
    for _ in 0..300 {
        let mut s = d.connect("app.example.com");
        let r = client::request(
            &mut s,
            "GET / HTTP/1.1\r\nHost: app.example.com\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
        );
        if r.status != 503 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!(
        "the edge never reached the identity provider: {}",
        d.edge.stderr()
    );
}

/// An edge with one oidc app, `app_extra` its further settings, in front
/// of `backend`, signing in at a provider started with `idp_cfg`.
fn one_oidc_app(
    idp_cfg: &serde_json::Value,
    backend: &Backend,
    app_extra: &str,
    hop: Hop,
) -> (Deployment, Idp, TempDir) {
    oidc_edge(idp_cfg, backend, app_extra, &[], hop)
}

/// [`one_oidc_app`], with `more` apps published after it.
fn oidc_edge(
    idp_cfg: &serde_json::Value,
    backend: &Backend,
    app_extra: &str,
    more: &[String],
    hop: Hop,
) -> (Deployment, Idp, TempDir) {
    let idp = Idp::start(idp_cfg);
    let secrets = TempDir::new("idp-secret");
    let mut b = EdgeBuilder::new()
        .section(&provider_toml(&idp, secrets.path()))
        .app(&format!(
            "name = \"app\"\nexternal_url = \"{APP}\"\ninternal_url = \"http://{}/\"\npreauth = \"oidc\"\n{app_extra}",
            backend.addr
        ));
    for app in more {
        b = b.app(app);
    }
    let d = Deployment::start(b, hop);
    wait_provider_reached(&d);
    (d, idp, secrets)
}

fn sign_in_and_use(hop: Hop) {
    let s = setup(hop, "");
    let mut b = Browser::new(s.d.edge.https, s.d.roots.clone());

    // Unauthenticated: to the provider, with PKCE, state and nonce.
    let r = b.get("https://app.example.com/reports/q3?year=2026");
    assert_eq!(r.status, 302, "{}", r.text());
    let to = r.header("location").unwrap();
    assert!(to.starts_with(&format!("{}/auth?", s.idp.issuer)), "{to}");
    for p in [
        "code_challenge_method=S256",
        "code_challenge=",
        "state=",
        "nonce=",
        "response_type=code",
        "client_id=postern-edge",
    ] {
        assert!(to.contains(p), "{p} in {to}");
    }
    assert!(
        to.contains("redirect_uri=https%3A%2F%2Fapp.example.com%2F.postern%2Fcallback"),
        "{to}"
    );

    // The whole sign-in lands on the page first asked for.
    let mut b = Browser::new(s.d.edge.https, s.d.roots.clone());
    let (url, r) = b.sign_in(
        "https://app.example.com/reports/q3?year=2026",
        "alice",
        "pw-alice",
    );
    assert_eq!(url, "https://app.example.com/reports/q3?year=2026");
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(text.contains("path=/reports/q3?year=2026"), "{text}");
    assert!(text.contains("user=alice "), "{text}");
    assert!(text.contains("email=alice@example.com "), "{text}");
    assert!(text.contains("groups=staff,finance "), "{text}");
    assert!(text.contains("assertion=true"), "{text}");
    // The session cookie is the edge's: the backend never sees it.
    assert!(text.contains("cookie= "), "{text}");
    let jar = b.jar.get("app.example.com").unwrap();
    assert!(jar.contains_key("__Host-postern-app"), "{jar:?}");
    assert!(
        !jar.keys().any(|k| k.contains("signin")),
        "the sign-in cookie is spent: {jar:?}"
    );

    // Client-sent identity headers, in any spelling, never pass, and
    // naming the edge's own in `Connection` cannot drop them (attack case
    // 36); the backend's own cookies do pass.
    let r = b.request(
        "GET",
        "https://app.example.com/x",
        None,
        &[
            ("X-Postern-User", "root"),
            ("X_Postern_Groups", "admins"),
            (
                "Connection",
                "X-Postern-User, x-postern-email, X-Postern-Jwt-Assertion",
            ),
            ("Cookie", "theme=dark"),
        ],
    );
    assert_eq!(r.status, 200);
    let text = r.text();
    assert!(text.contains("user=alice "), "{text}");
    assert!(text.contains("email=alice@example.com "), "{text}");
    assert!(text.contains("assertion=true"), "{text}");
    assert!(text.contains("groups=staff,finance "), "{text}");
    assert!(text.contains("cookie=theme=dark "), "{text}");
    let seen = s.backend.last();
    assert_eq!(seen.headers_named("x-postern-user"), ["alice"]);

    // The cookie is bound to its app: the same value on another app is
    // not a session there.
    let value = b.jar["app.example.com"]["__Host-postern-app"].clone();
    let mut s2 = s.d.connect("other.example.com");
    let r = client::request(
        &mut s2,
        &format!("GET / HTTP/1.1\r\nHost: other.example.com\r\nAccept: text/html\r\nCookie: __Host-postern-other={value}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(
        r.status,
        302,
        "another app's cookie is no session: {}",
        r.text()
    );

    // Counters: one sign-in.
    let (_, counters) = s.d.edge.admin("GET", "/v1/counters", None);
    assert_eq!(counters["apps"]["app"]["sign_ins"], 1, "{counters}");

    // Logout: the cookie goes, and the provider is asked to sign out too.
    let r = b.get("https://app.example.com/.postern/logout");
    assert_eq!(r.status, 302);
    let to = r.header("location").unwrap();
    assert!(
        to.starts_with(&format!("{}/session/end?", s.idp.issuer)),
        "{to}"
    );
    assert!(!b.jar["app.example.com"].contains_key("__Host-postern-app"));
    let r = b.get("https://app.example.com/x");
    assert_eq!(r.status, 302, "signed out: {}", r.text());
}

#[test]
fn sign_in_direct() {
    sign_in_and_use(Hop::Direct);
}

#[test]
fn sign_in_through_a_tunnel() {
    sign_in_and_use(Hop::Tunnel);
}

#[test]
fn scripts_get_401_and_browsers_a_sign_in() {
    let s = setup(Hop::Direct, "");
    let mut c = s.d.connect("app.example.com");
    // fetch()/XHR: a 401 with a challenge, never a redirect.
    let r = client::request(
        &mut c,
        "GET /api/data HTTP/1.1\r\nHost: app.example.com\r\nSec-Fetch-Mode: cors\r\nAccept: text/html\r\n\r\n",
    );
    assert_eq!(r.status, 401);
    assert!(r
        .header("www-authenticate")
        .unwrap()
        .starts_with("Bearer realm=\"app\""));
    let r = client::request(
        &mut c,
        "POST /api/data HTTP/1.1\r\nHost: app.example.com\r\nAccept: text/html\r\nContent-Length: 2\r\n\r\n{}",
    );
    assert_eq!(r.status, 401, "a POST is no navigation");
    let mut c = s.d.connect("app.example.com");
    let r = client::request(
        &mut c,
        "GET /api/data HTTP/1.1\r\nHost: app.example.com\r\nAccept: application/json\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 401);
    // A browser's navigation: a page that keeps the #fragment and moves
    // on to the provider.
    let mut c = s.d.connect("app.example.com");
    let r = client::request(
        &mut c,
        "GET /doc HTTP/1.1\r\nHost: app.example.com\r\nSec-Fetch-Mode: navigate\r\nAccept: text/html\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let page = r.text();
    assert!(page.contains("sessionStorage.setItem"), "{page}");
    assert!(page.contains(&format!("{}/auth?", s.idp.issuer)), "{page}");
    assert!(r
        .header("set-cookie")
        .unwrap()
        .starts_with("__Host-postern-signin-"));
    assert_eq!(s.backend.count(), 0, "nothing reached the backend");
}

#[test]
fn bad_states_get_a_clear_400_never_a_loop() {
    let s = setup(Hop::Direct, "");
    let mut b = Browser::new(s.d.edge.https, s.d.roots.clone());
    // Start a sign-in, sign in at the provider, and stop at the callback.
    let r = b.get("https://app.example.com/start");
    let (login_url, form) = b.follow(&r.header("location").unwrap());
    let action = form
        .text()
        .split("action=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let post = absolute(&login_url, &action);
    let mut r = b.request("POST", &post, Some("login=alice&password=pw-alice"), &[]);
    let mut url = post;
    while !r
        .header("location")
        .unwrap_or_default()
        .contains("/.postern/callback")
    {
        url = absolute(&url, &r.header("location").unwrap());
        r = b.get(&url);
    }
    let callback = absolute(&url, &r.header("location").unwrap());
    let jar_before = b.jar.clone();

    // Another app's callback with this sign-in: its cookie is not there
    // (and would not open there).
    let other = callback.replace("app.example.com", "other.example.com");
    let mut c = Browser::new(s.d.edge.https, s.d.roots.clone());
    c.jar.insert(
        "other.example.com".into(),
        jar_before["app.example.com"].clone(),
    );
    let r = c.get(&other);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("Request ID"), "{}", r.text());

    // No sign-in cookie at all.
    let mut fresh = Browser::new(s.d.edge.https, s.d.roots.clone());
    assert_eq!(fresh.get(&callback).status, 400);
    // A forged state.
    let forged = callback.replace("state=", "state=x");
    assert_eq!(b.get(&forged).status, 400);

    // The real callback completes...
    let r = b.get(&callback);
    assert_eq!(r.status, 302, "{}", r.text());
    assert_eq!(r.header("location").unwrap(), "/start");
    // ...and replaying it (with the sign-in cookie kept) is refused.
    let mut replay = Browser::new(s.d.edge.https, s.d.roots.clone());
    replay.jar = jar_before;
    let r = replay.get(&callback);
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("already"), "{}", r.text());
    let (_, counters) = s.d.edge.admin("GET", "/v1/counters", None);
    assert!(
        counters["apps"]["app"]["sign_in_failures_by_reason"]["state"]
            .as_u64()
            .unwrap()
            >= 3,
        "{counters}"
    );
}

#[test]
fn a_user_the_rules_turn_away_gets_403_naming_the_app() {
    let s = setup(
        Hop::Direct,
        "[app.access]\nemail_domains = [\"example.com\"]\n",
    );
    let mut b = Browser::new(s.d.edge.https, s.d.roots.clone());
    let (_, r) = b.sign_in("https://app.example.com/", "mallory", "pw-mallory");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("&quot;app&quot;"), "{}", r.text());
    assert!(r.text().contains("Request ID"), "{}", r.text());
    // Again with the session: still 403, no redirect.
    let r = b.get("https://app.example.com/");
    assert_eq!(r.status, 403);
    assert_eq!(s.backend.count(), 0);
    // Alice passes the same rules.
    let mut a = Browser::new(s.d.edge.https, s.d.roots.clone());
    let (_, r) = a.sign_in("https://app.example.com/", "alice", "pw-alice");
    assert_eq!(r.status, 200, "{}", r.text());
    let (_, counters) = s.d.edge.admin("GET", "/v1/counters", None);
    assert_eq!(counters["apps"]["app"]["policy_denials"], 2, "{counters}");
}

/// An edge whose provider is our own test issuer, one oidc app with
/// identity headers; returns (deployment, issuer, backend).
fn bearer_setup() -> (Deployment, postern_e2e::idp::TestIssuer, Backend) {
    let issuer = postern_e2e::idp::TestIssuer::start();
    let backend = echo_backend();
    let b = EdgeBuilder::new()
        .section(&format!(
            "[identity_provider]\nissuer = \"{}\"\nclient_id = \"api-client\"\n",
            issuer.issuer
        ))
        .app(&format!(
            "name = \"api\"\nexternal_url = \"https://app.example.com/\"\ninternal_url = \"http://{}/\"\npreauth = \"oidc\"\nsso = {{ headers = true }}\n",
            backend.addr
        ));
    let d = Deployment::start(b, Hop::Direct);
    wait_provider_reached(&d);
    (d, issuer, backend)
}

fn with_token(d: &Deployment, token: &str) -> client::Response {
    let mut c = d.connect("app.example.com");
    client::request(
        &mut c,
        &format!("GET /v1/items HTTP/1.1\r\nHost: app.example.com\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"),
    )
}

#[test]
fn bearer_tokens_are_verified_and_cached() {
    let (d, iss, backend) = bearer_setup();
    let good = iss.mint(
        json!({"alg": "RS256", "kid": "r1", "typ": "JWT"}),
        &iss.claims("api-client", "svc-7"),
    );
    for _ in 0..3 {
        let r = with_token(&d, &good);
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.text().contains("user=svc-7 "), "{}", r.text());
        assert!(r.text().contains("groups=staff "), "{}", r.text());
    }
    let (_, c) = d.edge.admin("GET", "/v1/counters", None);
    // Two workers: at most one signature check each.
    assert!(
        c["edge"]["token_cache_misses"].as_u64().unwrap() <= 2,
        "{c}"
    );
    assert!(c["edge"]["token_cache_hits"].as_u64().unwrap() >= 1, "{c}");
    assert_eq!(backend.count(), 3);
}

#[test]
fn attack_cases_29_to_33_tokens_a_provider_never_minted_are_refused() {
    let (d, iss, backend) = bearer_setup();
    let claims = iss.claims("api-client", "eve");
    let mut expired = claims.clone();
    expired["exp"] = json!(claims["iat"].as_u64().unwrap() - 600);
    let mut future = claims.clone();
    future["nbf"] = json!(claims["iat"].as_u64().unwrap() + 600);
    let mut wrong_aud = claims.clone();
    wrong_aud["aud"] = json!("another-client");
    let mut wrong_iss = claims.clone();
    wrong_iss["iss"] = json!(format!("{}/", iss.issuer));
    let cases = [
        (
            "alg none",
            iss.mint(json!({"alg": "none", "kid": "r1"}), &claims),
        ),
        (
            "alg NONE",
            iss.mint(json!({"alg": "NONE", "kid": "r1"}), &claims),
        ),
        ("no alg", iss.mint(json!({"kid": "r1"}), &claims)),
        (
            "HS256 keyed with the RSA key",
            iss.mint(json!({"alg": "HS256", "kid": "r1"}), &claims),
        ),
        (
            "expired",
            iss.mint(json!({"alg": "RS256", "kid": "r1"}), &expired),
        ),
        (
            "not yet valid",
            iss.mint(json!({"alg": "RS256", "kid": "r1"}), &future),
        ),
        (
            "wrong audience",
            iss.mint(json!({"alg": "RS256", "kid": "r1"}), &wrong_aud),
        ),
        (
            "issuer not exact",
            iss.mint(json!({"alg": "RS256", "kid": "r1"}), &wrong_iss),
        ),
        (
            "kid traversal",
            iss.mint(
                json!({"alg": "RS256", "kid": "../../../etc/passwd"}),
                &claims,
            ),
        ),
        ("garbage", "not.a.jwt".to_string()),
    ];
    for (what, token) in &cases {
        let r = with_token(&d, token);
        assert_eq!(r.status, 401, "{what}: {}", r.text());
        let challenge = r.header("www-authenticate").unwrap();
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{what}: {challenge}"
        );
    }
    // A tampered signature.
    let good = iss.mint(json!({"alg": "RS256", "kid": "r1"}), &claims);
    let mut bad = good.clone().into_bytes();
    let n = bad.len();
    bad[n - 5] = if bad[n - 5] == b'A' { b'B' } else { b'A' };
    assert_eq!(
        with_token(&d, std::str::from_utf8(&bad).unwrap()).status,
        401
    );
    // `jku`, `x5u` and an embedded `jwk` are never fetched or trusted.
    let lure = Backend::hello();
    let header = json!({"alg": "RS256", "kid": "zz", "jku": format!("http://{}/keys", lure.addr),
        "x5u": format!("http://{}/cert", lure.addr), "jwk": {"kty": "RSA", "n": "AQAB", "e": "AQAB"}});
    assert_eq!(with_token(&d, &iss.mint(header, &claims)).status, 401);
    assert_eq!(lure.count(), 0, "a URL in a token header was fetched");
    assert_eq!(backend.count(), 0, "nothing reached the backend");
    let (_, c) = d.edge.admin("GET", "/v1/counters", None);
    assert!(
        c["apps"]["api"]["sign_in_failures_by_reason"]["bearer_token"]
            .as_u64()
            .unwrap()
            >= 12,
        "{c}"
    );
}

#[test]
fn attack_case_32_an_unknown_kid_fetches_the_keys_once_rate_limited() {
    let (d, iss, _backend) = bearer_setup();
    let before = iss.jwks_fetches.load(std::sync::atomic::Ordering::SeqCst);
    // The provider rotates to a new key: the first token naming it makes
    // the edge fetch the key set again, and it is accepted.
    iss.publish(&["r1", "r2"]);
    let claims = iss.claims("api-client", "svc");
    let r = with_token(&d, &iss.mint(json!({"alg": "RS256", "kid": "r2"}), &claims));
    assert_eq!(r.status, 200, "{}", r.text());
    let after = iss.jwks_fetches.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(after, before + 1);
    // Tokens naming keys that do not exist: refused, and no more fetches
    // within the rate limit however many arrive.
    for i in 0..10 {
        let t = iss.mint(json!({"alg": "RS256", "kid": format!("nope-{i}")}), &claims);
        assert_eq!(with_token(&d, &t).status, 401);
    }
    assert_eq!(
        iss.jwks_fetches.load(std::sync::atomic::Ordering::SeqCst),
        after
    );
    let (_, c) = d.edge.admin("GET", "/v1/counters", None);
    assert!(c["edge"]["jwks_refreshes"].as_u64().unwrap() >= 2, "{c}");
}

#[test]
fn attack_case_35_a_tampered_or_truncated_cookie_is_no_session() {
    let s = setup(Hop::Direct, "");
    let mut b = Browser::new(s.d.edge.https, s.d.roots.clone());
    let (_, r) = b.sign_in("https://app.example.com/", "alice", "pw-alice");
    assert_eq!(r.status, 200);
    let good = b.jar["app.example.com"]["__Host-postern-app"].clone();
    let mut flipped = good.clone().into_bytes();
    flipped[20] = if flipped[20] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    for (what, value) in [
        ("bit-flipped", flipped.as_str()),
        ("truncated", &good[..good.len() - 4]),
        ("empty", ""),
        ("garbage", "%%%not-base64%%%"),
    ] {
        for (accept, want) in [("text/html", 302), ("application/json", 401)] {
            let mut c = s.d.connect("app.example.com");
            let r = client::request(
                &mut c,
                &format!("GET / HTTP/1.1\r\nHost: app.example.com\r\nAccept: {accept}\r\nCookie: __Host-postern-app={value}\r\nConnection: close\r\n\r\n"),
            );
            assert_eq!(r.status, want, "{what} ({accept}): {}", r.text());
        }
    }
    // The good one still works.
    let mut c = s.d.connect("app.example.com");
    let r = client::request(
        &mut c,
        &format!("GET / HTTP/1.1\r\nHost: app.example.com\r\nCookie: __Host-postern-app={good}\r\nConnection: close\r\n\r\n"),
    );
    assert_eq!(r.status, 200);
}

#[test]
fn a_provider_down_at_start_is_retried_and_passthrough_apps_keep_serving() {
    let port = postern_e2e::free_port();
    let backend = echo_backend();
    let secrets = TempDir::new("idp-secret");
    std::fs::write(secrets.path().join("idp-secret"), "edge-secret\n").unwrap();
    let b = EdgeBuilder::new()
        .section(&format!(
            "[identity_provider]\nissuer = \"http://127.0.0.1:{port}\"\nclient_id = \"postern-edge\"\nclient_secret_file = \"{}\"\n",
            secrets.path().join("idp-secret").display()
        ))
        .app(&format!(
            "name = \"app\"\nexternal_url = \"{APP}\"\ninternal_url = \"http://{}/\"\npreauth = \"oidc\"\n",
            backend.addr
        ))
        .app(&postern_e2e::passthrough_app("open", "https://open.example.com/", backend.addr, ""));
    let d = Deployment::start(b, Hop::Direct);
    // The provider is down: the oidc app says so, the passthrough app serves.
    let mut c = d.connect("app.example.com");
    let r = client::request(
        &mut c,
        "GET / HTTP/1.1\r\nHost: app.example.com\r\nAccept: text/html\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 503);
    assert!(r.text().contains("cannot be reached"), "{}", r.text());
    assert_eq!(r.header("retry-after").as_deref(), Some("5"));
    let mut c = d.connect("open.example.com");
    assert_eq!(client::get(&mut c, "open.example.com", "/").status, 200);
    assert!(
        d.edge
            .stderr()
            .contains("cannot reach the identity provider"),
        "{}",
        d.edge.stderr()
    );
    // Once it is up, sign-in works without a restart.
    let mut cfg = idp_config(&[APP], users());
    cfg["port"] = json!(port);
    let _idp = Idp::start(&cfg);
    wait_provider_reached(&d);
    let mut b = Browser::new(d.edge.https, d.roots.clone());
    let (_, r) = b.sign_in("https://app.example.com/", "alice", "pw-alice");
    assert_eq!(r.status, 200, "{}", r.text());
}

/// Runs `tests/idp/browser.mjs` (headless Chromium through playwright-core)
/// against the edge; returns its observations, or panics with what it saw.
fn chromium(d: &Deployment, steps: serde_json::Value) -> Vec<serde_json::Value> {
    let cfg = json!({
        "edge_port": d.edge.https.port(),
        "hosts": ["app.example.com", "other.example.com"],
        "steps": steps,
    });
    let out = std::process::Command::new("node")
        .arg(postern_e2e::idp::idp_dir().join("browser.mjs"))
        .arg(cfg.to_string())
        .current_dir(postern_e2e::idp::idp_dir())
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "the browser script failed (is Debian's chromium installed?):\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert!(
        out.status.success(),
        "the browser script failed: {report:#}\nedge: {}",
        d.edge.stderr()
    );
    report["observations"].as_array().unwrap().clone()
}

/// A real browser (Debian's Chromium) signs in, lands on the URL it first
/// asked for with its #fragment, signs out at the edge and the provider,
/// and a user the rules turn away sees the 403 page naming the app.
#[test]
fn a_real_browser_keeps_the_fragment_signs_out_and_sees_a_denial() {
    let s = setup(
        Hop::Direct,
        "[app.access]\nemail_domains = [\"example.com\"]\n",
    );
    let target = "https://app.example.com/reports/q3?year=2026#section-2";
    let obs = chromium(
        &s.d,
        json!([
            {"sign_in": target, "user": "alice", "password": "pw-alice", "context": "alice"},
            {"open": "https://app.example.com/.postern/logout", "context": "alice"},
            {"click": "button[name=logout][value=yes]", "context": "alice", "wait": "#login"},
            {"sign_in": "https://app.example.com/", "user": "mallory", "password": "pw-mallory",
             "context": "mallory"},
        ]),
    );
    let text = |i: usize| obs[i]["text"].as_str().unwrap_or("").to_string();
    let cookies = |i: usize| -> Vec<String> {
        obs[i]["cookies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect()
    };
    // Signed in, on the page first asked for, fragment and all.
    assert_eq!(obs[0]["url"], target, "{:#}", obs[0]);
    assert_eq!(obs[0]["status"], 200, "{:#}", obs[0]);
    assert!(
        text(0).contains("path=/reports/q3?year=2026 user=alice"),
        "{}",
        text(0)
    );
    assert!(
        cookies(0).contains(&"__Host-postern-app".to_string()),
        "{:?}",
        cookies(0)
    );
    assert!(
        !cookies(0).iter().any(|c| c.contains("signin")),
        "the sign-in cookie is gone once used: {:?}",
        cookies(0)
    );
    // Logout: the edge's cookie goes at once, then the provider asks.
    assert!(
        obs[1]["url"].as_str().unwrap().starts_with(&s.idp.issuer),
        "RP-initiated logout at the provider: {:#}",
        obs[1]
    );
    assert!(
        !cookies(1).contains(&"__Host-postern-app".to_string()),
        "{:?}",
        cookies(1)
    );
    // Signed out at the provider too: back at the app, a new sign-in.
    assert!(
        obs[2]["url"].as_str().unwrap().contains("/interaction/"),
        "{:#}",
        obs[2]
    );
    // A user the rules turn away: 403 naming the app and the request id.
    assert_eq!(obs[3]["status"], 403, "{:#}", obs[3]);
    assert!(text(3).contains("\"app\""), "{}", text(3));
    assert!(text(3).contains("Request ID"), "{}", text(3));
    // Alice's page (and the browser's favicon fetch) reached the app;
    // nothing of Mallory's did.
    let last = s.backend.last();
    assert_eq!(last.headers_named("x-postern-user"), ["alice"], "{last:?}");
}

/// The status of `GET /` on the app with `cookie` as its session cookie,
/// as a script asks (401 when the cookie opens no session).
fn with_cookie(d: &Deployment, cookie: &str) -> u16 {
    let mut c = d.connect("app.example.com");
    client::request(
        &mut c,
        &format!("GET / HTTP/1.1\r\nHost: app.example.com\r\nAccept: application/json\r\nCookie: __Host-postern-app={cookie}\r\nConnection: close\r\n\r\n"),
    )
    .status
}

fn published_keys(d: &Deployment) -> usize {
    let mut c = d.connect("app.example.com");
    let r = client::request(
        &mut c,
        "GET /.postern/jwks.json HTTP/1.1\r\nHost: app.example.com\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(r.status, 200);
    let doc: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    doc["keys"].as_array().unwrap().len()
}

/// Key rotation signs nobody out: a cookie keeps opening across two
/// rotations (the admin API's `POST /v1/session-keys/rotate`), and stops
/// at the third. New sign-ins use the newest key, the keys survive a
/// restart, and the assertion keys rotate with them, the previous one
/// still published.
#[test]
fn key_rotation_signs_nobody_out_and_the_third_retires_a_key() {
    let s = setup(Hop::Direct, "");
    let mut b = Browser::new(s.d.edge.https, s.d.roots.clone());
    let (_, r) = b.sign_in("https://app.example.com/", "alice", "pw-alice");
    assert_eq!(r.status, 200, "{}", r.text());
    let first = b.jar["app.example.com"]["__Host-postern-app"].clone();
    assert_eq!(with_cookie(&s.d, &first), 200);
    assert_eq!(published_keys(&s.d), 1);
    let (status, before) = s.d.edge.admin("GET", "/v1/session-keys", None);
    assert_eq!(status, 200, "{before}");
    assert_eq!(before["valid_keys"], 1, "{before}");

    for n in 1..=2 {
        let (status, keys) = s.d.edge.admin("POST", "/v1/session-keys/rotate", None);
        assert_eq!(status, 200, "{keys}");
        assert_eq!(keys["valid_keys"], n + 1, "{keys}");
        assert_eq!(
            with_cookie(&s.d, &first),
            200,
            "still signed in after rotation {n}"
        );
    }
    assert_eq!(
        published_keys(&s.d),
        2,
        "the current and previous assertion keys"
    );
    // A sign-in now seals with the newest key.
    let mut b2 = Browser::new(s.d.edge.https, s.d.roots.clone());
    let (_, r) = b2.sign_in("https://app.example.com/", "alice", "pw-alice");
    assert_eq!(r.status, 200);
    let newest = b2.jar["app.example.com"]["__Host-postern-app"].clone();

    let (status, keys) = s.d.edge.admin("POST", "/v1/session-keys/rotate", None);
    assert_eq!(
        (status, keys["valid_keys"].as_u64()),
        (200, Some(3)),
        "{keys}"
    );
    assert_eq!(
        with_cookie(&s.d, &first),
        401,
        "a cookie sealed three rotations ago no longer opens"
    );
    assert_eq!(with_cookie(&s.d, &newest), 200);

    // The keys were stored: after a restart the newer cookie still opens.
    let Setup {
        d, idp, backend, ..
    } = s;
    let d = Deployment {
        edge: d.edge.restart(),
        connector: None,
        roots: d.roots,
    };
    wait_provider_reached(&d);
    assert_eq!(with_cookie(&d, &newest), 200);
    assert_eq!(with_cookie(&d, &first), 401);
    drop((idp, backend));
}

/// A session ends with the id_token it came from (here 2 s), even though
/// the edge's own maximum (`session_lifetime`) is far longer.
#[test]
fn a_session_ends_when_its_id_token_expires() {
    let mut cfg = idp_config(&[APP], users());
    cfg["id_token_ttl"] = json!(2);
    let backend = echo_backend();
    let (d, _idp, _secrets) = one_oidc_app(&cfg, &backend, "", Hop::Direct);
    let mut br = Browser::new(d.edge.https, d.roots.clone());
    let (_, r) = br.sign_in(APP, "alice", "pw-alice");
    assert_eq!(r.status, 200, "{}", r.text());
    let cookie = br.jar["app.example.com"]["__Host-postern-app"].clone();
    assert_eq!(with_cookie(&d, &cookie), 200);
    std::thread::sleep(std::time::Duration::from_millis(3100));
    assert_eq!(with_cookie(&d, &cookie), 401, "the session expired");
    let r = br.get(APP);
    assert_eq!(r.status, 302, "a browser is sent to sign in again");
}

/// WebSocket upgrades to an oidc app need a session (Entra application
/// proxy applies none to WebSocket), and carry the session's identity
/// headers to the backend; over both hops.
#[test]
fn websocket_upgrades_need_a_session_and_carry_the_identity() {
    const UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: app.example.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
    for hop in Hop::BOTH {
        let backend = Backend::start(|seen| {
            if seen.header("upgrade") == Some("websocket") {
                Reply::ok("")
                    .status(101)
                    .header("Upgrade", "websocket")
                    .header("Connection", "Upgrade")
                    .header("Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
            } else {
                Reply::ok("page")
            }
        });
        let (d, _idp, _secrets) = one_oidc_app(
            &idp_config(&[APP], users()),
            &backend,
            "sso = { headers = true, assertion = true }\n",
            hop,
        );

        // No session: 401, and the backend never sees the upgrade.
        let mut s = d.connect("app.example.com");
        let r = client::request(&mut s, &format!("{UPGRADE}\r\n"));
        assert_eq!(r.status, 401, "{hop:?}: {}", r.text());
        assert_eq!(backend.count(), 0, "{hop:?}");

        let mut br = Browser::new(d.edge.https, d.roots.clone());
        let (_, r) = br.sign_in(APP, "alice", "pw-alice");
        assert_eq!(r.status, 200, "{hop:?}: {}", r.text());
        let cookie = br.jar["app.example.com"]["__Host-postern-app"].clone();

        let mut s = d.connect("app.example.com");
        use std::io::{Read, Write};
        s.write_all(format!("{UPGRADE}Cookie: __Host-postern-app={cookie}\r\n\r\n").as_bytes())
            .unwrap();
        let mut pending = Vec::new();
        let r = client::read_response(&mut s, &mut pending, "GET").unwrap();
        assert_eq!(r.status, 101, "{hop:?}: {}", r.text());
        let seen = backend.last();
        assert_eq!(seen.header("upgrade"), Some("websocket"), "{hop:?}");
        assert_eq!(seen.headers_named("x-postern-user"), ["alice"], "{hop:?}");
        assert_eq!(
            seen.headers_named("x-postern-email"),
            ["alice@example.com"],
            "{hop:?}"
        );
        assert_eq!(
            seen.headers_named("x-postern-jwt-assertion").len(),
            1,
            "{hop:?}"
        );
        assert!(
            seen.headers_named("cookie").is_empty(),
            "{hop:?}: the edge's cookie stays"
        );
        // The relay carries frames both ways (the backend echoes).
        s.write_all(b"hello over the socket").unwrap();
        let mut got = pending;
        while got.len() < 21 {
            let mut buf = [0u8; 256];
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "{hop:?}: closed early");
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"hello over the socket", "{hop:?}");
    }
}

/// With `cors_preflight = "allow"`, an unauthenticated CORS preflight
/// reaches the backend; other OPTIONS requests, and every preflight to an
/// app without the setting, need a session like anything else.
#[test]
fn cors_preflights_pass_only_where_allowed() {
    let s = setup(Hop::Direct, "cors_preflight = \"allow\"");
    let (d, backend) = (&s.d, &s.backend);
    let ask = |host: &str, extra: &str| {
        let mut s = d.connect(host);
        client::request(
            &mut s,
            &format!("OPTIONS /api/items HTTP/1.1\r\nHost: {host}\r\nOrigin: https://portal.example.com\r\n{extra}Connection: close\r\n\r\n"),
        )
        .status
    };
    let preflight =
        "Access-Control-Request-Method: PUT\r\nAccess-Control-Request-Headers: content-type\r\n";
    assert_eq!(ask("app.example.com", preflight), 200, "allowed preflight");
    assert_eq!(backend.count(), 1);
    assert_eq!(
        ask("app.example.com", ""),
        401,
        "an OPTIONS that is no preflight"
    );
    assert_eq!(
        ask("other.example.com", preflight),
        401,
        "not allowed there"
    );
    assert_eq!(backend.count(), 1);
}

/// A session with a refresh token renews itself off the request path: the
/// request that finds it due goes on at once; a later response to the old
/// cookie hands the client the renewed session, which outlives the first
/// id_token (here 20 s: renewal is due after 15 s).
#[test]
fn a_session_is_renewed_with_its_refresh_token() {
    let mut cfg = idp_config(&[APP], users());
    cfg["id_token_ttl"] = json!(20);
    cfg["clients"][0]["grant_types"] = json!(["authorization_code", "refresh_token"]);
    let backend = echo_backend();
    let (d, _idp, _secrets) =
        one_oidc_app(&cfg, &backend, "sso = { headers = true }\n", Hop::Direct);
    let mut br = Browser::new(d.edge.https, d.roots.clone());
    let started = std::time::Instant::now();
    let (_, r) = br.sign_in(APP, "alice", "pw-alice");
    assert_eq!(r.status, 200, "{}", r.text());
    // The id_token was issued between these two instants.
    let signed_in = std::time::Instant::now();
    let first = br.jar["app.example.com"]["__Host-postern-app"].clone();
    let get = |cookie: &str| {
        let mut c = d.connect("app.example.com");
        client::request(
            &mut c,
            &format!("GET /r HTTP/1.1\r\nHost: app.example.com\r\nAccept: application/json\r\nCookie: __Host-postern-app={cookie}\r\nConnection: close\r\n\r\n"),
        )
    };
    // Not yet due (renewal starts at three quarters of the life).
    let r = get(&first);
    assert_eq!(r.status, 200);
    assert!(r.header("set-cookie").is_none(), "not due yet");
    std::thread::sleep(
        std::time::Duration::from_millis(15_300).saturating_sub(signed_in.elapsed()),
    );
    let mut renewed = None;
    // Until the first session may end (its token lives 20 s from its
    // issue, in whole seconds).
    while started.elapsed() < std::time::Duration::from_millis(18_900) {
        let r = get(&first);
        assert_eq!(r.status, 200, "the old session still serves meanwhile");
        assert!(r.text().contains("user=alice "), "{}", r.text());
        if let Some(c) = r.header("set-cookie") {
            renewed = Some(c);
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let renewed = renewed.expect("a response hands the client its renewed session");
    assert!(renewed.starts_with("__Host-postern-app="), "{renewed}");
    assert!(
        renewed.contains("; Secure") && renewed.contains("HttpOnly"),
        "{renewed}"
    );
    let value = renewed["__Host-postern-app=".len()..]
        .split(';')
        .next()
        .unwrap()
        .to_string();
    assert_ne!(value, first);
    // Past the first id_token's expiry, the renewed session serves.
    std::thread::sleep(
        std::time::Duration::from_millis(20_500).saturating_sub(signed_in.elapsed()),
    );
    let r = get(&value);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("user=alice "), "{}", r.text());
    assert!(r.header("set-cookie").is_none());
    let (_, counters) = d.edge.admin("GET", "/v1/counters", None);
    assert!(
        counters["apps"]["app"]["session_renewals"].as_u64() >= Some(1),
        "{counters}"
    );
}

/// Attack case 34, the return URL: a sign-in started on `//other.host/`
/// comes back to a path on the app, never to another host (and a path
/// with a backslash is refused before any sign-in).
#[test]
fn attack_case_34_a_sign_in_never_returns_to_another_host() {
    let s = setup(Hop::Direct, "");
    for target in ["//evil.example.net/x", "/\\evil.example.net/x"] {
        let mut b = Browser::new(s.d.edge.https, s.d.roots.clone());
        let (login_url, form) = b.follow(&format!("https://app.example.com{target}"));
        if form.status == 400 {
            // The request path itself is refused: no sign-in starts.
            continue;
        }
        let (post, r) = b.submit_login(&login_url, &form, "alice", "pw-alice");
        // Follow the provider's redirects to the edge's callback answer.
        let mut url = absolute(&post, &r.header("location").unwrap());
        let mut last = None;
        for _ in 0..10 {
            let r = b.get(&url);
            let Some(l) = r.header("location") else { break };
            if url.contains("/.postern/callback") {
                last = Some(l);
                break;
            }
            url = absolute(&url, &l);
        }
        let back = last.expect("the callback redirects back");
        assert!(
            back.starts_with('/') && !back.starts_with("//") && !back.starts_with("/\\"),
            "{target}: the callback sends the browser to {back:?}"
        );
    }
}

/// Pre-authentication over HTTP/2 is the same policy phase: a navigation
/// without a session is sent to sign in, a script gets 401, and the
/// session cookie a browser got over HTTP/1.1 opens the app over HTTP/2,
/// with its identity headers reaching the backend; over both hops.
#[test]
fn preauth_over_http2() {
    use postern_e2e::h2client::{block_on, H2};
    for hop in Hop::BOTH {
        let s = setup(hop, "");
        let d = &s.d;
        let mut br = Browser::new(d.edge.https, d.roots.clone());
        let (_, r) = br.sign_in(APP, "alice", "pw-alice");
        assert_eq!(r.status, 200, "{hop:?}: {}", r.text());
        let cookie = br.jar["app.example.com"]["__Host-postern-app"].clone();
        block_on(|| async {
            let mut c = H2::tls(d.edge.https, "app.example.com", d.roots.clone()).await;
            let get = |accept: &str, cookie: Option<&str>| {
                let mut b =
                    http::Request::get("https://app.example.com/page").header("accept", accept);
                if let Some(v) = cookie {
                    // Two crumbs, as HTTP/2 clients may send them.
                    b = b
                        .header("cookie", "theme=dark")
                        .header("cookie", format!("__Host-postern-app={v}"));
                }
                b.body(()).unwrap()
            };
            let r = c.request(get("text/html", None), None).await.unwrap();
            assert_eq!(r.status, 302, "{hop:?}");
            let location = r.header("location").unwrap_or_default();
            assert!(location.contains("client_id="), "{hop:?}: {location}");
            let r = c
                .request(get("application/json", None), None)
                .await
                .unwrap();
            assert_eq!(r.status, 401, "{hop:?}");
            let r = c
                .request(get("text/html", Some(&cookie)), None)
                .await
                .unwrap();
            assert_eq!(r.status, 200, "{hop:?}: {}", r.text());
            let body = r.text();
            assert!(body.contains("user=alice"), "{hop:?}: {body}");
            assert!(
                body.contains("cookie=theme=dark"),
                "{hop:?}: the edge's cookie stays, the app's goes on: {body}"
            );
            assert!(body.contains("assertion=true"), "{hop:?}: {body}");
        });
    }
}
