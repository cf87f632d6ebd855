//! The edge configuration file: TOML in, a validated [`EdgeConfig`] out.
//!
//! Two layers keep the rules readable. `raw` mirrors the file with serde
//! (`deny_unknown_fields` everywhere, so a typo is an error rather than a
//! silently ignored setting); [`validate`] turns it into typed settings and
//! collects *every* problem, each naming the app, the field and the reason.
//! Every setting of the product's app table parses and validates here, even
//! those whose behaviour lands in later releases, so a file written today
//! keeps working.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::url::{self, AppUrl, HostPattern, Scheme};

mod app;
pub mod raw;
pub mod targets;
mod validate;

use validate::Validator;

/// One app as an operator writes it (TOML table or JSON object).
pub use raw::App as AppSpec;

/// Default backend timeout (seconds), as users of Entra application proxy know it.
pub const DEFAULT_BACKEND_TIMEOUT: Duration = Duration::from_secs(85);
/// The `long` backend timeout.
pub const LONG_BACKEND_TIMEOUT: Duration = Duration::from_secs(180);
/// The largest explicit backend timeout.
pub const MAX_BACKEND_TIMEOUT_SECS: u64 = 3600;

/// How long a request body may take before its average rate is held to
/// `min_body_rate`.
pub const BODY_RATE_GRACE: Duration = Duration::from_secs(10);

/// A validated edge configuration.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    pub edge: EdgeSettings,
    pub listeners: Vec<ListenerConfig>,
    pub certificates: Vec<CertificateFiles>,
    pub identity_providers: Vec<IdentityProvider>,
    pub apps: Vec<App>,
    /// The apps as written, in the same order as `apps`.
    pub app_specs: Vec<AppSpec>,
    /// Relative paths in app specs resolve against this directory.
    pub base_dir: PathBuf,
}

impl EdgeConfig {
    /// Validates a new app table against this edge's listeners, identity
    /// provider and reserved suffixes; on success the returned
    /// configuration serves exactly `specs`.
    pub fn with_apps(&self, specs: Vec<AppSpec>) -> Result<EdgeConfig, Vec<String>> {
        let mut v = Validator {
            problems: Vec::new(),
            base_dir: &self.base_dir,
        };
        let providers: Vec<&str> = self
            .identity_providers
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        let apps = v.apps(&specs, &self.listeners, &self.edge, &providers);
        if !v.problems.is_empty() {
            return Err(v.problems);
        }
        Ok(EdgeConfig {
            apps,
            app_specs: specs,
            ..self.clone()
        })
    }
}

/// Edge-wide settings (`[edge]`).
#[derive(Debug, Clone)]
pub struct EdgeSettings {
    /// Worker threads; `None` means one per CPU.
    pub workers: Option<NonZeroUsize>,
    /// Pin worker N to CPU N (modulo the CPU count).
    pub pin_workers: bool,
    pub state_dir: Option<PathBuf>,
    /// Host suffixes no app may publish under.
    pub reserved_suffixes: Vec<String>,
    pub tls_handshake_timeout: Duration,
    /// Time a client has to send a complete request head.
    pub request_header_timeout: Duration,
    /// How long an idle keep-alive client connection is kept.
    pub keepalive_timeout: Duration,
    /// Longest a single write to a client may wait for it to read.
    pub client_send_timeout: Duration,
    /// Time to establish a TCP (and TLS) connection to a backend.
    pub backend_connect_timeout: Duration,
    /// Idle upstream connections kept per backend and worker.
    pub upstream_pool_size: usize,
    /// Where the admin API listens (never a public listener's address).
    pub admin_address: SocketAddr,
    /// Where `/metrics` alone is served without the admin token, for a
    /// local scraper (never a public listener's address).
    pub metrics_address: Option<SocketAddr>,
    /// Access log: `stdout`, `stderr`, `off` or a file path.
    pub access_log: String,
    /// Access log lines as JSON objects instead of text.
    pub access_log_json: bool,
    /// When connectors count as inactive, and are removed.
    pub connector_lifetimes: crate::registry::Lifetimes,
    /// Where connectors dial in. When set, every app is relayed through a
    /// connector of its group; when not, the edge proxies straight to
    /// internal URLs (an edge that sits inside the private network).
    pub tunnel_address: Option<SocketAddr>,
    /// Lifetime of the client certificates issued to connectors; they
    /// renew at two thirds of it.
    pub connector_cert_lifetime: Duration,
    /// Client connections the edge holds at most (all listeners, all
    /// workers); `None`: derived from the file-descriptor limit at start.
    pub max_connections: Option<usize>,
    /// Client connections one source address holds at most.
    pub max_connections_per_source: usize,
    /// Tunnel streams (requests relayed to connectors at once) one source
    /// address holds at most, so one client cannot take the tunnels;
    /// `None`: half the streams the open tunnels can carry.
    pub max_tunnel_streams_per_source: Option<usize>,
    /// Bytes per second a request body must average once it has had
    /// [`BODY_RATE_GRACE`]; 0: no minimum.
    pub min_body_rate: u64,
    /// Bytes per second a client must read, averaged over the time the
    /// edge spends writing to it, once past a 10 s grace; 0: no minimum.
    pub min_send_rate: u64,
    /// Link translation stops a compressed response whose decoded body
    /// grows past this many bytes (the decompression-bomb guard).
    pub translate_max_decoded_size: u64,
    /// Longest a sign-in lasts (a session also ends when its id_token
    /// expires, unless the provider's refresh token renews it).
    pub session_lifetime: Duration,
    /// How often the session-cookie key rotates (the last three open
    /// cookies).
    pub session_key_rotation: Duration,
    /// HTTP/2 towards clients.
    pub http2: Http2Settings,
    /// On SIGTERM, the longest requests in flight get to finish.
    pub drain_timeout: Duration,
}

