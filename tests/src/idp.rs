//! Sign-in test helpers: the real OpenID provider (`oidc-provider` under
//! Node, `tests/idp/provider.mjs`) and a scripted browser with a cookie
//! jar that follows redirects between the edge and the provider.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::client::{self, Response};

/// The test provider's directory (its `node_modules` comes from
/// `npm ci --prefix tests/idp`).
pub fn idp_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("idp")
}

/// A running `oidc-provider`.
pub struct Idp {
    child: Child,
    pub issuer: String,
}

impl Idp {
    /// Starts the provider with `cfg` (see provider.mjs) and waits until
    /// it listens.
    pub fn start(cfg: &serde_json::Value) -> Idp {
        let dir = idp_dir();
        assert!(
            dir.join("node_modules/oidc-provider").exists(),
            "the test identity provider is not installed: run `npm ci --prefix tests/idp`"
        );
        let mut child = Command::new("node")
            .arg(dir.join("provider.mjs"))
            .arg(cfg.to_string())
            .current_dir(&dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node runs");
        let out = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut out = BufReader::new(out);
            let mut line = String::new();
            let _ = out.read_line(&mut line);
            let _ = tx.send(line);
            // Drained for the provider's life: a closed pipe would end it.
            let _ = std::io::copy(&mut out, &mut std::io::sink());
        });
        let line = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("the identity provider starts within 20 s");
        let issuer = line
            .trim()
            .strip_prefix("ready ")
            .unwrap_or_else(|| panic!("unexpected provider output: {line:?}"))
            .to_string();
        Idp { child, issuer }
    }

    pub fn port(&self) -> u16 {
        self.issuer.rsplit(':').next().unwrap().parse().unwrap()
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The test provider's usual configuration: one confidential client for
/// the apps at `app_urls` (callback and logout return registered), and
/// the users given.
pub fn idp_config(app_urls: &[&str], users: serde_json::Value) -> serde_json::Value {
    let callbacks: Vec<String> = app_urls
        .iter()
        .map(|u| format!("{u}.postern/callback"))
        .collect();
    serde_json::json!({
        "clients": [{
            "client_id": "postern-edge",
            "client_secret": "edge-secret",
            "redirect_uris": callbacks,
            "post_logout_redirect_uris": app_urls,
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
        }],
        "users": users,
    })
}

/// The `[identity_provider]` table for [`idp_config`]'s client; writes the
/// secret file into `dir`.
pub fn provider_toml(idp: &Idp, dir: &std::path::Path) -> String {
    std::fs::write(dir.join("idp-secret"), "edge-secret\n").unwrap();
    format!(
        "[identity_provider]\nissuer = \"{}\"\nclient_id = \"postern-edge\"\nclient_secret_file = \"{}\"\nscopes = [\"openid\", \"email\", \"profile\", \"groups\"]\n",
        idp.issuer,
        dir.join("idp-secret").display()
    )
}

/// A scripted browser: one cookie jar per host, every edge host served by
/// the edge's https listener.
pub struct Browser {
    edge: SocketAddr,
    roots: rustls::RootCertStore,
    pub jar: BTreeMap<String, BTreeMap<String, String>>,
    /// Sent with every request (e.g. `Accept: text/html`).
    pub headers: Vec<(String, String)>,
}

/// A URL split into (https, host, port, path).
fn split(url: &str) -> (bool, String, u16, String) {
    let (tls, rest) = match url.strip_prefix("https://") {
        Some(r) => (true, r),
        None => (false, url.strip_prefix("http://").expect("absolute URL")),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) => (h.to_string(), p.parse().unwrap()),
        None => (authority.to_string(), if tls { 443 } else { 80 }),
    };
    (tls, host, port, path.to_string())
}

impl Browser {
    pub fn new(edge: SocketAddr, roots: rustls::RootCertStore) -> Browser {
        Browser {
            edge,
            roots,
            jar: BTreeMap::new(),
            headers: vec![("Accept".into(), "text/html,application/xhtml+xml".into())],
        }
    }

