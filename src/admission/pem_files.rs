//! The PEM files the webhook's TLS reads (its certificate and key, the CA of its clients): read
//! whole, then polled for changes, and why they could not be loaded.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why a certificate could not be loaded. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum PemFileError {
    #[error("cannot read {path}: {cause}")]
    Read { path: PathBuf, cause: std::io::Error },
    #[error("the certificate PEM holds no CERTIFICATE block")]
    NoCertificate,
    #[error("the certificate PEM is malformed: {0}")]
    BadCertificate(String),
    #[error("the key PEM holds no usable private key: {0}")]
    BadKey(String),
    #[error("the private key does not fit the certificate: {0}")]
    Mismatch(String),
    #[error("cannot build the TLS configuration: {0}")]
    Config(String),
}

impl From<crate::pki::BadPem> for PemFileError {
    fn from(bad: crate::pki::BadPem) -> Self {
        match bad {
            crate::pki::BadPem::Empty => PemFileError::NoCertificate,
            crate::pki::BadPem::Malformed(detail) => PemFileError::BadCertificate(detail),
        }
    }
}

/// Polls `paths` every `every` and hands their content to `apply` whenever it changes; what
/// cannot be read or applied is logged once (not at every tick) and retried, while whatever
/// `apply` installed before stays in use. Runs until dropped.
pub(crate) async fn poll_files<const N: usize>(
    paths: [PathBuf; N],
    every: Duration,
    what: &'static str,
    apply: impl Fn(&[Vec<u8>; N]) -> Result<(), PemFileError>,
) {
    // Compared with nothing at first, so that a change between the initial load and this
    // task's start is not missed (installing the same content again is harmless).
    let mut last: Option<[Vec<u8>; N]> = None;
    let mut last_error: Option<String> = None;
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let result = match read_files(paths.each_ref().map(|p| p.as_path())) {
            Ok(content) if last.as_ref() == Some(&content) => continue,
            Ok(content) => apply(&content).map(|()| content),
            Err(error) => Err(error),
        };
        match result {
            Ok(content) => {
                if last.is_some() {
                    tracing::info!(file = %paths[0].display(), "{what} reloaded");
                }
                last = Some(content);
                last_error = None;
            }
            Err(error) => {
                let message = error.to_string();
                if last_error.as_ref() != Some(&message) {
                    tracing::warn!(error = %message, "cannot load the {what}; keeping the current one");
                    last_error = Some(message);
                }
            }
        }
    }
}

/// Reads each file whole.
pub(crate) fn read_files<const N: usize>(paths: [&Path; N]) -> Result<[Vec<u8>; N], PemFileError> {
    let mut content: [Vec<u8>; N] = std::array::from_fn(|_| Vec::new());
    for (slot, path) in content.iter_mut().zip(paths) {
        *slot = std::fs::read(path).map_err(|source| PemFileError::Read {
            path: path.to_owned(),
            cause: source,
        })?;
    }
    Ok(content)
}
