//! GitHub (github.com and GitHub Enterprise Server): one request per repository, to the same
//! API root the token was verified against ([`GitHub::api_root`]).
//!
//! Documentation followed:
//! - Repositories API, get a repository: <https://docs.github.com/en/rest/repos/repos#get-a-repository>
//!   — `GET /repos/{owner}/{repo}` answers `full_name`, `default_branch`, `clone_url`,
//!   `permissions.{admin,push,pull}`; `301 Moved permanently` for a renamed repository (a
//!   same-host redirect the client follows), `403 Forbidden`, `404 Resource not found`.
//!   Fine-grained tokens need "Metadata" (read) on the repository.
//! - Fine-grained tokens: <https://docs.github.com/en/rest/authentication/permissions-required-for-fine-grained-personal-access-tokens>
//!   and <https://docs.github.com/en/authentication/keeping-your-account-and-data-secure/managing-your-personal-access-tokens#fine-grained-personal-access-tokens>
//!   — a token made for other repositories does not see this one: GitHub answers `404`, the
//!   same as for a repository that does not exist (GitHub hides private repositories from
//!   anyone without access, <https://docs.github.com/en/rest/using-the-rest-api/troubleshooting-the-rest-api#404-not-found-for-an-existing-resource>).
//! - SAML SSO: <https://docs.github.com/en/enterprise-cloud@latest/rest/using-the-rest-api/troubleshooting-the-rest-api>
//!   and <https://docs.github.com/en/authentication/authenticating-with-saml-single-sign-on/authorizing-a-personal-access-token-for-use-with-saml-single-sign-on>
//!   — a classic token not authorised for an organisation that enforces SAML SSO gets `403`
//!   with `X-GitHub-SSO: required; url=https://github.com/orgs/ORG/sso?authorization_request=...`:
//!   the URL where the token's owner authorises it, put in the message.
//! - Rate limits (`403`/`429` with `x-ratelimit-remaining: 0` or a secondary limit message):
//!   <https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api> — not
//!   the repository's fault: ProviderError, looked at again with backoff.
//!
//! Not said by the documentation: whether `X-GitHub-SSO` is also sent with a `404` (the
//! organisation's private repositories are hidden from an unauthorised token); it is honoured
//! whatever the status. GHES has no SAML enforcement per token, so it never sends the header.

use super::answer::{Found, Reading, documented, readable, two_segments, unreadable};
use crate::api::RepositoryReason;
use crate::providers::http::HttpResponse;
use crate::providers::request::{Api, message, path_segment};
use reqwest::StatusCode;
use serde::Deserialize;

/// A repository as GitHub answers it; Gitea's API mirrors GitHub's, so it serves both.
#[derive(Deserialize)]
pub(super) struct Repository {
    #[serde(default)]
    pub default_branch: Option<String>,
    #[serde(default)]
    pub clone_url: Option<String>,
    #[serde(default)]
    pub private: bool,
    /// Gitea: the repository has no commit yet.
    #[serde(default)]
    pub empty: bool,
    #[serde(default)]
    pub permissions: Option<Permissions>,
}

#[derive(Deserialize)]
pub(super) struct Permissions {
    #[serde(default)]
    pub pull: bool,
}

const READING: Reading<'static> = Reading {
    said: message,
    what_to_do: "give a classic token the repo scope, or a fine-grained token this repository with Contents (read)",
};

/// The authorisation URL of `X-GitHub-SSO: required; url=...`.
pub fn sso_url(response: &HttpResponse) -> Option<String> {
    let header = response.header("x-github-sso")?;
    if !header.trim_start().to_ascii_lowercase().starts_with("required") {
        return None;
    }
    header
        .split(';')
        .filter_map(|part| part.trim().strip_prefix("url="))
        .map(|url| url.trim().to_owned())
        .find(|url| url.starts_with("https://") || url.starts_with("http://"))
}

fn rate_limited(response: &HttpResponse) -> bool {
    response.status == StatusCode::TOO_MANY_REQUESTS
        || (response.status == StatusCode::FORBIDDEN
            && (response.header("x-ratelimit-remaining") == Some("0")
                || message(response).to_ascii_lowercase().contains("rate limit")))
}

pub async fn lookup(api: &Api<'_>, path: &str) -> Found {
    let (owner, repo) = two_segments(path, "an owner/repo")?;
    let response = api
        .get(&format!("/repos/{}/{}", path_segment(owner), path_segment(repo)))
        .await?;
    if let Some(url) = sso_url(&response) {
        return Ok(unreadable(
            path,
            RepositoryReason::SsoRequired,
            format!(
                "the organisation of {path} enforces SAML single sign-on and the token is not authorised for it; its owner authorises it at {url} (or in Settings → Developer settings → Personal access tokens → Configure SSO)"
            ),
        ));
    }
    if rate_limited(&response) {
        return Ok(unreadable(
            path,
            RepositoryReason::ProviderError,
            format!("GitHub rate-limited the look-up of {path}; it is tried again"),
        ));
    }
    let repository: Repository = documented(api, path, &READING, &response)?;
    if repository.private && repository.permissions.is_some_and(|p| !p.pull) {
        return Ok(unreadable(
            path,
            RepositoryReason::Forbidden,
            format!("the token sees {path} but may not pull it; give its user read access"),
        ));
    }
    Ok(readable(path, repository.default_branch, repository.clone_url))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use reqwest::header::{HeaderMap, HeaderValue};

    fn response(sso: &'static str) -> HttpResponse {
        let mut headers = HeaderMap::new();
        headers.insert("x-github-sso", HeaderValue::from_static(sso));
        HttpResponse {
            status: StatusCode::FORBIDDEN,
            headers,
            body: Bytes::new(),
            url: "https://api.github.com/repos/a/b".parse().unwrap(),
        }
    }

    #[test]
    fn sso_header_gives_the_url() {
        assert_eq!(
            sso_url(&response(
                "required; url=https://github.com/orgs/acme/sso?authorization_request=AZ9"
            ))
            .as_deref(),
            Some("https://github.com/orgs/acme/sso?authorization_request=AZ9")
        );
        assert_eq!(sso_url(&response("partial-results; organizations=1,2")), None);
    }
}
