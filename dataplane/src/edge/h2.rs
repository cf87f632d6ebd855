//! HTTP/2 client connections: the h2 crate's server on a poll-mode socket
//! (TLS with ALPN `h2`, or cleartext with prior knowledge), one task per
//! stream, and every stream through the same proxy core as an HTTP/1.1
//! request ([`super::proxy::handle`]).
//!
//! What the connection defends against (docs/attacks.md, HTTP/2):
//! * explicit limits from `[edge]`: concurrent streams, header list size,
//!   stream and connection windows;
//! * Rapid Reset: a stream the client resets stops at once (its task is
//!   dropped, so a backend request in flight is cancelled with it), and a
//!   client that keeps resetting streams gets GOAWAY `ENHANCE_YOUR_CALM`;
//! * MadeYouReset: streams the edge had to reset for the client's protocol
//!   errors are bounded the same way (h2's local-error limit);
//! * CONTINUATION floods and HPACK bombs: the header list limit applies
//!   while decoding;
//! * a client that stops reading (while flooding PINGs or SETTINGS, say)
//!   is dropped once a write has waited `client_send_timeout`;
//! * a connection with no open stream closes after `keepalive_timeout`,
//!   and one that never finishes its preface after
//!   `request_header_timeout`.

use std::cell::Cell;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{header, Method};
use postern_control::counters::bump;
use tokio::io::{AsyncRead, AsyncWrite};

use super::client::{Client, H2Send, H2Stream};
use super::conn::{CatchUnwind, ConnInfo};
use super::proxy;
use crate::http1::body::Framing;
use crate::http1::{Header, RequestHead};
use crate::pages;
use crate::worker::Worker;

/// Client resets tolerated per [`RESET_WINDOW`]; past them the client is
/// told to calm down and the connection ends. Browsers cancel a few
/// streams when a page changes; hundreds a second is an attack.
const RESET_BUDGET: u32 = 200;
const RESET_WINDOW: Duration = Duration::from_secs(10);
/// Streams the client may reset before the edge accepted them.
const MAX_PENDING_ACCEPT_RESETS: usize = 50;
/// Streams the edge may reset for the client's protocol errors
/// (MadeYouReset) before the connection ends with ENHANCE_YOUR_CALM.
const MAX_LOCAL_ERROR_RESETS: usize = 100;
/// How often a connection checks its idle time, reset budget and writes.
const TICK: Duration = Duration::from_millis(250);
/// How long a draining connection with no stream left waits for the
/// client's side of the GOAWAY exchange.
const DRAIN_IDLE: Duration = Duration::from_secs(1);
/// How long a closing connection may take to deliver its GOAWAY.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// The preface every HTTP/2 connection with prior knowledge starts with.
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the streams of one connection share with it.
struct Shared {
    info: ConnInfo,
    open: Cell<usize>,
    resets: Cell<u32>,
}

/// Serves one HTTP/2 client connection; panics end that connection only.
pub async fn serve<T>(worker: Rc<Worker>, io: T, info: ConnInfo)
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let peer = info.peer;
    let counters = worker.counters.clone();
    if CatchUnwind(Box::pin(serve_streams(worker, io, info)))
        .await
        .is_err()
    {
        bump(&counters.edge.panics, 1);
        tracing::error!(client = %peer, "an HTTP/2 connection's handler panicked; that connection was closed");
    }
}

