//! The proxy core: the life of every request, in named phases.
//!
//! 1. **request filter** — one normal form of the path ([`super::path`]),
//!    and the loop guard (a request carrying this edge's `Via` mark is
//!    answered 508);
//! 2. **route** — (listener scheme, host, longest path prefix) → app, or an
//!    edge answer (421, 404, a redirect);
//! 3. **policy** — whether this request may reach the app (enabled,
//!    source addresses), and for pre-authenticated apps who is asking and
//!    whether they may ([`crate::auth::gate`]);
//! 4. **upstream request** — what the backend sees ([`super::request`]);
//! 5. **send** — the [`Hop`] carries the request and its body, and brings
//!    back the response head; retries follow one rule
//!    ([`crate::error::may_retry`]);
//! 6. **response head** — headers translated, HSTS and the request id
//!    added, framing chosen ([`super::response::client_head`]);
//! 7. **body filter** — the body streamed out, translated if the app asks;
//! 8. **log** — counters and the access-log line.
//!
//! The direct hop and the tunnel hop are two implementations of phase 5;
//! every other phase exists once. Any failure is a [`ProxyError`], and
//! [`fail`] is the one place that turns it into what the client sees.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use postern_control::counters::{bump, AppCounters, FailReason};
use postern_control::{InternalProtocol, Preauth, Scheme};

use super::client::Client;
use super::conn::{ConnInfo, Next, Outcome};
use super::hop::{ClientBody, Hop, HopResponse, Pump};
use super::response::{client_head, client_head_h2, upgrade_head, upgrade_head_h2};
use crate::accesslog;
use crate::auth::gate::{self, Gate};
use crate::auth::Opened;
use crate::error::ProxyError;
use crate::http1::RequestHead;
use crate::pages;
use crate::route::{self, Route};
use crate::snapshot::{AppRuntime, Snapshot};
use crate::worker::Worker;

/// What one proxied request needs besides the streams.
pub struct Exchange<'a> {
    pub worker: &'a Rc<Worker>,
    pub snapshot: &'a Arc<Snapshot>,
    pub app: &'a AppRuntime,
    pub info: &'a ConnInfo,
    pub counters: &'a AppCounters,
    pub id: &'a str,
    /// The internal host for this request (a wildcard's label filled in).
    pub internal_host: String,
    /// The signed-in user (pre-authenticated apps).
    pub who: Option<Rc<Opened>>,
}

/// An answer the edge makes itself, before anything reached a backend.
enum Answer {
    Error(u16, &'static str),
    Redirect(String),
}

/// Handles one request (phases 1–8) and writes its access-log line.
pub async fn handle(
    worker: &Rc<Worker>,
    snapshot: &Arc<Snapshot>,
    client: &mut Client<'_>,
    out: &mut Vec<u8>,
    info: &ConnInfo,
    head: RequestHead,
) -> Next {
    let started = Instant::now();
    info.outcome.set(Outcome::default());
    let id = worker.next_request_id();
    let mut log = accesslog::enabled().then(|| LogLine {
        snapshot,
        info,
        method: head.method.clone(),
        path: head.path.clone(),
        started,
        done: false,
        id,
    });
    let next = run(worker, snapshot, client, out, info, head, &id).await;
    // Phase 8: log (on drop; a request whose client reset its stream is
    // dropped midway and logged as 499).
    if let Some(l) = &mut log {
        l.done = true;
    }
    next
}

/// The access-log line of one request, written when the request ends,
/// however it ends.
struct LogLine<'a> {
    snapshot: &'a Snapshot,
    info: &'a ConnInfo,
    method: Bytes,
    path: Bytes,
    started: Instant,
    done: bool,
    id: crate::worker::RequestId,
}

impl Drop for LogLine<'_> {
    fn drop(&mut self) {
        let o = self.info.outcome.get();
        accesslog::log(&accesslog::Entry {
            request_id: &self.id,
            app: o.app.map(|a| self.snapshot.apps[a].app.name.as_str()),
            client: &self.info.client_ip,
            method: &self.method,
            path: &self.path,
            // The client gave up before the response was over.
            status: if self.done { o.status } else { 499 },
            bytes_in: o.bytes_in,
            bytes_out: o.bytes_out,
            total_us: self.started.elapsed().as_micros() as u64,
            backend_us: o.backend_us,
        });
    }
}

