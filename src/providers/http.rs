//! The one HTTP client every provider uses.
//!
//! What it guarantees, so that no provider has to:
//! - rustls with the system roots plus any CA bundle of the connection (added, never replacing);
//!   `insecureSkipVerify` honoured (the caller warns);
//! - a connect time-out and an overall per-request time-out;
//! - response bodies capped at [`MAX_BODY_BYTES`]: a larger body is an error, not an allocation;
//! - bounded retries with exponential backoff for 5xx, honouring `Retry-After`;
//! - rate-limited answers ([`super::rate_limit`]) waited out here only when the wait is short,
//!   else returned at once as [`HttpError::RateLimited`] with the reset time;
//! - redirects followed only within the same origin (scheme, host, port), so credentials never
//!   reach another host; any other redirect is handed back to the provider as a 3xx answer;
//! - requests to link-local addresses (169.254.0.0/16, fe80::/10: cloud metadata endpoints)
//!   refused before connecting, for literal addresses and after DNS resolution;
//! - `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` honoured (reqwest reads them);
//! - a `User-Agent` naming the operator and its version;
//! - failures classified: TLS, unreachable (DNS, refused, time-out), too large, not JSON.

use crate::token::Token;
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{StatusCode, Url};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::address_guard::{AddressPolicy, GuardError, GuardedResolver};
pub use super::http_error::{HttpError, NotJson};
use super::http_error::{classify, root_cause};
use super::rate_limit;
pub use super::tls::TlsOptions;
use super::tls::rustls_config;
use std::time::Duration;

/// Largest response body read from a provider.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Attempts per request when the instance answers 5xx or 429.
const MAX_ATTEMPTS: u32 = 3;
/// Longest `Retry-After` of a 5xx answer honoured; a longer one ends the retries at once.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// Longest rate-limit wait waited inside a request; a longer one is returned as
/// [`HttpError::RateLimited`] for the caller to schedule.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(5);
/// Same-origin redirects followed before giving up.
const MAX_REDIRECTS: usize = 5;

const USER_AGENT: &str = concat!("gitprovider-operator/", env!("CARGO_PKG_VERSION"));

/// Client-wide settings.
#[derive(Clone, Debug)]
pub struct HttpConfig {
    /// Overall time-out of one request (connect, send, receive the whole body).
    pub timeout: Duration,
    /// Base delay of the retry backoff (doubled per attempt).
    pub retry_base_delay: Duration,
    /// PEM certificates trusted for every connection, beside the system roots and the
    /// connection's own bundle (`run --ca-file`: a corporate CA for all instances at once).
    pub extra_ca_pem: Option<String>,
    /// Which addresses may be contacted.
    pub addresses: AddressPolicy,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            timeout: Duration::from_secs(10),
            retry_base_delay: Duration::from_millis(250),
            extra_ca_pem: None,
            addresses: AddressPolicy::default(),
        }
    }
}

/// How the token is presented.
#[derive(Clone, Copy, Debug)]
pub enum Auth<'a> {
    /// `Authorization: Bearer TOKEN`
    Bearer(&'a Token),
    /// `Authorization: token TOKEN` (Gitea, Forgejo, GitHub's classic form)
    TokenScheme(&'a Token),
    /// `Authorization: Basic base64(user:TOKEN)`
    Basic { user: &'a str, token: &'a Token },
    /// A provider-specific header carrying the bare token, e.g. GitLab's `PRIVATE-TOKEN`.
    Header { name: &'static str, token: &'a Token },
    /// No credentials (version endpoints that are public).
    None,
}

/// A provider's answer with its body read (and capped).
#[derive(Debug)]
pub struct HttpResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The URL that answered (after same-origin redirects).
    pub url: Url,
}

impl HttpResponse {
    /// A response header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Whether the body looks like an HTML page rather than an API answer.
    pub fn is_html(&self) -> bool {
        let content_type_html = self
            .header("content-type")
            .is_some_and(|ct| ct.to_ascii_lowercase().contains("html"));
        let start = self.body.iter().position(|b| !b.is_ascii_whitespace());
        let body_html = start.is_some_and(|i| self.body[i] == b'<');
        content_type_html || body_html
    }

    /// Whether an HTML body looks like a sign-in page (a proxy or identity provider asking for
    /// credentials instead of the API answering).
    pub fn is_login_page(&self) -> bool {
        if !self.is_html() {
            return false;
        }
        let text = String::from_utf8_lossy(&self.body[..self.body.len().min(64 * 1024)]).to_ascii_lowercase();
        ["sign in", "signin", "sign-in", "log in", "login", "password"]
            .iter()
            .any(|needle| text.contains(needle))
    }

