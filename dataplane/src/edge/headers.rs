//! Which client headers the edge owns.
//!
//! The edge is the first hop: identity and forwarding headers are its to
//! set, never the client's. Servers read header names loosely (CGI and
//! WSGI turn `-` into `_`, so `X-Postern_User` and `X_Postern-User` both
//! arrive as `HTTP_X_POSTERN_USER`), so every comparison here treats `-`
//! and `_` as the same character, in any case.

pub use crate::http1::{loose_eq, loose_prefix};

/// Headers a client may never send to a backend: the edge sets or drops
/// them. `x-forwarded-for` is not here: it is kept (and appended to) only
/// from a front proxy the app trusts.
const OWNED: &[&[u8]] = &[
    b"host",
    b"expect",
    b"x-request-id",
    b"x-forwarded-proto",
    b"x-forwarded-host",
    b"x-forwarded-port",
    b"x-forwarded-prefix",
    b"x-forwarded-ssl",
    b"x-forwarded-scheme",
    b"x-forwarded-server",
    b"x-forwarded-uri",
    b"forwarded",
    b"x-real-ip",
    b"x-client-ip",
    b"true-client-ip",
    b"x-original-url",
    b"x-original-uri",
    b"x-rewrite-url",
];

/// The prefixes of the edge's own identity headers and of the tunnel's
/// metadata headers.
const OWNED_PREFIXES: &[&[u8]] = &[b"x-postern-", b"postern-"];

/// Whether a client header with this name is the edge's to set.
pub fn is_edge_owned(name: &[u8]) -> bool {
    // Every owned name starts with one of these letters; most headers a
    // request carries (accept, cookie, user-agent...) are turned away by
    // their first byte.
    match name.first().map(u8::to_ascii_lowercase) {
        Some(b'x' | b'f' | b'h' | b'e' | b't' | b'p') => {
            OWNED.iter().any(|o| loose_eq(name, o))
                || OWNED_PREFIXES.iter().any(|p| loose_prefix(name, p))
        }
        _ => false,
    }
}

/// `X-Forwarded-For` in any spelling.
pub fn is_forwarded_for(name: &[u8]) -> bool {
    loose_eq(name, b"x-forwarded-for")
}

/// This edge process's mark in `Via`, `1.1 postern-<random>`: a request
/// that arrives carrying it has been here before (an app that points, by
/// some name, back at the edge, or edges pointing at each other).
pub fn via_mark() -> &'static str {
    static MARK: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    MARK.get_or_init(|| {
        let mut seed = [0u8; 6];
        let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut seed);
        let hex: String = seed.iter().map(|b| format!("{b:02x}")).collect();
        format!("1.1 postern-{hex}")
    })
}

/// Whether a request has passed through this edge already.
pub fn is_loop(head: &crate::http1::RequestHead) -> bool {
    let mark = via_mark().as_bytes();
    head.headers
        .iter()
        .any(|h| h.is("via") && memchr::memmem::find(&h.value, mark).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dash_and_underscore_are_one_character() {
        for n in [
            "X-Postern-User",
            "X-Postern_User",
            "X_Postern-Groups",
            "x_postern_email",
            "X-POSTERN-JWT-ASSERTION",
            "Postern-App",
            "postern_servers",
            "Forwarded",
            "X-Real-IP",
            "X_Real_Ip",
            "True-Client-IP",
            "X-Original-URL",
            "X-Rewrite-Url",
            "X-Forwarded-Port",
            "X_Forwarded_Prefix",
            "X-Forwarded-Ssl",
            "X-Forwarded_Proto",
            "x_forwarded_host",
            "X-Request_Id",
            "Host",
        ] {
            assert!(is_edge_owned(n.as_bytes()), "{n}");
        }
        for n in [
            "X-Posternx",
            "Accept",
            "X-Forwarded-For",
            "Cookie",
            "Hostx",
            "X-Post",
        ] {
            assert!(!is_edge_owned(n.as_bytes()), "{n}");
        }
        assert!(is_forwarded_for(b"X_Forwarded-For"));
    }
}
