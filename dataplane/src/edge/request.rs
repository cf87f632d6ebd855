//! The upstream-request phase: which client headers travel on, and the
//! values the backend sees. Both hops build their request (HTTP/1.1 bytes
//! or an HTTP/2 header map) from these, so they cannot drift apart.

use super::conn::ConnInfo;
use super::headers as owned;
use super::proxy::Exchange;
use bytes::Bytes;

use crate::http1::body::Framing;
use crate::http1::{Header, RequestHead};
use crate::route;
use crate::translate;

/// Calls `f` with each client header that travels on to the backend (not
/// hop-by-hop, not named in `Connection`, not one the edge owns) and
/// returns the `X-Forwarded-For` value: the client's address, after the
/// chain the client sent when it is a front proxy the app trusts.
pub fn forwarded_headers(
    app: &postern_control::App,
    info: &ConnInfo,
    head: &RequestHead,
    mut f: impl FnMut(&Header),
) -> Vec<u8> {
    let trusted = !app.trusted_forwarded_for.is_empty()
        && postern_control::config::any_contains(&app.trusted_forwarded_for, info.peer.ip());
    let mut xff = Vec::new();
    for h in &head.headers {
        if crate::http1::is_hop_by_hop(&h.name)
            || owned::is_edge_owned(&h.name)
            || head.connection_tokens.lists(&h.name)
        {
            continue;
        }
        // The edge's own cookies stay at the edge; a Cookie header that
        // held nothing else goes entirely.
        if app.preauth == postern_control::Preauth::Oidc
            && h.is("cookie")
            && crate::auth::gate::only_edge_cookies(&h.value)
        {
            continue;
        }
        if owned::is_forwarded_for(&h.name) {
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
pub fn backend_value(ctx: &Exchange<'_>, head: &RequestHead, h: &Header) -> Option<Vec<u8>> {
    if ctx.who.is_some() && h.is("cookie") {
        return crate::auth::gate::backend_cookie(&h.value);
    }
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
        let authority = route::internal_authority(&ctx.app.app, &ctx.internal_host);
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

/// Calls `f` with each identity header the edge adds for the signed-in
/// user (client-sent ones never get this far: the edge owns the names).
pub fn identity_headers(
    ctx: &Exchange<'_>,
    head: &RequestHead,
    mut f: impl FnMut(&'static str, &[u8]),
) {
    let Some(who) = &ctx.who else {
        return;
    };
    for (name, value) in &who.headers {
        f(name, value);
    }
    if ctx.app.app.sso.assertion {
        let token =
            crate::auth::gate::assertion(ctx.worker, ctx.app, ctx.info, &head.authority, who);
        f("x-postern-jwt-assertion", token.as_bytes());
    }
}

/// Appends the path the backend gets to `out`: the internal prefix, then
/// what follows the external prefix the request was routed on.
pub fn backend_path(ctx: &Exchange<'_>, head: &RequestHead, out: &mut Vec<u8>) {
    let app = &ctx.app.app;
    let ext_path = app.external_url.path.as_bytes();
    let rest = &head.path[ext_path.len().min(head.path.len())..];
    out.extend_from_slice(app.internal_url.path.as_bytes());
    out.extend_from_slice(rest);
}

/// Phase 4 over HTTP/2 (a tunnel, or an HTTP/2 backend): the request
/// without its body. Headers go straight into the request's map; values
/// share the client's bytes. With `keep_authority`, the URI names the
/// internal server and the client's Host travels separately (the tunnel's
/// metadata); otherwise, for an app that does not translate headers, the
/// backend sees the client's authority.
pub fn h2_request(
    ctx: &Exchange<'_>,
    head: &RequestHead,
    websocket: bool,
    keep_authority: bool,
) -> Result<http::Request<()>, String> {
    use http::header::{HeaderName, HeaderValue};
    let app = ctx.app;
    let int = &app.app.internal_url;
    let authority = if keep_authority || app.app.translate_headers {
        route::internal_authority(&app.app, &ctx.internal_host)
    } else {
        String::from_utf8_lossy(&head.authority).into_owned()
    };
    let uri = http::Uri::builder()
        .scheme(int.scheme.as_str())
        .authority(authority)
        .path_and_query({
            let mut path = Vec::with_capacity(head.path.len() + int.path.len());
            backend_path(ctx, head, &mut path);
            path
        })
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
        let value = match backend_value(ctx, head, h) {
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
    // Values that differ per request or per client connection are never
    // worth a slot in the tunnel's HPACK table: indexing them only evicts
    // the values every request repeats (the app's metadata, the client's
    // usual headers), so they go as literals, never indexed.
    let mut request_id = value(ctx.id.as_bytes())?;
    request_id.set_sensitive(true);
    map.append(HeaderName::from_static("x-request-id"), request_id);
    map.append(
        http::header::VIA,
        HeaderValue::from_static(super::headers::via_mark()),
    );
    let mut bad = None;
    identity_headers(ctx, head, |name, v| match HeaderValue::from_bytes(v) {
        Ok(mut v) => {
            // Per-user values: never indexed in the tunnel's HPACK table.
            v.set_sensitive(true);
            map.append(HeaderName::from_static(name), v);
        }
        Err(_) => bad = Some(name),
    });
    if let Some(name) = bad {
        return Err(format!(
            "the identity header `{name}` cannot be relayed over HTTP/2"
        ));
    }
    if app.app.internal_protocol != postern_control::InternalProtocol::Http1
        && head.headers.iter().any(|h| {
            h.is("te")
                && h.value
                    .split(|&b| b == b',')
                    .any(|t| crate::http1::trim_ows(t).eq_ignore_ascii_case(b"trailers"))
        })
    {
        // gRPC servers want to know the client takes trailers.
        map.append(http::header::TE, HeaderValue::from_static("trailers"));
    }
    if let Framing::Length(n) = head.framing {
        map.append(http::header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    Ok(req)
}
