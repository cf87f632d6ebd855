//! The demo OpenID provider that `postern quickstart` runs beside its
//! signed-in sample app, so a newcomer sees a whole sign-in with one
//! command and no account anywhere. One client, one user, keys made at
//! start and never written down.
//!
//! It is a real, small OpenID provider (authorization code with PKCE S256,
//! `client_secret_basic` or `client_secret_post`, refresh tokens, ES256
//! id_tokens, RP-initiated logout), plus the resource-owner password grant
//! so a script can fetch a bearer token with curl. It is started only by
//! the quickstart, listens on loopback only, and nothing in an edge
//! configuration can start it: `postern edge` never serves it.
//!
//! Plain blocking code on its own threads, like the sample app: it stands
//! in for an identity provider and is not part of the data plane. Every
//! input is bounded (requests are read as the admin API reads them,
//! `crate::blocking_http`): one request per connection, a 16 KiB head and body,
//! 10 s to send them, 32 connections at a time, and at most 1,024 sign-ins
//! and tokens pending at once.

use std::collections::HashMap;
use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use postern_control::oidc::{form_decode, form_encode, form_param, pkce_challenge, random_token};

use crate::auth::assertion::Signer;
use crate::blocking_http::{read_request, ReadError, Request};

/// The relying party the provider knows.
pub struct Client {
    pub id: String,
    pub secret: String,
    /// Exact redirect URIs (the apps' `/.postern/callback`).
    pub redirect_uris: Vec<String>,
    /// Where a logout may send the user back to (exact match).
    pub post_logout_redirect_uris: Vec<String>,
}

/// The one user.
pub struct User {
    pub username: String,
    pub password: String,
    pub name: String,
    pub email: String,
    pub groups: Vec<String>,
}

pub struct Config {
    /// `http://127.0.0.1:PORT`: the address the listener is bound to.
    pub issuer: String,
    pub client: Client,
    pub user: User,
    /// Seconds an id_token lives.
    pub id_token_lifetime: u64,
}

const MAX_REQUEST: usize = 16 * 1024;
const MAX_CONNECTIONS: usize = 32;
const MAX_PENDING: usize = 1024;
/// Seconds a login form, a code and a refresh token stay usable.
const LOGIN_TTL: u64 = 600;
const CODE_TTL: u64 = 60;
const REFRESH_TTL: u64 = 86_400;
/// Wrong passwords one login form accepts before it must be started again.
const ATTEMPTS: u32 = 5;

/// An authorization request waiting for the user's password.
struct Login {
    redirect_uri: String,
    state: String,
    nonce: Option<String>,
    challenge: String,
    expires: u64,
    attempts: u32,
}

/// A code or refresh token: what it may be exchanged for.
struct Grant {
    redirect_uri: Option<String>,
    nonce: Option<String>,
    challenge: Option<String>,
    auth_time: u64,
    expires: u64,
}

struct Provider {
    cfg: Config,
    signer: Signer,
    logins: Mutex<HashMap<String, Login>>,
    codes: Mutex<HashMap<String, Grant>>,
    refresh: Mutex<HashMap<String, Grant>>,
    connections: AtomicUsize,
}

/// Serves the provider on `listener` from a thread of its own.
pub fn start(listener: TcpListener, cfg: Config) -> std::io::Result<()> {
    let provider = Arc::new(Provider {
        cfg,
        signer: Signer::generate(None),
        logins: Mutex::default(),
        codes: Mutex::default(),
        refresh: Mutex::default(),
        connections: AtomicUsize::new(0),
    });
    std::thread::Builder::new()
        .name("demo-idp".into())
        .spawn(move || {
            for stream in listener.incoming().flatten() {
                if provider.connections.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
                    provider.connections.fetch_sub(1, Ordering::AcqRel);
                    continue;
                }
                let p = provider.clone();
                let spawned = std::thread::Builder::new()
                    .name("demo-idp-conn".into())
                    .spawn(move || {
                        serve(&p, stream);
                        p.connections.fetch_sub(1, Ordering::AcqRel);
                    });
                if spawned.is_err() {
                    provider.connections.fetch_sub(1, Ordering::AcqRel);
                }
            }
        })?;
    Ok(())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

struct Response {
    status: u16,
    content_type: &'static str,
    location: Option<String>,
    body: String,
}