    /// Parses the body as JSON; HTML or anything else that is not JSON of the expected shape is
    /// an error that names what came back.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, NotJson> {
        if self.is_html() {
            return Err(NotJson::Html);
        }
        serde_json::from_slice(&self.body).map_err(|e| NotJson::Malformed(e.to_string()))
    }

    /// The `Location` of a redirect, if any.
    pub fn location(&self) -> Option<&str> {
        self.header("location")
    }
}

/// The shared client: one reqwest client per distinct TLS setting, reused across requests so
/// connections are pooled.
pub struct HttpClient {
    config: HttpConfig,
    clients: Mutex<ClientCache>,
    memory: super::memory::Memory,
}

impl HttpClient {
    pub fn new(config: HttpConfig) -> HttpClient {
        HttpClient {
            config,
            clients: Mutex::new(ClientCache::default()),
            memory: super::memory::Memory::default(),
        }
    }

    pub fn config(&self) -> &HttpConfig {
        &self.config
    }

    /// What verifications through this client remember between themselves.
    pub fn memory(&self) -> &super::memory::Memory {
        &self.memory
    }

    fn client_for(&self, tls: &TlsOptions) -> Result<reqwest::Client, HttpError> {
        let key = ClientKey::of(tls)?;
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(client) = clients.get(&key) {
            return Ok(client);
        }
        let client = build_client(&self.config, tls)?;
        clients.insert(key, client.clone());
        Ok(client)
    }

    /// How many clients are cached (for tests and diagnostics).
    pub fn cached_clients(&self) -> usize {
        self.clients.lock().unwrap_or_else(|p| p.into_inner()).entries.len()
    }

    /// GET `url` with `auth`, retrying 5xx/429 with backoff.
    pub async fn get(&self, url: &Url, auth: Auth<'_>, tls: &TlsOptions) -> Result<HttpResponse, HttpError> {
        self.get_with_headers(url, auth, tls, &[]).await
    }

    /// Like [`HttpClient::get`], with extra request headers (e.g. GitHub's
    /// `Accept: application/vnd.github+json` and `X-GitHub-Api-Version`). An `accept` entry
    /// replaces the default `Accept: application/json`. Never pass credentials here: use
    /// `auth`, whose header is marked sensitive.
    pub async fn get_with_headers(
        &self,
        url: &Url,
        auth: Auth<'_>,
        tls: &TlsOptions,
        headers: &[(&'static str, &str)],
    ) -> Result<HttpResponse, HttpError> {
        let host = host_label(url);
        if url.host().is_none() {
            return Err(HttpError::InvalidUrl {
                url: url.to_string(),
                reason: "no host".into(),
            });
        }
        let policy = &self.config.addresses;
        policy
            .judge_literal(url)
            .map_err(|refusal| HttpError::AddressRefused(refusal.to_string()))?;
        if let Some(url::Host::Domain(name)) = url.host()
            && proxy_configured()
        {
            // A proxy resolves the name itself, past the resolver below: judge it here first.
            match policy.resolve(name).await {
                Ok(_) => {}
                Err(GuardError::Refused(refused)) => return Err(HttpError::AddressRefused(refused.0)),
                Err(GuardError::Dns(_)) if !policy.allow.is_empty() => {
                    return Err(HttpError::AddressRefused(format!(
                        "{name}: it does not resolve here, so it cannot be checked against --allow-cidr"
                    )));
                }
                // only the proxy knows the name: its DNS decides (see the README)
                Err(GuardError::Dns(_)) => {}
            }
        }
        let client = self.client_for(tls)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = client.get(url.clone());
            if !headers.iter().any(|(name, _)| name.eq_ignore_ascii_case("accept")) {
                request = request.header(reqwest::header::ACCEPT, "application/json");
            }
            for (name, value) in headers {
                request = request.header(*name, *value);
            }
            if let Some((name, value)) = auth_header(auth)? {
                request = request.header(name, value);
            }
            let response = request
                .send()
                .await
                .map_err(|e| classify(&e, &host, self.config.timeout))?;
            let status = response.status();
            if matches!(status, StatusCode::TOO_MANY_REQUESTS | StatusCode::FORBIDDEN) {
                let answer = read_capped(response, self.config.timeout, &host).await?;
                let Some(until) = rate_limit::rate_limited_until(answer.status, &answer.headers, &answer.body) else {
                    return Ok(answer);
                };
                // A short wait is waited here; a longer one is the caller's to schedule:
                // asking again before the reset only walks into the same wall.
                let wait = Duration::try_from(until.duration_since(jiff::Timestamp::now())).unwrap_or_default();
                if attempt >= MAX_ATTEMPTS || wait > MAX_RATE_LIMIT_WAIT || deadline::passes_after(wait) {
                    return Err(HttpError::RateLimited {
                        host,
                        status: status.as_u16(),
                        until,
                    });
                }
                tracing::debug!(%host, status = status.as_u16(), ?wait, "rate-limited briefly; waiting");
                tokio::time::sleep(wait).await;
                continue;
            }
            if !status.is_server_error() {
                return read_capped(response, self.config.timeout, &host).await;
            }
            let retry_after = parse_retry_after(response.headers());
            let backoff = self.config.retry_base_delay * 2u32.pow(attempt - 1);
            let delay = retry_after.unwrap_or(backoff);
            let past_deadline = deadline::passes_after(delay);
            if attempt >= MAX_ATTEMPTS || retry_after.is_some_and(|d| d > MAX_RETRY_AFTER) || past_deadline {
                let mut retry_note = match retry_after {
                    Some(d) => format!("; it asks to retry after {}s", d.as_secs()),
                    None => String::new(),
                };
                if past_deadline {
                    retry_note.push_str(", past the verification's time-out");
                }
                return Err(HttpError::Unavailable {
                    host,
                    status: status.as_u16(),
                    attempts: attempt,
                    retry_note,
                });
            }
            tracing::debug!(%host, status = status.as_u16(), ?delay, "retrying after a failed answer");
            tokio::time::sleep(delay).await;
        }
    }
}

/// Most HTTP clients kept, one per distinct TLS setting; the least recently used goes first.
pub const MAX_CLIENTS: usize = 64;

/// What a TLS setting means: the certificates of the bundle (DER, sorted, without duplicates),
/// not its text, so that bundles that differ only in comments or order share one client.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ClientKey {
    insecure_skip_verify: bool,
    certificates: Vec<Vec<u8>>,
}

