//! One client connection: read a request, relay it, answer, repeat.
//!
//! Requests on a connection are handled strictly in order, which is what
//! makes pipelining safe: the next head is parsed only after the previous
//! response has been written, from whatever bytes followed the previous
//! body in the read buffer. When a message cannot be framed with certainty
//! the connection is closed after the error response, so nothing after a
//! bad message is ever read as a request (ATTACKS.md, "Close").

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use postern_control::counters::{bump, AppCounters, FailReason};
use postern_control::{HostPattern, Preauth, Scheme};

use super::body::{self, BodyError, BodyReader, Encoder, Framing};
use super::{parse_request, Header, RequestHead, ResponseHead};
use crate::accesslog;
use crate::edge::headers as edge_headers;
use crate::io::{write_out, Io};
use crate::pages;
use crate::route::{self, Route};
use crate::snapshot::{AppRuntime, Snapshot};
use crate::translate::body::{Failed, ResponseFacts, Translator};
use crate::translate::headers::CookieScope;
use crate::translate::{self, Table};
use crate::upstream::{Target, Upstream, UpstreamConn, UpstreamError};
use crate::worker::Worker;

mod tunnel;

/// What the client connection learned about itself at accept time.
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// The client address as sent in `X-Forwarded-For` (IPv4-mapped
    /// addresses in their IPv4 form), formatted once per connection.
    pub client_ip: String,
    pub scheme: Scheme,
    /// SNI name sent in the TLS handshake, lower-case.
    pub sni: Option<String>,
    /// What happened to the request in progress, for the access log.
    /// Requests on a connection are sequential, so one cell suffices.
    pub outcome: Cell<Outcome>,
}

/// The access-log facts of one request.
#[derive(Debug, Clone, Copy, Default)]
pub struct Outcome {
    pub status: u16,
    pub app: Option<usize>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub backend_us: Option<u64>,
}

impl ConnInfo {
    fn note(&self, f: impl FnOnce(&mut Outcome)) {
        let mut o = self.outcome.get();
        f(&mut o);
        self.outcome.set(o);
    }
}

fn is_hop_by_hop(h: &Header) -> bool {
    super::is_hop_by_hop(&h.name)
}

fn listed_in_connection(h: &Header, tokens: &[String]) -> bool {
    tokens
        .iter()
        .any(|t| h.name.eq_ignore_ascii_case(t.as_bytes()))
}

/// How a request ended, for the connection loop.
enum Next {
    KeepAlive,
    Close,
}

pub async fn serve(worker: Rc<Worker>, mut io: Io, info: ConnInfo) {
    let mut buf = BytesMut::with_capacity(crate::io::READ_CHUNK);
    let mut out: Vec<u8> = Vec::with_capacity(crate::io::READ_CHUNK);
    let mut first = true;
    loop {
        let snapshot = worker.snapshot();
        let settings = &snapshot.settings;
        let head = loop {
            match parse_request(&mut buf) {
                Ok(Some(h)) => break Some(h),
                Ok(None) => {}
                Err(e) => {
                    bump(&worker.counters.edge.bad_requests, 1);
                    let id = worker.next_request_id();
                    out.clear();
                    pages::error_page(&mut out, e.status, e.reason, &id, true, &[]);
                    let _ = write_out(&mut io, &mut out).await;
                    break None;
                }
            }
            let timeout = if buf.is_empty() && !first {
                settings.keepalive_timeout
            } else {
                settings.request_header_timeout
            };
            // A timed-out read takes the buffer down with it; remember
            // whether a request had started.
            let partial = !buf.is_empty();
            match body::read_with_timeout(&mut io, &mut buf, timeout).await {
                Ok(0) | Err(BodyError::Io(_)) => break None,
                Ok(_) => {}
                Err(BodyError::Timeout) if partial => {
                    let id = worker.next_request_id();
                    out.clear();
                    let msg = "the request head did not arrive in time";
                    pages::error_page(&mut out, 408, msg, &id, true, &[]);
                    let _ = write_out(&mut io, &mut out).await;
                    break None;
                }
                Err(_) => break None,
            }
        };
        let Some(head) = head else { break };
        first = false;
        let next = handle(&worker, &snapshot, &mut io, &mut buf, &mut out, &info, head).await;
        if matches!(next, Next::Close) {
            break;
        }
    }
    io.shutdown().await;
}

