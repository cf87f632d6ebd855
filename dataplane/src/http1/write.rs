//! HTTP/1.1 head serialisation: the byte writing behind every head the
//! edge sends a backend or a client, straight into one buffer, without
//! `fmt`. Which fields go out, and with which values, is decided by the
//! proxy core's phases; this module only writes them.

use super::body::{Encoder, Framing};
use super::push_decimal;

/// `HTTP/1.1 <status> <reason>\r\n`.
pub fn status_line(out: &mut Vec<u8>, status: u16, reason: &[u8]) {
    out.extend_from_slice(b"HTTP/1.1 ");
    push_decimal(out, u64::from(status));
    out.push(b' ');
    out.extend_from_slice(reason);
    out.extend_from_slice(b"\r\n");
}

/// `<name>: <value>\r\n`.
pub fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The fields that tell a backend where a request came from.
pub struct Forwarding<'a> {
    /// The `X-Forwarded-For` chain, ending with the client's address.
    pub forwarded_for: &'a [u8],
    /// `http` or `https`: how the client reached the edge.
    pub proto: &'a str,
    /// The authority the client asked for.
    pub host: &'a [u8],
    pub request_id: &'a str,
    /// The edge's `Via` mark.
    pub via: &'a str,
}

impl Forwarding<'_> {
    pub fn write(&self, out: &mut Vec<u8>) {
        field(out, b"X-Forwarded-For", self.forwarded_for);
        field(out, b"X-Forwarded-Proto", self.proto.as_bytes());
        field(out, b"X-Forwarded-Host", self.host);
        field(out, b"X-Request-Id", self.request_id.as_bytes());
        field(out, b"Via", self.via.as_bytes());
    }
}

/// A request body's framing toward the backend: its length, or chunked.
pub fn request_framing(out: &mut Vec<u8>, framing: Framing) {
    match framing {
        Framing::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            push_decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        Framing::Chunked => out.extend_from_slice(b"Transfer-Encoding: chunked\r\n"),
        _ => {}
    }
}

/// What decides a response's framing and connection fields toward an
/// HTTP/1.x client.
#[derive(Clone, Copy)]
pub struct ClientFraming {
    /// The body's framing as the client will get it.
    pub framing: Framing,
    pub status: u16,
    /// The request was `HEAD`.
    pub head_request: bool,
    /// The client speaks HTTP/1.1 (`minor` 1), so a body of unknown
    /// length can go chunked.
    pub chunked: bool,
    /// The connection stays open after this response.
    pub keep_alive: bool,
    /// The client speaks HTTP/1.0: keep-alive must be said.
    pub http10: bool,
}

/// Writes a response's framing and connection fields and the blank line
/// that ends the head; returns the encoder the body goes through.
pub fn response_framing(out: &mut Vec<u8>, c: ClientFraming) -> Encoder {
    let encoder = match c.framing {
        Framing::Length(n) => {
            out.extend_from_slice(b"Content-Length: ");
            push_decimal(out, n);
            out.extend_from_slice(b"\r\n");
            Encoder::Identity
        }
        Framing::Empty => {
            let s = c.status;
            if !c.head_request && s != 304 && s != 204 && !(100..200).contains(&s) {
                out.extend_from_slice(b"Content-Length: 0\r\n");
            }
            Encoder::Identity
        }
        _ if c.chunked => {
            out.extend_from_slice(b"Transfer-Encoding: chunked\r\n");
            Encoder::Chunked
        }
        _ => Encoder::Identity,
    };
    if !c.keep_alive {
        out.extend_from_slice(b"Connection: close\r\n");
    } else if c.http10 {
        out.extend_from_slice(b"Connection: keep-alive\r\n");
    }
    out.extend_from_slice(b"\r\n");
    encoder
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(c: ClientFraming) -> (String, Encoder) {
        let mut out = Vec::new();
        let e = response_framing(&mut out, c);
        (String::from_utf8(out).unwrap(), e)
    }

    const OK: ClientFraming = ClientFraming {
        framing: Framing::Length(5),
        status: 200,
        head_request: false,
        chunked: true,
        keep_alive: true,
        http10: false,
    };

    #[test]
    fn response_framing_by_case() {
        assert_eq!(
            framed(OK),
            ("Content-Length: 5\r\n\r\n".into(), Encoder::Identity)
        );
        let unknown = ClientFraming {
            framing: Framing::Chunked,
            ..OK
        };
        assert_eq!(
            framed(unknown),
            (
                "Transfer-Encoding: chunked\r\n\r\n".into(),
                Encoder::Chunked
            )
        );
        let old = ClientFraming {
            chunked: false,
            keep_alive: false,
            http10: true,
            ..unknown
        };
        assert_eq!(
            framed(old),
            ("Connection: close\r\n\r\n".into(), Encoder::Identity)
        );
        let kept = ClientFraming { http10: true, ..OK };
        assert_eq!(
            framed(kept).0,
            "Content-Length: 5\r\nConnection: keep-alive\r\n\r\n"
        );
        for (status, head_request, want) in [
            (200, false, "Content-Length: 0\r\n\r\n"),
            (200, true, "\r\n"),
            (204, false, "\r\n"),
            (304, false, "\r\n"),
            (101, false, "\r\n"),
        ] {
            let c = ClientFraming {
                framing: Framing::Empty,
                status,
                head_request,
                ..OK
            };
            assert_eq!(framed(c).0, want, "{status} head={head_request}");
        }
    }

    #[test]
    fn lines_and_fields() {
        let mut out = Vec::new();
        status_line(&mut out, 404, b"Not Found");
        field(&mut out, b"X-A", b"1");
        request_framing(&mut out, Framing::Length(12));
        request_framing(&mut out, Framing::Empty);
        Forwarding {
            forwarded_for: b"10.0.0.1, 192.0.2.7",
            proto: "https",
            host: b"app.example.com",
            request_id: "r1",
            via: "1.1 postern",
        }
        .write(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 404 Not Found\r\nX-A: 1\r\nContent-Length: 12\r\n\
             X-Forwarded-For: 10.0.0.1, 192.0.2.7\r\nX-Forwarded-Proto: https\r\n\
             X-Forwarded-Host: app.example.com\r\nX-Request-Id: r1\r\nVia: 1.1 postern\r\n"
        );
    }
}
