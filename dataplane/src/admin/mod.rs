//! The control side of a running edge: the app table as operators change
//! it, persisted before it is acknowledged and published to every worker.
//!
//! Changes are serialised by one mutex (the admin path only; workers never
//! touch it). Each change is validated as a whole table against the
//! edge's listeners and identity provider, turned into a new snapshot
//! (loading any backend CA file), written durably, and only then published
//! and acknowledged. A change that fails at any step leaves the running
//! table exactly as it was.

pub mod certs;
pub mod http;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use postern_control::ca::{self, Ca};
use postern_control::enroll;
use postern_control::registry::{ConnectorRecord, Live, Registry};
use postern_control::store::{self, AppTable};
use postern_control::{AppSpec, EdgeConfig};

use crate::snapshot::{Published, Snapshot};
use crate::tunnel::edge::Tunnels;
use crate::tunnel::Reply;

/// Name of the admin bearer token file in the state directory.
pub const TOKEN_FILE: &str = "admin.token";

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("the app table is invalid")]
    Invalid(Vec<String>),
    #[error("no app is named \"{0}\"")]
    NotFound(String),
    #[error("an app named \"{0}\" already exists")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("the change could not be saved, so it was not applied: {0}")]
    Storage(String),
}

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0}")]
    Store(#[from] store::StoreError),
    #[error("{path}: the stored app table no longer validates against this configuration:\n  - {}", problems.join("\n  - "))]
    Invalid {
        path: PathBuf,
        problems: Vec<String>,
    },
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsSetupError),
    #[error("{0}")]
    Ca(#[from] ca::CaError),
    #[error("{path}: {source}")]
    Token {
        path: PathBuf,
        source: std::io::Error,
    },
}

struct Current {
    cfg: EdgeConfig,
    version: u64,
}

pub struct Control {
    /// Every worker's counters.
    pub counters: postern_control::counters::Registry,
    current: Mutex<Current>,
    published: Arc<Published>,
    serving: OnceLock<Vec<Arc<AtomicU64>>>,
    state_dir: PathBuf,
    token: String,
    /// Serialises changes to the enrollment-token file.
    tokens: Mutex<()>,
    /// The listeners' certificates (admin path only; handshakes read the
    /// resolver).
    pub certs: Mutex<certs::Certificates>,
    /// Open tunnels (shared with every worker).
    pub tunnels: Arc<Tunnels>,
    ca: Ca,
    /// Hex SHA-256 prefix of the CA certificate, appended to enrollment
    /// tokens so a registering connector can pin the CA before it trusts
    /// the edge with the token.
    ca_pin: String,
    tunnel_tls: Option<Arc<rustls::ServerConfig>>,
    /// The connector registry, in memory; activity reaches the disk from
    /// a control thread.
    registry: Live,
}

impl Control {
    /// Opens the state directory: the stored app table wins over the
    /// configuration file's apps, which only seed a first start.
    pub fn open(
        cfg: EdgeConfig,
        state_dir: &Path,
    ) -> Result<(Arc<Control>, EdgeConfig), OpenError> {
        store::ensure_dir(state_dir)?;
        let (cfg, version) = match store::load(state_dir)? {
            Some(table) => {
                let cfg = cfg
                    .with_apps(table.apps)
                    .map_err(|problems| OpenError::Invalid {
                        path: state_dir.join(store::APPS_FILE),
                        problems,
                    })?;
                (cfg, table.version)
            }
            None => {
                let table = AppTable {
                    version: 1,
                    apps: cfg.app_specs.clone(),
                };
                store::save(state_dir, &table)?;
                (cfg, 1)
            }
        };
        let token = load_or_create_token(state_dir)?;
        let certificates = certs::Certificates::open(&cfg.certificates, state_dir)?;
        let snapshot = Arc::new(Snapshot::build(&cfg, version)?);
        let ca = Ca::load_or_create(state_dir, enroll::now())?;
        let ca_pin = ca_pin(&ca.cert_pem);
        let tunnel_tls = match cfg.edge.tunnel_address {
            Some(_) => Some(crate::tls::tunnel_server_config(&ca)?),
            None => None,
        };
        let tunnels = Arc::new(Tunnels::default());
        let mut stored = Registry::load(state_dir)?;
        // Connectors inactive past `connector_removed_after` are forgotten.
        if stored.prune(enroll::now(), cfg.edge.connector_lifetimes) {
            stored.save(state_dir)?;
        }
        for c in stored.connectors.iter().filter(|c| c.revoked) {
            tunnels.revoke(&c.id);
        }
        let registry = Live::new(state_dir, stored);
        let control = Arc::new(Control {
            counters: Default::default(),
            current: Mutex::new(Current {
                cfg: cfg.clone(),
                version,
            }),
            published: Published::new(snapshot),
            serving: OnceLock::new(),
            state_dir: state_dir.to_path_buf(),
            token,
            tokens: Mutex::new(()),
            certs: Mutex::new(certificates),
            tunnels,
            ca,
            ca_pin,
            tunnel_tls,
            registry,
        });
        flush_registry(Arc::downgrade(&control));
        Ok((control, cfg))
    }

