//! Azure DevOps Services / Server, as documented (pages and issue threads cited in
//! `src/providers/azure_devops.rs`). Serves any collection path: `{anything}/_apis/...`.
//!
//! - HTTP Basic with any user name and the PAT as password;
//! - a PAT it does not accept (unknown or revoked) is answered the way
//!   [`InvalidTokenAnswer`] says: 401, **203 with an HTML sign-in page**, or a 302 to a
//!   `_signin` page on another host;
//! - an expired PAT: 401 with `X-TFS-ServiceError: Access%20Denied%3A%20The%20Personal%20Access%20Token%20used%20has%20expired.`
//!   and the `AccessCheckException` JSON body;
//! - `GET _apis/connectionData`: `authenticatedUser` (`providerDisplayName`,
//!   `properties.Account.$value` = the spec's `username`), `deploymentType` (`hosted` from
//!   [`FakeAzureDevOps::start_services`], `onPremises` from [`FakeAzureDevOps::start_server`]);
//! - `GET _apis/projects`: needs `vso.project` (or `_write`/`_manage`) when the spec lists
//!   scopes, else 401 TF400813; [`FakeAzureDevOps::set_max_api_version`] plays an old TFS that
//!   answers 400 `VssVersionOutOfRangeException` for newer `api-version`s;
//! - `GET {collection}/{project}/_apis/git/repositories/{repo}`: needs `vso.code` when the spec
//!   lists scopes, else 401 TF400813; a project without repositories here: 404 TF200016
//!   (`ProjectDoesNotExistWithNameException`); a repository that does not exist or that the
//!   token cannot see: 404 TF401019 (`GitRepositoryNotFoundException`); a forbidden one: 401
//!   TF400813; `defaultBranch` `refs/heads/...` (absent when empty), `remoteUrl`, `isDisabled`.

use super::repositories::{Seen, decode, resolve};
use super::{FakeServer, Fault, RecordedRequest, TokenSpec, Tokens, basic_credentials, id_of, json, lookup, query};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use reqwest::Url;
use serde_json::json;
use std::sync::{Arc, Mutex};

/// How a PAT that is not accepted is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvalidTokenAnswer {
    /// 401 with `WWW-Authenticate: Basic` and an empty body.
    Unauthorized,
    /// 203 Non-Authoritative Information with an HTML sign-in page.
    SignInPage203,
    /// 302 to `https://spsprodweu5.vssps.visualstudio.com/_signin?...`.
    RedirectToSignIn,
}

struct Settings {
    hosted: bool,
    invalid_answer: InvalidTokenAnswer,
    max_api_version: f32,
}

#[derive(Clone)]
struct AppState {
    tokens: Tokens,
    settings: Arc<Mutex<Settings>>,
}

/// Dereferences to its [`FakeServer`]: `url()`, `https_url()`, `requests()`, `fault()`.
pub struct FakeAzureDevOps {
    server: FakeServer,
    state: AppState,
}

pub const SIGN_IN_PAGE: &str = r#"<!DOCTYPE html>
<html lang="en-US"><head><title>Azure DevOps Services | Sign In</title></head>
<body><div id="signin">Sign in to your account to continue to Azure DevOps</div>
<form method="post" action="https://login.microsoftonline.com/common/oauth2/authorize"></form></body></html>"#;

impl FakeAzureDevOps {
    /// Azure DevOps Services (`deploymentType: hosted`).
    pub async fn start_services() -> FakeAzureDevOps {
        Self::start(true).await
    }

    /// Azure DevOps Server (`deploymentType: onPremises`).
    pub async fn start_server() -> FakeAzureDevOps {
        Self::start(false).await
    }

    async fn start(hosted: bool) -> FakeAzureDevOps {
        let state = AppState {
            tokens: Tokens::default(),
            settings: Arc::new(Mutex::new(Settings {
                hosted,
                invalid_answer: InvalidTokenAnswer::Unauthorized,
                max_api_version: 7.1,
            })),
        };
        let app = Router::new().fallback(handle).with_state(state.clone());
        FakeAzureDevOps {
            server: FakeServer::start(app).await,
            state,
        }
    }

    /// `url()` followed by a collection or organization path, e.g. `/tfs/DefaultCollection`.
    pub fn collection_url(&self, path: &str) -> Url {
        Url::parse(&format!("{}{}", self.url().as_str().trim_end_matches('/'), path)).unwrap()
    }