/// Answers with an edge page. Keeps the connection only when the request
/// had no body (an unread body would be parsed as the next request).
async fn respond_error(
    info: &ConnInfo,
    io: &mut Io,
    out: &mut Vec<u8>,
    head: &RequestHead,
    status: u16,
    detail: &str,
    id: &str,
) -> Next {
    let close = !head.keep_alive || head.framing.has_body();
    info.note(|o| o.status = status);
    out.clear();
    pages::error_page(out, status, detail, id, close, &[]);
    send_edge_response(io, out, close).await
}

/// Writes a response the edge made itself; keeps the connection if asked.
async fn send_edge_response(io: &mut Io, out: &mut Vec<u8>, close: bool) -> Next {
    if write_out(io, out).await.is_err() || close {
        Next::Close
    } else {
        Next::KeepAlive
    }
}

async fn respond_redirect(
    info: &ConnInfo,
    io: &mut Io,
    out: &mut Vec<u8>,
    head: &RequestHead,
    location: &str,
    id: &str,
) -> Next {
    let close = !head.keep_alive || head.framing.has_body();
    let status = if matches!(&head.method[..], b"GET" | b"HEAD") {
        301
    } else {
        308
    };
    info.note(|o| o.status = status);
    out.clear();
    pages::redirect(out, status, location, id, close);
    send_edge_response(io, out, close).await
}

/// Handles one request and writes its access-log line.
async fn handle(
    worker: &Rc<Worker>,
    snapshot: &Arc<Snapshot>,
    io: &mut Io,
    buf: &mut BytesMut,
    out: &mut Vec<u8>,
    info: &ConnInfo,
    head: RequestHead,
) -> Next {
    let started = Instant::now();
    info.outcome.set(Outcome::default());
    let id = worker.next_request_id();
    let logging = accesslog::enabled();
    let (method, path) = if logging {
        (head.method.clone(), head.path.clone())
    } else {
        (Bytes::new(), Bytes::new())
    };
    let next = route_and_serve(worker, snapshot, io, buf, out, info, head, &id).await;
    if logging {
        let o = info.outcome.get();
        accesslog::log(&accesslog::Entry {
            request_id: &id,
            app: o.app.map(|a| snapshot.apps[a].app.name.as_str()),
            client: &info.client_ip,
            method: &method,
            path: &path,
            status: o.status,
            bytes_in: o.bytes_in,
            bytes_out: o.bytes_out,
            total_us: started.elapsed().as_micros() as u64,
            backend_us: o.backend_us,
        });
    }
    next
}