/// HTTP/2 towards clients (`http2*` in `[edge]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Settings {
    /// Offer `h2` by ALPN on the https listeners.
    pub enabled: bool,
    /// Streams one client connection may have open at once.
    pub max_concurrent_streams: u32,
    /// Largest request header list (decoded, as HTTP/2 counts it).
    pub max_header_list_size: u32,
    /// Flow-control window of each request stream, bytes.
    pub stream_window: u32,
    /// Flow-control window of the whole connection, bytes.
    pub connection_window: u32,
}

impl Default for Http2Settings {
    fn default() -> Http2Settings {
        Http2Settings {
            enabled: true,
            max_concurrent_streams: 100,
            max_header_list_size: 64 * 1024,
            stream_window: 1024 * 1024,
            connection_window: 4 * 1024 * 1024,
        }
    }
}

/// A public listener (`[[listener]]`).
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub address: SocketAddr,
    pub scheme: Scheme,
    /// The port clients use (differs from the bound port behind NAT).
    pub public_port: u16,
    /// An `http` listener that also takes HTTP/2 with prior knowledge.
    pub h2c: bool,
}

/// A certificate and its key (`[[certificate]]`).
#[derive(Debug, Clone)]
pub struct CertificateFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Names to serve it for; empty means the certificate's own DNS names.
    pub names: Vec<String>,
}

/// An OpenID provider for `preauth = "oidc"` apps.
#[derive(Debug, Clone)]
pub struct IdentityProvider {
    /// What apps call it by (`default` when there is one unnamed).
    pub name: String,
    pub issuer: String,
    pub client_id: String,
    pub client_auth: ClientAuth,
    pub scopes: Vec<String>,
    /// Allowed clock difference with the provider, seconds.
    pub clock_skew: u64,
    /// Trust anchors for the provider's TLS, instead of the system's.
    pub ca_file: Option<PathBuf>,
}

/// How the edge proves itself at the provider's token endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// A public client: PKCE only.
    None,
    /// `client_secret_basic`, the secret read from this file.
    SecretFile(PathBuf),
    /// `private_key_jwt`, signed with the key in this file (PEM).
    PrivateKeyJwt(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sticky {
    None,
    Cookie,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InternalProtocol {
    Http1,
    H2,
    H2c,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preauth {
    Oidc,
    Passthrough,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CorsPreflight {
    Deny,
    Allow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

/// How long the edge waits for a backend, as written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendTimeout {
    Default,
    Long,
    Seconds(u64),
}

impl BackendTimeout {
    pub fn duration(self) -> Duration {
        match self {
            BackendTimeout::Default => DEFAULT_BACKEND_TIMEOUT,
            BackendTimeout::Long => LONG_BACKEND_TIMEOUT,
            BackendTimeout::Seconds(s) => Duration::from_secs(s),
        }
    }
}

/// Pre-auth session cookie flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieSettings {
    pub http_only: bool,
    pub secure: bool,
    pub persistent: bool,
    pub same_site: SameSite,
}

/// `Strict-Transport-Security` added by the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hsts {
    pub max_age: u64,
    pub include_subdomains: bool,
    pub preload: bool,
}

impl Hsts {
    /// The header value.
    pub fn header_value(&self) -> String {
        let mut v = format!("max-age={}", self.max_age);
        if self.include_subdomains {
            v.push_str("; includeSubDomains");
        }
        if self.preload {
            v.push_str("; preload");
        }
        v
    }
}

/// An IPv4 or IPv6 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: std::net::IpAddr,
    pub prefix: u8,
}

/// Who may use an app once signed in (empty lists mean anyone signed in).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Access {
    pub users: Vec<String>,
    pub email_domains: Vec<String>,
    pub groups: Vec<String>,
    pub claims: BTreeMap<String, String>,
    pub require_mfa: bool,
    pub source_cidrs: Vec<Cidr>,
}

