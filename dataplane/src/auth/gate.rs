//! The policy phase for pre-authenticated (`oidc`) apps: who is asking,
//! and whether they may.
//!
//! In order: the app's reserved paths (`/.postern/callback`,
//! `/.postern/logout`, `/.postern/jwks.json`, under the app's external
//! path); an allowed CORS preflight; the session cookie; a bearer token;
//! and otherwise a sign-in — a redirect to the provider for a top-level
//! navigation, a 401 for anything else (a script cannot follow a sign-in).
//! A signed-in user the access rules turn away gets a 403 page, never a
//! redirect, so a denial cannot loop.
//!
//! Nothing here waits on the network on a worker: the code exchange and an
//! unknown key's refresh run on control threads.

use std::cell::RefCell;
use std::io::Write as _;
use std::rc::Rc;

use bytes::Bytes;
use postern_control::counters::{bump, AppCounters, SignInFailure};
use postern_control::jwt::{self, JwtError, Verified};
use postern_control::oidc::{self, SignIn};
use postern_control::policy::{self, Identity};
use postern_control::session::Session;
use postern_control::{App, CorsPreflight, SameSite, Scheme};

use super::provider::ExchangeError;
use super::{now, Opened, WorkerAuth};
use crate::edge::conn::ConnInfo;
use crate::http1::RequestHead;
use crate::pages;
use crate::snapshot::AppRuntime;
use crate::worker::Worker;

/// Bearer tokens longer than this are refused without a look (a JWT with
/// a few hundred groups fits comfortably).
const MAX_TOKEN: usize = 16 * 1024;
/// How long a sign-in may take, from the redirect to the callback.
const SIGN_IN_COOKIE_AGE: u64 = 600;

/// What the policy phase decided.
pub enum Gate {
    /// On to the backend, as this user (`None`: an allowed preflight).
    Pass(Option<Rc<Opened>>),
    /// The edge answered; the response is in `out`.
    Answered { status: u16, close: bool },
}

/// One request at the gate.
pub struct Req<'a> {
    pub worker: &'a Rc<Worker>,
    pub app: &'a AppRuntime,
    pub info: &'a ConnInfo,
    pub head: &'a RequestHead,
    pub id: &'a str,
    pub counters: &'a AppCounters,
}

impl Req<'_> {
    fn auth(&self) -> &WorkerAuth {
        &self.worker.auth
    }

    fn app(&self) -> &App {
        &self.app.app
    }

    fn close(&self) -> bool {
        !self.head.keep_alive || self.head.framing.has_body()
    }

    /// `scheme://authority` + the app's external path (ending in `/`): the
    /// root of the app as this client reached it.
    fn base(&self) -> String {
        let path = &self.app().external_url.path;
        let mut s = format!(
            "{}://{}{}",
            self.info.scheme,
            String::from_utf8_lossy(&self.head.authority),
            path
        );
        if !s.ends_with('/') {
            s.push('/');
        }
        s
    }

    fn callback_url(&self) -> String {
        format!("{}.postern/callback", self.base())
    }

    /// The request path relative to the app's external path, without the
    /// query.
    fn local_path(&self) -> &[u8] {
        let p = &self.head.path[..];
        let p = memchr::memchr(b'?', p).map_or(p, |i| &p[..i]);
        let ext = self.app().external_url.path.as_bytes();
        let ext = ext.strip_suffix(b"/").unwrap_or(ext);
        p.strip_prefix(ext)
            .and_then(|r| r.strip_prefix(b"/"))
            .unwrap_or(b"")
    }

    fn query(&self) -> &[u8] {
        let p = &self.head.path[..];
        memchr::memchr(b'?', p).map_or(&b""[..], |i| &p[i + 1..])
    }

    fn answered(&self, out: &mut Vec<u8>, status: u16, msg: &str, extra: &[(&str, &str)]) -> Gate {
        let close = self.close();
        out.clear();
        pages::error_page(out, status, msg, self.id, close, extra);
        Gate::Answered { status, close }
    }
}

