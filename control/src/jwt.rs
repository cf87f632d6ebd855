//! JSON Web Token verification for pre-authentication: bearer tokens and
//! the id_token of a sign-in, checked against an OpenID provider's key set
//! (JWKS).
//!
//! Only RS256, PS256 and ES256 are accepted, through ring, and each key is
//! pinned to one algorithm: the JWK's `alg` when it names one, otherwise
//! RS256 for an RSA key and ES256 for a P-256 key. A token whose header
//! names another algorithm than its key's is refused, so `none`, HS256
//! "signed" with a public key, and algorithm swaps all fail before any
//! signature is checked. Keys a token carries or points to (`jwk`, `jku`,
//! `x5u`) are never used; a header with `crit` is refused.
//!
//! Runtime-free: the data plane caches verified tokens and the control
//! thread refreshes key sets; both call into this module.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::{Map, Value};

/// Longest token looked at; identity tokens with large group claims stay
/// well under it.
pub const MAX_TOKEN: usize = 16 * 1024;
/// Smallest RSA modulus accepted, in bits.
const MIN_RSA_BITS: usize = 2048;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Rs256,
    Ps256,
    Es256,
}

impl Alg {
    pub fn name(self) -> &'static str {
        match self {
            Alg::Rs256 => "RS256",
            Alg::Ps256 => "PS256",
            Alg::Es256 => "ES256",
        }
    }

    fn parse(name: &str) -> Option<Alg> {
        match name {
            "RS256" => Some(Alg::Rs256),
            "PS256" => Some(Alg::Ps256),
            "ES256" => Some(Alg::Es256),
            _ => None,
        }
    }
}

/// Why a token was refused. The messages say what was wrong; none
/// repeats the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the token is malformed: {0}")]
    Malformed(&'static str),
    #[error("the token's algorithm {0:?} is not accepted (only RS256, PS256 and ES256 are)")]
    Algorithm(String),
    #[error("the token's header has `crit` extensions, which are not supported")]
    Critical,
    #[error("no key {0:?} in the provider's key set")]
    UnknownKey(Option<String>),
    #[error("the token says {token}, but its key is pinned to {key}")]
    AlgorithmMismatch {
        token: &'static str,
        key: &'static str,
    },
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token's issuer is not the configured provider")]
    Issuer,
    #[error("the token is not meant for this application (audience)")]
    Audience,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token has no `{0}` claim, or it has the wrong type")]
    Claim(&'static str),
}

/// A provider's signing key, pinned to one algorithm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub kid: Option<String>,
    pub alg: Alg,
    material: Material,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Material {
    /// Modulus and exponent, big-endian.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// Uncompressed P-256 point (`04 || x || y`).
    P256(Vec<u8>),
}

impl Key {
    /// An RSA key from its modulus and exponent (big-endian).
    pub fn rsa(kid: Option<String>, alg: Alg, n: &[u8], e: &[u8]) -> Result<Key, String> {
        if alg == Alg::Es256 {
            return Err("an RSA key cannot be pinned to ES256".into());
        }
        let n = strip_zeros(n);
        if n.len() * 8 < MIN_RSA_BITS {
            return Err(format!(
                "RSA key of {} bits; at least {MIN_RSA_BITS} are required",
                n.len() * 8
            ));
        }
        Ok(Key {
            kid,
            alg,
            material: Material::Rsa {
                n: n.to_vec(),
                e: strip_zeros(e).to_vec(),
            },
        })
    }

    /// A P-256 key from its coordinates (32 bytes each).
    pub fn p256(kid: Option<String>, x: &[u8], y: &[u8]) -> Result<Key, String> {
        if x.len() != 32 || y.len() != 32 {
            return Err("a P-256 key's x and y are 32 bytes each".into());
        }
        let mut point = Vec::with_capacity(65);
        point.push(4);
        point.extend_from_slice(x);
        point.extend_from_slice(y);
        Ok(Key {
            kid,
            alg: Alg::Es256,
            material: Material::P256(point),
        })
    }

    /// Checks `sig` over `message` with this key's pinned algorithm.
    pub fn verify(&self, message: &[u8], sig: &[u8]) -> Result<(), JwtError> {
        let ok = match (&self.material, self.alg) {
            (Material::Rsa { n, e }, Alg::Rs256) => RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, sig)
                .is_ok(),
            (Material::Rsa { n, e }, Alg::Ps256) => RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PSS_2048_8192_SHA256, message, sig)
                .is_ok(),
            (Material::P256(point), Alg::Es256) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, sig)
                    .is_ok()
            }
            _ => false,
        };
        ok.then_some(()).ok_or(JwtError::Signature)
    }
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let i = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    &b[i..]
}

