//! Certificates of the public listeners: those the configuration file
//! names, plus those uploaded through the admin API, which are kept in the
//! state directory (one JSON file each, replaced atomically, mode 0600)
//! and take effect on the next TLS handshake. An uploaded certificate is
//! preferred over a configured one for the same name, so renewing is an
//! upload.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use postern_control::store;
use serde::{Deserialize, Serialize};

use crate::tls::{self, LiveResolver, LoadedCert, PemProblem};

pub const CERT_DIR: &str = "certificates";

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    cert_pem: String,
    key_pem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// (field, reason)
    #[error("{0}: {1}")]
    Invalid(&'static str, String),
    #[error("no uploaded certificate is named \"{0}\"")]
    NotFound(String),
    #[error("the certificate could not be saved, so it was not installed: {0}")]
    Storage(String),
}

pub struct Certificates {
    dir: PathBuf,
    configured: Vec<LoadedCert>,
    uploaded: BTreeMap<String, LoadedCert>,
    resolver: Option<Arc<LiveResolver>>,
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

fn problem(p: PemProblem) -> CertError {
    match p {
        PemProblem::Cert(r) => CertError::Invalid("cert_pem", r),
        PemProblem::Key(r) => CertError::Invalid("key_pem", r),
    }
}

impl Certificates {
    /// Loads the configured certificates and every stored upload.
    pub fn open(
        files: &[postern_control::config::CertificateFiles],
        state_dir: &Path,
    ) -> Result<Certificates, tls::TlsSetupError> {
        let configured = files
            .iter()
            .map(tls::load_certificate)
            .collect::<Result<Vec<_>, _>>()?;
        let dir = state_dir.join(CERT_DIR);
        let mut uploaded = BTreeMap::new();
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                let file = entry.file_name().to_string_lossy().into_owned();
                let Some(name) = file.strip_suffix(".json") else {
                    continue;
                };
                if !valid_name(name) {
                    continue;
                }
                let path = entry.path();
                let err = |reason: String| tls::TlsSetupError::File {
                    path: path.clone(),
                    reason,
                };
                let stored: Stored = store::load_json(&dir, &file)
                    .map_err(|e| err(e.to_string()))?
                    .ok_or_else(|| err("vanished while loading".into()))?;
                let cert = tls::certificate_from_pem(
                    stored.cert_pem.as_bytes(),
                    stored.key_pem.as_bytes(),
                    &[],
                    &path,
                )
                .map_err(|p| match p {
                    PemProblem::Cert(r) | PemProblem::Key(r) => err(r),
                })?;
                uploaded.insert(name.to_string(), cert);
            }
        }
        let mut certs = Certificates {
            dir,
            configured,
            uploaded,
            resolver: None,
        };
        let all = certs.all();
        if !all.is_empty() {
            certs.resolver = Some(LiveResolver::new(&all)?);
        }
        Ok(certs)
    }

    pub fn resolver(&self) -> Option<Arc<LiveResolver>> {
        self.resolver.clone()
    }

    /// Uploaded first, so they win over configured ones for a name.
    fn all(&self) -> Vec<LoadedCert> {
        self.uploaded
            .values()
            .chain(self.configured.iter())
            .cloned()
            .collect()
    }

    fn apply(&self) -> Result<(), CertError> {
        if let Some(r) = &self.resolver {
            r.replace(&self.all())
                .map_err(|e| CertError::Storage(e.to_string()))?;
        }
        Ok(())
    }

    /// Validates, stores and installs a certificate; returns its names.
    pub fn upload(
        &mut self,
        name: &str,
        cert_pem: &str,
        key_pem: &str,
    ) -> Result<Vec<String>, CertError> {
        if !valid_name(name) {
            return Err(CertError::Invalid(
                "name",
                format!("`{name}` must be 1 to 64 letters, digits, `-`, `_` or `.`, not starting with `.`"),
            ));
        }
        let path = self.dir.join(format!("{name}.json"));
        let cert = tls::certificate_from_pem(cert_pem.as_bytes(), key_pem.as_bytes(), &[], &path)
            .map_err(problem)?;
        if self.resolver.is_none() {
            return Err(CertError::Invalid(
                "name",
                "this edge has no https listener to serve certificates on".into(),
            ));
        }
        store::ensure_dir(&self.dir).map_err(|e| CertError::Storage(e.to_string()))?;
        let stored = Stored {
            cert_pem: cert_pem.to_string(),
            key_pem: key_pem.to_string(),
        };
        store::save_json(&self.dir, &format!("{name}.json"), &stored)
            .map_err(|e| CertError::Storage(e.to_string()))?;
        let names = cert.names.clone();
        self.uploaded.insert(name.to_string(), cert);
        self.apply()?;
        Ok(names)
    }

    pub fn remove(&mut self, name: &str) -> Result<(), CertError> {
        if !self.uploaded.contains_key(name) {
            return Err(CertError::NotFound(name.to_string()));
        }
        let path = self.dir.join(format!("{name}.json"));
        std::fs::remove_file(&path)
            .map_err(|e| CertError::Storage(format!("{}: {e}", path.display())))?;
        self.uploaded.remove(name);
        self.apply()
    }

    /// (name or file, source, DNS names) of every certificate.
    pub fn list(&self) -> Vec<(String, &'static str, Vec<String>)> {
        let mut out: Vec<_> = self
            .uploaded
            .iter()
            .map(|(n, c)| (n.clone(), "uploaded", c.names.clone()))
            .collect();
        out.extend(self.configured.iter().map(|c| {
            (
                c.source.display().to_string(),
                "configuration",
                c.names.clone(),
            )
        }));
        out
    }
}

