//! The tunnel hop: a request becomes one HTTP/2 stream on a tunnel of the
//! app's connector group.
//!
//! Picking: least outstanding streams among the group's healthy tunnels,
//! this worker's own first (see `edge::tunnels`). A request the tunnel never took (the connector
//! was going away, or refused the stream before processing it) is tried on
//! another tunnel when the retry rule allows, at most three times in all.
//! A request a connector held when it died is answered 502 with the
//! request id. Bodies stream both ways under HTTP/2 flow control: the
//! window of a response stream is handed back only after its bytes reached
//! the client, so a slow client stalls its own stream and nothing else.

use std::time::Duration;

use bytes::Bytes;
use postern_control::counters::{bump, FailReason};
use postern_control::InternalProtocol;

use super::client::Client;
use super::conn::Bound;
use super::hop::{ClientBody, Hop, HopResponse, Pump};
use super::proxy::Exchange;
use super::response::{RespHead, RespHeaders};
use crate::edge::tunnels::{pick, Lease};
use crate::error::{may_retry, Delivery, ProxyError, Source};
use crate::http1::body::Framing;
use crate::http1::RequestHead;
use crate::io::write_out;
use crate::tunnel::{self, meta};
use crate::worker::Worker;

/// Transmissions of one request: the first, plus retries of a request a
/// connector refused unprocessed. Tunnels that never took the request at
/// all (already going away) are skipped without counting.
const MAX_ATTEMPTS: usize = 3;

pub struct TunnelHop;

pub struct TunnelResponse {
    head: RespHead,
    recv: h2::RecvStream,
    /// The request stream's sending half, kept open for an upgrade.
    send: Option<h2::SendStream<Bytes>>,
    pump: Option<Pump>,
    websocket: bool,
    timeout: Duration,
    /// Body bytes received, checked against Content-Length at the end.
    received: u64,
    /// The connector bound the backend connection to this client: the
    /// tunnel to keep it on.
    bind: Option<u64>,
    _lease: Lease,
}

/// Phase 4 for this hop: the HTTP/2 request for the connector (no body):
/// the request an HTTP/2 backend would get, plus the app's tunnel
/// metadata.
fn build_request(
    ctx: &Exchange<'_>,
    head: &RequestHead,
    websocket: bool,
) -> Result<http::Request<()>, String> {
    use http::header::{HeaderName, HeaderValue};
    let app = ctx.app;
    let mut req = super::request::h2_request(ctx, head, websocket, true)?;
    let map = req.headers_mut();
    let mut conn = HeaderValue::from(ctx.info.id);
    conn.set_sensitive(true);
    map.append(HeaderName::from_static(meta::CONN), conn);
    if !app.app.translate_headers {
        map.append(
            HeaderName::from_static(meta::HOST),
            HeaderValue::from_maybe_shared(head.authority.clone()).map_err(|e| e.to_string())?,
        );
    }
    for (name, value) in &app.tunnel_meta {
        map.append(name.clone(), value.clone());
    }
    Ok(req)
}

/// Whether the connector provably did not process the stream.
fn unprocessed(e: &h2::Error) -> bool {
    e.reason() == Some(h2::Reason::REFUSED_STREAM) || (e.is_go_away() && e.is_remote())
}

/// What a stream's failure before its response says about the request.
/// The connector refusing it (REFUSED_STREAM, or a GOAWAY below its id)
/// means it was not processed. The tunnel itself failing (heartbeat lost,
/// reset, closed by this edge) leaves it unknown, as a reused backend
/// connection closing does: a safe request may go again. A stream the
/// connector reset on purpose is its answer (`None`): never resent.
fn delivery_of(e: &h2::Error) -> Option<Delivery> {
    if unprocessed(e) {
        Some(Delivery::Refused)
    } else if e.is_reset() && e.is_remote() {
        None
    } else {
        Some(Delivery::Unknown)
    }
}

/// Whether a tunnel of `group` is open and taking streams.
fn has_tunnel(worker: &Worker, group: &str) -> bool {
    worker.with_tunnels(|list| list.iter().any(|t| t.group == group && !t.is_closing()))
}