/// The policy phase for an `oidc` app.
pub async fn gate(r: &Req<'_>, out: &mut Vec<u8>) -> Gate {
    match r.local_path() {
        b".postern/callback" => return callback(r, out).await,
        b".postern/logout" => return logout(r, out),
        b".postern/jwks.json" => return jwks(r, out),
        _ => {}
    }
    if r.app().cors_preflight == CorsPreflight::Allow && is_preflight(r.head) {
        return Gate::Pass(None);
    }
    let now = now();
    let mut stale = false;
    let sessions = cookie_byte_pairs(r.head)
        .filter(|(n, _)| is_session_cookie(r.app(), n))
        .filter_map(|(_, v)| std::str::from_utf8(v).ok());
    for value in sessions {
        match open_session(r, value, now) {
            Some(o) => {
                renew_if_due(r, value, &o, now);
                return admit(r, o, out);
            }
            None => stale = true,
        }
    }
    if stale {
        r.counters.sign_in_failed(SignInFailure::SessionCookie);
    }
    if let Some(token) = bearer(r.head) {
        return bearer_gate(r, token, now, out).await;
    }
    let Some((pi, provider)) = r
        .auth()
        .shared
        .provider(r.app().identity_provider.as_deref())
    else {
        return r.answered(
            out,
            503,
            "this application's identity provider is not configured on this edge",
            &[],
        );
    };
    let Some(view) = r.auth().view(pi) else {
        return unreachable(r, provider, out);
    };
    if !is_navigation(r.head) {
        r.counters
            .fail(postern_control::counters::FailReason::AuthRequired);
        let challenge = format!("Bearer realm=\"{}\"", r.app().name);
        return r.answered(
            out,
            401,
            "this application requires sign-in; open it in a browser, or send a bearer token",
            &[("WWW-Authenticate", &challenge)],
        );
    }
    // A sign-in: the state, nonce and PKCE verifier go in a cookie sealed
    // for this app; the user goes to the provider.
    let target = String::from_utf8_lossy(&r.head.path);
    let sign_in = SignIn::new(&target, now);
    let keys = r.auth().keys();
    let sealed = keys.seal_json(&SignIn::context(&r.app().name), &sign_in);
    let url = oidc::authorization_url(
        &view.discovery,
        &provider.cfg.client_id,
        &r.callback_url(),
        &provider.cfg.scopes,
        &sign_in,
    );
    let mut cookies = vec![format!(
        "{}={sealed}{}",
        sign_in_cookie_name(r.app(), &sign_in.state),
        attributes(r.app(), Some(SIGN_IN_COOKIE_AGE), Some(SameSite::Lax))
    )];
    if stale {
        cookies.push(expire(r.app(), &session_cookie_name(r.app())));
    }
    // Sign-ins abandoned in other tabs leave their cookies until they
    // expire; a client that keeps starting them is held to a few.
    let prefix = sign_in_cookie_prefix(r.app());
    let mut older: Vec<&str> = cookie_names(r.head)
        .filter(|n| n.starts_with(&prefix))
        .collect();
    older.sort_unstable();
    older.dedup();
    for n in older.iter().skip(2) {
        cookies.push(expire(r.app(), n));
    }
    let close = r.close();
    out.clear();
    if header_is(r.head, "sec-fetch-mode", b"navigate") {
        // A browser: a page that keeps the URL's #fragment (which never
        // reaches the server) in this tab's storage for the callback.
        let script = format!(
            "try{{if(location.hash)sessionStorage.setItem({},location.hash)}}catch(e){{}}location.replace({})",
            js(&format!("postern#{}", sign_in.state)),
            js(&url)
        );
        html_page(
            out,
            r.id,
            close,
            &cookies,
            "Signing in",
            &script,
            &url,
            "Continue to sign-in",
        );
        Gate::Answered { status: 200, close }
    } else {
        redirect(out, 302, &url, &cookies, r.id, close);
        Gate::Answered { status: 302, close }
    }
}

/// A signed-in user: the access rules decide.
fn admit(r: &Req<'_>, o: Rc<Opened>, out: &mut Vec<u8>) -> Gate {
    match policy::allows(&r.app().access, &o.identity) {
        Ok(()) => Gate::Pass(Some(o)),
        Err(why) => {
            bump(&r.counters.policy_denials, 1);
            tracing::info!(request_id = r.id, app = %r.app().name, user = %o.identity.user, reason = %why, "access denied by the app's rules");
            let msg = format!(
                "{} may not use the application \"{}\": {why}. Ask its administrator for access, or sign out at .postern/logout and use another account.",
                o.identity.user,
                r.app().name
            );
            r.answered(out, 403, &msg, &[])
        }
    }
}

fn open_session(r: &Req<'_>, value: &str, now: u64) -> Option<Rc<Opened>> {
    let auth = r.auth();
    let keys = auth.keys();
    if let Some(o) = auth.cached_session(&r.app().name, value, now) {
        return Some(o);
    }
    let session = keys.open(&r.app().name, value, now).ok()?;
    let identity = Rc::new(session.identity());
    Some(auth.cache_session(value, opened(r.app(), session, identity), now))
}

