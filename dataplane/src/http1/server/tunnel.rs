//! The edge half of a relayed request: an HTTP/1.1 request from a client
//! becomes one HTTP/2 stream on a tunnel of the app's connector group.
//!
//! Picking: least outstanding streams among the group's healthy tunnels,
//! this worker's first. A request the tunnel never took (the connector
//! was going away, or refused the stream before processing it) is tried on
//! another tunnel, at most three times in all, and only when replaying it
//! is harmless: the request had no body and an idempotent method. A
//! request a connector held when it died is answered 502 with the request
//! id. Bodies stream both ways under HTTP/2 flow control: the window of a
//! response stream is handed back only after its bytes reached the
//! client, so a slow client stalls its own stream and nothing else.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use postern_control::counters::{bump, FailReason};

use super::{
    backend_header_value, client_response_head, forwarded_headers, push_header, respond_error,
    send_edge_response, Exchange, Next,
};
use crate::http1::body::{BodyError, BodyReader, Framing};
use crate::http1::{Header, RequestHead, ResponseHead};
use crate::io::{write_out, Io};
use crate::pages;
use crate::route;
use crate::tunnel::edge::pick;
use crate::tunnel::{self, meta};

/// Transmissions of one request: the first, plus retries of a request a
/// connector refused unprocessed. Tunnels that never took the request at
/// all (already going away) are skipped without counting.
const MAX_ATTEMPTS: usize = 3;

fn idempotent(method: &[u8]) -> bool {
    matches!(
        method,
        b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE" | b"PUT" | b"DELETE"
    )
}

/// The HTTP/2 request for the connector (no body). Headers go straight
/// into the request's map (no builder moves); values share the client's
/// bytes, and the app's tunnel metadata was built once per snapshot.
fn build_request(
    ctx: &Exchange<'_>,
    head: &RequestHead,
    internal_host: &str,
    websocket: bool,
) -> Result<http::Request<()>, String> {
    use http::header::{HeaderName, HeaderValue};
    let app = ctx.app;
    let int = &app.app.internal_url;
    let ext_path = app.app.external_url.path.as_bytes();
    let rest = &head.path[ext_path.len().min(head.path.len())..];
    let mut path = Vec::with_capacity(int.path.len() + rest.len());
    path.extend_from_slice(int.path.as_bytes());
    path.extend_from_slice(rest);
    let authority = route::internal_authority(&app.app, internal_host);
    let uri = http::Uri::builder()
        .scheme(int.scheme.as_str())
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|e| e.to_string())?;
    let mut req = http::Request::new(());
    *req.uri_mut() = uri;
    if websocket {
        *req.method_mut() = http::Method::CONNECT;
        req.extensions_mut()
            .insert(h2::ext::Protocol::from_static("websocket"));
    } else {
        *req.method_mut() = http::Method::from_bytes(&head.method).map_err(|e| e.to_string())?;
    }
    let map = req.headers_mut();
    map.reserve(head.headers.len() + 8);
    let mut bad = None;
    let xff = forwarded_headers(&app.app, ctx.info, head, |h| {
        let value = match backend_header_value(ctx, head, h, internal_host) {
            Some(v) => HeaderValue::from_maybe_shared(Bytes::from(v)),
            None => HeaderValue::from_maybe_shared(h.value.clone()),
        };
        match (HeaderName::from_bytes(&h.name), value) {
            (Ok(name), Ok(value)) => {
                map.append(name, value);
            }
            _ => bad = Some(String::from_utf8_lossy(&h.name).into_owned()),
        }
    });
    if let Some(name) = bad {
        return Err(format!("the header `{name}` cannot be relayed over HTTP/2"));
    }
    let value = |b: &[u8]| HeaderValue::from_bytes(b).map_err(|e| e.to_string());
    map.append(HeaderName::from_static("x-forwarded-for"), value(&xff)?);
    map.append(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static(ctx.info.scheme.as_str()),
    );
    map.append(
        HeaderName::from_static("x-forwarded-host"),
        HeaderValue::from_maybe_shared(head.authority.clone()).map_err(|e| e.to_string())?,
    );
    map.append(
        HeaderName::from_static("x-request-id"),
        value(ctx.id.as_bytes())?,
    );
    if let Framing::Length(n) = head.framing {
        map.append(http::header::CONTENT_LENGTH, HeaderValue::from(n));
    }
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

