//! Postern's control crate: everything that decides *what* the edge serves,
//! with no sockets and no async runtime.
//!
//! The data plane asks this crate for an [`EdgeConfig`]: a fully validated,
//! typed view of the operator's TOML file. Parsing is done once, here, so the
//! request path never sees a string it has to interpret again (durations are
//! `Duration`s, URLs are split into scheme, host pattern, port and path).
//! Every validation error names the app, the field and the reason, because an
//! operator reading `postern check-config` output should never have to guess.

#![forbid(unsafe_code)]

pub mod ca;
pub mod config;
pub mod connectors;
pub mod counters;
pub mod enroll;
pub mod jwt;
pub mod oidc;
pub mod policy;
pub mod registry;
pub mod session;
pub mod store;
pub mod tables;
pub mod url;

pub use config::{
    load_file, parse_str, App, AppSpec, BackendTimeout, ConfigError, CookieSettings, CorsPreflight,
    EdgeConfig, EdgeSettings, Hsts, InternalProtocol, ListenerConfig, Preauth, SameSite, Sticky,
};
pub use url::{HostPattern, Scheme, UrlError};
