//! The edge-wide half of validation: `[edge]` settings, listeners,
//! certificates and the identity provider, then every app (see `app`)
//! and the rules between apps.

use super::*;

pub(super) struct Validator<'a> {
    pub(super) problems: Vec<String>,
    pub(super) base_dir: &'a Path,
}

impl Validator<'_> {
    pub(super) fn problem(&mut self, msg: String) {
        self.problems.push(msg);
    }

    pub(super) fn path(&self, p: &str) -> PathBuf {
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

    /// An `IP:port` setting of `[edge]`, if set and valid.
    fn address(&mut self, field: &str, value: Option<&str>) -> Option<SocketAddr> {
        let value = value?;
        match value.parse() {
            Ok(a) => Some(a),
            Err(_) => {
                self.problem(format!("edge.{field}: `{value}` is not an IP:port address"));
                None
            }
        }
    }

    fn cert_lifetime(&mut self, secs: Option<u64>) -> Duration {
        let secs = secs.unwrap_or(30 * 24 * 3600);
        self.at_least("connector_cert_lifetime", secs, 60, 365 * 24 * 3600)
    }

    /// A duration setting with a floor as well as a ceiling.
    fn at_least(&mut self, field: &str, secs: u64, min: u64, max: u64) -> Duration {
        if secs < min {
            self.problem(format!(
                "edge.{field}: {secs} s is too short (at least {min})"
            ));
        }
        self.secs(field, secs, max)
    }

    /// An integer setting of `[edge]` within `min..=max`.
    fn ranged(&mut self, field: &str, value: Option<u64>, default: u64, min: u64, max: u64) -> u64 {
        let v = value.unwrap_or(default);
        if !(min..=max).contains(&v) {
            self.problem(format!("edge.{field}: {v} is outside {min}..={max}"));
            return default;
        }
        v
    }

    /// `http2*`: HTTP/2 towards clients.
    fn http2(&mut self, e: &raw::Edge) -> crate::config::Http2Settings {
        let d = crate::config::Http2Settings::default();
        let mut h = crate::config::Http2Settings {
            enabled: e.http2.unwrap_or(d.enabled),
            max_concurrent_streams: self.ranged(
                "http2_max_concurrent_streams",
                e.http2_max_concurrent_streams,
                d.max_concurrent_streams.into(),
                1,
                10_000,
            ) as u32,
            max_header_list_size: self.ranged(
                "http2_max_header_list_size",
                e.http2_max_header_list_size,
                d.max_header_list_size.into(),
                4096,
                1024 * 1024,
            ) as u32,
            // RFC 9113: windows are 65,535 to 2^31-1 bytes.
            stream_window: self.ranged(
                "http2_stream_window",
                e.http2_stream_window,
                d.stream_window.into(),
                65_535,
                (1 << 31) - 1,
            ) as u32,
            connection_window: self.ranged(
                "http2_connection_window",
                e.http2_connection_window,
                d.connection_window.into(),
                65_535,
                (1 << 31) - 1,
            ) as u32,
        };
        if h.connection_window < h.stream_window {
            self.problem(format!(
                "edge.http2_connection_window: {} is smaller than http2_stream_window ({}); one stream could then stall the connection",
                h.connection_window, h.stream_window
            ));
            h.connection_window = h.stream_window;
        }
        h
    }

    /// The largest decoded body link translation takes on, in bytes.
    fn decoded_limit(&mut self, mib: Option<u64>) -> u64 {
        let mib = mib.unwrap_or(64);
        if !(1..=4096).contains(&mib) {
            self.problem(format!(
                "edge.translate_max_decoded_mib: {mib} is outside 1..=4096"
            ));
        }
        mib.clamp(1, 4096) << 20
    }

    pub(super) fn file(&mut self, raw: raw::File) -> EdgeConfig {
        let edge = self.edge(raw.edge.unwrap_or_default());
        let listeners = self.listeners(raw.listener, &edge);
        let certificates = self.certificates(raw.certificate, &listeners);
        let identity_providers = self.identity_providers(raw.identity_provider);
        let names: Vec<&str> = identity_providers.iter().map(|p| p.name.as_str()).collect();
        let apps = self.apps(&raw.app, &listeners, &edge, &names);
        EdgeConfig {
            edge,
            listeners,
            certificates,
            identity_providers,
            apps,
            app_specs: raw.app,
            base_dir: self.base_dir.to_path_buf(),
        }
    }

    fn edge(&mut self, e: raw::Edge) -> EdgeSettings {
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
                Some(p @ ("stdout" | "stderr" | "off" | "journald")) => p.to_string(),
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
            tunnel_address: self.address("tunnel_address", e.tunnel_address.as_deref()),
            connector_cert_lifetime: self.cert_lifetime(e.connector_cert_lifetime),
            translate_max_decoded_size: self.decoded_limit(e.translate_max_decoded_mib),
            session_lifetime: self.at_least(
                "session_lifetime",
                e.session_lifetime.unwrap_or(12 * 3600),
                60,
                30 * 24 * 3600,
            ),
            session_key_rotation: self.at_least(
                "session_key_rotation",
                e.session_key_rotation.unwrap_or(24 * 3600),
                60,
                365 * 24 * 3600,
            ),
            http2: self.http2(&e),
            drain_timeout: self.secs("drain_timeout", e.drain_timeout.unwrap_or(30), 3600),
            max_connections: e.max_connections,
            max_connections_per_source: e.max_connections_per_source.unwrap_or(1024),
            max_tunnel_streams_per_source: e.max_tunnel_streams_per_source,
            min_body_rate: e.min_body_rate.unwrap_or(1024),
            min_send_rate: e.min_send_rate.unwrap_or(1024),
            admin_address: self
                .address("admin_address", e.admin_address.as_deref())
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9090))),
            metrics_address: self.address("metrics_address", e.metrics_address.as_deref()),
        };
        if edge.admin_address.ip().is_unspecified() {
            admin_everywhere(&mut self.problems, &edge.admin_address);
        }
        if edge.max_connections == Some(0) || edge.max_connections.is_some_and(|n| n > 10_000_000) {
            self.problem("edge.max_connections: must be 1 to 10000000 (omit it to follow the file-descriptor limit)".into());
        }
        if edge.max_connections_per_source == 0 || edge.max_connections_per_source > 10_000_000 {
            self.problem("edge.max_connections_per_source: must be 1 to 10000000".into());
        }
        if edge
            .max_tunnel_streams_per_source
            .is_some_and(|n| n == 0 || n > 1_000_000)
        {
            self.problem("edge.max_tunnel_streams_per_source: must be 1 to 1000000".into());
        }
        if edge.upstream_pool_size > 100_000 {
            self.problem("edge.upstream_pool_size: more than 100000 idle connections".into());
        }
        edge
    }

    fn listeners(&mut self, raw: Vec<raw::Listener>, edge: &EdgeSettings) -> Vec<ListenerConfig> {
        let mut listeners = Vec::new();
        for (i, l) in raw.into_iter().enumerate() {
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
            let h2c = l.h2c.unwrap_or(false);
            if h2c && scheme == Scheme::Https {
                self.problem(format!(
                    "listener[{i}].h2c: only an `http` listener takes cleartext HTTP/2; https listeners offer HTTP/2 by ALPN (edge.http2)"
                ));
            }
            listeners.push(ListenerConfig {
                address,
                scheme,
                public_port,
                h2c,
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
        if let Some(m) = edge.metrics_address {
            let overlaps = |a: SocketAddr| {
                a.port() == m.port()
                    && (a.ip() == m.ip() || a.ip().is_unspecified() || m.ip().is_unspecified())
            };
            let mut others: Vec<(String, SocketAddr)> =
                vec![("the admin address".into(), edge.admin_address)];
            others.extend(
                edge.tunnel_address
                    .map(|t| ("the tunnel listener".into(), t)),
            );
            others.extend(
                listeners
                    .iter()
                    .map(|l| ("the public listener".to_string(), l.address)),
            );
            for (what, a) in others.into_iter().filter(|(_, a)| overlaps(*a)) {
                self.problem(format!(
                    "edge.metrics_address: {m} overlaps {what} {a}; metrics get a listener of their own"
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
        listeners
    }

    fn certificates(
        &mut self,
        raw: Vec<raw::Certificate>,
        listeners: &[ListenerConfig],
    ) -> Vec<CertificateFiles> {
        let certificates: Vec<CertificateFiles> = raw
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
        certificates
    }

    /// Longest allowed clock skew, seconds.
    const MAX_CLOCK_SKEW: u64 = 600;

    fn identity_providers(&mut self, raw: Vec<raw::IdentityProvider>) -> Vec<IdentityProvider> {
        let mut out: Vec<IdentityProvider> = Vec::new();
        for (i, p) in raw.into_iter().enumerate() {
            let name = p.name.clone().unwrap_or_else(|| "default".into());
            let label = format!("identity_provider \"{name}\"");
            if !valid_name(&name) {
                self.problem(format!(
                    "identity_provider[{i}].name: `{name}` must be 1–64 of letters, digits, `-`, `_`, `.`"
                ));
            }
            if out.iter().any(|o| o.name == name) {
                self.problem(format!(
                    "{label}: a second provider with this name (name each one)"
                ));
            }
            if !p.issuer.starts_with("https://") && !p.issuer.starts_with("http://") {
                self.problem(format!(
                    "{label}.issuer: `{}` is not an http(s) URL",
                    p.issuer
                ));
            }
            if p.client_id.is_empty() {
                self.problem(format!("{label}.client_id: must not be empty"));
            }
            let client_auth = match (&p.client_secret_file, &p.private_key_file) {
                (Some(_), Some(_)) => {
                    self.problem(format!(
                        "{label}: client_secret_file and private_key_file are exclusive; set one"
                    ));
                    ClientAuth::None
                }
                (Some(f), None) => ClientAuth::SecretFile(self.path(f)),
                (None, Some(f)) => ClientAuth::PrivateKeyJwt(self.path(f)),
                (None, None) => ClientAuth::None,
            };
            let clock_skew = p.clock_skew.unwrap_or(60);
            if clock_skew > Self::MAX_CLOCK_SKEW {
                self.problem(format!(
                    "{label}.clock_skew: {clock_skew} is out of range (0..={} seconds)",
                    Self::MAX_CLOCK_SKEW
                ));
            }
            out.push(IdentityProvider {
                name,
                issuer: p.issuer,
                client_id: p.client_id,
                client_auth,
                scopes: p
                    .scopes
                    .unwrap_or_else(|| vec!["openid".into(), "email".into(), "profile".into()]),
                clock_skew,
                ca_file: p.ca_file.as_deref().map(|f| self.path(f)),
            });
        }
        out
    }

    pub(super) fn apps(
        &mut self,
        specs: &[AppSpec],
        listeners: &[ListenerConfig],
        edge: &EdgeSettings,
        providers: &[&str],
    ) -> Vec<App> {
        let mut apps = Vec::new();
        for (i, a) in specs.iter().enumerate() {
            if let Some(app) = self.app(i, a.clone(), listeners, edge, providers) {
                apps.push(app);
            }
        }
        self.cross_app(&apps);
        apps
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

/// Names of apps, connector groups and identity providers: 1 to 64
/// letters, digits, `-`, `_` or `.`.
pub(super) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}