    pub fn add_token(&self, token: &str, spec: TokenSpec) {
        self.state.tokens.lock().unwrap().insert(token.to_owned(), spec);
    }

    pub fn answer_invalid_tokens_with(&self, answer: InvalidTokenAnswer) {
        self.state.settings.lock().unwrap().invalid_answer = answer;
    }

    pub fn set_max_api_version(&self, version: f32) {
        self.state.settings.lock().unwrap().max_api_version = version;
    }
}

fn vss_error(status: StatusCode, message: &str, type_key: &str) -> Response {
    json(
        status,
        json!({
            "$id": "1",
            "innerException": null,
            "message": message,
            "typeName": format!("Microsoft.VisualStudio.Services.{type_key}, Microsoft.VisualStudio.Services.WebApi"),
            "typeKey": type_key,
            "errorCode": 0,
            "eventId": 3000
        }),
    )
}

fn identity(spec: &TokenSpec) -> serde_json::Value {
    json!({
        "id": format!("{:08x}-562c-6af6-9ac1-2f9f16cbd1b0", id_of(&spec.username)),
        "descriptor": format!("Microsoft.IdentityModel.Claims.ClaimsIdentity;{}", spec.username),
        "subjectDescriptor": format!("aad.{:x}", id_of(&spec.username)),
        "providerDisplayName": spec.display_name.clone().unwrap_or_else(|| spec.username.clone()),
        "isActive": true,
        "properties": {"Account": {"$type": "System.String", "$value": spec.username}},
        "resourceVersion": 2,
        "metaTypeId": 0
    })
}

async fn handle(State(state): State<AppState>, request: Request) -> Response {
    let settings = state.settings.lock().unwrap();
    let path = request.uri().path().to_owned();
    let pat = basic_credentials(&request).map(|(_, password)| password);
    let spec = lookup(&state.tokens, pat.as_deref());
    let Some(spec) = spec.filter(|s| !s.revoked) else {
        return match settings.invalid_answer {
            InvalidTokenAnswer::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                [("www-authenticate", "Basic realm=\"https://fake.visualstudio.com/\"")],
                "",
            )
                .into_response(),
            InvalidTokenAnswer::SignInPage203 => (
                StatusCode::NON_AUTHORITATIVE_INFORMATION,
                [("content-type", "text/html; charset=utf-8")],
                SIGN_IN_PAGE,
            )
                .into_response(),
            InvalidTokenAnswer::RedirectToSignIn => (
                StatusCode::FOUND,
                [(
                    "location",
                    "https://spsprodweu5.vssps.visualstudio.com/_signin?realm=dev.azure.com&reply_to=https%3A%2F%2Fdev.azure.com%2Forg",
                )],
                "<html><head><title>Object moved</title></head><body><h2>Object moved to <a href=\"https://spsprodweu5.vssps.visualstudio.com/_signin\">here</a>.</h2></body></html>",
            )
                .into_response(),
        };
    };
    if spec.is_expired() {
        let mut response = vss_error(
            StatusCode::UNAUTHORIZED,
            "Access Denied: The Personal Access Token used has expired.",
            "AccessCheckException",
        );
        response.headers_mut().insert(
            "x-tfs-serviceerror",
            "Access%20Denied%3A%20The%20Personal%20Access%20Token%20used%20has%20expired."
                .parse()
                .unwrap(),
        );
        return response;
    }
    if path.ends_with("/_apis/connectionData") {
        let user = identity(&spec);
        return json(
            StatusCode::OK,
            json!({
                "authenticatedUser": user,
                "authorizedUser": user,
                "instanceId": "62d5db69-917f-405d-973d-fc20e7ecd3de",
                "deploymentId": "1f18445b-609a-73c1-2ae2-521b74b4c11d",
                "deploymentType": if settings.hosted { "hosted" } else { "onPremises" },
                "locationServiceData": {"serviceOwner": "00025394-6065-48ca-87d9-7f5672854ef7", "lastChangeId": 1, "lastChangeId64": 1}
            }),
        );
    }
    if path.ends_with("/_apis/projects") {
        let requested: f32 = query(&request)
            .get("api-version")
            .and_then(|v| v.split('-').next().and_then(|v| v.parse().ok()))
            .unwrap_or(1.0);
        if requested > settings.max_api_version {
            return vss_error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "The requested REST API version of {requested:.1} is out of range for this server. The latest REST API version this server supports is {:.1}.",
                    settings.max_api_version
                ),
                "VssVersionOutOfRangeException",
            );
        }
        if !spec.has_scope(&["vso.project", "vso.project_write", "vso.project_manage"]) {
            return vss_error(
                StatusCode::UNAUTHORIZED,
                &format!(
                    "TF400813: The user '{}' is not authorized to access this resource.",
                    spec.username
                ),
                "UnauthorizedRequestException",
            );
        }
        return json(
            StatusCode::OK,
            json!({"count": 1, "value": [{
                "id": "eb6e4656-77fc-42a1-9181-4c6d8e9da5d1", "name": "Fabrikam",
                "state": "wellFormed", "revision": 411, "visibility": "private"
            }]}),
        );
    }
    if let Some((before, repo)) = path.split_once("/_apis/git/repositories/") {
        let requested: f32 = query(&request)
            .get("api-version")
            .and_then(|v| v.split('-').next().and_then(|v| v.parse().ok()))
            .unwrap_or(1.0);
        if requested > settings.max_api_version {
            return vss_error(
                StatusCode::BAD_REQUEST,
                &format!("The requested REST API version of {requested:.1} is out of range for this server."),
                "VssVersionOutOfRangeException",
            );
        }
        let (collection, project) = before.rsplit_once('/').unwrap_or(("", before));
        return git_repository(&request, &spec, collection, &decode(project), &decode(repo));
    }
    vss_error(
        StatusCode::NOT_FOUND,
        "The controller for path was not found or does not implement IController.",
        "HttpException",
    )
}

