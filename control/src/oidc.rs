//! The pieces of an OpenID Connect sign-in that need no network: the
//! provider's discovery document, PKCE (S256), `state` and `nonce`, the
//! authorization URL, and the short-lived sign-in record the edge keeps in
//! a sealed cookie between the redirect and the callback.
//!
//! The sign-in record carries the URL first asked for, fragment included
//! (a page script reads it before the redirect), so the user lands exactly
//! there; it is bound to the app and to its `state`, and is good once.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// How long a sign-in may take, from the redirect to the callback.
pub const SIGN_IN_TTL: u64 = 600;

/// A provider's endpoints, from `/.well-known/openid-configuration`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Discovery {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    pub end_session_endpoint: Option<String>,
}

impl Discovery {
    /// Parses and checks a discovery document for the configured issuer:
    /// its `issuer` must be that issuer exactly (OpenID Connect Discovery
    /// §4.3), its endpoints https (or http on a loopback address), and it
    /// must support PKCE with S256 when it lists methods at all.
    pub fn parse(json: &[u8], expected_issuer: &str) -> Result<Discovery, String> {
        let doc: Value = serde_json::from_slice(json)
            .map_err(|e| format!("the discovery document is not JSON: {e}"))?;
        let field = |name: &str| -> Result<String, String> {
            doc.get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| format!("the discovery document has no `{name}`"))
        };
        let issuer = field("issuer")?;
        if issuer != expected_issuer {
            return Err(format!(
                "the provider says its issuer is {issuer:?}, but {expected_issuer:?} is configured"
            ));
        }
        let d = Discovery {
            issuer,
            authorization_endpoint: field("authorization_endpoint")?,
            token_endpoint: field("token_endpoint")?,
            jwks_uri: field("jwks_uri")?,
            end_session_endpoint: doc
                .get("end_session_endpoint")
                .and_then(Value::as_str)
                .map(str::to_string),
        };
        for (name, url) in [
            ("authorization_endpoint", Some(&d.authorization_endpoint)),
            ("token_endpoint", Some(&d.token_endpoint)),
            ("jwks_uri", Some(&d.jwks_uri)),
            ("end_session_endpoint", d.end_session_endpoint.as_ref()),
        ] {
            if let Some(url) = url {
                if !secure_url(url) {
                    return Err(format!("`{name}` {url:?} is not an https URL"));
                }
            }
        }
        if let Some(methods) = doc
            .get("code_challenge_methods_supported")
            .and_then(Value::as_array)
        {
            if !methods.iter().any(|m| m == "S256") {
                return Err("the provider does not support PKCE with S256".into());
            }
        }
        Ok(d)
    }
}

/// https, or http to a loopback host (a provider on the same machine).
fn secure_url(url: &str) -> bool {
    if url.starts_with("https://") {
        return true;
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit_once(':').map_or(host, |(h, p)| {
        if p.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    matches!(host, "localhost" | "[::1]") || host.starts_with("127.")
}

/// `n` random bytes, base64url.
pub fn random_token(n: usize) -> String {
    let mut b = vec![0u8; n];
    SystemRandom::new().fill(&mut b).expect("system randomness");
    URL_SAFE_NO_PAD.encode(b)
}

/// The PKCE challenge for a verifier (RFC 7636 S256).
pub fn pkce_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ))
}

/// What the edge remembers between sending a user to the provider and the
/// callback, sealed in a cookie bound to the app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignIn {
    pub state: String,
    pub nonce: String,
    pub verifier: String,
    /// Path, query and fragment first asked for.
    pub return_to: String,
    /// Unix seconds.
    pub expires: u64,
}

impl SignIn {
    pub fn new(return_to: &str, now: u64) -> SignIn {
        SignIn {
            state: random_token(24),
            nonce: random_token(24),
            verifier: random_token(32),
            return_to: safe_return(return_to),
            expires: now + SIGN_IN_TTL,
        }
    }

    /// The sealing context of a sign-in cookie: never the same as a
    /// session cookie's.
    pub fn context(app: &str) -> String {
        format!("sign-in:{app}")
    }