/// Waits (checking every 20 ms) until a tunnel of `group` is open, or
/// `limit` has passed.
async fn wait_for_tunnel(worker: &Worker, group: &str, limit: Duration) {
    let until = std::time::Instant::now() + limit;
    while std::time::Instant::now() < until && !has_tunnel(worker, group) {
        monoio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn connector_error(status: u16, message: &'static str) -> ProxyError {
    let reason = if status == 504 {
        FailReason::BackendTimeout
    } else {
        FailReason::BackendError
    };
    ProxyError::new(Source::Connector, reason, status, message)
}

impl Hop for TunnelHop {
    type Response = TunnelResponse;

    async fn send(
        &mut self,
        ctx: &Exchange<'_>,
        head: &RequestHead,
        body: &mut ClientBody<'_>,
        _out: &mut Vec<u8>,
    ) -> Result<TunnelResponse, ProxyError> {
        let (worker, app) = (ctx.worker, ctx.app);
        let timeout = app.app.backend_timeout.duration();
        let has_body = body.has_body();
        let websocket = app.app.websocket
            && head
                .upgrade
                .as_ref()
                .is_some_and(|u| u.eq_ignore_ascii_case(b"websocket"));
        let group = app.app.connector_group.as_str();
        let build = || {
            build_request(ctx, head, websocket)
                .map_err(|e| ProxyError::client(400, format!("the request cannot be relayed: {e}")))
        };
        // Built once; a retry (rare) builds it again rather than every
        // request paying for a copy.
        let mut first = Some(build()?);
        // A client whose NTLM/Negotiate session lives behind a tunnel
        // stays on that tunnel.
        let held = match *ctx.info.bound.borrow() {
            Some(Bound::Tunnel(serial)) => Some(serial),
            _ => None,
        };
        let mut skip = Vec::new();
        let mut attempts = 0;
        loop {
            // One address holds at most its share of the tunnels' streams
            // (a retry's previous place was given back with its lease).
            let (open, picked) = worker
                .with_tunnels(|list| (list.len(), pick(list, group, worker.index, &skip, held)));
            let Some(source) = worker.tunnels.admit_stream(ctx.info.peer.ip(), open) else {
                bump(&worker.counters.edge.refused_tunnel_streams, 1);
                return Err(ProxyError::client(
                    503,
                    "too many requests from your address are in progress; retry shortly",
                ));
            };
            let Some(mut lease) = picked else {
                // Just took over from the process the connectors were
                // dialed into (a reload or upgrade): they are moving
                // their tunnels here, so wait for one rather than fail.
                if let Some(grace) = crate::runtime::tunnel_grace() {
                    if !has_tunnel(worker, group) {
                        drop(source);
                        wait_for_tunnel(worker, group, grace.min(timeout)).await;
                        if has_tunnel(worker, group) {
                            continue;
                        }
                    }
                }
                return Err(ProxyError::new(
                    Source::Edge,
                    FailReason::NoConnector,
                    502,
                    format!(
                        "no connector of the group \"{group}\" is connected to this edge, so the application cannot be reached"
                    ),
                ));
            };
            lease.source = Some(source);
            bump(&worker.counters.edge.tunnel_requests, 1);
            if lease.cross {
                bump(&worker.counters.edge.cross_core_relays, 1);
            }
            skip.push(lease.tunnel.serial);
            let req = match first.take() {
                Some(r) => r,
                None => build()?,
            };
            let end = !has_body && !websocket;
            let (response, mut body_tx) = match open_stream(&lease, req, end, timeout).await {
                Ok(pair) => pair,
                Err(Opened::Retry) if may_retry(&head.method, has_body, Delivery::NotSent) => {
                    continue
                }
                Err(Opened::Retry) => return Err(connector_error(502, "the tunnel failed")),
                Err(Opened::Failed(e)) => return Err(e),
            };
            attempts += 1;
            // An HTTP/2 backend's body streams alongside the response
            // (gRPC); others go whole before the answer is awaited.
            let duplex = !websocket && app.app.internal_protocol != InternalProtocol::Http1;
            let (response, body_tx, pump) = if duplex {
                let mut p = Pump::new(body_tx, !has_body);
                let r = p
                    .alongside(body, crate::timer::timeout(timeout, response))
                    .await?;
                (r, None, (!p.done).then_some(p))
            } else {
                if !websocket {
                    send_body(body, &mut body_tx).await?;
                }
                let r = crate::timer::timeout(timeout, response).await;
                (r, Some(body_tx), None)
            };
            let response = match response {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    lease.tunnel.close_if_going_away(&e);
                    let retry = delivery_of(&e)
                        .is_some_and(|d| may_retry(&head.method, has_body, d))
                        && attempts < MAX_ATTEMPTS;
                    if retry {
                        continue;
                    }
                    tracing::debug!(request_id = ctx.id, connector = %lease.tunnel.connector, error = %e, "tunnel failed before the response");
                    return Err(connector_error(
                        502,
                        "the connector handling this request failed before answering",
                    ));
                }
                Err(_) => {
                    return Err(connector_error(
                        504,
                        "the application's server did not answer in time",
                    ))
                }
            };
            let (parts, recv) = response.into_parts();
            return into_response(
                head,
                parts,
                recv,
                RequestStream {
                    lease,
                    body_tx,
                    pump,
                },
                websocket,
                timeout,
            );
        }
    }
}

/// Why a stream could not be opened on the picked tunnel.
enum Opened {
    /// The tunnel is unusable (retired now); another may take the request.
    Retry,
    Failed(ProxyError),
}

/// Opens the request's stream on the leased tunnel, waiting (up to
/// `timeout`) for the connector's stream limit to allow it.
async fn open_stream(
    lease: &Lease,
    req: http::Request<()>,
    end: bool,
    timeout: Duration,
) -> Result<(h2::client::ResponseFuture, h2::SendStream<Bytes>), Opened> {
    let tunnel = &lease.tunnel;
    let mut send = match crate::timer::timeout(timeout, tunnel.send.clone().ready()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            tunnel.retire();
            tracing::debug!(error = %e, connector = %tunnel.connector, "tunnel unusable");
            return Err(Opened::Retry);
        }
        Err(_) => {
            return Err(Opened::Failed(connector_error(
                504,
                "the connector did not take the request in time",
            )))
        }
    };
    send.send_request(req, end).map_err(|e| {
        tracing::debug!(error = %e, connector = %tunnel.connector, "tunnel refused a new stream");
        tunnel.retire();
        Opened::Retry
    })
}

