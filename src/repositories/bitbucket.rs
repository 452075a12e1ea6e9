//! Bitbucket: Server / Data Center (two requests per repository) and Cloud (one).
//!
//! # Bitbucket Server / Data Center
//!
//! Documentation followed (REST API reference, <https://developer.atlassian.com/server/bitbucket/rest/>):
//! - `GET /rest/api/1.0/projects/{projectKey}/repos/{repositorySlug}` — needs REPO_READ;
//!   answers `slug`, `project.key`, `links.clone[]` (`name` `http` or `ssh`, `href`); `401`
//!   "The currently authenticated user has insufficient permissions to see the specified
//!   repository" (Bitbucket answers 401, not 403, for a permission the authenticated user
//!   lacks); `404` "The specified repository does not exist" (also for a project that does
//!   not exist); errors as `{"errors":[{"message":...,"exceptionName":...}]}`.
//! - `GET /rest/api/1.0/projects/{projectKey}/repos/{repositorySlug}/default-branch` (7.5 and
//!   later; `GET .../branches/default` before) — answers `{"id":"refs/heads/main","displayId":"main"}`,
//!   `404` when the repository has no default branch yet (empty).
//! - Permission and authentication errors: <https://confluence.atlassian.com/bitbucketserver/using-repository-permissions-776639771.html>
//!   — revoking a project permission makes the repositories of the project unreadable to the
//!   user at once; the token was verified just before, so a 401/403 here is Forbidden.
//!
//! Not said by the documentation: which of `/default-branch` and `/branches/default` an
//! instance serves; the first is asked, then the second on a 404 that names no repository.
//!
//! # Bitbucket Cloud
//!
//! Documentation followed (<https://developer.atlassian.com/cloud/bitbucket/rest/api-group-repositories/#api-repositories-workspace-repo-slug-get>):
//! - `GET /2.0/repositories/{workspace}/{repo_slug}` — needs `read:repository:bitbucket`
//!   (API tokens) or `repository` (OAuth); answers `full_name`, `mainbranch.name`,
//!   `links.clone[]` (`name` `https` or `ssh`, the https href carrying the account name as user
//!   info, removed here); `403` `{"type":"error","error":{"message":...}}` when the token may
//!   not read it or lacks the scope, `404` "Repository ws/slug not found" when it does not
//!   exist or is private to others.
//!
//! Not said by the documentation: whether a private repository of a workspace the account is
//! not in answers 403 or 404 (the API reference lists both); both are reported with their own
//! reason.

use super::answer::{Found, Reading, clean_clone_url, documented, readable, two_segments};
use crate::api::Deployment;
use crate::providers::Target;
use crate::providers::bitbucket::{Bitbucket, server_api};
use crate::providers::excerpt;
use crate::providers::http::{HttpClient, HttpResponse};
use crate::providers::request::{Api, path_segment};
use reqwest::StatusCode;
use serde::Deserialize;

#[derive(Deserialize, Default)]
struct Links {
    #[serde(default)]
    clone: Vec<CloneLink>,
}

#[derive(Deserialize)]
struct CloneLink {
    #[serde(default)]
    href: String,
    #[serde(default)]
    name: String,
}

impl Links {
    fn https(&self) -> Option<String> {
        self.clone
            .iter()
            .filter(|l| matches!(l.name.as_str(), "http" | "https"))
            .find_map(|l| clean_clone_url(&l.href))
    }
}

#[derive(Deserialize)]
struct ServerRepository {
    #[serde(default)]
    links: Links,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServerBranch {
    #[serde(default)]
    display_id: Option<String>,
}

#[derive(Deserialize)]
struct CloudRepository {
    #[serde(default)]
    mainbranch: Option<CloudBranch>,
    #[serde(default)]
    links: Links,
}

#[derive(Deserialize)]
struct CloudBranch {
    #[serde(default)]
    name: Option<String>,
}

/// `{"errors":[{"message":...}]}` (Server) or `{"error":{"message":...}}` (Cloud).
fn error_text(response: &HttpResponse) -> String {
    let Ok(body) = response.json::<serde_json::Value>() else {
        return String::new();
    };
    let text = body["errors"][0]["message"]
        .as_str()
        .or_else(|| body["error"]["message"].as_str())
        .unwrap_or_default();
    excerpt(text)
}

pub async fn lookup(bitbucket: &Bitbucket, http: &HttpClient, target: &Target, path: &str) -> Found {
    let (owner, slug) = two_segments(path, "a PROJECTKEY/repo-slug")?;
    if crate::providers::bitbucket::deployment(&target.base_url) == Deployment::Cloud {
        cloud(&bitbucket.cloud_api(http, target), path, owner, slug).await
    } else {
        server(&server_api(http, target), path, owner, slug).await
    }
}

/// Server and Cloud read a repository's answer alike; only the advice differs.
fn reading(what_to_do: &str) -> Reading<'_> {
    Reading {
        said: error_text,
        what_to_do,
    }
}

async fn server(api: &Api<'_>, path: &str, key: &str, slug: &str) -> Found {
    let repo_path = format!(
        "/rest/api/1.0/projects/{}/repos/{}",
        path_segment(key),
        path_segment(slug)
    );
    let response = api.get(&repo_path).await?;
    let reading =
        reading("grant the token's user (or the project/repository token) at least Project read or Repository read");
    let repository: ServerRepository = documented(api, path, &reading, &response)?;
    let clone_url = repository.links.https();
    // The default branch is a second, optional answer: its failure does not make a readable
    // repository unreadable, the branch is then simply left out.
    let mut branch = None;
    for suffix in ["/default-branch", "/branches/default"] {
        match api.get(&format!("{repo_path}{suffix}")).await {
            Ok(answer) if answer.status == StatusCode::OK => {
                branch = answer.json::<ServerBranch>().ok().and_then(|b| b.display_id);
                break;
            }
            Ok(answer) if answer.status == StatusCode::NOT_FOUND && error_text(&answer).is_empty() => continue,
            _ => break,
        }
    }
    Ok(readable(path, branch, clone_url))
}

async fn cloud(api: &Api<'_>, path: &str, workspace: &str, slug: &str) -> Found {
    let response = api
        .get(&format!(
            "/2.0/repositories/{}/{}",
            path_segment(workspace),
            path_segment(slug)
        ))
        .await?;
    let reading =
        reading("give the API token the read:repository:bitbucket scope and its account read access to the repository");
    let repository: CloudRepository = documented(api, path, &reading, &response)?;
    Ok(readable(
        path,
        repository.mainbranch.and_then(|b| b.name),
        repository.links.https(),
    ))
}