#[allow(clippy::too_many_arguments)]
async fn route_and_serve(
    worker: &Rc<Worker>,
    snapshot: &Arc<Snapshot>,
    io: &mut Io,
    buf: &mut BytesMut,
    out: &mut Vec<u8>,
    info: &ConnInfo,
    head: RequestHead,
    id: &str,
) -> Next {
    // Route and forward on one normal form of the path.
    let head = match crate::edge::path::normalize(&head.path) {
        Ok(path) => RequestHead { path, ..head },
        Err(msg) => {
            bump(&worker.counters.edge.bad_requests, 1);
            return respond_error(info, io, out, &head, 400, msg, id).await;
        }
    };
    if let Some(sni) = &info.sni {
        if *sni != head.host {
            let msg = "this connection was opened for a different host name; open a new connection";
            bump(&worker.counters.edge.requests_unrouted, 1);
            return respond_error(info, io, out, &head, 421, msg, id).await;
        }
    }
    let app_id = match snapshot.router.lookup(info.scheme, &head.host, &head.path) {
        Route::App(a) => a,
        Route::AddSlash(_) => {
            let path = &head.path;
            let (p, q) = match memchr::memchr(b'?', path) {
                Some(i) => (&path[..i], &path[i..]),
                None => (&path[..], &b""[..]),
            };
            bump(&worker.counters.edge.requests_unrouted, 1);
            let loc = format!(
                "{}/{}",
                String::from_utf8_lossy(p),
                String::from_utf8_lossy(q)
            );
            return respond_redirect(info, io, out, &head, &loc, id).await;
        }
        Route::NotFound => {
            bump(&worker.counters.edge.requests_unrouted, 1);
            // An http request for an app published only over https.
            if info.scheme == Scheme::Http {
                if let Route::App(_) | Route::AddSlash(_) =
                    snapshot
                        .router
                        .lookup(Scheme::Https, &head.host, &head.path)
                {
                    let port = match snapshot.https_port {
                        Some(443) | None => String::new(),
                        Some(p) => format!(":{p}"),
                    };
                    let loc = format!(
                        "https://{}{port}{}",
                        head.host,
                        String::from_utf8_lossy(&head.path)
                    );
                    return respond_redirect(info, io, out, &head, &loc, id).await;
                }
            }
            let msg = "no application is published at this address";
            return respond_error(info, io, out, &head, 404, msg, id).await;
        }
    };
    let app = &snapshot.apps[app_id];
    info.note(|o| o.app = Some(app_id));
    let counters = worker.app_counters(snapshot, app_id);
    bump(&counters.requests, 1);
    if !app.app.enabled {
        counters.fail(FailReason::Disabled);
        let msg = "this application is disabled by its administrator";
        return respond_error(info, io, out, &head, 503, msg, id).await;
    }
    if app.app.preauth == Preauth::Oidc {
        // Fail closed: an app that asks for pre-authentication is never
        // served unauthenticated.
        counters.fail(FailReason::AuthRequired);
        let msg = "this application requires sign-in, which this edge does not offer yet";
        return respond_error(info, io, out, &head, 503, msg, id).await;
    }
    let ctx = Exchange {
        worker,
        snapshot,
        app,
        info,
        counters: &counters,
        id,
    };
    if snapshot.settings.tunnel_address.is_some() {
        tunnel::proxy(&ctx, io, buf, out, head).await
    } else {
        proxy(&ctx, io, buf, out, head).await
    }
}

/// What one proxied request needs besides the streams.
struct Exchange<'a> {
    worker: &'a Rc<Worker>,
    snapshot: &'a Arc<Snapshot>,
    app: &'a AppRuntime,
    info: &'a ConnInfo,
    counters: &'a AppCounters,
    id: &'a str,
}

/// Calls `f` with each client header that travels on to the backend (not
/// hop-by-hop, not named in `Connection`, not one the edge owns) and
/// returns the `X-Forwarded-For` value: the client's address, after the
/// chain the client sent when it is a front proxy the app trusts.
fn forwarded_headers(
    app: &postern_control::App,
    info: &ConnInfo,
    head: &RequestHead,
    mut f: impl FnMut(&Header),
) -> Vec<u8> {
    let trusted = !app.trusted_forwarded_for.is_empty()
        && postern_control::config::any_contains(&app.trusted_forwarded_for, info.peer.ip());
    let mut xff = Vec::new();
    for h in &head.headers {
        if is_hop_by_hop(h)
            || edge_headers::is_edge_owned(&h.name)
            || listed_in_connection(h, &head.connection_tokens)
        {
            continue;
        }
        if edge_headers::is_forwarded_for(&h.name) {
            if trusted {
                xff.extend_from_slice(&h.value);
                xff.extend_from_slice(b", ");
            }
            continue;
        }
        f(h);
    }
    xff.extend_from_slice(info.client_ip.as_bytes());
    xff
}