/// Streams the client's body onto the request stream. A stream the
/// connector closed stops it early: the answer (or its failure) says what
/// happened, the rest of the body stays unread, and the client connection
/// closes after the answer.
async fn send_body(
    body: &mut ClientBody<'_>,
    tx: &mut h2::SendStream<Bytes>,
) -> Result<(), ProxyError> {
    let has_body = body.has_body();
    while let Some(data) = body.next().await.inspect_err(|_| {
        tx.send_reset(h2::Reason::CANCEL);
    })? {
        if tunnel::send_data(tx, data, false).await.is_err() {
            return Ok(());
        }
    }
    if has_body {
        let _ = tx.send_data(Bytes::new(), true);
    }
    Ok(())
}

/// The request stream's halves the response keeps: the tunnel's lease,
/// and the sending half (an upgrade goes on writing to it).
struct RequestStream {
    lease: Lease,
    body_tx: Option<h2::SendStream<Bytes>>,
    /// The rest of the body, streaming alongside the response.
    pump: Option<Pump>,
}

/// The connector's answer as a response for the core: a backend failure
/// it reports becomes the error it is; otherwise the head keeps the
/// stream's header map as it arrived.
fn into_response(
    head: &RequestHead,
    parts: http::response::Parts,
    recv: h2::RecvStream,
    stream: RequestStream,
    websocket: bool,
    timeout: Duration,
) -> Result<TunnelResponse, ProxyError> {
    let status = parts.status.as_u16();
    if let Some(msg) = parts.headers.get(meta::ERROR) {
        let reason = if status == 504 {
            FailReason::BackendTimeout
        } else {
            FailReason::BackendUnreachable
        };
        let msg = String::from_utf8_lossy(msg.as_bytes()).into_owned();
        return Err(ProxyError::new(Source::Backend, reason, status, msg));
    }
    let server = parts
        .headers
        .get(meta::SERVER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let length = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| crate::http1::parse_content_length(v.as_bytes()));
    let framing = if head.is_head() || status == 204 || status == 304 {
        Framing::Empty
    } else if let Some(n) = length {
        Framing::Length(n)
    } else if recv.is_end_stream() {
        Framing::Empty
    } else {
        Framing::Chunked
    };
    let bind = parts
        .headers
        .contains_key(meta::BOUND)
        .then_some(stream.lease.tunnel.serial);
    let reason = parts.status.canonical_reason().unwrap_or("Unknown");
    Ok(TunnelResponse {
        head: RespHead {
            status,
            reason: Bytes::from_static(reason.as_bytes()),
            headers: RespHeaders::H2(parts.headers),
            framing,
            connection_tokens: Default::default(),
            server,
        },
        recv,
        send: if websocket { stream.body_tx } else { None },
        pump: stream.pump,
        websocket,
        timeout,
        received: 0,
        bind,
        _lease: stream.lease,
    })
}