/// Starts renewing a session with its refresh token once it is due, off
/// the request path: this request goes on with the session as it is; the
/// exchange runs on a control thread, and its result is cached for the
/// old cookie with a `Set-Cookie` that hands the client the renewed one.
/// A failed renewal is logged and not retried: the session ends at its
/// expiry, and the user signs in again.
fn renew_if_due(r: &Req<'_>, value: &str, o: &Rc<Opened>, now: u64) {
    let s = &o.session;
    let Some(refresh) = s.refresh.clone() else {
        return;
    };
    if s.renew_at == 0 || now < s.renew_at || o.set_cookie.is_some() || o.renewing.replace(true) {
        return;
    }
    let Some((_, provider)) = r
        .auth()
        .shared
        .provider(r.app().identity_provider.as_deref())
    else {
        return;
    };
    let provider = provider.clone();
    let (worker, app) = (r.worker.clone(), r.app().clone());
    let (old, sub, until) = (Box::<str>::from(value), s.sub.clone(), s.until);
    let kept = refresh.clone();
    monoio::spawn(async move {
        let result = crate::offload::run(move || provider.refresh(&refresh, now)).await;
        let now = super::now();
        let (tokens, verified) = match result {
            Some(Ok(t)) if t.1.claim_str("sub") == Some(sub.as_str()) => t,
            Some(Ok(_)) => {
                tracing::warn!(app = %app.name, user = %sub, "the provider renewed a session for another subject; not used");
                return;
            }
            Some(Err(e)) => {
                worker
                    .counters
                    .app(&app.name)
                    .sign_in_failed(SignInFailure::Renewal);
                tracing::warn!(app = %app.name, user = %sub, error = ?e, "a session could not be renewed; it ends at its expiry");
                return;
            }
            None => return,
        };
        // A provider that does not rotate refresh tokens keeps the old one.
        let fresh = from_token(
            &app,
            &verified,
            now,
            until,
            tokens.refresh_token.or(Some(kept)),
        );
        let Ok(sealed) = worker.auth.keys().seal(&app.name, &fresh.session) else {
            return;
        };
        let max_age = app
            .cookie
            .persistent
            .then(|| fresh.session.expires.saturating_sub(now));
        let cookie = format!(
            "{}={sealed}{}",
            session_cookie_name(&app),
            attributes(&app, max_age, None)
        );
        let for_old = Opened {
            set_cookie: Some(cookie.into()),
            ..opened(&app, fresh.session.clone(), fresh.identity.clone())
        };
        bump(&worker.counters.app(&app.name).session_renewals, 1);
        tracing::info!(app = %app.name, user = %fresh.identity.user, "session renewed with the refresh token");
        let cache = worker.auth.session_cache();
        let mut cache = cache.borrow_mut();
        cache.insert(&sealed, Rc::new(fresh), now);
        cache.insert(&old, Rc::new(for_old), now);
    });
}

fn opened(app: &App, session: Session, identity: Rc<Identity>) -> Opened {
    let headers = if app.sso.headers {
        identity_headers(&identity)
    } else {
        Vec::new()
    };
    Opened {
        app: app.name.as_str().into(),
        session,
        identity,
        headers,
        assertion: RefCell::new(None),
        renewing: std::cell::Cell::new(false),
        set_cookie: None,
    }
}

/// The identity headers a backend gets, values cleaned of anything that
/// could end a header line.
fn identity_headers(who: &Identity) -> Vec<(&'static str, Bytes)> {
    let clean = |s: &str| -> Bytes {
        s.bytes()
            .filter(|b| *b >= 0x20 && *b != 0x7f)
            .collect::<Vec<u8>>()
            .into()
    };
    let mut h = vec![("x-postern-user", clean(&who.user))];
    if let Some(e) = &who.email {
        h.push(("x-postern-email", clean(e)));
    }
    if !who.groups.is_empty() {
        h.push(("x-postern-groups", clean(&who.groups.join(","))));
    }
    h
}

