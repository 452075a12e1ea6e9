//! The webhook's serving certificate, swappable at run time.
//!
//! [`CertStore`] is a rustls [`ResolvesServerCert`] holding one `Arc<CertifiedKey>`: every TLS
//! handshake picks up the certificate current at that moment, so a rotated certificate needs no
//! restart and connections already open keep the one they negotiated. It is fed either from PEM
//! files ([`CertStore::load_files`] once, then [`CertStore::watch_files`] polling their content)
//! or from memory ([`CertStore::set`], for a certificate the operator manages itself).

use super::client_auth::ClientAuth;
use super::pem_files::{PemFileError, poll_files, read_files};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

/// How often [`CertStore::watch_files`] looks at the files by default.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(5);

/// See the module documentation.
pub struct CertStore {
    current: RwLock<Option<Arc<CertifiedKey>>>,
    provider: Arc<CryptoProvider>,
    /// Bumped on every successful load (observability and tests).
    generation: AtomicU64,
    /// Who may connect, when not anyone (`run --webhook-client-ca`).
    client_auth: OnceLock<Arc<ClientAuth>>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("loaded", &self.is_loaded())
            .field("generation", &self.generation())
            .finish()
    }
}

impl CertStore {
    /// An empty store: handshakes fail until a certificate is set.
    pub fn new() -> Arc<CertStore> {
        Arc::new(CertStore {
            current: RwLock::new(None),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            generation: AtomicU64::new(0),
            client_auth: OnceLock::new(),
        })
    }

    /// A store holding the given certificate chain and key (PEM).
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<CertStore>, PemFileError> {
        let store = CertStore::new();
        store.set(cert_pem, key_pem)?;
        Ok(store)
    }

    /// Replaces the certificate. On error the previous certificate stays in use.
    pub fn set(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<(), PemFileError> {
        let certified = Arc::new(self.certified_key(cert_pem, key_pem)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Some(certified);
        self.generation.fetch_add(1, Ordering::AcqRel);
        Ok(())
    }

    fn certified_key(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, PemFileError> {
        let chain = crate::pki::certificates(cert_pem)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| PemFileError::BadKey(e.to_string()))?;
        CertifiedKey::from_der(chain, key, &self.provider).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => PemFileError::Mismatch(e.to_string()),
            other => PemFileError::BadKey(other.to_string()),
        })
    }

    /// Reads and installs the certificate and key files.
    pub fn load_files(&self, cert: &Path, key: &Path) -> Result<(), PemFileError> {
        let [cert_pem, key_pem] = read_files([cert, key])?;
        self.set(&cert_pem, &key_pem)
    }

    /// True once a certificate is installed.
    pub fn is_loaded(&self) -> bool {
        self.current.read().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// How many certificates have been installed so far.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The certificate currently served.
    pub fn current(&self) -> Option<Arc<CertifiedKey>> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A rustls server configuration that resolves through this store, offering h2 and http/1.1,
    /// and requiring client certificates when [`CertStore::require_client_certificates`] was
    /// called.
    pub fn server_config(self: &Arc<Self>) -> Result<Arc<rustls::ServerConfig>, PemFileError> {
        let builder = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| PemFileError::Config(e.to_string()))?;
        let builder = match self.client_auth.get() {
            Some(auth) => builder.with_client_cert_verifier(auth.clone()),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// Polls the files every `every` and installs their content whenever it changes (a
    /// Kubernetes Secret volume swaps both at once; a half-written pair that does not load is
    /// retried at the next tick while the previous certificate keeps serving). Runs until
    /// dropped: spawn it.
    pub async fn watch_files(self: Arc<Self>, cert: PathBuf, key: PathBuf, every: Duration) {
        poll_files([cert, key], every, "webhook certificate", move |[cert, key]| {
            self.set(cert, key)
        })
        .await;
    }

    /// From now on, every TLS handshake must present a client certificate that `auth` accepts
    /// (configurations built by [`CertStore::server_config`] afterwards). Set once; a second
    /// call changes nothing.
    pub fn require_client_certificates(&self, auth: Arc<ClientAuth>) {
        let _ = self.client_auth.set(auth);
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.current()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(name: &str) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn set_and_replace() {
        let store = CertStore::new();
        assert!(!store.is_loaded());
        let (cert, key) = self_signed("a.example");
        store.set(cert.as_bytes(), key.as_bytes()).unwrap();
        assert!(store.is_loaded());
        let first = store.current().unwrap();
        let (cert2, key2) = self_signed("b.example");
        store.set(cert2.as_bytes(), key2.as_bytes()).unwrap();
        assert_ne!(store.current().unwrap().cert, first.cert);
        assert_eq!(store.generation(), 2);
    }

    #[test]
    fn bad_input_keeps_the_current_certificate() {
        let (cert, key) = self_signed("a.example");
        let store = CertStore::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
        let (_, other_key) = self_signed("b.example");
        assert!(matches!(
            store.set(cert.as_bytes(), other_key.as_bytes()),
            Err(PemFileError::Mismatch(_))
        ));
        assert!(matches!(
            store.set(b"", key.as_bytes()),
            Err(PemFileError::NoCertificate)
        ));
        assert!(matches!(
            store.set(cert.as_bytes(), b"junk"),
            Err(PemFileError::BadKey(_))
        ));
        assert_eq!(store.generation(), 1);
        assert!(store.is_loaded());
        let error = store
            .set(cert.as_bytes(), other_key.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(!error.contains("PRIVATE KEY"), "{error}");
    }

    #[test]
    fn missing_files_are_named() {
        let store = CertStore::new();
        let error = store
            .load_files(Path::new("/nonexistent/tls.crt"), Path::new("/nonexistent/tls.key"))
            .unwrap_err();
        assert!(error.to_string().contains("/nonexistent/tls.crt"), "{error}");
    }

    #[tokio::test]
    async fn watch_picks_up_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        let (cert, key) = self_signed("a.example");
        std::fs::write(&cert_path, &cert).unwrap();
        std::fs::write(&key_path, &key).unwrap();
        let store = CertStore::new();
        store.load_files(&cert_path, &key_path).unwrap();
        // a half-written pair does not replace the good certificate
        let (cert2, key2) = self_signed("b.example");
        std::fs::write(&cert_path, &cert2).unwrap();
        let watcher = tokio::spawn(store.clone().watch_files(
            cert_path.clone(),
            key_path.clone(),
            Duration::from_millis(20),
        ));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(store.generation(), 1);
        std::fs::write(&key_path, &key2).unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while store.generation() < 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the new certificate was not loaded"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        watcher.abort();
    }
}