impl ClientKey {
    fn of(tls: &TlsOptions) -> Result<ClientKey, HttpError> {
        let mut certificates = match &tls.extra_ca_pem {
            Some(pem) => super::tls::parse_ca_bundle(pem)?
                .into_iter()
                .map(|cert| cert.as_ref().to_vec())
                .collect(),
            None => Vec::new(),
        };
        certificates.sort();
        certificates.dedup();
        Ok(ClientKey {
            insecure_skip_verify: tls.insecure_skip_verify,
            certificates,
        })
    }
}

/// The clients, bounded by [`MAX_CLIENTS`], evicting the least recently used.
#[derive(Default)]
struct ClientCache {
    entries: HashMap<ClientKey, (reqwest::Client, u64)>,
    uses: u64,
}

impl ClientCache {
    fn get(&mut self, key: &ClientKey) -> Option<reqwest::Client> {
        self.uses += 1;
        let uses = self.uses;
        self.entries.get_mut(key).map(|(client, last)| {
            *last = uses;
            client.clone()
        })
    }

    fn insert(&mut self, key: ClientKey, client: reqwest::Client) {
        while self.entries.len() >= MAX_CLIENTS {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (_, last))| *last)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            self.entries.remove(&oldest);
        }
        self.uses += 1;
        self.entries.insert(key, (client, self.uses));
    }
}

/// One deadline for all the requests of a verification, retries included.
pub mod deadline {
    use std::future::Future;
    use std::time::Duration;
    use tokio::time::Instant;

    tokio::task_local! {
        static DEADLINE: Instant;
    }

    /// Runs `work` with a deadline `within` from now that retries respect; `None` when it did
    /// not finish by then.
    pub async fn run<F: Future>(within: Duration, work: F) -> Option<F::Output> {
        let deadline = Instant::now() + within;
        DEADLINE
            .scope(
                deadline,
                async move { tokio::time::timeout_at(deadline, work).await.ok() },
            )
            .await
    }

    /// Whether waiting `delay` from now would end past the deadline of the work in progress.
    pub(super) fn passes_after(delay: Duration) -> bool {
        DEADLINE
            .try_with(|deadline| Instant::now() + delay >= *deadline)
            .unwrap_or(false)
    }
}

/// Whether a proxy variable is set (reqwest reads the same ones).
fn proxy_configured() -> bool {
    [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
    ]
    .iter()
    .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()))
}

fn host_label(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        _ => url.as_str().to_owned(),
    }
}

