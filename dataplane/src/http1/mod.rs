//! HTTP/1.1 message heads: parsing with httparse, framing decided by us.
//!
//! httparse tokenises a head and nothing more: it accepts bare LF line ends
//! and leading empty lines and knows nothing of bodies. Everything that
//! decides where one message ends and the next begins is here and in
//! [`body`], written to RFC 9112 with the request-smuggling cases of
//! docs/attacks.md in mind: conflicting or obfuscated `Content-Length` /
//! `Transfer-Encoding` are refused, never "repaired", and heads are always
//! re-serialised with CRLF rather than forwarded byte for byte.
#![deny(clippy::disallowed_methods)]

pub mod body;
pub mod write;

use bytes::{Bytes, BytesMut};

use body::Framing;

/// Request head limits (attack case 23, docs/attacks.md).
pub const MAX_HEADERS: usize = 100;
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
pub const MAX_URL_BYTES: usize = 8 * 1024;
/// Backends get a little more room; a response head beyond it is a 502.
pub const MAX_RESPONSE_HEADERS: usize = 128;

/// A header as received: both parts share the head's buffer.
#[derive(Debug, Clone)]
pub struct Header {
    pub name: Bytes,
    pub value: Bytes,
}

impl Header {
    pub fn is(&self, lower_name: &str) -> bool {
        self.name.eq_ignore_ascii_case(lower_name.as_bytes())
    }
}

/// Why a message was refused, and how to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    pub status: u16,
    pub reason: &'static str,
}

const fn err(status: u16, reason: &'static str) -> HttpError {
    HttpError { status, reason }
}

#[derive(Debug)]
pub struct RequestHead {
    pub method: Bytes,
    /// The origin-form path and query (absolute-form is reduced to this).
    pub path: Bytes,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub headers: Vec<Header>,
    /// Host to route on: lower-case, without port.
    pub host: String,
    /// The authority as the client wrote it (Host header or absolute-form).
    pub authority: Bytes,
    pub framing: Framing,
    pub keep_alive: bool,
    pub expect_continue: bool,
    /// `Upgrade` protocol requested with `Connection: upgrade` (not h2c).
    pub upgrade: Option<Bytes>,
    /// Header names listed in `Connection`, lower-case.
    pub connection_tokens: ConnectionTokens,
}

impl RequestHead {
    pub fn is_head(&self) -> bool {
        &self.method[..] == b"HEAD"
    }
}

#[derive(Debug)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: Bytes,
    pub headers: Vec<Header>,
    pub framing: Framing,
    pub keep_alive: bool,
    pub connection_tokens: ConnectionTokens,
}

/// Tries to parse a request head at the start of `buf`. `Ok(None)` means
/// more bytes are needed; on success the head's bytes are removed from `buf`.
#[cfg(test)]
pub fn parse_request(buf: &mut BytesMut) -> Result<Option<RequestHead>, HttpError> {
    parse_request_or_refuse(buf).map_err(|r| r.error)
}

/// A request refused after its head was split off the buffer: what its
/// request line said, for the access log.
pub struct Refused {
    pub error: HttpError,
    /// Method and target, when the head got that far.
    pub line: Option<(Bytes, Bytes)>,
}

/// [`parse_request`], keeping the request line of a refused head.
pub fn parse_request_or_refuse(buf: &mut BytesMut) -> Result<Option<RequestHead>, Refused> {
    let raw = match split_request(buf) {
        Ok(Some(raw)) => raw,
        Ok(None) => return Ok(None),
        Err(error) => return Err(Refused { error, line: None }),
    };
    match check_request(&raw) {
        Ok(c) => Ok(Some(RequestHead {
            method: raw.method,
            path: c.path,
            minor: raw.minor,
            headers: raw.headers,
            host: c.host,
            authority: c.authority,
            framing: c.framing,
            keep_alive: c.keep_alive,
            expect_continue: c.expect_continue,
            upgrade: c.upgrade,
            connection_tokens: c.connection_tokens,
        })),
        Err(error) => Err(Refused {
            error,
            line: Some((raw.method, raw.target)),
        }),
    }
}

