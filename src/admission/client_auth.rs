//! Who may talk to the webhook: with `run --webhook-client-ca`, only a client presenting a
//! certificate issued by that CA (kube-apiserver does, through the `kubeConfigFile` of its
//! admission configuration), and with `--webhook-client-name` only one that also carries that
//! name. Anyone else fails the TLS handshake and never reaches the review code, so can neither
//! reserve an instance name nor make the server buffer a body.
//!
//! [`ClientAuth`] is a rustls [`ClientCertVerifier`] holding the current CA's verifier: the CA
//! file is polled like the serving certificate, and each handshake uses the CA current then.

use super::pem_files::{PemFileError, poll_files, read_files};
use crate::pki::{der_element, handshake_signatures_by};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DistinguishedName, RootCertStore};
use rustls_pki_types::{CertificateDer, UnixTime};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// See the module documentation.
pub struct ClientAuth {
    verifier: RwLock<Arc<dyn ClientCertVerifier>>,
    name: Option<String>,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientAuth").field("name", &self.name).finish()
    }
}

impl ClientAuth {
    /// Client certificates must chain to a certificate of `ca_pem` and, when `name` is given,
    /// carry it as their subject's common name or as a DNS subject alternative name.
    pub fn from_pem(ca_pem: &[u8], name: Option<String>) -> Result<Arc<ClientAuth>, PemFileError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = RwLock::new(verifier_for(ca_pem, &provider)?);
        Ok(Arc::new(ClientAuth {
            verifier,
            name,
            provider,
        }))
    }

    /// [`ClientAuth::from_pem`] with the CA read from `path`.
    pub fn from_file(path: &Path, name: Option<String>) -> Result<Arc<ClientAuth>, PemFileError> {
        let [pem] = read_files([path])?;
        ClientAuth::from_pem(&pem, name)
    }

    /// Replaces the CA. On error the previous one stays in use.
    pub fn set_ca(&self, ca_pem: &[u8]) -> Result<(), PemFileError> {
        let verifier = verifier_for(ca_pem, &self.provider)?;
        *self.verifier.write().unwrap_or_else(|p| p.into_inner()) = verifier;
        Ok(())
    }

    /// Polls the CA file every `every` and installs its content whenever it changes. Runs until
    /// dropped: spawn it.
    pub async fn watch_file(self: Arc<Self>, path: PathBuf, every: Duration) {
        poll_files([path], every, "webhook client CA", move |[pem]| self.set_ca(pem)).await;
    }

    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        self.verifier.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn verifier_for(ca_pem: &[u8], provider: &Arc<CryptoProvider>) -> Result<Arc<dyn ClientCertVerifier>, PemFileError> {
    let mut roots = RootCertStore::empty();
    for cert in crate::pki::certificates(ca_pem)? {
        roots
            .add(cert)
            .map_err(|e| PemFileError::BadCertificate(e.to_string()))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| PemFileError::Config(e.to_string()))
}

impl ClientCertVerifier for ClientAuth {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    /// No hints: kube-apiserver sends the certificate its kubeconfig names whatever the hints,
    /// and the CA may change between handshakes.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self.current().verify_client_cert(end_entity, intermediates, now)?;
        match &self.name {
            Some(name) if !certificate_names(end_entity).iter().any(|n| n == name) => {
                tracing::debug!(expected = %name, "webhook client certificate does not carry the expected name");
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::ApplicationVerificationFailure,
                ))
            }
            _ => Ok(verified),
        }
    }

    handshake_signatures_by!(provider);
}

/// The subject's common names and the DNS subject alternative names of a certificate.
#[doc(hidden)]
pub fn certificate_names(der: &CertificateDer<'_>) -> Vec<String> {
    let Ok(cert) = webpki::EndEntityCert::try_from(der) else {
        return Vec::new();
    };
    let mut names = common_names(cert.subject());
    names.extend(cert.valid_dns_names().map(str::to_owned));
    names
}

/// The common names (OID 2.5.4.3) in a DER subject without its outer SEQUENCE: a sequence of
/// SETs of SEQUENCE { OID, string }. Anything malformed ends the walk.
#[doc(hidden)]
pub fn common_names(subject: &[u8]) -> Vec<String> {
    const COMMON_NAME: [u8; 3] = [0x55, 0x04, 0x03];
    const SET: u8 = 0x31;
    const SEQUENCE: u8 = 0x30;
    const OID: u8 = 0x06;
    // UTF8String, PrintableString, IA5String
    const STRINGS: [u8; 3] = [0x0c, 0x13, 0x16];
    let mut names = Vec::new();
    let mut rdns = subject;
    while let Some((SET, set, rest)) = der_element(rdns) {
        rdns = rest;
        let mut attributes = set;
        while let Some((SEQUENCE, attribute, rest)) = der_element(attributes) {
            attributes = rest;
            if let Some((OID, oid, value)) = der_element(attribute)
                && oid == COMMON_NAME
                && let Some((tag, text, _)) = der_element(value)
                && STRINGS.contains(&tag)
                && let Ok(text) = std::str::from_utf8(text)
            {
                names.push(text.to_owned());
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with(cn: &str, sans: &[&str]) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "system:masters");
        params.distinguished_name.push(rcgen::DnType::CommonName, cn);
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn names_are_the_common_name_and_dns_alternative_names() {
        let names = certificate_names(&cert_with("kube-apiserver", &["apiserver.example", "10.0.0.1"]));
        assert_eq!(names, ["kube-apiserver", "apiserver.example"]);
        assert_eq!(
            certificate_names(&CertificateDer::from(vec![0x30, 0x03])),
            Vec::<String>::new()
        );
    }

    #[test]
    fn malformed_subjects_give_no_names() {
        for subject in [
            &[][..],
            &[0x31],
            &[0x31, 0x85, 1, 2, 3, 4, 5],
            &[0x31, 0x05, 0x30, 0x03, 0x06, 0x03],
        ] {
            assert!(common_names(subject).is_empty(), "{subject:?}");
        }
    }

    #[test]
    fn a_bundle_without_certificates_is_refused() {
        assert!(matches!(
            ClientAuth::from_pem(b"", None),
            Err(PemFileError::NoCertificate)
        ));
        assert!(matches!(
            ClientAuth::from_pem(
                b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
                None
            ),
            Err(PemFileError::BadCertificate(_))
        ));
    }
}
