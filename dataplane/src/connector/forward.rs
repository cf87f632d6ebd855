//! One relayed request on the connector: an HTTP/2 stream from the edge
//! becomes an HTTP/1.1 exchange with the internal server, and back.
//!
//! The request body is written to the backend as it arrives and its
//! window returned only once written, and the response body is sent no
//! faster than the edge's window allows, so a slow client on the far side
//! slows its own stream and nothing else. A failure before the response
//! head is answered with a status and a `postern-error` header, which the
//! edge turns into its error page (with the request id); a failure after
//! it resets the stream, so the client never sees a truncated body as a
//! complete one.
#![deny(clippy::disallowed_methods)]

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};

use super::Local;
use crate::error::ProxyError;
use crate::http1::body::Framing;
use crate::http1::is_hop_by_hop;
use crate::io::write_out;
use crate::tunnel::{self, meta};
use crate::upstream::balance::{affinity, server_tag, Server};
use crate::upstream::exchange::{BodyIn, BodySource};
use crate::upstream::{is_connection_auth, Target, UpstreamConn, UpstreamError};

struct Plan {
    app: String,
    /// The edge's id of the request (its `X-Request-Id`), for the log.
    request_id: String,
    timeout: Duration,
    https: bool,
    tls: Option<Arc<rustls::ClientConfig>>,
    servers: Vec<(String, u16)>,
    sticky: bool,
    host_header: String,
    websocket: bool,
    /// The backend speaks HTTP/2 (`h2` over TLS, `h2c` in the clear).
    h2: bool,
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

fn fail(mut respond: h2::server::SendResponse<Bytes>, status: u16, msg: &str) {
    let resp = Response::builder()
        .status(status)
        .header(meta::ERROR, msg)
        .body(())
        .unwrap_or_default();
    let _ = respond.send_response(resp, true);
}

fn plan(local: &Local, req: &Request<h2::RecvStream>) -> Result<Plan, String> {
    let h = req.headers();
    let uri = req.uri();
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err("the request names no backend scheme".into()),
    };
    let authority = uri.authority().ok_or("the request names no backend")?;
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let mut servers = vec![(host, port)];
    for s in header(h, meta::SERVERS)
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let (host, port) =
            postern_control::url::split_host_port(s).map_err(|_| format!("bad server `{s}`"))?;
        servers.push((
            host.trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port.unwrap_or(if https { 443 } else { 80 }),
        ));
    }
    let h2 = match header(h, meta::PROTOCOL) {
        "" => false,
        "h2" | "h2c" => true,
        other => return Err(format!("unknown backend protocol `{other}`")),
    };
    let tls = if https {
        Some(local.tls_config(header(h, meta::TLS) != "skip", header(h, meta::CA), h2)?)
    } else {
        None
    };
    let timeout = header(h, meta::TIMEOUT)
        .parse::<u64>()
        .unwrap_or(85)
        .clamp(1, 3600);
    let host_header = match header(h, meta::HOST) {
        "" => authority.as_str().to_string(),
        v => v.to_string(),
    };
    let websocket = req.method() == Method::CONNECT
        && req
            .extensions()
            .get::<h2::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"));
    Ok(Plan {
        app: header(h, meta::APP).to_string(),
        request_id: header(h, "x-request-id").to_string(),
        timeout: Duration::from_secs(timeout),
        https,
        tls,
        servers,
        sticky: header(h, meta::STICKY) == "cookie",
        host_header,
        websocket,
        h2,
    })
}