/// What [`check_request`] finds in a head.
struct Checked {
    path: Bytes,
    host: String,
    authority: Bytes,
    framing: Framing,
    keep_alive: bool,
    expect_continue: bool,
    upgrade: Option<Bytes>,
    connection_tokens: ConnectionTokens,
}

/// Validates a split-off head and reads what the edge needs from it.
fn check_request(raw: &RawRequest) -> Result<Checked, HttpError> {
    let f = Fields::scan(&raw.headers, &raw.before)?;
    let framing = request_framing(&f, raw.minor)?;
    // Target: origin-form, or absolute-form whose authority wins over Host.
    let (path, authority) = if raw.target.first() == Some(&b'/') {
        (raw.target.clone(), None)
    } else if let Some((auth, path)) = split_absolute(&raw.target) {
        (path, Some(auth))
    } else if &raw.method[..] == b"CONNECT" {
        return Err(err(405, "CONNECT is not supported"));
    } else {
        return Err(err(
            400,
            "the request target must be a path or an absolute URL",
        ));
    };
    if path.contains(&b'#') {
        return Err(err(400, "the request target contains a fragment"));
    }
    if &raw.method[..] == b"TRACE" {
        // A reflected request would show the client the headers the edge
        // adds, and cookies to scripts that cannot read them otherwise.
        return Err(err(405, "TRACE is not allowed"));
    }
    match (f.hosts, raw.minor) {
        (0, 1) => return Err(err(400, "the Host header is missing")),
        (0, _) if authority.is_none() => return Err(err(400, "the Host header is missing")),
        (n, _) if n > 1 => return Err(err(400, "the Host header is repeated")),
        _ => {}
    }
    // With an absolute-form target the URL's authority wins, but the Host
    // header must still be valid (RFC 9112 §3.2).
    if let (Some(_), Some(h)) = (&authority, &f.host) {
        if parse_authority(h).is_none() {
            return Err(err(400, "the Host header is not a valid host"));
        }
    }
    let authority = match authority.or(f.host) {
        Some(a) => a,
        None => return Err(err(400, "the Host header is missing")),
    };
    let host =
        parse_authority(&authority).ok_or(err(400, "the Host header is not a valid host"))?;

    let expect_continue = match f.expect {
        None => false,
        Some(v) if v.eq_ignore_ascii_case(b"100-continue") => true,
        Some(_) => return Err(err(417, "only `Expect: 100-continue` is supported")),
    };
    let tokens = f.connection_tokens;
    let keep_alive = if raw.minor == 0 {
        tokens.keep_alive
    } else {
        !tokens.close
    };
    let upgrade = match f.upgrade {
        Some(u) if tokens.upgrade && raw.minor == 1 => {
            // h2c upgrades are never relayed (attack case 12).
            (!u.split(|&b| b == b',').any(|p| {
                let p = trim_ows(p);
                p.len() >= 3 && p[..3].eq_ignore_ascii_case(b"h2c")
            }))
            .then_some(u)
        }
        _ => None,
    };
    Ok(Checked {
        path,
        host,
        authority,
        framing,
        keep_alive,
        expect_continue,
        upgrade,
        connection_tokens: tokens,
    })
}

/// A request head split off the buffer, before its headers are read.
struct RawRequest {
    method: Bytes,
    target: Bytes,
    minor: u8,
    headers: Vec<Header>,
    /// Per header, the byte before its value: the colon or the
    /// whitespace httparse skipped.
    before: [u8; MAX_HEADERS],
}

