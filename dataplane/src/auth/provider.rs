//! One identity provider as the running edge knows it: its discovery
//! document and signing keys, fetched on a control thread, refreshed on a
//! schedule and (rate-limited) when a token names a key not yet known;
//! and the code exchange of a sign-in.
//!
//! Workers never wait on a provider: they read the last published
//! [`View`] (a version check, then a clone of an `Arc` only when it
//! changed) and hand anything that needs the network to a control thread.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use postern_control::config::{ClientAuth, IdentityProvider};
use postern_control::jwt::{self, Expect, KeySet, Verified};
use postern_control::oidc::{self, ClientKey, Discovery, Tokens};

use super::fetch;

/// Keys are fetched again this often.
const REFRESH: Duration = Duration::from_secs(10 * 60);
/// A token naming an unknown key fetches the keys at most this often.
const FORCED_REFRESH_GAP: Duration = Duration::from_secs(30);
/// Longest wait between attempts while the provider cannot be reached.
const MAX_RETRY: Duration = Duration::from_secs(30);

/// What the edge knows of a provider once it has been reached.
pub struct View {
    pub discovery: Discovery,
    pub keys: KeySet,
}

pub struct Provider {
    pub cfg: IdentityProvider,
    tls: Arc<rustls::ClientConfig>,
    secret: Option<String>,
    key: Option<ClientKey>,
    view: Mutex<Option<Arc<View>>>,
    /// Bumped each time `view` changes (0: never reached).
    version: AtomicU64,
    /// Why the provider could not be reached, while it cannot.
    problem: Mutex<Option<String>>,
    /// Serialises key fetches; holds when the last forced one ran.
    refreshing: Mutex<Option<Instant>>,
    /// Key sets fetched (scheduled and forced; the edge's counter).
    jwks_refreshes: Arc<AtomicU64>,
}

/// Why a sign-in's code exchange failed.
#[derive(Debug)]
pub enum ExchangeError {
    /// The provider could not be reached or answered badly.
    Provider(String),
    /// The id_token did not verify.
    Token(String),
}

impl Provider {
    /// Reads the provider's client credentials (on the starting thread).
    pub fn new(cfg: IdentityProvider, jwks_refreshes: Arc<AtomicU64>) -> Result<Provider, String> {
        let roots = match &cfg.ca_file {
            Some(path) => Some(
                crate::tls::read_certs(path)
                    .map_err(|e| format!("identity provider \"{}\": {e}", cfg.name))?,
            ),
            None => None,
        };
        let tls = crate::tls::backend_client_config_with(true, roots)
            .map_err(|e| format!("identity provider \"{}\": {e}", cfg.name))?;
        let read = |path: &std::path::Path| {
            std::fs::read(path).map_err(|e| {
                format!(
                    "identity provider \"{}\": {}: {e}",
                    cfg.name,
                    path.display()
                )
            })
        };
        let (secret, key) = match &cfg.client_auth {
            ClientAuth::None => (None, None),
            ClientAuth::SecretFile(p) => {
                let s = String::from_utf8(read(p)?).map_err(|_| {
                    format!(
                        "identity provider \"{}\": {}: the client secret is not text",
                        cfg.name,
                        p.display()
                    )
                })?;
                let s = s.trim().to_string();
                if s.is_empty() {
                    return Err(format!(
                        "identity provider \"{}\": {}: the client secret file is empty",
                        cfg.name,
                        p.display()
                    ));
                }
                (Some(s), None)
            }
            ClientAuth::PrivateKeyJwt(p) => {
                let key = ClientKey::from_pem(&read(p)?).map_err(|e| {
                    format!("identity provider \"{}\": {}: {e}", cfg.name, p.display())
                })?;
                (None, Some(key))
            }
        };
        Ok(Provider {
            cfg,
            tls,
            secret,
            key,
            view: Mutex::new(None),
            version: AtomicU64::new(0),
            problem: Mutex::new(None),
            refreshing: Mutex::new(None),
            jwks_refreshes,
        })
    }