impl Response {
    fn json(status: u16, body: String) -> Response {
        Response {
            status,
            content_type: "application/json",
            location: None,
            body,
        }
    }
    fn page(status: u16, title: &str, content: &str) -> Response {
        Response {
            status,
            content_type: "text/html; charset=utf-8",
            location: None,
            body: format!(
                "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title} · Postern demo provider</title>\n\
                 <style>body{{font-family:sans-serif;max-width:28em;margin:3em auto}}label{{display:block;margin:.6em 0}}</style></head>\n\
                 <body><h1>{title}</h1>\n{content}</body></html>\n"
            ),
        }
    }
    fn redirect(location: String) -> Response {
        Response {
            status: 303,
            content_type: "text/plain",
            location: Some(location),
            body: String::new(),
        }
    }
    fn oauth_error(status: u16, error: &str, description: &str) -> Response {
        Response::json(
            status,
            serde_json::json!({"error": error, "error_description": description}).to_string(),
        )
    }
}

fn serve(p: &Provider, mut stream: TcpStream) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(10)));
    let response = match read_request(&mut stream, MAX_REQUEST, MAX_REQUEST) {
        Ok(req) => handle(p, &req),
        Err(ReadError::Status(_, why)) => Response::page(
            400,
            "Bad request",
            &format!("<p>{}</p>", crate::pages::escape(&why)),
        ),
        Err(ReadError::Gone) => return,
    };
    let reason = match response.status {
        200 => "OK",
        303 => "See Other",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Error",
    };
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n",
        response.status,
        response.content_type,
        response.body.len()
    );
    if response.status == 401 {
        out.push_str("WWW-Authenticate: Basic realm=\"demo\"\r\n");
    }
    if let Some(l) = &response.location {
        out.push_str(&format!("Location: {l}\r\n"));
    }
    out.push_str("\r\n");
    out.push_str(&response.body);
    let _ = stream.write_all(out.as_bytes());
}

fn handle(p: &Provider, req: &Request) -> Response {
    let post = req.method == "POST";
    let (path, query) = req.path.split_once('?').unwrap_or((&req.path, ""));
    match (req.method.as_str(), path) {
        ("GET", "/.well-known/openid-configuration") => discovery(p),
        ("GET", "/jwks") => Response::json(200, p.signer.jwks()),
        ("GET", "/authorize") => authorize(p, query.as_bytes()),
        ("POST", "/login") => login(p, &req.body),
        ("POST", "/token") => token(p, req),
        ("GET", "/logout") => logout(p, query.as_bytes()),
        ("GET", "/") => Response::page(
            200,
            "Postern demo provider",
            "<p>This OpenID provider runs only inside <code>postern quickstart</code>, for its signed-in sample app.</p>",
        ),
        (_, "/token" | "/login") if !post => {
            Response::page(405, "Method not allowed", "<p>Use POST.</p>")
        }
        _ => Response::page(404, "Not found", "<p>No such page.</p>"),
    }
}

fn discovery(p: &Provider) -> Response {
    let i = &p.cfg.issuer;
    Response::json(
        200,
        serde_json::json!({
            "issuer": i,
            "authorization_endpoint": format!("{i}/authorize"),
            "token_endpoint": format!("{i}/token"),
            "jwks_uri": format!("{i}/jwks"),
            "end_session_endpoint": format!("{i}/logout"),
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token", "password"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "claims_supported": ["sub", "name", "email", "groups", "amr", "preferred_username"],
        })
        .to_string(),
    )
}

/// Inserts into a bounded table after dropping what has expired; `false`
/// when it is still full.
fn insert(table: &Mutex<HashMap<String, Grant>>, key: String, grant: Grant) -> bool {
    let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
    let n = now();
    t.retain(|_, g| g.expires > n);
    if t.len() >= MAX_PENDING {
        return false;
    }
    t.insert(key, grant);
    true
}

fn take(table: &Mutex<HashMap<String, Grant>>, key: &str) -> Option<Grant> {
    let mut t = table.lock().unwrap_or_else(|e| e.into_inner());
    t.remove(key).filter(|g| g.expires > now())
}

