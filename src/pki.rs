//! The certificate plumbing the provider client and the webhook server share: PEM certificates
//! read into DER, one DER element at a time, and the handshake-signature checks every rustls
//! verifier writes alike.

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// Why PEM text gave no certificate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadPem {
    #[error("no PEM certificate found")]
    Empty,
    #[error("not PEM certificates ({0})")]
    Malformed(String),
}

/// Every CERTIFICATE block of `pem`, in order; none, or a malformed one, is an error.
pub fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, BadPem> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| BadPem::Malformed(e.to_string()))?;
    if certs.is_empty() {
        return Err(BadPem::Empty);
    }
    Ok(certs)
}

/// One DER element: (tag, content, what follows). Single-byte tags, definite lengths.
pub fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |len, byte| (len << 8) | usize::from(*byte));
        (len, &rest[count..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The handshake-signature methods of a rustls certificate verifier (server or client side),
/// checked with the algorithms of the verifier's `Arc<CryptoProvider>` field named `$provider`.
macro_rules! handshake_signatures_by {
    ($provider:ident) => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.$provider.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.$provider.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.$provider
                .signature_verification_algorithms
                .supported_schemes()
        }
    };
}
pub(crate) use handshake_signatures_by;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_or_malformed_certificates_are_errors() {
        assert_eq!(certificates(b""), Err(BadPem::Empty));
        assert_eq!(certificates(b"hello"), Err(BadPem::Empty));
        assert!(matches!(
            certificates(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n"),
            Err(BadPem::Malformed(_))
        ));
    }
}