    /// The version of the published view (0 until first reached).
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    pub fn view(&self) -> Option<Arc<View>> {
        self.view.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Why the provider cannot be used, if it cannot.
    pub fn problem(&self) -> Option<String> {
        self.problem
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn publish(&self, view: View) {
        *self.view.lock().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(view));
        *self.problem.lock().unwrap_or_else(|e| e.into_inner()) = None;
        self.version.fetch_add(1, Ordering::AcqRel);
    }

    fn get(&self, url: &str, what: &str) -> Result<Vec<u8>, String> {
        let a = fetch::request(&self.tls, url, &[], None)?;
        if a.status != 200 {
            return Err(format!("{what} at {url} answered HTTP {}", a.status));
        }
        Ok(a.body)
    }

    /// Discovery, then the keys it names. Blocking: control threads only.
    fn load(&self) -> Result<View, String> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.cfg.issuer.trim_end_matches('/')
        );
        let discovery = Discovery::parse(&self.get(&url, "discovery")?, &self.cfg.issuer)
            .map_err(|e| format!("{url}: {e}"))?;
        let keys = self.fetch_keys(&discovery)?;
        Ok(View { discovery, keys })
    }

    fn fetch_keys(&self, d: &Discovery) -> Result<KeySet, String> {
        let body = self.get(&d.jwks_uri, "the key set")?;
        let keys = KeySet::from_jwks(&body).map_err(|e| format!("{}: {e}", d.jwks_uri))?;
        self.jwks_refreshes.fetch_add(1, Ordering::Relaxed);
        for s in &keys.skipped {
            tracing::debug!(provider = %self.cfg.name, key = %s, "signing key skipped");
        }
        Ok(keys)
    }

    /// Keeps the view fresh for the life of the process: retried with
    /// backoff until first reached, then refreshed every [`REFRESH`].
    pub fn refresh_loop(self: Arc<Self>) {
        let mut wait = Duration::from_secs(1);
        let mut failures = 0u32;
        loop {
            let reached = self.version() > 0;
            let result = {
                let _g = self.refreshing.lock().unwrap_or_else(|e| e.into_inner());
                self.load()
            };
            match result {
                Ok(view) => {
                    if !reached || failures > 0 {
                        tracing::info!(provider = %self.cfg.name, issuer = %self.cfg.issuer, keys = view.keys.keys.len(), "identity provider reached");
                    }
                    self.publish(view);
                    failures = 0;
                    wait = Duration::from_secs(1);
                    std::thread::sleep(REFRESH);
                }
                Err(e) => {
                    failures += 1;
                    if reached {
                        tracing::warn!(provider = %self.cfg.name, error = %e, "refreshing the identity provider's keys failed; the known keys stay in use");
                    } else {
                        if failures == 1 {
                            tracing::error!(provider = %self.cfg.name, issuer = %self.cfg.issuer, error = %e, "cannot reach the identity provider; its apps answer 503 until it can be reached (retrying)");
                        } else {
                            tracing::warn!(provider = %self.cfg.name, error = %e, attempt = failures, "identity provider still unreachable");
                        }
                        *self.problem.lock().unwrap_or_else(|e| e.into_inner()) = Some(e);
                    }
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(MAX_RETRY);
                }
            }
        }
    }

    /// A token named a key the edge does not know: fetch the keys again,
    /// unless another caller already did since `seen` (the version the
    /// caller verified against) or the last forced fetch was too recent.
    /// Whether there is a newer view to try. Blocking: control threads only.
    pub fn refresh_keys(&self, seen: u64) -> bool {
        let mut last = self.refreshing.lock().unwrap_or_else(|e| e.into_inner());
        if self.version() != seen {
            return true;
        }
        if last.is_some_and(|t| t.elapsed() < FORCED_REFRESH_GAP) {
            return false;
        }
        *last = Some(Instant::now());
        let Some(view) = self.view() else {
            return false;
        };
        match self.fetch_keys(&view.discovery) {
            Ok(keys) => {
                tracing::info!(provider = %self.cfg.name, keys = keys.keys.len(), "signing keys fetched again for an unknown key id");
                self.publish(View {
                    discovery: view.discovery.clone(),
                    keys,
                });
                true
            }
            Err(e) => {
                tracing::warn!(provider = %self.cfg.name, error = %e, "fetching the signing keys again failed");
                false
            }
        }
    }

    /// What tokens from this provider must say, for `audiences`.
    pub fn expect<'a>(&'a self, audiences: &'a [&'a str], now: u64) -> Expect<'a> {
        Expect {
            issuer: &self.cfg.issuer,
            audiences,
            skew: self.cfg.clock_skew,
            now,
        }
    }

    /// Verifies a token against the current keys; a token naming an
    /// unknown key fetches them once more (rate-limited). Blocking when it
    /// fetches: control threads only.
    pub fn verify_fetching(
        &self,
        token: &str,
        check: impl Fn(&KeySet) -> Result<Verified, String>,
    ) -> Result<Verified, String> {
        let seen = self.version();
        let view = self
            .view()
            .ok_or_else(|| "the identity provider has not been reached".to_string())?;
        let kid = jwt::key_id(token).map_err(|e| e.to_string())?;
        if view.keys.find(kid.as_deref()).is_none() && self.refresh_keys(seen) {
            if let Some(fresh) = self.view() {
                return check(&fresh.keys);
            }
        }
        check(&view.keys)
    }

    /// Exchanges a sign-in's code at the token endpoint and verifies the
    /// id_token it returns (audience: this client; this sign-in's nonce).
    /// Blocking: control threads only.
    pub fn exchange(
        &self,
        code: &str,
        redirect_uri: &str,
        sign_in: &oidc::SignIn,
        now: u64,
    ) -> Result<(Tokens, Verified), ExchangeError> {
        let form = oidc::token_request(code, redirect_uri, &self.cfg.client_id, &sign_in.verifier);
        let tokens = self.token_call(form, now)?;
        let audiences = [self.cfg.client_id.as_str()];
        let verified = self
            .verify_fetching(&tokens.id_token, |keys| {
                oidc::verify_id_token(
                    &tokens.id_token,
                    keys,
                    &self.expect(&audiences, now),
                    &sign_in.nonce,
                )
            })
            .map_err(ExchangeError::Token)?;
        Ok((tokens, verified))
    }

    /// Renews a session with its refresh token (RFC 6749 §6) and verifies
    /// the new id_token (audience: this client; it carries no nonce to
    /// check, and the caller checks its subject is the session's).
    /// Blocking: control threads only.
    pub fn refresh(
        &self,
        refresh_token: &str,
        now: u64,
    ) -> Result<(Tokens, Verified), ExchangeError> {
        let form = oidc::form_encode(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
            ("client_id", &self.cfg.client_id),
        ]);
        let tokens = self.token_call(form, now)?;
        let audiences = [self.cfg.client_id.as_str()];
        let verified = self
            .verify_fetching(&tokens.id_token, |keys| {
                postern_control::jwt::verify(&tokens.id_token, keys, &self.expect(&audiences, now))
                    .map_err(|e| e.to_string())
            })
            .map_err(ExchangeError::Token)?;
        Ok((tokens, verified))
    }

    /// One call to the token endpoint with the client's authentication
    /// (`client_secret_basic`, or a `private_key_jwt` assertion added to
    /// `form`).
    fn token_call(&self, mut form: String, now: u64) -> Result<Tokens, ExchangeError> {
        let view = self
            .view()
            .ok_or_else(|| ExchangeError::Provider("the provider has not been reached".into()))?;
        let endpoint = &view.discovery.token_endpoint;
        let mut headers = Vec::new();
        let basic;
        if let Some(secret) = &self.secret {
            let user = oidc::form_encode(&[("", &self.cfg.client_id)]);
            let pass = oidc::form_encode(&[("", secret)]);
            basic = format!(
                "Basic {}",
                STANDARD.encode(format!("{}:{}", &user[1..], &pass[1..]))
            );
            headers.push(("Authorization", basic.as_str()));
        }
        if let Some(key) = &self.key {
            let fields = key
                .assertion_fields(&self.cfg.client_id, endpoint, now)
                .map_err(ExchangeError::Provider)?;
            form.push('&');
            form.push_str(&oidc::form_encode(&[
                (fields[0].0, fields[0].1.as_str()),
                (fields[1].0, fields[1].1.as_str()),
            ]));
        }
        let answer = fetch::request(&self.tls, endpoint, &headers, Some(&form))
            .map_err(ExchangeError::Provider)?;
        oidc::parse_token_response(&answer.body).map_err(|e| {
            ExchangeError::Provider(format!(
                "the token endpoint answered HTTP {}: {e}",
                answer.status
            ))
        })
    }
}
