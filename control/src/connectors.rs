//! The edge's connector authority: enrollment tokens, the internal CA
//! that signs connector certificates, and the registry of connectors.
//!
//! Everything here touches the disk, so the data plane calls it from
//! control threads only. Tunnel activity (`seen`) changes the registry in
//! memory at once and reaches the disk from a flusher thread, once a
//! second at most.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::ca::{Ca, CaError};
use crate::enroll::{self, EnrollError, TokenInfo, TokenRecord};
use crate::registry::{ConnectorInfo, ConnectorRecord, Lifetimes, Live, Registry};
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Ca(#[from] CaError),
}

/// What a newly registered connector is told.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub id: String,
    pub group: String,
    /// Its certificate (PEM).
    pub certificate: String,
}

/// A registration as the connector sent it.
pub struct Registration<'a> {
    pub token: &'a str,
    /// PKCS#10 request (PEM).
    pub csr: &'a str,
    pub host_name: &'a str,
    pub version: &'a str,
}

pub struct Connectors {
    state_dir: PathBuf,
    ca: Ca,
    /// Hex SHA-256 prefix of the CA certificate, appended to enrollment
    /// tokens so a registering connector can pin the CA before it trusts
    /// the edge with the token.
    ca_pin: String,
    /// Serialises changes to the enrollment-token file.
    tokens: Mutex<()>,
    registry: Live,
}

impl Connectors {
    /// Loads (or creates) the CA and the registry, forgetting connectors
    /// inactive past their removal time.
    pub fn open(state_dir: &Path, lifetimes: Lifetimes) -> Result<Arc<Connectors>, OpenError> {
        let ca = Ca::load_or_create(state_dir, enroll::now())?;
        let ca_pin = ca_pin(&ca.cert_pem);
        let mut stored = Registry::load(state_dir)?;
        if stored.prune(enroll::now(), lifetimes) {
            stored.save(state_dir)?;
        }
        let connectors = Arc::new(Connectors {
            state_dir: state_dir.to_path_buf(),
            ca,
            ca_pin,
            tokens: Mutex::new(()),
            registry: Live::new(state_dir, stored),
        });
        spawn_flusher(Arc::downgrade(&connectors));
        Ok(connectors)
    }

    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    /// Connectors revoked in the registry.
    pub fn revoked(&self) -> Vec<String> {
        self.registry.read(|r| {
            r.connectors
                .iter()
                .filter(|c| c.revoked)
                .map(|c| c.id.clone())
                .collect()
        })
    }

    fn serial(&self) -> std::sync::MutexGuard<'_, ()> {
        self.tokens.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Creates a single-use enrollment token for `group`; the token handed
    /// out carries the CA pin.
    pub fn create_token(
        &self,
        group: &str,
        ttl_secs: u64,
    ) -> Result<(TokenRecord, String), EnrollError> {
        let _serial = self.serial();
        let (record, token) = enroll::create(&self.state_dir, group, ttl_secs)?;
        Ok((record, format!("{token}_{}", self.ca_pin)))
    }

    pub fn list_tokens(&self) -> Result<Vec<TokenInfo>, EnrollError> {
        let _serial = self.serial();
        enroll::list(&self.state_dir)
    }

    pub fn revoke_token(&self, id: &str) -> Result<bool, EnrollError> {
        let _serial = self.serial();
        enroll::revoke(&self.state_dir, id)
    }

    /// Registered connectors and their state; `tunnels` counts a
    /// connector's open tunnels.
    pub fn list(&self, lifetimes: Lifetimes, tunnels: impl Fn(&str) -> u32) -> Vec<ConnectorInfo> {
        self.registry
            .read(|r| r.list(enroll::now(), lifetimes, tunnels))
    }

