//! Session cookies for pre-authenticated apps: what the data plane needs
//! about a signed-in user (subject, a few claims, expiry), sealed with
//! AES-256-GCM (ring) and bound to one app.
//!
//! The app's name is the AEAD's associated data, so a cookie taken from
//! one app opens on no other. Keys rotate: the newest seals, and the last
//! [`KEPT_KEYS`] open, so a rotation signs nobody out. A cookie names its
//! key by a one-byte id. Runtime-free: the data plane opens cookies on
//! every request; the control thread rotates and persists keys.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::policy::Identity;

/// Keys that still open cookies: the newest and the two before it.
pub const KEPT_KEYS: usize = 3;
/// Largest cookie value (browsers keep at most about 4 KiB per cookie,
/// name and attributes included).
pub const MAX_COOKIE: usize = 3800;

/// What a session cookie holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// The groups did not all fit in the cookie: the cookie holds the
    /// first ones only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub groups_trimmed: bool,
    /// The user as the app names them (its `sso.user_claim`), when that is
    /// not the subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Authentication methods (`amr`), for `access.require_mfa`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub amr: Vec<String>,
    /// The claims the app's `access.claims` rules name, as at sign-in.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<(String, Vec<String>)>,
    /// Unix seconds.
    pub expires: u64,
    /// The provider's refresh token, when it gave one: the edge renews the
    /// session with it, off the request path, from `renew_at` on. Sealed
    /// like the rest; it never leaves the edge except to the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh: Option<String>,
    /// When to start renewing (Unix seconds; 0: never).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub renew_at: u64,
    /// The latest a renewal may carry the session to: the sign-in plus
    /// `edge.session_lifetime` (Unix seconds; 0: `expires`).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub until: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl Session {
    /// What a sign-in keeps of a verified identity: `sub` is the token's
    /// subject; `expires` the earlier of the token's expiry and the
    /// session's longest life.
    pub fn new(sub: &str, name: Option<String>, who: Identity, expires: u64) -> Session {
        Session {
            sub: sub.to_string(),
            user: (who.user != sub).then_some(who.user),
            email: who.email,
            name,
            groups: who.groups,
            groups_trimmed: false,
            amr: who.methods,
            claims: who.claims,
            expires,
            refresh: None,
            renew_at: 0,
            until: 0,
        }
    }

    /// Keeps `refresh` for a renewal once three quarters of the session's
    /// life from `now` have passed; renewals stop at `until`.
    pub fn renewable(mut self, refresh: Option<String>, now: u64, until: u64) -> Session {
        self.until = until;
        if let Some(r) = refresh.filter(|_| self.expires < until) {
            self.refresh = Some(r);
            self.renew_at = now + self.expires.saturating_sub(now) * 3 / 4;
        }
        self
    }

    /// The identity the access rules and identity headers see.
    pub fn identity(&self) -> Identity {
        Identity {
            user: self.user.clone().unwrap_or_else(|| self.sub.clone()),
            email: self.email.clone(),
            groups: self.groups.clone(),
            methods: self.amr.clone(),
            claims: self.claims.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    #[error("the session cookie is malformed")]
    Malformed,
    #[error("the session cookie's key is no longer kept (rotated out)")]
    UnknownKey,
    #[error("the session cookie does not open: tampered with, or from another app")]
    Forged,
    #[error("the session has expired")]
    Expired,
    #[error("the session does not fit in a cookie even without its groups")]
    TooLarge,
}

struct CookieKey {
    id: u8,
    key: LessSafeKey,
    /// The raw key, for persisting.
    raw: [u8; 32],
}

/// The newest key first.
pub struct CookieKeys {
    keys: Vec<CookieKey>,
    rng: SystemRandom,
}

impl CookieKeys {
    /// One fresh key.
    pub fn generate() -> CookieKeys {
        let mut keys = CookieKeys {
            keys: Vec::new(),
            rng: SystemRandom::new(),
        };
        keys.rotate();
        keys
    }

    /// Keys as persisted by [`CookieKeys::export`], newest first.
    pub fn from_raw(list: &[(u8, [u8; 32])]) -> Result<CookieKeys, String> {
        if list.is_empty() {
            return Err("no cookie keys".into());
        }
        let keys = list
            .iter()
            .take(KEPT_KEYS)
            .map(|(id, raw)| CookieKey {
                id: *id,
                key: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, raw).expect("32-byte key")),
                raw: *raw,
            })
            .collect();
        Ok(CookieKeys {
            keys,
            rng: SystemRandom::new(),
        })
    }

    /// (id, key) pairs, newest first, for persisting.
    pub fn export(&self) -> Vec<(u8, [u8; 32])> {
        self.keys.iter().map(|k| (k.id, k.raw)).collect()
    }

    /// Makes a new key the sealing one; the oldest beyond [`KEPT_KEYS`]
    /// stops opening cookies.
    pub fn rotate(&mut self) {
        let mut raw = [0u8; 32];
        self.rng.fill(&mut raw).expect("system randomness");
        let id = self.keys.first().map_or(0, |k| k.id.wrapping_add(1));
        self.keys.insert(
            0,
            CookieKey {
                id,
                key: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &raw).expect("32-byte key")),
                raw,
            },
        );
        self.keys.truncate(KEPT_KEYS);
    }

    /// Seals `session` for `app`. When it would exceed [`MAX_COOKIE`],
    /// groups are dropped from the end (and `groups_trimmed` set) until it
    /// fits.
    pub fn seal(&self, app: &str, session: &Session) -> Result<String, CookieError> {
        let mut s = session.clone();
        loop {
            let sealed = self.seal_json(app, &s);
            if sealed.len() <= MAX_COOKIE {
                return Ok(sealed);
            }
            // A refresh token too large to keep goes first: the session
            // then ends at its expiry instead of being renewed.
            if s.refresh.take().is_some() {
                s.renew_at = 0;
                continue;
            }
            if s.groups.is_empty() {
                return Err(CookieError::TooLarge);
            }
            // Drop enough groups at once to get under the bound (the
            // ciphertext grows by at most 4/3 of each group's JSON).
            let over = sealed.len() - MAX_COOKIE;
            let mut freed = 0;
            while freed * 4 / 3 < over && !s.groups.is_empty() {
                freed += s.groups.pop().map_or(0, |g| g.len() + 3);
            }
            s.groups_trimmed = true;
        }
    }

    /// Opens a cookie value sealed for `app`; `now` in Unix seconds.
    pub fn open(&self, app: &str, value: &str, now: u64) -> Result<Session, CookieError> {
        let session: Session = self.open_json(app, value)?;
        if now >= session.expires {
            return Err(CookieError::Expired);
        }
        Ok(session)
    }

    /// Seals any value as JSON, bound to `context` (an app's name, or a
    /// purpose and an app, so that one kind of cookie never passes for
    /// another).
    pub fn seal_json<T: Serialize>(&self, context: &str, value: &T) -> String {
        let key = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).expect("system randomness");
        let mut data = serde_json::to_vec(value).expect("a cookie value serialises");
        key.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(key.id, context)),
                &mut data,
            )
            .expect("AES-GCM seals any length under 64 GiB");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + data.len());
        out.push(key.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&data);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// Opens what [`CookieKeys::seal_json`] sealed for `context`.
    pub fn open_json<T: serde::de::DeserializeOwned>(
        &self,
        context: &str,
        value: &str,
    ) -> Result<T, CookieError> {
        if value.len() > MAX_COOKIE {
            return Err(CookieError::Malformed);
        }
        let mut raw = URL_SAFE_NO_PAD
            .decode(value)
            .map_err(|_| CookieError::Malformed)?;
        if raw.len() < 1 + NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(CookieError::Malformed);
        }
        let id = raw[0];
        let key = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or(CookieError::UnknownKey)?;
        let nonce = Nonce::try_assume_unique_for_key(&raw[1..1 + NONCE_LEN])
            .map_err(|_| CookieError::Malformed)?;
        let plain = key
            .key
            .open_in_place(
                nonce,
                Aad::from(aad(id, context)),
                &mut raw[1 + NONCE_LEN..],
            )
            .map_err(|_| CookieError::Forged)?;
        serde_json::from_slice(plain).map_err(|_| CookieError::Malformed)
    }
}