/// Runs httparse over `buf`; on a complete head, splits it off (the
/// parsed fields then share its bytes).
fn split_request(buf: &mut BytesMut) -> Result<Option<RawRequest>, HttpError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => {
            if buf.len() > MAX_HEAD_BYTES {
                return Err(if request_line_too_long(buf) {
                    err(414, "the request URL is longer than 8 KiB")
                } else {
                    err(431, "the request head is larger than 64 KiB")
                });
            }
            if request_line_too_long(buf) {
                return Err(err(414, "the request URL is longer than 8 KiB"));
            }
            return Ok(None);
        }
        Err(httparse::Error::TooManyHeaders) => {
            return Err(err(431, "the request has more than 100 header fields"))
        }
        Err(e) => return Err(parse_error(e)),
    };
    if len > MAX_HEAD_BYTES {
        return Err(err(431, "the request head is larger than 64 KiB"));
    }
    let target = req.path.unwrap_or("");
    if target.len() > MAX_URL_BYTES {
        return Err(err(414, "the request URL is longer than 8 KiB"));
    }
    let minor = req.version.unwrap_or(1);
    let base = buf.as_ptr() as usize;
    // Offsets rather than slices, so the parsed head can move into `Bytes`.
    let method_off = span(base, req.method.unwrap_or("").as_bytes());
    let target_off = span(base, target.as_bytes());
    let mut spans = Vec::with_capacity(req.headers.len());
    let mut before = [0u8; MAX_HEADERS];
    for (h, b) in req.headers.iter().zip(before.iter_mut()) {
        let value = span(base, h.value);
        spans.push((span(base, h.name.as_bytes()), value));
        *b = buf[value.0.saturating_sub(1)];
    }
    let head = buf.split_to(len).freeze();
    let slice = |(s, e): (usize, usize)| head.slice(s..e);
    Ok(Some(RawRequest {
        method: slice(method_off),
        target: slice(target_off),
        minor,
        headers: spans
            .iter()
            .map(|&(n, v)| Header {
                name: slice(n),
                value: slice(v),
            })
            .collect(),
        before,
    }))
}

/// The request headers the edge reads itself.
#[derive(Default)]
struct Fields {
    host: Option<Bytes>,
    hosts: usize,
    content_length: Option<u64>,
    te_lines: usize,
    /// The Transfer-Encoding value and the byte before it.
    te: Option<(Bytes, u8)>,
    connection_tokens: ConnectionTokens,
    expect: Option<Bytes>,
    upgrade: Option<Bytes>,
}

impl Fields {
    fn scan(headers: &[Header], before: &[u8]) -> Result<Fields, HttpError> {
        let mut f = Fields::default();
        for (h, &before) in headers.iter().zip(before) {
            if h.is("host") {
                f.hosts += 1;
                f.host = Some(h.value.clone());
            } else if h.is("content-length") {
                let n = parse_content_length(&h.value)
                    .ok_or(err(400, "Content-Length is not a valid decimal length"))?;
                if f.content_length.is_some_and(|c| c != n) {
                    return Err(err(400, "conflicting Content-Length values"));
                }
                f.content_length = Some(n);
            } else if h.is("transfer-encoding") {
                f.te_lines += 1;
                f.te = Some((h.value.clone(), before));
            } else if h.is("connection") {
                f.connection_tokens.add(&h.value);
            } else if h.is("expect") {
                f.expect = Some(h.value.clone());
            } else if h.is("upgrade") {
                f.upgrade = Some(h.value.clone());
            } else if loose_eq(&h.name, b"content-length")
                || loose_eq(&h.name, b"transfer-encoding")
            {
                // `Content_Length` is read as the framing header by some
                // servers and ignored by others: a desync waiting to happen.
                return Err(err(400, "a framing header is spelt with `_`"));
            }
        }
        Ok(f)
    }
}