#[allow(clippy::too_many_arguments)]
async fn run(
    worker: &Rc<Worker>,
    snapshot: &Arc<Snapshot>,
    client: &mut Client<'_>,
    out: &mut Vec<u8>,
    info: &ConnInfo,
    head: RequestHead,
    id: &str,
) -> Next {
    // Phase 1: request filter.
    let (head, encoded_slash) = match super::path::normalize(&head.path) {
        Ok(n) => (
            RequestHead {
                path: n.target,
                ..head
            },
            n.encoded_slash,
        ),
        Err(msg) => {
            bump(&worker.counters.edge.bad_requests, 1);
            return answer(info, client, out, &head, Answer::Error(400, msg), id).await;
        }
    };
    if super::headers::is_loop(&head) {
        bump(&worker.counters.edge.bad_requests, 1);
        tracing::warn!(request_id = id, host = %head.host, "a request came back to this edge: an app points at the edge itself");
        let msg = "this request came back to the edge that sent it; an application points at the edge itself";
        return answer(info, client, out, &head, Answer::Error(508, msg), id).await;
    }
    // Phase 2: route.
    let app_id = match route(snapshot, info, &head) {
        Ok(a) => a,
        Err(a) => {
            bump(&worker.counters.edge.requests_unrouted, 1);
            return answer(info, client, out, &head, a, id).await;
        }
    };
    let app = &snapshot.apps[app_id];
    info.note(|o| o.app = Some(app_id));
    if encoded_slash && !app.app.allow_encoded_slash {
        bump(&worker.counters.edge.bad_requests, 1);
        let refused = Answer::Error(400, super::path::ENCODED_SLASH);
        return answer(info, client, out, &head, refused, id).await;
    }
    let counters = worker.app_counters(snapshot, app_id);
    bump(&counters.requests, 1);
    // Phase 3: policy.
    if let Err((reason, status, msg)) = policy(app, info, &head) {
        counters.fail(reason);
        return answer(info, client, out, &head, Answer::Error(status, msg), id).await;
    }
    let who = if app.app.preauth == Preauth::Oidc {
        let req = gate::Req {
            worker,
            app,
            info,
            head: &head,
            id,
            counters: &counters,
        };
        match gate::gate(&req, out).await {
            Gate::Pass(who) => who,
            Gate::Answered { status, close } => {
                info.note(|o| o.status = status);
                return match client.send_composed(out, close).await {
                    Next::Close if head.framing.has_body() => Next::Linger,
                    n => n,
                };
            }
        }
    } else {
        None
    };
    let ctx = Exchange {
        worker,
        snapshot,
        app,
        info,
        counters: &counters,
        id,
        internal_host: route::internal_host(&app.app, &head.host),
        who,
    };
    // Phases 4–7, over the app's hop.
    if snapshot.settings.tunnel_address.is_some() {
        forward(&ctx, super::tunnel::TunnelHop, client, out, head).await
    } else if app.app.internal_protocol != InternalProtocol::Http1 {
        // Boxed, so its larger state does not size every request's.
        Box::pin(forward(
            &ctx,
            super::direct_h2::DirectH2Hop,
            client,
            out,
            head,
        ))
        .await
    } else {
        forward(&ctx, super::direct::DirectHop, client, out, head).await
    }
}