    /// Checks a callback's `state` against this record.
    pub fn check(&self, state: &str, now: u64) -> Result<(), &'static str> {
        if now >= self.expires {
            return Err("the sign-in took too long; start again");
        }
        if !constant_time_eq(state.as_bytes(), self.state.as_bytes()) {
            return Err(
                "the sign-in's state does not match (replayed, or from another tab or app)",
            );
        }
        Ok(())
    }
}

/// Only a local path is a place to return to: anything else (another
/// host, a scheme, `//host`) becomes `/`, so a sign-in cannot be turned
/// into an open redirect.
pub fn safe_return(target: &str) -> String {
    let ok = target.starts_with('/')
        && !target.starts_with("//")
        && !target.starts_with("/\\")
        && !target.bytes().any(|b| b.is_ascii_control());
    if ok {
        target.to_string()
    } else {
        "/".to_string()
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The provider URL a browser is sent to.
pub fn authorization_url(
    d: &Discovery,
    client_id: &str,
    redirect_uri: &str,
    scopes: &[String],
    sign_in: &SignIn,
) -> String {
    let scope = scopes.join(" ");
    let challenge = pkce_challenge(&sign_in.verifier);
    let params = [
        ("response_type", "code"),
        ("client_id", client_id),
        ("redirect_uri", redirect_uri),
        ("scope", scope.as_str()),
        ("state", sign_in.state.as_str()),
        ("nonce", sign_in.nonce.as_str()),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ];
    let sep = if d.authorization_endpoint.contains('?') {
        '&'
    } else {
        '?'
    };
    format!("{}{sep}{}", d.authorization_endpoint, form_encode(&params))
}

/// `application/x-www-form-urlencoded`, for query strings and token
/// requests.
pub fn form_encode(params: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in params.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        encode_into(&mut out, k);
        out.push('=');
        encode_into(&mut out, v);
    }
    out
}

/// One parameter of a query string or form body, percent-decoded (`+`
/// is a space); `None` when absent or not valid UTF-8 once decoded.
pub fn form_param(query: &[u8], name: &str) -> Option<String> {
    for pair in query.split(|b| *b == b'&') {
        let (k, v) = match pair.iter().position(|b| *b == b'=') {
            Some(i) => (&pair[..i], &pair[i + 1..]),
            None => (pair, &b""[..]),
        };
        if form_decode(k).as_deref() == Some(name) {
            return form_decode(v);
        }
    }
    None
}

/// Percent-decodes one form-encoded component (`+` is a space).
pub fn form_decode(s: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = std::str::from_utf8(s.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn encode_into(out: &mut String, s: &str) {
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
}

/// The body of the token request that exchanges a code (RFC 6749 §4.1.3
/// with PKCE); client authentication is added by the caller (a Basic
/// header, or `client_assertion` fields).
pub fn token_request(code: &str, redirect_uri: &str, client_id: &str, verifier: &str) -> String {
    form_encode(&[
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", redirect_uri),
        ("client_id", client_id),
        ("code_verifier", verifier),
    ])
}

/// What the token endpoint answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    pub id_token: String,
    pub refresh_token: Option<String>,
    /// Seconds the access token lives, when said.
    pub expires_in: Option<u64>,
}

/// Parses a token endpoint's JSON answer; an OAuth error answer becomes
/// its `error` and `error_description`.
pub fn parse_token_response(json: &[u8]) -> Result<Tokens, String> {
    let doc: Value = serde_json::from_slice(json)
        .map_err(|e| format!("the token endpoint's answer is not JSON: {e}"))?;
    if let Some(err) = doc.get("error").and_then(Value::as_str) {
        let why = doc
            .get("error_description")
            .and_then(Value::as_str)
            .unwrap_or("");
        return Err(format!("the provider refused the code: {err} {why}")
            .trim_end()
            .to_string());
    }
    let id_token = doc
        .get("id_token")
        .and_then(Value::as_str)
        .ok_or("the token endpoint's answer has no id_token (is `openid` among the scopes?)")?
        .to_string();
    Ok(Tokens {
        id_token,
        refresh_token: doc
            .get("refresh_token")
            .and_then(Value::as_str)
            .map(str::to_string),
        expires_in: doc.get("expires_in").and_then(Value::as_u64),
    })
}

/// Verifies an id_token from a sign-in: signature and claims as any token
/// (`aud` must be the client id), and its `nonce` must be this sign-in's.
pub fn verify_id_token(
    token: &str,
    keys: &crate::jwt::KeySet,
    expect: &crate::jwt::Expect<'_>,
    nonce: &str,
) -> Result<crate::jwt::Verified, String> {
    let v = crate::jwt::verify(token, keys, expect).map_err(|e| e.to_string())?;
    match v.claim_str("nonce") {
        Some(n) if constant_time_eq(n.as_bytes(), nonce.as_bytes()) => Ok(v),
        Some(_) => Err("the id_token's nonce is not this sign-in's (replayed?)".into()),
        None => Err("the id_token has no nonce".into()),
    }
}

/// The edge's key for `private_key_jwt` client authentication (RFC 7523):
/// a P-256 key (ES256) or an RSA key (RS256), from PEM.
pub enum ClientKey {
    Ec(ring::signature::EcdsaKeyPair),
    Rsa(ring::signature::RsaKeyPair),
}

impl ClientKey {
    /// Reads a PEM private key: PKCS#8 (P-256 or RSA) or PKCS#1 RSA.
    pub fn from_pem(pem: &[u8]) -> Result<ClientKey, String> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::PrivateKeyDer;
        let key = PrivateKeyDer::from_pem_slice(pem)
            .map_err(|e| format!("not a PEM private key: {e}"))?;
        let rng = SystemRandom::new();
        match key {
            PrivateKeyDer::Pkcs8(der) => {
                let der = der.secret_pkcs8_der();
                ring::signature::EcdsaKeyPair::from_pkcs8(
                    &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    der,
                    &rng,
                )
                .map(ClientKey::Ec)
                .or_else(|_| ring::signature::RsaKeyPair::from_pkcs8(der).map(ClientKey::Rsa))
                .map_err(|e| format!("the key is neither P-256 nor RSA: {e}"))
            }
            PrivateKeyDer::Pkcs1(der) => {
                ring::signature::RsaKeyPair::from_der(der.secret_pkcs1_der())
                    .map(ClientKey::Rsa)
                    .map_err(|e| format!("unusable RSA key: {e}"))
            }
            _ => Err("only P-256 (PKCS#8) and RSA keys are supported".into()),
        }
    }

    /// The form fields of a client assertion for `token_endpoint`, valid
    /// for 60 s from `now`.
    pub fn assertion_fields(
        &self,
        client_id: &str,
        token_endpoint: &str,
        now: u64,
    ) -> Result<[(&'static str, String); 2], String> {
        let alg = match self {
            ClientKey::Ec(_) => "ES256",
            ClientKey::Rsa(_) => "RS256",
        };
        let header = serde_json::json!({"alg": alg, "typ": "JWT"});
        let claims = serde_json::json!({
            "iss": client_id, "sub": client_id, "aud": token_endpoint,
            "jti": random_token(16), "iat": now, "exp": now + 60,
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let rng = SystemRandom::new();
        let sig = match self {
            ClientKey::Ec(k) => k
                .sign(&rng, input.as_bytes())
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| "signing the client assertion failed".to_string())?,
            ClientKey::Rsa(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(
                    &ring::signature::RSA_PKCS1_SHA256,
                    &rng,
                    input.as_bytes(),
                    &mut sig,
                )
                .map_err(|_| "signing the client assertion failed".to_string())?;
                sig
            }
        };
        Ok([
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string(),
            ),
            (
                "client_assertion",
                format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig)),
            ),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISS: &str = "https://login.example.com/t";

    fn doc(extra: &str) -> String {
        format!(
            r#"{{"issuer":"{ISS}","authorization_endpoint":"https://login.example.com/t/auth","token_endpoint":"https://login.example.com/t/token","jwks_uri":"https://login.example.com/t/jwks"{extra}}}"#
        )
    }

    #[test]
    fn query_parameters_decode() {
        let q = b"code=a%2Bb+c&state=xyz&error_description=no%20way&bad=%zz";
        assert_eq!(form_param(q, "code").as_deref(), Some("a+b c"));
        assert_eq!(form_param(q, "state").as_deref(), Some("xyz"));
        assert_eq!(
            form_param(q, "error_description").as_deref(),
            Some("no way")
        );
        assert_eq!(form_param(q, "bad"), None);
        assert_eq!(form_param(q, "missing"), None);
    }

    #[test]
    fn discovery_is_checked() {
        let d = Discovery::parse(doc("").as_bytes(), ISS).unwrap();
        assert_eq!(d.jwks_uri, "https://login.example.com/t/jwks");
        assert!(Discovery::parse(doc("").as_bytes(), "https://other/")
            .unwrap_err()
            .contains("issuer"));
        let plain = doc("").replace("https://login.example.com/t/token", "http://evil/token");
        assert!(Discovery::parse(plain.as_bytes(), ISS)
            .unwrap_err()
            .contains("token_endpoint"));
        let local = doc("").replace(
            "https://login.example.com/t/token",
            "http://127.0.0.1:8080/token",
        );
        assert!(Discovery::parse(local.as_bytes(), ISS).is_ok());
        let no_s256 = doc(r#","code_challenge_methods_supported":["plain"]"#);
        assert!(Discovery::parse(no_s256.as_bytes(), ISS).is_err());
        assert!(Discovery::parse(b"[]", ISS).is_err());
        assert!(Discovery::parse(b"{", ISS).is_err());
    }

    #[test]
    fn pkce_matches_rfc_7636_appendix_b() {
        assert_eq!(
            pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn the_authorization_url_carries_pkce_state_and_nonce() {
        let d = Discovery::parse(doc("").as_bytes(), ISS).unwrap();
        let s = SignIn::new("/reports?q=1#section-2", 1000);
        let url = authorization_url(
            &d,
            "client 1",
            "https://app.example.com/.postern/callback",
            &["openid".into(), "email".into()],
            &s,
        );
        assert!(url.starts_with("https://login.example.com/t/auth?response_type=code&client_id=client+1&redirect_uri=https%3A%2F%2Fapp.example.com%2F.postern%2Fcallback&scope=openid+email&"));
        assert!(url.contains(&format!("state={}", s.state)));
        assert!(url.contains(&format!("nonce={}", s.nonce)));
        assert!(url.contains(&format!(
            "code_challenge={}&code_challenge_method=S256",
            pkce_challenge(&s.verifier)
        )));
        assert_eq!(s.return_to, "/reports?q=1#section-2");
        assert_eq!(s.verifier.len(), 43);
    }

    #[test]
    fn a_sign_in_is_checked_and_returns_only_locally() {
        let s = SignIn::new("/a", 1000);
        assert!(s.check(&s.state, 1000 + SIGN_IN_TTL - 1).is_ok());
        assert!(s.check(&s.state, 1000 + SIGN_IN_TTL).is_err());
        assert!(s.check("forged", 1001).is_err());
        for bad in [
            "https://evil/",
            "//evil/x",
            "/\\evil",
            "evil",
            "/a\r\nSet-Cookie: x",
        ] {
            assert_eq!(safe_return(bad), "/", "{bad:?}");
        }
        // Two sign-ins never share a state, nonce or verifier.
        let t = SignIn::new("/a", 1000);
        assert!(s.state != t.state && s.nonce != t.nonce && s.verifier != t.verifier);
    }

    #[test]
    fn token_requests_and_answers() {
        assert_eq!(
            token_request("c/1", "https://a.example.com/.postern/callback", "cid", "v"),
            "grant_type=authorization_code&code=c%2F1&redirect_uri=https%3A%2F%2Fa.example.com%2F.postern%2Fcallback&client_id=cid&code_verifier=v"
        );
        let t = parse_token_response(
            br#"{"access_token":"a","id_token":"x.y.z","refresh_token":"r","expires_in":3600,"token_type":"Bearer"}"#,
        )
        .unwrap();
        assert_eq!(t.id_token, "x.y.z");
        assert_eq!(t.refresh_token.as_deref(), Some("r"));
        assert_eq!(t.expires_in, Some(3600));
        let e = parse_token_response(
            br#"{"error":"invalid_grant","error_description":"code expired"}"#,
        )
        .unwrap_err();
        assert_eq!(
            e,
            "the provider refused the code: invalid_grant code expired"
        );
        assert!(parse_token_response(br#"{"access_token":"a"}"#)
            .unwrap_err()
            .contains("no id_token"));
        assert!(parse_token_response(b"<html>").is_err());
    }

    #[test]
    fn an_id_token_must_carry_this_sign_ins_nonce() {
        use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref(), &rng).unwrap();
        let p = key.public_key().as_ref();
        let jwks = serde_json::json!({"keys": [{"kty": "EC", "kid": "k", "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..])}]});
        let keys = crate::jwt::KeySet::from_jwks(jwks.to_string().as_bytes()).unwrap();
        let mint = |claims: Value| {
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","kid":"k"}"#),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            let sig = key.sign(&rng, input.as_bytes()).unwrap();
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
        };
        let expect = crate::jwt::Expect {
            issuer: ISS,
            audiences: &["cid"],
            skew: 60,
            now: 1000,
        };
        let claims = |nonce: Option<&str>| {
            let mut c = serde_json::json!({"iss": ISS, "aud": "cid", "sub": "alice", "exp": 2000});
            if let Some(n) = nonce {
                c["nonce"] = n.into();
            }
            c
        };
        assert!(verify_id_token(&mint(claims(Some("n1"))), &keys, &expect, "n1").is_ok());
        assert!(
            verify_id_token(&mint(claims(Some("n2"))), &keys, &expect, "n1")
                .unwrap_err()
                .contains("nonce is not this sign-in's")
        );
        assert!(verify_id_token(&mint(claims(None)), &keys, &expect, "n1")
            .unwrap_err()
            .contains("no nonce"));
        // Meant for another client.
        let other = crate::jwt::Expect {
            audiences: &["someone-else"],
            ..expect
        };
        assert!(
            verify_id_token(&mint(claims(Some("n1"))), &keys, &other, "n1")
                .unwrap_err()
                .contains("audience")
        );
    }

    /// PEM armour around DER.
    fn pem(label: &str, der: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = b64
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    #[test]
    fn client_assertions_verify_as_the_provider_would() {
        use ring::signature::{
            EcdsaKeyPair, KeyPair, RsaPublicKeyComponents, ECDSA_P256_SHA256_FIXED_SIGNING,
        };
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let ec = ClientKey::from_pem(pem("PRIVATE KEY", doc.as_ref()).as_bytes()).unwrap();
        let rsa_der = include_bytes!("jwt/test-rsa-2048.der");
        let rsa = ClientKey::from_pem(pem("RSA PRIVATE KEY", rsa_der).as_bytes()).unwrap();
        let ec_pub = match &ec {
            ClientKey::Ec(k) => k.public_key().as_ref().to_vec(),
            ClientKey::Rsa(_) => unreachable!(),
        };
        let rsa_pub = match &rsa {
            ClientKey::Rsa(k) => RsaPublicKeyComponents::<Vec<u8>>::from(k.public()),
            ClientKey::Ec(_) => unreachable!(),
        };
        let jwks = serde_json::json!({"keys": [
            {"kty": "EC", "crv": "P-256", "kid": "e",
             "x": URL_SAFE_NO_PAD.encode(&ec_pub[1..33]), "y": URL_SAFE_NO_PAD.encode(&ec_pub[33..])},
            {"kty": "RSA", "kid": "r", "n": URL_SAFE_NO_PAD.encode(&rsa_pub.n), "e": URL_SAFE_NO_PAD.encode(&rsa_pub.e)},
        ]});
        let all = crate::jwt::KeySet::from_jwks(jwks.to_string().as_bytes()).unwrap();
        let endpoint = "https://login.example.com/t/token";
        for (key, kid) in [(&ec, "e"), (&rsa, "r")] {
            let fields = key.assertion_fields("cid", endpoint, 1000).unwrap();
            assert_eq!(
                fields[0].1,
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
            );
            // The assertion names no kid: check it against that one key.
            let one = crate::jwt::KeySet {
                keys: all
                    .keys
                    .iter()
                    .filter(|k| k.kid.as_deref() == Some(kid))
                    .cloned()
                    .collect(),
                skipped: Vec::new(),
            };
            let v = crate::jwt::verify(
                &fields[1].1,
                &one,
                &crate::jwt::Expect {
                    issuer: "cid",
                    audiences: &[endpoint],
                    skew: 0,
                    now: 1030,
                },
            )
            .unwrap();
            assert_eq!(v.claim_str("sub"), Some("cid"));
            assert_eq!(v.expires, 1060);
        }
        assert!(ClientKey::from_pem(
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
        )
        .is_err());
        assert!(ClientKey::from_pem(b"not pem").is_err());
    }
}