/// Opens a PKCS#12 file: (certificate chain PEM, private key PEM), or the
/// field to blame and why: a wrong password is told apart from a bad file.
pub fn pkcs12_to_pem(der: &[u8], password: &str) -> Result<(String, String), CertError> {
    use p12_keystore::{KeyStore, KeyStoreEntry, Pkcs12ImportPolicy};
    let store =
        KeyStore::from_pkcs12(der, password, Pkcs12ImportPolicy::Strict).map_err(|e| match e {
            p12_keystore::error::Error::MacError(_) => {
                CertError::Invalid("password", "wrong password for this PKCS#12 file".into())
            }
            other => CertError::Invalid(
                "pkcs12_base64",
                format!("not a usable PKCS#12 file: {other}"),
            ),
        })?;
    for (_, entry) in store.entries() {
        if let KeyStoreEntry::PrivateKeyChain(chain) = entry {
            let mut cert_pem = String::new();
            for c in chain.certs() {
                cert_pem.push_str(&pem_block("CERTIFICATE", c.as_der()));
            }
            let key_pem = pem_block("PRIVATE KEY", chain.key().as_der());
            return Ok((cert_pem, key_pem));
        }
    }
    Err(CertError::Invalid(
        "pkcs12_base64",
        "the PKCS#12 file holds no private key with its certificate".into(),
    ))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn pem_block(label: &str, der: &[u8]) -> String {
    let mut b64 = String::with_capacity(der.len() * 4 / 3 + 4);
    for chunk in der.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Strict standard base64 (whitespace ignored), as JSON carries binary.
pub fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits, mut pad) = (0u32, 0u32, 0usize);
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        if c == b'=' {
            pad += 1;
            continue;
        }
        if pad > 0 {
            return None;
        }
        let v = B64.iter().position(|&b| b == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    (pad <= 2).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip() {
        for len in 0..70 {
            let data: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let pem = pem_block("X", &data);
            let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            assert_eq!(base64_decode(&body).unwrap(), data, "{len}");
        }
        assert!(base64_decode("ab$d").is_none());
        assert!(base64_decode("a=bc").is_none());
    }
}
