//! The direct hop: the edge dials the app's internal server itself (an
//! edge inside the private network, without connectors).
//!
//! Connections come from the worker's keep-alive pool; the request goes
//! out through the same HTTP/1.1 exchange the connector uses
//! ([`crate::upstream::exchange`]), so both follow one retry rule.

use std::rc::Rc;

use bytes::Bytes;

use super::client::Client;
use super::conn::Bound;
use super::hop::{ClientBody, Hop, HopResponse};
use super::proxy::Exchange;
use super::request::{backend_path, backend_value, forwarded_headers, identity_headers};
use super::response::RespHead;
use crate::error::{ProxyError, Source};
use crate::http1::body::Framing;
use crate::http1::write::{self, Forwarding};
use crate::http1::RequestHead;
use crate::io::write_out;
use crate::upstream::balance::{affinity, server_tag, Server};
use crate::upstream::exchange::{exchange, BodyIn, BodySource};
use crate::upstream::{is_connection_auth, Target, Upstream, UpstreamConn, UpstreamError};
use postern_control::counters::FailReason;
use postern_control::Sticky;

/// Attempts of one request: the first, plus retries the rule allows.
const MAX_ATTEMPTS: usize = 3;

pub struct DirectHop;

pub struct DirectResponse {
    head: RespHead,
    body: BodyIn,
    pool: Rc<Upstream>,
    /// The connection carries a client's NTLM/Negotiate session: it goes
    /// back to that client, never to the pool.
    bind: bool,
}

impl BodySource for ClientBody<'_> {
    fn has_body(&self) -> bool {
        ClientBody::has_body(self)
    }
    fn buffered(&self) -> bool {
        ClientBody::buffered(self)
    }
    async fn next(&mut self) -> Result<Option<Bytes>, ProxyError> {
        ClientBody::next(self).await
    }
}

