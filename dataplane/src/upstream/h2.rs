//! HTTP/2 connections to backends (`internal_protocol = "h2"` over TLS
//! with ALPN, `"h2c"` with prior knowledge): one multiplexed connection
//! per backend and worker, opened on first use, dropped when it fails and
//! opened again by the next request.

use std::time::Instant;

use bytes::Bytes;
use monoio::net::TcpStream;

use super::{Target, Upstream, UpstreamError};

/// The per-stream and per-connection windows towards backends: large
/// enough that one stream streams at full speed; the backend's own
/// windows bound what the edge sends.
const STREAM_WINDOW: u32 = 1024 * 1024;
const CONNECTION_WINDOW: u32 = 16 * 1024 * 1024;
/// Response heads from backends (gRPC metadata included).
const MAX_HEADER_LIST: u32 = 256 * 1024;

/// A pooled connection, by (host, port, TLS settings).
pub type H2Key = (String, u16, usize);

impl Upstream {
    /// A handle for sending requests to `target` over HTTP/2, ready for a
    /// new stream. A pooled connection that has failed is replaced once.
    pub async fn h2(
        &self,
        target: &Target,
    ) -> Result<h2::client::SendRequest<Bytes>, UpstreamError> {
        let key: H2Key = (target.host.clone(), target.port, target.tls_id());
        let pooled = self.h2.borrow().get(&key).cloned();
        if let Some(send) = pooled {
            match send.ready().await {
                Ok(s) => return Ok(s),
                Err(_) => {
                    self.h2.borrow_mut().remove(&key);
                }
            }
        }
        let send = Box::pin(self.h2_connect(target)).await?;
        self.h2.borrow_mut().insert(key, send.clone());
        send.ready()
            .await
            .map_err(|e| UpstreamError::Tls(std::io::Error::other(e.to_string())))
    }

    async fn h2_connect(
        &self,
        target: &Target,
    ) -> Result<h2::client::SendRequest<Bytes>, UpstreamError> {
        let addrs = self.resolve(&target.host, target.port).await?;
        let deadline = Instant::now() + self.connect_timeout;
        let mut last = None;
        for addr in addrs {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(UpstreamError::ConnectTimeout);
            }
            let tcp = match monoio::time::timeout(left, TcpStream::connect_addr(addr)).await {
                Ok(Ok(t)) => t,
                Ok(Err(e)) => {
                    last = Some(UpstreamError::Connect(e));
                    continue;
                }
                Err(_) => return Err(UpstreamError::ConnectTimeout),
            };
            let _ = tcp.set_nodelay(true);
            let tcp = tcp
                .try_into_poll_io()
                .map_err(|(e, _)| UpstreamError::Connect(e))?;
            let left = deadline.saturating_duration_since(Instant::now());
            let handshake = async {
                match &target.tls {
                    None => handshake(tcp).await,
                    Some(cfg) => {
                        let name = rustls_pki_types::ServerName::try_from(
                            target
                                .host
                                .trim_start_matches('[')
                                .trim_end_matches(']')
                                .to_string(),
                        )
                        .map_err(|e| UpstreamError::Tls(std::io::Error::other(e)))?;
                        let tls = tokio_rustls::TlsConnector::from(cfg.clone())
                            .connect(name, tcp)
                            .await
                            .map_err(UpstreamError::Tls)?;
                        if tls.get_ref().1.alpn_protocol() != Some(b"h2") {
                            return Err(UpstreamError::Tls(std::io::Error::other(
                                "the backend did not agree to HTTP/2 (ALPN h2); set internal_protocol = \"http1\"",
                            )));
                        }
                        handshake(tls).await
                    }
                }
            };
            return match monoio::time::timeout(left, handshake).await {
                Ok(r) => r,
                Err(_) => Err(UpstreamError::ConnectTimeout),
            };
        }
        Err(last.unwrap_or(UpstreamError::ConnectTimeout))
    }
}

async fn handshake<T>(io: T) -> Result<h2::client::SendRequest<Bytes>, UpstreamError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + 'static,
{
    let (send, conn) = h2::client::Builder::new()
        .initial_window_size(STREAM_WINDOW)
        .initial_connection_window_size(CONNECTION_WINDOW)
        .max_header_list_size(MAX_HEADER_LIST)
        .handshake::<_, Bytes>(io)
        .await
        .map_err(|e| {
            UpstreamError::Connect(std::io::Error::other(format!(
                "the backend refused HTTP/2: {e}"
            )))
        })?;
    monoio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "HTTP/2 backend connection ended");
        }
    });
    Ok(send)
}
