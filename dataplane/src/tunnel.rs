//! The tunnel between edge and connector: what both ends agree on.
//!
//! A connector dials the edge's tunnel listener (mutual TLS 1.3 against
//! the edge's internal CA) and names what it wants by ALPN:
//!
//! * [`ALPN_ENROLL`] — no client certificate yet: one JSON line with the
//!   enrollment token and a PKCS#10 request, one JSON line back with the
//!   connector's id, group, certificate and the CA certificate to pin.
//! * [`ALPN_RENEW`] — with its current certificate: a new request for a
//!   fresh certificate before the old one reaches the end of its life.
//! * [`ALPN_TUNNEL`] — a tunnel. The connector is the HTTP/2 *server* and
//!   the edge the *client*, so the edge opens one stream per request and
//!   per-stream flow control keeps one slow client from holding up the
//!   others. The edge's first stream on a tunnel is a hello
//!   ([`HELLO_PATH`]) telling the connector which edge worker holds it;
//!   a draining edge asks the connector to move the tunnel ([`MOVE_PATH`]).
//!
//! Each relayed request carries the app's forwarding settings in
//! `postern-*` headers (timeout, TLS validation, extra servers, sticky
//! sessions), so a connector needs no copy of the app table and can never
//! act on a stale one. The edge strips client-sent `postern-*` headers;
//! the connector strips them before the backend sees the request.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt};

pub const ALPN_TUNNEL: &[u8] = b"postern-tunnel/1";
pub const ALPN_ENROLL: &[u8] = b"postern-enroll/1";
pub const ALPN_RENEW: &[u8] = b"postern-renew/1";

/// The edge's first request on each tunnel.
pub const HELLO_PATH: &str = "/.postern/v1/hello";

/// The edge asks the connector to move this tunnel: the edge process
/// drains (a reload or upgrade handed its listeners to a new process),
/// so the connector dials a new tunnel at once, and keeps serving this
/// one (the draining process's last requests) until the edge closes it.
pub const MOVE_PATH: &str = "/.postern/v1/move";

/// Per-request settings the edge sends and the connector consumes.
pub mod meta {
    pub const PREFIX: &str = "postern-";
    /// App name (logs and counters).
    pub const APP: &str = "postern-app";
    /// Backend timeout in seconds.
    pub const TIMEOUT: &str = "postern-timeout";
    /// `verify` or `skip` for https backends.
    pub const TLS: &str = "postern-tls";
    /// Extra trust anchors: base64 DER certificates, comma-separated.
    pub const CA: &str = "postern-ca";
    /// Extra `host:port` servers of the app, comma-separated.
    pub const SERVERS: &str = "postern-servers";
    /// `cookie` for sticky sessions.
    pub const STICKY: &str = "postern-sticky";
    /// The Host header for the backend when it differs from `:authority`.
    pub const HOST: &str = "postern-host";
    /// On a connector's own error response: what went wrong.
    pub const ERROR: &str = "postern-error";
    /// Request: the edge's id of the client connection (for
    /// connection-bound authentication such as NTLM).
    pub const CONN: &str = "postern-conn";
    /// Response: the backend connection now belongs to that client
    /// connection; the edge keeps the client on this tunnel.
    pub const BOUND: &str = "postern-bound";
    /// Response: which of the app's servers answered (a short hash, for
    /// the affinity cookie the edge sets).
    pub const SERVER: &str = "postern-server";
    /// `h2` or `h2c`: the backend speaks HTTP/2 (absent: HTTP/1.1).
    pub const PROTOCOL: &str = "postern-protocol";
    /// On the hello: `index/count` of the edge worker holding the tunnel.
    pub const WORKER: &str = "postern-worker";
}

/// How often each side pings, and how long a ping may go unanswered: a
/// dead tunnel is noticed within 12 s (a pause, then an unanswered ping),
/// inside the 15 s users are promised.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(3);
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(9);

/// Streams one tunnel carries at once; the edge spreads requests over a
/// connector's tunnels and uses a full one only when all are full.
pub const MAX_STREAMS: u32 = 256;
/// HTTP/2 windows. A stream nobody reads (a client that stopped reading
/// its response) holds at most [`STREAM_WINDOW`] of the connection's
/// window, and the connection window has room for every stream's: so
/// stalled streams, however many, never hold back the others (without
/// it, 128 slow readers of large responses stalled a whole tunnel). The
/// price is memory: at most 64 MiB per tunnel, and only while that many
/// clients stall, which `min_send_rate` bounds in time.
pub const STREAM_WINDOW: u32 = 256 * 1024;
pub const CONNECTION_WINDOW: u32 = MAX_STREAMS * STREAM_WINDOW;
/// Streams the connector lets the edge reset before it has accepted them.
/// Clients abort requests in bursts (a page closed, thousands of
/// connections dropped at once) and each abort is one reset: the default
/// guard (20) read that as an attack and closed the whole tunnel. The
/// edge is trusted and bounds its streams, so the guard only stops bugs.
pub const MAX_PENDING_RESETS: usize = 16 * MAX_STREAMS as usize;
/// Request heads are at most 64 KiB at the edge; leave room for metadata.
pub const MAX_HEADER_LIST: u32 = 96 * 1024;
/// The longest JSON line of enrollment and renewal.
pub const MAX_LINE: usize = 64 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub token: String,
    pub csr: String,
    pub host_name: String,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenewRequest {
    pub csr: String,
}

