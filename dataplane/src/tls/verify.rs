//! Server certificate verifiers that share the handshake-signature checks
//! of the crypto provider and differ only in how they judge the chain:
//! here, the one that does not judge it at all (the backends an operator
//! chose to trust by path, and the load generator's test certificates).

use std::sync::Arc;

use rustls_pki_types::CertificateDer;

/// The handshake-signature half of a server certificate verifier: checked
/// with the algorithms of the crypto provider in field `$p`. Verifiers
/// differ only in how they judge the certificate chain.
macro_rules! handshake_signatures_by_provider {
    ($p:tt) => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.$p.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.$p.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.$p
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}

/// `validate_backend_tls = false`: the operator chose to trust the network
/// path to this backend. Signatures are still checked so the handshake is a
/// real one; only the chain and name are not.
#[derive(Debug)]
pub struct NoVerification(pub Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    handshake_signatures_by_provider!(0);
}
