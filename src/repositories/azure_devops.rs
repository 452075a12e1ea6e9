//! Azure DevOps (Services and Server): one request per repository, inside the organisation or
//! collection of `spec.url`.
//!
//! Documentation followed:
//! - Repositories - Get Repository: <https://learn.microsoft.com/en-us/rest/api/azure/devops/git/repositories/get-repository>
//!   — `GET {organization}/{project}/_apis/git/repositories/{repositoryId}?api-version=...`,
//!   the repository by ID *or name*, the project by ID or name; answers `name`,
//!   `defaultBranch` (`refs/heads/main`; absent for an empty repository), `remoteUrl` (the
//!   HTTPS clone URL), `isDisabled`; needs the "Code (Read)" scope (`vso.code`).
//! - TFS 2015–2018 (<https://learn.microsoft.com/en-us/previous-versions/azure/devops/integrate/previous-apis/git/repositories>):
//!   the same path with `api-version=1.0`; 5.0 answers 400 there, so 2.0 is asked next.
//! - Errors (`{"message":...,"typeKey":...}`): `404` `TF401019: The Git repository with name
//!   or identifier X does not exist or you do not have permissions for the operation you are
//!   attempting.` (`GitRepositoryNotFoundException`), `404` `TF200016: The following project
//!   does not exist: X` (`ProjectDoesNotExistWithNameException`); a PAT without "Code (Read)"
//!   answers `401`/`403` although it authenticated
//!   (<https://learn.microsoft.com/en-us/azure/devops/integrate/get-started/authentication/oauth#scopes>);
//!   a PAT of another organisation is not accepted at all (HTTP 203 sign-in page or 401),
//!   which the token verification already reports.
//! - Disabled repositories: <https://learn.microsoft.com/en-us/azure/devops/repos/git/repo-settings#disable-repository>
//!   — they cannot be cloned: Forbidden.
//!
//! Not said by the documentation: whether a repository the PAT's user may not read answers
//! 403 or the TF401019 404 (the message says "does not exist or you do not have permissions");
//! a 404 is reported as NotFound with both possibilities named.

use super::answer::{Found, Reading, documented, forbidden, readable, two_segments, unreadable};
use crate::api::RepositoryReason;
use crate::providers::azure_devops::service_error;
use crate::providers::request::{Api, path_segment};
use reqwest::StatusCode;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Repository {
    #[serde(default)]
    default_branch: Option<String>,
    #[serde(default)]
    remote_url: Option<String>,
    #[serde(default)]
    is_disabled: bool,
}

const READING: Reading<'static> = Reading {
    said: service_error,
    what_to_do: "give the PAT the Code (Read) scope and its user Read on the repository",
};

pub async fn lookup(api: &Api<'_>, path: &str) -> Found {
    let (project, repo) = two_segments(path, "a project/repo")?;
    let base = format!(
        "/{}/_apis/git/repositories/{}",
        path_segment(project),
        path_segment(repo)
    );
    let mut response = api.get(&format!("{base}?api-version=5.0")).await?;
    if response.status == StatusCode::BAD_REQUEST {
        // TFS older than 2019 does not serve api-version 5.0.
        response = api.get(&format!("{base}?api-version=2.0")).await?;
    }
    if response.status == StatusCode::NON_AUTHORITATIVE_INFORMATION {
        // The sign-in page Azure DevOps answers instead of 401.
        let said = service_error(&response);
        return Ok(forbidden(path, response.status.as_u16(), &said, READING.what_to_do));
    }
    let repository: Repository = documented(api, path, &READING, &response)?;
    if repository.is_disabled {
        return Ok(unreadable(
            path,
            RepositoryReason::Forbidden,
            format!("{path} is disabled and cannot be cloned; a project administrator can enable it"),
        ));
    }
    let branch = repository
        .default_branch
        .map(|b| b.strip_prefix("refs/heads/").map(str::to_owned).unwrap_or(b));
    Ok(readable(path, branch, repository.remote_url))
}