async fn serve_streams<T>(worker: Rc<Worker>, io: T, info: ConnInfo)
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    let (h, header_timeout, keepalive, send_timeout) = {
        let s = &worker.snapshot().settings;
        (
            s.http2,
            s.request_header_timeout,
            s.keepalive_timeout,
            s.client_send_timeout,
        )
    };
    let (guarded, violation) = super::h2guard::Guarded::new(io);
    let handshake = h2::server::Builder::new()
        .max_concurrent_streams(h.max_concurrent_streams)
        .max_header_list_size(h.max_header_list_size)
        .initial_window_size(h.stream_window)
        .initial_connection_window_size(h.connection_window)
        .max_pending_accept_reset_streams(MAX_PENDING_ACCEPT_RESETS)
        .max_local_error_reset_streams(Some(MAX_LOCAL_ERROR_RESETS))
        .enable_connect_protocol()
        .handshake::<_, Bytes>(guarded);
    let mut conn = match crate::timer::timeout(header_timeout, handshake).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => {
            tracing::debug!(client = %info.peer, error = %e, "HTTP/2 preface failed");
            return;
        }
        Err(_) => {
            tracing::debug!(client = %info.peer, "HTTP/2 preface did not arrive in time");
            return;
        }
    };
    let shared = Rc::new(Shared {
        info,
        open: Cell::new(0),
        resets: Cell::new(0),
    });
    let mut idle_since = Some(Instant::now());
    let mut window_start = Instant::now();
    let mut closing: Option<Instant> = None;
    // The housekeeping tick is made anew only when it fires, not for every
    // stream accepted.
    let mut tick = Box::pin(monoio::time::sleep(TICK));
    loop {
        monoio::select! {
            next = conn.accept() => match next {
                None => break,
                Some(Err(e)) => {
                    tracing::debug!(client = %shared.info.peer, error = %e, "HTTP/2 connection ended");
                    break;
                }
                Some(Ok((req, respond))) => {
                    idle_since = None;
                    shared.open.set(shared.open.get() + 1);
                    monoio::spawn(stream(worker.clone(), shared.clone(), req, respond));
                }
            },
            reason = poll_fn(|cx| violation.poll_reason(cx)), if closing.is_none() => {
                bump(&worker.counters.edge.bad_requests, 1);
                tracing::debug!(client = %shared.info.peer, ?reason, "HTTP/2 protocol violation; connection closed");
                conn.abrupt_shutdown(reason);
                closing = Some(Instant::now());
                continue;
            }
            _ = &mut tick => tick = Box::pin(monoio::time::sleep(TICK)),
        }
        let now = Instant::now();
        if violation
            .write_stalled_since()
            .is_some_and(|t| now.duration_since(t) > send_timeout)
        {
            tracing::debug!(client = %shared.info.peer, "HTTP/2 client stopped reading; connection closed");
            break;
        }
        if let Some(t) = closing {
            // Draining, streams in flight finish (the edge's drain
            // timeout bounds them); otherwise the GOAWAY gets a moment.
            if now.duration_since(t) > CLOSE_WAIT && !worker.is_draining() {
                break;
            }
            // A client that does not answer the shutdown's PING would
            // hold an idle connection until the drain timeout.
            if worker.is_draining() && shared.open.get() == 0 && now.duration_since(t) > DRAIN_IDLE
            {
                break;
            }
            continue;
        }
        if worker.is_draining() {
            // GOAWAY: the client opens no new streams here and retries
            // elsewhere; those it has open finish.
            conn.graceful_shutdown();
            closing = Some(now);
            continue;
        }
        if now.duration_since(window_start) > RESET_WINDOW {
            window_start = now;
            shared.resets.set(0);
        }
        if shared.resets.get() > RESET_BUDGET {
            bump(&worker.counters.edge.bad_requests, 1);
            tracing::warn!(client = %shared.info.peer, resets = shared.resets.get(), "HTTP/2 client reset too many streams; connection closed with ENHANCE_YOUR_CALM");
            conn.abrupt_shutdown(h2::Reason::ENHANCE_YOUR_CALM);
            closing = Some(now);
            continue;
        }
        if shared.open.get() == 0 {
            let since = *idle_since.get_or_insert(now);
            if now.duration_since(since) >= keepalive {
                conn.graceful_shutdown();
                closing = Some(now);
            }
        } else {
            idle_since = None;
        }
    }
}

/// One stream: its head checked and converted, then the proxy core; a
/// reset by the client drops the work at once.
async fn stream(
    worker: Rc<Worker>,
    shared: Rc<Shared>,
    req: http::Request<h2::RecvStream>,
    respond: h2::server::SendResponse<Bytes>,
) {
    struct Open(Rc<Shared>);
    impl Drop for Open {
        fn drop(&mut self) {
            self.0.open.set(self.0.open.get() - 1);
        }
    }
    let _open = Open(shared.clone());
    let (parts, recv) = req.into_parts();
    let end_stream = recv.is_end_stream();
    let c = &shared.info;
    let info = ConnInfo {
        peer: c.peer,
        client_ip: c.client_ip.clone(),
        scheme: c.scheme,
        sni: c.sni.clone(),
        outcome: Default::default(),
        // Connection-bound authentication (NTLM, Negotiate) is not
        // offered over HTTP/2: each stream is its own connection to a hop.
        id: worker.next_conn_id(),
        bound: Default::default(),
    };
    let send_timeout = worker.snapshot().settings.client_send_timeout;
    let mut s = H2Stream::new(recv, respond, send_timeout);
    let watch = s.send.clone();
    let work = async {
        match request_head(&parts, end_stream) {
            Ok(head) => {
                let snapshot = worker.snapshot();
                let mut out = Vec::new();
                let mut client = Client::H2(&mut s);
                proxy::handle(&worker, &snapshot, &mut client, &mut out, &info, head).await;
            }
            Err(Refusal::Answer(status, reason)) => {
                refuse(&worker, &mut s, &info, &parts, status, reason).await
            }
            Err(Refusal::Malformed(why)) => {
                bump(&worker.counters.edge.bad_requests, 1);
                tracing::debug!(client = %info.peer, why, "malformed HTTP/2 request; stream reset");
                s.reset(h2::Reason::PROTOCOL_ERROR);
            }
        }
    };
    let reset = poll_fn(|cx| match &mut *watch.borrow_mut() {
        H2Send::Head(r) => r.poll_reset(cx).map(|_| ()),
        H2Send::Body(b) => b.poll_reset(cx).map(|_| ()),
        H2Send::Done => Poll::Pending,
    });
    let peer = info.peer;
    let counters = worker.counters.clone();
    let work = CatchUnwind(Box::pin(work));
    monoio::select! {
        done = work => {
            if done.is_err() {
                bump(&counters.edge.panics, 1);
                tracing::error!(client = %peer, "an HTTP/2 stream's handler panicked; that stream was reset");
            }
        }
        _ = reset => shared.resets.set(shared.resets.get() + 1),
    }
}

