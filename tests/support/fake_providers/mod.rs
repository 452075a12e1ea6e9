//! Local stand-ins for the Git providers, answering as their documentation shows (see each
//! provider's module and the doc comments of `src/providers/*.rs` for the pages).
//!
//! Every fake is an axum app served on 127.0.0.1 over HTTP **and** HTTPS (a certificate for
//! `127.0.0.1`/`localhost` signed by a CA generated in the test: [`pki`]). Each one
//! - keeps per-token behaviour ([`TokenSpec`]: who, scopes, expiry, expired, revoked);
//! - records every request it receives, headers included ([`FakeServer::requests`]);
//! - can be told to misbehave before answering ([`Fault`]: a status such as 500 or 429 with
//!   `Retry-After`, N times then normally; a slow answer; a redirect to another host; a huge
//!   body).
//!
//! ```ignore
//! let gitlab = FakeGitLab::start().await;
//! gitlab.add_token("glpat-1", TokenSpec::user("jdoe").scopes(["read_api"]));
//! gitlab.set_version("17.5.1");
//! // verify against gitlab.url() or gitlab.https_url() (trusting pki().ca_pem) ...
//! assert!(gitlab.requests().iter().all(|r| r.path.starts_with("/api/v4/")));
//! ```
#![allow(dead_code, unused_imports)]

pub mod azure_devops;
pub mod bitbucket;
pub mod gitea;
pub mod github;
pub mod gitlab;
pub mod rate_limits;
pub mod repositories;

pub use azure_devops::{FakeAzureDevOps, InvalidTokenAnswer};
pub use bitbucket::{FakeBitbucketCloud, FakeBitbucketServer};
pub use gitea::FakeGitea;
pub use github::FakeGitHub;
pub use gitlab::FakeGitLab;
pub use repositories::{Access, FakeRepo, Repos, Seen};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use reqwest::Url;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

// ---- certificates ---------------------------------------------------------------------

/// A CA and a server certificate it signed, for `127.0.0.1`, `::1` and `localhost`.
pub struct Pki {
    /// The CA certificate, PEM: what `TlsOptions.extra_ca_pem` must trust.
    pub ca_pem: String,
    /// The server certificate, PEM.
    pub leaf_pem: String,
    server_config: Arc<rustls::ServerConfig>,
}

/// The test PKI, generated once per test binary.
pub fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let ca = super::pki::TestCa::new("gitprovider-operator test CA").expect("test CA");
        let leaf = ca
            .issue(&["127.0.0.1", "::1", "localhost"])
            .expect("test server certificate");
        Pki {
            ca_pem: ca.cert_pem().to_owned(),
            leaf_pem: leaf.cert_pem.clone(),
            server_config: leaf.server_config().expect("test server TLS configuration"),
        }
    })
}

// ---- tokens ---------------------------------------------------------------------------

/// How a fake treats one token. What each field means exactly depends on the provider (see
/// the fake's module); fields a provider does not have are ignored.
#[derive(Clone, Debug, Default)]
pub struct TokenSpec {
    /// Login name (Azure DevOps: the sign-in name, `properties.Account.$value`).
    pub username: String,
    pub display_name: Option<String>,
    /// The account's (private) e-mail address.
    pub email: Option<String>,
    /// Whether the e-mail is public (GitHub `/user`, GitLab `public_email`).
    pub public_email: bool,
    /// Scopes or permissions. `None`: the token kind has none the API shows (GitHub
    /// fine-grained) / everything allowed.
    pub scopes: Option<Vec<String>>,
    /// The expiry the provider reports.
    pub expires_at: Option<jiff::Timestamp>,
    /// The provider refuses the token as expired (in its own way).
    pub expired: bool,
    /// The provider refuses the token as revoked.
    pub revoked: bool,
    /// Repository access by lower-cased path; `None`: reads every repository of the fake
    /// (see [`repositories`]).
    pub repositories: Option<HashMap<String, Access>>,
}

