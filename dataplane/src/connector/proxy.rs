//! Reaching the edge through an outbound HTTP proxy (HTTP `CONNECT`), as
//! corporate networks that allow nothing but the proxy require. The proxy
//! comes from `connector.edge_proxy` (`http://[user:password@]host:port`),
//! else from the environment's `https_proxy` (or `HTTPS_PROXY`), which
//! `no_proxy` (`NO_PROXY`) can exempt the edge from. The proxy resolves
//! the edge's name itself, so the connector needs no DNS for it.
//!
//! Registration, renewal and every tunnel go the same way; TLS with the
//! edge (the pinned CA, mutual authentication) runs inside the proxy's
//! tunnel, so the proxy sees nothing but the edge's address.

use base64::Engine;

/// An HTTP proxy on the way to the edge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeProxy {
    pub host: String,
    pub port: u16,
    /// `Basic` credentials, already encoded.
    authorization: Option<String>,
    /// Host names (and `.suffix`es) reached directly (`no_proxy`).
    exempt: Vec<String>,
    /// Where it was configured, for error messages.
    pub source: &'static str,
}

/// The longest proxy answer head read.
const MAX_ANSWER: usize = 16 * 1024;

impl EdgeProxy {
    /// Parses `http://[user:password@]host[:port][/]` (port 3128 when
    /// left out; user and password percent-decoded).
    pub fn parse(url: &str, source: &'static str) -> Result<EdgeProxy, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or("must start with http:// (the proxy is spoken to in plain HTTP; TLS with the edge runs inside its tunnel)")?
            .trim_end_matches('/');
        let (userinfo, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, rest),
        };
        if hostport.is_empty() || hostport.contains('/') {
            return Err("must be http://[user:password@]host:port".into());
        }
        let (host, port) = postern_control::url::split_host_port(hostport)
            .map_err(|_| "must be http://[user:password@]host:port".to_string())?;
        let authorization = userinfo
            .map(|u| {
                let (user, password) = u.split_once(':').unwrap_or((u, ""));
                let plain = format!("{}:{}", percent_decode(user)?, percent_decode(password)?);
                Ok::<_, String>(base64::engine::general_purpose::STANDARD.encode(plain))
            })
            .transpose()?;
        Ok(EdgeProxy {
            host: host.to_string(),
            port: port.unwrap_or(3128),
            authorization,
            exempt: Vec::new(),
            source,
        })
    }

    /// The proxy the environment names (`https_proxy`, `HTTPS_PROXY`),
    /// with its `no_proxy` exemptions.
    pub fn from_env() -> Result<Option<EdgeProxy>, String> {
        let Some(url) = ["https_proxy", "HTTPS_PROXY"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        else {
            return Ok(None);
        };
        let mut p = EdgeProxy::parse(&url, "https_proxy")
            .map_err(|e| format!("https_proxy `{}` {e}", redact(&url)))?;
        p.exempt = ["no_proxy", "NO_PROXY"]
            .iter()
            .find_map(|k| std::env::var(k).ok())
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        Ok(Some(p))
    }

    /// Whether the edge at `edge` (`host:port`) is reached through this
    /// proxy (not exempted by `no_proxy`).
    pub fn serves(&self, edge: &str) -> bool {
        let host = postern_control::url::split_host_port(edge)
            .map(|(h, _)| h.trim_matches(['[', ']']).to_ascii_lowercase())
            .unwrap_or_default();
        !self.exempt.iter().any(|e| {
            e == "*"
                || *e == host
                || e.strip_prefix('.')
                    .or(Some(e.as_str()))
                    .is_some_and(|s| host.ends_with(&format!(".{s}")))
        })
    }

    /// The `CONNECT` request for `edge` (`host:port`).
    fn request(&self, edge: &str) -> String {
        let mut r = format!("CONNECT {edge} HTTP/1.1\r\nHost: {edge}\r\n");
        if let Some(a) = &self.authorization {
            r.push_str(&format!("Proxy-Authorization: Basic {a}\r\n"));
        }
        r.push_str("\r\n");
        r
    }

    /// Checks the proxy's answer head: a 2xx opens the tunnel.
    fn check(&self, head: &[u8], edge: &str) -> Result<(), String> {
        let mut buf = bytes::BytesMut::from(head);
        match crate::http1::parse_response(&mut buf, true) {
            Ok(Some(r)) if (200..300).contains(&r.status) => Ok(()),
            // 407, or 401 from proxies that answer CONNECT like a server.
            Ok(Some(r)) if r.status == 407 || r.status == 401 => Err(format!(
                "the proxy {}:{} ({}) wants credentials for the edge {edge} ({}); {}",
                self.host,
                self.port,
                self.source,
                r.status,
                if self.authorization.is_some() {
                    "the user and password given were refused"
                } else {
                    "give them as http://user:password@host:port"
                }
            )),
            Ok(Some(r)) => Err(format!(
                "the proxy {}:{} ({}) refused the tunnel to the edge {edge}: {} {}",
                self.host,
                self.port,
                self.source,
                r.status,
                String::from_utf8_lossy(&r.reason)
            )),
            _ => Err(format!(
                "the proxy {}:{} ({}) sent an unreadable answer",
                self.host, self.port, self.source
            )),
        }
    }

    /// A blocking connection to `edge` through the proxy (registration
    /// and renewal, on control threads).
    pub fn connect_blocking(
        &self,
        edge: &str,
        timeout: std::time::Duration,
    ) -> Result<std::net::TcpStream, String> {
        use std::io::{Read, Write};
        use std::net::ToSocketAddrs;
        let here = format!("{}:{}", self.host, self.port);
        let addr = here
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve the proxy {here} ({}): {e}", self.source))?
            .next()
            .ok_or_else(|| format!("the proxy {here} resolves to nothing"))?;
        let mut tcp = std::net::TcpStream::connect_timeout(&addr, timeout)
            .map_err(|e| format!("cannot connect to the proxy {here} ({}): {e}", self.source))?;
        let _ = tcp.set_read_timeout(Some(timeout));
        let _ = tcp.set_write_timeout(Some(timeout));
        tcp.write_all(self.request(edge).as_bytes())
            .map_err(|e| format!("the proxy {here}: {e}"))?;
        // Byte by byte up to the blank line, so nothing of the TLS that
        // follows is consumed here.
        let mut head = Vec::with_capacity(256);
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > MAX_ANSWER {
                return Err(format!("the proxy {here} sent an answer head over 16 KiB"));
            }
            match tcp.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                Ok(_) => return Err(format!("the proxy {here} closed the connection")),
                Err(e) => return Err(format!("the proxy {here}: {e}")),
            }
        }
        self.check(&head, edge)?;
        Ok(tcp)
    }

    /// A connection to `edge` through the proxy, on a connector runtime.
    pub async fn connect(&self, edge: &str) -> Result<monoio::net::TcpStream, String> {
        use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
        let here = format!("{}:{}", self.host, self.port);
        let source = self.source;
        let host = self.host.clone();
        let port = self.port;
        let addr = crate::offload::run(move || {
            use std::net::ToSocketAddrs;
            (host.as_str(), port)
                .to_socket_addrs()
                .map(|mut a| a.next())
        })
        .await
        .ok_or_else(|| format!("cannot resolve the proxy {here}: the lookup was dropped"))?
        .map_err(|e| format!("cannot resolve the proxy {here} ({source}): {e}"))?
        .ok_or_else(|| format!("the proxy {here} resolves to nothing"))?;
        let mut tcp = monoio::net::TcpStream::connect_addr(addr)
            .await
            .map_err(|e| format!("cannot connect to the proxy {here} ({source}): {e}"))?;
        let (res, _) = tcp.write_all(self.request(edge).into_bytes()).await;
        res.map_err(|e| format!("the proxy {here}: {e}"))?;
        let mut head = Vec::with_capacity(256);
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > MAX_ANSWER {
                return Err(format!("the proxy {here} sent an answer head over 16 KiB"));
            }
            let (res, byte) = tcp.read(vec![0u8; 1]).await;
            match res {
                Ok(1) => head.push(byte[0]),
                Ok(_) => return Err(format!("the proxy {here} closed the connection")),
                Err(e) => return Err(format!("the proxy {here}: {e}")),
            }
        }
        self.check(&head, edge)?;
        Ok(tcp)
    }
}