pub(super) async fn proxy(
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
    let timeout = app.app.backend_timeout.duration();
    let has_body = head.framing.has_body();
    let websocket = app.app.websocket
        && head
            .upgrade
            .as_ref()
            .is_some_and(|u| u.eq_ignore_ascii_case(b"websocket"));
    let group = app.app.connector_group.as_str();
    let replayable = !has_body && idempotent(&head.method);
    let started = Instant::now();
    let mut skip = Vec::new();
    let mut attempts = 0;

    let (lease, response, body_tx) = loop {
        let list = worker.tunnel_list();
        let Some((lease, cross)) = pick(&list, group, worker.index, &skip) else {
            counters.fail(FailReason::NoConnector);
            let msg = format!(
                "no connector of the group \"{group}\" is connected to this edge, so the application cannot be reached"
            );
            tracing::warn!(request_id = id, app = %app.app.name, group, "no connector available");
            return respond_error(info, io, out, &head, 502, &msg, id).await;
        };
        bump(&worker.counters.edge.tunnel_requests, 1);
        if cross {
            bump(&worker.counters.edge.cross_core_relays, 1);
        }
        let tunnel = lease.0.clone();
        skip.push(tunnel.serial);
        let req = match build_request(ctx, &head, &internal_host, websocket) {
            Ok(r) => r,
            Err(e) => {
                counters.fail(FailReason::ClientError);
                let msg = format!("the request cannot be relayed: {e}");
                return respond_error(info, io, out, &head, 400, &msg, id).await;
            }
        };
        let ready = monoio::time::timeout(timeout, tunnel.send.clone().ready()).await;
        let mut send = match ready {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                // Never transmitted: any request may go elsewhere.
                tunnel.retire();
                tracing::debug!(error = %e, connector = %tunnel.connector, "tunnel unusable");
                continue;
            }
            Err(_) => {
                counters.fail(FailReason::BackendTimeout);
                let msg = "the connector did not take the request in time";
                return respond_error(info, io, out, &head, 504, msg, id).await;
            }
        };
        let end = !has_body && !websocket;
        let (response, mut body_tx) = match send.send_request(req, end) {
            Ok(pair) => pair,
            Err(e) => {
                // Never transmitted: any request may go elsewhere.
                tracing::debug!(error = %e, connector = %tunnel.connector, "tunnel refused a new stream");
                tunnel.retire();
                continue;
            }
        };
        attempts += 1;
        if websocket {
            match monoio::time::timeout(timeout, response).await {
                Ok(Ok(r)) => break (lease, Ok(r), Some(body_tx)),
                Ok(Err(_)) => break (lease, Err(502), None),
                Err(_) => break (lease, Err(504), None),
            }
        }
        if has_body {
            if head.expect_continue && buf.is_empty() {
                let (res, _) = io.write_all(&b"HTTP/1.1 100 Continue\r\n\r\n"[..]).await;
                if res.is_err() {
                    return Next::Close;
                }
            }
            let mut reader = BodyReader::new(head.framing);
            loop {
                match reader.next(io, buf, settings.request_header_timeout).await {
                    Ok(Some(data)) => {
                        bump(&counters.bytes_in, data.len() as u64);
                        info.note(|o| o.bytes_in += data.len() as u64);
                        if tunnel::send_data(&mut body_tx, data, false).await.is_err() {
                            // The answer (or its failure) says what happened.
                            break;
                        }
                    }
                    Ok(None) => {
                        let _ = body_tx.send_data(Bytes::new(), true);
                        break;
                    }
                    Err(e) => {
                        body_tx.send_reset(h2::Reason::CANCEL);
                        let (status, msg) = match e {
                            BodyError::Malformed(m) => (400, m),
                            BodyError::Timeout => (408, "the request body did not arrive in time"),
                            _ => return Next::Close,
                        };
                        counters.fail(FailReason::ClientError);
                        out.clear();
                        pages::error_page(out, status, msg, id, true, &[]);
                        let _ = write_out(io, out).await;
                        return Next::Close;
                    }
                }
            }
        }
        match monoio::time::timeout(timeout, response).await {
            Ok(Ok(r)) => break (lease, Ok(r), None),
            Ok(Err(e)) if unprocessed(&e) && replayable && attempts < MAX_ATTEMPTS => {
                tunnel.close_if_going_away(&e);
                continue;
            }
            Ok(Err(e)) => {
                tunnel.close_if_going_away(&e);
                tracing::warn!(request_id = id, app = %app.app.name, connector = %tunnel.connector, error = %e, "tunnel failed before the response");
                break (lease, Err(502), None);
            }
            Err(_) => break (lease, Err(504), None),
        }
    };
    let _lease = lease;

    let (parts, mut recv) = match response {
        Ok(r) => r.into_parts(),
        Err(status) => {
            let (reason, msg) = if status == 504 {
                (
                    FailReason::BackendTimeout,
                    "the application's server did not answer in time",
                )
            } else {
                (
                    FailReason::BackendError,
                    "the connector handling this request failed before answering",
                )
            };
            counters.fail(reason);
            return error_after_body(info, io, out, &head, status, msg, id).await;
        }
    };
    if let Some(msg) = parts.headers.get(meta::ERROR) {
        let status = parts.status.as_u16();
        counters.fail(match status {
            504 => FailReason::BackendTimeout,
            _ => FailReason::BackendUnreachable,
        });
        let msg = String::from_utf8_lossy(msg.as_bytes()).into_owned();
        tracing::warn!(request_id = id, app = %app.app.name, status, reason = %msg, "connector reported a backend error");
        return error_after_body(info, io, out, &head, status, &msg, id).await;
    }
    let waited = started.elapsed().as_micros() as u64;
    counters.backend_latency.record(waited);
    info.note(|o| o.backend_us = Some(waited));

    let status = parts.status.as_u16();
    let headers: Vec<Header> = parts
        .headers
        .iter()
        .map(|(n, v)| Header {
            name: Bytes::copy_from_slice(n.as_str().as_bytes()),
            value: Bytes::copy_from_slice(v.as_bytes()),
        })
        .collect();
    if let (Some(body_tx), true) = (body_tx, websocket && status == 200) {
        info.note(|o| o.status = 101);
        return Box::pin(websocket_relay(io, buf, out, &headers, body_tx, recv)).await;
    }
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
    let resp = ResponseHead {
        status,
        reason: Bytes::from_static(
            parts
                .status
                .canonical_reason()
                .unwrap_or("Unknown")
                .as_bytes(),
        ),
        headers,
        framing,
        keep_alive: true,
        connection_tokens: Vec::new(),
    };
    info.note(|o| o.status = status);
    let (mut body, keep_alive) = client_response_head(ctx, &head, &resp, &internal_host, out);
    let table = &snapshot.links;
    if framing == Framing::Empty {
        if write_out(io, out).await.is_err() {
            return Next::Close;
        }
        return if keep_alive {
            Next::KeepAlive
        } else {
            Next::Close
        };
    }
    let mut sent: u64 = 0;
    loop {
        match monoio::time::timeout(timeout, recv.data()).await {
            Ok(Some(Ok(data))) => {
                let n = data.len();
                sent += n as u64;
                bump(&counters.bytes_out, n as u64);
                info.note(|o| o.bytes_out += n as u64);
                if body.passthrough() && out.is_empty() {
                    let (res, _) = io.write_all(data).await;
                    if res.is_err() {
                        return Next::Close;
                    }
                } else {
                    if let Err(e) = body.push(table, &data, out) {
                        body.failed(&e, app, id);
                        let _ = write_out(io, out).await;
                        return Next::Close;
                    }
                    if !out.is_empty() && write_out(io, out).await.is_err() {
                        return Next::Close;
                    }
                }
                tunnel::release(&mut recv, n);
            }
            Ok(None) => {
                if let Framing::Length(want) = framing {
                    if sent != want {
                        return Next::Close;
                    }
                }
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
            Ok(Some(Err(e))) => {
                // Mid-body failure: the client must see an incomplete
                // message, never a clean end (ATTACKS 26).
                counters.fail(FailReason::BackendError);
                tracing::warn!(request_id = id, app = %app.app.name, error = %e, "tunnel failed mid-response");
                if !out.is_empty() {
                    let _ = write_out(io, out).await;
                }
                return Next::Close;
            }
            Err(_) => {
                counters.fail(FailReason::BackendTimeout);
                tracing::warn!(request_id = id, app = %app.app.name, "response body stalled past the backend timeout");
                if !out.is_empty() {
                    let _ = write_out(io, out).await;
                }
                return Next::Close;
            }
        }
    }
    if keep_alive {
        Next::KeepAlive
    } else {
        Next::Close
    }
}