/// How the request body is delimited; any ambiguity is refused.
fn request_framing(f: &Fields, minor: u8) -> Result<Framing, HttpError> {
    match (&f.te, f.content_length) {
        (Some(_), Some(_)) => Err(err(
            400,
            "both Content-Length and Transfer-Encoding are present",
        )),
        (Some(_), None) if minor == 0 => {
            Err(err(400, "Transfer-Encoding is not allowed in HTTP/1.0"))
        }
        (Some((value, before)), None) => {
            if f.te_lines > 1 {
                return Err(err(400, "Transfer-Encoding is repeated"));
            }
            // Only a space may precede a framing value (attack case 2: a tab
            // before `chunked` is an obfuscation).
            if *before != b':' && *before != b' ' {
                return Err(err(400, "Transfer-Encoding value is malformed"));
            }
            if value.eq_ignore_ascii_case(b"chunked") {
                Ok(Framing::Chunked)
            } else if value
                .split(|&b| b == b',')
                .all(|t| is_token(trim_ows(t)) && !trim_ows(t).eq_ignore_ascii_case(b"chunked"))
            {
                Err(err(501, "only the chunked transfer coding is implemented"))
            } else {
                Err(err(400, "Transfer-Encoding value is malformed"))
            }
        }
        // `Content-Length: 0` is kept: some backends insist on it for POST.
        (None, Some(n)) => Ok(Framing::Length(n)),
        (None, None) => Ok(Framing::Empty),
    }
}

/// Parses a backend's response head. Any ambiguity in framing is an error:
/// the caller answers 502 and drops that upstream connection (attack case 13).
pub fn parse_response(
    buf: &mut BytesMut,
    request_was_head: bool,
) -> Result<Option<ResponseHead>, HttpError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_RESPONSE_HEADERS];
    let mut res = httparse::Response::new(&mut slots);
    let len = match res.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD_BYTES => {
            return Err(err(502, "the backend's response head is too large"))
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(err(502, "the backend sent a malformed response head")),
    };
    if len > MAX_HEAD_BYTES {
        return Err(err(502, "the backend's response head is too large"));
    }
    let status = res.code.unwrap_or(0);
    let minor = res.version.unwrap_or(1);
    let base = buf.as_ptr() as usize;
    let reason_off = span(base, res.reason.unwrap_or("").as_bytes());
    let spans: Vec<_> = res
        .headers
        .iter()
        .map(|h| (span(base, h.name.as_bytes()), span(base, h.value)))
        .collect();
    let head = buf.split_to(len).freeze();
    let headers: Vec<Header> = spans
        .iter()
        .map(|&((ns, ne), (vs, ve))| Header {
            name: head.slice(ns..ne),
            value: head.slice(vs..ve),
        })
        .collect();
    let mut content_length = None;
    let mut te: Option<Bytes> = None;
    let mut connection_tokens = ConnectionTokens::default();
    for h in &headers {
        if h.is("content-length") {
            let n = parse_content_length(&h.value)
                .ok_or(err(502, "the backend sent an invalid Content-Length"))?;
            if content_length.is_some_and(|c| c != n) {
                return Err(err(
                    502,
                    "the backend sent conflicting Content-Length values",
                ));
            }
            content_length = Some(n);
        } else if h.is("transfer-encoding") {
            if te.is_some() {
                return Err(err(502, "the backend repeated Transfer-Encoding"));
            }
            te = Some(h.value.clone());
        } else if h.is("connection") {
            connection_tokens.add(&h.value);
        }
    }
    if te.is_some() && content_length.is_some() {
        return Err(err(
            502,
            "the backend sent both Content-Length and Transfer-Encoding",
        ));
    }
    let bodyless =
        request_was_head || (100..200).contains(&status) || status == 204 || status == 304;
    let framing = if bodyless {
        Framing::Empty
    } else if let Some(te) = te {
        let last = te
            .rsplit(|&b| b == b',')
            .next()
            .map(trim_ows)
            .unwrap_or(b"");
        if last.eq_ignore_ascii_case(b"chunked") {
            if te.split(|&b| b == b',').count() > 1 {
                // Codings before chunked would have to be passed through
                // as they are; we refuse rather than half-support them.
                return Err(err(502, "the backend used an unsupported transfer coding"));
            }
            Framing::Chunked
        } else {
            Framing::UntilClose
        }
    } else if let Some(n) = content_length {
        if n == 0 {
            Framing::Empty
        } else {
            Framing::Length(n)
        }
    } else {
        Framing::UntilClose
    };
    let keep_alive = framing != Framing::UntilClose
        && if minor == 0 {
            connection_tokens.keep_alive
        } else {
            !connection_tokens.close
        };
    Ok(Some(ResponseHead {
        status,
        reason: head.slice(reason_off.0..reason_off.1),
        headers,
        framing,
        keep_alive,
        connection_tokens,
    }))
}