/// The identity assertion for `o` on this app: signed once, reused until
/// a minute before it expires.
pub fn assertion(
    worker: &Worker,
    app: &AppRuntime,
    info: &ConnInfo,
    authority: &[u8],
    o: &Opened,
) -> Rc<str> {
    let signer = worker.auth.signer();
    let now = now();
    if let Some((exp, v, tok)) = &*o.assertion.borrow() {
        if *v == worker.auth.signer_version() && now + 60 < *exp {
            return tok.clone();
        }
    }
    let origin = format!("{}://{}", info.scheme, String::from_utf8_lossy(authority));
    let exp = (now + super::assertion::LIFETIME).min(o.session.expires);
    let mut claims = serde_json::json!({
        "iss": origin,
        "aud": format!("{origin}{}", app.app.external_url.path),
        "sub": o.session.sub,
        "iat": now,
        "exp": exp,
    });
    let who = &o.identity;
    if who.user != o.session.sub {
        claims["user"] = who.user.clone().into();
    }
    if let Some(e) = &who.email {
        claims["email"] = e.clone().into();
    }
    if let Some(n) = &o.session.name {
        claims["name"] = n.clone().into();
    }
    if !who.groups.is_empty() {
        claims["groups"] = who.groups.clone().into();
    }
    let tok: Rc<str> = signer.sign(&claims).into();
    *o.assertion.borrow_mut() = Some((exp, worker.auth.signer_version(), tok.clone()));
    tok
}

async fn bearer_gate(r: &Req<'_>, token: &str, now: u64, out: &mut Vec<u8>) -> Gate {
    let auth = r.auth();
    let edge = &r.worker.counters.edge;
    if let Some(o) = auth.cached_session(&r.app().name, token, now) {
        bump(&edge.token_cache_hits, 1);
        return admit(r, o, out);
    }
    let Some((pi, provider)) = auth.shared.provider(r.app().identity_provider.as_deref()) else {
        return r.answered(
            out,
            503,
            "this application's identity provider is not configured on this edge",
            &[],
        );
    };
    let skew = provider.cfg.clock_skew;
    let cached = auth.tokens.borrow()[pi].get(token, now, skew);
    let verified = match cached {
        Some(v) => {
            bump(&edge.token_cache_hits, 1);
            v
        }
        None => {
            bump(&edge.token_cache_misses, 1);
            if token.len() > MAX_TOKEN {
                return refuse_token(r, "the token is too large", out);
            }
            let Some(view) = auth.view(pi) else {
                return unreachable(r, provider, out);
            };
            let audiences = [provider.cfg.client_id.as_str()];
            let mut result = jwt::verify(token, &view.keys, &provider.expect(&audiences, now));
            if let Err(JwtError::UnknownKey(_)) = result {
                // One (rate-limited) fetch of the provider's keys, on a
                // control thread.
                let p = provider.clone();
                let seen = p.version();
                if crate::offload::run(move || p.refresh_keys(seen)).await == Some(true) {
                    if let Some(view) = auth.view(pi) {
                        result = jwt::verify(token, &view.keys, &provider.expect(&audiences, now));
                    }
                }
            }
            match result {
                Ok(v) => auth.tokens.borrow_mut()[pi].insert(token, v, now),
                Err(e) => return refuse_token(r, &e.to_string(), out),
            }
        }
    };
    let until = now + r.auth().shared.session_lifetime;
    let o = from_token(r.app(), &verified, now, until, None);
    let o = auth.cache_session(token, o, now);
    admit(r, o, out)
}

/// A session from a verified token: it ends at the token's expiry, and
/// never after `until`; with a refresh token it is renewable.
fn from_token(app: &App, v: &Verified, now: u64, until: u64, refresh: Option<String>) -> Opened {
    let identity = Identity::from_claims(&v.claims, &app.sso, &app.access);
    let sub = v.claim_str("sub").unwrap_or_default().to_string();
    let name = v.claim_str("name").map(str::to_string);
    let expires = v.expires.min(until);
    let session =
        Session::new(&sub, name, identity.clone(), expires).renewable(refresh, now, until);
    opened(app, session, Rc::new(identity))
}

fn refuse_token(r: &Req<'_>, why: &str, out: &mut Vec<u8>) -> Gate {
    r.counters.sign_in_failed(SignInFailure::BearerToken);
    r.counters
        .fail(postern_control::counters::FailReason::AuthRequired);
    let challenge = format!(
        "Bearer realm=\"{}\", error=\"invalid_token\", error_description=\"{}\"",
        r.app().name,
        why.replace(['"', '\\'], "'")
    );
    let msg = format!("the bearer token was refused: {why}");
    r.answered(out, 401, &msg, &[("WWW-Authenticate", &challenge)])
}

