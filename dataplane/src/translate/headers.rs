//! Header translation (`translate_headers`).
//!
//! Responses: URLs in Location, Content-Location, Refresh and Link become
//! external through the snapshot's table (any published app, not only the
//! one answering); a Set-Cookie's Domain and Path are moved from the
//! internal host and path to the external ones. Requests: Origin, Referer
//! and Destination go the other way, so a backend that checks them (CSRF
//! guards, WebDAV) sees its own URLs.

/// Response headers whose value is, or holds, a URL.
pub fn is_url_header(name: &[u8]) -> bool {
    ["location", "content-location", "refresh", "link"]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
}

/// Request headers whose value is a URL of the edge.
pub fn is_request_url_header(name: &[u8]) -> bool {
    ["origin", "referer", "destination"]
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
}

/// What a Set-Cookie is moved between: the request's internal and
/// external host and the app's two path prefixes.
pub struct CookieScope<'a> {
    pub internal_host: &'a str,
    pub external_host: &'a str,
    pub internal_path: &'a str,
    pub external_path: &'a str,
    /// For a wildcard app, the two suffixes (".corp", ".example.com").
    pub wildcard: Option<(&'a str, &'a str)>,
}

/// Rewrites the Domain and Path attributes of a Set-Cookie value; `None`
/// when nothing changed.
///
/// * `Domain` of the internal host becomes the external host. A parent
///   domain of the internal host becomes the external wildcard's domain
///   for a wildcard app, and is dropped otherwise (the cookie is then
///   host-only on the external host, which is where the browser will send
///   the app's requests). Any other domain is left for the browser to judge.
/// * `Path` under the internal prefix moves under the external prefix.
pub fn set_cookie(value: &[u8], s: &CookieScope<'_>) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(value.len() + 16);
    let mut changed = false;
    for (i, attr) in value.split(|&b| b == b';').enumerate() {
        if i == 0 {
            out.extend_from_slice(attr);
            continue;
        }
        let t = attr.trim_ascii();
        let (name, val) = match t.iter().position(|&b| b == b'=') {
            Some(e) => (t[..e].trim_ascii(), t[e + 1..].trim_ascii()),
            None => (t, &b""[..]),
        };
        if name.eq_ignore_ascii_case(b"domain") {
            match cookie_domain(val, s) {
                DomainFix::Keep => {}
                DomainFix::Drop => {
                    changed = true;
                    continue;
                }
                DomainFix::Set(d) => {
                    changed = true;
                    out.extend_from_slice(b"; Domain=");
                    out.extend_from_slice(d.as_bytes());
                    continue;
                }
            }
        } else if name.eq_ignore_ascii_case(b"path") {
            if let Some(p) = cookie_path(val, s) {
                changed = true;
                out.extend_from_slice(b"; Path=");
                out.extend_from_slice(p.as_bytes());
                continue;
            }
        }
        out.push(b';');
        out.extend_from_slice(attr);
    }
    changed.then_some(out)
}

enum DomainFix {
    Keep,
    Drop,
    Set(String),
}

fn cookie_domain(val: &[u8], s: &CookieScope<'_>) -> DomainFix {
    let d = String::from_utf8_lossy(val)
        .trim_start_matches('.')
        .to_ascii_lowercase();
    let under = |host: &str| host == d || host.ends_with(&format!(".{d}"));
    if d.is_empty() || under(s.external_host) {
        return DomainFix::Keep;
    }
    if d == s.internal_host {
        return DomainFix::Set(s.external_host.to_string());
    }
    if !under(s.internal_host) {
        return DomainFix::Keep;
    }
    match s.wildcard {
        Some((int_suffix, ext_suffix)) if int_suffix.trim_start_matches('.') == d => {
            DomainFix::Set(ext_suffix.trim_start_matches('.').to_string())
        }
        _ => DomainFix::Drop,
    }
}

fn cookie_path(val: &[u8], s: &CookieScope<'_>) -> Option<String> {
    if s.internal_path == s.external_path {
        return None;
    }
    let p = std::str::from_utf8(val).ok()?;
    if let Some(rest) = p.strip_prefix(s.internal_path) {
        return Some(format!("{}{rest}", s.external_path));
    }
    if p == &s.internal_path[..s.internal_path.len() - 1] {
        let e = &s.external_path[..s.external_path.len() - 1];
        return Some(if e.is_empty() { "/".into() } else { e.into() });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::Table;
    use super::*;
    use postern_control::url::parse_app_url;

    fn scope() -> CookieScope<'static> {
        CookieScope {
            internal_host: "app.corp",
            external_host: "app.example.com",
            internal_path: "/int/",
            external_path: "/",
            wildcard: None,
        }
    }

    fn cookie(v: &str, s: &CookieScope<'_>) -> String {
        set_cookie(v.as_bytes(), s).map_or_else(|| v.to_string(), |v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn set_cookie_domain_and_path() {
        let s = scope();
        assert_eq!(
            cookie("sid=1; Domain=app.corp; Path=/int/a; HttpOnly", &s),
            "sid=1; Domain=app.example.com; Path=/a; HttpOnly"
        );
        assert_eq!(
            cookie("sid=1; domain=.corp; path=/int", &s),
            "sid=1; Path=/"
        );
        assert_eq!(
            cookie("sid=1; Domain=example.com; Path=/other", &s),
            "sid=1; Domain=example.com; Path=/other"
        );
        assert_eq!(cookie("sid=1", &s), "sid=1");
        let w = CookieScope {
            internal_host: "wiki.corp",
            external_host: "wiki.example.com",
            internal_path: "/",
            external_path: "/",
            wildcard: Some((".corp", ".example.com")),
        };
        assert_eq!(cookie("a=b; Domain=.corp", &w), "a=b; Domain=example.com");
    }

    #[test]
    fn url_headers_and_their_reverse() {
        let pairs = [(
            parse_app_url("http://app.corp:8080/", false).unwrap(),
            parse_app_url("https://app.example.com/", false).unwrap(),
        )];
        let fwd = Table::from_urls(&pairs);
        let rev = Table::from_urls(&[(pairs[0].1.clone(), pairs[0].0.clone())]);
        let v = |t: &Table, s: &str| {
            t.rewrite_value(s.as_bytes())
                .map(|v| String::from_utf8(v).unwrap())
        };
        assert_eq!(
            v(&fwd, "0; url=http://app.corp:8080/next").as_deref(),
            Some("0; url=https://app.example.com/next")
        );
        assert_eq!(
            v(&fwd, "<http://app.corp:8080/s.css>; rel=preload, <https://cdn.example/x>; rel=preload")
                .as_deref(),
            Some("<https://app.example.com/s.css>; rel=preload, <https://cdn.example/x>; rel=preload")
        );
        assert_eq!(v(&fwd, "/relative"), None);
        assert_eq!(
            v(&rev, "https://app.example.com").as_deref(),
            Some("http://app.corp:8080")
        );
        assert_eq!(
            v(&rev, "https://app.example.com/page?q").as_deref(),
            Some("http://app.corp:8080/page?q")
        );
    }
}
