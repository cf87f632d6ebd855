//! The immutable view of the app table that workers serve from.
//!
//! A [`Snapshot`] is built once from a validated configuration, with
//! everything the request path needs precomputed (router, per-app backend
//! TLS configs, internal authorities), and shared by `Arc`. A request keeps
//! the snapshot it started with; publishing a new one never blocks a worker.

use std::sync::Arc;

use postern_control::{App, EdgeConfig, EdgeSettings, Scheme};

use crate::route::Router;
use crate::tls::{self, TlsSetupError};

pub struct AppRuntime {
    pub app: App,
    /// Client TLS settings for https backends.
    pub backend_tls: Option<Arc<rustls::ClientConfig>>,
    pub hsts: Option<String>,
}

pub struct Snapshot {
    pub apps: Vec<AppRuntime>,
    pub router: Router,
    pub settings: EdgeSettings,
    /// Public port of the first https listener, for http→https redirects.
    pub https_port: Option<u16>,
}

impl Snapshot {
    pub fn build(cfg: &EdgeConfig) -> Result<Snapshot, TlsSetupError> {
        let mut apps = Vec::with_capacity(cfg.apps.len());
        for app in &cfg.apps {
            let backend_tls = match app.internal_url.scheme {
                Scheme::Https => Some(tls::backend_client_config(
                    app.validate_backend_tls,
                    app.backend_ca_file.as_deref(),
                )?),
                Scheme::Http => None,
            };
            apps.push(AppRuntime {
                backend_tls,
                hsts: app.hsts.as_ref().map(|h| h.header_value()),
                app: app.clone(),
            });
        }
        Ok(Snapshot {
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
