//! The control side of a running edge: the app table as operators change
//! it, persisted before it is acknowledged and published to every worker,
//! and the connector authority behind the tunnel listener.
//!
//! The change pipeline ([`AppTables`]) and the connector authority
//! ([`Connectors`]) are runtime-free and live in the control crate. This
//! module joins them to what workers run from: each change is validated
//! as a whole table, turned into a new [`Snapshot`] (loading any backend
//! CA file), written durably, and only then published and acknowledged. A
//! change that fails at any step leaves the running table exactly as it
//! was.

pub mod certs;
pub mod http;
mod metrics;
pub mod recent;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use postern_control::connectors::{Connectors, Registration};
use postern_control::enroll;
use postern_control::store;
use postern_control::tables::AppTables;
pub use postern_control::tables::ApplyError;
use postern_control::{AppSpec, EdgeConfig};

use crate::edge::tunnels::Tunnels;
use crate::snapshot::{Published, Snapshot};
use crate::tunnel::Reply;

/// Name of the admin bearer token file in the state directory.
pub const TOKEN_FILE: &str = "admin.token";

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{0}")]
    Tables(#[from] postern_control::tables::OpenError),
    #[error("{0}")]
    Connectors(#[from] postern_control::connectors::OpenError),
    #[error("{0}")]
    Store(#[from] store::StoreError),
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsSetupError),
    #[error("{0}")]
    Auth(String),
    #[error("{path}: {source}")]
    Token {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// The running edge's control side: the app table and its snapshots, the
/// connector authority, certificates and open tunnels. The runtime-free
/// parts ([`AppTables`], [`Connectors`]) live in the control crate; this
/// joins them to what the workers run from.
pub struct Control {
    /// Every worker's counters.
    pub counters: postern_control::counters::Registry,
    tables: AppTables,
    published: Arc<Published>,
    serving: OnceLock<Vec<Arc<AtomicU64>>>,
    /// What this process serves (listeners, pid, version), once started:
    /// `GET /v1/status` and the state directory's `edge.json`.
    info: OnceLock<serde_json::Value>,
    /// When this process started serving (Unix seconds).
    started_at: u64,
    token: String,
    /// The listeners' certificates (admin path only; handshakes read the
    /// resolver).
    pub certs: Mutex<certs::Certificates>,
    /// Open tunnels (shared with every worker).
    pub tunnels: Arc<Tunnels>,
    connectors: Arc<Connectors>,
    tunnel_tls: Option<Arc<rustls::ServerConfig>>,
    /// Identity providers, session and assertion keys.
    pub auth: Arc<crate::auth::Auth>,
}

impl Control {
    /// Opens the state directory: the stored app table wins over the
    /// configuration file's apps, which only seed a first start.
    pub fn open(
        cfg: EdgeConfig,
        state_dir: &Path,
    ) -> Result<(Arc<Control>, EdgeConfig), OpenError> {
        let tables = AppTables::open(cfg, state_dir)?;
        let (cfg, version) = tables.current();
        let token = load_or_create_token(state_dir)?;
        let certificates = certs::Certificates::open(&cfg.certificates, state_dir)?;
        let snapshot = Arc::new(Snapshot::build(&cfg, version)?);
        let connectors = Connectors::open(state_dir, cfg.edge.connector_lifetimes)?;
        let tunnel_tls = match cfg.edge.tunnel_address {
            Some(_) => Some(crate::tls::tunnel_server_config(connectors.ca())?),
            None => None,
        };
        let tunnels = Arc::new(Tunnels::new(cfg.edge.max_tunnel_streams_per_source));
        for id in connectors.revoked() {
            tunnels.revoke(&id);
        }
        let counters = postern_control::counters::Registry::default();
        let auth = crate::auth::Auth::open(&cfg, state_dir, counters.jwks_refreshes.clone())
            .map_err(OpenError::Auth)?;
        let control = Arc::new(Control {
            counters,
            auth,
            tables,
            published: Published::new(snapshot),
            serving: OnceLock::new(),
            info: OnceLock::new(),
            started_at: postern_control::enroll::now(),
            token,
            certs: Mutex::new(certificates),
            tunnels,
            connectors,
            tunnel_tls,
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

    /// Records what this process serves (see [`Control::info`]).
    pub fn set_info(&self, info: serde_json::Value) {
        let _ = self.info.set(info);
    }

    /// What this process serves, with its uptime.
    pub fn info(&self) -> serde_json::Value {
        let mut v = self
            .info
            .get()
            .cloned()
            .unwrap_or_else(|| serde_json::json!({}));
        let now = postern_control::enroll::now();
        v["started_at"] = serde_json::json!(self.started_at);
        v["uptime_seconds"] = serde_json::json!(now.saturating_sub(self.started_at));
        v
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

    /// (version, apps as written).
    pub fn apps(&self) -> (u64, Vec<AppSpec>) {
        self.tables.apps()
    }

    /// Applies `edit` to a copy of the table; validates, persists and
    /// publishes the result to every worker. Returns the new version.
    pub fn change(
        &self,
        edit: impl FnOnce(&mut Vec<AppSpec>) -> Result<(), ApplyError>,
    ) -> Result<u64, ApplyError> {
        let version = self.tables.change(
            edit,
            |cfg, version| Snapshot::build(cfg, version).map_err(|e| e.to_string()),
            |snapshot| self.published.publish(Arc::new(snapshot)),
        )?;
        tracing::info!(version, "app table changed");
        Ok(version)
    }

    fn lifetimes(&self) -> postern_control::registry::Lifetimes {
        self.tables.read(|c| c.edge.connector_lifetimes)
    }

    fn cert_lifetime(&self) -> std::time::Duration {
        self.tables.read(|c| c.edge.connector_cert_lifetime)
    }
}

impl Control {
    /// Creates a single-use enrollment token for `group`.
    pub fn create_token(
        &self,
        group: &str,
        ttl_secs: u64,
    ) -> Result<(enroll::TokenRecord, String), enroll::EnrollError> {
        self.connectors.create_token(group, ttl_secs)
    }

    /// Registered connectors, their state and open tunnels.
    pub fn connectors(&self) -> Vec<postern_control::registry::ConnectorInfo> {
        self.connectors
            .list(self.lifetimes(), |id| self.tunnels.count(id))
    }

    pub fn list_tokens(&self) -> Result<Vec<enroll::TokenInfo>, enroll::EnrollError> {
        self.connectors.list_tokens()
    }

    pub fn revoke_token(&self, id: &str) -> Result<bool, enroll::EnrollError> {
        self.connectors.revoke_token(id)
    }
}

/// The tunnel side of the control plane: enrollment, renewal, revocation.
/// Enrollment and renewal touch the disk: callers run them on a control
/// thread.
impl Control {
    pub fn tunnel_tls(&self) -> Option<Arc<rustls::ServerConfig>> {
        self.tunnel_tls.clone()
    }

    /// Registers a connector: spends the token, signs its request, adds
    /// it to the registry.
    pub fn enroll(&self, req: &crate::tunnel::EnrollRequest, peer: std::net::SocketAddr) -> Reply {
        let registration = Registration {
            token: &req.token,
            csr: &req.csr,
            host_name: &req.host_name,
            version: &req.version,
        };
        let lifetime = self.cert_lifetime();
        match self
            .connectors
            .enroll(&registration, self.lifetimes(), lifetime)
        {
            Ok(e) => {
                tracing::info!(connector = %e.id, group = %e.group, host = %req.host_name, %peer, "connector registered");
                Reply {
                    error: None,
                    id: e.id,
                    group: e.group,
                    certificate: e.certificate,
                    ca: self.connectors.ca().cert_pem.clone(),
                    lifetime_secs: lifetime.as_secs(),
                }
            }
            Err(error) => {
                tracing::warn!(%peer, "connector registration refused: {error}");
                Reply {
                    error: Some(error),
                    ..Default::default()
                }
            }
        }
    }

    /// A fresh certificate for a registered, unrevoked connector.
    pub fn renew(&self, id: &str, csr: &str) -> Reply {
        let lifetime = self.cert_lifetime();
        let renewed = match self.tunnel_group(id) {
            Ok(_) => self.connectors.renew(id, csr, lifetime),
            Err(e) => Err(e),
        };
        match renewed {
            Ok(certificate) => {
                tracing::info!(connector = %id, "connector certificate renewed");
                Reply {
                    id: id.to_string(),
                    certificate,
                    ca: self.connectors.ca().cert_pem.clone(),
                    lifetime_secs: lifetime.as_secs(),
                    ..Default::default()
                }
            }
            Err(e) => Reply {
                error: Some(e),
                ..Default::default()
            },
        }
    }

    /// The group of connector `id`, or why it may not open a tunnel.
    pub fn tunnel_group(&self, id: &str) -> Result<String, String> {
        if self.tunnels.is_revoked(id) {
            return Err(format!("connector {id} is revoked"));
        }
        self.connectors.group(id)
    }

    /// Writes recent connector activity to the state directory now.
    pub fn flush_registry(&self) -> Result<(), store::StoreError> {
        self.connectors.flush()
    }

    /// Notes that connector `id` opened or closed a tunnel just now.
    pub fn connector_seen(&self, id: &str) {
        self.connectors.seen(id);
    }

    /// Revokes connector `id`: its tunnels close now and it can neither
    /// reconnect nor renew. `Ok(false)` when there is no such connector.
    pub fn revoke_connector(&self, id: &str) -> Result<bool, store::StoreError> {
        if !self.connectors.revoke(id)? {
            return Ok(false);
        }
        self.tunnels.revoke(id);
        tracing::info!(connector = %id, "connector revoked");
        Ok(true)
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
