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

use super::answer::{Found, Reading, documented, readable, two_segments, unreadable};
use super::github::Repository;
use crate::api::RepositoryReason;
use crate::providers::request::{Api, message, path_segment};

const READING: Reading<'static> = Reading {
    said: message,
    what_to_do: "give the token the read:repository scope and its user read access to the repository",
};

pub async fn lookup(api: &Api<'_>, path: &str) -> Found {
    let (owner, repo) = two_segments(path, "an owner/repo")?;
    let response = api
        .get(&format!("/api/v1/repos/{}/{}", path_segment(owner), path_segment(repo)))
        .await?;
    let repository: Repository = documented(api, path, &READING, &response)?;
    if repository.permissions.is_some_and(|p| !p.pull) {
        return Ok(unreadable(
            path,
            RepositoryReason::Forbidden,
            format!("the token's user may see {path} but not read (pull) it; give it read access"),
        ));
    }
    // An empty repository has no branch yet, whatever `default_branch` says.
    let branch = repository.default_branch.filter(|_| !repository.empty);
    Ok(readable(path, branch, repository.clone_url))
}
