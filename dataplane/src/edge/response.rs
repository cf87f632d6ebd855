//! The response phases: the head the client gets (response head filter)
//! and the body on its way out (body filter: framing and link
//! translation).
//!
//! Both hops hand their response over as a [`RespHead`] whose headers stay
//! in the representation they arrived in (parsed HTTP/1.1 fields sharing
//! the read buffer, or the tunnel stream's `HeaderMap`): the head written
//! to the client is built straight from either, with no per-request copy
//! into a third type.

use bytes::Bytes;
use postern_control::counters::{bump, AppCounters};
use postern_control::{HostPattern, Scheme};

use super::proxy::Exchange;
use crate::http1::body::{Encoder, Framing};
use crate::http1::write::{self, ClientFraming};
use crate::http1::{Header, RequestHead, ResponseHead};
use crate::snapshot::AppRuntime;
use crate::translate::body::{Failed, ResponseFacts, Translator};
use crate::translate::headers::CookieScope;
use crate::translate::{self, Table};

/// Response header fields as the hop received them.
pub enum RespHeaders {
    H1(Vec<Header>),
    H2(http::HeaderMap),
}

impl RespHeaders {
    /// Calls `f` with each field's name and value, in order.
    pub fn each(&self, mut f: impl FnMut(&[u8], &[u8])) {
        match self {
            RespHeaders::H1(v) => v.iter().for_each(|h| f(&h.name, &h.value)),
            RespHeaders::H2(m) => m
                .iter()
                .for_each(|(n, v)| f(n.as_str().as_bytes(), v.as_bytes())),
        }
    }

    /// The first value of `lower_name`.
    pub fn get(&self, lower_name: &str) -> Option<&[u8]> {
        match self {
            RespHeaders::H1(v) => v.iter().find(|h| h.is(lower_name)).map(|h| &h.value[..]),
            RespHeaders::H2(m) => m.get(lower_name).map(|v| v.as_bytes()),
        }
    }

    /// Whether any value of `lower_name` satisfies `f`.
    pub fn any(&self, lower_name: &str, f: impl Fn(&[u8]) -> bool) -> bool {
        match self {
            RespHeaders::H1(v) => v.iter().any(|h| h.is(lower_name) && f(&h.value)),
            RespHeaders::H2(m) => m.get_all(lower_name).iter().any(|v| f(v.as_bytes())),
        }
    }
}

/// A response head from either hop.
pub struct RespHead {
    pub status: u16,
    pub reason: Bytes,
    pub headers: RespHeaders,
    pub framing: Framing,
    /// Header names listed in the server's `Connection`, lower-case.
    pub connection_tokens: crate::http1::ConnectionTokens,
    /// Which of the app's servers answered (its affinity tag), for apps
    /// with sticky sessions.
    pub server: Option<String>,
}

impl From<ResponseHead> for RespHead {
    fn from(r: ResponseHead) -> RespHead {
        RespHead {
            status: r.status,
            reason: r.reason,
            headers: RespHeaders::H1(r.headers),
            framing: r.framing,
            connection_tokens: r.connection_tokens,
            server: None,
        }
    }
}

fn is_name(name: &[u8], lower: &str) -> bool {
    name.eq_ignore_ascii_case(lower.as_bytes())
}

/// Where the client head's fields go: HTTP/1.1 bytes, or an HTTP/2
/// header map.
pub trait HeadSink {
    fn field(&mut self, name: &[u8], value: &[u8]);
}

impl HeadSink for Vec<u8> {
    fn field(&mut self, name: &[u8], value: &[u8]) {
        write::field(self, name, value);
    }
}

/// An HTTP/2 response head being built: values are copied once into one
/// buffer the header map's values then share (an allocation per response,
/// not per field).
#[derive(Default)]
pub struct H2Fields {
    values: bytes::BytesMut,
    fields: Vec<(http::HeaderName, usize, usize)>,
}

