//! A small test issuer of our own mints the tokens a real provider would
//! and those it never would (`alg: none`, HS256 keyed with the public key,
//! swapped algorithms, wrong audience, expired, unknown key).

use super::*;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
    RSA_PSS_SHA256,
};
use serde_json::json;

/// A 2,048-bit RSA key (PKCS#1 DER) made with `openssl genpkey` for these
/// tests only.
const RSA_DER: &[u8] = include_bytes!("test-rsa-2048.der");
const ISS: &str = "https://login.example.com/tenant";
const NOW: u64 = 1_800_000_000;

fn b64(d: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(d)
}

struct Issuer {
    rsa: RsaKeyPair,
    ec: EcdsaKeyPair,
    rng: SystemRandom,
}

impl Issuer {
    fn new() -> Issuer {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let ec =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref(), &rng).unwrap();
        Issuer {
            rsa: RsaKeyPair::from_der(RSA_DER).unwrap(),
            ec,
            rng,
        }
    }

    fn components(&self) -> RsaPublicKeyComponents<Vec<u8>> {
        RsaPublicKeyComponents::<Vec<u8>>::from(self.rsa.public())
    }

    fn n(&self) -> Vec<u8> {
        self.components().n
    }

    /// `r1`: the RSA key, no `alg` (so RS256); `p1`: the same key pinned to
    /// PS256; `e1`: the P-256 key; plus an encryption key and an Ed25519
    /// key, which are skipped.
    fn jwks(&self) -> String {
        let e = self.components().e;
        let point = self.ec.public_key().as_ref();
        json!({"keys": [
            {"kty": "RSA", "kid": "r1", "use": "sig", "n": b64(&self.n()), "e": b64(&e)},
            {"kty": "RSA", "kid": "p1", "alg": "PS256", "n": b64(&self.n()), "e": b64(&e)},
            {"kty": "EC", "kid": "e1", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..])},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": b64(&self.n()), "e": b64(&e)},
            {"kty": "OKP", "kid": "ed", "crv": "Ed25519", "x": "AAAA"},
        ]})
        .to_string()
    }

    /// Signs `claims` under `header` with the key its `alg` calls for
    /// (HS256: an HMAC keyed with the RSA public modulus, the classic
    /// confusion attack; anything else: no signature).
    fn mint(&self, header: Value, claims: Value) -> String {
        let input = format!(
            "{}.{}",
            b64(header.to_string().as_bytes()),
            b64(claims.to_string().as_bytes())
        );
        let sig = match header["alg"].as_str() {
            Some("RS256") | Some("PS256") => {
                let pad: &dyn ring::signature::RsaEncoding = if header["alg"] == "RS256" {
                    &RSA_PKCS1_SHA256
                } else {
                    &RSA_PSS_SHA256
                };
                let mut sig = vec![0; self.rsa.public().modulus_len()];
                self.rsa
                    .sign(pad, &self.rng, input.as_bytes(), &mut sig)
                    .unwrap();
                sig
            }
            Some("ES256") => self
                .ec
                .sign(&self.rng, input.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec(),
            Some("HS256") => {
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &self.n());
                ring::hmac::sign(&key, input.as_bytes()).as_ref().to_vec()
            }
            _ => Vec::new(),
        };
        format!("{input}.{}", b64(&sig))
    }
}

fn claims() -> Value {
    json!({"iss": ISS, "aud": "app-1", "sub": "alice", "exp": NOW + 300, "nbf": NOW - 10})
}

fn expect() -> Expect<'static> {
    Expect {
        issuer: ISS,
        audiences: &["app-1", "app-2"],
        skew: 60,
        now: NOW,
    }
}

fn check(i: &Issuer, header: Value, claims: Value) -> Result<Verified, JwtError> {
    let keys = KeySet::from_jwks(i.jwks().as_bytes()).unwrap();
    verify(&i.mint(header, claims), &keys, &expect())
}

#[test]
fn jwks_keeps_signing_keys_and_lists_the_rest() {
    let i = Issuer::new();
    let keys = KeySet::from_jwks(i.jwks().as_bytes()).unwrap();
    let kids: Vec<_> = keys
        .keys
        .iter()
        .map(|k| (k.kid.as_deref().unwrap(), k.alg))
        .collect();
    assert_eq!(
        kids,
        [("r1", Alg::Rs256), ("p1", Alg::Ps256), ("e1", Alg::Es256)]
    );
    assert_eq!(keys.skipped.len(), 2, "{:?}", keys.skipped);
    assert!(KeySet::from_jwks(b"{}").is_err());
    assert!(KeySet::from_jwks(b"not json").is_err());
    // A short RSA modulus is skipped, not trusted.
    let short = json!({"keys": [{"kty": "RSA", "kid": "s", "n": b64(&[0xff; 128]), "e": "AQAB"}]});
    let set = KeySet::from_jwks(short.to_string().as_bytes()).unwrap();
    assert!(set.keys.is_empty() && set.skipped[0].contains("1024 bits"));
}