fn git_repository(request: &Request, spec: &TokenSpec, collection: &str, project: &str, repo: &str) -> Response {
    let not_authorized = || {
        vss_error(
            StatusCode::UNAUTHORIZED,
            &format!(
                "TF400813: The user '{}' is not authorized to access this resource.",
                spec.username
            ),
            "UnauthorizedRequestException",
        )
    };
    if !spec.has_scope(&["vso.code", "vso.code_write", "vso.code_manage", "vso.code_full"]) {
        return not_authorized();
    }
    let full = format!("{project}/{repo}");
    let found = match resolve(request, spec, &full) {
        Seen::Read(found) => found,
        Seen::Forbidden(_) => return not_authorized(),
        Seen::Missing | Seen::SsoRequired(_) => {
            let project_known = request.extensions().get::<super::Repos>().is_some_and(|repos| {
                let prefix = format!("{}/", project.to_ascii_lowercase());
                repos.lock().unwrap().keys().any(|k| k.starts_with(&prefix))
            });
            return if project_known {
                vss_error(
                    StatusCode::NOT_FOUND,
                    &format!(
                        "TF401019: The Git repository with name or identifier {repo} does not exist or you do not have permissions for the operation you are attempting."
                    ),
                    "GitRepositoryNotFoundException",
                )
            } else {
                vss_error(
                    StatusCode::NOT_FOUND,
                    &format!(
                        "TF200016: The following project does not exist: {project}. Verify that the name of the project is correct and that the project exists on the specified Azure DevOps Server."
                    ),
                    "ProjectDoesNotExistWithNameException",
                )
            };
        }
    };
    let host = request
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("dev.azure.com");
    let (project, name) = found.path.split_once('/').unwrap_or_default();
    let mut body = json!({
        "id": format!("{:08x}-833d-4e14-b9c0-14cb638f91e6", id_of(&found.path)),
        "name": name,
        "project": {"id": "6ce954b1-ce1f-45d1-b94d-e6bf2464ba2c", "name": project, "state": "wellFormed"},
        "remoteUrl": format!("http://{host}{collection}/{}/_git/{}", project.replace(' ', "%20"), name.replace(' ', "%20")),
        "isDisabled": found.disabled,
        "size": 1024
    });
    if let Some(branch) = &found.default_branch {
        body["defaultBranch"] = json!(format!("refs/heads/{branch}"));
    }
    json(StatusCode::OK, body)
}

impl std::ops::Deref for FakeAzureDevOps {
    type Target = FakeServer;

    fn deref(&self) -> &FakeServer {
        &self.server
    }
}
