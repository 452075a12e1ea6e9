//! Why a request got no usable answer: the error every provider maps to a Ready reason, and the
//! classification of reqwest's errors (TLS, DNS, refused address, time-out) into it.

use super::address_guard::{DnsFailure, Refused};
use super::tls::InvalidCaBundle;
use std::error::Error as _;
use std::time::Duration;

/// The body was not the JSON the API documents.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotJson {
    #[error("an HTML page instead of a JSON API answer")]
    Html,
    #[error("a body that is not the expected JSON ({0})")]
    Malformed(String),
}

/// Why a request got no usable answer. Messages never contain the token.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("invalid URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("refusing to connect to {0}")]
    AddressRefused(String),
    #[error("TLS error talking to {host}: {detail}")]
    Tls { host: String, detail: String },
    #[error("cannot resolve {host}: {detail}")]
    Dns { host: String, detail: String },
    #[error("cannot connect to {host}: {detail}")]
    Connect { host: String, detail: String },
    #[error("no answer from {host} within {timeout:?}")]
    Timeout { host: String, timeout: Duration },
    #[error("the answer from {url} is larger than {limit} bytes")]
    BodyTooLarge { url: String, limit: usize },
    #[error("{host} kept failing: HTTP {status} after {attempts} attempts{retry_note}")]
    Unavailable {
        host: String,
        status: u16,
        attempts: u32,
        retry_note: String,
    },
    #[error("{host} rate-limited this token until {until} (HTTP {status})")]
    RateLimited {
        host: String,
        status: u16,
        until: jiff::Timestamp,
    },
    #[error("request to {host} failed: {detail}")]
    Other { host: String, detail: String },
    #[error(transparent)]
    InvalidCaBundle(#[from] InvalidCaBundle),
}

/// Turns reqwest's error into one the user can act on, by walking its source chain.
pub(super) fn classify(error: &reqwest::Error, host: &str, timeout: Duration) -> HttpError {
    let host = host.to_owned();
    if error.is_timeout() {
        return HttpError::Timeout { host, timeout };
    }
    let mut source = error.source();
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<Refused>() {
            return HttpError::AddressRefused(refused.0.clone());
        }
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return HttpError::Tls {
                host,
                detail: tls_detail(tls),
            };
        }
        if let Some(dns) = cause.downcast_ref::<DnsFailure>() {
            return HttpError::Dns {
                host,
                detail: dns.0.clone(),
            };
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            // rustls reports handshake failures as io errors wrapping rustls::Error, which
            // hyper-util wraps in another io error; io errors hide their payload from
            // `source()`, so they are unwrapped here.
            if let Some(tls) = rustls_error_in(io) {
                return HttpError::Tls {
                    host,
                    detail: tls_detail(tls),
                };
            }
            if io.kind() == std::io::ErrorKind::TimedOut {
                return HttpError::Timeout { host, timeout };
            }
            return HttpError::Connect {
                host,
                detail: io.to_string(),
            };
        }
        source = cause.source();
    }
    if error.is_connect() {
        return HttpError::Connect {
            host,
            detail: root_cause(error),
        };
    }
    HttpError::Other {
        host,
        detail: root_cause(error),
    }
}

/// rustls' words, and what to do about them when there is something to say.
fn tls_detail(error: &rustls::Error) -> String {
    match super::tls::advice(error) {
        Some(advice) => format!("{advice} ({error})"),
        None => error.to_string(),
    }
}

/// The `rustls::Error` inside (possibly nested) io errors.
fn rustls_error_in(io: &std::io::Error) -> Option<&rustls::Error> {
    let mut inner = io.get_ref()?;
    loop {
        if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        inner = inner.downcast_ref::<std::io::Error>()?.get_ref()?;
    }
}

pub(super) fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut last = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        last = cause.to_string();
        source = cause.source();
    }
    last
}