impl TokenSpec {
    /// The valid GitLab token most tests use: jdoe, with a name, an e-mail, two scopes and an
    /// expiry far away. [`assert_reveals_jane_doe`] checks a status carries all of it.
    pub fn jane_doe() -> TokenSpec {
        TokenSpec::user("jdoe")
            .display_name("Jane Doe")
            .email("jdoe@example.com")
            .scopes(["read_api", "read_repository"])
            .expires_at("2099-01-31T00:00:00Z".parse().expect("timestamp"))
    }

    pub fn user(username: &str) -> TokenSpec {
        TokenSpec {
            username: username.to_owned(),
            ..TokenSpec::default()
        }
    }

    pub fn display_name(mut self, name: &str) -> TokenSpec {
        self.display_name = Some(name.to_owned());
        self
    }

    pub fn email(mut self, email: &str) -> TokenSpec {
        self.email = Some(email.to_owned());
        self
    }

    pub fn public_email(mut self) -> TokenSpec {
        self.public_email = true;
        self
    }

    pub fn scopes<I: IntoIterator<Item = S>, S: Into<String>>(mut self, scopes: I) -> TokenSpec {
        self.scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    pub fn expires_at(mut self, at: jiff::Timestamp) -> TokenSpec {
        self.expires_at = Some(at);
        self
    }

    pub fn expired(mut self) -> TokenSpec {
        self.expired = true;
        self
    }

    pub fn revoked(mut self) -> TokenSpec {
        self.revoked = true;
        self
    }

    pub fn has_scope(&self, any_of: &[&str]) -> bool {
        match &self.scopes {
            None => true,
            Some(scopes) => scopes.iter().any(|s| any_of.contains(&s.as_str())),
        }
    }

    /// Expired by flag or by a reported expiry in the past.
    pub fn is_expired(&self) -> bool {
        self.expired || self.expires_at.is_some_and(|at| at <= jiff::Timestamp::now())
    }
}

/// Tokens by value.
pub type Tokens = Arc<Mutex<HashMap<String, TokenSpec>>>;

// ---- requests and faults --------------------------------------------------------------

/// A request as the fake received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub headers: HeaderMap,
    /// When it arrived.
    pub at: std::time::SystemTime,
}

impl RecordedRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Whether the request carried any credentials (Authorization or GitLab's PRIVATE-TOKEN).
    pub fn has_credentials(&self) -> bool {
        self.headers.contains_key("authorization") || self.headers.contains_key("private-token")
    }
}

/// Misbehaviour applied before the fake answers normally.
#[derive(Clone, Debug)]
pub enum Fault {
    /// Answer with this status, headers and body instead.
    Status {
        status: u16,
        headers: Vec<(String, String)>,
        body: String,
    },
    /// Wait, then answer normally.
    Delay(Duration),
    /// `302 Found` to this absolute URL.
    Redirect(String),
    /// `200` with a JSON-ish body of this many bytes and a `Content-Length`.
    LargeBody(usize),
    /// `200` with a body of this many bytes streamed without a `Content-Length`.
    LargeStream(usize),
}

impl Fault {
    pub fn status(status: u16) -> Fault {
        Fault::Status {
            status,
            headers: Vec::new(),
            body: String::new(),
        }
    }

    pub fn status_with(status: u16, headers: &[(&str, &str)], body: &str) -> Fault {
        Fault::Status {
            status,
            headers: headers
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
            body: body.to_owned(),
        }
    }
}

struct FaultRule {
    path_prefix: Option<String>,
    fault: Fault,
    remaining: Option<usize>,
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<RecordedRequest>>,
    faults: Mutex<Vec<FaultRule>>,
    waves: Mutex<Option<Arc<tokio::sync::Barrier>>>,
    repos: Repos,
}

/// How long a request waits for the rest of its wave before it is answered 503.
const WAVE_WAIT: Duration = Duration::from_secs(5);

impl Shared {
    fn take_fault(&self, path: &str) -> Option<Fault> {
        let mut faults = self.faults.lock().unwrap();
        let index = faults.iter().position(|rule| {
            rule.remaining != Some(0) && rule.path_prefix.as_deref().is_none_or(|p| path.starts_with(p))
        })?;
        let rule = &mut faults[index];
        if let Some(remaining) = &mut rule.remaining {
            *remaining -= 1;
        }
        Some(rule.fault.clone())
    }
}