    /// Registers a connector: spends the token, signs its request, records
    /// it durably. The error says why the registration was refused.
    pub fn enroll(
        &self,
        req: &Registration<'_>,
        lifetimes: Lifetimes,
        cert_lifetime: Duration,
    ) -> Result<Enrolled, String> {
        let host_ok =
            |s: &str| !s.is_empty() && s.len() <= 253 && s.bytes().all(|b| b.is_ascii_graphic());
        if !host_ok(req.host_name) || !host_ok(req.version) || req.version.len() > 64 {
            return Err("host_name and version must be 1 to 253 visible ASCII characters".into());
        }
        Ca::check_request(req.csr).map_err(|e| e.to_string())?;
        // The CA pin is public; only the first three parts are the secret.
        let token: String = {
            let parts: Vec<&str> = req.token.trim().split('_').collect();
            parts[..parts.len().min(3)].join("_")
        };
        let group = {
            let _serial = self.serial();
            enroll::consume(&self.state_dir, &token).map_err(|e| e.to_string())?
        };
        let mut raw = [0u8; 8];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
            .map_err(|_| "no randomness available".to_string())?;
        let id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let now = enroll::now();
        let certificate = self
            .ca
            .issue_connector(req.csr, &id, now, cert_lifetime)
            .map_err(|e| e.to_string())?;
        self.registry
            .change_durably(|r| {
                r.prune(now, lifetimes);
                r.add(ConnectorRecord {
                    id: id.clone(),
                    host_name: req.host_name.to_string(),
                    version: req.version.to_string(),
                    group: group.clone(),
                    registered_at: now,
                    last_seen: now,
                    revoked: false,
                });
            })
            .map_err(|e| format!("the edge could not record the connector: {e}"))?;
        Ok(Enrolled {
            id,
            group,
            certificate,
        })
    }

    /// A fresh certificate (PEM) for a registered, unrevoked connector.
    pub fn renew(&self, id: &str, csr: &str, cert_lifetime: Duration) -> Result<String, String> {
        self.group(id)?;
        self.ca
            .issue_connector(csr, id, enroll::now(), cert_lifetime)
            .map_err(|e| e.to_string())
    }

    /// The group of connector `id`, or why it may not open a tunnel.
    pub fn group(&self, id: &str) -> Result<String, String> {
        self.registry.read(|r| match r.get(id) {
            Some(c) if c.revoked => Err(format!("connector {id} is revoked")),
            Some(c) => Ok(c.group.clone()),
            None => Err(format!(
                "connector {id} is not registered (removed after being inactive?)"
            )),
        })
    }

    /// Notes that connector `id` opened or closed a tunnel just now.
    /// (In memory, at once; on disk within a second.)
    pub fn seen(&self, id: &str) {
        let now = enroll::now();
        self.registry.change_lazily(|r| r.touch(id, now));
    }

    /// Writes recent connector activity to disk now (before another
    /// process loads the registry).
    pub fn flush(&self) -> Result<(), StoreError> {
        self.registry.flush()
    }

    /// Marks connector `id` revoked, durably. `Ok(false)` when there is no
    /// such connector.
    pub fn revoke(&self, id: &str) -> Result<bool, StoreError> {
        self.registry.change_durably(|r| r.revoke(id))
    }
}

/// The control thread that writes connector activity to the state
/// directory, once a second at most, until the connectors go.
fn spawn_flusher(connectors: Weak<Connectors>) {
    let spawned = std::thread::Builder::new()
        .name("postern-registry".into())
        .spawn(move || loop {
            std::thread::sleep(Duration::from_secs(1));
            let Some(c) = connectors.upgrade() else {
                return;
            };
            if crate::store::writes_held() {
                continue;
            }
            if let Err(e) = c.registry.flush() {
                tracing::warn!(error = %e, "cannot record connector activity; retrying");
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the registry writer; connector activity is written at the next change");
    }
}

/// First 16 bytes of the SHA-256 of the CA certificate, hex.
fn ca_pin(cert_pem: &str) -> String {
    use rustls_pki_types::pem::PemObject;
    let der = rustls_pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .map(|d| d.to_vec())
        .unwrap_or_default();
    ring::digest::digest(&ring::digest::SHA256, &der).as_ref()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