/// A request header's value as the backend should see it, when it differs:
/// with `translate_headers`, Origin, Referer and Destination holding an
/// app's external URL carry its internal URL instead; with
/// `translate_body`, Accept-Encoding lists only codings the edge decodes.
fn backend_header_value(
    ctx: &Exchange<'_>,
    head: &RequestHead,
    h: &Header,
    internal_host: &str,
) -> Option<Vec<u8>> {
    if ctx.app.app.translate_body && h.is("accept-encoding") {
        return translate::body::accept_encoding_for_backend(&h.value);
    }
    if !ctx.app.app.translate_headers || !translate::headers::is_request_url_header(&h.name) {
        return None;
    }
    let reverse = &ctx.snapshot.links_reverse;
    if !h.is("origin") {
        return reverse.rewrite_value(&h.value);
    }
    // An origin has no path: the request's own origin is this app's
    // internal origin; another app's is found by its root URL.
    let own = format!("{}://", ctx.info.scheme);
    if h.value.len() == own.len() + head.authority.len()
        && h.value[..own.len()].eq_ignore_ascii_case(own.as_bytes())
        && h.value[own.len()..].eq_ignore_ascii_case(&head.authority)
    {
        let int = &ctx.app.app.internal_url;
        let authority = route::internal_authority(&ctx.app.app, internal_host);
        return Some(format!("{}://{authority}", int.scheme).into_bytes());
    }
    let mut url = h.value.to_vec();
    url.push(b'/');
    let mut v = reverse.rewrite_value(&url)?;
    let host = memchr::memmem::find(&v, b"://").map_or(0, |i| i + 3);
    let end = memchr::memchr(b'/', &v[host..]).map_or(v.len(), |i| host + i);
    v.truncate(end);
    Some(v)
}

/// Builds the request head sent to the backend.
fn backend_request_head(
    ctx: &Exchange<'_>,
    head: &RequestHead,
    internal_host: &str,
    out: &mut Vec<u8>,
) {
    let (app, info, id) = (ctx.app, ctx.info, ctx.id);
    let ext_path = app.app.external_url.path.as_bytes();
    let rest = &head.path[ext_path.len().min(head.path.len())..];
    out.extend_from_slice(&head.method);
    out.push(b' ');
    out.extend_from_slice(app.app.internal_url.path.as_bytes());
    out.extend_from_slice(rest);
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    if app.app.translate_headers {
        out.extend_from_slice(internal_host.as_bytes());
        let u = &app.app.internal_url;
        if u.port != u.scheme.default_port() {
            out.extend_from_slice(format!(":{}", u.port).as_bytes());
        }
    } else {
        out.extend_from_slice(&head.authority);
    }
    out.extend_from_slice(b"\r\n");
    let xff = forwarded_headers(&app.app, info, head, |h| {
        out.extend_from_slice(&h.name);
        out.extend_from_slice(b": ");
        match backend_header_value(ctx, head, h, internal_host) {
            Some(v) => out.extend_from_slice(&v),
            None => out.extend_from_slice(&h.value),
        }
        out.extend_from_slice(b"\r\n");
    });
    out.extend_from_slice(b"X-Forwarded-For: ");
    out.extend_from_slice(&xff);
    out.extend_from_slice(b"\r\nX-Forwarded-Proto: ");
    out.extend_from_slice(info.scheme.as_str().as_bytes());
    out.extend_from_slice(b"\r\nX-Forwarded-Host: ");
    out.extend_from_slice(&head.authority);
    out.extend_from_slice(b"\r\nX-Request-Id: ");
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(b"\r\n");
    match head.framing {
        Framing::Length(n) => out.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes()),
        Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        _ => {}
    }
    if let Some(up) = &head.upgrade {
        out.extend_from_slice(b"Connection: upgrade\r\nUpgrade: ");
        out.extend_from_slice(up);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"\r\n");
}