/// An edge error page once the request body was (or may have been)
/// consumed: the connection stays only when the client asked for it.
async fn error_after_body(
    info: &super::ConnInfo,
    io: &mut Io,
    out: &mut Vec<u8>,
    head: &RequestHead,
    status: u16,
    msg: &str,
    id: &str,
) -> Next {
    let close = !head.keep_alive;
    info.note(|o| o.status = status);
    out.clear();
    pages::error_page(out, status, msg, id, close, &[]);
    send_edge_response(io, out, close).await
}

/// After the connector's 200 to an extended CONNECT: answer the client's
/// upgrade with a 101 carrying the backend's headers (Set-Cookie
/// included), then relay bytes both ways until either side ends.
async fn websocket_relay(
    io: &mut Io,
    buf: &mut BytesMut,
    out: &mut Vec<u8>,
    headers: &[Header],
    mut tx: h2::SendStream<Bytes>,
    mut rx: h2::RecvStream,
) -> Next {
    out.clear();
    out.extend_from_slice(b"HTTP/1.1 101 Switching Protocols\r\n");
    for h in headers {
        if h.name.starts_with(meta::PREFIX.as_bytes()) || h.is("content-length") {
            continue;
        }
        push_header(out, &h.name, &h.value);
    }
    out.extend_from_slice(b"Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n");
    if write_out(io, out).await.is_err() {
        return Next::Close;
    }
    tunnel::relay_upgraded(io, buf.split().freeze(), &mut tx, &mut rx).await;
    Next::Close
}
