//! A connector's identity on disk, and the two short exchanges that make
//! and refresh it (registration and renewal).
//!
//! The identity file holds the private key, so it is written 0600 and
//! replaced atomically: a renewal interrupted by a crash leaves the old,
//! still valid identity in place.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Shared;
use crate::tunnel;

pub const IDENTITY_FILE: &str = "connector.json";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    pub id: String,
    pub group: String,
    /// `host:port` of the edge's tunnel listener.
    pub edge: String,
    /// The edge's internal CA (PEM), pinned at registration.
    pub ca: String,
    pub certificate: String,
    pub key: String,
    /// Unix time the certificate was received, and its lifetime.
    #[serde(default)]
    pub issued_at: u64,
    #[serde(default)]
    pub lifetime_secs: u64,
}

impl Identity {
    pub fn load(dir: &Path) -> Result<Identity, String> {
        let path = dir.join(IDENTITY_FILE);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!(
                    "{}: this connector is not registered; run `postern connector register --edge HOST:PORT --token TOKEN --state-dir {}` first",
                    path.display(),
                    dir.display()
                )
            } else {
                format!("{}: {e}", path.display())
            }
        })?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn save(&self, dir: &Path) -> Result<(), String> {
        // Written 0600, via a temporary file and a rename.
        postern_control::store::ensure_dir(dir).map_err(|e| e.to_string())?;
        postern_control::store::save_json(dir, IDENTITY_FILE, self).map_err(|e| e.to_string())
    }

    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        crate::tls::tunnel_client_config(
            &self.ca,
            Some((&self.certificate, &self.key)),
            tunnel::ALPN_TUNNEL,
        )
        .map_err(|e| e.to_string())
    }

    /// The CA the edge returned must be the one the token pinned.
    pub fn check_ca_pin(&self, pin: &str) -> Result<(), String> {
        use rustls_pki_types::pem::PemObject;
        let der = rustls_pki_types::CertificateDer::from_pem_slice(self.ca.as_bytes())
            .map_err(|e| format!("the edge sent an unreadable CA: {e}"))?;
        let hash = ring::digest::digest(&ring::digest::SHA256, der.as_ref());
        let hex: String = hash.as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        if hex == pin.to_ascii_lowercase() {
            Ok(())
        } else {
            Err("the edge's CA does not match the enrollment token".into())
        }
    }

    /// When the certificate should be renewed (two thirds of its life).
    pub fn renew_at(&self) -> u64 {
        self.issued_at + self.lifetime_secs * 2 / 3
    }
}

pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is valid for `buf.len()` bytes; gethostname writes at
    // most that many and we read up to the first NUL.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).into_owned();
    if name.is_empty() {
        "unknown".into()
    } else {
        name
    }
}

pub fn resolve(edge: &str) -> Result<SocketAddr, String> {
    edge.to_socket_addrs()
        .map_err(|e| format!("cannot resolve the edge address {edge}: {e}"))?
        .next()
        .ok_or_else(|| format!("the edge address {edge} resolves to nothing"))
}

/// One JSON request and reply over a short blocking TLS connection.
pub fn exchange<T: Serialize>(
    edge: &str,
    cfg: Arc<rustls::ClientConfig>,
    req: &T,
    proxy: Option<&super::proxy::EdgeProxy>,
) -> Result<tunnel::Reply, String> {
    let tcp = match proxy.filter(|p| p.serves(edge)) {
        Some(p) => p.connect_blocking(edge, Duration::from_secs(10))?,
        None => {
            let addr = resolve(edge)?;
            TcpStream::connect_timeout(&addr, Duration::from_secs(10))
                .map_err(|e| format!("cannot connect to the edge {edge}: {e}"))?
        }
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(30)));
    let _ = tcp.set_write_timeout(Some(Duration::from_secs(30)));
    let name = rustls_pki_types::ServerName::try_from(postern_control::ca::TUNNEL_SERVER_NAME)
        .map_err(|e| e.to_string())?;
    let conn = rustls::ClientConnection::new(cfg, name).map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let tls_err = |e: std::io::Error| format!("TLS with the edge {edge} failed: {e}");
    let mut line = serde_json::to_vec(req).map_err(|e| e.to_string())?;
    line.push(b'\n');
    tls.write_all(&line).map_err(tls_err)?;
    tls.flush().map_err(tls_err)?;
    let mut reply = Vec::new();
    BufReader::new(std::io::Read::take(&mut tls, tunnel::MAX_LINE as u64))
        .read_until(b'\n', &mut reply)
        .map_err(tls_err)?;
    if reply.is_empty() {
        return Err(format!(
            "the edge {edge} closed the connection without an answer"
        ));
    }
    serde_json::from_slice(&reply).map_err(|e| format!("the edge sent an unreadable answer: {e}"))
}

/// Renews the certificate at two thirds of its lifetime; retries every
/// minute on failure (the old certificate stays valid meanwhile).
pub fn renew_loop(shared: Arc<Shared>) {
    loop {
        let identity = shared
            .identity
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let now = postern_control::enroll::now();
        let at = identity.renew_at();
        if identity.lifetime_secs > 0 && now < at {
            std::thread::sleep(Duration::from_secs((at - now).min(60)));
            continue;
        }
        if identity.lifetime_secs == 0 || shared.draining() {
            std::thread::sleep(Duration::from_secs(60));
            continue;
        }
        match renew(&identity, shared.settings.edge_proxy.as_deref()) {
            Ok(fresh) => {
                if let Err(e) = fresh.save(&shared.state_dir) {
                    tracing::error!(error = %e, "cannot store the renewed certificate");
                }
                match fresh.client_config() {
                    Ok(cfg) => *shared.client_tls.write().unwrap_or_else(|e| e.into_inner()) = cfg,
                    Err(e) => tracing::error!(error = %e, "renewed certificate unusable"),
                }
                tracing::info!(connector = %fresh.id, "certificate renewed");
                *shared.identity.write().unwrap_or_else(|e| e.into_inner()) = fresh;
            }
            Err(e) => {
                tracing::warn!(error = %e, "certificate renewal failed; retrying in a minute");
                std::thread::sleep(Duration::from_secs(60));
            }
        }
    }
}

fn renew(identity: &Identity, proxy: Option<&super::proxy::EdgeProxy>) -> Result<Identity, String> {
    let (key, csr) = postern_control::ca::new_request(&host_name()).map_err(|e| e.to_string())?;
    let cfg = crate::tls::tunnel_client_config(
        &identity.ca,
        Some((&identity.certificate, &identity.key)),
        tunnel::ALPN_RENEW,
    )
    .map_err(|e| e.to_string())?;
    let reply = exchange(&identity.edge, cfg, &tunnel::RenewRequest { csr }, proxy)?;
    if let Some(e) = reply.error {
        return Err(format!("the edge refused renewal: {e}"));
    }
    Ok(Identity {
        certificate: reply.certificate,
        key,
        issued_at: postern_control::enroll::now(),
        lifetime_secs: reply.lifetime_secs,
        ..identity.clone()
    })
}
