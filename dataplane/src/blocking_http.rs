//! One HTTP/1.1 request read from a blocking socket, for the small servers
//! on control threads (the admin API, the quickstart's demo provider):
//! bounded head and body, Content-Length bodies only.

use std::io::Read;
use std::net::TcpStream;

pub struct Request {
    pub method: String,
    /// The target as sent: path and query.
    pub path: String,
    pub authorization: Option<String>,
    pub body: Vec<u8>,
}

pub enum ReadError {
    /// Refused: the status to answer, and why.
    Status(u16, String),
    /// The client went away, or sent nothing in time.
    Gone,
}

/// Reads one request: a head of at most `max_head` bytes and a body of at
/// most `max_body`, which must come with a Content-Length (chunked bodies
/// are refused with 411). The caller sets the stream's timeouts.
pub fn read_request(
    stream: &mut TcpStream,
    max_head: usize,
    max_body: usize,
) -> Result<Request, ReadError> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let mut length = 0usize;
                let mut authorization = None;
                for h in req.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        length = std::str::from_utf8(h.value)
                            .ok()
                            .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                            .and_then(|v| v.parse().ok())
                            .ok_or(ReadError::Status(400, "invalid Content-Length".into()))?;
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        return Err(ReadError::Status(
                            411,
                            "send the body with Content-Length".into(),
                        ));
                    } else if h.name.eq_ignore_ascii_case("authorization") {
                        authorization = Some(String::from_utf8_lossy(h.value).into_owned());
                    }
                }
                if length > max_body {
                    return Err(ReadError::Status(
                        413,
                        format!("the request body is larger than {}", size(max_body)),
                    ));
                }
                let method = req.method.unwrap_or("").to_string();
                let path = req.path.unwrap_or("").to_string();
                let mut body = buf[len..].to_vec();
                while body.len() < length {
                    let n = stream.read(&mut chunk).map_err(|_| ReadError::Gone)?;
                    if n == 0 {
                        return Err(ReadError::Gone);
                    }
                    body.extend_from_slice(&chunk[..n]);
                }
                body.truncate(length);
                return Ok(Request {
                    method,
                    path,
                    authorization,
                    body,
                });
            }
            Ok(httparse::Status::Partial) => {}
            Err(_) => return Err(ReadError::Status(400, "malformed request".into())),
        }
        if buf.len() > max_head {
            return Err(ReadError::Status(431, "request head too large".into()));
        }
        let n = stream.read(&mut chunk).map_err(|_| ReadError::Gone)?;
        if n == 0 {
            return Err(ReadError::Gone);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A byte count as people write it (1 MiB, 16 KiB, 100 bytes).
fn size(n: usize) -> String {
    match n {
        n if n >= 1 << 20 && n % (1 << 20) == 0 => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n % (1 << 10) == 0 => format!("{} KiB", n >> 10),
        n => format!("{n} bytes"),
    }
}
