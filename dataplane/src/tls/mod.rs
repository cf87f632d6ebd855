//! TLS for the public listeners and for HTTPS backends.
//!
//! Server side: rustls with the ring provider, TLS 1.2 and 1.3 only, AEAD
//! suites only, stateless session tickets plus a session-ID cache so
//! resumption works whichever worker a client lands on, and an SNI resolver
//! that prefers an exact name over a wildcard. Certificates are loaded once
//! at start-up into [`CertifiedKey`]s; a bad file is an error naming the
//! file and the reason.

pub mod der;
pub mod poll;
pub mod stream;
#[macro_use]
pub mod verify;

use verify::NoVerification;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use postern_control::config::CertificateFiles;
use rustls::crypto::ring as provider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// ALPN protocols offered to clients.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";
pub const ALPN_H2: &[u8] = b"h2";

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{0}")]
    Config(String),
}

fn file_err(path: &Path, reason: impl std::fmt::Display) -> TlsSetupError {
    TlsSetupError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// A loaded certificate with the names it answers for.
#[derive(Debug, Clone)]
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    pub names: Vec<String>,
    pub source: PathBuf,
}

/// Reads a PEM chain and key, checks they belong together and lists names.
pub fn load_certificate(files: &CertificateFiles) -> Result<LoadedCert, TlsSetupError> {
    let cert_pem = read_limited(&files.cert_file)?;
    let key_pem = read_limited(&files.key_file)?;
    certificate_from_pem(&cert_pem, &key_pem, &files.names, &files.cert_file).map_err(|e| match e {
        PemProblem::Cert(reason) => file_err(&files.cert_file, reason),
        PemProblem::Key(reason) => file_err(
            &files.key_file,
            format!("{reason} (certificate {})", files.cert_file.display()),
        ),
    })
}

/// Which half of a certificate/key pair is wrong, and why.
#[derive(Debug)]
pub enum PemProblem {
    Cert(String),
    Key(String),
}