fn head_for_backend(
    plan: &Plan,
    req: &http::request::Parts,
    end_stream: bool,
    server: &(String, u16),
    proxied: bool,
    out: &mut Vec<u8>,
) -> bool {
    let method = if plan.websocket {
        "GET"
    } else {
        req.method.as_str()
    };
    let path = req.uri.path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    if proxied && !plan.https {
        // Absolute form for a forward proxy.
        out.extend_from_slice(format!("http://{}:{}", bracket(&server.0), server.1).as_bytes());
    }
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(plan.host_header.as_bytes());
    out.extend_from_slice(b"\r\n");
    let mut has_length = false;
    for (name, value) in &req.headers {
        let n = name.as_str();
        if n.starts_with(meta::PREFIX) || n == "host" {
            continue;
        }
        if n == "content-length" {
            has_length = true;
        }
        crate::http1::write::field(out, n.as_bytes(), value.as_bytes());
    }
    let chunked = !plan.websocket && !has_length && !end_stream;
    if chunked {
        out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
    }
    if plan.websocket {
        out.extend_from_slice(b"Connection: Upgrade\r\nUpgrade: websocket\r\n");
    }
    out.extend_from_slice(b"\r\n");
    chunked
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

pub async fn handle(
    local: Rc<Local>,
    bound: Rc<BoundConns>,
    req: Request<h2::RecvStream>,
    respond: h2::server::SendResponse<Bytes>,
) {
    let plan = match plan(&local, &req) {
        Ok(p) => p,
        Err(e) => {
            fail(
                respond,
                502,
                &format!("the connector could not read the request: {e}"),
            );
            return;
        }
    };
    if plan.h2 {
        Box::pin(h2_exchange(&local, plan, req, respond)).await;
        return;
    }
    Box::pin(exchange(&local, &bound, plan, req, respond)).await;
}

/// A request for an HTTP/2 backend: a stream of the connector's own
/// connection to it. The request body streams on as it arrives, the
/// response and its trailers come back as they are, and either side's
/// reset reaches the other (a client's cancel becomes the backend's
/// RST_STREAM).
async fn h2_exchange(
    local: &Rc<Local>,
    plan: Plan,
    req: Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
) {
    let (parts, mut from_edge) = req.into_parts();
    let Some(server) = plan.servers.first().cloned() else {
        fail(respond, 502, "the request names no backend");
        return;
    };
    let target = Target {
        host: server.0.clone(),
        port: server.1,
        tls: plan.tls.clone(),
        proxy: None,
    };
    let scheme = if plan.https { "https" } else { "http" };
    let uri = http::Uri::builder()
        .scheme(scheme)
        .authority(plan.host_header.as_str())
        .path_and_query(parts.uri.path_and_query().map_or("/", |p| p.as_str()))
        .build();
    let Ok(uri) = uri else {
        fail(respond, 502, "the request's backend URL is not valid");
        return;
    };
    let mut backend_req = Request::new(());
    *backend_req.method_mut() = parts.method.clone();
    *backend_req.uri_mut() = uri;
    let map = backend_req.headers_mut();
    for (name, value) in &parts.headers {
        if name.as_str().starts_with(meta::PREFIX) || name == http::header::HOST {
            continue;
        }
        map.append(name.clone(), value.clone());
    }
    let mut send = match local.upstream.h2(&target).await {
        Ok(s) => s,
        Err(e) => {
            let status = if matches!(e, UpstreamError::ConnectTimeout) {
                504
            } else {
                502
            };
            fail(respond, status, &e.to_string());
            return;
        }
    };
    let end = from_edge.is_end_stream();
    let (response, mut to_backend) = match send.send_request(backend_req, end) {
        Ok(p) => p,
        Err(e) => {
            fail(
                respond,
                502,
                &format!("the backend refused the stream: {e}"),
            );
            return;
        }
    };
    if !end {
        // The edge's body, on to the backend as it comes; the edge's reset
        // (a client's cancel) resets the backend's stream.
        monoio::spawn(async move {
            loop {
                match from_edge.data().await {
                    Some(Ok(data)) => {
                        let n = data.len();
                        if tunnel::send_data(&mut to_backend, data, false)
                            .await
                            .is_err()
                        {
                            return;
                        }
                        tunnel::release(&mut from_edge, n);
                    }
                    None => {
                        let _ = to_backend.send_data(Bytes::new(), true);
                        return;
                    }
                    Some(Err(_)) => {
                        to_backend.send_reset(h2::Reason::CANCEL);
                        return;
                    }
                }
            }
        });
    }
    let reset = std::future::poll_fn(|cx| respond.poll_reset(cx));
    let response = monoio::select! {
        r = monoio::time::timeout(plan.timeout, response) => r,
        _ = reset => return,
    };
    let response = match response {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            fail(
                respond,
                502,
                &format!("the backend failed the request: {e}"),
            );
            return;
        }
        Err(_) => {
            fail(
                respond,
                504,
                "the application's server did not answer in time",
            );
            return;
        }
    };
    let (rparts, mut from_backend) = response.into_parts();
    let mut head = Response::new(());
    *head.status_mut() = rparts.status;
    for (name, value) in &rparts.headers {
        if is_hop_by_hop(name.as_str().as_bytes()) && name != http::header::CONTENT_LENGTH
            || name.as_str().starts_with(meta::PREFIX)
        {
            continue;
        }
        head.headers_mut().append(name.clone(), value.clone());
    }
    let done = from_backend.is_end_stream();
    let mut to_edge = match respond.send_response(head, done) {
        Ok(s) => s,
        Err(_) => return,
    };
    if done {
        return;
    }
    loop {
        let next = monoio::select! {
            d = monoio::time::timeout(plan.timeout, from_backend.data()) => d,
            _ = std::future::poll_fn(|cx| to_edge.poll_reset(cx)) => return,
        };
        match next {
            Ok(Some(Ok(data))) => {
                let n = data.len();
                if tunnel::send_data(&mut to_edge, data, false).await.is_err() {
                    return;
                }
                tunnel::release(&mut from_backend, n);
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                tracing::warn!(request_id = %plan.request_id, app = %plan.app, error = %e, "HTTP/2 backend failed mid-response");
                to_edge.send_reset(h2::Reason::INTERNAL_ERROR);
                return;
            }
            Err(_) => {
                tracing::warn!(request_id = %plan.request_id, app = %plan.app, "HTTP/2 backend response stalled past the backend timeout");
                to_edge.send_reset(h2::Reason::CANCEL);
                return;
            }
        }
    }
    match from_backend.trailers().await {
        Ok(Some(t)) => {
            let _ = to_edge.send_trailers(t);
        }
        _ => {
            let _ = to_edge.send_data(Bytes::new(), true);
        }
    }
}