async fn proxy(
    ctx: &Exchange<'_>,
    io: &mut Io,
    buf: &mut BytesMut,
    out: &mut Vec<u8>,
    head: RequestHead,
) -> Next {
    let Exchange {
        worker,
        snapshot,
        app,
        info,
        counters,
        id,
    } = *ctx;
    let settings = &snapshot.settings;
    let internal_host = route::internal_host(&app.app, &head.host);
    let target = Target {
        host: internal_host.clone(),
        port: app.app.internal_url.port,
        tls: app.backend_tls.clone(),
        proxy: None,
    };
    let backend_timeout = app.app.backend_timeout.duration();
    let upstream: &Upstream = &worker.upstream;
    let has_body = head.framing.has_body();
    let upgrade = if app.app.websocket {
        head.upgrade.clone()
    } else {
        None
    };
    let head = RequestHead { upgrade, ..head };

    // A backend that closed an idle pooled connection is only noticed on
    // use; a request without a body is safe to send again on a fresh one.
    let mut attempts = 0;
    let started = Instant::now();
    let (mut up, resp) = loop {
        attempts += 1;
        let mut up = match upstream.open(&target).await {
            Ok(c) => c,
            Err(e) => {
                let (status, reason) = if matches!(e, UpstreamError::ConnectTimeout) {
                    (504, FailReason::BackendTimeout)
                } else {
                    (502, FailReason::BackendUnreachable)
                };
                counters.fail(reason);
                tracing::warn!(request_id = id, app = %app.app.name, client = %info.peer, error = %e, "backend unavailable");
                let msg = if status == 504 {
                    "the application's server did not accept a connection in time"
                } else {
                    "the application's server could not be reached"
                };
                return respond_error(info, io, out, &head, status, msg, id).await;
            }
        };
        let reused = up.reused;
        // A backend that stops reading the request is as stuck as one
        // that never answers.
        up.io.write_timeout = backend_timeout;
        out.clear();
        backend_request_head(ctx, &head, &internal_host, out);
        let mut reader = BodyReader::new(head.framing);
        let encoder = if head.framing == Framing::Chunked {
            Encoder::Chunked
        } else {
            Encoder::Identity
        };
        if head.expect_continue && has_body && buf.is_empty() {
            let (res, _) = io.write_all(&b"HTTP/1.1 100 Continue\r\n\r\n"[..]).await;
            if res.is_err() {
                return Next::Close;
            }
        }
        // Stream the request body, the head riding with its first piece.
        let mut sent_ok = true;
        loop {
            let piece = if reader.is_done() {
                None
            } else if !buf.is_empty() || out.is_empty() || !has_body {
                match reader.next(io, buf, settings.request_header_timeout).await {
                    Ok(p) => p,
                    Err(BodyError::Malformed(m)) => {
                        counters.fail(FailReason::ClientError);
                        out.clear();
                        pages::error_page(out, 400, m, id, true, &[]);
                        let _ = write_out(io, out).await;
                        return Next::Close;
                    }
                    Err(BodyError::Timeout) => {
                        out.clear();
                        pages::error_page(
                            out,
                            408,
                            "the request body did not arrive in time",
                            id,
                            true,
                            &[],
                        );
                        let _ = write_out(io, out).await;
                        return Next::Close;
                    }
                    Err(_) => return Next::Close,
                }
            } else {
                // Head first; the body may take a while to arrive.
                if write_out(&mut up.io, out).await.is_err() {
                    sent_ok = false;
                    break;
                }
                continue;
            };
            match piece {
                Some(data) => {
                    bump(&counters.bytes_in, data.len() as u64);
                    info.note(|o| o.bytes_in += data.len() as u64);
                    if encoder == Encoder::Identity && out.is_empty() {
                        let (res, _) = up.io.write_all(data).await;
                        if res.is_err() {
                            sent_ok = false;
                            break;
                        }
                    } else {
                        encoder.encode(&data, out);
                        if write_out(&mut up.io, out).await.is_err() {
                            sent_ok = false;
                            break;
                        }
                    }
                }
                None => {
                    encoder.finish(out);
                    if !out.is_empty() && write_out(&mut up.io, out).await.is_err() {
                        sent_ok = false;
                    }
                    break;
                }
            }
        }
        if !sent_ok {
            if reused && !has_body && attempts < 2 {
                continue;
            }
            counters.fail(FailReason::BackendError);
            let msg = "the connection to the application's server failed";
            return respond_error(info, io, out, &head, 502, msg, id).await;
        }
        // Response head; informational responses other than 101 are dropped.
        let resp = up
            .read_head(head.is_head(), head.upgrade.is_some(), backend_timeout)
            .await;
        match resp {
            Ok(r) => {
                let waited = started.elapsed().as_micros() as u64;
                counters.backend_latency.record(waited);
                info.note(|o| o.backend_us = Some(waited));
                break (up, r);
            }
            Err((502, _)) if reused && !has_body && up.buf.is_empty() && attempts < 2 => continue,
            Err((status, msg)) => {
                counters.fail(if status == 504 {
                    FailReason::BackendTimeout
                } else {
                    FailReason::BackendError
                });
                tracing::warn!(request_id = id, app = %app.app.name, client = %info.peer, status, reason = msg, "backend error");
                // The request body, if any, has been consumed.
                let close = !head.keep_alive;
                info.note(|o| o.status = status);
                out.clear();
                pages::error_page(out, status, msg, id, close, &[]);
                return send_edge_response(io, out, close).await;
            }
        }
    };

    if resp.status == 101 {
        info.note(|o| o.status = 101);
        return Box::pin(relay_upgraded(app, io, buf, out, up, &resp, &head)).await;
    }

    info.note(|o| o.status = resp.status);
    let (mut body, keep_alive) = client_response_head(ctx, &head, &resp, &internal_host, out);
    let table = &snapshot.links;

    // Body, backend → client, the head riding with the first piece.
    let mut reader = BodyReader::new(resp.framing);
    loop {
        // A translated piece grows by a few bytes (longer URLs, chunk
        // framing), and a 16 KiB piece would then leave the edge as a full
        // TLS record plus a tiny one. Reading up to 64 KiB at a time makes
        // that one small record per 64 KiB instead of per 16 KiB; a read
        // still returns whatever has arrived, so streaming is unchanged.
        if body.translating() && up.buf.capacity() - up.buf.len() < TRANSLATE_READ {
            up.buf.reserve(TRANSLATE_READ);
        }
        match reader.next(&mut up.io, &mut up.buf, backend_timeout).await {
            Ok(Some(data)) => {
                bump(&counters.bytes_out, data.len() as u64);
                info.note(|o| o.bytes_out += data.len() as u64);
                if body.passthrough() && out.is_empty() {
                    let (res, _) = io.write_all(data).await;
                    if res.is_err() {
                        return Next::Close;
                    }
                    continue;
                }
                if let Err(e) = body.push(table, &data, out) {
                    body.failed(&e, app, id);
                    let _ = write_out(io, out).await;
                    return Next::Close;
                }
                // Small bodies: keep collecting while the backend's bytes
                // are already here, so a short response is one write.
                if !up.buf.is_empty() && out.len() < 64 * 1024 && !reader.is_done() {
                    continue;
                }
                if reader.is_done() {
                    if let Err(e) = body.finish(table, out) {
                        body.failed(&e, app, id);
                        let _ = write_out(io, out).await;
                        return Next::Close;
                    }
                    if write_out(io, out).await.is_err() {
                        return Next::Close;
                    }
                    break;
                }
                if write_out(io, out).await.is_err() {
                    return Next::Close;
                }
            }
            Ok(None) => {
                if let Err(e) = body.finish(table, out) {
                    body.failed(&e, app, id);
                    let _ = write_out(io, out).await;
                    return Next::Close;
                }
                if !out.is_empty() && write_out(io, out).await.is_err() {
                    return Next::Close;
                }
                break;
            }
            Err(e) => {
                // Mid-body failure: the client must see an incomplete
                // message, never a clean end (ATTACKS 26).
                counters.fail(FailReason::BackendError);
                tracing::warn!(request_id = id, app = %app.app.name, error = ?e, "backend failed mid-response");
                if !out.is_empty() {
                    let _ = write_out(io, out).await;
                }
                return Next::Close;
            }
        }
    }
    if resp.keep_alive && reader.is_done() {
        worker.upstream.release(up);
    }
    if keep_alive {
        Next::KeepAlive
    } else {
        Next::Close
    }
}