/// Single sign-on towards the backend.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sso {
    pub headers: bool,
    pub assertion: bool,
    pub user_claim: String,
    pub email_claim: String,
    pub groups_claim: String,
}

/// One published application.
#[derive(Debug, Clone)]
pub struct App {
    pub name: String,
    pub external_url: AppUrl,
    pub internal_url: AppUrl,
    pub internal_servers: Vec<(String, u16)>,
    pub sticky: Sticky,
    pub internal_protocol: InternalProtocol,
    pub preauth: Preauth,
    /// The identity provider an `oidc` app signs users in with.
    pub identity_provider: Option<String>,
    pub connector_group: String,
    pub backend_timeout: BackendTimeout,
    pub translate_headers: bool,
    pub translate_body: bool,
    pub validate_backend_tls: bool,
    pub backend_ca_file: Option<PathBuf>,
    pub cookie: CookieSettings,
    pub hsts: Option<Hsts>,
    pub homepage_url: Option<String>,
    pub access: Access,
    pub sso: Sso,
    pub cors_preflight: CorsPreflight,
    pub websocket: bool,
    /// A WebSocket with no frame either way for this long is closed.
    pub websocket_idle_timeout: Duration,
    /// The longest a WebSocket stays open.
    pub websocket_timeout: Duration,
    pub enabled: bool,
    /// Front proxies whose `X-Forwarded-For` chain is kept (and appended
    /// to); from anyone else the edge starts the chain afresh.
    pub trusted_forwarded_for: Vec<Cidr>,
    /// May point at link-local and cloud-metadata addresses.
    pub allow_link_local: bool,
    /// `%2F` may appear in this app's paths (kept encoded, never a
    /// separator).
    pub allow_encoded_slash: bool,
}

/// Everything wrong with a configuration, one line per problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Where the configuration came from (a file path or `<input>`).
    pub source_name: String,
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: invalid configuration", self.source_name)?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Reads and validates a configuration file. Relative paths inside it
/// (certificates, CA files, state directory) are resolved against the
/// file's directory.
pub fn load_file(path: &Path) -> Result<EdgeConfig, ConfigError> {
    let name = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| ConfigError {
        source_name: name.clone(),
        problems: vec![format!("cannot read the file: {e}")],
    })?;
    // A config file is small; refuse something that is clearly not one
    // rather than reading gigabytes into memory.
    if meta.len() > 16 * 1024 * 1024 {
        return Err(ConfigError {
            source_name: name,
            problems: vec![format!("file is {} bytes; the limit is 16 MiB", meta.len())],
        });
    }
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        source_name: name.clone(),
        problems: vec![format!("cannot read the file: {e}")],
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse_str(&text, &name, base)
}

/// Parses and validates configuration text.
pub fn parse_str(
    text: &str,
    source_name: &str,
    base_dir: &Path,
) -> Result<EdgeConfig, ConfigError> {
    let raw: raw::File = toml::from_str(text).map_err(|e| ConfigError {
        source_name: source_name.to_string(),
        problems: vec![e.to_string().trim_end().to_string()],
    })?;
    let mut v = Validator {
        problems: Vec::new(),
        base_dir,
    };
    let cfg = v.file(raw);
    if v.problems.is_empty() {
        Ok(cfg)
    } else {
        Err(ConfigError {
            source_name: source_name.to_string(),
            problems: v.problems,
        })
    }
}

impl Cidr {
    /// Whether `ip` is inside this network (IPv4-mapped IPv6 addresses
    /// count as their IPv4 address).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - self.prefix as u32).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - self.prefix as u32).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Whether `ip` is inside any of `nets`.
pub fn any_contains(nets: &[Cidr], ip: std::net::IpAddr) -> bool {
    nets.iter().any(|n| n.contains(ip))
}

/// Parses `10.0.0.0/8`, `2001:db8::/32` or a bare address (a host route).
pub fn parse_cidr(s: &str) -> Option<Cidr> {
    let (addr, prefix) = match s.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (s, None),
    };
    let addr: std::net::IpAddr = addr.parse().ok()?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    let prefix = match prefix {
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) && p.len() <= 3 => {
            p.parse::<u8>().ok()?
        }
        Some(_) => return None,
        None => max,
    };
    (prefix <= max).then_some(Cidr { addr, prefix })
}

#[cfg(test)]
mod tests;