#[test]
fn each_accepted_algorithm_verifies() {
    let i = Issuer::new();
    for (alg, kid) in [("RS256", "r1"), ("PS256", "p1"), ("ES256", "e1")] {
        let v = check(&i, json!({"alg": alg, "kid": kid, "typ": "JWT"}), claims())
            .unwrap_or_else(|e| panic!("{alg}: {e}"));
        assert_eq!(v.claim_str("sub"), Some("alice"));
        assert_eq!(v.expires, NOW + 300);
    }
}

#[test]
fn forged_algorithms_are_refused_before_any_signature_check() {
    let i = Issuer::new();
    assert_eq!(
        check(&i, json!({"alg": "none", "kid": "r1"}), claims()),
        Err(JwtError::Algorithm("none".into()))
    );
    assert_eq!(
        check(&i, json!({"alg": "HS256", "kid": "r1"}), claims()),
        Err(JwtError::Algorithm("HS256".into()))
    );
    assert_eq!(
        check(&i, json!({"alg": "RS512", "kid": "r1"}), claims()),
        Err(JwtError::Algorithm("RS512".into()))
    );
    // A real RS256 signature presented as PS256 for the RS256-pinned key,
    // and the other way round.
    assert_eq!(
        check(&i, json!({"alg": "PS256", "kid": "r1"}), claims()),
        Err(JwtError::AlgorithmMismatch {
            token: "PS256",
            key: "RS256"
        })
    );
    assert!(matches!(
        check(&i, json!({"alg": "ES256", "kid": "r1"}), claims()),
        Err(JwtError::AlgorithmMismatch { .. })
    ));
    assert_eq!(
        check(
            &i,
            json!({"alg": "RS256", "kid": "r1", "crit": ["exp"]}),
            claims()
        ),
        Err(JwtError::Critical)
    );
}

#[test]
fn embedded_or_unknown_keys_are_never_used() {
    let i = Issuer::new();
    assert_eq!(
        check(&i, json!({"alg": "RS256", "kid": "nope"}), claims()),
        Err(JwtError::UnknownKey(Some("nope".into())))
    );
    // Without a kid, a set of several keys gives no key.
    assert_eq!(
        check(&i, json!({"alg": "RS256"}), claims()),
        Err(JwtError::UnknownKey(None))
    );
    // A key the token brings along changes nothing.
    let other = Issuer::new();
    let forged = other.mint(
        json!({"alg": "ES256", "kid": "e1", "jwk": {"kty": "EC"}, "jku": "https://evil/"}),
        claims(),
    );
    let keys = KeySet::from_jwks(i.jwks().as_bytes()).unwrap();
    assert_eq!(verify(&forged, &keys, &expect()), Err(JwtError::Signature));
    assert_eq!(key_id(&forged), Ok(Some("e1".into())));
}

#[test]
fn tampering_breaks_the_signature() {
    let i = Issuer::new();
    let keys = KeySet::from_jwks(i.jwks().as_bytes()).unwrap();
    for (alg, kid) in [("RS256", "r1"), ("PS256", "p1"), ("ES256", "e1")] {
        let token = i.mint(json!({"alg": alg, "kid": kid}), claims());
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        let mut c = claims();
        c["sub"] = json!("mallory");
        parts[1] = b64(c.to_string().as_bytes());
        assert_eq!(
            verify(&parts.join("."), &keys, &expect()),
            Err(JwtError::Signature),
            "{alg}"
        );
    }
}

#[test]
fn claims_are_checked_with_the_allowed_skew() {
    let i = Issuer::new();
    let h = json!({"alg": "ES256", "kid": "e1"});
    let with = |k: &str, v: Value| {
        let mut c = claims();
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v;
        }
        check(&i, h.clone(), c)
    };
    assert_eq!(with("iss", json!("https://evil/")), Err(JwtError::Issuer));
    assert_eq!(with("iss", Value::Null), Err(JwtError::Claim("iss")));
    assert_eq!(with("aud", json!("app-3")), Err(JwtError::Audience));
    assert!(with("aud", json!(["x", "app-2"])).is_ok());
    assert_eq!(with("aud", json!(["x", "y"])), Err(JwtError::Audience));
    assert_eq!(with("aud", json!(7)), Err(JwtError::Claim("aud")));
    assert_eq!(with("exp", Value::Null), Err(JwtError::Claim("exp")));
    assert_eq!(with("exp", json!("soon")), Err(JwtError::Claim("exp")));
    // Expired 59 s ago: inside the 60 s skew; 61 s ago: refused.
    assert!(with("exp", json!(NOW - 59)).is_ok());
    assert_eq!(with("exp", json!(NOW - 61)), Err(JwtError::Expired));
    assert!(with("nbf", json!(NOW + 59)).is_ok());
    assert_eq!(with("nbf", json!(NOW + 61)), Err(JwtError::NotYetValid));
    assert!(with("exp", json!((NOW + 100) as f64 + 0.5)).is_ok());
}