/// Where `part` (a slice httparse returned) lies in the parsed buffer.
/// Empty parts may not point into the buffer at all, so they map to 0..0.
fn span(base: usize, part: &[u8]) -> (usize, usize) {
    if part.is_empty() {
        return (0, 0);
    }
    let start = (part.as_ptr() as usize).wrapping_sub(base);
    (start, start + part.len())
}

fn parse_error(e: httparse::Error) -> HttpError {
    use httparse::Error::*;
    match e {
        HeaderName => err(400, "a header name is invalid"),
        HeaderValue => err(400, "a header value contains a forbidden character"),
        NewLine => err(400, "a line ending is malformed"),
        Token => err(400, "the request line is malformed"),
        Version => err(400, "the HTTP version is not supported"),
        _ => err(400, "the request is malformed"),
    }
}

fn request_line_too_long(buf: &[u8]) -> bool {
    let window = &buf[..buf.len().min(MAX_URL_BYTES + 64)];
    memchr::memchr(b'\n', window).is_none() && buf.len() > MAX_URL_BYTES + 32
}

/// `1*DIGIT`, optionally a list of identical values (`5, 5`).
pub fn parse_content_length(v: &[u8]) -> Option<u64> {
    let mut result = None;
    for part in v.split(|&b| b == b',') {
        let part = trim_ows(part);
        if part.is_empty() || part.len() > 19 || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n: u64 = std::str::from_utf8(part).ok()?.parse().ok()?;
        if result.is_some_and(|r| r != n) {
            return None;
        }
        result = Some(n);
    }
    result
}

/// Headers never forwarded in either direction (RFC 9110 §7.6.1), plus
/// the framing ones each hop sets itself.
pub fn is_hop_by_hop(name: &[u8]) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "http2-settings",
    ]
    .iter()
    .any(|x| name.eq_ignore_ascii_case(x.as_bytes()))
}

/// Whether `name` equals `lower` (lower-case, with `-`) when `-` and `_`
/// count as one character and case is ignored: many servers (CGI, WSGI)
/// read header names that way.
pub fn loose_eq(name: &[u8], lower: &[u8]) -> bool {
    name.len() == lower.len()
        && name.iter().zip(lower).all(|(&a, &b)| {
            let a = if a == b'_' {
                b'-'
            } else {
                a.to_ascii_lowercase()
            };
            a == b
        })
}

/// Whether `name` starts with `lower` in the sense of [`loose_eq`].
pub fn loose_prefix(name: &[u8], lower: &[u8]) -> bool {
    name.len() >= lower.len() && loose_eq(&name[..lower.len()], lower)
}

pub fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

pub(crate) fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|&b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The tokens of a message's `Connection` headers: the three the edge
/// acts on as flags, any other as a header name to drop.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionTokens {
    pub close: bool,
    pub keep_alive: bool,
    pub upgrade: bool,
    /// Other tokens, lower-cased: headers meant for this hop only.
    pub others: Vec<String>,
}

impl ConnectionTokens {
    /// Adds the tokens of one `Connection` header value.
    pub fn add(&mut self, v: &[u8]) {
        for t in v.split(|&b| b == b',') {
            let t = trim_ows(t);
            if t.eq_ignore_ascii_case(b"close") {
                self.close = true;
            } else if t.eq_ignore_ascii_case(b"keep-alive") {
                self.keep_alive = true;
            } else if t.eq_ignore_ascii_case(b"upgrade") {
                self.upgrade = true;
            } else if !t.is_empty() {
                self.others
                    .push(String::from_utf8_lossy(t).to_ascii_lowercase());
            }
        }
    }

