//! The immutable view of the app table that workers serve from.
//!
//! A [`Snapshot`] is built once from a validated configuration, with
//! everything the request path needs precomputed (router, per-app backend
//! TLS configs), and shared by `Arc`. A request keeps the snapshot it
//! started with; publishing a new one never blocks a worker.
//!
//! [`Published`] is how a new snapshot reaches the workers: the control
//! side swaps the `Arc` under a mutex and then bumps a version number;
//! each worker compares that number (a plain atomic load of a cache line
//! nobody writes on the request path) before each request and takes the
//! mutex only when it changed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use postern_control::{App, EdgeConfig, EdgeSettings, Scheme};

use crate::route::Router;
use crate::tls::{self, TlsSetupError};
use crate::translate::Table;

pub struct AppRuntime {
    pub app: App,
    /// Client TLS settings for https backends.
    pub backend_tls: Option<Arc<rustls::ClientConfig>>,
    pub hsts: Option<String>,
    /// The app's forwarding settings as tunnel metadata headers, built
    /// once per snapshot and shared by every request.
    pub tunnel_meta: Vec<(http::HeaderName, http::HeaderValue)>,
}

pub struct Snapshot {
    /// Version of the app table this snapshot serves.
    pub version: u64,
    pub apps: Vec<AppRuntime>,
    pub router: Router,
    pub settings: EdgeSettings,
    /// Public port of the first https listener, for http→https redirects.
    pub https_port: Option<u16>,
    /// Link translation: internal URLs of every app → external URLs.
    pub links: Table,
    /// External URLs → internal, for request headers.
    pub links_reverse: Table,
}

impl Snapshot {
    pub fn build(cfg: &EdgeConfig, version: u64) -> Result<Snapshot, TlsSetupError> {
        let mut apps = Vec::with_capacity(cfg.apps.len());
        for app in &cfg.apps {
            let backend_tls = match app.internal_url.scheme {
                Scheme::Https => Some(tls::backend_client_config(
                    app.validate_backend_tls,
                    app.backend_ca_file.as_deref(),
                )?),
                Scheme::Http => None,
            };
            // An HTTP/2 backend is asked for `h2` by ALPN, nothing else.
            let backend_tls = match (backend_tls, app.internal_protocol) {
                (Some(cfg), postern_control::InternalProtocol::H2) => {
                    let mut h2 = (*cfg).clone();
                    h2.alpn_protocols = vec![tls::ALPN_H2.to_vec()];
                    Some(Arc::new(h2))
                }
                (other, _) => other,
            };
            let backend_ca_header = match (&app.backend_ca_file, app.internal_url.scheme) {
                (Some(path), Scheme::Https) => Some(crate::tunnel::pem_to_header(
                    &std::fs::read_to_string(path)
                        .map_err(|e| TlsSetupError::Config(format!("{}: {e}", path.display())))?,
                )),
                _ => None,
            };
            apps.push(AppRuntime {
                tunnel_meta: crate::tunnel::app_metadata(app, backend_ca_header.as_deref())
                    .map_err(|e| TlsSetupError::Config(format!("app \"{}\": {e}", app.name)))?,
                backend_tls,
                hsts: app.hsts.as_ref().map(|h| h.header_value()),
                app: app.clone(),
            });
        }
        Ok(Snapshot {
            version,
            links: Table::new(&cfg.apps),
            links_reverse: Table::reverse(&cfg.apps),
            router: Router::new(&cfg.apps),
            apps,
            settings: cfg.edge.clone(),
            https_port: cfg
                .listeners
                .iter()
                .find(|l| l.scheme == Scheme::Https)
                .map(|l| l.public_port),
        })
    }
}

/// The latest snapshot, shared between the control side and all workers.
pub struct Published {
    version: AtomicU64,
    current: Mutex<Arc<Snapshot>>,
}

impl Published {
    pub fn new(first: Arc<Snapshot>) -> Arc<Published> {
        Arc::new(Published {
            version: AtomicU64::new(first.version),
            current: Mutex::new(first),
        })
    }

    /// Makes `snapshot` the one new requests start with.
    pub fn publish(&self, snapshot: Arc<Snapshot>) {
        let version = snapshot.version;
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = snapshot;
        self.version.store(version, Ordering::Release);
    }

    /// The current version number (cheap; no lock).
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// The current snapshot (takes the lock; call when the version changed).
    pub fn current(&self) -> Arc<Snapshot> {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}
