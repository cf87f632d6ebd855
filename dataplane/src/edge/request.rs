//! The upstream-request phase: which client headers travel on, and the
//! values the backend sees. Both hops build their request (HTTP/1.1 bytes
//! or an HTTP/2 header map) from these, so they cannot drift apart.

use super::conn::ConnInfo;
use super::headers as owned;
use super::proxy::Exchange;
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
