//! The edge's internal certificate authority: the only issuer connectors
//! and the tunnel listener trust.
//!
//! It is created on the edge's first start (ECDSA P-256, kept in the state
//! directory with its key readable by the edge alone) and signs two kinds
//! of certificate: connector client certificates, issued from a PKCS#10
//! request whose signature proves the connector holds the key, and the
//! tunnel listener's server certificate for [`TUNNEL_SERVER_NAME`]. A
//! connector pins this CA when it registers, so nothing else can pose as
//! the edge, and the edge accepts tunnels only from certificates it issued.
//!
//! A connector's identity is its id, carried as the DNS name
//! `<id>.connector.postern.internal`, which the tunnel listener reads back
//! from the verified client certificate.

use std::path::Path;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

use crate::store::{self, StoreError};

pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// The name the tunnel listener's certificate carries and connectors check.
pub const TUNNEL_SERVER_NAME: &str = "tunnel.postern.internal";
const CONNECTOR_SUFFIX: &str = ".connector.postern.internal";
/// How long the CA itself is valid.
const CA_LIFETIME: Duration = Duration::from_secs(20 * 365 * 24 * 3600);
/// Certificates are valid from a little before they are issued, so a
/// connector whose clock lags a few minutes still accepts them.
const BACKDATE: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: not a usable CA certificate and key: {source}")]
    Load { path: String, source: rcgen::Error },
    #[error("the certificate signing request is not valid: {0}")]
    BadRequest(rcgen::Error),
    #[error("cannot issue a certificate: {0}")]
    Issue(rcgen::Error),
}

/// The CA certificate (PEM) and the issuer built from its key.
pub struct Ca {
    pub cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

/// Unix seconds as rcgen's time type (without naming the `time` crate).
fn at(unix: u64) -> rcgen::CertificateParams {
    let mut p = CertificateParams::default();
    p.not_before = rcgen::date_time_ymd(1970, 1, 1) + Duration::from_secs(unix);
    p
}

fn validity(params: &mut CertificateParams, now: u64, lifetime: Duration) {
    let start = now.saturating_sub(BACKDATE.as_secs());
    params.not_before = at(start).not_before;
    params.not_after = at(now).not_before + lifetime;
}

impl Ca {
    /// Loads the CA from `dir`, creating it on first use.
    pub fn load_or_create(dir: &Path, now: u64) -> Result<Ca, CaError> {
        store::ensure_dir(dir)?;
        let cert_path = dir.join(CA_CERT_FILE);
        let key_path = dir.join(CA_KEY_FILE);
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| CaError::Io { path, source }
        };
        if cert_path.exists() {
            let cert_pem = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
            let key_pem = std::fs::read_to_string(&key_path).map_err(io(&key_path))?;
            let load = |source| CaError::Load {
                path: key_path.display().to_string(),
                source,
            };
            let key = KeyPair::from_pem(&key_pem).map_err(load)?;
            let issuer =
                Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|source| CaError::Load {
                    path: cert_path.display().to_string(),
                    source,
                })?;
            return Ok(Ca { cert_pem, issuer });
        }
        let key = KeyPair::generate().map_err(CaError::Issue)?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, "Postern edge internal CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params, now, CA_LIFETIME);
        let cert = params.self_signed(&key).map_err(CaError::Issue)?;
        let cert_pem = cert.pem();
        // Key first: a certificate without its key would be unusable.
        store::write_durably(&key_path, key.serialize_pem().as_bytes()).map_err(io(&key_path))?;
        store::write_durably(&cert_path, cert_pem.as_bytes()).map_err(io(&cert_path))?;
        let issuer = Issuer::new(params, key);
        Ok(Ca { cert_pem, issuer })
    }

    /// Signs a connector's certificate signing request (PEM). The request's
    /// own subject and extensions are ignored: the edge decides the name
    /// (from `id`), the lifetime and the usage.
    pub fn issue_connector(
        &self,
        csr_pem: &str,
        id: &str,
        now: u64,
        lifetime: Duration,
    ) -> Result<String, CaError> {
        let mut csr =
            CertificateSigningRequestParams::from_pem(csr_pem).map_err(CaError::BadRequest)?;
        let mut params =
            CertificateParams::new(vec![connector_name(id)]).map_err(CaError::Issue)?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("postern connector {id}"));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut params, now, lifetime);
        csr.params = params;
        let cert = csr.signed_by(&self.issuer).map_err(CaError::Issue)?;
        Ok(cert.pem())
    }

    /// Checks a signing request (parse and signature) without issuing, so
    /// a bad request is refused before an enrollment token is spent.
    pub fn check_request(csr_pem: &str) -> Result<(), CaError> {
        CertificateSigningRequestParams::from_pem(csr_pem)
            .map(|_| ())
            .map_err(CaError::BadRequest)
    }

    /// A fresh key and server certificate for the tunnel listener:
    /// (certificate PEM, key PEM).
    pub fn issue_tunnel_server(
        &self,
        now: u64,
        lifetime: Duration,
    ) -> Result<(String, String), CaError> {
        let key = KeyPair::generate().map_err(CaError::Issue)?;
        let mut params =
            CertificateParams::new(vec![TUNNEL_SERVER_NAME.to_string()]).map_err(CaError::Issue)?;
        params
            .distinguished_name
            .push(DnType::CommonName, TUNNEL_SERVER_NAME);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut params, now, lifetime);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(CaError::Issue)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

/// The DNS name a connector's certificate carries.
pub fn connector_name(id: &str) -> String {
    format!("{id}{CONNECTOR_SUFFIX}")
}

/// The connector id in a certificate DNS name, if it is one.
pub fn connector_id(dns_name: &str) -> Option<&str> {
    dns_name
        .strip_suffix(CONNECTOR_SUFFIX)
        .filter(|id| !id.is_empty() && !id.contains('.'))
}

/// A connector's key and signing request: (key PEM, CSR PEM).
pub fn new_request(host_name: &str) -> Result<(String, String), CaError> {
    let key = KeyPair::generate().map_err(CaError::Issue)?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, host_name);
    let csr = params.serialize_request(&key).map_err(CaError::Issue)?;
    let pem = csr.pem().map_err(CaError::Issue)?;
    Ok((key.serialize_pem(), pem))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_from_a_request_and_reloads() {
        let dir = std::env::temp_dir().join(format!("postern-ca-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let now = 1_800_000_000;
        let ca = Ca::load_or_create(&dir, now).unwrap();
        let again = Ca::load_or_create(&dir, now).unwrap();
        assert_eq!(ca.cert_pem, again.cert_pem, "the CA is created once");
        let (_key, csr) = new_request("host-a").unwrap();
        let cert = again
            .issue_connector(&csr, "abc123", now, Duration::from_secs(3600))
            .unwrap();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
        // A request whose signature does not match is refused.
        let forged = csr.replace("A", "B");
        assert!(again
            .issue_connector(&forged, "x", now, Duration::from_secs(3600))
            .is_err());
        assert_eq!(connector_id(&connector_name("abc123")), Some("abc123"));
        assert_eq!(connector_id("a.b.connector.postern.internal"), None);
        assert_eq!(connector_id("evil.example"), None);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