/// Associated data: the key id and the app, so neither can be swapped.
fn aad(id: u8, app: &str) -> Vec<u8> {
    let mut a = Vec::with_capacity(1 + app.len());
    a.push(id);
    a.extend_from_slice(app.as_bytes());
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    fn alice() -> Session {
        Session {
            sub: "alice".into(),
            email: Some("alice@example.com".into()),
            name: None,
            groups: vec!["staff".into(), "finance".into()],
            groups_trimmed: false,
            user: None,
            amr: vec!["pwd".into()],
            claims: Vec::new(),
            expires: NOW + 3600,
            refresh: None,
            renew_at: 0,
            until: 0,
        }
    }

    #[test]
    fn a_cookie_opens_for_its_app_only() {
        let keys = CookieKeys::generate();
        let c = keys.seal("expenses", &alice()).unwrap();
        assert_eq!(keys.open("expenses", &c, NOW), Ok(alice()));
        assert_eq!(keys.open("payroll", &c, NOW), Err(CookieError::Forged));
        // Two seals of one session differ (fresh nonces).
        assert_ne!(c, keys.seal("expenses", &alice()).unwrap());
    }

    #[test]
    fn tampering_and_garbage_are_refused() {
        let keys = CookieKeys::generate();
        let c = keys.seal("expenses", &alice()).unwrap();
        let mut raw = URL_SAFE_NO_PAD.decode(&c).unwrap();
        for i in [0, 1, 13, raw.len() / 2, raw.len() - 1] {
            raw[i] ^= 1;
            let bad = URL_SAFE_NO_PAD.encode(&raw);
            assert!(keys.open("expenses", &bad, NOW).is_err(), "byte {i}");
            raw[i] ^= 1;
        }
        for junk in ["", "!!!", "AAAA", &"A".repeat(MAX_COOKIE + 1)] {
            assert_eq!(
                keys.open("expenses", junk, NOW),
                Err(CookieError::Malformed)
            );
        }
        // Another edge's keys open nothing.
        let other = CookieKeys::generate();
        assert!(other.open("expenses", &c, NOW).is_err());
    }

    #[test]
    fn sessions_expire() {
        let keys = CookieKeys::generate();
        let c = keys.seal("expenses", &alice()).unwrap();
        assert!(keys.open("expenses", &c, NOW + 3599).is_ok());
        assert_eq!(
            keys.open("expenses", &c, NOW + 3600),
            Err(CookieError::Expired)
        );
    }

    #[test]
    fn rotation_keeps_the_last_three_keys() {
        let mut keys = CookieKeys::generate();
        let old = keys.seal("expenses", &alice()).unwrap();
        keys.rotate();
        keys.rotate();
        assert!(keys.open("expenses", &old, NOW).is_ok(), "two rotations");
        let restored = CookieKeys::from_raw(&keys.export()).unwrap();
        assert!(restored.open("expenses", &old, NOW).is_ok(), "persisted");
        keys.rotate();
        assert_eq!(
            keys.open("expenses", &old, NOW),
            Err(CookieError::UnknownKey)
        );
        assert!(CookieKeys::from_raw(&[]).is_err());
    }

    #[test]
    fn large_group_lists_are_trimmed_to_fit() {
        let keys = CookieKeys::generate();
        let mut s = alice();
        s.groups = (0..500)
            .map(|i| format!("group-with-a-long-name-{i:04}"))
            .collect();
        let c = keys.seal("expenses", &s).unwrap();
        assert!(c.len() <= MAX_COOKIE);
        let back = keys.open("expenses", &c, NOW).unwrap();
        assert!(back.groups_trimmed);
        assert!(!back.groups.is_empty() && back.groups.len() < 500);
        assert_eq!(back.groups[..], s.groups[..back.groups.len()]);
        let mut huge = alice();
        huge.sub = "x".repeat(4000);
        assert_eq!(keys.seal("expenses", &huge), Err(CookieError::TooLarge));
    }

    #[test]
    fn a_refresh_token_is_kept_until_it_does_not_fit() {
        let keys = CookieKeys::generate();
        // Renewal from three quarters of the life on, never past `until`.
        let s = alice().renewable(Some("r-token".into()), NOW, NOW + 7200);
        assert_eq!(
            (s.refresh.as_deref(), s.renew_at, s.until),
            (Some("r-token"), NOW + 2700, NOW + 7200)
        );
        let back = keys
            .open("expenses", &keys.seal("expenses", &s).unwrap(), NOW)
            .unwrap();
        assert_eq!(back, s);
        // A session already at its longest life is not renewed.
        let capped = alice().renewable(Some("r".into()), NOW, NOW + 3600);
        assert_eq!((capped.refresh, capped.renew_at), (None, 0));
        // A refresh token too large for the cookie is dropped, groups kept.
        let big = alice().renewable(Some("r".repeat(5000)), NOW, NOW + 7200);
        let back = keys
            .open("expenses", &keys.seal("expenses", &big).unwrap(), NOW)
            .unwrap();
        assert_eq!((back.refresh, back.renew_at), (None, 0));
        assert_eq!(back.groups, alice().groups);
        assert!(!back.groups_trimmed);
    }
}
