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

pub mod raw;
pub mod targets;

/// One app as an operator writes it (TOML table or JSON object).
pub use raw::App as AppSpec;

/// Default backend timeout (seconds), as users of Entra application proxy know it.
pub const DEFAULT_BACKEND_TIMEOUT: Duration = Duration::from_secs(85);
/// The `long` backend timeout.
pub const LONG_BACKEND_TIMEOUT: Duration = Duration::from_secs(180);
/// The largest explicit backend timeout.
pub const MAX_BACKEND_TIMEOUT_SECS: u64 = 3600;

/// A validated edge configuration.
#[derive(Debug, Clone)]
pub struct EdgeConfig {
    pub edge: EdgeSettings,
    pub listeners: Vec<ListenerConfig>,
    pub certificates: Vec<CertificateFiles>,
    pub identity_provider: Option<IdentityProvider>,
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
        let apps = v.apps(
            &specs,
            &self.listeners,
            &self.edge,
            self.identity_provider.is_some(),
        );
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
    /// Link translation stops a compressed response whose decoded body
    /// grows past this many bytes (the decompression-bomb guard).
    pub translate_max_decoded_size: u64,
}

/// A public listener (`[[listener]]`).
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    pub address: SocketAddr,
    pub scheme: Scheme,
    /// The port clients use (differs from the bound port behind NAT).
    pub public_port: u16,
}

/// A certificate and its key (`[[certificate]]`).
#[derive(Debug, Clone)]
pub struct CertificateFiles {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    /// Names to serve it for; empty means the certificate's own DNS names.
    pub names: Vec<String>,
}

/// The OpenID provider used for `preauth = "oidc"` apps.
#[derive(Debug, Clone)]
pub struct IdentityProvider {
    pub issuer: String,
    pub client_id: String,
    pub client_secret_file: Option<PathBuf>,
    pub scopes: Vec<String>,
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
    pub enabled: bool,
    /// Front proxies whose `X-Forwarded-For` chain is kept (and appended
    /// to); from anyone else the edge starts the chain afresh.
    pub trusted_forwarded_for: Vec<Cidr>,
    /// May point at link-local and cloud-metadata addresses.
    pub allow_link_local: bool,
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

struct Validator<'a> {
    problems: Vec<String>,
    base_dir: &'a Path,
}