/// Phase 2: the app for this request, or the edge's own answer.
fn route(snapshot: &Snapshot, info: &ConnInfo, head: &RequestHead) -> Result<usize, Answer> {
    if info.sni.as_deref().is_some_and(|sni| *sni != *head.host) {
        return Err(Answer::Error(
            421,
            "this connection was opened for a different host name; open a new connection",
        ));
    }
    match snapshot.router.lookup(info.scheme, &head.host, &head.path) {
        Route::App(a) => Ok(a),
        Route::AddSlash(_) => {
            let (p, q) = match memchr::memchr(b'?', &head.path) {
                Some(i) => (&head.path[..i], &head.path[i..]),
                None => (&head.path[..], &b""[..]),
            };
            Err(Answer::Redirect(format!(
                "{}/{}",
                String::from_utf8_lossy(p),
                String::from_utf8_lossy(q)
            )))
        }
        Route::NotFound => {
            // An http request for an app published only over https.
            if info.scheme == Scheme::Http
                && snapshot
                    .router
                    .lookup(Scheme::Https, &head.host, &head.path)
                    != Route::NotFound
            {
                let port = match snapshot.https_port {
                    Some(443) | None => String::new(),
                    Some(p) => format!(":{p}"),
                };
                return Err(Answer::Redirect(format!(
                    "https://{}{port}{}",
                    head.host,
                    String::from_utf8_lossy(&head.path)
                )));
            }
            Err(Answer::Error(
                404,
                "no application is published at this address",
            ))
        }
    }
}

/// Phase 3: whether the request may reach the app at all.
fn policy(
    app: &AppRuntime,
    info: &ConnInfo,
    head: &RequestHead,
) -> Result<(), (FailReason, u16, &'static str)> {
    if !app.app.enabled {
        return Err((
            FailReason::Disabled,
            503,
            "this application is disabled by its administrator",
        ));
    }
    let cidrs = &app.app.access.source_cidrs;
    if !cidrs.is_empty() && !postern_control::config::any_contains(cidrs, info.peer.ip()) {
        return Err((
            FailReason::Forbidden,
            403,
            "this application is not available from your network address",
        ));
    }
    if head.upgrade.is_some() && head.framing.has_body() {
        return Err((
            FailReason::ClientError,
            400,
            "an upgrade request may not carry a body",
        ));
    }
    Ok(())
}

/// How much of a request body is read before the hop opens a tunnel
/// stream or a backend connection (see [`ClientBody::read_ahead`]).
const READ_AHEAD: usize = 64 * 1024;

/// Phases 5–7: send over `hop`, then relay the response.
async fn forward<H: Hop>(
    ctx: &Exchange<'_>,
    mut hop: H,
    client: &mut Client<'_>,
    out: &mut Vec<u8>,
    head: RequestHead,
) -> Next {
    let started = Instant::now();
    if let Client::H2(s) = client {
        // An HTTP/2 stream's body is read through its own cell, so it can
        // go on streaming while the response is written (HTTP/2 backends:
        // gRPC's bidirectional calls). Boxed: HTTP/1.1 requests (and the
        // connections waiting on them) do not carry this path's state.
        let mut body = ClientBody::detached(ctx, s, &head);
        return Box::pin(async move {
            let sent = send(ctx, &mut hop, &head, &mut body, out).await;
            match sent {
                Ok(mut resp) => {
                    let mut pump = resp.request_pump();
                    let duplex = pump.as_mut().map(|p| (p, &mut body));
                    respond(ctx, client, out, &head, resp, true, started, duplex).await
                }
                Err(e) => fail(ctx, client, out, &head, e, true).await,
            }
        })
        .await;
    }
    let mut body = ClientBody::new(ctx, client, &head);
    let mut sent = send(ctx, &mut hop, &head, &mut body, out).await;
    // An HTTP/1.1 client's body goes to an HTTP/2 backend whole before
    // the response is written: the connection reads one or the other.
    if let Ok(resp) = &mut sent {
        if let Some(mut pump) = resp.request_pump() {
            while let Ok(true) = pump.step(&mut body).await {}
        }
    }
    // Whatever the hop did, a body not read to its end must not be parsed
    // as the next request: the connection then closes after the answer.
    let body_read = body.is_done();
    let next = match sent {
        Ok(resp) => respond(ctx, client, out, &head, resp, body_read, started, None).await,
        Err(e) => fail(ctx, client, out, &head, e, body_read).await,
    };
    match next {
        Next::Close if !body_read => Next::Linger,
        n => n,
    }
}

/// Phase 5: the body read ahead (unless it streams alongside the
/// response, to an HTTP/2 backend), then the hop.
async fn send<H: Hop>(
    ctx: &Exchange<'_>,
    hop: &mut H,
    head: &RequestHead,
    body: &mut ClientBody<'_>,
    out: &mut Vec<u8>,
) -> Result<H::Response, ProxyError> {
    if ctx.app.app.internal_protocol == InternalProtocol::Http1 {
        body.read_ahead(READ_AHEAD).await?;
    } else {
        body.streaming();
    }
    crate::io::out_ready(out);
    hop.send(ctx, head, body, out).await
}