fn unreachable(r: &Req<'_>, provider: &super::provider::Provider, out: &mut Vec<u8>) -> Gate {
    r.counters
        .sign_in_failed(SignInFailure::ProviderUnreachable);
    tracing::debug!(request_id = r.id, provider = %provider.cfg.name, reason = ?provider.problem(), "sign-in unavailable");
    let msg = format!(
        "sign-in is unavailable: this application's identity provider \"{}\" cannot be reached yet. Try again in a moment.",
        provider.cfg.name
    );
    r.answered(out, 503, &msg, &[("Retry-After", "5")])
}

/// `/.postern/callback`: the provider sends the user back with a code.
async fn callback(r: &Req<'_>, out: &mut Vec<u8>) -> Gate {
    let now = now();
    let q = r.query();
    let app = r.app();
    let state = oidc::form_param(q, "state");
    let keys = r.auth().keys();
    let sign_in = state.as_deref().and_then(|state| {
        let name = sign_in_cookie_name(app, state);
        let found = cookie_values(r.head, &name).find_map(|v| {
            keys.open_json::<SignIn>(&SignIn::context(&app.name), v)
                .ok()
        });
        found
    });
    let bad_state = |msg: &str, out: &mut Vec<u8>| {
        r.counters.sign_in_failed(SignInFailure::State);
        let msg = format!("{msg}. Open the application again to sign in afresh.");
        r.answered(out, 400, &msg, &[])
    };
    let (Some(state), Some(sign_in)) = (state, sign_in) else {
        return bad_state(
            "this sign-in cannot be completed: it was not started in this browser for this application, it expired, or it was already used",
            out,
        );
    };
    if let Err(e) = sign_in.check(&state, now) {
        return bad_state(e, out);
    }
    let done_cookie = expire(app, &sign_in_cookie_name(app, &state));
    if let Some(error) = oidc::form_param(q, "error") {
        r.counters.sign_in_failed(SignInFailure::ProviderError);
        let desc = oidc::form_param(q, "error_description").unwrap_or_default();
        let msg = format!("the identity provider did not sign you in: {error} {desc}");
        return r.answered(out, 403, msg.trim_end(), &[("Set-Cookie", &done_cookie)]);
    }
    if !r.auth().shared.spend_state(&state, sign_in.expires) {
        return bad_state(
            "this sign-in was already completed (the link was used twice)",
            out,
        );
    }
    let Some(code) = oidc::form_param(q, "code") else {
        return bad_state("the identity provider sent no authorization code", out);
    };
    let Some((_, provider)) = r.auth().shared.provider(app.identity_provider.as_deref()) else {
        return r.answered(
            out,
            503,
            "this application's identity provider is not configured on this edge",
            &[],
        );
    };
    let p = provider.clone();
    let redirect_uri = r.callback_url();
    let si = sign_in.clone();
    let exchanged = crate::offload::run(move || p.exchange(&code, &redirect_uri, &si, now)).await;
    let (tokens, verified) = match exchanged {
        Some(Ok(t)) => t,
        Some(Err(ExchangeError::Token(e))) => {
            r.counters.sign_in_failed(SignInFailure::IdToken);
            tracing::warn!(request_id = r.id, app = %app.name, error = %e, "a sign-in's id_token was refused");
            let msg = format!("the identity provider's answer did not verify: {e}");
            return r.answered(out, 400, &msg, &[("Set-Cookie", &done_cookie)]);
        }
        Some(Err(ExchangeError::Provider(e))) => {
            r.counters.sign_in_failed(SignInFailure::Exchange);
            tracing::warn!(request_id = r.id, app = %app.name, error = %e, "a sign-in's code exchange failed");
            let msg = format!("the identity provider did not complete the sign-in: {e}");
            return r.answered(out, 502, &msg, &[("Set-Cookie", &done_cookie)]);
        }
        None => {
            r.counters.sign_in_failed(SignInFailure::Exchange);
            return r.answered(out, 503, "the edge is shutting down; try again", &[]);
        }
    };
    let until = now + r.auth().shared.session_lifetime;
    let o = from_token(app, &verified, now, until, tokens.refresh_token);
    let session = &o.session;
    let sealed = match r.auth().keys().seal(&app.name, session) {
        Ok(s) => s,
        Err(e) => {
            r.counters.sign_in_failed(SignInFailure::IdToken);
            return r.answered(
                out,
                400,
                &format!("the sign-in cannot be kept: {e}"),
                &[("Set-Cookie", &done_cookie)],
            );
        }
    };
    if let Ok(opened) = keys.open(&app.name, &sealed, now) {
        if opened.groups_trimmed {
            bump(&r.counters.groups_trimmed, 1);
            tracing::info!(request_id = r.id, app = %app.name, user = %o.identity.user, kept = opened.groups.len(), of = session.groups.len(), "the user's groups did not all fit in the session cookie; the first ones were kept");
        }
    }
    bump(&r.counters.sign_ins, 1);
    tracing::info!(request_id = r.id, app = %app.name, user = %o.identity.user, "signed in");
    let max_age = app
        .cookie
        .persistent
        .then(|| session.expires.saturating_sub(now));
    let cookies = vec![
        format!(
            "{}={sealed}{}",
            session_cookie_name(app),
            attributes(app, max_age, None)
        ),
        done_cookie,
    ];
    // The sign-in's own denial shows now, not after a redirect.
    if let Err(why) = policy::allows(&app.access, &o.identity) {
        bump(&r.counters.policy_denials, 1);
        let msg = format!(
            "{} may not use the application \"{}\": {why}.",
            o.identity.user, app.name
        );
        let set: Vec<(&str, &str)> = cookies.iter().map(|c| ("Set-Cookie", c.as_str())).collect();
        return r.answered(out, 403, &msg, &set);
    }
    let close = r.close();
    out.clear();
    if header_is(r.head, "sec-fetch-mode", b"navigate") {
        let script = format!(
            "var k={},f=\"\";try{{f=sessionStorage.getItem(k)||\"\";sessionStorage.removeItem(k)}}catch(e){{}}if(f.charAt(0)!=\"#\")f=\"\";location.replace({}+f)",
            js(&format!("postern#{state}")),
            js(&sign_in.return_to)
        );
        html_page(
            out,
            r.id,
            close,
            &cookies,
            "Signed in",
            &script,
            &sign_in.return_to,
            "Continue",
        );
        Gate::Answered { status: 200, close }
    } else {
        redirect(out, 302, &sign_in.return_to, &cookies, r.id, close);
        Gate::Answered { status: 302, close }
    }
}

