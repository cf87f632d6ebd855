//! Enrollment tokens: how a connector proves, once, that an operator
//! allowed it to join a connector group.
//!
//! A token is shown exactly once, when it is created; the edge keeps only
//! its SHA-256. Tokens are single-use and expire (default one hour, at
//! most seven days). The list lives in the state directory and is replaced
//! atomically like the app table, so a token used just before a crash is
//! still used after it.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use ring::digest;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use crate::store::{self, StoreError};

pub const TOKENS_FILE: &str = "enrollment-tokens.json";
pub const DEFAULT_TTL_SECS: u64 = 3600;
pub const MAX_TTL_SECS: u64 = 7 * 24 * 3600;
pub const MIN_TTL_SECS: u64 = 60;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRecord {
    pub id: String,
    pub group: String,
    /// Hex SHA-256 of the whole token.
    pub sha256: String,
    pub created_at: u64,
    pub expires_at: u64,
    pub used_at: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenList {
    pub tokens: Vec<TokenRecord>,
}

/// A token as listed: never the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenInfo {
    pub id: String,
    pub group: String,
    pub created_at: u64,
    pub expires_at: u64,
    pub state: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("{0}")]
    Invalid(String),
    #[error("the enrollment token is not valid (unknown, forged or revoked)")]
    Unknown,
    #[error(
        "the enrollment token was already used; create a new one with `postern tokens create`"
    )]
    Used,
    #[error("the enrollment token expired; create a new one with `postern tokens create`")]
    Expired,
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("no randomness available")]
    Random,
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256(token: &str) -> String {
    hex(digest::digest(&digest::SHA256, token.as_bytes()).as_ref())
}

/// Validates a connector group name (the same rule as in the app table).
pub fn check_group(group: &str) -> Result<(), EnrollError> {
    let ok = !group.is_empty()
        && group.len() <= 64
        && group
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(EnrollError::Invalid(format!(
            "group: `{group}` must be 1 to 64 letters, digits, `-`, `_` or `.`"
        )))
    }
}

fn load(dir: &Path) -> Result<TokenList, EnrollError> {
    Ok(store::load_json(dir, TOKENS_FILE)?.unwrap_or_default())
}

/// Creates a token for `group`; returns (record, the secret token).
pub fn create(
    dir: &Path,
    group: &str,
    ttl_secs: u64,
) -> Result<(TokenRecord, String), EnrollError> {
    check_group(group)?;
    if !(MIN_TTL_SECS..=MAX_TTL_SECS).contains(&ttl_secs) {
        return Err(EnrollError::Invalid(format!(
            "ttl_seconds: {ttl_secs} is out of range ({MIN_TTL_SECS}..={MAX_TTL_SECS})"
        )));
    }
    let rng = SystemRandom::new();
    let mut id = [0u8; 6];
    let mut secret = [0u8; 32];
    rng.fill(&mut id).map_err(|_| EnrollError::Random)?;
    rng.fill(&mut secret).map_err(|_| EnrollError::Random)?;
    let id = hex(&id);
    let token = format!("pet_{id}_{}", hex(&secret));
    let now = now();
    let record = TokenRecord {
        id,
        group: group.to_string(),
        sha256: sha256(&token),
        created_at: now,
        expires_at: now + ttl_secs,
        used_at: None,
    };
    let mut list = load(dir)?;
    // Forget tokens that ended more than a day ago.
    list.tokens
        .retain(|t| t.expires_at + 86_400 > now && t.used_at.is_none_or(|u| u + 86_400 > now));
    list.tokens.push(record.clone());
    store::save_json(dir, TOKENS_FILE, &list)?;
    Ok((record, token))
}

pub fn list(dir: &Path) -> Result<Vec<TokenInfo>, EnrollError> {
    let now = now();
    Ok(load(dir)?
        .tokens
        .into_iter()
        .map(|t| TokenInfo {
            state: if t.used_at.is_some() {
                "used"
            } else if t.expires_at <= now {
                "expired"
            } else {
                "active"
            },
            id: t.id,
            group: t.group,
            created_at: t.created_at,
            expires_at: t.expires_at,
        })
        .collect())
}

/// Revokes a token by id; `Ok(false)` when there is no such token.
pub fn revoke(dir: &Path, id: &str) -> Result<bool, EnrollError> {
    let mut list = load(dir)?;
    let before = list.tokens.len();
    list.tokens.retain(|t| t.id != id);
    if list.tokens.len() == before {
        return Ok(false);
    }
    store::save_json(dir, TOKENS_FILE, &list)?;
    Ok(true)
}

/// Spends a token: on success returns its group, and the token can never
/// be used again (the use is durable before this returns).
pub fn consume(dir: &Path, token: &str) -> Result<String, EnrollError> {
    let mut list = load(dir)?;
    let want = sha256(token);
    let now = now();
    // Compare every stored hash without an early exit.
    let mut found = None;
    for (i, t) in list.tokens.iter().enumerate() {
        let same = t.sha256.len() == want.len()
            && t.sha256
                .bytes()
                .zip(want.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if same {
            found = Some(i);
        }
    }
    let t = &mut list.tokens[found.ok_or(EnrollError::Unknown)?];
    if t.used_at.is_some() {
        return Err(EnrollError::Used);
    }
    if t.expires_at <= now {
        return Err(EnrollError::Expired);
    }
    t.used_at = Some(now);
    let group = t.group.clone();
    store::save_json(dir, TOKENS_FILE, &list)?;
    Ok(group)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(tag: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("postern-enroll-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn single_use_and_never_stored_in_clear() {
        let d = dir("once");
        let (rec, token) = create(&d, "emea", 3600).unwrap();
        let stored = std::fs::read_to_string(d.join(TOKENS_FILE)).unwrap();
        assert!(!stored.contains(&token[12..]), "the secret is not stored");
        assert_eq!(consume(&d, &token).unwrap(), "emea");
        assert!(matches!(consume(&d, &token), Err(EnrollError::Used)));
        // The last character changed (to one it is not).
        let other = if token.ends_with('0') { '1' } else { '0' };
        let forged = format!("{}{other}", &token[..token.len() - 1]);
        assert!(matches!(consume(&d, &forged), Err(EnrollError::Unknown)));
        assert_eq!(list(&d).unwrap()[0].state, "used");
        assert!(revoke(&d, &rec.id).unwrap());
        assert!(!revoke(&d, &rec.id).unwrap());
    }

    #[test]
    fn expiry_and_limits() {
        let d = dir("ttl");
        let (_, token) = create(&d, "g", 60).unwrap();
        let mut l: TokenList = store::load_json(&d, TOKENS_FILE).unwrap().unwrap();
        l.tokens[0].expires_at = now() - 1;
        store::save_json(&d, TOKENS_FILE, &l).unwrap();
        assert!(matches!(consume(&d, &token), Err(EnrollError::Expired)));
        assert!(create(&d, "g", 10).is_err());
        assert!(create(&d, "g", MAX_TTL_SECS + 1).is_err());
        assert!(create(&d, "bad group", 3600).is_err());
    }
}
