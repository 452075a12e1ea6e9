//! Gitea and Forgejo: one request per repository.
//!
//! Documentation followed:
//! - Gitea API, `GET /api/v1/repos/{owner}/{repo}` (repoGet): <https://gitea.com/api/swagger#/repository/repoGet>
//!   (Forgejo: <https://code.forgejo.org/api/swagger#/repository/repoGet>) — answers
//!   `full_name`, `default_branch`, `clone_url`, `empty`, `permissions.{admin,push,pull}`.
//! - Errors: a repository that does not exist or that the user may not see answers
//!   `404 {"message":"The target couldn't be found.","errors":[],"url":...}` (APINotFound);
//!   a scoped token without `read:repository` answers
//!   `403 {"message":"token does not have at least one of required scope(s): [read:repository]"}`
//!   (<https://docs.gitea.com/development/oauth2-provider#scopes>, token scopes since 1.19).
//!
//! Not said by the documentation: when `permissions.pull` can be false on an answered
//! repository (a public repository read by anyone answers `pull: true`); false is Forbidden.

use super::{forbidden, from_http_error, not_found, readable, segment, unexpected, unreadable};
use crate::api::{ProviderKind, RepositoryReason, RepositoryStatus};
use crate::providers::Target;
use crate::providers::http::{Auth, HttpClient};
use reqwest::StatusCode;
use serde::Deserialize;

#[derive(Deserialize)]
struct Repository {
    #[serde(default)]
    default_branch: Option<String>,
    #[serde(default)]
    clone_url: Option<String>,
    #[serde(default)]
    empty: bool,
    #[serde(default)]
    permissions: Option<Permissions>,
}

#[derive(Deserialize)]
struct Permissions {
    #[serde(default)]
    pull: bool,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    message: Option<String>,
}

pub async fn lookup(http: &HttpClient, target: &Target, path: &str) -> RepositoryStatus {
    let Some((owner, repo)) = path.split_once('/') else {
        return not_found(path, "not an owner/repo path");
    };
    let auth = Auth::TokenScheme(&target.token);
    let url = match target.endpoint(&format!("/api/v1/repos/{}/{}", segment(owner), segment(repo))) {
        Ok(url) => url,
        Err(error) => return from_http_error(path, &error),
    };
    let response = match http.get(&url, auth, &target.tls).await {
        Ok(response) => response,
        Err(error) => return from_http_error(path, &error),
    };
    let said = || {
        response
            .json::<ErrorBody>()
            .unwrap_or_default()
            .message
            .unwrap_or_default()
    };
    match response.status {
        StatusCode::OK => {}
        StatusCode::NOT_FOUND => return not_found(path, &said()),
        StatusCode::FORBIDDEN | StatusCode::UNAUTHORIZED => {
            return forbidden(
                path,
                response.status.as_u16(),
                &said(),
                "give the token the read:repository scope and its user read access to the repository",
            );
        }
        _ => return unexpected(path, ProviderKind::Gitea, &response),
    }
    let Ok(repository) = response.json::<Repository>() else {
        return unexpected(path, ProviderKind::Gitea, &response);
    };
    if repository.permissions.is_some_and(|p| !p.pull) {
        return unreadable(
            path,
            RepositoryReason::Forbidden,
            format!("the token's user may see {path} but not read (pull) it; give it read access"),
        );
    }
    // An empty repository has no branch yet, whatever `default_branch` says.
    let branch = repository.default_branch.filter(|_| !repository.empty);
    readable(path, branch, repository.clone_url)
}