/// `/.postern/logout`: the session cookie goes; the provider signs the
/// user out too when it offers RP-initiated logout.
fn logout(r: &Req<'_>, out: &mut Vec<u8>) -> Gate {
    let app = r.app();
    let cookies = vec![expire(app, &session_cookie_name(app))];
    let close = r.close();
    out.clear();
    let end = r
        .auth()
        .shared
        .provider(app.identity_provider.as_deref())
        .and_then(|(pi, p)| Some((r.auth().view(pi)?, p)))
        .and_then(|(v, p)| Some((v.discovery.end_session_endpoint.clone()?, p)));
    if let Some((endpoint, p)) = end {
        let sep = if endpoint.contains('?') { '&' } else { '?' };
        let base = r.base();
        let url = format!(
            "{endpoint}{sep}{}",
            oidc::form_encode(&[
                ("client_id", p.cfg.client_id.as_str()),
                ("post_logout_redirect_uri", base.as_str()),
            ])
        );
        redirect(out, 302, &url, &cookies, r.id, close);
        return Gate::Answered { status: 302, close };
    }
    let body = format!(
        "You are signed out of {}. <a href=\"{}\">Sign in again</a>",
        pages::escape(&app.name),
        pages::escape(&r.base())
    );
    html_page_body(out, 200, r.id, close, &cookies, "Signed out", &body);
    Gate::Answered { status: 200, close }
}

/// `/.postern/jwks.json`: the keys backends check assertions with.
fn jwks(r: &Req<'_>, out: &mut Vec<u8>) -> Gate {
    let body = r.auth().signer().jwks();
    let close = r.close();
    out.clear();
    let _ = write!(
        out,
        "HTTP/1.1 200 OK\r\nContent-Type: application/jwk-set+json\r\nContent-Length: {}\r\nCache-Control: public, max-age=300\r\nX-Request-Id: {}\r\n{}\r\n",
        body.len(),
        r.id,
        if close { "Connection: close\r\n" } else { "" }
    );
    out.extend_from_slice(body.as_bytes());
    Gate::Answered { status: 200, close }
}

// --- cookies -------------------------------------------------------------

/// `__Host-` binds a cookie to the exact host, over https, for path `/`:
/// used whenever the app's settings allow it.
fn host_prefix(app: &App) -> &'static str {
    if app.cookie.secure && app.external_url.scheme == Scheme::Https && app.external_url.path == "/"
    {
        "__Host-"
    } else {
        ""
    }
}

pub fn session_cookie_name(app: &App) -> String {
    format!("{}postern-{}", host_prefix(app), app.name)
}