#[test]
fn malformed_tokens_get_a_clear_error() {
    let keys = KeySet::from_jwks(Issuer::new().jwks().as_bytes()).unwrap();
    let e = expect();
    for (token, want) in [
        ("", "not three dot-separated parts"),
        ("a.b", "not three dot-separated parts"),
        ("a.b.c.d", "not three dot-separated parts"),
        ("!!.e30.", "header is not base64url"),
        ("e30.e30.", "header has no `alg`"),
        ("bnVsbA.e30.", "header is not a JSON object"),
    ] {
        match verify(token, &keys, &e) {
            Err(JwtError::Malformed(m)) => assert_eq!(m, want, "{token:?}"),
            other => panic!("{token:?}: {other:?}"),
        }
    }
    let huge = format!("{}.e30.", "A".repeat(MAX_TOKEN));
    assert_eq!(
        verify(&huge, &keys, &e),
        Err(JwtError::Malformed("longer than 16 KiB"))
    );
}

/// Google's Wycheproof vectors, through the same key import and
/// verification the tokens use: every valid signature verifies, every
/// invalid one fails ("acceptable" ones may go either way).
mod wycheproof_vectors {
    use super::super::{Alg, Key};
    use wycheproof::TestResult;

    fn expect(what: &str, id: usize, result: &TestResult, verified: bool) -> usize {
        match result {
            TestResult::Valid => assert!(verified, "{what} #{id}: a valid signature failed"),
            TestResult::Invalid => assert!(!verified, "{what} #{id}: an invalid signature passed"),
            _ => return 0,
        }
        1
    }

    #[test]
    fn rs256() {
        use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};
        let mut checked = 0;
        for name in [
            TestName::Rsa2048Sha256,
            TestName::Rsa3072Sha256,
            TestName::Rsa4096Sha256,
        ] {
            for g in TestSet::load(name).unwrap().test_groups {
                let key = Key::rsa(None, Alg::Rs256, &g.key.n, &g.key.e).unwrap();
                for t in g.tests {
                    let ok = key.verify(&t.msg, &t.sig).is_ok();
                    checked += expect("RS256", t.tc_id, &t.result, ok);
                }
            }
        }
        assert!(checked > 200, "{checked} vectors");
    }

    #[test]
    fn ps256() {
        use wycheproof::rsa_pss_verify::{TestName, TestSet};
        let mut checked = 0;
        for name in [
            TestName::RsaPss2048Sha256Mgf1SaltLen32,
            TestName::RsaPss3072Sha256Mgf1SaltLen32,
            TestName::RsaPss4096Sha256Mgf1SaltLen32,
        ] {
            for g in TestSet::load(name).unwrap().test_groups {
                let key = Key::rsa(None, Alg::Ps256, &g.key.n, &g.key.e).unwrap();
                for t in g.tests {
                    let ok = key.verify(&t.msg, &t.sig).is_ok();
                    checked += expect("PS256", t.tc_id, &t.result, ok);
                }
            }
        }
        assert!(checked > 100, "{checked} vectors");
    }

    /// A coordinate as exactly 32 bytes (the vectors' big integers may
    /// carry a leading zero or be shorter).
    fn coordinate(v: &[u8]) -> Vec<u8> {
        let v = &v[v.iter().position(|&b| b != 0).unwrap_or(v.len())..];
        let mut out = vec![0; 32usize.saturating_sub(v.len())];
        out.extend_from_slice(v);
        out
    }

    #[test]
    fn es256() {
        use wycheproof::ecdsa::{TestName, TestSet};
        let mut checked = 0;
        for g in TestSet::load(TestName::EcdsaSecp256r1Sha256P1363)
            .unwrap()
            .test_groups
        {
            let (x, y) = (coordinate(&g.key.affine_x), coordinate(&g.key.affine_y));
            let Ok(key) = Key::p256(None, &x, &y) else {
                continue;
            };
            for t in g.tests {
                let ok = key.verify(&t.msg, &t.sig).is_ok();
                checked += expect("ES256", t.tc_id, &t.result, ok);
            }
        }
        assert!(checked > 200, "{checked} vectors");
    }
}

#[test]
fn the_token_cache_serves_until_expiry_and_stays_bounded() {
    let v = |exp: u64| Verified {
        claims: Map::new(),
        expires: exp,
    };
    let mut cache = TokenCache::new(4);
    cache.insert("t1", v(NOW + 10), NOW);
    assert!(cache.get("t1", NOW + 9, 0).is_some());
    assert!(cache.get("t1", NOW + 10, 0).is_none());
    assert!(cache.get("t1", NOW + 10, 5).is_some(), "within the skew");
    assert!(cache.get("t2", NOW, 0).is_none());
    for i in 0..100u64 {
        cache.insert(&format!("tok{i}"), v(NOW + 1000), NOW + i);
        assert!(cache.len() <= 4);
    }
    // The newest stays.
    assert!(cache.get("tok99", NOW + 100, 0).is_some());
}
