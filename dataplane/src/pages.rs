//! The edge's own responses: small branded HTML pages.
//!
//! Every page carries the request id so a user can quote it and an operator
//! can find the request in the logs. Pages never name an internal host,
//! app or path: a 404 for an unknown host says only that nothing is
//! published there.
#![deny(clippy::disallowed_methods)]

use std::io::Write;

/// Builds a complete response (head and body) into `out`.
pub fn error_page(
    out: &mut Vec<u8>,
    status: u16,
    detail: &str,
    request_id: &str,
    close: bool,
    extra_headers: &[(&str, &str)],
) {
    let title = reason(status);
    let body = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{status} {title}</title>\
<style>body{{font-family:system-ui,sans-serif;max-width:40em;margin:4em auto;color:#222}}\
h1{{font-size:1.4em}}code{{background:#eee;padding:.1em .3em}}</style></head>\n\
<body><h1>{status} {title}</h1><p>{}</p><p>Request ID: <code>{}</code></p>\
<hr><p><small>Postern application proxy</small></p></body></html>\n",
        escape(detail),
        escape(request_id)
    );
    let _ = write!(
        out,
        "HTTP/1.1 {status} {title}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Request-Id: {request_id}\r\n",
        body.len()
    );
    for (k, v) in extra_headers {
        let _ = write!(out, "{k}: {v}\r\n");
    }
    if close {
        out.extend_from_slice(b"Connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body.as_bytes());
}

/// A redirect with a tiny body.
pub fn redirect(out: &mut Vec<u8>, status: u16, location: &str, request_id: &str, close: bool) {
    let _ = write!(
        out,
        "HTTP/1.1 {status} {}\r\nLocation: {location}\r\nContent-Length: 0\r\nX-Request-Id: {request_id}\r\n{}\r\n",
        reason(status),
        if close { "Connection: close\r\n" } else { "" }
    );
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        301 => "Moved Permanently",
        302 => "Found",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        508 => "Loop Detected",
        _ => "Error",
    }
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}