/// Backend connections that carry a client's NTLM/Negotiate session, by
/// the edge's id of that client connection. One table per tunnel (the
/// edge keeps such a client on one tunnel), gone with the tunnel; an entry
/// unused for [`BOUND_IDLE`] is dropped, and at most [`MAX_BOUND`] are kept.
#[derive(Default)]
pub struct BoundConns(RefCell<HashMap<u64, BoundConn>>);

/// A bound connection, the server it goes to, and when it was last used.
type BoundConn = (UpstreamConn, (String, u16), Instant);

const BOUND_IDLE: Duration = Duration::from_secs(120);
const MAX_BOUND: usize = 4096;

impl BoundConns {
    fn take(&self, id: u64) -> Option<((String, u16), UpstreamConn)> {
        let mut map = self.0.borrow_mut();
        map.retain(|_, (_, _, at)| at.elapsed() < BOUND_IDLE);
        map.remove(&id).map(|(c, server, _)| (server, c))
    }

    fn keep(&self, id: u64, server: (String, u16), conn: UpstreamConn) {
        let mut map = self.0.borrow_mut();
        if map.len() < MAX_BOUND || map.contains_key(&id) {
            map.insert(id, (conn, server, Instant::now()));
        }
    }
}

/// A request body arriving on a tunnel stream.
struct StreamBody {
    body: h2::RecvStream,
    timeout: Duration,
    has_body: bool,
}

impl BodySource for StreamBody {
    fn has_body(&self) -> bool {
        self.has_body
    }

    fn buffered(&self) -> bool {
        false
    }

    async fn next(&mut self) -> Result<Option<Bytes>, ProxyError> {
        match crate::timer::timeout(self.timeout, self.body.data()).await {
            Err(_) => Err(ProxyError::client(
                408,
                "the request body did not arrive in time",
            )),
            Ok(None) => Ok(None),
            // The edge gave up on this request.
            Ok(Some(Err(_))) => Err(ProxyError::client_gone()),
            Ok(Some(Ok(data))) => Ok(Some(data)),
        }
    }

    fn consumed(&mut self, n: usize) {
        tunnel::release(&mut self.body, n);
    }
}

/// Attempts of one request: the first, plus retries the rule allows.
const MAX_ATTEMPTS: usize = 3;