fn auth_header(auth: Auth<'_>) -> Result<Option<(HeaderName, HeaderValue)>, HttpError> {
    let (name, value) = match auth {
        Auth::None => return Ok(None),
        Auth::Bearer(token) => (reqwest::header::AUTHORIZATION, format!("Bearer {}", token.expose())),
        Auth::TokenScheme(token) => (reqwest::header::AUTHORIZATION, format!("token {}", token.expose())),
        Auth::Basic { user, token } => {
            use base64::Engine as _;
            let pair = format!("{user}:{}", token.expose());
            let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
            (reqwest::header::AUTHORIZATION, format!("Basic {encoded}"))
        }
        Auth::Header { name, token } => (HeaderName::from_static(name), token.expose().to_owned()),
    };
    // The error deliberately does not echo the value: it holds the token.
    let mut value = HeaderValue::from_str(&value).map_err(|_| HttpError::Other {
        host: String::new(),
        detail: "the token contains characters that cannot be sent in an HTTP header".into(),
    })?;
    value.set_sensitive(true);
    Ok(Some((name, value)))
}

async fn read_capped(
    mut response: reqwest::Response,
    timeout: Duration,
    host: &str,
) -> Result<HttpResponse, HttpError> {
    let status = response.status();
    let headers = response.headers().clone();
    let url = response.url().clone();
    if response.content_length().is_some_and(|len| len > MAX_BODY_BYTES as u64) {
        return Err(HttpError::BodyTooLarge {
            url: url.to_string(),
            limit: MAX_BODY_BYTES,
        });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| classify(&e, host, timeout))? {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(HttpError::BodyTooLarge {
                url: url.to_string(),
                limit: MAX_BODY_BYTES,
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(HttpResponse {
        status,
        headers,
        body: Bytes::from(body),
        url,
    })
}

/// `Retry-After` as seconds or an HTTP date.
fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    rate_limit::retry_after_delay(headers)
}

fn build_client(config: &HttpConfig, tls: &TlsOptions) -> Result<reqwest::Client, HttpError> {
    let tls_config = rustls_config(config.extra_ca_pem.as_deref(), tls)?;
    reqwest::Client::builder()
        .use_preconfigured_tls(tls_config)
        .user_agent(USER_AGENT)
        .connect_timeout(config.timeout.min(Duration::from_secs(5)))
        .timeout(config.timeout)
        .redirect(reqwest::redirect::Policy::custom(|attempt| {
            let same_origin = attempt
                .previous()
                .first()
                .is_some_and(|first| first.origin() == attempt.url().origin());
            if same_origin && attempt.previous().len() <= MAX_REDIRECTS {
                attempt.follow()
            } else {
                attempt.stop()
            }
        }))
        .dns_resolver(Arc::new(GuardedResolver(Arc::new(config.addresses.clone()))))
        .build()
        .map_err(|e| HttpError::Other {
            host: String::new(),
            detail: format!("cannot build the HTTP client: {}", root_cause(&e)),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["git.example.com".to_owned()]).unwrap();
        params.self_signed(&key).unwrap().pem()
    }

    #[test]
    fn clients_are_keyed_by_the_certificates_and_bounded() {
        let http = HttpClient::new(HttpConfig::default());
        let pem = self_signed_pem();
        // the same certificate, in bundles that differ in comments: one client
        for i in 0..200 {
            let tls = TlsOptions {
                extra_ca_pem: Some(format!("# edited {i}\n{pem}")),
                insecure_skip_verify: false,
            };
            http.client_for(&tls).unwrap();
        }
        assert_eq!(http.cached_clients(), 1);
        // many different bundles: at most MAX_CLIENTS kept
        for _ in 0..MAX_CLIENTS + 10 {
            let tls = TlsOptions {
                extra_ca_pem: Some(self_signed_pem()),
                insecure_skip_verify: false,
            };
            http.client_for(&tls).unwrap();
        }
        assert_eq!(http.cached_clients(), MAX_CLIENTS);
    }

    #[test]
    fn retry_after_seconds_and_date() {
        let mut headers = HeaderMap::new();
        headers.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(parse_retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert("retry-after", HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"));
        assert_eq!(parse_retry_after(&headers), Some(Duration::ZERO));
        headers.insert("retry-after", HeaderValue::from_static("soon"));
        assert_eq!(parse_retry_after(&headers), None);
    }

    #[test]
    fn auth_headers_are_sensitive_and_debug_hides_them() {
        let token = Token::new("s3cret").unwrap();
        let (_, value) = auth_header(Auth::Bearer(&token)).unwrap().unwrap();
        assert!(value.is_sensitive());
        assert!(!format!("{value:?}").contains("s3cret"));
        let (_, basic) = auth_header(Auth::Basic {
            user: "",
            token: &token,
        })
        .unwrap()
        .unwrap();
        assert_eq!(basic.to_str().unwrap(), "Basic OnMzY3JldA==");
    }
}