/// The edge's answer to either; `error` set means refused.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Reply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub id: String,
    #[serde(default)]
    pub group: String,
    #[serde(default)]
    pub certificate: String,
    #[serde(default)]
    pub ca: String,
    /// How long the certificate is valid from now, in seconds.
    #[serde(default)]
    pub lifetime_secs: u64,
}

/// Reads one JSON line of at most [`MAX_LINE`] bytes.
pub async fn read_json<T, S>(stream: &mut S) -> std::io::Result<T>
where
    T: serde::de::DeserializeOwned,
    S: AsyncRead + Unpin,
{
    let mut reader =
        tokio::io::BufReader::new(tokio::io::AsyncReadExt::take(stream, MAX_LINE as u64 + 1));
    let mut line = Vec::new();
    reader.read_until(b'\n', &mut line).await?;
    if line.len() > MAX_LINE {
        return Err(std::io::Error::other("message longer than 64 KiB"));
    }
    serde_json::from_slice(&line).map_err(|e| std::io::Error::other(format!("bad message: {e}")))
}

/// Writes one JSON line and flushes it.
pub async fn write_json<T: Serialize, S: AsyncWrite + Unpin>(
    stream: &mut S,
    value: &T,
) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    line.push(b'\n');
    stream.write_all(&line).await?;
    stream.flush().await
}

/// Pings until one goes unanswered for [`HEARTBEAT_TIMEOUT`]; returns then.
pub async fn heartbeat(mut ping: h2::PingPong) {
    loop {
        monoio::time::sleep(HEARTBEAT_EVERY).await;
        match monoio::time::timeout(HEARTBEAT_TIMEOUT, ping.ping(h2::Ping::opaque())).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
    }
}

/// Certificates of a PEM text as one base64 DER value each (PEM bodies
/// are exactly that), comma-separated, for the [`meta::CA`] header.
pub fn pem_to_header(pem: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in pem.lines().map(str::trim) {
        if line.starts_with("-----BEGIN CERTIFICATE") {
            inside = true;
            if !out.is_empty() {
                out.push(',');
            }
        } else if line.starts_with("-----END") {
            inside = false;
        } else if inside {
            out.push_str(line);
        }
    }
    out
}

/// An app's forwarding settings as [`meta`] headers.
pub fn app_metadata(
    app: &postern_control::App,
    ca: Option<&str>,
) -> Result<Vec<(http::HeaderName, http::HeaderValue)>, http::header::InvalidHeaderValue> {
    use http::{HeaderName, HeaderValue};
    let mut v = vec![
        (
            HeaderName::from_static(meta::APP),
            HeaderValue::from_str(&app.name)?,
        ),
        (
            HeaderName::from_static(meta::TIMEOUT),
            HeaderValue::from(app.backend_timeout.duration().as_secs()),
        ),
    ];
    if app.internal_url.scheme == postern_control::Scheme::Https {
        let mode = if app.validate_backend_tls {
            "verify"
        } else {
            "skip"
        };
        v.push((
            HeaderName::from_static(meta::TLS),
            HeaderValue::from_static(mode),
        ));
        if let Some(ca) = ca {
            v.push((
                HeaderName::from_static(meta::CA),
                HeaderValue::from_str(ca)?,
            ));
        }
    }
    match app.internal_protocol {
        postern_control::InternalProtocol::Http1 => {}
        postern_control::InternalProtocol::H2 => v.push((
            HeaderName::from_static(meta::PROTOCOL),
            HeaderValue::from_static("h2"),
        )),
        postern_control::InternalProtocol::H2c => v.push((
            HeaderName::from_static(meta::PROTOCOL),
            HeaderValue::from_static("h2c"),
        )),
    }
    if !app.internal_servers.is_empty() {
        let list: Vec<String> = app
            .internal_servers
            .iter()
            .map(|(h, p)| {
                if h.contains(':') {
                    format!("[{h}]:{p}")
                } else {
                    format!("{h}:{p}")
                }
            })
            .collect();
        v.push((
            HeaderName::from_static(meta::SERVERS),
            HeaderValue::from_str(&list.join(","))?,
        ));
    }
    if app.sticky == postern_control::Sticky::Cookie {
        v.push((
            HeaderName::from_static(meta::STICKY),
            HeaderValue::from_static("cookie"),
        ));
    }
    Ok(v)
}

/// Sends `data` on an HTTP/2 stream no faster than the peer's window
/// allows, so nothing piles up in h2's send buffer: a peer that stops
/// reading stalls this stream only.
pub async fn send_data(
    stream: &mut h2::SendStream<bytes::Bytes>,
    mut data: bytes::Bytes,
    end: bool,
) -> Result<(), h2::Error> {
    if data.is_empty() {
        return stream.send_data(data, end);
    }
    while !data.is_empty() {
        stream.reserve_capacity(data.len());
        let granted = match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
            Some(r) => r?,
            None => return Err(h2::Error::from(h2::Reason::CANCEL)),
        };
        if granted == 0 {
            continue;
        }
        let piece = data.split_to(granted.min(data.len()));
        stream.send_data(piece, end && data.is_empty())?;
    }
    Ok(())
}

/// Gives back `n` bytes of window after they were written onwards.
pub fn release(body: &mut h2::RecvStream, n: usize) {
    let _ = body.flow_control().release_capacity(n);
}