/// The response's next piece; meanwhile, the rest of the request body
/// goes on to the backend when it streams alongside (`duplex`).
async fn next_piece<R: HopResponse>(
    resp: &mut R,
    large: bool,
    duplex: &mut Option<(&mut Pump, &mut ClientBody<'_>)>,
) -> Result<Option<Bytes>, ProxyError> {
    let Some((pump, body)) = duplex else {
        return resp.next(large).await;
    };
    // Boxed: only streaming calls take this path, and its futures would
    // otherwise size every response's state (held by every connection
    // waiting on a response).
    match Box::pin(pump.alongside(body, resp.next(large))).await {
        Ok(r) => r,
        // The client failed mid-body and its request stream was reset; the
        // backend's answer to that ends the response.
        Err(_) => resp.next(large).await,
    }
}

/// Phases 6–7: the response head and body to the client.
#[allow(clippy::too_many_arguments)]
async fn respond<R: HopResponse>(
    ctx: &Exchange<'_>,
    client: &mut Client<'_>,
    out: &mut Vec<u8>,
    head: &RequestHead,
    mut resp: R,
    body_read: bool,
    started: Instant,
    mut duplex: Option<(&mut Pump, &mut ClientBody<'_>)>,
) -> Next {
    let waited = started.elapsed().as_micros() as u64;
    ctx.counters.backend_latency.record(waited);
    ctx.info.note(|o| o.backend_us = Some(waited));

    if resp.upgraded() {
        ctx.info.note(|o| o.status = 101);
        let early = match client {
            Client::H1 { buf, .. } => {
                let protocol = head.upgrade.clone().unwrap_or_default();
                upgrade_head(resp.head(), &protocol, out);
                buf.split().freeze()
            }
            Client::H2(s) => {
                if s.send_head(upgrade_head_h2(resp.head()), false).is_err() {
                    return Next::Close;
                }
                Bytes::new()
            }
        };
        // Counted open while it lasts (however it ends), and bounded by
        // the app's WebSocket limits.
        struct Open<'c>(&'c AppCounters);
        impl Drop for Open<'_> {
            fn drop(&mut self) {
                self.0.websocket(false);
            }
        }
        ctx.counters.websocket(true);
        let _open = Open(ctx.counters);
        let app = &ctx.app.app;
        let relay = resp.relay_upgraded(client, out, early, app.websocket_idle_timeout);
        let _ = crate::timer::timeout(app.websocket_timeout, relay).await;
        return Next::Close;
    }

    // Phase 6: response head.
    let status = resp.head().status;
    ctx.info.note(|o| o.status = status);
    let (mut body, keep_alive) = match client {
        Client::H1 { .. } => client_head(ctx, head, resp.head(), body_read, out),
        Client::H2(s) => {
            let (body, h2_head, empty) = client_head_h2(ctx, head, resp.head());
            if s.send_head(h2_head, empty).is_err() {
                return Next::Close;
            }
            (body, true)
        }
    };

    // Phase 7: body filter, the head riding with the first piece.
    let table = &ctx.snapshot.links;
    loop {
        match next_piece(&mut resp, body.translating(), &mut duplex).await {
            Ok(Some(data)) => {
                let n = data.len();
                bump(&ctx.counters.bytes_out, n as u64);
                ctx.info.note(|o| o.bytes_out += n as u64);
                if body.passthrough() && out.is_empty() {
                    if client.write_bytes(data).await.is_err() {
                        return Next::Close;
                    }
                    resp.consumed(n);
                    continue;
                }
                if let Err(e) = body.push(table, &data, out) {
                    body.failed(&e, ctx.app, ctx.id);
                    let _ = client.write_out(out).await;
                    cut_short(client);
                    return Next::Close;
                }
                // Small bodies: keep collecting while the backend's bytes
                // are already here, so a short response is one write.
                let collect = resp.more_ready() && out.len() < 64 * 1024;
                if !collect && !out.is_empty() && client.write_out(out).await.is_err() {
                    return Next::Close;
                }
                resp.consumed(n);
            }
            Ok(None) => {
                if let Err(e) = body.finish(table, out) {
                    body.failed(&e, ctx.app, ctx.id);
                    let _ = client.write_out(out).await;
                    cut_short(client);
                    return Next::Close;
                }
                body.count();
                if !out.is_empty() && client.write_out(out).await.is_err() {
                    return Next::Close;
                }
                if let Client::H2(s) = client {
                    let trailers = resp.trailers().await;
                    if s.end(trailers).await.is_err() {
                        return Next::Close;
                    }
                }
                break;
            }
            Err(e) => {
                // Mid-body failure: the client must see an incomplete
                // message, never a clean end (attack case 26).
                ctx.counters.fail(e.reason);
                tracing::warn!(request_id = ctx.id, app = %ctx.app.app.name, source = ?e.source, error = %e.message, "response failed mid-body");
                if !out.is_empty() {
                    let _ = client.write_out(out).await;
                }
                cut_short(client);
                return Next::Close;
            }
        }
    }
    resp.finish(ctx);
    Next::from_keep_alive(keep_alive)
}

