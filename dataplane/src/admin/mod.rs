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

use postern_control::enroll;
use postern_control::store::{self, AppTable};
use postern_control::{AppSpec, EdgeConfig};

use crate::snapshot::{Published, Snapshot};

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
        });
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
        enroll::create(&self.state_dir, group, ttl_secs)
    }

    /// Registered connectors and their state (open tunnels are counted by
    /// the tunnel listener; none exist yet in this release).
    pub fn connectors(
        &self,
    ) -> Result<Vec<postern_control::registry::ConnectorInfo>, store::StoreError> {
        let lifetimes = self.lock().cfg.edge.connector_lifetimes;
        let registry = postern_control::registry::Registry::load(&self.state_dir)?;
        Ok(registry.list(enroll::now(), lifetimes, |_| 0))
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