async fn record_and_misbehave(State(shared): State<Arc<Shared>>, mut request: Request, next: Next) -> Response {
    request.extensions_mut().insert(shared.repos.clone());
    let path = request
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_owned())
        .unwrap_or_else(|| request.uri().path().to_owned());
    shared.requests.lock().unwrap().push(RecordedRequest {
        method: request.method().to_string(),
        path: path.clone(),
        headers: request.headers().clone(),
        at: std::time::SystemTime::now(),
    });
    let wave = shared.waves.lock().unwrap().clone();
    if let Some(barrier) = wave
        && tokio::time::timeout(WAVE_WAIT, barrier.wait()).await.is_err()
    {
        return (StatusCode::SERVICE_UNAVAILABLE, "the rest of the wave never came").into_response();
    }
    match shared.take_fault(request.uri().path()) {
        None => next.run(request).await,
        Some(Fault::Delay(delay)) => {
            tokio::time::sleep(delay).await;
            next.run(request).await
        }
        Some(Fault::Status { status, headers, body }) => {
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = StatusCode::from_u16(status).expect("status");
            for (name, value) in headers {
                response.headers_mut().append(
                    axum::http::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                    HeaderValue::from_str(&value).expect("header value"),
                );
            }
            response
        }
        Some(Fault::Redirect(location)) => (StatusCode::FOUND, [("location", location)], "").into_response(),
        Some(Fault::LargeBody(size)) => {
            let mut body = vec![b' '; size];
            body[0] = b'[';
            body[size - 1] = b']';
            ([("content-type", "application/json")], body).into_response()
        }
        Some(Fault::LargeStream(size)) => {
            let chunk = bytes::Bytes::from(vec![b' '; 64 * 1024]);
            let chunks = size.div_ceil(chunk.len());
            let stream = futures::stream::iter((0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())));
            ([("content-type", "application/json")], Body::from_stream(stream)).into_response()
        }
    }
}

// ---- the server -----------------------------------------------------------------------

/// One app served on an HTTP and an HTTPS port of 127.0.0.1. The tasks end with the test's
/// runtime.
pub struct FakeServer {
    http: SocketAddr,
    https: SocketAddr,
    shared: Arc<Shared>,
}

impl FakeServer {
    pub async fn start(app: Router) -> FakeServer {
        let shared = Arc::new(Shared::default());
        let app = app.layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            record_and_misbehave,
        ));

        let plain = TcpListener::bind("127.0.0.1:0").await.expect("bind HTTP");
        let http = plain.local_addr().expect("HTTP address");
        let plain_app = app.clone();
        tokio::spawn(async move {
            let _ = axum::serve(plain, plain_app).await;
        });

        let tls = TcpListener::bind("127.0.0.1:0").await.expect("bind HTTPS");
        let https = tls.local_addr().expect("HTTPS address");
        let listener = TlsListener::spawn(tls, pki().server_config.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });

        FakeServer { http, https, shared }
    }

    /// `http://127.0.0.1:PORT` (no trailing slash, as `parse_base_url` leaves it).
    pub fn url(&self) -> Url {
        Url::parse(&format!("http://{}", self.http)).expect("url")
    }

    /// `https://127.0.0.1:PORT`; trust [`pki`]`().ca_pem` to verify it.
    pub fn https_url(&self) -> Url {
        Url::parse(&format!("https://{}", self.https)).expect("url")
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    pub fn clear_requests(&self) {
        self.shared.requests.lock().unwrap().clear();
    }

    /// Applies `fault` to the next `times` requests whose path starts with `path_prefix`
    /// (`None`: any path; `times` `None`: forever). Rules apply in the order added.
    pub fn fault(&self, path_prefix: Option<&str>, fault: Fault, times: Option<usize>) {
        self.shared.faults.lock().unwrap().push(FaultRule {
            path_prefix: path_prefix.map(str::to_owned),
            fault,
            remaining: times,
        });
    }

    /// Answers requests only in waves of `n` that are in flight together: a client that sends
    /// them one after the other gets 503 after a few seconds instead. Proves that requests go
    /// out together without timing anything. `None` answers each request at once again.
    pub fn answer_in_waves_of(&self, n: Option<usize>) {
        *self.shared.waves.lock().unwrap() = n.map(|n| Arc::new(tokio::sync::Barrier::new(n)));
    }

    pub fn clear_faults(&self) {
        self.shared.faults.lock().unwrap().clear();
    }

    /// Creates a (private) repository with default branch `main`.
    pub fn add_repository(&self, path: &str) {
        self.add_repository_like(FakeRepo::new(path));
    }

    pub fn add_repository_like(&self, repo: FakeRepo) {
        self.shared
            .repos
            .lock()
            .unwrap()
            .insert(repo.path.to_ascii_lowercase(), repo);
    }

    pub fn remove_repository(&self, path: &str) {
        self.shared.repos.lock().unwrap().remove(&path.to_ascii_lowercase());
    }
}