/// `%XX` escapes decoded (as userinfo in a URL carries them).
fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("has a malformed %-escape in its user or password")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "has a user or password that is not UTF-8".into())
}

/// The URL with its password hidden, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let userinfo = &url[s + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..s + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_credentials_and_exemptions() {
        let p = EdgeProxy::parse("http://svc%40corp:p%3Ass@proxy.corp:8080/", "test").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("proxy.corp", 8080));
        let want = base64::engine::general_purpose::STANDARD.encode("svc@corp:p:ss");
        assert!(p
            .request("edge.example.com:443")
            .contains(&format!("Proxy-Authorization: Basic {want}\r\n")));
        assert!(p.request("edge.example.com:443").starts_with(
            "CONNECT edge.example.com:443 HTTP/1.1\r\nHost: edge.example.com:443\r\n"
        ));
        let bare = EdgeProxy::parse("http://proxy", "test").unwrap();
        assert_eq!(bare.port, 3128);
        assert!(!bare.request("e:443").contains("Proxy-Authorization"));
        for bad in [
            "https://proxy:3128",
            "proxy:3128",
            "http://",
            "http://a/b",
            "http://u:%zz@p:1",
        ] {
            assert!(EdgeProxy::parse(bad, "test").is_err(), "{bad}");
        }
        let mut p = bare;
        p.exempt = vec![".corp".into(), "edge.example.net".into()];
        assert!(p.serves("edge.example.com:443"));
        assert!(!p.serves("edge.corp:443"));
        assert!(!p.serves("EDGE.example.net:8444"));
        assert!(p.serves("notcorp:443"));
        assert_eq!(
            redact("http://svc:secret@proxy:3128"),
            "http://svc:***@proxy:3128"
        );
        assert!(p
            .check(
                b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n",
                "e:443"
            )
            .unwrap_err()
            .contains("407"));
        assert!(p
            .check(b"HTTP/1.1 200 Connection established\r\n\r\n", "e:443")
            .is_ok());
    }
}