/// A provider's key set.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    pub keys: Vec<Key>,
    /// Keys in the JWKS that were left out, and why (unsupported type,
    /// curve or algorithm, encryption keys, short RSA moduli).
    pub skipped: Vec<String>,
}

impl KeySet {
    /// Parses a JWKS document (`{"keys": [...]}`). Keys this verifier
    /// cannot use are skipped and listed, not errors: providers publish
    /// encryption keys and other algorithms beside their signing keys.
    pub fn from_jwks(json: &[u8]) -> Result<KeySet, String> {
        let doc: Value =
            serde_json::from_slice(json).map_err(|e| format!("the JWKS is not JSON: {e}"))?;
        let list = doc
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("the JWKS has no `keys` array")?;
        let mut set = KeySet::default();
        for (i, jwk) in list.iter().enumerate() {
            match parse_jwk(jwk) {
                Ok(k) => set.keys.push(k),
                Err(why) => set.skipped.push(format!("key {i}: {why}")),
            }
        }
        Ok(set)
    }

    /// The key a token's `kid` names; without a `kid`, the only key.
    pub fn find(&self, kid: Option<&str>) -> Option<&Key> {
        match kid {
            Some(kid) => self.keys.iter().find(|k| k.kid.as_deref() == Some(kid)),
            None if self.keys.len() == 1 => self.keys.first(),
            None => None,
        }
    }
}

fn parse_jwk(jwk: &Value) -> Result<Key, String> {
    let field = |name: &str| jwk.get(name).and_then(Value::as_str);
    let bytes = |name: &str| -> Result<Vec<u8>, String> {
        let v = field(name).ok_or_else(|| format!("no `{name}`"))?;
        URL_SAFE_NO_PAD
            .decode(v.trim_end_matches('='))
            .map_err(|_| format!("`{name}` is not base64url"))
    };
    if let Some(u) = field("use") {
        if u != "sig" {
            return Err(format!("use {u:?}, not a signing key"));
        }
    }
    let kid = field("kid").map(str::to_string);
    let alg = match field("alg") {
        None => None,
        Some(a) => Some(Alg::parse(a).ok_or_else(|| format!("algorithm {a:?} is not accepted"))?),
    };
    match field("kty") {
        Some("RSA") => Key::rsa(kid, alg.unwrap_or(Alg::Rs256), &bytes("n")?, &bytes("e")?),
        Some("EC") => {
            if field("crv") != Some("P-256") {
                return Err(format!("curve {:?} is not accepted", field("crv")));
            }
            if alg.is_some_and(|a| a != Alg::Es256) {
                return Err("a P-256 key can only be ES256".into());
            }
            Key::p256(kid, &bytes("x")?, &bytes("y")?)
        }
        other => Err(format!("key type {other:?} is not accepted")),
    }
}

/// What a token must say to be accepted.
pub struct Expect<'a> {
    pub issuer: &'a str,
    /// The token's `aud` must hold one of these.
    pub audiences: &'a [&'a str],
    /// Allowed clock difference, seconds.
    pub skew: u64,
    /// Now, Unix seconds.
    pub now: u64,
}

/// A token that passed: its claims, and when it expires (Unix seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    pub claims: Map<String, Value>,
    pub expires: u64,
}

impl Verified {
    pub fn claim_str(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }
}

/// The parts of a compact JWS: header, the signed input, the signature.
struct Parts<'t> {
    header: Map<String, Value>,
    signed: &'t [u8],
    payload: Vec<u8>,
    signature: Vec<u8>,
}

fn split(token: &str) -> Result<Parts<'_>, JwtError> {
    if token.len() > MAX_TOKEN {
        return Err(JwtError::Malformed("longer than 16 KiB"));
    }
    let mut it = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(JwtError::Malformed("not three dot-separated parts"));
    };
    let decode = |part: &str, what: &'static str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| JwtError::Malformed(what))
    };
    let header: Map<String, Value> = serde_json::from_slice(&decode(h, "header is not base64url")?)
        .map_err(|_| JwtError::Malformed("header is not a JSON object"))?;
    Ok(Parts {
        header,
        signed: &token.as_bytes()[..h.len() + 1 + p.len()],
        payload: decode(p, "payload is not base64url")?,
        signature: decode(s, "signature is not base64url")?,
    })
}

/// The `kid` of a token's header, without verifying anything: for
/// deciding whether an unknown key calls for a key-set refresh.
pub fn key_id(token: &str) -> Result<Option<String>, JwtError> {
    let parts = split(token)?;
    Ok(parts
        .header
        .get("kid")
        .and_then(Value::as_str)
        .map(str::to_string))
}