fn authorize(p: &Provider, q: &[u8]) -> Response {
    let client = &p.cfg.client;
    let get = |name| form_param(q, name).unwrap_or_default();
    let redirect_uri = get("redirect_uri");
    if get("client_id") != client.id || !client.redirect_uris.contains(&redirect_uri) {
        // Never redirect to an address the client did not register.
        return Response::page(
            400,
            "Unknown application",
            &format!(
                "<p>The client id or redirect URI is not registered here. This provider knows only client <code>{}</code>.</p>",
                crate::pages::escape(&client.id)
            ),
        );
    }
    let state = get("state");
    let back = |error: &str, description: &str| {
        Response::redirect(format!(
            "{redirect_uri}?{}",
            form_encode(&[
                ("error", error),
                ("error_description", description),
                ("state", &state),
                ("iss", &p.cfg.issuer)
            ])
        ))
    };
    if get("response_type") != "code" {
        return back("unsupported_response_type", "only response_type=code");
    }
    if !get("scope").split(' ').any(|s| s == "openid") {
        return back("invalid_scope", "the openid scope is required");
    }
    let challenge = get("code_challenge");
    if get("code_challenge_method") != "S256" || challenge.len() != 43 {
        return back("invalid_request", "PKCE with S256 is required");
    }
    let id = random_token(18);
    {
        let mut logins = p.logins.lock().unwrap_or_else(|e| e.into_inner());
        let n = now();
        logins.retain(|_, l| l.expires > n);
        if logins.len() >= MAX_PENDING {
            return back("temporarily_unavailable", "too many sign-ins in progress");
        }
        logins.insert(
            id.clone(),
            Login {
                redirect_uri: redirect_uri.clone(),
                state: state.clone(),
                nonce: form_param(q, "nonce"),
                challenge,
                expires: n + LOGIN_TTL,
                attempts: 0,
            },
        );
    }
    login_form(p, &id, None)
}

fn login_form(p: &Provider, id: &str, error: Option<&str>) -> Response {
    let e = crate::pages::escape;
    let error = error.map_or(String::new(), |m| {
        format!("<p role=\"alert\" style=\"color:#b00\">{}</p>\n", e(m))
    });
    Response::page(
        200,
        "Sign in",
        &format!(
            "<p>Sign in to the Postern quickstart. The demo user is <b>{user}</b>; its password is in the quickstart's banner.</p>\n{error}\
             <form method=\"post\" action=\"/login\">\n<input type=\"hidden\" name=\"request\" value=\"{id}\">\n\
             <label>User name <input name=\"login\" value=\"{user}\" autocomplete=\"username\" required></label>\n\
             <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" autofocus required></label>\n\
             <button type=\"submit\">Sign in</button>\n</form>\n",
            user = e(&p.cfg.user.username),
            id = e(id),
        ),
    )
}

/// Compares secrets by their digests, so the time taken says nothing
/// about where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    let d = |s: &str| ring::digest::digest(&ring::digest::SHA256, s.as_bytes());
    let (a, b) = (d(a), d(b));
    a.as_ref()
        .iter()
        .zip(b.as_ref())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

fn credentials_ok(p: &Provider, username: &str, password: &str) -> bool {
    let u = &p.cfg.user;
    (username == u.username) & same_secret(password, &u.password)
}

fn login(p: &Provider, body: &[u8]) -> Response {
    let id = form_param(body, "request").unwrap_or_default();
    let username = form_param(body, "login").unwrap_or_default();
    let password = form_param(body, "password").unwrap_or_default();
    let mut logins = p.logins.lock().unwrap_or_else(|e| e.into_inner());
    let Some(l) = logins.get_mut(&id).filter(|l| l.expires > now()) else {
        return Response::page(
            400,
            "Sign-in expired",
            "<p>This sign-in is unknown or has expired. Go back to the application and start again.</p>",
        );
    };
    if !credentials_ok(p, &username, &password) {
        l.attempts += 1;
        if l.attempts >= ATTEMPTS {
            logins.remove(&id);
            return Response::page(
                400,
                "Too many attempts",
                "<p>Too many wrong passwords. Go back to the application and start again.</p>",
            );
        }
        drop(logins);
        return login_form(p, &id, Some("Wrong user name or password."));
    }
    let Some(l) = logins.remove(&id) else {
        return Response::page(400, "Sign-in expired", "<p>Start again.</p>");
    };
    drop(logins);
    let code = random_token(32);
    let grant = Grant {
        redirect_uri: Some(l.redirect_uri.clone()),
        nonce: l.nonce,
        challenge: Some(l.challenge),
        auth_time: now(),
        expires: now() + CODE_TTL,
    };
    if !insert(&p.codes, code.clone(), grant) {
        return Response::page(400, "Busy", "<p>Too many sign-ins in progress.</p>");
    }
    Response::redirect(format!(
        "{}?{}",
        l.redirect_uri,
        form_encode(&[("code", &code), ("state", &l.state), ("iss", &p.cfg.issuer)])
    ))
}