/// Whether `name` is [`session_cookie_name`] (without building it: this
/// runs on every request).
fn is_session_cookie(app: &App, name: &[u8]) -> bool {
    name.strip_prefix(host_prefix(app).as_bytes())
        .and_then(|n| n.strip_prefix(b"postern-"))
        == Some(app.name.as_bytes())
}

fn sign_in_cookie_prefix(app: &App) -> String {
    format!("{}postern-signin-", host_prefix(app))
}

fn sign_in_cookie_name(app: &App, state: &str) -> String {
    let short: String = state
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(12)
        .collect();
    format!("{}{short}", sign_in_cookie_prefix(app))
}

/// Whether a cookie name is one of the edge's own (never sent on to a
/// backend).
pub fn is_edge_cookie(name: &[u8]) -> bool {
    let n = name.strip_prefix(b"__Host-").unwrap_or(name);
    n.starts_with(b"postern-")
}

fn attributes(app: &App, max_age: Option<u64>, same_site: Option<SameSite>) -> String {
    let mut a = format!("; Path={}", app.external_url.path);
    if app.cookie.http_only {
        a.push_str("; HttpOnly");
    }
    if app.cookie.secure && app.external_url.scheme == Scheme::Https {
        a.push_str("; Secure");
    }
    a.push_str(match same_site.unwrap_or(app.cookie.same_site) {
        SameSite::Strict => "; SameSite=Strict",
        SameSite::Lax => "; SameSite=Lax",
        SameSite::None => "; SameSite=None",
    });
    if let Some(age) = max_age {
        a.push_str(&format!("; Max-Age={age}"));
    }
    a
}

fn expire(app: &App, name: &str) -> String {
    format!("{name}=x{}", attributes(app, Some(0), None))
}

/// Every `name=value` pair of the request's Cookie headers, as bytes.
fn cookie_byte_pairs(head: &RequestHead) -> impl Iterator<Item = (&[u8], &[u8])> {
    head.headers
        .iter()
        .filter(|h| h.is("cookie"))
        .flat_map(|h| cookie_value_pairs(&h.value))
        .filter_map(|pair| {
            let i = memchr::memchr(b'=', pair)?;
            Some((pair[..i].trim_ascii(), pair[i + 1..].trim_ascii()))
        })
}

/// Every `name=value` pair of the request's Cookie headers that is text.
fn cookie_pairs(head: &RequestHead) -> impl Iterator<Item = (&str, &str)> {
    cookie_byte_pairs(head)
        .filter_map(|(n, v)| Some((std::str::from_utf8(n).ok()?, std::str::from_utf8(v).ok()?)))
}

fn cookie_values<'a>(head: &'a RequestHead, name: &'a str) -> impl Iterator<Item = &'a str> {
    cookie_pairs(head)
        .filter(move |(n, _)| *n == name)
        .map(|(_, v)| v)
}

fn cookie_names(head: &RequestHead) -> impl Iterator<Item = &str> {
    cookie_pairs(head).map(|(n, _)| n)
}

/// The `name=value` pairs of a Cookie header value, trimmed (split with
/// memchr: this runs on every request to a pre-authenticated app).
fn cookie_value_pairs(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        let v = rest?;
        let (pair, next) = match memchr::memchr(b';', v) {
            Some(i) => (&v[..i], Some(&v[i + 1..])),
            None => (v, None),
        };
        rest = next;
        Some(pair.trim_ascii())
    })
}

fn pair_name(pair: &[u8]) -> &[u8] {
    memchr::memchr(b'=', pair).map_or(pair, |i| &pair[..i])
}

/// Whether a Cookie header value holds the edge's cookies and nothing
/// else (the header then goes entirely).
pub fn only_edge_cookies(value: &[u8]) -> bool {
    let mut any = false;
    for p in cookie_value_pairs(value).filter(|p| !p.is_empty()) {
        if !is_edge_cookie(pair_name(p)) {
            return false;
        }
        any = true;
    }
    any
}

/// The request's Cookie value without the edge's own cookies; `None` when
/// nothing changes.
pub fn backend_cookie(value: &[u8]) -> Option<Vec<u8>> {
    if !cookie_value_pairs(value).any(|p| is_edge_cookie(pair_name(p))) {
        return None;
    }
    let mut found = false;
    let mut kept = Vec::with_capacity(value.len());
    for pair in cookie_value_pairs(value) {
        if is_edge_cookie(pair_name(pair)) {
            found = true;
            continue;
        }
        if pair.is_empty() {
            continue;
        }
        if !kept.is_empty() {
            kept.extend_from_slice(b"; ");
        }
        kept.extend_from_slice(pair);
    }
    found.then_some(kept)
}