/// Accepts TCP connections and completes TLS handshakes in their own tasks, handing finished
/// streams to axum; a failed handshake (an untrusting client) is just dropped.
struct TlsListener {
    streams: mpsc::Receiver<(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    fn spawn(tcp: TcpListener, config: Arc<rustls::ServerConfig>) -> TlsListener {
        let local = tcp.local_addr().expect("local address");
        let (sender, streams) = mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let Ok((stream, peer)) = tcp.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let acceptor = acceptor.clone();
                let sender = sender.clone();
                tokio::spawn(async move {
                    if let Ok(Ok(tls)) = tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream)).await {
                        let _ = sender.send((tls, peer)).await;
                    }
                });
            }
        });
        TlsListener { streams, local }
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.streams.recv().await {
            Some(stream) => stream,
            // The acceptor task is gone: nothing will ever come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

// ---- helpers for the fakes ------------------------------------------------------------

/// A JSON answer.
pub fn json(status: StatusCode, value: serde_json::Value) -> Response {
    (
        status,
        [("content-type", "application/json; charset=utf-8")],
        value.to_string(),
    )
        .into_response()
}

/// The query parameters of a request.
pub fn query(request: &Request) -> HashMap<String, String> {
    url::form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// The credential of an `Authorization: <scheme> <value>` header, for one of `schemes`.
pub fn authorization(request: &Request, schemes: &[&str]) -> Option<String> {
    let value = request.headers().get("authorization")?.to_str().ok()?;
    let (scheme, credential) = value.split_once(' ')?;
    schemes
        .iter()
        .any(|s| s.eq_ignore_ascii_case(scheme))
        .then(|| credential.trim().to_owned())
}

/// `(user, password)` of a Basic `Authorization` header.
pub fn basic_credentials(request: &Request) -> Option<(String, String)> {
    use base64::Engine as _;
    let encoded = authorization(request, &["Basic"])?;
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// The token spec for `token`, if the fake knows it.
pub fn lookup(tokens: &Tokens, token: Option<&str>) -> Option<TokenSpec> {
    tokens.lock().unwrap().get(token?).cloned()
}

/// A stable fake numeric id for a name.
pub fn id_of(name: &str) -> u64 {
    name.bytes()
        .fold(7u64, |acc, b| acc.wrapping_mul(31).wrapping_add(u64::from(b)))
        % 1_000_000
}

/// Asserts that a connection verified with [`TokenSpec::jane_doe`] against the fake GitLab
/// carries everything GitLab revealed: user, version, scopes, expiry, verification time.
pub fn assert_reveals_jane_doe(status: &gitprovider_operator::api::GitProviderConnectionStatus) {
    let user = status.authenticated_user.as_ref().expect("authenticatedUser");
    assert_eq!(user.username.as_deref(), Some("jdoe"));
    assert_eq!(user.display_name.as_deref(), Some("Jane Doe"));
    assert_eq!(user.email.as_deref(), Some("jdoe@example.com"));
    assert_eq!(status.server_version.as_deref(), Some("17.5.1-ee"));
    assert_eq!(
        status.token_scopes,
        Some(vec!["read_api".to_owned(), "read_repository".to_owned()])
    );
    assert_eq!(
        status.token_expires_at.as_ref().map(|t| t.0.to_string()).as_deref(),
        Some("2099-01-31T00:00:00Z")
    );
    assert!(status.last_verified_time.is_some());
}