/// A response body on its way to the client: its framing, and link
/// translation when the app asks for it. Counts the translation when the
/// response is over, however it ended.
struct BodyOut<'a> {
    pub encoder: Encoder,
    translator: Option<Translator>,
    counters: &'a AppCounters,
}

/// How much a backend read may bring at once while its body is translated.
const TRANSLATE_READ: usize = 64 * 1024;

impl BodyOut<'_> {
    fn translating(&self) -> bool {
        self.translator.is_some()
    }

    /// Whether the backend's bytes may go to the client as they are.
    fn passthrough(&self) -> bool {
        self.encoder == Encoder::Identity && self.translator.is_none()
    }

    /// Appends a piece of the body to `out`, translated and framed.
    fn push(&mut self, table: &Table, data: &[u8], out: &mut Vec<u8>) -> Result<(), Failed> {
        match &mut self.translator {
            None => {
                self.encoder.encode(data, out);
                Ok(())
            }
            Some(t) => self.encoder.encode_with(out, |o| t.push(table, data, o)),
        }
    }

    /// Appends the end of the body to `out`.
    fn finish(&mut self, table: &Table, out: &mut Vec<u8>) -> Result<(), Failed> {
        if let Some(t) = &mut self.translator {
            self.encoder.encode_with(out, |o| t.finish(table, o))?;
        }
        self.encoder.finish(out);
        Ok(())
    }

    /// A translation that failed mid-body: counted and logged; the caller
    /// then closes the connection, so the client sees an incomplete body.
    fn failed(&self, e: &Failed, app: &AppRuntime, id: &str) {
        bump(&self.counters.translate_failed, 1);
        tracing::warn!(request_id = id, app = %app.app.name, error = %e, "link translation stopped the response");
    }
}