// --- requests ------------------------------------------------------------

fn header_is(head: &RequestHead, name: &str, want: &[u8]) -> bool {
    head.headers
        .iter()
        .any(|h| h.is(name) && h.value.trim_ascii().eq_ignore_ascii_case(want))
}

/// A top-level browser navigation: worth a redirect to a sign-in page.
/// `Sec-Fetch-Mode` says so when a browser sends it; otherwise an
/// `Accept` that names HTML.
fn is_navigation(head: &RequestHead) -> bool {
    if !matches!(&head.method[..], b"GET" | b"HEAD") {
        return false;
    }
    if let Some(h) = head.headers.iter().find(|h| h.is("sec-fetch-mode")) {
        return h.value.trim_ascii().eq_ignore_ascii_case(b"navigate");
    }
    head.headers
        .iter()
        .filter(|h| h.is("accept"))
        .any(|h| memchr::memmem::find(&h.value.to_ascii_lowercase(), b"text/html").is_some())
}

fn is_preflight(head: &RequestHead) -> bool {
    &head.method[..] == b"OPTIONS"
        && head.headers.iter().any(|h| h.is("origin"))
        && head
            .headers
            .iter()
            .any(|h| h.is("access-control-request-method"))
}

fn bearer(head: &RequestHead) -> Option<&str> {
    let h = head.headers.iter().find(|h| h.is("authorization"))?;
    let v = std::str::from_utf8(&h.value).ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

// --- responses -----------------------------------------------------------

/// A string as a JavaScript literal that cannot end its script element.
fn js(s: &str) -> String {
    serde_json::to_string(s)
        .unwrap_or_default()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
}

fn redirect(
    out: &mut Vec<u8>,
    status: u16,
    location: &str,
    cookies: &[String],
    id: &str,
    close: bool,
) {
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\nLocation: {location}\r\nContent-Length: 0\r\nCache-Control: no-store\r\nX-Request-Id: {id}\r\n",
        pages::reason(status)
    );
    head_tail(out, cookies, close);
}

fn head_tail(out: &mut Vec<u8>, cookies: &[String], close: bool) {
    for c in cookies {
        let _ = write!(out, "Set-Cookie: {c}\r\n");
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// A page that moves on by script, with a plain link (and a refresh for
/// browsers without scripts).
#[allow(clippy::too_many_arguments)]
fn html_page(
    out: &mut Vec<u8>,
    id: &str,
    close: bool,
    cookies: &[String],
    title: &str,
    script: &str,
    next: &str,
    link: &str,
) {
    let next = pages::escape(next);
    let body = format!(
        "<script>{script}</script><noscript><meta http-equiv=\"refresh\" content=\"0;url={next}\"></noscript><a href=\"{next}\">{link}</a>"
    );
    html_page_body(out, 200, id, close, cookies, title, &body);
}

fn html_page_body(
    out: &mut Vec<u8>,
    status: u16,
    id: &str,
    close: bool,
    cookies: &[String],
    title: &str,
    body: &str,
) {
    let page = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"referrer\" content=\"no-referrer\"><title>{title}</title></head>\n<body><p>{body}</p></body></html>\n"
    );
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Request-Id: {id}\r\n",
        pages::reason(status),
        page.len()
    );
    head_tail(out, cookies, close);
    out.extend_from_slice(page.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_edge_cookies_never_reach_the_backend() {
        assert_eq!(
            backend_cookie(b"a=1; __Host-postern-hr=xyz; b=2;postern-signin-abc=q").unwrap(),
            b"a=1; b=2"
        );
        assert_eq!(backend_cookie(b"postern-x=1").unwrap(), b"");
        assert_eq!(backend_cookie(b"a=1; b=2"), None);
        assert_eq!(backend_cookie(b"posterns=1"), None);
        // An edge-looking value under another name is the backend's.
        assert_eq!(backend_cookie(b"a=postern-x; b=2"), None);
        assert!(only_edge_cookies(
            b"__Host-postern-hr=x; postern-signin-a=y;"
        ));
        assert!(!only_edge_cookies(b"__Host-postern-hr=x; a=1"));
        assert!(!only_edge_cookies(b"a=postern-x"));
        assert!(!only_edge_cookies(b""));
    }

    #[test]
    fn script_literals_cannot_close_their_element() {
        assert_eq!(
            js("</script><x>"),
            "\"\\u003c/script\\u003e\\u003cx\\u003e\""
        );
    }
}