async fn exchange(
    local: &Rc<Local>,
    bound: &BoundConns,
    plan: Plan,
    req: Request<h2::RecvStream>,
    respond: h2::server::SendResponse<Bytes>,
) {
    let mut respond = respond;
    let proxy = local.shared.settings.forward_proxy.clone();
    let (parts, body) = req.into_parts();
    let no_body = body.is_end_stream();
    let mut body = StreamBody {
        body,
        timeout: plan.timeout,
        has_body: !no_body,
    };
    // The edge's id of the client connection, and that client's
    // connection-bound session, if it has one here.
    let conn_id = parts
        .headers
        .get(meta::CONN)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut own = conn_id
        .and_then(|id| bound.take(id))
        .filter(|(server, _)| plan.servers.contains(server));
    let auth = parts
        .headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .any(|v| is_connection_auth(v.as_bytes()));
    let mut attempts = 0;
    let (server, up, resp, was_bound) = loop {
        attempts += 1;
        let was_bound = own.is_some();
        let opened = match own.take() {
            Some(pair) => Ok(pair),
            None => connect(local, &plan, &parts.headers, &proxy).await,
        };
        let (server, mut up) = match opened {
            Ok(c) => c,
            Err((status, msg)) => {
                fail(respond, status, &msg);
                return;
            }
        };
        let mut out = Vec::with_capacity(1024);
        let chunked = head_for_backend(&plan, &parts, no_body, &server, proxy.is_some(), &mut out);
        if plan.websocket {
            up.io.write_timeout = plan.timeout;
            return websocket(plan, out, up, body.body, respond).await;
        }
        let method = parts.method.as_str().as_bytes();
        match crate::upstream::exchange::exchange(
            &mut up,
            &mut out,
            chunked,
            &mut body,
            method,
            false,
            plan.timeout,
        )
        .await
        {
            Ok(r) => break (server, up, r, was_bound),
            Err(e) if e.retry && attempts < MAX_ATTEMPTS => continue,
            Err(e) => {
                if let Some(status) = e.status {
                    fail(respond, status, &e.message);
                }
                return;
            }
        }
    };
    let bind = conn_id.is_some()
        && (was_bound
            || auth
            || resp
                .headers
                .iter()
                .any(|h| h.is("www-authenticate") && is_connection_auth(&h.value)));
    let response = match response_for_edge(&resp, &plan, &server, bind) {
        Some(r) => r,
        None => {
            fail(
                respond,
                502,
                "the application's server sent a header the tunnel cannot carry",
            );
            return;
        }
    };
    let is_empty = resp.framing == Framing::Empty;
    let mut send = match respond.send_response(response, is_empty) {
        Ok(s) => s,
        Err(_) => return,
    };
    let mut body_in = BodyIn::new(up, &resp, plan.timeout);
    if !is_empty && !relay_body(&mut body_in, &mut send, &plan).await {
        return;
    }
    if let Some(conn) = body_in.reusable() {
        match conn_id {
            Some(id) if bind => bound.keep(id, server, conn),
            _ => local.upstream.release(conn),
        }
    }
}

/// Relays the backend's response body onto the stream; false when the
/// stream or the backend failed (the stream is then reset or gone).
async fn relay_body(body_in: &mut BodyIn, send: &mut h2::SendStream<Bytes>, plan: &Plan) -> bool {
    loop {
        match body_in.next(false).await {
            Ok(Some(data)) => {
                let done = body_in.is_done();
                if tunnel::send_data(send, data, done).await.is_err() {
                    return false; // the edge reset the stream
                }
                if done {
                    return true;
                }
            }
            Ok(None) => {
                let _ = send.send_data(Bytes::new(), true);
                return true;
            }
            Err(e) => {
                tracing::warn!(request_id = %plan.request_id, app = %plan.app, error = %e.message, "backend failed mid-response");
                send.send_reset(h2::Reason::INTERNAL_ERROR);
                return false;
            }
        }
    }
}

