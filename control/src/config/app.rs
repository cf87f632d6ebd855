//! One app's settings, checked field by field. Every problem names the
//! app, the field and the reason; an app with any problem is left out of
//! the table (and the whole table is refused).

use super::validate::Validator;
use super::*;

/// One app under validation: where its problems go and how they are
/// labelled.
struct Check<'v, 'a> {
    v: &'v mut Validator<'a>,
    label: String,
}

impl Check<'_, '_> {
    fn p(&mut self, field: &str, msg: String) {
        self.v.problem(format!("{}: {field}: {msg}", self.label));
    }

    fn name(&mut self, name: &str) {
        if name.is_empty() || name.len() > 64 {
            self.p("name", "must be 1 to 64 characters".into());
        } else if !super::validate::valid_name(name) {
            self.p(
                "name",
                "may contain only letters, digits, `-`, `_` and `.`".into(),
            );
        }
    }

    fn url(&mut self, field: &str, text: &str) -> Option<AppUrl> {
        match url::parse_app_url(text, true) {
            Ok(u) => Some(u),
            Err(e) => {
                self.p(field, format!("`{text}` {e}"));
                None
            }
        }
    }

    /// The external URL must be served by a listener and stay out of the
    /// reserved suffixes.
    fn external(
        &mut self,
        text: &str,
        listeners: &[ListenerConfig],
        edge: &EdgeSettings,
    ) -> Option<AppUrl> {
        let ext = self.url("external_url", text)?;
        if !listeners
            .iter()
            .any(|l| l.scheme == ext.scheme && l.public_port == ext.port)
        {
            self.p(
                "external_url",
                format!(
                    "`{text}` is not served by any listener (no {} listener on public port {})",
                    ext.scheme, ext.port
                ),
            );
        }
        let host = match &ext.host {
            HostPattern::Exact(h) => h.as_str(),
            HostPattern::Wildcard(s) => &s[1..],
        };
        for suffix in &edge.reserved_suffixes {
            if host == suffix || host.ends_with(&format!(".{suffix}")) {
                self.p(
                    "external_url",
                    format!(
                        "host `{}` is under the reserved suffix `{suffix}`",
                        ext.host
                    ),
                );
            }
        }
        Some(ext)
    }

    fn internal_servers(&mut self, servers: &[String]) -> Vec<(String, u16)> {
        let mut out = Vec::new();
        for (i, s) in servers.iter().enumerate() {
            let field = format!("internal_servers[{i}]");
            match url::split_host_port(s) {
                Ok((h, Some(port))) => match url::parse_host(h, false) {
                    Ok(_) => out.push((h.to_ascii_lowercase(), port)),
                    Err(e) => self.p(&field, format!("`{s}`: {e}")),
                },
                Ok((_, None)) => self.p(&field, format!("`{s}` must be host:port")),
                Err(e) => self.p(&field, format!("`{s}`: {e}")),
            }
        }
        out
    }

    /// Where the app points: never the edge itself, and not link-local or
    /// metadata addresses unless the app says so.
    fn targets(
        &mut self,
        internal: Option<&AppUrl>,
        servers: &[(String, u16)],
        allow_link_local: bool,
        listeners: &[ListenerConfig],
        edge: &EdgeSettings,
    ) {
        let mut targets: Vec<(String, &str, u16)> = Vec::new();
        if let Some(u) = internal {
            if let HostPattern::Exact(h) = &u.host {
                targets.push(("internal_url".into(), h, u.port));
            }
        }
        for (i, (h, port)) in servers.iter().enumerate() {
            targets.push((format!("internal_servers[{i}]"), h, *port));
        }
        for (field, host, port) in targets {
            // Through a tunnel the connector resolves the host, on its own
            // machine; only a tunnel-less edge dials its own addresses.
            if edge.tunnel_address.is_none() {
                if let Some(what) = targets::edge_itself(host, port, listeners, edge) {
                    self.p(
                        &field,
                        format!(
                            "`{host}:{port}` is {what}; an app cannot point at the edge itself"
                        ),
                    );
                }
            }
            if !allow_link_local && targets::is_link_local(host) {
                self.p(
                    &field,
                    format!("`{host}` is a link-local or cloud-metadata address; set allow_link_local = true if the app really lives there"),
                );
            }
        }
    }

