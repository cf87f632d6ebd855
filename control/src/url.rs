//! URL grammar for published applications.
//!
//! Postern accepts a deliberately small URL language: `scheme://host[:port]/path/`.
//! External URLs may use a wildcard host (`*.example.com`); internal URLs may
//! too, but only when the external URL is a wildcard (the `*` maps to the
//! same label). User-info, queries and fragments are refused rather than
//! ignored, because a silently dropped part of a URL is a routing surprise.

use std::fmt;

/// The scheme of a listener or a URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A host name, either exact (`app.example.com`) or a wildcard over one
/// leftmost label (`*.example.com`, stored as the suffix `.example.com`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HostPattern {
    Exact(String),
    Wildcard(String),
}

impl HostPattern {
    pub fn is_wildcard(&self) -> bool {
        matches!(self, HostPattern::Wildcard(_))
    }

    /// Whether `host` (lower-case, no port) is covered by this pattern. A
    /// wildcard covers exactly one extra label, as in certificate matching.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h == host,
            HostPattern::Wildcard(suffix) => wildcard_label(suffix, host).is_some(),
        }
    }

    /// For a wildcard pattern, the label `*` stood for in `host`.
    pub fn captured_label<'a>(&self, host: &'a str) -> Option<&'a str> {
        match self {
            HostPattern::Exact(_) => None,
            HostPattern::Wildcard(suffix) => wildcard_label(suffix, host),
        }
    }
}

fn wildcard_label<'a>(suffix: &str, host: &'a str) -> Option<&'a str> {
    let label = host.strip_suffix(suffix)?;
    (!label.is_empty() && !label.contains('.')).then_some(label)
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Wildcard(s) => write!(f, "*{s}"),
        }
    }
}

/// A parsed `scheme://host[:port]/path/` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppUrl {
    pub scheme: Scheme,
    pub host: HostPattern,
    /// The port, explicit or the scheme's default.
    pub port: u16,
    /// Whether the port was written in the URL.
    pub explicit_port: bool,
    /// Always starts and ends with `/`.
    pub path: String,
}

impl AppUrl {
    /// `host[:port]` as a client would write it in a Host header.
    pub fn authority(&self) -> String {
        if self.explicit_port && self.port != self.scheme.default_port() {
            format!("{}:{}", self.host, self.port)
        } else {
            self.host.to_string()
        }
    }
}

impl fmt::Display for AppUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority(), self.path)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("must start with http:// or https://")]
    Scheme,
    #[error("must not contain user-info (`user@`)")]
    UserInfo,
    #[error("must not contain a query (`?`)")]
    Query,
    #[error("must not contain a fragment (`#`)")]
    Fragment,
    #[error("has no host")]
    EmptyHost,
    #[error("host `{0}` is not a valid DNS name or IP address")]
    BadHost(String),
    #[error("wildcard `*` is only allowed as the whole leftmost label (`*.example.com`)")]
    BadWildcard,
    #[error("wildcard hosts are not allowed here")]
    WildcardNotAllowed,
    #[error("port `{0}` is not a number between 1 and 65535")]
    BadPort(String),
    #[error("must have a path that ends in `/` (add a trailing slash)")]
    NoTrailingSlash,
    #[error("path contains `{0}`, which is not allowed in a published path")]
    BadPath(char),
}

/// Parses `scheme://host[:port]/path/`.
pub fn parse_app_url(input: &str, allow_wildcard: bool) -> Result<AppUrl, UrlError> {
    let lower_prefix = input.get(..8).unwrap_or(input).to_ascii_lowercase();
    let (scheme, rest) = if lower_prefix.starts_with("https://") {
        (Scheme::Https, &input[8..])
    } else if lower_prefix.starts_with("http://") {
        (Scheme::Http, &input[7..])
    } else {
        return Err(UrlError::Scheme);
    };
    if rest.contains('#') {
        return Err(UrlError::Fragment);
    }
    if rest.contains('?') {
        return Err(UrlError::Query);
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err(UrlError::UserInfo);
    }
    let (host, port) = split_host_port(authority)?;
    let host = parse_host(host, allow_wildcard)?;
    let explicit_port = port.is_some();
    let port = port.unwrap_or(scheme.default_port());
    if !path.ends_with('/') {
        return Err(UrlError::NoTrailingSlash);
    }
    if let Some(c) = path
        .chars()
        .find(|c| c.is_ascii_control() || *c == ' ' || *c == '\\' || *c == '*')
    {
        return Err(UrlError::BadPath(c));
    }
    Ok(AppUrl {
        scheme,
        host,
        port,
        explicit_port,
        path: path.to_string(),
    })
}

/// Splits `host[:port]` (IPv6 literals in brackets).
pub fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), UrlError> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']').ok_or(UrlError::BadHost(authority.into()))?;
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(UrlError::BadHost(authority.into())),
        };
        (&authority[..end + 2], port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0 && !p.to_string().is_empty())
                .filter(|_| p.bytes().all(|b| b.is_ascii_digit()))
                .ok_or_else(|| UrlError::BadPort(p.into()))?,
        ),
        None => None,
    };
    Ok((host, port))
}

/// Validates and lower-cases a host name or IP literal.
pub fn parse_host(host: &str, allow_wildcard: bool) -> Result<HostPattern, UrlError> {
    if host.is_empty() {
        return Err(UrlError::EmptyHost);
    }
    let host = host.to_ascii_lowercase();
    if host.starts_with('[') {
        let inner = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .ok_or_else(|| UrlError::BadHost(host.clone()))?;
        return inner
            .parse::<std::net::Ipv6Addr>()
            .map(|_| HostPattern::Exact(host.clone()))
            .map_err(|_| UrlError::BadHost(host.clone()));
    }
    if let Some(suffix) = host.strip_prefix('*') {
        if !allow_wildcard {
            return Err(UrlError::WildcardNotAllowed);
        }
        if !suffix.starts_with('.') || suffix.contains('*') || suffix.len() < 2 {
            return Err(UrlError::BadWildcard);
        }
        check_dns_name(&suffix[1..]).map_err(|_| UrlError::BadHost(host.clone()))?;
        return Ok(HostPattern::Wildcard(suffix.to_string()));
    }
    if host.contains('*') {
        return Err(UrlError::BadWildcard);
    }
    check_dns_name(&host).map_err(|_| UrlError::BadHost(host.clone()))?;
    Ok(HostPattern::Exact(host))
}

fn check_dns_name(name: &str) -> Result<(), ()> {
    if name.is_empty() || name.len() > 253 {
        return Err(());
    }
    for label in name.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