/// Builds a certificate from PEM text (a file's contents or an upload).
pub fn certificate_from_pem(
    cert_pem: &[u8],
    key_pem: &[u8],
    names: &[String],
    source: &Path,
) -> Result<LoadedCert, PemProblem> {
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemProblem::Cert(format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(PemProblem::Cert("no CERTIFICATE block found".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        PemProblem::Key(format!(
            "no usable private key (PKCS#8, PKCS#1 or SEC1 PEM expected): {e}"
        ))
    })?;
    let signing = provider::sign::any_supported_type(&key)
        .map_err(|e| PemProblem::Key(format!("unsupported private key: {e}")))?;
    let names = if names.is_empty() {
        let names = der::dns_names(&certs[0])
            .map_err(|e| PemProblem::Cert(format!("cannot read the certificate: {}", e.0)))?;
        if names.is_empty() {
            return Err(PemProblem::Cert(
                "the certificate has no DNS names in subjectAltName; list them in `names`".into(),
            ));
        }
        names
    } else {
        names.to_vec()
    };
    let key = CertifiedKey::new(certs, signing);
    key.keys_match()
        .map_err(|e| PemProblem::Key(format!("does not match the certificate: {e}")))?;
    Ok(LoadedCert {
        key: Arc::new(key),
        names,
        source: source.to_path_buf(),
    })
}

/// The SNI resolver the listeners use, replaceable while the edge runs
/// (certificate uploads). Read once per TLS handshake, never per request.
#[derive(Debug)]
pub struct LiveResolver {
    current: std::sync::RwLock<Arc<SniResolver>>,
}

impl LiveResolver {
    pub fn new(certs: &[LoadedCert]) -> Result<Arc<LiveResolver>, TlsSetupError> {
        Ok(Arc::new(LiveResolver {
            current: std::sync::RwLock::new(Arc::new(SniResolver::new(certs)?)),
        }))
    }

    /// Serves `certs` from the next handshake on.
    pub fn replace(&self, certs: &[LoadedCert]) -> Result<(), TlsSetupError> {
        let fresh = Arc::new(SniResolver::new(certs)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh;
        Ok(())
    }

    fn get(&self) -> Arc<SniResolver> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl ResolvesServerCert for LiveResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.get().resolve(hello)
    }
}

fn read_limited(path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    let meta = std::fs::metadata(path).map_err(|e| file_err(path, format!("cannot read: {e}")))?;
    if meta.len() > 1024 * 1024 {
        return Err(file_err(
            path,
            "larger than 1 MiB; not a PEM certificate or key",
        ));
    }
    std::fs::read(path).map_err(|e| file_err(path, format!("cannot read: {e}")))
}

pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let pem = read_limited(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_err(path, format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(file_err(path, "no CERTIFICATE block found"));
    }
    Ok(certs)
}

/// Picks a certificate by SNI: exact name first, then wildcard, then the
/// first certificate (clients without SNI, or unknown names, still get a
/// handshake; the HTTP layer answers 404/421 as appropriate).
#[derive(Debug)]
pub struct SniResolver {
    exact: HashMap<String, Arc<CertifiedKey>>,
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniResolver {
    pub fn new(certs: &[LoadedCert]) -> Result<Self, TlsSetupError> {
        let default = certs
            .first()
            .ok_or_else(|| TlsSetupError::Config("no certificate configured".into()))?
            .key
            .clone();
        let mut exact = HashMap::new();
        let mut wildcard = HashMap::new();
        for c in certs {
            for n in &c.names {
                match n.strip_prefix("*.") {
                    Some(suffix) => wildcard.entry(suffix.to_string()).or_insert(c.key.clone()),
                    None => exact.entry(n.clone()).or_insert(c.key.clone()),
                };
            }
        }
        Ok(SniResolver {
            exact,
            wildcard,
            default,
        })
    }

    pub fn lookup(&self, name: &str) -> &Arc<CertifiedKey> {
        if let Some(k) = self.exact.get(name) {
            return k;
        }
        if let Some((_, parent)) = name.split_once('.') {
            if let Some(k) = self.wildcard.get(parent) {
                return k;
            }
        }
        &self.default
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(match hello.server_name() {
            Some(name) => self.lookup(&name.to_ascii_lowercase()).clone(),
            None => self.default.clone(),
        })
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut p = provider::default_provider();
    // ring's suites are all AEAD (AES-GCM, ChaCha20-Poly1305); keep that an
    // explicit guarantee should the provider's defaults ever grow.
    p.cipher_suites.retain(|s| {
        use rustls::CipherSuite::*;
        matches!(
            s.suite(),
            TLS13_AES_128_GCM_SHA256
                | TLS13_AES_256_GCM_SHA384
                | TLS13_CHACHA20_POLY1305_SHA256
                | TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
                | TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
                | TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
                | TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384
                | TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256
        )
    });
    Arc::new(p)
}

/// The server configuration for the public HTTPS listeners.
pub fn server_config(
    resolver: Arc<LiveResolver>,
    http2: bool,
) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsSetupError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    cfg.alpn_protocols = if http2 {
        vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()]
    } else {
        vec![ALPN_HTTP1.to_vec()]
    };
    cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(16 * 1024);
    cfg.ticketer = provider::Ticketer::new()
        .map_err(|e| TlsSetupError::Config(format!("session tickets: {e}")))?;
    cfg.send_tls13_tickets = 2;
    Ok(Arc::new(cfg))
}

/// The tunnel listener: TLS 1.3 only (both ends are Postern), a server
/// certificate from the internal CA, and client certificates verified
/// against that CA. A client without a certificate may only enroll; the
/// listener checks that after the handshake.
pub fn tunnel_server_config(
    ca: &postern_control::ca::Ca,
) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    use rustls_pki_types::pem::PemObject;
    let err = |e: String| TlsSetupError::Config(format!("tunnel listener: {e}"));
    let now = postern_control::enroll::now();
    let (cert_pem, key_pem) = ca
        .issue_tunnel_server(now, std::time::Duration::from_secs(10 * 365 * 24 * 3600))
        .map_err(|e| err(e.to_string()))?;
    // The CA rides along so a registering connector can match it against
    // the pin in its token.
    let chain = vec![
        CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| err(e.to_string()))?,
        CertificateDer::from_pem_slice(ca.cert_pem.as_bytes()).map_err(|e| err(e.to_string()))?,
    ];
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| err(e.to_string()))?;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(
            CertificateDer::from_pem_slice(ca.cert_pem.as_bytes())
                .map_err(|e| err(e.to_string()))?,
        )
        .map_err(|e| err(e.to_string()))?;
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .allow_unauthenticated()
            .build()
            .map_err(|e| err(e.to_string()))?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| err(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| err(e.to_string()))?;
    cfg.alpn_protocols = vec![
        crate::tunnel::ALPN_TUNNEL.to_vec(),
        crate::tunnel::ALPN_ENROLL.to_vec(),
        crate::tunnel::ALPN_RENEW.to_vec(),
    ];
    Ok(Arc::new(cfg))
}