    /// A keyword setting: `value` (`default` when unset) must be one of
    /// `choices`; `None` (and a problem) otherwise.
    fn word<T: Copy>(
        &mut self,
        field: &str,
        value: Option<&str>,
        default: &str,
        choices: &[(&str, T)],
    ) -> Option<T> {
        let value = value.unwrap_or(default);
        if let Some((_, t)) = choices.iter().find(|(w, _)| *w == value) {
            return Some(*t);
        }
        let names: Vec<String> = choices.iter().map(|(w, _)| format!("`{w}`")).collect();
        let list = match names.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => names.join(""),
        };
        self.p(field, format!("`{value}` is not {list}"));
        None
    }

    fn sticky(&mut self, value: Option<&str>, have_servers: bool) -> Sticky {
        let sticky = self
            .word(
                "sticky",
                value,
                "none",
                &[("none", Sticky::None), ("cookie", Sticky::Cookie)],
            )
            .unwrap_or(Sticky::None);
        if sticky == Sticky::Cookie && !have_servers {
            self.p(
                "sticky",
                "`cookie` needs at least one entry in internal_servers to choose between".into(),
            );
        }
        sticky
    }

    fn protocol(&mut self, value: Option<&str>, internal: Option<&AppUrl>) -> InternalProtocol {
        let protocol = self
            .word(
                "internal_protocol",
                value,
                "http1",
                &[
                    ("http1", InternalProtocol::Http1),
                    ("h2", InternalProtocol::H2),
                    ("h2c", InternalProtocol::H2c),
                ],
            )
            .unwrap_or(InternalProtocol::Http1);
        match (protocol, internal.map(|u| u.scheme)) {
            (InternalProtocol::H2, Some(Scheme::Http)) => self.p(
                "internal_protocol",
                "`h2` needs an https internal_url (use `h2c` for cleartext)".into(),
            ),
            (InternalProtocol::H2c, Some(Scheme::Https)) => self.p(
                "internal_protocol",
                "`h2c` needs an http internal_url (use `h2` over https)".into(),
            ),

            _ => {}
        }
        protocol
    }

    fn preauth(&mut self, value: Option<&str>) -> Preauth {
        self.word(
            "preauth",
            value,
            "oidc",
            &[
                ("oidc", Preauth::Oidc),
                ("passthrough", Preauth::Passthrough),
            ],
        )
        .unwrap_or(Preauth::Passthrough)
    }

    /// The provider an `oidc` app signs in with: the one it names, or the
    /// only one configured.
    fn identity_provider(
        &mut self,
        named: Option<&str>,
        preauth: Preauth,
        providers: &[&str],
    ) -> Option<String> {
        match (preauth, named) {
            (Preauth::Passthrough, None) => None,
            (Preauth::Passthrough, Some(_)) => {
                self.p(
                    "identity_provider",
                    "only apps with preauth = \"oidc\" sign users in".into(),
                );
                None
            }
            (Preauth::Oidc, Some(n)) if providers.contains(&n) => Some(n.to_string()),
            (Preauth::Oidc, Some(n)) => {
                self.p(
                    "identity_provider",
                    format!(
                        "`{n}` is not configured (configured: {})",
                        if providers.is_empty() {
                            "none".to_string()
                        } else {
                            providers.join(", ")
                        }
                    ),
                );
                None
            }
            (Preauth::Oidc, None) => match providers {
                [only] => Some(only.to_string()),
                [] => {
                    self.p(
                        "preauth",
                        "`oidc` (the default) needs an [identity_provider] section; set preauth = \"passthrough\" to publish without pre-authentication".into(),
                    );
                    None
                }
                several => {
                    self.p(
                        "identity_provider",
                        format!(
                            "several providers are configured ({}); name the one this app uses",
                            several.join(", ")
                        ),
                    );
                    None
                }
            },
        }
    }

    fn connector_group(&mut self, group: Option<String>) -> String {
        let group = group.unwrap_or_else(|| "default".into());
        if !super::validate::valid_name(&group) {
            self.p(
                "connector_group",
                format!("`{group}` must be 1 to 64 letters, digits, `-`, `_` or `.`"),
            );
        }
        group
    }

    /// A WebSocket duration in seconds, `min..=max`.
    fn ws_secs(&mut self, field: &str, v: Option<u64>, default: u64, max: u64) -> Duration {
        let v = v.unwrap_or(default);
        if v == 0 || v > max {
            self.p(field, format!("{v} seconds is out of range (1..={max})"));
            return Duration::from_secs(default);
        }
        Duration::from_secs(v)
    }

    fn backend_timeout(&mut self, t: Option<raw::Timeout>) -> BackendTimeout {
        match t {
            None => BackendTimeout::Default,
            Some(raw::Timeout::Word(w)) => match w.as_str() {
                "default" => BackendTimeout::Default,
                "long" => BackendTimeout::Long,
                other => {
                    self.p(
                        "backend_timeout",
                        format!("`{other}` is not `default`, `long` or a number of seconds"),
                    );
                    BackendTimeout::Default
                }
            },
            Some(raw::Timeout::Seconds(s)) => {
                if s < 1 || s > MAX_BACKEND_TIMEOUT_SECS as i64 {
                    self.p(
                        "backend_timeout",
                        format!("{s} seconds is out of range (1..={MAX_BACKEND_TIMEOUT_SECS})"),
                    );
                    BackendTimeout::Default
                } else {
                    BackendTimeout::Seconds(s as u64)
                }
            }
        }
    }

    fn cookie(&mut self, rc: raw::Cookie, external: Option<&AppUrl>) -> CookieSettings {
        let same_site = self
            .word(
                "cookie.same_site",
                rc.same_site.as_deref(),
                "lax",
                &[
                    ("strict", SameSite::Strict),
                    ("lax", SameSite::Lax),
                    ("none", SameSite::None),
                ],
            )
            .unwrap_or(SameSite::Lax);
        // Secure by default wherever it can be: an app published over
        // plain http would never get its cookie back.
        let http = external.is_some_and(|e| e.scheme == Scheme::Http);
        let cookie = CookieSettings {
            http_only: rc.http_only.unwrap_or(true),
            secure: rc.secure.unwrap_or(!http),
            persistent: rc.persistent.unwrap_or(false),
            same_site,
        };
        if cookie.same_site == SameSite::None && !cookie.secure {
            self.p(
                "cookie.secure",
                "browsers refuse same_site = \"none\" cookies that are not secure".into(),
            );
        }
        if cookie.secure && http {
            self.p(
                "cookie.secure",
                "a secure cookie is never sent over an http external_url; set cookie.secure = false or publish over https".into(),
            );
        }
        cookie
    }

    fn hsts(&mut self, h: Option<raw::HstsSetting>) -> Option<Hsts> {
        let hsts = match h {
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
                self.p(
                    "hsts.preload",
                    "preload lists require include_subdomains = true and max_age of at least 31536000".into(),
                );
            }
        }
        hsts
    }

    /// The home page must be on the app's own external host and path.
    fn homepage(&mut self, home: &str, ext: &AppUrl, external_url: &str) {
        let base = home
            .split(['?', '#'])
            .next()
            .unwrap_or("")
            .trim_end_matches('/');
        match url::parse_app_url(&format!("{base}/"), true) {
            Ok(h)
                if h.scheme == ext.scheme
                    && h.port == ext.port
                    && match &h.host {
                        HostPattern::Exact(name) => ext.host.matches(name),
                        wild => *wild == ext.host,
                    } =>
            {
                if !h.path.starts_with(&ext.path) {
                    self.p(
                        "homepage_url",
                        format!("`{home}` is outside the app's external_url `{external_url}`"),
                    );
                }
            }
            Ok(_) => self.p(
                "homepage_url",
                format!("`{home}` must be on the app's own external host `{external_url}`"),
            ),
            Err(e) => self.p("homepage_url", format!("`{home}` {e}")),
        }
    }

    fn cidrs(&mut self, field: &str, list: &[String]) -> Vec<Cidr> {
        let mut out = Vec::new();
        for (i, c) in list.iter().enumerate() {
            match parse_cidr(c) {
                Some(cidr) => out.push(cidr),
                None => self.p(
                    &format!("{field}[{i}]"),
                    format!("`{c}` is not an address/prefix such as 10.0.0.0/8"),
                ),
            }
        }
        out
    }

    fn access(&mut self, ra: raw::Access, preauth: Preauth) -> Access {
        let source_cidrs = self.cidrs("access.source_cidrs", &ra.source_cidrs);
        for (i, d) in ra.email_domains.iter().enumerate() {
            if url::parse_host(d, false).is_err() {
                self.p(
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
        let access_set = !access.users.is_empty()
            || !access.email_domains.is_empty()
            || !access.groups.is_empty()
            || !access.claims.is_empty()
            || access.require_mfa;
        if access_set && preauth == Preauth::Passthrough {
            self.p(
                "access",
                "user, group, claim and MFA rules need preauth = \"oidc\"; only source_cidrs applies to passthrough apps".into(),
            );
        }
        access
    }

    fn sso(&mut self, rs: raw::Sso, preauth: Preauth) -> Sso {
        let sso = Sso {
            headers: rs.headers.unwrap_or(false),
            assertion: rs.assertion.unwrap_or(false),
            user_claim: rs.user_claim.unwrap_or_else(|| "preferred_username".into()),
            email_claim: rs.email_claim.unwrap_or_else(|| "email".into()),
            groups_claim: rs.groups_claim.unwrap_or_else(|| "groups".into()),
        };
        if (sso.headers || sso.assertion) && preauth == Preauth::Passthrough {
            self.p(
                "sso",
                "single sign-on needs a signed-in user; it cannot be used with preauth = \"passthrough\"".into(),
            );
        }
        sso
    }
}

impl Validator<'_> {
    /// Validates app `index`; `None` (with the problems recorded) when
    /// anything is wrong with it.
    pub(super) fn app(
        &mut self,
        index: usize,
        a: raw::App,
        listeners: &[ListenerConfig],
        edge: &EdgeSettings,
        providers: &[&str],
    ) -> Option<App> {
        let before = self.problems.len();
        let label = if a.name.is_empty() {
            format!("app[{index}]")
        } else {
            format!("app \"{}\"", a.name)
        };
        let mut c = Check { v: self, label };
        c.name(&a.name);
        let external = c.external(&a.external_url, listeners, edge);
        let internal = c.url("internal_url", &a.internal_url);
        if let (Some(int), Some(ext)) = (&internal, &external) {
            if int.host.is_wildcard() && !ext.host.is_wildcard() {
                c.p(
                    "internal_url",
                    "a wildcard internal host needs a wildcard external_url".into(),
                );
            }
        }
        let internal_servers = c.internal_servers(&a.internal_servers);
        let allow_link_local = a.allow_link_local.unwrap_or(false);
        c.targets(
            internal.as_ref(),
            &internal_servers,
            allow_link_local,
            listeners,
            edge,
        );
        let sticky = c.sticky(a.sticky.as_deref(), !a.internal_servers.is_empty());
        let internal_protocol = c.protocol(a.internal_protocol.as_deref(), internal.as_ref());
        if internal_protocol != InternalProtocol::Http1 && !a.internal_servers.is_empty() {
            c.p(
                "internal_servers",
                "not available with HTTP/2 backends yet; an h2 or h2c app has one server (its internal_url)".into(),
            );
        }
        let preauth = c.preauth(a.preauth.as_deref());
        let identity_provider =
            c.identity_provider(a.identity_provider.as_deref(), preauth, providers);
        let connector_group = c.connector_group(a.connector_group);
        let backend_timeout = c.backend_timeout(a.backend_timeout);
        let websocket_idle_timeout = c.ws_secs(
            "websocket_idle_timeout",
            a.websocket_idle_timeout,
            600,
            7 * 86400,
        );
        let websocket_timeout =
            c.ws_secs("websocket_timeout", a.websocket_timeout, 86400, 30 * 86400);
        let cookie = c.cookie(a.cookie.unwrap_or_default(), external.as_ref());
        let hsts = c.hsts(a.hsts);
        if let (Some(home), Some(ext)) = (&a.homepage_url, &external) {
            c.homepage(home, ext, &a.external_url);
        }
        let access = c.access(a.access.unwrap_or_default(), preauth);
        let sso = c.sso(a.sso.unwrap_or_default(), preauth);
        let trusted_forwarded_for = c.cidrs("trusted_forwarded_for", &a.trusted_forwarded_for);
        let cors_preflight = c
            .word(
                "cors_preflight",
                a.cors_preflight.as_deref(),
                "deny",
                &[
                    ("deny", CorsPreflight::Deny),
                    ("allow", CorsPreflight::Allow),
                ],
            )
            .unwrap_or(CorsPreflight::Deny);
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
            identity_provider,
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
            websocket_idle_timeout,
            websocket_timeout,
            enabled: a.enabled.unwrap_or(true),
            trusted_forwarded_for,
            allow_link_local,
            allow_encoded_slash: a.allow_encoded_slash.unwrap_or(false),
        })
    }
}