/// The backend's response head as HTTP/2 (hop-by-hop headers dropped,
/// values sharing the bytes read from the backend); `None` when a header
/// cannot travel over HTTP/2.
fn response_for_edge(
    resp: &crate::http1::ResponseHead,
    plan: &Plan,
    server: &(String, u16),
    bind: bool,
) -> Option<Response<()>> {
    use http::header::{HeaderName, HeaderValue};
    let mut out = Response::new(());
    *out.status_mut() = StatusCode::from_u16(resp.status).ok()?;
    let map = out.headers_mut();
    map.reserve(resp.headers.len() + 2);
    for h in &resp.headers {
        if is_hop_by_hop(&h.name)
            || resp.connection_tokens.lists(&h.name)
            || crate::http1::loose_prefix(&h.name, meta::PREFIX.as_bytes())
        {
            // `postern-` headers are the tunnel's own words: a backend
            // must not be able to say them (`postern-error` would replace
            // its answer with an error page, `postern-bound` would pin the
            // client to this tunnel).
            continue;
        }
        let name = HeaderName::from_bytes(&h.name).ok()?;
        map.append(name, HeaderValue::from_maybe_shared(h.value.clone()).ok()?);
    }
    if let Framing::Length(n) = resp.framing {
        map.append(http::header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    if bind {
        // The edge keeps this client on this tunnel from now on.
        map.append(
            HeaderName::from_static(meta::BOUND),
            HeaderValue::from_static("1"),
        );
    }
    if plan.sticky {
        // The edge sets the affinity cookie, for the app's external path.
        map.append(
            HeaderName::from_static(meta::SERVER),
            HeaderValue::from_str(&server_tag(&server.0, server.1)).ok()?,
        );
    }
    Some(out)
}

/// A connection to one of the app's servers (the sticky one first; see
/// [`crate::upstream::balance`]).
async fn connect(
    local: &Local,
    plan: &Plan,
    headers: &HeaderMap,
    proxy: &Option<Arc<(String, u16)>>,
) -> Result<((String, u16), UpstreamConn), (u16, String)> {
    let servers: Vec<Server<'_>> = plan
        .servers
        .iter()
        .map(|(host, port)| Server { host, port: *port })
        .collect();
    let sticky = if plan.sticky {
        affinity(
            headers
                .get_all(http::header::COOKIE)
                .iter()
                .map(|v| v.as_bytes()),
        )
    } else {
        None
    };
    let base = Target {
        host: String::new(),
        port: 0,
        tls: plan.tls.clone(),
        proxy: proxy.clone(),
    };
    match local
        .upstream
        .open_any(&plan.app, &servers, sticky.as_deref(), &base)
        .await
    {
        Ok((i, c)) => Ok((plan.servers[i].clone(), c)),
        Err(UpstreamError::ConnectTimeout) => Err((
            504,
            "the application's server did not accept a connection in time".to_string(),
        )),
        Err(e) => Err((
            502,
            format!("the application's server could not be reached: {e}"),
        )),
    }
}

/// WebSocket: the backend's 101 becomes a 200 to the edge's extended
/// CONNECT, then bytes flow both ways until either side ends.
async fn websocket(
    plan: Plan,
    mut out: Vec<u8>,
    mut up: UpstreamConn,
    mut body: h2::RecvStream,
    mut respond: h2::server::SendResponse<Bytes>,
) {
    if write_out(&mut up.io, &mut out).await.is_err() {
        fail(
            respond,
            502,
            "the connection to the application's server failed",
        );
        return;
    }
    let resp = match up.read_head(false, true, plan.timeout).await {
        Ok(r) => r,
        Err((status, msg)) => {
            fail(respond, status, msg);
            return;
        }
    };
    if resp.status != 101 {
        // Refused upgrade: pass the answer on as a plain response.
        fail(
            respond,
            502,
            "the application's server refused the WebSocket upgrade",
        );
        return;
    }
    let mut builder = Response::builder().status(StatusCode::OK);
    for h in &resp.headers {
        if is_hop_by_hop(&h.name) {
            continue;
        }
        builder = builder.header(&h.name[..], &h.value[..]);
    }
    let Ok(response) = builder.body(()) else {
        fail(
            respond,
            502,
            "the application's server sent a header the tunnel cannot carry",
        );
        return;
    };
    let Ok(mut send) = respond.send_response(response, false) else {
        return;
    };
    let early = up.buf.split().freeze();
    // The edge holds the app's WebSocket limits and ends the stream.
    crate::relay::over_stream(
        &mut up.io,
        early,
        &mut send,
        &mut body,
        crate::relay::NO_IDLE,
    )
    .await;
}