/// A connector's client configuration for the tunnel listener: trusts only
/// the pinned CA; presents `identity` (certificate, key PEM) when it has one.
pub fn tunnel_client_config(
    ca_pem: &str,
    identity: Option<(&str, &str)>,
    alpn: &[u8],
) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
    use rustls_pki_types::pem::PemObject;
    let err = |e: String| TlsSetupError::Config(format!("tunnel: {e}"));
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(c.map_err(|e| err(e.to_string()))?)
            .map_err(|e| err(e.to_string()))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| err(e.to_string()))?
        .with_root_certificates(roots);
    let mut cfg = match identity {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| err(e.to_string()))?;
            let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key.as_bytes())
                .map_err(|e| err(e.to_string()))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| err(e.to_string()))?
        }
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(cfg))
}

/// A registering connector does not know the CA yet: it accepts the
/// edge's certificate only if it chains to a CA whose SHA-256 starts with
/// the pin carried in the enrollment token.
pub fn enroll_client_config(pin: &str) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsSetupError::Config(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCa {
            pin: pin.to_ascii_lowercase(),
            provider: provider(),
        }))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![crate::tunnel::ALPN_ENROLL.to_vec()];
    Ok(Arc::new(cfg))
}

/// Verifies a chain [leaf, CA] by the CA's hash and the leaf's signature.
#[derive(Debug)]
struct PinnedCa {
    pin: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl rustls::client::danger::ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &rustls_pki_types::ServerName<'_>,
        ocsp: &[u8],
        now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        // The listener sends [leaf, CA]: find the CA the token pinned and
        // verify the leaf against it alone, name included.
        let ca = intermediates
            .iter()
            .find(|c| {
                let hash = ring::digest::digest(&ring::digest::SHA256, c.as_ref());
                let hex: String = hash.as_ref()[..16]
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                hex == self.pin
            })
            .ok_or_else(|| {
                rustls::Error::General(
                    "the edge's CA does not match the enrollment token (wrong edge, or someone in between)"
                        .into(),
                )
            })?;
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(ca.clone())
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| rustls::Error::General(e.to_string()))?
        .verify_server_cert(end_entity, &[], server_name, ocsp, now)
    }

    handshake_signatures_by_provider!(provider);
}

/// Client configuration for HTTPS backends of one app.
pub fn backend_client_config(
    validate: bool,
    ca_file: Option<&Path>,
) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
    let roots = match ca_file {
        Some(path) if validate => {
            let certs = read_certs(path)?;
            let mut store = rustls::RootCertStore::empty();
            for cert in &certs {
                store
                    .add(cert.clone())
                    .map_err(|e| file_err(path, format!("not a usable CA certificate: {e}")))?;
            }
            Some(certs)
        }
        _ => None,
    };
    backend_client_config_with(validate, roots)
}

/// Backend client configuration trusting `roots` (or the public roots
/// when `None`); `validate = false` checks signatures only.
pub fn backend_client_config_with(
    validate: bool,
    roots: Option<Vec<CertificateDer<'static>>>,
) -> Result<Arc<rustls::ClientConfig>, TlsSetupError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsSetupError::Config(e.to_string()))?;
    let mut cfg = if validate {
        let mut store = rustls::RootCertStore::empty();
        match roots {
            Some(certs) => {
                for cert in certs {
                    store.add(cert).map_err(|e| {
                        TlsSetupError::Config(format!("not a usable CA certificate: {e}"))
                    })?;
                }
            }
            None => store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        builder.with_root_certificates(store).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
            .with_no_client_auth()
    };
    cfg.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(Arc::new(cfg))
}

/// A self-signed ECDSA P-256 certificate for `names` (quickstart, tests).
pub fn self_signed(names: &[&str]) -> Result<(String, String), rcgen::Error> {
    let key = rcgen::KeyPair::generate()?;
    let mut params =
        rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>())?;
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        names.first().copied().unwrap_or("postern"),
    );
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

#[cfg(test)]
mod tests;