impl HopResponse for TunnelResponse {
    fn head(&self) -> &RespHead {
        &self.head
    }

    fn upgraded(&self) -> bool {
        self.websocket && self.head.status == 200
    }

    async fn next(&mut self, _large: bool) -> Result<Option<Bytes>, ProxyError> {
        if self.head.framing == Framing::Empty {
            return Ok(None);
        }
        match crate::timer::timeout(self.timeout, self.recv.data()).await {
            Ok(Some(Ok(data))) => {
                self.received += data.len() as u64;
                Ok(Some(data))
            }
            Ok(None) => match self.head.framing {
                Framing::Length(want) if want != self.received => Err(connector_error(
                    502,
                    "the response ended before its declared length",
                )),
                _ => Ok(None),
            },
            Ok(Some(Err(_))) => Err(connector_error(
                502,
                "the tunnel failed in the middle of the response",
            )),
            Err(_) => Err(connector_error(
                504,
                "the response body stalled past the backend timeout",
            )),
        }
    }

    fn more_ready(&self) -> bool {
        self.head.framing == Framing::Empty || self.recv.is_end_stream()
    }

    fn consumed(&mut self, n: usize) {
        tunnel::release(&mut self.recv, n);
    }

    fn finish(self, ctx: &Exchange<'_>) {
        if let Some(serial) = self.bind {
            *ctx.info.bound.borrow_mut() = Some(Bound::Tunnel(serial));
        }
    }

    fn request_pump(&mut self) -> Option<Pump> {
        self.pump.take()
    }

    async fn trailers(&mut self) -> Option<http::HeaderMap> {
        self.recv.trailers().await.ok().flatten()
    }

    // The request's receiving half is the relay's alone once upgraded (its
    // body is over); the cell is held for the relay's life on purpose.
    #[allow(clippy::await_holding_refcell_ref)]
    async fn relay_upgraded(
        mut self,
        client: &mut Client<'_>,
        out: &mut Vec<u8>,
        early: Bytes,
        idle: std::time::Duration,
    ) {
        let Some(mut tx) = self.send.take() else {
            return;
        };
        match client {
            Client::H1 { io, .. } => {
                if write_out(io, out).await.is_err() {
                    return;
                }
                crate::relay::over_stream(io, early, &mut tx, &mut self.recv, idle).await;
            }
            Client::H2(s) => {
                let Some(mut client_tx) = s.take_body() else {
                    return;
                };
                let mut client_rx = s.recv.borrow_mut();
                crate::relay::streams(
                    &mut client_rx,
                    &mut client_tx,
                    &mut self.recv,
                    &mut tx,
                    idle,
                )
                .await;
            }
        }
    }
}