impl HeadSink for H2Fields {
    /// A field HTTP/2 cannot carry (a name with upper case is folded; a
    /// value with a control byte is dropped, as the h1 parser would have
    /// refused it) never reaches the client.
    fn field(&mut self, name: &[u8], value: &[u8]) {
        if let Ok(n) = http::HeaderName::from_bytes(name) {
            let start = self.values.len();
            self.values.extend_from_slice(value);
            self.fields.push((n, start, self.values.len()));
        }
    }
}

impl H2Fields {
    pub fn into_map(self, map: &mut http::HeaderMap) {
        let values = self.values.freeze();
        map.reserve(self.fields.len());
        for (name, start, end) in self.fields {
            if let Ok(v) = http::HeaderValue::from_maybe_shared(values.slice(start..end)) {
                map.append(name, v);
            }
        }
    }
}

/// A response body on its way to the client: its framing, and link
/// translation when the app asks for it. Counts the translation when the
/// response is over, however it ended.
pub struct BodyOut<'a> {
    pub encoder: Encoder,
    translator: Option<Translator>,
    counters: &'a AppCounters,
}

impl BodyOut<'_> {
    pub fn translating(&self) -> bool {
        self.translator.is_some()
    }

    /// Whether the backend's bytes may go to the client as they are.
    pub fn passthrough(&self) -> bool {
        self.encoder == Encoder::Identity && self.translator.is_none()
    }

    /// Appends a piece of the body to `out`, translated and framed.
    pub fn push(&mut self, table: &Table, data: &[u8], out: &mut Vec<u8>) -> Result<(), Failed> {
        match &mut self.translator {
            None => {
                self.encoder.encode(data, out);
                Ok(())
            }
            Some(t) => self.encoder.encode_with(out, |o| t.push(table, data, o)),
        }
    }

    /// Appends the end of the body to `out`.
    pub fn finish(&mut self, table: &Table, out: &mut Vec<u8>) -> Result<(), Failed> {
        if let Some(t) = &mut self.translator {
            self.encoder.encode_with(out, |o| t.finish(table, o))?;
        }
        self.encoder.finish(out);
        Ok(())
    }

    /// A translation that failed mid-body: counted and logged; the caller
    /// then closes the connection, so the client sees an incomplete body.
    pub fn failed(&self, e: &Failed, app: &AppRuntime, id: &str) {
        bump(&self.counters.translate_failed, 1);
        tracing::warn!(request_id = id, app = %app.app.name, error = %e, "link translation stopped the response");
    }
}

impl BodyOut<'_> {
    /// Counts the translation (once): called before the body's last bytes
    /// leave, so whoever reads the response can already read its counters.
    pub fn count(&mut self) {
        if let Some(t) = self.translator.take() {
            bump(&self.counters.translated_responses, 1);
            bump(&self.counters.translated_bytes, t.scanned);
            bump(&self.counters.links_translated, t.links());
        }
    }
}

impl Drop for BodyOut<'_> {
    fn drop(&mut self) {
        self.count();
    }
}