/// A response that cannot be completed: over HTTP/2 the stream is reset
/// (the connection closing does it for HTTP/1.1).
fn cut_short(client: &mut Client<'_>) {
    if let Client::H2(s) = client {
        s.reset(h2::Reason::INTERNAL_ERROR);
    }
}

/// The one mapping from a failure before the response to what the client
/// sees: counted, logged (unless it is the client's own), answered with
/// its status and page, and the connection closed when the client's
/// stream cannot be trusted or its body was not read to the end.
async fn fail(
    ctx: &Exchange<'_>,
    client: &mut Client<'_>,
    out: &mut Vec<u8>,
    head: &RequestHead,
    e: ProxyError,
    body_read: bool,
) -> Next {
    ctx.counters.fail(e.reason);
    if e.source != crate::error::Source::Client {
        tracing::warn!(request_id = ctx.id, app = %ctx.app.app.name, client = %ctx.info.peer, source = ?e.source, status = ?e.status, reason = %e.message, "request failed");
        crate::admin::recent::record(crate::admin::recent::Failure {
            at_ms: crate::admin::recent::now_ms(),
            request_id: ctx.id.to_string(),
            app: ctx.app.app.name.clone(),
            method: String::from_utf8_lossy(&head.method).into_owned(),
            path: String::from_utf8_lossy(&head.path).into_owned(),
            status: e.status,
            source: format!("{:?}", e.source).to_lowercase(),
            reason: e.message.to_string(),
        });
    }
    let Some(status) = e.status else {
        return Next::Close;
    };
    let close = e.closes() || !head.keep_alive || !body_read;
    ctx.info.note(|o| o.status = status);
    out.clear();
    // A 503 is the edge shedding load: worth retrying shortly.
    let extra: &[(&str, &str)] = if status == 503 {
        &[("Retry-After", "1")]
    } else {
        &[]
    };
    pages::error_page(out, status, &e.message, ctx.id, close, extra);
    client.send_composed(out, close).await
}

/// The edge's own answer before any body was read: the connection is kept
/// only when the request had no body (an unread body would be parsed as
/// the next request).
async fn answer(
    info: &ConnInfo,
    client: &mut Client<'_>,
    out: &mut Vec<u8>,
    head: &RequestHead,
    a: Answer,
    id: &str,
) -> Next {
    let close = !head.keep_alive || head.framing.has_body();
    out.clear();
    crate::io::out_ready(out);
    let status = match a {
        Answer::Error(status, msg) => {
            pages::error_page(out, status, msg, id, close, &[]);
            status
        }
        Answer::Redirect(location) => {
            let status = if matches!(&head.method[..], b"GET" | b"HEAD") {
                301
            } else {
                308
            };
            pages::redirect(out, status, &location, id, close);
            status
        }
    };
    info.note(|o| o.status = status);
    match client.send_composed(out, close).await {
        Next::Close if head.framing.has_body() => Next::Linger,
        n => n,
    }
}