/// Phase 4 for this hop: the HTTP/1.1 request head for the backend.
fn request_head(ctx: &Exchange<'_>, head: &RequestHead, upgrade: bool, out: &mut Vec<u8>) {
    let (app, info, id) = (ctx.app, ctx.info, ctx.id);
    out.extend_from_slice(&head.method);
    out.push(b' ');
    backend_path(ctx, head, out);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    if app.app.translate_headers {
        out.extend_from_slice(ctx.internal_host.as_bytes());
        let int = &app.app.internal_url;
        if int.port != int.scheme.default_port() {
            out.push(b':');
            crate::http1::push_decimal(out, u64::from(int.port));
        }
    } else {
        out.extend_from_slice(&head.authority);
    }
    out.extend_from_slice(b"\r\n");
    let xff = forwarded_headers(&app.app, info, head, |h| {
        match backend_value(ctx, head, h) {
            Some(v) => write::field(out, &h.name, &v),
            None => write::field(out, &h.name, &h.value),
        }
    });
    Forwarding {
        forwarded_for: &xff,
        proto: info.scheme.as_str(),
        host: &head.authority,
        request_id: id,
        via: super::headers::via_mark(),
    }
    .write(out);
    identity_headers(ctx, head, |name, value| {
        write::field(out, name.as_bytes(), value)
    });
    write::request_framing(out, head.framing);
    if let (true, Some(up)) = (upgrade, &head.upgrade) {
        out.extend_from_slice(b"Connection: upgrade\r\nUpgrade: ");
        out.extend_from_slice(up);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

/// The servers a request may go to: the internal URL's, then the app's
/// `internal_servers`; and, with sticky sessions, the one the request's
/// affinity cookie names.
struct Servers<'a> {
    /// Empty for an app with one server (the common case: nothing to
    /// choose, nothing allocated).
    list: Vec<Server<'a>>,
    sticky: bool,
    affinity: Option<String>,
}

impl<'a> Servers<'a> {
    fn of(ctx: &'a Exchange<'_>, head: &RequestHead, target: &'a Target) -> Servers<'a> {
        let app = &ctx.app.app;
        let list = if app.internal_servers.is_empty() {
            Vec::new()
        } else {
            std::iter::once(Server {
                host: &target.host,
                port: target.port,
            })
            .chain(
                app.internal_servers
                    .iter()
                    .map(|(host, port)| Server { host, port: *port }),
            )
            .collect()
        };
        let sticky = app.sticky == Sticky::Cookie;
        let affinity = sticky
            .then(|| {
                affinity(
                    head.headers
                        .iter()
                        .filter(|h| h.is("cookie"))
                        .map(|h| &h.value[..]),
                )
            })
            .flatten();
        Servers {
            list,
            sticky,
            affinity,
        }
    }

    /// Which server a (bound) connection goes to, if it is one of them.
    fn index_of(&self, conn: &UpstreamConn, target: &Target) -> Option<usize> {
        if conn.is_for(target) {
            return Some(0);
        }
        self.list.iter().position(|s| {
            conn.is_for(&Target {
                host: s.host.to_string(),
                port: s.port,
                ..target.clone()
            })
        })
    }

    /// A connection to one of the servers, and which.
    async fn open(
        &self,
        pool: &Upstream,
        app: &str,
        target: &Target,
    ) -> Result<(usize, UpstreamConn), ProxyError> {
        let opened = if self.list.is_empty() {
            pool.open(target).await.map(|c| (0, c))
        } else {
            pool.open_any(app, &self.list, self.affinity.as_deref(), target)
                .await
        };
        opened.map_err(|e| {
            if matches!(e, UpstreamError::ConnectTimeout) {
                ProxyError::backend(
                    504,
                    "the application's server did not accept a connection in time",
                )
            } else {
                ProxyError::new(
                    Source::Backend,
                    FailReason::BackendUnreachable,
                    502,
                    "the application's server could not be reached",
                )
            }
        })
    }

    /// The affinity tag of server `i`, for sticky apps.
    fn tag(&self, i: usize, target: &Target) -> Option<String> {
        self.sticky.then(|| match self.list.get(i) {
            Some(s) => server_tag(s.host, s.port),
            None => server_tag(&target.host, target.port),
        })
    }
}

impl Hop for DirectHop {
    type Response = DirectResponse;

    async fn send(
        &mut self,
        ctx: &Exchange<'_>,
        head: &RequestHead,
        body: &mut ClientBody<'_>,
        out: &mut Vec<u8>,
    ) -> Result<DirectResponse, ProxyError> {
        let app = ctx.app;
        let target = Target {
            host: ctx.internal_host.clone(),
            port: app.app.internal_url.port,
            tls: app.backend_tls.clone(),
            proxy: None,
        };
        let timeout = app.app.backend_timeout.duration();
        let upgrade = app.app.websocket && head.upgrade.is_some();
        let pool = ctx.worker.upstream.clone();
        let servers = Servers::of(ctx, head, &target);
        // A client whose NTLM/Negotiate session lives on a backend
        // connection keeps using that connection.
        let mut bound = match ctx.info.bound.borrow_mut().take() {
            Some(Bound::Direct(c)) => Some(*c),
            _ => None,
        };
        let auth = head
            .headers
            .iter()
            .any(|h| h.is("authorization") && is_connection_auth(&h.value));
        let mut attempts = 0;
        loop {
            attempts += 1;
            let own = bound
                .take()
                .and_then(|c| Some((servers.index_of(&c, &target)?, c)));
            let was_bound = own.is_some();
            let (chosen, mut up) = match own {
                Some(pair) => pair,
                None => servers.open(&pool, &app.app.name, &target).await?,
            };
            out.clear();
            request_head(ctx, head, upgrade, out);
            let chunked = head.framing == Framing::Chunked;
            match exchange(&mut up, out, chunked, body, &head.method, upgrade, timeout).await {
                Ok(r) => {
                    let body = BodyIn::new(up, &r, timeout);
                    let mut head: RespHead = r.into();
                    head.server = servers.tag(chosen, &target);
                    let bind = was_bound
                        || auth
                        || head.headers.any("www-authenticate", is_connection_auth);
                    return Ok(DirectResponse {
                        body,
                        head,
                        pool,
                        bind,
                    });
                }
                Err(e) if e.retry && attempts < MAX_ATTEMPTS => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl HopResponse for DirectResponse {
    fn head(&self) -> &RespHead {
        &self.head
    }

    fn upgraded(&self) -> bool {
        self.head.status == 101
    }

    async fn next(&mut self, large: bool) -> Result<Option<Bytes>, ProxyError> {
        self.body.next(large).await
    }

    fn more_ready(&self) -> bool {
        self.body.more_ready()
    }

    fn consumed(&mut self, _n: usize) {}

    fn finish(self, ctx: &Exchange<'_>) {
        if let Some(conn) = self.body.reusable() {
            if self.bind {
                *ctx.info.bound.borrow_mut() = Some(Bound::Direct(Box::new(conn)));
            } else {
                self.pool.release(conn);
            }
        }
    }

    // The request's receiving half is the relay's alone once upgraded (its
    // body is over); the cell is held for the relay's life on purpose.
    #[allow(clippy::await_holding_refcell_ref)]
    async fn relay_upgraded(
        self,
        client: &mut Client<'_>,
        out: &mut Vec<u8>,
        early: Bytes,
        idle: std::time::Duration,
    ) {
        let mut up = self.body.conn;
        match client {
            Client::H1 { io, .. } => {
                if !up.buf.is_empty() {
                    out.extend_from_slice(&up.buf.split());
                }
                if write_out(io, out).await.is_err() {
                    return;
                }
                if !early.is_empty() {
                    let (res, _) = up.io.write_all(early).await;
                    if res.is_err() {
                        return;
                    }
                }
                crate::relay::copy_bidirectional(io, &mut up.io, idle).await;
            }
            Client::H2(s) => {
                let Some(mut tx) = s.take_body() else {
                    return;
                };
                let leftover = up.buf.split().freeze();
                let mut rx = s.recv.borrow_mut();
                crate::relay::over_stream(&mut up.io, leftover, &mut tx, &mut rx, idle).await;
            }
        }
    }
}