/// The client's credentials from a Basic header (each part form-encoded,
/// RFC 6749 §2.3.1) or from the form.
fn client_authenticated(p: &Provider, req: &Request) -> bool {
    let (id, secret) = match req.authorization.as_deref().and_then(|a| {
        let (scheme, value) = a.trim().split_once(' ')?;
        scheme.eq_ignore_ascii_case("basic").then_some(value)
    }) {
        Some(value) => {
            let Some(decoded) = STANDARD
                .decode(value.trim())
                .ok()
                .and_then(|d| String::from_utf8(d).ok())
            else {
                return false;
            };
            let Some((id, secret)) = decoded.split_once(':') else {
                return false;
            };
            (
                form_decode(id.as_bytes()).unwrap_or_default(),
                form_decode(secret.as_bytes()).unwrap_or_default(),
            )
        }
        None => (
            form_param(&req.body, "client_id").unwrap_or_default(),
            form_param(&req.body, "client_secret").unwrap_or_default(),
        ),
    };
    let c = &p.cfg.client;
    (id == c.id) & same_secret(&secret, &c.secret)
}

fn token(p: &Provider, req: &Request) -> Response {
    if !client_authenticated(p, req) {
        return Response::oauth_error(401, "invalid_client", "unknown client or wrong secret");
    }
    let f = |name| form_param(&req.body, name).unwrap_or_default();
    let grant = match f("grant_type").as_str() {
        "authorization_code" => {
            let Some(g) = take(&p.codes, &f("code")) else {
                return Response::oauth_error(
                    400,
                    "invalid_grant",
                    "unknown, used or expired code",
                );
            };
            if g.redirect_uri.as_deref() != Some(f("redirect_uri").as_str()) {
                return Response::oauth_error(400, "invalid_grant", "redirect_uri differs");
            }
            if g.challenge.as_deref() != Some(pkce_challenge(&f("code_verifier")).as_str()) {
                return Response::oauth_error(400, "invalid_grant", "PKCE verification failed");
            }
            g
        }
        "refresh_token" => match take(&p.refresh, &f("refresh_token")) {
            Some(g) => Grant { nonce: None, ..g },
            None => {
                return Response::oauth_error(
                    400,
                    "invalid_grant",
                    "unknown or expired refresh token",
                )
            }
        },
        "password" => {
            if !credentials_ok(p, &f("username"), &f("password")) {
                return Response::oauth_error(400, "invalid_grant", "wrong user name or password");
            }
            Grant {
                redirect_uri: None,
                nonce: None,
                challenge: None,
                auth_time: now(),
                expires: 0,
            }
        }
        other => {
            return Response::oauth_error(
                400,
                "unsupported_grant_type",
                &format!("grant_type {other:?} is not supported"),
            )
        }
    };
    let n = now();
    let u = &p.cfg.user;
    let mut claims = serde_json::json!({
        "iss": p.cfg.issuer,
        "sub": u.username,
        "aud": p.cfg.client.id,
        "iat": n,
        "exp": n + p.cfg.id_token_lifetime,
        "auth_time": grant.auth_time,
        "amr": ["pwd"],
        "name": u.name,
        "preferred_username": u.username,
        "email": u.email,
        "email_verified": true,
        "groups": u.groups,
    });
    if let Some(nonce) = &grant.nonce {
        claims["nonce"] = nonce.clone().into();
    }
    let refresh = random_token(32);
    let kept = insert(
        &p.refresh,
        refresh.clone(),
        Grant {
            redirect_uri: None,
            nonce: None,
            challenge: None,
            auth_time: grant.auth_time,
            expires: n + REFRESH_TTL,
        },
    );
    let mut answer = serde_json::json!({
        "access_token": random_token(32),
        "token_type": "Bearer",
        "expires_in": p.cfg.id_token_lifetime,
        "id_token": p.signer.sign(&claims),
        "scope": "openid profile email",
    });
    if kept {
        answer["refresh_token"] = refresh.into();
    }
    Response::json(200, answer.to_string())
}

fn logout(p: &Provider, q: &[u8]) -> Response {
    // The provider keeps no session of its own (every sign-in asks for the
    // password), so logging out ends only the app's session, which the edge
    // has already cleared. The way back is offered as a link, not taken, so
    // the user sees that the sign-out happened.
    let target = form_param(q, "post_logout_redirect_uri").unwrap_or_default();
    let back = if p.cfg.client.post_logout_redirect_uris.contains(&target) {
        format!(
            " <a href=\"{}\">Back to the application</a>.",
            crate::pages::escape(&target)
        )
    } else {
        String::new()
    };
    Response::page(
        200,
        "Signed out",
        &format!("<p>You are signed out.{back}</p>"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("correct horse", "correct horse"));
        assert!(!same_secret("correct horse", "correct hors"));
        assert!(!same_secret("", "x"));
    }
}
