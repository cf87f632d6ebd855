//! Identity assertions for backends: a short-lived ES256 JWT in
//! `X-Postern-Jwt-Assertion`, so a backend can check who the user is
//! without trusting the network between it and the edge. The public keys
//! are published at `/.postern/jwks.json` on every app; the signing key
//! rotates with the session keys and the previous one stays published, so
//! a backend's cached key set keeps verifying across a rotation.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

/// How long an assertion is valid.
pub const LIFETIME: u64 = 300;

struct Public {
    kid: String,
    /// Uncompressed point: 0x04, x, y.
    point: Vec<u8>,
}

pub struct Signer {
    key: EcdsaKeyPair,
    kid: String,
    /// The current public key, then the previous one.
    published: Vec<Public>,
    rng: SystemRandom,
}

impl Signer {
    /// A fresh key; the previous signer's key stays published.
    pub fn generate(previous: Option<&Signer>) -> Signer {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("system randomness");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("a key ring just made");
        let point = key.public_key().as_ref().to_vec();
        let digest = ring::digest::digest(&ring::digest::SHA256, &point);
        let kid = URL_SAFE_NO_PAD.encode(&digest.as_ref()[..12]);
        let mut published = vec![Public {
            kid: kid.clone(),
            point,
        }];
        if let Some(p) = previous {
            published.push(Public {
                kid: p.kid.clone(),
                point: p.published[0].point.clone(),
            });
        }
        Signer {
            key,
            kid,
            published,
            rng,
        }
    }

    /// Signs `claims` (a JSON object) as a JWT.
    pub fn sign(&self, claims: &serde_json::Value) -> String {
        let header = serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        // Signing fails only when the system's randomness does.
        let sig = self
            .key
            .sign(&self.rng, input.as_bytes())
            .map(|s| URL_SAFE_NO_PAD.encode(s.as_ref()))
            .unwrap_or_default();
        format!("{input}.{sig}")
    }

    /// The published keys as a JWKS document.
    pub fn jwks(&self) -> String {
        let keys: Vec<_> = self
            .published
            .iter()
            .map(|p| {
                serde_json::json!({
                    "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig",
                    "kid": p.kid,
                    "x": URL_SAFE_NO_PAD.encode(&p.point[1..33]),
                    "y": URL_SAFE_NO_PAD.encode(&p.point[33..65]),
                })
            })
            .collect();
        serde_json::json!({ "keys": keys }).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postern_control::jwt::{verify, Expect, KeySet};

    #[test]
    fn assertions_verify_with_the_published_keys_across_a_rotation() {
        let first = Signer::generate(None);
        let claims = serde_json::json!({
            "iss": "https://app.example.com", "aud": "https://app.example.com/",
            "sub": "alice", "iat": 1_800_000_000u64, "exp": 1_800_000_300u64,
        });
        let token = first.sign(&claims);
        let second = Signer::generate(Some(&first));
        let keys = KeySet::from_jwks(second.jwks().as_bytes()).unwrap();
        assert_eq!(keys.keys.len(), 2);
        let expect = Expect {
            issuer: "https://app.example.com",
            audiences: &["https://app.example.com/"],
            skew: 0,
            now: 1_800_000_100,
        };
        let v = verify(&token, &keys, &expect).unwrap();
        assert_eq!(v.claim_str("sub"), Some("alice"));
        // After a second rotation the first key is no longer published.
        let third = Signer::generate(Some(&second));
        let keys = KeySet::from_jwks(third.jwks().as_bytes()).unwrap();
        assert!(verify(&token, &keys, &expect).is_err());
    }
}
