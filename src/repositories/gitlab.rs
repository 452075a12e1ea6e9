//! GitLab (gitlab.com and self-managed): one request per repository.
//!
//! Documentation followed:
//! - Projects API, get a single project: <https://docs.gitlab.com/api/projects/#get-a-single-project>
//!   — `GET /api/v4/projects/:id` where `:id` may be the URL-encoded full path
//!   (<https://docs.gitlab.com/api/rest/#namespaced-paths>: `app-team%2Fweb`); answers
//!   `path_with_namespace`, `default_branch` (`null` for an empty repository),
//!   `http_url_to_repo`, `visibility` and `permissions.{project_access,group_access}.access_level`.
//! - Errors: <https://docs.gitlab.com/api/rest/troubleshooting/#status-codes> — a project that
//!   does not exist *or* that the user may not see answers `404 {"message":"404 Project Not Found"}`;
//!   a token without `read_api`/`api` answers `403 {"error":"insufficient_scope"}`.
//! - Roles: <https://docs.gitlab.com/user/permissions/> — Guest (10) cannot read the code of a
//!   private project; Reporter (20) and above can.
//!
//! Not said by the documentation: whether `repository_access_level: disabled` still lists a
//! project (it does, so the repository feature being off is reported as Forbidden).

use super::answer::{Found, Reading, documented, readable, unreadable};
use crate::api::RepositoryReason;
use crate::providers::http::HttpResponse;
use crate::providers::request::{Api, path_segment};
use serde::Deserialize;

/// Reporter: the least role that reads a private project's code.
const REPORTER: u32 = 20;

#[derive(Deserialize)]
struct Project {
    #[serde(default)]
    default_branch: Option<String>,
    #[serde(default)]
    http_url_to_repo: Option<String>,
    #[serde(default)]
    visibility: Option<String>,
    #[serde(default)]
    repository_access_level: Option<String>,
    #[serde(default)]
    permissions: Option<Permissions>,
}

#[derive(Deserialize)]
struct Permissions {
    #[serde(default)]
    project_access: Option<Access>,
    #[serde(default)]
    group_access: Option<Access>,
}

#[derive(Deserialize)]
struct Access {
    access_level: u32,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    message: Option<serde_json::Value>,
    #[serde(default)]
    error: Option<String>,
}

/// GitLab's words: `{"message": "404 Project Not Found"}` or `{"error": "insufficient_scope"}`.
fn error_text(response: &HttpResponse) -> String {
    let body: ErrorBody = response.json().unwrap_or_default();
    match (body.message, body.error) {
        (Some(serde_json::Value::String(m)), _) => m,
        (_, Some(e)) => e,
        _ => String::new(),
    }
}

const READING: Reading<'static> = Reading {
    said: error_text,
    what_to_do: "give the token the read_api (or api) scope and its user at least the Reporter role",
};

pub async fn lookup(api: &Api<'_>, path: &str) -> Found {
    let response = api.get(&format!("/api/v4/projects/{}", path_segment(path))).await?;
    let project: Project = documented(api, path, &READING, &response)?;
    if project.repository_access_level.as_deref() == Some("disabled") {
        return Ok(unreadable(
            path,
            RepositoryReason::Forbidden,
            format!("{path} has its repository feature disabled; enable it in the project's settings"),
        ));
    }
    let level = project.permissions.as_ref().map(|p| {
        [&p.project_access, &p.group_access]
            .into_iter()
            .flatten()
            .map(|a| a.access_level)
            .max()
    });
    // Only a known role below Reporter on a private project is a refusal; no role at all is
    // an administrator or a public/internal project, which GitLab lets the token read.
    if project.visibility.as_deref() == Some("private")
        && let Some(Some(level)) = level
        && level < REPORTER
    {
        return Ok(unreadable(
            path,
            RepositoryReason::Forbidden,
            format!(
                "the token's user has only the Guest role (access level {level}) on private project {path}, which cannot read its code; give it at least Reporter"
            ),
        ));
    }
    Ok(readable(path, project.default_branch, project.http_url_to_repo))
}