    /// Whether header `name` is listed (and so stays on this hop).
    pub fn lists(&self, name: &[u8]) -> bool {
        (self.close && name.eq_ignore_ascii_case(b"close"))
            || (self.keep_alive && name.eq_ignore_ascii_case(b"keep-alive"))
            || (self.upgrade && name.eq_ignore_ascii_case(b"upgrade"))
            || self
                .others
                .iter()
                .any(|t| name.eq_ignore_ascii_case(t.as_bytes()))
    }
}

/// Splits `http(s)://authority/path` into (authority, path).
fn split_absolute(target: &Bytes) -> Option<(Bytes, Bytes)> {
    let lower: Vec<u8> = target.iter().take(8).map(u8::to_ascii_lowercase).collect();
    let skip = if lower.starts_with(b"https://") {
        8
    } else if lower.starts_with(b"http://") {
        7
    } else {
        return None;
    };
    let rest = target.slice(skip..);
    let end = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    let authority = rest.slice(..end);
    let path = if end == rest.len() {
        Bytes::from_static(b"/")
    } else if rest[end] == b'?' {
        let mut p = b"/".to_vec();
        p.extend_from_slice(&rest[end..]);
        Bytes::from(p)
    } else {
        rest.slice(end..)
    };
    Some((authority, path))
}

/// Lower-case host without port, if `authority` is a valid `host[:port]`.
pub fn parse_authority(authority: &[u8]) -> Option<String> {
    match plain_authority(authority) {
        Some(fast) => fast,
        None => general_authority(authority),
    }
}

/// [`parse_authority`] for any authority.
fn general_authority(authority: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(authority).ok()?;
    let (host, _) = postern_control::url::split_host_port(s).ok()?;
    // `app.example.com.` (fully qualified) is the same host.
    let host = host.strip_suffix('.').unwrap_or(host);
    match postern_control::url::parse_host(host, false).ok()? {
        postern_control::HostPattern::Exact(h) => Some(h),
        postern_control::HostPattern::Wildcard(_) => None,
    }
}

/// Appends `n` in decimal (head serialisation without `fmt`).
pub fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends `n` in lower-case hexadecimal (chunk sizes).
pub fn push_hex(out: &mut Vec<u8>, mut n: u64) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut digits = [0u8; 16];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = HEX[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// [`parse_authority`] in one pass for the usual `name[:port]` (letters,
/// digits, `-`, `_`, `.`): `None` when the authority needs the general
/// parser (IP literals in brackets, anything unusual), else its answer.
fn plain_authority(authority: &[u8]) -> Option<Option<String>> {
    let (name, port) = match memchr::memchr(b':', authority) {
        Some(i) => (&authority[..i], Some(&authority[i + 1..])),
        None => (authority, None),
    };
    if let Some(p) = port {
        if p.is_empty() || p.len() > 5 || !p.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = p.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0'));
        if n == 0 || n > 65535 {
            return Some(None);
        }
    }
    // `app.example.com.` (fully qualified) is the same host.
    let name = name.strip_suffix(b".").unwrap_or(name);
    if name.is_empty() || name.len() > 253 {
        return Some(None);
    }
    let mut label = 0usize;
    let mut prev = b'.';
    for &b in name {
        match b {
            b'.' => {
                if label == 0 || prev == b'-' {
                    return Some(None);
                }
                label = 0;
            }
            b'-' if label == 0 => return Some(None),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' => {
                label += 1;
                if label > 63 {
                    return Some(None);
                }
            }
            _ => return None,
        }
        prev = b;
    }
    if label == 0 || prev == b'-' {
        return Some(None);
    }
    let mut host = String::with_capacity(name.len());
    host.extend(name.iter().map(|b| b.to_ascii_lowercase() as char));
    Some(Some(host))
}

#[cfg(test)]
mod tests;