impl Validator<'_> {
    fn problem(&mut self, msg: String) {
        self.problems.push(msg);
    }

    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.base_dir.join(p)
        }
    }

    fn secs(&mut self, field: &str, value: u64, max: u64) -> Duration {
        if value == 0 || value > max {
            self.problem(format!(
                "edge.{field}: {value} is out of range (1..={max} seconds)"
            ));
        }
        Duration::from_secs(value)
    }

    fn file(&mut self, raw: raw::File) -> EdgeConfig {
        let e = raw.edge.unwrap_or_default();
        let workers = match e.workers {
            Some(0) => {
                self.problem("edge.workers: must be at least 1 (omit it for one per CPU)".into());
                None
            }
            Some(n) if n > 1024 => {
                self.problem(format!("edge.workers: {n} is more than the limit of 1024"));
                None
            }
            Some(n) => NonZeroUsize::new(n),
            None => None,
        };
        let mut reserved_suffixes = Vec::new();
        for (i, s) in e.reserved_suffixes.iter().enumerate() {
            let s = s.trim_start_matches('.').to_ascii_lowercase();
            match url::parse_host(&s, false) {
                Ok(_) => reserved_suffixes.push(s),
                Err(err) => self.problem(format!("edge.reserved_suffixes[{i}]: {err}")),
            }
        }
        let edge = EdgeSettings {
            workers,
            pin_workers: e.pin_workers.unwrap_or(true),
            state_dir: e.state_dir.as_deref().map(|p| self.path(p)),
            reserved_suffixes,
            tls_handshake_timeout: self.secs(
                "tls_handshake_timeout",
                e.tls_handshake_timeout.unwrap_or(10),
                300,
            ),
            request_header_timeout: self.secs(
                "request_header_timeout",
                e.request_header_timeout.unwrap_or(30),
                300,
            ),
            keepalive_timeout: self.secs(
                "keepalive_timeout",
                e.keepalive_timeout.unwrap_or(75),
                3600,
            ),
            client_send_timeout: self.secs(
                "client_send_timeout",
                e.client_send_timeout.unwrap_or(60),
                3600,
            ),
            backend_connect_timeout: self.secs(
                "backend_connect_timeout",
                e.backend_connect_timeout.unwrap_or(10),
                300,
            ),
            upstream_pool_size: e.upstream_pool_size.unwrap_or(64),
            connector_lifetimes: crate::registry::Lifetimes {
                inactive_after: self.secs(
                    "connector_inactive_after",
                    e.connector_inactive_after.unwrap_or(300),
                    30 * 24 * 3600,
                ),
                removed_after: self.secs(
                    "connector_removed_after",
                    e.connector_removed_after.unwrap_or(10 * 24 * 3600),
                    365 * 24 * 3600,
                ),
            },
            access_log: match e.access_log.as_deref() {
                None => "stdout".to_string(),
                Some(p @ ("stdout" | "stderr" | "off")) => p.to_string(),
                Some(path) => self.path(path).display().to_string(),
            },
            access_log_json: match e.access_log_format.as_deref().unwrap_or("text") {
                "text" => false,
                "json" => true,
                other => {
                    self.problem(format!(
                        "edge.access_log_format: `{other}` is not `text` or `json`"
                    ));
                    false
                }
            },
            tunnel_address: match e.tunnel_address.as_deref().map(str::parse::<SocketAddr>) {
                None => None,
                Some(Ok(a)) => Some(a),
                Some(Err(_)) => {
                    self.problem(format!(
                        "edge.tunnel_address: `{}` is not an IP:port address",
                        e.tunnel_address.as_deref().unwrap_or_default()
                    ));
                    None
                }
            },
            connector_cert_lifetime: {
                let secs = e.connector_cert_lifetime.unwrap_or(30 * 24 * 3600);
                if secs < 60 {
                    self.problem(format!(
                        "edge.connector_cert_lifetime: {secs} s is too short (at least 60)"
                    ));
                }
                self.secs("connector_cert_lifetime", secs, 365 * 24 * 3600)
            },
            translate_max_decoded_size: {
                let mib = e.translate_max_decoded_mib.unwrap_or(64);
                if !(1..=4096).contains(&mib) {
                    self.problem(format!(
                        "edge.translate_max_decoded_mib: {mib} is outside 1..=4096"
                    ));
                }
                mib.clamp(1, 4096) << 20
            },
            admin_address: match e
                .admin_address
                .as_deref()
                .unwrap_or("127.0.0.1:9090")
                .parse()
            {
                Ok(a) => a,
                Err(_) => {
                    self.problem(format!(
                        "edge.admin_address: `{}` is not an IP:port address",
                        e.admin_address.as_deref().unwrap_or_default()
                    ));
                    SocketAddr::from(([127, 0, 0, 1], 9090))
                }
            },
        };
        if edge.admin_address.ip().is_unspecified() {
            admin_everywhere(&mut self.problems, &edge.admin_address);
        }
        if edge.upstream_pool_size > 100_000 {
            self.problem("edge.upstream_pool_size: more than 100000 idle connections".into());
        }

        let mut listeners = Vec::new();
        for (i, l) in raw.listener.into_iter().enumerate() {
            let address = match l.address.parse::<SocketAddr>() {
                Ok(a) => a,
                Err(_) => {
                    self.problem(format!(
                        "listener[{i}].address: `{}` is not an IP:port address",
                        l.address
                    ));
                    continue;
                }
            };
            let scheme = match l.scheme.as_str() {
                "https" => Scheme::Https,
                "http" => Scheme::Http,
                other => {
                    self.problem(format!(
                        "listener[{i}].scheme: `{other}` is not `https` or `http`"
                    ));
                    continue;
                }
            };
            let public_port = l.public_port.unwrap_or(address.port());
            if public_port == 0 {
                self.problem(format!(
                    "listener[{i}].public_port: must be set when binding port 0"
                ));
            }
            listeners.push(ListenerConfig {
                address,
                scheme,
                public_port,
            });
        }
        if listeners.is_empty() {
            self.problem("listener: at least one [[listener]] is needed".into());
        }
        if let Some(t) = edge.tunnel_address {
            let clash = |a: SocketAddr| {
                a.port() == t.port()
                    && (a.ip() == t.ip() || a.ip().is_unspecified() || t.ip().is_unspecified())
            };
            if clash(edge.admin_address) {
                self.problem(format!(
                    "edge.tunnel_address: {t} overlaps the admin address {}",
                    edge.admin_address
                ));
            }
            for l in listeners.iter().filter(|l| clash(l.address)) {
                self.problem(format!(
                    "edge.tunnel_address: {t} overlaps the public listener {}; connectors need a listener of their own",
                    l.address
                ));
            }
        }
        let mut seen = HashSet::new();
        for l in &listeners {
            if !seen.insert(l.address) {
                self.problem(format!("listener: address {} is listed twice", l.address));
            }
            if l.address.port() == edge.admin_address.port()
                && (l.address.ip() == edge.admin_address.ip()
                    || l.address.ip().is_unspecified()
                    || edge.admin_address.ip().is_unspecified())
            {
                self.problem(format!(
                    "edge.admin_address: {} overlaps the public listener {}; the admin API is never served on a public listener",
                    edge.admin_address, l.address
                ));
            }
        }

        let certificates: Vec<CertificateFiles> = raw
            .certificate
            .into_iter()
            .map(|c| CertificateFiles {
                cert_file: self.path(&c.cert_file),
                key_file: self.path(&c.key_file),
                names: c.names.iter().map(|n| n.to_ascii_lowercase()).collect(),
            })
            .collect();
        if listeners.iter().any(|l| l.scheme == Scheme::Https) && certificates.is_empty() {
            self.problem(
                "certificate: an https listener needs at least one [[certificate]]".into(),
            );
        }

        let identity_provider = raw.identity_provider.map(|p| IdentityProvider {
            issuer: p.issuer,
            client_id: p.client_id,
            client_secret_file: p.client_secret_file.as_deref().map(|f| self.path(f)),
            scopes: p
                .scopes
                .unwrap_or_else(|| vec!["openid".into(), "email".into(), "profile".into()]),
        });
        if let Some(p) = &identity_provider {
            if !p.issuer.starts_with("https://") && !p.issuer.starts_with("http://") {
                self.problem(format!(
                    "identity_provider.issuer: `{}` is not an http(s) URL",
                    p.issuer
                ));
            }
            if p.client_id.is_empty() {
                self.problem("identity_provider.client_id: must not be empty".into());
            }
        }

        let apps = self.apps(&raw.app, &listeners, &edge, identity_provider.is_some());
        EdgeConfig {
            edge,
            listeners,
            certificates,
            identity_provider,
            apps,
            app_specs: raw.app,
            base_dir: self.base_dir.to_path_buf(),
        }
    }

    fn apps(
        &mut self,
        specs: &[AppSpec],
        listeners: &[ListenerConfig],
        edge: &EdgeSettings,
        have_idp: bool,
    ) -> Vec<App> {
        let mut apps = Vec::new();
        for (i, a) in specs.iter().enumerate() {
            if let Some(app) = self.app(i, a.clone(), listeners, edge, have_idp) {
                apps.push(app);
            }
        }
        self.cross_app(&apps);
        apps
    }

    fn app(
        &mut self,
        index: usize,
        a: raw::App,
        listeners: &[ListenerConfig],
        edge: &EdgeSettings,
        have_idp: bool,
    ) -> Option<App> {
        let before = self.problems.len();
        let label = if a.name.is_empty() {
            format!("app[{index}]")
        } else {
            format!("app \"{}\"", a.name)
        };
        let mut p = |field: &str, msg: String| self_problem(&mut self.problems, &label, field, msg);

        if a.name.is_empty() || a.name.len() > 64 {
            p("name", "must be 1 to 64 characters".into());
        } else if !a
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            p(
                "name",
                "may contain only letters, digits, `-`, `_` and `.`".into(),
            );
        }

        let external = match url::parse_app_url(&a.external_url, true) {
            Ok(u) => Some(u),
            Err(e) => {
                p("external_url", format!("`{}` {e}", a.external_url));
                None
            }
        };
        if let Some(ext) = &external {
            if !listeners
                .iter()
                .any(|l| l.scheme == ext.scheme && l.public_port == ext.port)
            {
                p(
                    "external_url",
                    format!(
                        "`{}` is not served by any listener (no {} listener on public port {})",
                        a.external_url, ext.scheme, ext.port
                    ),
                );
            }
            let host = match &ext.host {
                HostPattern::Exact(h) => h.as_str(),
                HostPattern::Wildcard(s) => &s[1..],
            };
            for suffix in &edge.reserved_suffixes {
                if host == suffix || host.ends_with(&format!(".{suffix}")) {
                    p(
                        "external_url",
                        format!(
                            "host `{}` is under the reserved suffix `{suffix}`",
                            ext.host
                        ),
                    );
                }
            }
        }

        let internal = match url::parse_app_url(&a.internal_url, true) {
            Ok(u) => Some(u),
            Err(e) => {
                p("internal_url", format!("`{}` {e}", a.internal_url));
                None
            }
        };
        if let (Some(int), Some(ext)) = (&internal, &external) {
            if int.host.is_wildcard() && !ext.host.is_wildcard() {
                p(
                    "internal_url",
                    "a wildcard internal host needs a wildcard external_url".into(),
                );
            }
        }

        let mut internal_servers = Vec::new();
        for (i, s) in a.internal_servers.iter().enumerate() {
            match url::split_host_port(s) {
                Ok((h, Some(port))) => match url::parse_host(h, false) {
                    Ok(_) => internal_servers.push((h.to_ascii_lowercase(), port)),
                    Err(e) => p(&format!("internal_servers[{i}]"), format!("`{s}`: {e}")),
                },
                Ok((_, None)) => p(
                    &format!("internal_servers[{i}]"),
                    format!("`{s}` must be host:port"),
                ),
                Err(e) => p(&format!("internal_servers[{i}]"), format!("`{s}`: {e}")),
            }
        }

        // Where the app points: never the edge itself, and not link-local
        // or metadata addresses unless the app says so.
        let allow_link_local = a.allow_link_local.unwrap_or(false);
        let mut targets: Vec<(String, String, u16)> = Vec::new();
        if let Some(HostPattern::Exact(h)) = internal.as_ref().map(|u| &u.host) {
            let port = internal.as_ref().map_or(0, |u| u.port);
            targets.push(("internal_url".into(), h.clone(), port));
        }
        for (i, (h, port)) in internal_servers.iter().enumerate() {
            targets.push((format!("internal_servers[{i}]"), h.clone(), *port));
        }
        for (field, host, port) in &targets {
            // Through a tunnel the connector resolves the host, on its own
            // machine; only a tunnel-less edge dials its own addresses.
            if edge.tunnel_address.is_none() {
                if let Some(what) = targets::edge_itself(host, *port, listeners, edge) {
                    p(
                        field,
                        format!(
                            "`{host}:{port}` is {what}; an app cannot point at the edge itself"
                        ),
                    );
                }
            }
            if !allow_link_local && targets::is_link_local(host) {
                p(
                    field,
                    format!("`{host}` is a link-local or cloud-metadata address; set allow_link_local = true if the app really lives there"),
                );
            }
        }

        let sticky = match a.sticky.as_deref().unwrap_or("none") {
            "none" => Sticky::None,
            "cookie" => Sticky::Cookie,
            other => {
                p("sticky", format!("`{other}` is not `none` or `cookie`"));
                Sticky::None
            }
        };
        if sticky == Sticky::Cookie && a.internal_servers.is_empty() {
            p(
                "sticky",
                "`cookie` needs at least one entry in internal_servers to choose between".into(),
            );
        }
        let internal_protocol = match a.internal_protocol.as_deref().unwrap_or("http1") {
            "http1" => InternalProtocol::Http1,
            "h2" => InternalProtocol::H2,
            "h2c" => InternalProtocol::H2c,
            other => {
                p(
                    "internal_protocol",
                    format!("`{other}` is not `http1`, `h2` or `h2c`"),
                );
                InternalProtocol::Http1
            }
        };
        if let Some(int) = &internal {
            match (internal_protocol, int.scheme) {
                (InternalProtocol::H2, Scheme::Http) => p(
                    "internal_protocol",
                    "`h2` needs an https internal_url (use `h2c` for cleartext)".into(),
                ),
                (InternalProtocol::H2c, Scheme::Https) => p(
                    "internal_protocol",
                    "`h2c` needs an http internal_url (use `h2` over https)".into(),
                ),
                _ => {}
            }
        }
        let preauth = match a.preauth.as_deref().unwrap_or("oidc") {
            "oidc" => Preauth::Oidc,
            "passthrough" => Preauth::Passthrough,
            other => {
                p(
                    "preauth",
                    format!("`{other}` is not `oidc` or `passthrough`"),
                );
                Preauth::Passthrough
            }
        };
        if preauth == Preauth::Oidc && !have_idp {
            p(
                "preauth",
                "`oidc` (the default) needs an [identity_provider] section; set preauth = \"passthrough\" to publish without pre-authentication".into(),
            );
        }
        let connector_group = a.connector_group.unwrap_or_else(|| "default".into());
        if connector_group.is_empty()
            || connector_group.len() > 64
            || !connector_group
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        {
            p(
                "connector_group",
                format!("`{connector_group}` must be 1 to 64 letters, digits, `-`, `_` or `.`"),
            );
        }
        let backend_timeout = match a.backend_timeout {
            None => BackendTimeout::Default,
            Some(raw::Timeout::Word(w)) => match w.as_str() {
                "default" => BackendTimeout::Default,
                "long" => BackendTimeout::Long,
                other => {
                    p(
                        "backend_timeout",
                        format!("`{other}` is not `default`, `long` or a number of seconds"),
                    );
                    BackendTimeout::Default
                }
            },
            Some(raw::Timeout::Seconds(s)) => {
                if s < 1 || s > MAX_BACKEND_TIMEOUT_SECS as i64 {
                    p(
                        "backend_timeout",
                        format!("{s} seconds is out of range (1..={MAX_BACKEND_TIMEOUT_SECS})"),
                    );
                    BackendTimeout::Default
                } else {
                    BackendTimeout::Seconds(s as u64)
                }
            }
        };

        let rc = a.cookie.unwrap_or_default();
        let same_site = match rc.same_site.as_deref().unwrap_or("lax") {
            "lax" => SameSite::Lax,
            "strict" => SameSite::Strict,
            "none" => SameSite::None,
            other => {
                p(
                    "cookie.same_site",
                    format!("`{other}` is not `strict`, `lax` or `none`"),
                );
                SameSite::Lax
            }
        };
        let cookie = CookieSettings {
            http_only: rc.http_only.unwrap_or(true),
            secure: rc.secure.unwrap_or(true),
            persistent: rc.persistent.unwrap_or(false),
            same_site,
        };
        if cookie.same_site == SameSite::None && !cookie.secure {
            p(
                "cookie.secure",
                "browsers refuse same_site = \"none\" cookies that are not secure".into(),
            );
        }
        if cookie.secure && external.as_ref().is_some_and(|e| e.scheme == Scheme::Http) {
            p(
                "cookie.secure",
                "a secure cookie is never sent over an http external_url; set cookie.secure = false or publish over https".into(),
            );
        }

        let hsts = match a.hsts {
            None | Some(raw::HstsSetting::Switch(false)) => None,
            Some(raw::HstsSetting::Switch(true)) => Some(Hsts {
                max_age: 31_536_000,
                include_subdomains: false,
                preload: false,
            }),
            Some(raw::HstsSetting::Table(t)) => Some(Hsts {
                max_age: t.max_age.unwrap_or(31_536_000),
                include_subdomains: t.include_subdomains.unwrap_or(false),
                preload: t.preload.unwrap_or(false),
            }),
        };
        if let Some(h) = &hsts {
            if h.preload && (!h.include_subdomains || h.max_age < 31_536_000) {
                p(
                    "hsts.preload",
                    "preload lists require include_subdomains = true and max_age of at least 31536000".into(),
                );
            }
        }

        if let (Some(home), Some(ext)) = (&a.homepage_url, &external) {
            match url::parse_app_url(
                &format!(
                    "{}/",
                    home.split(['?', '#'])
                        .next()
                        .unwrap_or("")
                        .trim_end_matches('/')
                ),
                true,
            ) {
                Ok(h)
                    if h.scheme == ext.scheme
                        && h.port == ext.port
                        && match &h.host {
                            HostPattern::Exact(name) => ext.host.matches(name),
                            wild => *wild == ext.host,
                        } =>
                {
                    if !h.path.starts_with(&ext.path) {
                        p(
                            "homepage_url",
                            format!(
                                "`{home}` is outside the app's external_url `{}`",
                                a.external_url
                            ),
                        );
                    }
                }
                Ok(_) => p(
                    "homepage_url",
                    format!(
                        "`{home}` must be on the app's own external host `{}`",
                        a.external_url
                    ),
                ),
                Err(e) => p("homepage_url", format!("`{home}` {e}")),
            }
        }

        let ra = a.access.unwrap_or_default();
        let mut source_cidrs = Vec::new();
        for (i, c) in ra.source_cidrs.iter().enumerate() {
            match parse_cidr(c) {
                Some(cidr) => source_cidrs.push(cidr),
                None => p(
                    &format!("access.source_cidrs[{i}]"),
                    format!("`{c}` is not an address/prefix such as 10.0.0.0/8"),
                ),
            }
        }
        for (i, d) in ra.email_domains.iter().enumerate() {
            if url::parse_host(d, false).is_err() {
                p(
                    &format!("access.email_domains[{i}]"),
                    format!("`{d}` is not a domain name"),
                );
            }
        }
        let access = Access {
            users: ra.users,
            email_domains: ra
                .email_domains
                .iter()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
            groups: ra.groups,
            claims: ra.claims,
            require_mfa: ra.require_mfa.unwrap_or(false),
            source_cidrs,
        };
        let rs = a.sso.unwrap_or_default();
        let sso = Sso {
            headers: rs.headers.unwrap_or(false),
            assertion: rs.assertion.unwrap_or(false),
            user_claim: rs.user_claim.unwrap_or_else(|| "preferred_username".into()),
            email_claim: rs.email_claim.unwrap_or_else(|| "email".into()),
            groups_claim: rs.groups_claim.unwrap_or_else(|| "groups".into()),
        };
        if (sso.headers || sso.assertion) && preauth == Preauth::Passthrough {
            p(
                "sso",
                "single sign-on needs a signed-in user; it cannot be used with preauth = \"passthrough\"".into(),
            );
        }
        let access_set = !access.users.is_empty()
            || !access.email_domains.is_empty()
            || !access.groups.is_empty()
            || !access.claims.is_empty()
            || access.require_mfa;
        if access_set && preauth == Preauth::Passthrough {
            p(
                "access",
                "user, group, claim and MFA rules need preauth = \"oidc\"; only source_cidrs applies to passthrough apps".into(),
            );
        }
        let mut trusted_forwarded_for = Vec::new();
        for (i, c) in a.trusted_forwarded_for.iter().enumerate() {
            match parse_cidr(c) {
                Some(cidr) => trusted_forwarded_for.push(cidr),
                None => p(
                    &format!("trusted_forwarded_for[{i}]"),
                    format!("`{c}` is not an address/prefix such as 10.0.0.0/8"),
                ),
            }
        }
        let cors_preflight = match a.cors_preflight.as_deref().unwrap_or("deny") {
            "deny" => CorsPreflight::Deny,
            "allow" => CorsPreflight::Allow,
            other => {
                p(
                    "cors_preflight",
                    format!("`{other}` is not `deny` or `allow`"),
                );
                CorsPreflight::Deny
            }
        };
        let backend_ca_file = a.backend_ca_file.as_deref().map(|f| self.path(f));

        if self.problems.len() != before {
            return None;
        }
        Some(App {
            name: a.name,
            external_url: external?,
            internal_url: internal?,
            internal_servers,
            sticky,
            internal_protocol,
            preauth,
            connector_group,
            backend_timeout,
            translate_headers: a.translate_headers.unwrap_or(true),
            translate_body: a.translate_body.unwrap_or(false),
            validate_backend_tls: a.validate_backend_tls.unwrap_or(true),
            backend_ca_file,
            cookie,
            hsts,
            homepage_url: a.homepage_url,
            access,
            sso,
            cors_preflight,
            websocket: a.websocket.unwrap_or(true),
            enabled: a.enabled.unwrap_or(true),
            trusted_forwarded_for,
            allow_link_local,
        })
    }

    /// Rules between apps: unique names and unique (scheme, host, path).
    fn cross_app(&mut self, apps: &[App]) {
        let mut names = HashSet::new();
        let mut routes = std::collections::HashMap::new();
        for a in apps {
            if !names.insert(a.name.as_str()) {
                self.problem(format!(
                    "app \"{}\": name: used by more than one app",
                    a.name
                ));
            }
            let key = (
                a.external_url.scheme,
                a.external_url.host.clone(),
                a.external_url.path.clone(),
            );
            if let Some(other) = routes.insert(key, a.name.as_str()) {
                self.problem(format!(
                    "app \"{}\": external_url: `{}` is already published by app \"{other}\"",
                    a.name, a.external_url
                ));
            }
        }
    }
}

/// The admin API on every interface is refused: it must be reachable only
/// where the operator chose (loopback, or one management address).
fn admin_everywhere(problems: &mut Vec<String>, addr: &SocketAddr) {
    problems.push(format!(
        "edge.admin_address: {addr} listens on every interface; give a loopback or management address"
    ));
}

fn self_problem(problems: &mut Vec<String>, label: &str, field: &str, msg: String) {
    problems.push(format!("{label}: {field}: {msg}"));
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