impl Drop for BodyOut<'_> {
    fn drop(&mut self) {
        if let Some(t) = &self.translator {
            bump(&self.counters.translated_responses, 1);
            bump(&self.counters.translated_bytes, t.scanned);
            bump(&self.counters.links_translated, t.links());
        }
    }
}

/// The first value of a header, if present.
fn header<'h>(headers: &'h [Header], name: &str) -> Option<&'h [u8]> {
    headers.iter().find(|h| h.is(name)).map(|h| &h.value[..])
}

/// Whether a response body is translated, and how; skips are counted.
fn translation_plan(
    ctx: &Exchange<'_>,
    head: &RequestHead,
    resp: &ResponseHead,
) -> Option<translate::body::Plan> {
    if !ctx.app.app.translate_body || ctx.snapshot.links.is_empty() {
        return None;
    }
    let facts = ResponseFacts {
        status: resp.status,
        head_request: head.is_head() || !resp.framing.has_body(),
        content_type: header(&resp.headers, "content-type"),
        content_encoding: header(&resp.headers, "content-encoding"),
        no_transform: resp.headers.iter().any(|h| {
            h.is("cache-control")
                && h.value
                    .windows(12)
                    .any(|w| w.eq_ignore_ascii_case(b"no-transform"))
        }),
        accept_encoding: header(&head.headers, "accept-encoding"),
    };
    match translate::body::plan(&facts) {
        Ok(p) => Some(p),
        Err(skip) => {
            ctx.counters.translate_skip(skip);
            None
        }
    }
}