/// Whether a response body is translated, and how; skips are counted.
fn translation_plan(
    ctx: &Exchange<'_>,
    head: &RequestHead,
    resp: &RespHead,
) -> Option<translate::body::Plan> {
    if !ctx.app.app.translate_body || ctx.snapshot.links.is_empty() {
        return None;
    }
    let facts = ResponseFacts {
        status: resp.status,
        head_request: head.is_head() || !resp.framing.has_body(),
        content_type: resp.headers.get("content-type"),
        content_encoding: resp.headers.get("content-encoding"),
        no_transform: resp.headers.any("cache-control", |v| {
            v.windows(12)
                .any(|w| w.eq_ignore_ascii_case(b"no-transform"))
        }),
        accept_encoding: head
            .headers
            .iter()
            .find(|h| h.is("accept-encoding"))
            .map(|h| &h.value[..]),
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
/// way out and whether the connection stays open (`body_read`: the whole
/// request body was read, so the next request can be parsed).
pub fn client_head<'a>(
    ctx: &Exchange<'a>,
    head: &RequestHead,
    resp: &RespHead,
    body_read: bool,
    out: &mut Vec<u8>,
) -> (BodyOut<'a>, bool) {
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
    let keep_alive = head.keep_alive && body_read && (delimited || client_chunked);
    out.clear();
    write::status_line(out, resp.status, &resp.reason);
    head_fields(ctx, head, resp, plan, out);
    let encoder = write::response_framing(
        out,
        ClientFraming {
            framing,
            status: resp.status,
            head_request: head.is_head(),
            chunked: client_chunked,
            keep_alive,
            http10: head.minor == 0,
        },
    );
    (body_out(ctx, plan, encoder), keep_alive)
}

/// [`client_head`] for an HTTP/2 stream: the same fields, HTTP/2's own
/// framing (a `content-length` when the length is known). Returns the
/// body's way out, the head, and whether the response has no body.
pub fn client_head_h2<'a>(
    ctx: &Exchange<'a>,
    head: &RequestHead,
    resp: &RespHead,
) -> (BodyOut<'a>, http::Response<()>, bool) {
    let plan = translation_plan(ctx, head, resp);
    let mut r = http::Response::new(());
    *r.status_mut() =
        http::StatusCode::from_u16(resp.status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    let mut fields = H2Fields::default();
    head_fields(ctx, head, resp, plan, &mut fields);
    let map = r.headers_mut();
    fields.into_map(map);
    if let (None, Framing::Length(n)) = (plan, resp.framing) {
        map.insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(n));
    }
    let empty = resp.framing == Framing::Empty;
    (body_out(ctx, plan, Encoder::Identity), r, empty)
}

fn body_out<'a>(
    ctx: &Exchange<'a>,
    plan: Option<translate::body::Plan>,
    encoder: Encoder,
) -> BodyOut<'a> {
    BodyOut {
        encoder,
        translator: plan
            .map(|p| Translator::new(p, ctx.snapshot.settings.translate_max_decoded_size)),
        counters: ctx.counters,
    }
}

/// The fields of the client head, whatever its framing: the backend's
/// (see [`copy_headers`]), the affinity cookie, HSTS, a renewed session's
/// cookie and the request id.
fn head_fields(
    ctx: &Exchange<'_>,
    head: &RequestHead,
    resp: &RespHead,
    plan: Option<translate::body::Plan>,
    out: &mut impl HeadSink,
) {
    let (app, info, id) = (ctx.app, ctx.info, ctx.id);
    let has_request_id = copy_headers(ctx, head, resp, plan, out);
    if let Some(tag) = &resp.server {
        affinity_cookie(head, tag, &app.app, out);
    }
    if let (Some(hsts), Scheme::Https) = (&app.hsts, info.scheme) {
        out.field(b"Strict-Transport-Security", hsts.as_bytes());
    }
    // A renewed session reaches the client on the responses to its old
    // cookie.
    if let Some(cookie) = ctx.who.as_ref().and_then(|o| o.set_cookie.as_ref()) {
        out.field(b"Set-Cookie", cookie.as_bytes());
    }
    // The id users quote and operators search for, unless the backend
    // has its own.
    if !has_request_id {
        out.field(b"X-Request-Id", id.as_bytes());
    }
}

