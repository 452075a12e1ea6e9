//! One request to a provider's API, and the triage every provider shares: where it goes (the
//! API root joined with a path), how the token is presented, and what a request without an
//! answer, or an answer outside the API's documentation, means for Ready. The token checks
//! ([`super`]) and the repository look-ups ([`crate::repositories`]) both go through it.
#![allow(
    clippy::result_large_err,
    reason = "a failed verification is the outcome itself, made once per verification: boxing it buys nothing"
)]

use super::http::{Auth, HttpClient, HttpError, HttpResponse, NotJson};
use super::memory::{InstanceFacts, instance_key};
use super::{Target, Verification, join, non_empty};
use crate::api::ProviderKind;
use serde::Deserialize;
use serde::de::DeserializeOwned;

/// A provider's API as one token reaches it: the root, the token's presentation, the TLS
/// settings of its connection and the headers the vendor asks for.
#[derive(Clone)]
pub struct Api<'a> {
    pub kind: ProviderKind,
    pub http: &'a HttpClient,
    pub target: &'a Target,
    root: String,
    auth: Auth<'a>,
    headers: &'static [(&'static str, &'static str)],
}

impl<'a> Api<'a> {
    /// The API at `spec.url`, the token sent as `auth`.
    pub fn new(kind: ProviderKind, http: &'a HttpClient, target: &'a Target, auth: Auth<'a>) -> Api<'a> {
        Api {
            kind,
            http,
            target,
            root: target.base_url.as_str().to_owned(),
            auth,
            headers: &[],
        }
    }

    /// The same API beneath another root (a cloud's fixed API host, GitHub's `/api/v3`).
    pub fn beneath(self, root: String) -> Api<'a> {
        Api { root, ..self }
    }

    /// The same API, every request carrying `headers` too (never credentials: see
    /// [`HttpClient::get_with_headers`]).
    pub fn with_headers(self, headers: &'static [(&'static str, &'static str)]) -> Api<'a> {
        Api { headers, ..self }
    }

    /// GET the root followed by `path` (which starts with `/`).
    pub async fn get(&self, path: &str) -> Result<HttpResponse, HttpError> {
        let url = join(&self.root, path)?;
        self.http
            .get_with_headers(&url, self.auth, &self.target.tls, self.headers)
            .await
    }

    /// The memory key of the instance behind this API.
    pub fn instance_key(&self) -> String {
        instance_key(self.kind, &self.root)
    }

    /// The answer to a request, or what its failure means for Ready.
    pub fn answered(&self, answer: Result<HttpResponse, HttpError>) -> Result<HttpResponse, Verification> {
        answer.map_err(|error| Verification::from_http_error(self.kind, &error))
    }

    /// The JSON the API documents for `what` (e.g. `GET /api/v1/user`), or an unexpected answer.
    pub fn json<T: DeserializeOwned>(&self, what: &str, response: &HttpResponse) -> Result<T, Verification> {
        response.json::<T>().map_err(|_| self.unexpected(what, response))
    }

    /// An answer the API does not document for `what`.
    pub fn unexpected(&self, what: &str, response: &HttpResponse) -> Verification {
        Verification::unexpected_answer(self.kind, what, response)
    }

    /// The instance's version (`{"version": ...}` at `path`: Gitea, GitLab, Bitbucket Server),
    /// asked once per instance per [`super::memory::INSTANCE_FACTS_TTL`] by the callers of
    /// [`super::memory::Memory::instance_facts`]: nice to know, never a reason to fail.
    pub async fn learn_version(&self, path: &str) -> InstanceFacts {
        #[derive(Deserialize)]
        struct Version {
            #[serde(default)]
            version: Option<String>,
        }
        let mut facts = InstanceFacts::default();
        if let Ok(response) = self.get(path).await
            && response.status == reqwest::StatusCode::OK
            && let Ok(version) = response.json::<Version>()
        {
            facts.server_version = non_empty(version.version);
        }
        facts
    }
}

/// What came back instead of the documented answer, for a message.
pub fn what_came_back(response: &HttpResponse) -> &'static str {
    if response.is_html() {
        return "an HTML page";
    }
    match response.json::<serde_json::Value>() {
        Ok(_) => "unexpected JSON",
        Err(NotJson::Html) => "an HTML page",
        Err(NotJson::Malformed(_)) => "a body that is not JSON",
    }
}

/// `{"message": ...}`, the error body of Gitea, GitHub and Azure DevOps, as an excerpt (empty
/// when the body says nothing).
pub fn message(response: &HttpResponse) -> String {
    #[derive(Deserialize, Default)]
    struct ErrorBody {
        #[serde(default)]
        message: Option<String>,
    }
    let body: ErrorBody = response.json().unwrap_or_default();
    super::excerpt(&body.message.unwrap_or_default())
}

/// Verifies with the memory of the instance at `target.base_url`: `verify` gets its key, and
/// the instance is forgotten when the outcome says it answered differently
/// ([`Verification::settle`]).
pub async fn remembered<'a, F, Fut>(
    kind: ProviderKind,
    http: &'a HttpClient,
    target: &'a Target,
    verify: F,
) -> Verification
where
    F: FnOnce(&'a HttpClient, &'a Target, String) -> Fut,
    Fut: Future<Output = Result<Verification, Verification>>,
{
    let key = instance_key(kind, target.base_url.as_str());
    let outcome = verify(http, target, key.clone()).await;
    outcome.unwrap_or_else(|failed| failed).settle(http, &key)
}

/// One path segment, percent-encoded for a URL path (a space as `%20`, a slash as `%2F`).
pub fn path_segment(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
