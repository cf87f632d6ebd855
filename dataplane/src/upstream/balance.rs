//! Several servers for one app: which one a request goes to.
//!
//! Shared by the direct hop and the connector. Servers are tried
//! round-robin per app, a server that refused a connection lately goes to
//! the back of the line for [`DOWN_FOR`], and with sticky sessions the
//! server named by the request's affinity cookie goes first (falling over
//! to the others when it is down). A server is named in the cookie by a
//! short hash, so the cookie reveals no internal address.

use std::time::{Duration, Instant};

use super::{Target, Upstream, UpstreamConn, UpstreamError};

/// The affinity cookie's name.
pub const STICKY_COOKIE: &str = "postern-affinity";
/// How long a server that refused a connection is skipped.
pub const DOWN_FOR: Duration = Duration::from_secs(10);

/// A short, stable, non-revealing name of a server for the affinity
/// cookie.
pub fn server_tag(host: &str, port: u16) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, format!("{host}:{port}").as_bytes());
    d.as_ref()[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// The affinity cookie's value among `Cookie` header values.
pub fn affinity<'a>(cookie_headers: impl Iterator<Item = &'a [u8]>) -> Option<String> {
    for v in cookie_headers {
        let Ok(v) = std::str::from_utf8(v) else {
            continue;
        };
        for pair in v.split(';') {
            if let Some((k, val)) = pair.trim().split_once('=') {
                if k == STICKY_COOKIE {
                    return Some(val.to_string());
                }
            }
        }
    }
    None
}

/// One server of an app, and how to reach it.
pub struct Server<'a> {
    pub host: &'a str,
    pub port: u16,
}

impl Upstream {
    /// The order in which to try `servers`: the sticky one first, then
    /// round-robin, servers that failed lately last.
    fn order(&self, app: &str, servers: &[Server<'_>], sticky: Option<&str>) -> Vec<usize> {
        let n = servers.len();
        let start = {
            let mut rr = self.rr.borrow_mut();
            let e = match rr.get_mut(app) {
                Some(e) => e,
                None => rr.entry(app.to_string()).or_insert(0),
            };
            *e = e.wrapping_add(1);
            *e % n
        };
        let mut idx: Vec<usize> = (0..n).map(|i| (start + i) % n).collect();
        if let Some(tag) = sticky {
            if let Some(p) = servers
                .iter()
                .position(|s| server_tag(s.host, s.port) == tag)
            {
                idx.retain(|&i| i != p);
                idx.insert(0, p);
            }
        }
        let down = self.down.borrow();
        let is_down = |i: &usize| {
            down.get(&(servers[*i].host.to_string(), servers[*i].port))
                .is_some_and(|at| at.elapsed() < DOWN_FOR)
        };
        let (mut up, downs): (Vec<usize>, Vec<usize>) = idx.into_iter().partition(|i| !is_down(i));
        up.extend(downs);
        up
    }

    /// A connection to one of `servers` (the index of the one chosen): a
    /// server that refuses is marked down and the next one tried, since
    /// nothing was sent to it. `base` gives the TLS and proxy settings.
    pub async fn open_any(
        &self,
        app: &str,
        servers: &[Server<'_>],
        sticky: Option<&str>,
        base: &Target,
    ) -> Result<(usize, UpstreamConn), UpstreamError> {
        let mut last_err = None;
        for i in self.order(app, servers, sticky) {
            let s = &servers[i];
            let target = Target {
                host: s.host.to_string(),
                port: s.port,
                ..base.clone()
            };
            match self.open(&target).await {
                Ok(c) => {
                    self.down.borrow_mut().remove(&(target.host, target.port));
                    return Ok((i, c));
                }
                Err(e) => {
                    if servers.len() > 1 {
                        tracing::warn!(app, server = %format!("{}:{}", s.host, s.port), error = %e, "backend server unavailable");
                    }
                    self.down
                        .borrow_mut()
                        .insert((target.host, target.port), Instant::now());
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| UpstreamError::Resolve(String::new())))
    }
}