/// Verifies a compact JWS against `keys` and checks its claims.
pub fn verify(token: &str, keys: &KeySet, expect: &Expect<'_>) -> Result<Verified, JwtError> {
    let parts = split(token)?;
    let alg_name = parts
        .header
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(JwtError::Malformed("header has no `alg`"))?;
    let alg = Alg::parse(alg_name).ok_or_else(|| JwtError::Algorithm(alg_name.to_string()))?;
    if parts.header.contains_key("crit") {
        return Err(JwtError::Critical);
    }
    let kid = match parts.header.get("kid") {
        None => None,
        Some(Value::String(k)) => Some(k.as_str()),
        Some(_) => return Err(JwtError::Malformed("`kid` is not a string")),
    };
    let key = keys
        .find(kid)
        .ok_or_else(|| JwtError::UnknownKey(kid.map(str::to_string)))?;
    if key.alg != alg {
        return Err(JwtError::AlgorithmMismatch {
            token: alg.name(),
            key: key.alg.name(),
        });
    }
    key.verify(parts.signed, &parts.signature)?;
    let claims: Map<String, Value> = serde_json::from_slice(&parts.payload)
        .map_err(|_| JwtError::Malformed("payload is not a JSON object"))?;
    check_claims(claims, expect)
}

fn numeric_date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<u64>, JwtError> {
    match claims.get(name) {
        None => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|t| t.is_finite() && *t >= 0.0)
            .map(|t| Some(t as u64))
            .ok_or(JwtError::Claim(name)),
    }
}

fn check_claims(claims: Map<String, Value>, expect: &Expect<'_>) -> Result<Verified, JwtError> {
    match claims.get("iss").and_then(Value::as_str) {
        Some(iss) if iss == expect.issuer => {}
        Some(_) => return Err(JwtError::Issuer),
        None => return Err(JwtError::Claim("iss")),
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => expect.audiences.contains(&a.as_str()),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .any(|a| expect.audiences.contains(&a)),
        Some(_) | None => return Err(JwtError::Claim("aud")),
    };
    if !aud_ok {
        return Err(JwtError::Audience);
    }
    let expires = numeric_date(&claims, "exp")?.ok_or(JwtError::Claim("exp"))?;
    if expect.now >= expires.saturating_add(expect.skew) {
        return Err(JwtError::Expired);
    }
    if let Some(nbf) = numeric_date(&claims, "nbf")? {
        if expect.now.saturating_add(expect.skew) < nbf {
            return Err(JwtError::NotYetValid);
        }
    }
    Ok(Verified { claims, expires })
}

#[cfg(test)]
mod tests;

/// Verified bearer tokens by hash, until they expire: a client repeating
/// its token costs a hash and a lookup, not a signature check. Bounded:
/// when full, expired entries go first, then the oldest half.
pub struct TokenCache {
    entries: std::collections::HashMap<[u8; 32], (u64, std::rc::Rc<Verified>)>,
    capacity: usize,
}

impl TokenCache {
    pub fn new(capacity: usize) -> TokenCache {
        TokenCache {
            entries: std::collections::HashMap::new(),
            capacity: capacity.max(1),
        }
    }

    fn key(token: &str) -> [u8; 32] {
        let d = ring::digest::digest(&ring::digest::SHA256, token.as_bytes());
        let mut k = [0u8; 32];
        k.copy_from_slice(d.as_ref());
        k
    }

    /// The verified token, if cached and not expired at `now` (the cached
    /// claims were checked with `skew` when verified; expiry is checked
    /// here against the same skew).
    pub fn get(&self, token: &str, now: u64, skew: u64) -> Option<std::rc::Rc<Verified>> {
        let (_, v) = self.entries.get(&Self::key(token))?;
        (now < v.expires.saturating_add(skew)).then(|| v.clone())
    }

    pub fn insert(&mut self, token: &str, verified: Verified, now: u64) -> std::rc::Rc<Verified> {
        if self.entries.len() >= self.capacity {
            self.entries.retain(|_, (_, v)| v.expires > now);
            if self.entries.len() >= self.capacity {
                let mut ages: Vec<u64> = self.entries.values().map(|(t, _)| *t).collect();
                ages.sort_unstable();
                let cut = ages[ages.len() / 2];
                self.entries.retain(|_, (t, _)| *t > cut);
            }
        }
        let v = std::rc::Rc::new(verified);
        self.entries.insert(Self::key(token), (now, v.clone()));
        v
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}