/// Answers a request whose head cannot be served, and logs it.
async fn refuse(
    worker: &Worker,
    s: &mut H2Stream,
    info: &ConnInfo,
    parts: &http::request::Parts,
    status: u16,
    reason: &str,
) {
    bump(&worker.counters.edge.bad_requests, 1);
    let id = worker.next_request_id();
    let mut out = Vec::new();
    pages::error_page(&mut out, status, reason, &id, false, &[]);
    let bytes_out = out.len() as u64;
    let _ = s.send_composed(&out).await;
    if crate::accesslog::enabled() {
        let path = parts.uri.path_and_query().map_or("-", |p| p.as_str());
        crate::accesslog::log(&crate::accesslog::Entry {
            request_id: &id,
            app: None,
            client: &info.client_ip,
            method: parts.method.as_str().as_bytes(),
            path: &path.as_bytes()[..path.len().min(1024)],
            status,
            bytes_in: 0,
            bytes_out,
            total_us: 0,
            backend_us: None,
        });
    }
}

/// Why a request head is not served: an answer, or (for a head RFC 9113
/// calls malformed) a stream reset with `PROTOCOL_ERROR`.
pub enum Refusal {
    Answer(u16, &'static str),
    Malformed(&'static str),
}

/// An HTTP/2 request head as the proxy core's [`RequestHead`]: routed on
/// `:authority` (a Host header naming another host is refused), cookies
/// joined into one field as HTTP/1.1 backends expect, and an extended
/// CONNECT for WebSocket (RFC 8441) turned into the upgrade an HTTP/1.1
/// backend understands. The h2 crate has already refused what RFC 9113
/// calls malformed (connection-specific fields, `te` other than
/// `trailers`, upper-case names, a content-length its DATA contradicts).
pub fn request_head(
    parts: &http::request::Parts,
    end_stream: bool,
) -> Result<RequestHead, Refusal> {
    let mut upgrade = None;
    let method = if parts.method == Method::CONNECT {
        match parts.extensions.get::<h2::ext::Protocol>() {
            Some(p) if p.as_str().eq_ignore_ascii_case("websocket") => {
                upgrade = Some(Bytes::from_static(b"websocket"));
                Bytes::from_static(b"GET")
            }
            Some(_) => {
                return Err(Refusal::Answer(
                    501,
                    "only WebSocket can be opened with an extended CONNECT",
                ))
            }
            None if parts.uri.authority().is_none() => {
                return Err(Refusal::Malformed("CONNECT without :authority"))
            }
            None => return Err(Refusal::Answer(405, "CONNECT is not supported")),
        }
    } else if parts.method == Method::TRACE {
        return Err(Refusal::Answer(405, "TRACE is not allowed"));
    } else {
        match parts.method {
            Method::GET => Bytes::from_static(b"GET"),
            Method::POST => Bytes::from_static(b"POST"),
            Method::HEAD => Bytes::from_static(b"HEAD"),
            _ => Bytes::copy_from_slice(parts.method.as_str().as_bytes()),
        }
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    if path.len() > crate::http1::MAX_URL_BYTES {
        return Err(Refusal::Answer(414, "the request URL is longer than 8 KiB"));
    }
    if !path.starts_with('/') {
        return Err(Refusal::Answer(400, "the request target must be a path"));
    }
    let mut hosts = parts.headers.get_all(header::HOST).iter();
    let host_field = hosts.next();
    if hosts.next().is_some() {
        return Err(Refusal::Answer(400, "the Host header is repeated"));
    }
    let authority: &[u8] = match (parts.uri.authority(), host_field) {
        (Some(a), Some(h)) if !a.as_str().as_bytes().eq_ignore_ascii_case(h.as_bytes()) => {
            return Err(Refusal::Malformed(
                "the Host header names another host than :authority",
            ));
        }
        (Some(a), _) => a.as_str().as_bytes(),
        (None, Some(h)) => h.as_bytes(),
        (None, None) => return Err(Refusal::Answer(400, "the request has no :authority")),
    };
    let host = crate::http1::parse_authority(authority)
        .ok_or(Refusal::Answer(400, "the :authority is not a valid host"))?;
    // Every name and value is copied once, into one buffer the fields
    // then share (an allocation per request, not per field).
    let mut size = 0;
    for (name, value) in &parts.headers {
        size += name.as_str().len() + value.len();
    }
    let mut all = bytes::BytesMut::with_capacity(size);
    let mut spans = Vec::with_capacity(parts.headers.len());
    let mut cookie: Option<Vec<u8>> = None;
    let mut length = None;
    for (name, value) in &parts.headers {
        // RFC 9113 §8.2.1: no whitespace around a value.
        let v = value.as_bytes();
        let blank = |b: Option<&u8>| b.is_some_and(|&b| b == b' ' || b == b'\t');
        if blank(v.first()) || blank(v.last()) {
            return Err(Refusal::Malformed(
                "a field value starts or ends with whitespace",
            ));
        }
        if name == header::COOKIE {
            // RFC 9113 §8.2.3: cookie crumbs join with "; " for HTTP/1.1.
            match &mut cookie {
                Some(c) => {
                    c.extend_from_slice(b"; ");
                    c.extend_from_slice(v);
                }
                None => cookie = Some(v.to_vec()),
            }
            continue;
        }
        if name == header::CONTENT_LENGTH {
            let n = crate::http1::parse_content_length(v)
                .ok_or(Refusal::Malformed("the content-length is not a number"))?;
            if length.is_some_and(|l| l != n) {
                return Err(Refusal::Malformed(
                    "the content-length is given twice, differently",
                ));
            }
            length = Some(n);
            continue;
        }
        if name == header::EXPECT {
            if !v.eq_ignore_ascii_case(b"100-continue") {
                return Err(Refusal::Answer(
                    417,
                    "only `Expect: 100-continue` is supported",
                ));
            }
            continue;
        }
        let start = all.len();
        all.extend_from_slice(name.as_str().as_bytes());
        let mid = all.len();
        all.extend_from_slice(v);
        spans.push((start, mid, all.len()));
    }
    let all = all.freeze();
    let mut headers = Vec::with_capacity(spans.len() + 2);
    for (start, mid, end) in spans {
        headers.push(Header {
            name: all.slice(start..mid),
            value: all.slice(mid..end),
        });
    }
    if let Some(c) = cookie {
        headers.push(Header {
            name: Bytes::from_static(b"cookie"),
            value: Bytes::from(c),
        });
    }
    if upgrade.is_some() && !parts.headers.contains_key(header::SEC_WEBSOCKET_KEY) {
        // An HTTP/1.1 server wants the handshake's key; over HTTP/2 the
        // client sends none, so the edge makes one.
        headers.push(Header {
            name: Bytes::from_static(b"sec-websocket-key"),
            value: Bytes::from(websocket_key()),
        });
    }
    let framing = if upgrade.is_some() || (end_stream && length.unwrap_or(0) == 0) {
        Framing::Empty
    } else {
        match length {
            Some(n) => Framing::Length(n),
            None => Framing::Chunked,
        }
    };
    Ok(RequestHead {
        method,
        path: Bytes::copy_from_slice(path.as_bytes()),
        minor: 1,
        headers,
        host,
        authority: Bytes::copy_from_slice(authority),
        framing,
        keep_alive: true,
        expect_continue: false,
        upgrade,
        connection_tokens: Default::default(),
    })
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes, base64.
fn websocket_key() -> String {
    use base64::Engine;
    use ring::rand::SecureRandom;
    let mut raw = [0u8; 16];
    let _ = ring::rand::SystemRandom::new().fill(&mut raw);
    base64::engine::general_purpose::STANDARD.encode(raw)
}
