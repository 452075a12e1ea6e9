//! TLS towards providers: rustls with the system roots plus `run --ca-file` and a connection's CA
//! bundle, and the `insecureSkipVerify` verifier.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::sync::{Arc, OnceLock};

/// TLS settings of one connection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TlsOptions {
    /// PEM certificates trusted in addition to the system roots.
    pub extra_ca_pem: Option<String>,
    pub insecure_skip_verify: bool,
}

/// A CA bundle that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid CA bundle: {0}")]
pub struct InvalidCaBundle(pub String);

fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The system's trust roots, loaded once per process.
fn system_roots() -> &'static RootCertStore {
    static ROOTS: OnceLock<RootCertStore> = OnceLock::new();
    ROOTS.get_or_init(|| {
        let mut store = RootCertStore::empty();
        let loaded = rustls_native_certs::load_native_certs();
        for error in &loaded.errors {
            tracing::warn!(%error, "cannot load some system CA certificates");
        }
        let (_added, ignored) = store.add_parsable_certificates(loaded.certs);
        if ignored > 0 {
            tracing::debug!(ignored, "ignored unparsable system CA certificates");
        }
        store
    })
}

/// Parses PEM certificates; an empty or unparsable bundle is an error.
pub fn parse_ca_bundle(pem: &str) -> Result<Vec<CertificateDer<'static>>, InvalidCaBundle> {
    use rustls::pki_types::pem::PemObject;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| InvalidCaBundle(format!("not PEM certificates ({e})")))?;
    if certs.is_empty() {
        return Err(InvalidCaBundle("no PEM certificate found".into()));
    }
    Ok(certs)
}

/// `global_ca_pem` (`run --ca-file`) is trusted for every connection, beside the connection's own.
pub(super) fn rustls_config(
    global_ca_pem: Option<&str>,
    tls: &TlsOptions,
) -> Result<rustls::ClientConfig, InvalidCaBundle> {
    let provider = crypto_provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| InvalidCaBundle(e.to_string()))?;
    let mut config = if tls.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = system_roots().clone();
        for pem in global_ca_pem.into_iter().chain(tls.extra_ca_pem.as_deref()) {
            for cert in parse_ca_bundle(pem)? {
                roots
                    .add(cert)
                    .map_err(|e| InvalidCaBundle(format!("unusable CA certificate ({e})")))?;
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// `insecureSkipVerify`: accepts any certificate but still checks handshake signatures.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_ca_bundle_is_an_error() {
        assert!(parse_ca_bundle("").is_err());
        assert!(parse_ca_bundle("hello").is_err());
        let bad = TlsOptions {
            extra_ca_pem: Some("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n".into()),
            insecure_skip_verify: false,
        };
        assert!(rustls_config(None, &bad).is_err());
    }
}