/// Writes the head of the response to the client into `out`: hop-by-hop
/// headers dropped, URL headers and cookies translated, HSTS and the
/// request id added, framing chosen for the client. Returns the body's
/// way out and whether the connection stays open.
fn client_response_head<'a>(
    ctx: &Exchange<'a>,
    head: &RequestHead,
    resp: &ResponseHead,
    internal_host: &str,
    out: &mut Vec<u8>,
) -> (BodyOut<'a>, bool) {
    let (app, info, id) = (ctx.app, ctx.info, ctx.id);
    let plan = translation_plan(ctx, head, resp);
    // A translated body's length is known only at its end.
    let framing = match (plan, resp.framing) {
        (Some(_), Framing::Length(_)) => Framing::Chunked,
        (_, f) => f,
    };
    let client_chunked =
        matches!(framing, Framing::Chunked | Framing::UntilClose) && head.minor == 1;
    // A body without a length reaches an HTTP/1.0 client delimited by
    // the connection's end.
    let delimited = matches!(framing, Framing::Length(_) | Framing::Empty);
    let keep_alive = head.keep_alive && (delimited || client_chunked);
    let translate_headers = app.app.translate_headers;
    let int = &app.app.internal_url;
    let ext = &app.app.external_url;
    let scope = CookieScope {
        internal_host,
        external_host: &head.host,
        internal_path: &int.path,
        external_path: &ext.path,
        wildcard: match (&int.host, &ext.host) {
            (HostPattern::Wildcard(i), HostPattern::Wildcard(e)) => Some((i.as_str(), e.as_str())),
            _ => None,
        },
    };
    out.clear();
    out.extend_from_slice(format!("HTTP/1.1 {} ", resp.status).as_bytes());
    out.extend_from_slice(&resp.reason);
    out.extend_from_slice(b"\r\n");
    for h in &resp.headers {
        if is_hop_by_hop(h) || listed_in_connection(h, &resp.connection_tokens) {
            // HEAD and 304 answers describe a body they do not carry.
            if h.is("content-length")
                && resp.framing == Framing::Empty
                && (head.is_head() || resp.status == 304)
            {
                push_header(out, &h.name, &h.value);
            }
            continue;
        }
        if app.hsts.is_some() && h.is("strict-transport-security") {
            continue;
        }
        if let Some(p) = plan {
            if h.is("accept-ranges") || (p.to != p.from && h.is("content-encoding")) {
                continue;
            }
            // The body changes, so a strong validator would lie.
            if h.is("etag") && !h.value.starts_with(b"W/") {
                let mut v = b"W/".to_vec();
                v.extend_from_slice(&h.value);
                push_header(out, &h.name, &v);
                continue;
            }
        }
        if translate_headers {
            let v = if translate::headers::is_url_header(&h.name) {
                ctx.snapshot.links.rewrite_value(&h.value)
            } else if h.is("set-cookie") {
                translate::headers::set_cookie(&h.value, &scope)
            } else {
                None
            };
            if let Some(v) = v {
                push_header(out, &h.name, &v);
                continue;
            }
        }
        push_header(out, &h.name, &h.value);
    }
    if let (Some(hsts), Scheme::Https) = (&app.hsts, info.scheme) {
        push_header(out, b"Strict-Transport-Security", hsts.as_bytes());
    }
    // The id users quote and operators search for, unless the backend
    // has its own.
    if !resp.headers.iter().any(|h| h.is("x-request-id")) {
        push_header(out, b"X-Request-Id", id.as_bytes());
    }
    let encoder = match framing {
        Framing::Length(n) => {
            out.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes());
            Encoder::Identity
        }
        Framing::Empty => {
            if !head.is_head()
                && resp.status != 304
                && resp.status != 204
                && !(100..200).contains(&resp.status)
            {
                out.extend_from_slice(b"Content-Length: 0\r\n");
            }
            Encoder::Identity
        }
        _ if client_chunked => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            Encoder::Chunked
        }
        _ => Encoder::Identity,
    };
    if !keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if head.minor == 0 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    let body = BodyOut {
        encoder,
        translator: plan
            .map(|p| Translator::new(p, ctx.snapshot.settings.translate_max_decoded_size)),
        counters: ctx.counters,
    };
    (body, keep_alive)
}

fn push_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// After a backend's 101: forward its head, then copy bytes both ways until
/// either side closes.
async fn relay_upgraded(
    app: &AppRuntime,
    io: &mut Io,
    buf: &mut BytesMut,
    out: &mut Vec<u8>,
    mut up: UpstreamConn,
    resp: &ResponseHead,
    _head: &RequestHead,
) -> Next {
    let _ = app;
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
    for h in &resp.headers {
        if h.is("connection")
            || h.is("keep-alive")
            || h.is("transfer-encoding")
            || h.is("content-length")
        {
            continue;
        }
        // Set-Cookie on the 101 is kept (Entra application proxy drops it).
        push_header(out, &h.name, &h.value);
    }
    out.extend_from_slice(b"Connection: upgrade\r\n\r\n");
    if !up.buf.is_empty() {
        out.extend_from_slice(&up.buf.split());
    }
    if write_out(io, out).await.is_err() {
        return Next::Close;
    }
    if !buf.is_empty() {
        let data: Bytes = buf.split().freeze();
        let (res, _) = up.io.write_all(data).await;
        if res.is_err() {
            return Next::Close;
        }
    }
    crate::relay::copy_bidirectional(io, &mut up.io).await;
    Next::Close
}
