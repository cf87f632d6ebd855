//! Routing: (listener scheme, host without port, longest path prefix) → app.
//!
//! Built once per app-table snapshot. Exact hosts live in one hash map;
//! wildcards in another keyed by suffix, and a lookup walks the host's
//! parent domains from the longest, so the most specific wildcard wins and
//! an exact host always beats any wildcard. Each host keeps its apps sorted
//! by path length, longest first, so the first prefix that matches is the
//! longest.
#![deny(clippy::disallowed_methods)]

use std::collections::HashMap;

use postern_control::{App, HostPattern, Scheme};

/// Index of an app in the snapshot's app list.
pub type AppId = usize;

#[derive(Debug, Default)]
struct HostRoutes {
    /// (path prefix, app), longest prefix first.
    paths: Vec<(String, AppId)>,
}

#[derive(Debug, Default)]
struct SchemeRoutes {
    exact: HashMap<String, HostRoutes>,
    /// Keyed by the suffix after `*` (".example.com").
    wildcard: HashMap<String, HostRoutes>,
}

#[derive(Debug, Default)]
pub struct Router {
    http: SchemeRoutes,
    https: SchemeRoutes,
}

/// What a lookup found.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    App(AppId),
    /// The path is an app's prefix without its trailing slash.
    AddSlash(AppId),
    NotFound,
}

impl Router {
    pub fn new(apps: &[App]) -> Router {
        let mut r = Router::default();
        for (id, app) in apps.iter().enumerate() {
            let table = match app.external_url.scheme {
                Scheme::Http => &mut r.http,
                Scheme::Https => &mut r.https,
            };
            let routes = match &app.external_url.host {
                HostPattern::Exact(h) => table.exact.entry(h.clone()).or_default(),
                HostPattern::Wildcard(s) => table.wildcard.entry(s.clone()).or_default(),
            };
            routes.paths.push((app.external_url.path.clone(), id));
        }
        for t in [&mut r.http, &mut r.https] {
            for routes in t.exact.values_mut().chain(t.wildcard.values_mut()) {
                routes
                    .paths
                    .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.0.cmp(&b.0)));
            }
        }
        r
    }

    /// Finds the app for `host` (lower-case, no port) and `path` (may carry
    /// a query).
    pub fn lookup(&self, scheme: Scheme, host: &str, path: &[u8]) -> Route {
        let table = match scheme {
            Scheme::Http => &self.http,
            Scheme::Https => &self.https,
        };
        let path = path.split(|&b| b == b'?').next().unwrap_or(b"/");
        if let Some(routes) = table.exact.get(host) {
            if let Some(r) = routes.find(path) {
                return r;
            }
        }
        if !table.wildcard.is_empty() {
            let mut rest = host;
            while let Some(dot) = rest.find('.') {
                let suffix = &rest[dot..];
                if let Some(routes) = table.wildcard.get(suffix) {
                    if let Some(r) = routes.find(path) {
                        return r;
                    }
                }
                rest = &rest[dot + 1..];
            }
        }
        Route::NotFound
    }
}

impl HostRoutes {
    fn find(&self, path: &[u8]) -> Option<Route> {
        // Longest first: `/api` is a redirect to `/api/` even when `/` is
        // also published on the host.
        for (prefix, id) in &self.paths {
            if path.starts_with(prefix.as_bytes()) {
                return Some(Route::App(*id));
            }
            if prefix.len() > 1 && path == &prefix.as_bytes()[..prefix.len() - 1] {
                return Some(Route::AddSlash(*id));
            }
        }
        None
    }
}

/// `host[:port]` of the internal URL for a request, the port written only
/// when it is not the scheme's default.
pub fn internal_authority(app: &App, internal_host: &str) -> String {
    let int = &app.internal_url;
    if int.port == int.scheme.default_port() {
        internal_host.to_string()
    } else {
        format!("{internal_host}:{}", int.port)
    }
}

/// The internal host for a request: the internal URL's host, with a
/// wildcard's `*` replaced by what the external wildcard matched.
pub fn internal_host(app: &App, external_host: &str) -> String {
    match (&app.internal_url.host, &app.external_url.host) {
        (HostPattern::Exact(h), _) => h.clone(),
        (HostPattern::Wildcard(int_suffix), HostPattern::Wildcard(ext_suffix)) => {
            let label = external_host
                .strip_suffix(ext_suffix.as_str())
                .unwrap_or(external_host);
            format!("{label}{int_suffix}")
        }
        (HostPattern::Wildcard(s), HostPattern::Exact(_)) => s.trim_start_matches('.').to_string(),
    }
}

#[cfg(test)]
mod tests;
