//! One request to a provider's API, and the triage every provider shares: where it goes (the
//! API root joined with a path), how the token is presented, and what a request without an
//! answer, or an answer outside the API's documentation, means for Ready. The token checks
//! ([`super`]) and the repository look-ups ([`crate::repositories`]) both go through it.
#![allow(
    clippy::result_large_err,
    reason = "a failed verification is the outcome itself, made once per verification: boxing it buys nothing"
)]

use super::http::{Auth, HttpClient, HttpError, HttpResponse, NotJson};
use super::memory::{Hint, InstanceFacts, instance_key};
use super::{Facts, Target, Verification, join, non_empty};
use crate::api::{Deployment, ProviderKind};
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
    /// The memory key of the instance at `root` ([`instance_key`]).
    key: String,
    auth: Auth<'a>,
    headers: &'static [(&'static str, &'static str)],
}

impl<'a> Api<'a> {
    /// The API at `spec.url`, the token sent as `auth`.
    pub fn new(kind: ProviderKind, http: &'a HttpClient, target: &'a Target, auth: Auth<'a>) -> Api<'a> {
        let root = target.base_url.as_str().to_owned();
        Api {
            kind,
            http,
            target,
            key: instance_key(kind, &root),
            root,
            auth,
            headers: &[],
        }
    }

    /// The same API beneath another root (a cloud's fixed API host, GitHub's `/api/v3`).
    pub fn beneath(self, root: String) -> Api<'a> {
        Api {
            key: instance_key(self.kind, &root),
            root,
            ..self
        }
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
    pub fn instance_key(&self) -> &str {
        &self.key
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

    /// Awaits `requests` in the same round trip as the instance's version (the remembered one,
    /// or else the one [`Api::learn_version`] reads at `version_path`), and the facts known so
    /// far: that version and the `deployment`.
    pub async fn beside_version<T>(
        &self,
        deployment: Deployment,
        version_path: &str,
        requests: impl Future<Output = T>,
    ) -> (Facts, T) {
        let memory = self.http.memory();
        let learn = memory.instance_facts(self.instance_key(), || self.learn_version(version_path));
        let (instance, answers) = futures::join!(learn, requests);
        let facts = Facts {
            server_version: instance.server_version,
            ..Facts::on(deployment)
        };
        (facts, answers)
    }

    /// GETs `path` and, in the same round trip, the token's e-mail list at `emails_path`,
    /// unless the token's last verification could not use that list ([`Hint::ReadEmails`]).
    pub async fn get_beside_emails(
        &self,
        path: &str,
        emails_path: &str,
    ) -> (Result<HttpResponse, HttpError>, Option<Result<HttpResponse, HttpError>>) {
        let hint = self.http.memory().hint(self.instance_key(), &self.target.token);
        let ask_emails = hint != Some(Hint::ReadEmails(false));
        futures::join!(self.get(path), async {
            match ask_emails {
                true => Some(self.get(emails_path).await),
                false => None,
            }
        })
    }

    /// The e-mail `pick` finds in the e-mail list's answer (`None` when it was not asked for or
    /// could not be read), remembering for the token's next verification whether the list was
    /// of use ([`Api::get_beside_emails`]).
    pub fn read_emails<T: DeserializeOwned>(
        &self,
        emails: Option<Result<HttpResponse, HttpError>>,
        pick: impl FnOnce(T) -> Option<String>,
    ) -> Option<String> {
        let mut readable = false;
        let mut email = None;
        if let Some(Ok(response)) = emails
            && response.status == reqwest::StatusCode::OK
            && let Ok(list) = response.json::<T>()
        {
            readable = true;
            email = non_empty(pick(list));
        }
        self.http
            .memory()
            .remember_hint(self.instance_key(), &self.target.token, Hint::ReadEmails(readable));
        email
    }
}

/// The token's scopes, when the answer names them in `X-OAuth-Scopes` (comma or space
/// separated); `None` when it does not (e.g. GitHub's fine-grained tokens), an empty list for a
/// token without scopes.
pub fn oauth_scopes(response: &HttpResponse) -> Option<Vec<String>> {
    let header = response.header("x-oauth-scopes")?;
    Some(
        header
            .split([',', ' '])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    )
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

/// Verifies through `api` with the memory of its instance: the instance is forgotten when the
/// outcome says it answered differently ([`Verification::settle`]).
pub async fn remembered<'a, F, Fut>(api: Api<'a>, verify: F) -> Verification
where
    F: FnOnce(Api<'a>) -> Fut,
    Fut: Future<Output = Result<Verification, Verification>>,
{
    let key = api.instance_key().to_owned();
    let http = api.http;
    let outcome = verify(api).await;
    outcome.unwrap_or_else(|failed| failed).settle(http, &key)
}

/// One path segment, percent-encoded for a URL path (a space as `%20`, a slash as `%2F`).
pub fn path_segment(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}