    pub fn resolver(&self) -> Option<Arc<crate::tls::LiveResolver>> {
        self.certs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .resolver()
    }

    pub fn published(&self) -> Arc<Published> {
        self.published.clone()
    }

    /// Registers the workers' "serving version" cells once they run.
    pub fn set_serving(&self, serving: Vec<Arc<AtomicU64>>) {
        let _ = self.serving.set(serving);
    }

    /// The app-table version each worker serves right now.
    pub fn serving(&self) -> Vec<u64> {
        self.serving
            .get()
            .map(|v| v.iter().map(|c| c.load(Ordering::Acquire)).collect())
            .unwrap_or_default()
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Current> {
        self.current.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// (version, apps as written).
    pub fn apps(&self) -> (u64, Vec<AppSpec>) {
        let cur = self.lock();
        (cur.version, cur.cfg.app_specs.clone())
    }

    /// Applies `edit` to a copy of the table; validates, persists and
    /// publishes the result. Returns the new version.
    pub fn change(
        &self,
        edit: impl FnOnce(&mut Vec<AppSpec>) -> Result<(), ApplyError>,
    ) -> Result<u64, ApplyError> {
        let mut cur = self.lock();
        let mut specs = cur.cfg.app_specs.clone();
        edit(&mut specs)?;
        let cfg = cur.cfg.with_apps(specs).map_err(ApplyError::Invalid)?;
        let version = cur.version + 1;
        let snapshot =
            Snapshot::build(&cfg, version).map_err(|e| ApplyError::Invalid(vec![e.to_string()]))?;
        let table = AppTable {
            version,
            apps: cfg.app_specs.clone(),
        };
        store::save(&self.state_dir, &table).map_err(|e| ApplyError::Storage(e.to_string()))?;
        cur.cfg = cfg;
        cur.version = version;
        self.published.publish(Arc::new(snapshot));
        tracing::info!(version, "app table changed");
        Ok(version)
    }
}

impl Control {
    /// Creates a single-use enrollment token for `group`.
    pub fn create_token(
        &self,
        group: &str,
        ttl_secs: u64,
    ) -> Result<(enroll::TokenRecord, String), enroll::EnrollError> {
        let _serial = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let (record, token) = enroll::create(&self.state_dir, group, ttl_secs)?;
        Ok((record, format!("{token}_{}", self.ca_pin)))
    }

    /// Registered connectors, their state and open tunnels.
    pub fn connectors(
        &self,
    ) -> Result<Vec<postern_control::registry::ConnectorInfo>, store::StoreError> {
        let lifetimes = self.lock().cfg.edge.connector_lifetimes;
        Ok(self
            .registry
            .read(|r| r.list(enroll::now(), lifetimes, |id| self.tunnels.count(id))))
    }

    pub fn list_tokens(&self) -> Result<Vec<enroll::TokenInfo>, enroll::EnrollError> {
        let _serial = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        enroll::list(&self.state_dir)
    }

    pub fn revoke_token(&self, id: &str) -> Result<bool, enroll::EnrollError> {
        let _serial = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        enroll::revoke(&self.state_dir, id)
    }
}

/// The tunnel side of the control plane: enrollment, renewal, revocation.
impl Control {
    pub fn tunnel_tls(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.tunnel_tls.clone()
    }

    fn lifetime(&self) -> std::time::Duration {
        self.lock().cfg.edge.connector_cert_lifetime
    }

    /// Registers a connector: spends the token, signs its request, adds
    /// it to the registry.
    pub fn enroll(&self, req: &crate::tunnel::EnrollRequest, peer: std::net::SocketAddr) -> Reply {
        let refuse = |error: String| {
            tracing::warn!(%peer, "connector registration refused: {error}");
            Reply {
                error: Some(error),
                ..Default::default()
            }
        };
        let host_ok =
            |s: &str| !s.is_empty() && s.len() <= 253 && s.bytes().all(|b| b.is_ascii_graphic());
        if !host_ok(&req.host_name) || !host_ok(&req.version) || req.version.len() > 64 {
            return refuse(
                "host_name and version must be 1 to 253 visible ASCII characters".into(),
            );
        }
        if let Err(e) = Ca::check_request(&req.csr) {
            return refuse(e.to_string());
        }
        // The CA pin is public; only the first three parts are the secret.
        let token: String = {
            let parts: Vec<&str> = req.token.trim().split('_').collect();
            parts[..parts.len().min(3)].join("_")
        };
        let group = {
            let _serial = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
            match enroll::consume(&self.state_dir, &token) {
                Ok(g) => g,
                Err(e) => return refuse(e.to_string()),
            }
        };
        let mut raw = [0u8; 8];
        if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw).is_err() {
            return refuse("no randomness available".into());
        }
        let id: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        let now = enroll::now();
        let certificate = match self.ca.issue_connector(&req.csr, &id, now, self.lifetime()) {
            Ok(c) => c,
            Err(e) => return refuse(e.to_string()),
        };
        let lifetimes = self.lock().cfg.edge.connector_lifetimes;
        let saved = self.registry.change_durably(|r| {
            r.prune(now, lifetimes);
            r.add(ConnectorRecord {
                id: id.clone(),
                host_name: req.host_name.clone(),
                version: req.version.clone(),
                group: group.clone(),
                registered_at: now,
                last_seen: now,
                revoked: false,
            });
        });
        if let Err(e) = saved {
            return refuse(format!("the edge could not record the connector: {e}"));
        }
        tracing::info!(connector = %id, %group, host = %req.host_name, %peer, "connector registered");
        Reply {
            error: None,
            id,
            group,
            certificate,
            ca: self.ca.cert_pem.clone(),
            lifetime_secs: self.lifetime().as_secs(),
        }
    }

    /// A fresh certificate for a registered, unrevoked connector.
    pub fn renew(&self, id: &str, csr: &str) -> Reply {
        if let Err(error) = self.tunnel_group(id) {
            return Reply {
                error: Some(error),
                ..Default::default()
            };
        }
        match self
            .ca
            .issue_connector(csr, id, enroll::now(), self.lifetime())
        {
            Ok(certificate) => {
                tracing::info!(connector = %id, "connector certificate renewed");
                Reply {
                    id: id.to_string(),
                    certificate,
                    ca: self.ca.cert_pem.clone(),
                    lifetime_secs: self.lifetime().as_secs(),
                    ..Default::default()
                }
            }
            Err(e) => Reply {
                error: Some(e.to_string()),
                ..Default::default()
            },
        }
    }

    /// The group of connector `id`, or why it may not open a tunnel.
    pub fn tunnel_group(&self, id: &str) -> Result<String, String> {
        if self.tunnels.is_revoked(id) {
            return Err(format!("connector {id} is revoked"));
        }
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
    pub fn connector_seen(&self, id: &str) {
        let now = enroll::now();
        self.registry.change_lazily(|r| r.touch(id, now));
    }

    /// Revokes connector `id`: its tunnels close now and it can neither
    /// reconnect nor renew. `Ok(false)` when there is no such connector.
    pub fn revoke_connector(&self, id: &str) -> Result<bool, store::StoreError> {
        if !self.registry.change_durably(|r| r.revoke(id))? {
            return Ok(false);
        }
        self.tunnels.revoke(id);
        tracing::info!(connector = %id, "connector revoked");
        Ok(true)
    }
}

/// The control thread that writes connector activity to the state
/// directory, once a second at most, until the edge's control side goes.
fn flush_registry(control: std::sync::Weak<Control>) {
    let spawned = std::thread::Builder::new()
        .name("postern-registry".into())
        .spawn(move || loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
            let Some(c) = control.upgrade() else { return };
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

/// The admin token: 32 random bytes, hex, in a 0600 file.
fn load_or_create_token(dir: &Path) -> Result<String, OpenError> {
    let path = dir.join(TOKEN_FILE);
    let err = |source| OpenError::Token {
        path: path.clone(),
        source,
    };
    match std::fs::read_to_string(&path) {
        Ok(t) if t.trim().len() >= 32 => return Ok(t.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let mut raw = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
        .map_err(|_| err(std::io::Error::other("no randomness available")))?;
    let token: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    store::write_durably(&path, format!("{token}\n").as_bytes()).map_err(err)?;
    Ok(token)
}