    /// One request; Set-Cookie goes into the jar.
    pub fn request(
        &mut self,
        method: &str,
        url: &str,
        form: Option<&str>,
        extra: &[(&str, &str)],
    ) -> Response {
        let (tls, host, port, path) = split(url);
        let mut raw = format!("{method} {path} HTTP/1.1\r\nHost: {host}");
        if port != if tls { 443 } else { 80 } {
            raw.push_str(&format!(":{port}"));
        }
        raw.push_str("\r\nConnection: close\r\n");
        for (k, v) in &self.headers {
            raw.push_str(&format!("{k}: {v}\r\n"));
        }
        for (k, v) in extra {
            raw.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(c) = self.jar.get(&host).filter(|c| !c.is_empty()) {
            let cookies: Vec<String> = c.iter().map(|(k, v)| format!("{k}={v}")).collect();
            raw.push_str(&format!("Cookie: {}\r\n", cookies.join("; ")));
        }
        if let Some(body) = form {
            raw.push_str(&format!(
                "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ));
        } else {
            raw.push_str("\r\n");
        }
        let resp = if tls {
            let mut s = client::tls(self.edge, &host, self.roots.clone());
            s.write_all(raw.as_bytes()).unwrap();
            client::read_response(&mut s, &mut Vec::new(), method).unwrap()
        } else {
            let mut s = client::tcp(format!("{host}:{port}").parse().unwrap());
            s.write_all(raw.as_bytes()).unwrap();
            client::read_response(&mut s, &mut Vec::new(), method).unwrap()
        };
        let jar = self.jar.entry(host).or_default();
        for c in resp.headers("set-cookie") {
            let pair = c.split(';').next().unwrap_or("");
            let Some((k, v)) = pair.split_once('=') else {
                continue;
            };
            let gone = c.to_ascii_lowercase().contains("max-age=0")
                || c.to_ascii_lowercase().contains("expires=thu, 01 jan 1970");
            if gone {
                jar.remove(k.trim());
            } else {
                jar.insert(k.trim().to_string(), v.trim().to_string());
            }
        }
        resp
    }

    pub fn get(&mut self, url: &str) -> Response {
        self.request("GET", url, None, &[])
    }

    /// GETs `url` and follows redirects (relative ones against the last
    /// URL); returns the last URL and response.
    pub fn follow(&mut self, url: &str) -> (String, Response) {
        let mut url = url.to_string();
        for _ in 0..20 {
            let r = self.get(&url);
            if !(300..400).contains(&r.status) {
                return (url, r);
            }
            url = absolute(
                &url,
                &r.header("location").expect("a redirect has a Location"),
            );
        }
        panic!("more than 20 redirects, last at {url}");
    }

    /// Opens `url`, signs in at the provider's form as `user`, and follows
    /// the redirects back; returns the last URL and response.
    pub fn sign_in(&mut self, url: &str, user: &str, password: &str) -> (String, Response) {
        let (login_url, form) = self.follow(url);
        let (post, r) = self.submit_login(&login_url, &form, user, password);
        if !(300..400).contains(&r.status) {
            return (post, r);
        }
        self.follow(&absolute(&post, &r.header("location").unwrap()))
    }

    /// Posts the provider's login `form` (found at `login_url`) as `user`,
    /// hidden fields as they came; returns the URL posted to and the
    /// answer, not followed.
    pub fn submit_login(
        &mut self,
        login_url: &str,
        form: &Response,
        user: &str,
        password: &str,
    ) -> (String, Response) {
        assert_eq!(
            form.status,
            200,
            "the provider's login form: {}",
            form.text()
        );
        assert!(
            form.text().contains("<form"),
            "a login form: {}",
            form.text()
        );
        let action = form
            .text()
            .split("action=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap()
            .to_string();
        let post = absolute(login_url, &action);
        let mut body = format!("login={user}&password={password}");
        // Hidden fields go back as they came.
        for input in form.text().split("<input").skip(1) {
            let attr = |name: &str| {
                input
                    .split(&format!("{name}=\""))
                    .nth(1)
                    .and_then(|s| s.split('"').next())
                    .map(str::to_string)
            };
            if attr("type").as_deref() == Some("hidden") {
                if let (Some(n), Some(v)) = (attr("name"), attr("value")) {
                    body.push_str(&format!("&{n}={v}"));
                }
            }
        }
        let r = self.request("POST", &post, Some(&body), &[]);
        (post, r)
    }
}

/// `location` made absolute against `base`.
pub fn absolute(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    let (tls, host, port, _) = split(base);
    let scheme = if tls { "https" } else { "http" };
    let default = if tls { 443 } else { 80 };
    let authority = if port == default {
        host
    } else {
        format!("{host}:{port}")
    };
    format!("{scheme}://{authority}{location}")
}

/// A small token issuer of our own, for tokens a real provider would never
/// mint (`alg: none`, HS256 keyed with the RSA public key, wrong audience,
/// expired, unknown keys). It serves discovery and a key set that a test
/// can change, and counts key-set fetches.
pub struct TestIssuer {
    pub issuer: String,
    rsa: ring::signature::RsaKeyPair,
    pub server: crate::backend::Backend,
    jwks: std::sync::Arc<std::sync::Mutex<serde_json::Value>>,
    pub jwks_fetches: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// A 2,048-bit RSA key (PKCS#1 DER) made for tests only.
const TEST_RSA: &[u8] = include_bytes!("../../control/src/jwt/test-rsa-2048.der");

fn b64(d: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(d)
}

impl TestIssuer {
    /// Serving key `r1` (RS256).
    pub fn start() -> TestIssuer {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::{Arc, Mutex, OnceLock};
        let rsa = ring::signature::RsaKeyPair::from_der(TEST_RSA).unwrap();
        let jwks = Arc::new(Mutex::new(serde_json::json!({"keys": []})));
        let fetches = Arc::new(AtomicUsize::new(0));
        let url: Arc<OnceLock<String>> = Arc::new(OnceLock::new());
        let (j, f, u) = (jwks.clone(), fetches.clone(), url.clone());
        let server = crate::backend::Backend::start(move |seen| {
            let iss = u.get().cloned().unwrap_or_default();
            match seen.target.as_str() {
                "/.well-known/openid-configuration" => crate::backend::Reply::ok(
                    serde_json::json!({
                        "issuer": iss,
                        "authorization_endpoint": format!("{iss}/auth"),
                        "token_endpoint": format!("{iss}/token"),
                        "jwks_uri": format!("{iss}/jwks"),
                    })
                    .to_string(),
                ),
                "/jwks" => {
                    f.fetch_add(1, Ordering::SeqCst);
                    crate::backend::Reply::ok(j.lock().unwrap().to_string())
                }
                _ => crate::backend::Reply::ok("no").status(404),
            }
        });
        let issuer = format!("http://{}", server.addr);
        url.set(issuer.clone()).unwrap();
        let me = TestIssuer {
            issuer,
            rsa,
            server,
            jwks,
            jwks_fetches: fetches,
        };
        me.publish(&["r1"]);
        me
    }

    /// Publishes the RSA key under each of `kids`.
    pub fn publish(&self, kids: &[&str]) {
        let c = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(
            ring::signature::KeyPair::public_key(&self.rsa),
        );
        let keys: Vec<_> = kids
            .iter()
            .map(|k| serde_json::json!({"kty": "RSA", "kid": k, "alg": "RS256", "use": "sig", "n": b64(&c.n), "e": b64(&c.e)}))
            .collect();
        *self.jwks.lock().unwrap() = serde_json::json!({ "keys": keys });
    }

    /// The claims of a good token for `aud`, valid for five minutes.
    pub fn claims(&self, aud: &str, sub: &str) -> serde_json::Value {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        serde_json::json!({"iss": self.issuer, "aud": aud, "sub": sub, "iat": now, "nbf": now - 5, "exp": now + 300,
            "email": format!("{sub}@example.com"), "groups": ["staff"]})
    }

    /// Signs `claims` under `header`: RS256 with the RSA key; HS256 as an
    /// HMAC keyed with the RSA public modulus (the key-confusion attack);
    /// any other `alg`, no signature.
    pub fn mint(&self, header: serde_json::Value, claims: &serde_json::Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = match header["alg"].as_str() {
            Some("RS256") => {
                let mut sig = vec![0; self.rsa.public().modulus_len()];
                self.rsa
                    .sign(
                        &ring::signature::RSA_PKCS1_SHA256,
                        &ring::rand::SystemRandom::new(),
                        input.as_bytes(),
                        &mut sig,
                    )
                    .unwrap();
                sig
            }
            Some("HS256") => {
                let c = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(
                    ring::signature::KeyPair::public_key(&self.rsa),
                );
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &c.n);
                ring::hmac::sign(&key, input.as_bytes()).as_ref().to_vec()
            }
            _ => Vec::new(),
        };
        format!("{input}.{}", b64(&sig))
    }
}