/// Copies the backend's response headers to the client head: hop-by-hop
/// and edge-owned ones dropped, validators weakened under translation,
/// URLs and cookies translated. Returns whether the backend set its own
/// `X-Request-Id`.
fn copy_headers(
    ctx: &Exchange<'_>,
    head: &RequestHead,
    resp: &RespHead,
    plan: Option<translate::body::Plan>,
    out: &mut impl HeadSink,
) -> bool {
    let app = ctx.app;
    let translate_headers = app.app.translate_headers;
    let int = &app.app.internal_url;
    let ext = &app.app.external_url;
    let scope = CookieScope {
        internal_host: &ctx.internal_host,
        external_host: &head.host,
        internal_path: &int.path,
        external_path: &ext.path,
        wildcard: match (&int.host, &ext.host) {
            (HostPattern::Wildcard(i), HostPattern::Wildcard(e)) => Some((i.as_str(), e.as_str())),
            _ => None,
        },
    };
    let mut has_request_id = false;
    resp.headers.each(|name, value| {
        if crate::http1::is_hop_by_hop(name) || resp.connection_tokens.lists(name) {
            // HEAD and 304 answers describe a body they do not carry.
            if is_name(name, "content-length")
                && resp.framing == Framing::Empty
                && (head.is_head() || resp.status == 304)
            {
                out.field(name, value);
            }
            return;
        }
        if crate::http1::loose_prefix(name, crate::tunnel::meta::PREFIX.as_bytes()) {
            // The tunnel's own words, whichever hop brought them.
            return;
        }
        if app.hsts.is_some() && is_name(name, "strict-transport-security") {
            return;
        }
        has_request_id |= is_name(name, "x-request-id");
        if let Some(p) = plan {
            if is_name(name, "accept-ranges")
                || (p.to != p.from && is_name(name, "content-encoding"))
            {
                return;
            }
            // The body changes, so a strong validator would lie.
            if is_name(name, "etag") && !value.starts_with(b"W/") {
                let mut v = b"W/".to_vec();
                v.extend_from_slice(value);
                out.field(name, &v);
                return;
            }
        }
        if translate_headers {
            let v = if translate::headers::is_url_header(name) {
                ctx.snapshot.links.rewrite_value(value)
            } else if is_name(name, "set-cookie") {
                translate::headers::set_cookie(value, &scope)
            } else {
                None
            };
            if let Some(v) = v {
                out.field(name, &v);
                return;
            }
        }
        out.field(name, value);
    });
    has_request_id
}

/// Sets the affinity cookie when the server that answered is not the one
/// the request's cookie names: scoped to the app's external path, and
/// `Secure` on an https app.
fn affinity_cookie(
    head: &RequestHead,
    tag: &str,
    app: &postern_control::App,
    out: &mut impl HeadSink,
) {
    use crate::upstream::balance::{affinity, STICKY_COOKIE};
    let current = affinity(
        head.headers
            .iter()
            .filter(|h| h.is("cookie"))
            .map(|h| &h.value[..]),
    );
    if current.as_deref() == Some(tag) {
        return;
    }
    let ext = &app.external_url;
    let secure = if ext.scheme == Scheme::Https {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{STICKY_COOKIE}={tag}; Path={}; HttpOnly; SameSite=Lax{secure}",
        ext.path
    );
    out.field(b"Set-Cookie", cookie.as_bytes());
}

/// The `101` for an accepted upgrade: the server's headers (Set-Cookie
/// included, which Entra application proxy drops) without hop-by-hop
/// ones, and the protocol the client asked for.
pub fn upgrade_head(resp: &RespHead, protocol: &[u8], out: &mut Vec<u8>) {
    out.clear();
    write::status_line(out, 101, b"Switching Protocols");
    resp.headers.each(|name, value| {
        if crate::http1::is_hop_by_hop(name)
            || crate::http1::loose_prefix(name, crate::tunnel::meta::PREFIX.as_bytes())
        {
            return;
        }
        write::field(out, name, value);
    });
    out.extend_from_slice(b"Connection: Upgrade\r\nUpgrade: ");
    out.extend_from_slice(protocol);
    out.extend_from_slice(b"\r\n\r\n");
}

/// The `200` that accepts an HTTP/2 extended CONNECT (RFC 8441): the
/// server's `101` headers (Set-Cookie included) without hop-by-hop ones
/// and without the HTTP/1.1 handshake's own.
pub fn upgrade_head_h2(resp: &RespHead) -> http::Response<()> {
    let mut r = http::Response::new(());
    let mut fields = H2Fields::default();
    resp.headers.each(|name, value| {
        if crate::http1::is_hop_by_hop(name)
            || crate::http1::loose_prefix(name, crate::tunnel::meta::PREFIX.as_bytes())
            || is_name(name, "sec-websocket-accept")
        {
            return;
        }
        fields.field(name, value);
    });
    fields.into_map(r.headers_mut());
    r
}
