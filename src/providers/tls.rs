//! TLS towards providers: rustls with the system roots plus `run --ca-file` and a connection's CA
//! bundle, and the `insecureSkipVerify` verifier.

use crate::pki::handshake_signatures_by;
use rustls::RootCertStore;
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
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
    crate::pki::certificates(pem.as_bytes()).map_err(|e| InvalidCaBundle(e.to_string()))
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
    let mut config = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier(global_ca_pem, tls)?)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The chain verifier over the system roots and the given bundles, pinning the bundles' own
/// certificates; with `insecureSkipVerify`, none.
fn verifier(global_ca_pem: Option<&str>, tls: &TlsOptions) -> Result<Arc<ProviderVerifier>, InvalidCaBundle> {
    let provider = crypto_provider();
    if tls.insecure_skip_verify {
        return Ok(Arc::new(ProviderVerifier {
            chain: None,
            pinned: Vec::new(),
            provider,
        }));
    }
    let mut roots = system_roots().clone();
    let mut pinned = Vec::new();
    for pem in global_ca_pem.into_iter().chain(tls.extra_ca_pem.as_deref()) {
        for cert in parse_ca_bundle(pem)? {
            // a self-signed server certificate (made as a CA, like `openssl req -x509` does)
            // may still be given: it is trusted as a root and pinned as itself
            roots
                .add(cert.clone())
                .map_err(|e| InvalidCaBundle(format!("unusable CA certificate ({e})")))?;
            pinned.push(cert);
        }
    }
    if roots.is_empty() {
        return Err(InvalidCaBundle("no usable CA certificate".into()));
    }
    let chain = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| InvalidCaBundle(format!("unusable CA certificates ({e})")))?;
    Ok(Arc::new(ProviderVerifier {
        chain: Some(chain),
        pinned,
        provider,
    }))
}

/// The usual chain verification, and one more way in: a server certificate that is itself in
/// the configured bundle is trusted as it is (pinned), when it names the host: the exact
/// certificate the user gave (its dates are not checked: renewing it means giving the new one).
/// That is what curl does with a self-signed certificate given as `--cacert`; rustls alone
/// refuses a certificate marked as a CA as a server's (`CaUsedAsEndEntity`). Without a chain
/// (`insecureSkipVerify`) any certificate is accepted; handshake signatures are checked always.
#[derive(Debug)]
struct ProviderVerifier {
    chain: Option<Arc<rustls::client::WebPkiServerVerifier>>,
    pinned: Vec<CertificateDer<'static>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for ProviderVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(chain) = &self.chain else {
            return Ok(ServerCertVerified::assertion());
        };
        let verdict = chain.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now);
        if verdict.is_ok() || !self.pinned.iter().any(|pin| pin.as_ref() == end_entity.as_ref()) {
            return verdict;
        }
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_name(&parsed, server_name)?;
        Ok(ServerCertVerified::assertion())
    }

    handshake_signatures_by!(provider);
}

/// What to do about a certificate that could not be verified, in plain words.
pub fn advice(error: &rustls::Error) -> Option<&'static str> {
    use rustls::CertificateError as E;
    let rustls::Error::InvalidCertificate(error) = error else {
        return None;
    };
    let untrusted = "the server's certificate is not signed by a CA the operator trusts: give that CA, or the \
                     server's own certificate if it is self-signed, in spec.tls.caBundleRef";
    Some(match error {
        // webpki's CaUsedAsEndEntity: a self-signed server certificate that is not in the bundle
        E::UnknownIssuer | E::UnknownRevocationStatus => untrusted,
        E::Other(other) if format!("{other:?}").contains("CaUsedAsEndEntity") => untrusted,
        E::Expired | E::ExpiredContext { .. } => {
            "the server's certificate has expired: renew it on the server (a CA bundle cannot help)"
        }
        E::NotValidYet | E::NotValidYetContext { .. } => {
            "the server's certificate is not valid yet: check the clocks of the server and of the operator's node"
        }
        E::NotValidForName | E::NotValidForNameContext { .. } => {
            "the server's certificate is issued for another name: use a host name it names in spec.url, or reissue \
             it for this one"
        }
        _ => return None,
    })
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

#[cfg(test)]
mod pin_tests {
    use super::*;

    #[test]
    fn a_self_signed_ca_style_certificate_in_the_bundle_is_pinned() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        let tls = TlsOptions {
            extra_ca_pem: Some(cert.pem()),
            insecure_skip_verify: false,
        };
        let verifier = verifier(None, &tls).unwrap();
        let name = ServerName::try_from("127.0.0.1").unwrap();
        let verdict = verifier.verify_server_cert(cert.der(), &[], &name, &[], UnixTime::now());
        assert!(verdict.is_ok(), "{verdict:?}");
    }
}
