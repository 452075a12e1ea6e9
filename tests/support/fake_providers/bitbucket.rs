//! Bitbucket, as documented (pages cited in `src/providers/bitbucket.rs`).
//!
//! [`FakeBitbucketServer`], Data Center REST API 1.0:
//! - `Authorization: Bearer T`; an unknown, revoked or expired token: 401
//!   `{"errors":[{"message":"Authentication failed. Please check your credentials and try again.", ...}]}`
//!   (the expired case is not documented to differ);
//! - every authenticated answer carries `X-AUSERNAME`; `application-properties` is public (no
//!   `X-AUSERNAME` without credentials, or when [`FakeBitbucketServer::ignore_credentials`]
//!   plays a proxy that strips them);
//! - `GET /rest/api/1.0/users/{slug}`, `GET /rest/api/1.0/users?filter=`;
//! - `GET /rest/api/1.0/repos`: 403 for a token with `scopes: Some([])` (no repository
//!   permission), a page otherwise;
//! - `GET /rest/api/1.0/projects/{key}/repos/{slug}`: `links.clone` (`http`, `ssh`); a
//!   repository that does not exist or that the user cannot see: 404 "Repository KEY/slug does
//!   not exist." (`NoSuchRepositoryException`); a removed permission: 401 "You are not
//!   permitted to access this resource" (`AuthorisationException`);
//!   `.../default-branch`: `{"id":"refs/heads/main","displayId":"main"}`, 404
//!   `NoDefaultBranchException` for an empty repository.
//!
//! [`FakeBitbucketCloud`], API 2.0 (serves `/2.0/...` as `https://api.bitbucket.org` does):
//! - HTTP Basic `EMAIL:API_TOKEN` where EMAIL is the token spec's `email`; anything else: 401
//!   with `WWW-Authenticate: Basic realm="Bitbucket.org HTTP"` and no body;
//! - `GET /2.0/user` needs `read:user:bitbucket` (or the OAuth scope `account`): 403
//!   `{"type":"error","error":{"message":"Your credentials lack one or more required privilege scopes.",...}}`;
//! - `GET /2.0/user/emails` needs `read:user:bitbucket` (or OAuth `email`);
//! - `GET /2.0/repositories/{workspace}/{slug}`: needs `read:repository:bitbucket` (or OAuth
//!   `repository`); `mainbranch.name`, `links.clone` (`https` with the account as user info,
//!   `ssh`); not found or not visible: 404 "Repository ws/slug not found"; a removed
//!   permission: 403 "Access denied. You must have read access to access this repository.";
//! - `X-OAuth-Scopes` only when [`FakeBitbucketCloud::send_scopes_header`] asks for it (OAuth
//!   access tokens get it; API tokens are not documented to).

use super::repositories::{Seen, decode, resolve};
use super::{
    FakeServer, Fault, RecordedRequest, TokenSpec, Tokens, authorization, basic_credentials, id_of, json, lookup, query,
};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use reqwest::Url;
use serde_json::json;
use std::sync::{Arc, Mutex};

// ---- Server / Data Center -------------------------------------------------------------

#[derive(Clone)]
struct ServerState {
    tokens: Tokens,
    version: Arc<Mutex<String>>,
    ignore_credentials: Arc<Mutex<bool>>,
}

/// Dereferences to its [`FakeServer`]: `url()`, `https_url()`, `requests()`, `fault()`.
pub struct FakeBitbucketServer {
    server: FakeServer,
    state: ServerState,
}

impl FakeBitbucketServer {
    pub async fn start() -> FakeBitbucketServer {
        let state = ServerState {
            tokens: Tokens::default(),
            version: Arc::new(Mutex::new("8.19.5".to_owned())),
            ignore_credentials: Arc::new(Mutex::new(false)),
        };
        let app = Router::new().fallback(handle_server).with_state(state.clone());
        FakeBitbucketServer {
            server: FakeServer::start(app).await,
            state,
        }
    }

    pub fn add_token(&self, token: &str, spec: TokenSpec) {
        self.state.tokens.lock().unwrap().insert(token.to_owned(), spec);
    }

    pub fn set_version(&self, version: &str) {
        *self.state.version.lock().unwrap() = version.to_owned();
    }

    /// Answer as if a proxy had removed the `Authorization` header.
    pub fn ignore_credentials(&self, ignore: bool) {
        *self.state.ignore_credentials.lock().unwrap() = ignore;
    }
}

fn slug(name: &str) -> String {
    name.to_ascii_lowercase()
}

fn server_user(spec: &TokenSpec) -> serde_json::Value {
    let mut user = json!({
        "name": spec.username,
        "active": true,
        "displayName": spec.display_name.clone().unwrap_or_else(|| spec.username.clone()),
        "id": id_of(&spec.username),
        "slug": slug(&spec.username),
        "type": "NORMAL",
    });
    if let Some(email) = &spec.email {
        user["emailAddress"] = json!(email);
    }
    user
}

fn server_error(status: StatusCode, message: &str, exception: &str) -> Response {
    json(
        status,
        json!({"errors": [{"context": null, "message": message, "exceptionName": exception}]}),
    )
}

async fn handle_server(State(state): State<ServerState>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let ignore = *state.ignore_credentials.lock().unwrap();
    let token = if ignore {
        None
    } else {
        authorization(&request, &["Bearer"])
    };
    let spec = match token {
        None => None,
        Some(token) => match lookup(&state.tokens, Some(&token)).filter(|s| !s.revoked && !s.is_expired()) {
            Some(spec) => Some(spec),
            None => {
                return server_error(
                    StatusCode::UNAUTHORIZED,
                    "Authentication failed. Please check your credentials and try again.",
                    "com.atlassian.bitbucket.auth.IncorrectPasswordAuthenticationException",
                );
            }
        },
    };
    let mut response = match (path.as_str(), &spec) {
        ("/rest/api/1.0/application-properties", _) => json(
            StatusCode::OK,
            json!({
                "version": *state.version.lock().unwrap(),
                "buildNumber": "8019005",
                "buildDate": "1718000000000",
                "displayName": "Bitbucket"
            }),
        ),
        (_, None) => server_error(
            StatusCode::UNAUTHORIZED,
            "You are not permitted to access this resource",
            "com.atlassian.bitbucket.AuthorisationException",
        ),
        ("/rest/api/1.0/users", Some(spec)) => {
            let filter = query(&request)
                .get("filter")
                .cloned()
                .unwrap_or_default()
                .to_ascii_lowercase();
            let users = state.tokens.lock().unwrap().values().cloned().collect::<Vec<_>>();
            let values: Vec<_> = users
                .iter()
                .filter(|u| u.username.to_ascii_lowercase().contains(&filter))
                .map(server_user)
                .collect();
            let _ = spec;
            json(
                StatusCode::OK,
                json!({"size": values.len(), "limit": 25, "isLastPage": true, "values": values, "start": 0}),
            )
        }
        (path, Some(_)) if path.starts_with("/rest/api/1.0/users/") => {
            let wanted = &path["/rest/api/1.0/users/".len()..];
            let wanted = url::form_urlencoded::parse(format!("s={wanted}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            let found = state
                .tokens
                .lock()
                .unwrap()
                .values()
                .find(|u| slug(&u.username) == wanted)
                .cloned();
            match found {
                Some(user) => json(StatusCode::OK, server_user(&user)),
                None => server_error(
                    StatusCode::NOT_FOUND,
                    &format!("User {wanted} does not exist."),
                    "com.atlassian.bitbucket.user.NoSuchUserException",
                ),
            }
        }
        ("/rest/api/1.0/repos", Some(spec)) => {
            if spec.scopes.as_ref().is_some_and(Vec::is_empty) {
                server_error(
                    StatusCode::FORBIDDEN,
                    "You are not permitted to access this resource",
                    "com.atlassian.bitbucket.AuthorisationException",
                )
            } else {
                json(
                    StatusCode::OK,
                    json!({
                        "size": 1, "limit": 1, "isLastPage": false, "start": 0, "nextPageStart": 1,
                        "values": [{"slug": "app", "name": "app", "project": {"key": "PRJ"}, "public": false}]
                    }),
                )
            }
        }
        (path, Some(spec)) if path.starts_with("/rest/api/1.0/projects/") => server_repository(&request, spec, path),
        _ => server_error(
            StatusCode::NOT_FOUND,
            "No such resource",
            "com.sun.jersey.api.NotFoundException",
        ),
    };
    if let Some(spec) = spec {
        response
            .headers_mut()
            .insert("x-ausername", spec.username.parse().unwrap());
    }
    response
}

fn server_repository(request: &Request, spec: &TokenSpec, path: &str) -> Response {
    let parts: Vec<String> = path["/rest/api/1.0/projects/".len()..].split('/').map(decode).collect();
    let (key, slug, rest) = match parts.as_slice() {
        [key, repos, slug, rest @ ..] if repos == "repos" => (key.clone(), slug.clone(), rest.join("/")),
        _ => {
            return server_error(
                StatusCode::NOT_FOUND,
                "No such resource",
                "com.sun.jersey.api.NotFoundException",
            );
        }
    };
    let full = format!("{key}/{slug}");
    let repo = match resolve(request, spec, &full) {
        Seen::Read(repo) => repo,
        Seen::Forbidden(_) => {
            return server_error(
                StatusCode::UNAUTHORIZED,
                "You are not permitted to access this resource",
                "com.atlassian.bitbucket.AuthorisationException",
            );
        }
        Seen::Missing | Seen::SsoRequired(_) => {
            return server_error(
                StatusCode::NOT_FOUND,
                &format!("Repository {key}/{slug} does not exist."),
                "com.atlassian.bitbucket.repository.NoSuchRepositoryException",
            );
        }
    };
    let host = request
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("bitbucket.example.com");
    let lower = repo.path.to_ascii_lowercase();
    let (key, slug) = lower.split_once('/').unwrap_or_default();
    match rest.as_str() {
        "" => json(
            StatusCode::OK,
            json!({
                "slug": slug, "name": slug, "id": id_of(&repo.path), "state": "AVAILABLE", "public": !repo.private,
                "project": {"key": key.to_ascii_uppercase()},
                "links": {"clone": [
                    {"href": format!("http://{host}/scm/{key}/{slug}.git"), "name": "http"},
                    {"href": format!("ssh://git@{host}:7999/{key}/{slug}.git"), "name": "ssh"}
                ]}
            }),
        ),
        "default-branch" => match &repo.default_branch {
            Some(branch) => json(
                StatusCode::OK,
                json!({"id": format!("refs/heads/{branch}"), "displayId": branch, "type": "BRANCH", "isDefault": true}),
            ),
            None => server_error(
                StatusCode::NOT_FOUND,
                &format!("Repository {key}/{slug} does not have a default branch."),
                "com.atlassian.bitbucket.repository.NoDefaultBranchException",
            ),
        },
        _ => server_error(
            StatusCode::NOT_FOUND,
            "No such resource",
            "com.sun.jersey.api.NotFoundException",
        ),
    }
}

// ---- Cloud ----------------------------------------------------------------------------

#[derive(Clone)]
struct CloudState {
    tokens: Tokens,
    scopes_header: Arc<Mutex<bool>>,
}

/// Dereferences to its [`FakeServer`]: `url()`, `https_url()`, `requests()`, `fault()`.
pub struct FakeBitbucketCloud {
    server: FakeServer,
    state: CloudState,
}

impl FakeBitbucketCloud {
    pub async fn start() -> FakeBitbucketCloud {
        let state = CloudState {
            tokens: Tokens::default(),
            scopes_header: Arc::new(Mutex::new(false)),
        };
        let app = Router::new().fallback(handle_cloud).with_state(state.clone());
        FakeBitbucketCloud {
            server: FakeServer::start(app).await,
            state,
        }
    }

    /// `spec.email` is the Atlassian account e-mail the Basic credentials must name.
    pub fn add_token(&self, token: &str, spec: TokenSpec) {
        self.state.tokens.lock().unwrap().insert(token.to_owned(), spec);
    }

    /// Send `X-OAuth-Scopes` (as for OAuth access tokens).
    pub fn send_scopes_header(&self, send: bool) {
        *self.state.scopes_header.lock().unwrap() = send;
    }
}

fn cloud_unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [("www-authenticate", "Basic realm=\"Bitbucket.org HTTP\"")],
        "",
    )
        .into_response()
}

fn lacks_scope(required: &str, granted: &[String]) -> Response {
    json(
        StatusCode::FORBIDDEN,
        json!({
            "type": "error",
            "error": {
                "message": "Your credentials lack one or more required privilege scopes.",
                "detail": {"granted": granted, "required": [required]}
            }
        }),
    )
}

async fn handle_cloud(State(state): State<CloudState>, request: Request) -> Response {
    let Some((email, token)) = basic_credentials(&request) else {
        return cloud_unauthorized();
    };
    let Some(spec) = lookup(&state.tokens, Some(&token)).filter(|s| {
        !s.revoked && !s.is_expired() && s.email.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(&email))
    }) else {
        return cloud_unauthorized();
    };
    let granted = spec.scopes.clone().unwrap_or_default();
    let mut response = match request.uri().path() {
        "/2.0/user" => {
            if !spec.has_scope(&["read:user:bitbucket", "account"]) {
                return lacks_scope("read:user:bitbucket", &granted);
            }
            json(
                StatusCode::OK,
                json!({
                    "type": "user",
                    "display_name": spec.display_name,
                    "username": spec.username,
                    "nickname": spec.username,
                    "uuid": format!("{{{:08x}-0000-4000-8000-000000000000}}", id_of(&spec.username)),
                    "account_id": format!("557058:{:08x}", id_of(&spec.username)),
                    "account_status": "active",
                    "has_2fa_enabled": null,
                    "links": {"html": {"href": format!("https://bitbucket.org/{}/", spec.username)}}
                }),
            )
        }
        "/2.0/user/emails" => {
            if !spec.has_scope(&["read:user:bitbucket", "email"]) {
                return lacks_scope("email", &granted);
            }
            json(
                StatusCode::OK,
                json!({
                    "pagelen": 10, "page": 1, "size": 1,
                    "values": [{"type": "email", "email": spec.email, "is_primary": true, "is_confirmed": true}]
                }),
            )
        }
        path if path.starts_with("/2.0/repositories/") => {
            if !spec.has_scope(&["read:repository:bitbucket", "repository"]) {
                return lacks_scope("read:repository:bitbucket", &granted);
            }
            let full: Vec<String> = path["/2.0/repositories/".len()..].split('/').map(decode).collect();
            let full = full.join("/");
            match resolve(&request, &spec, &full) {
                Seen::Read(repo) => json(
                    StatusCode::OK,
                    json!({
                        "type": "repository",
                        "full_name": repo.path,
                        "is_private": repo.private,
                        "mainbranch": repo.default_branch.as_ref().map(|b| json!({"type": "branch", "name": b})),
                        "links": {"clone": [
                            {"href": format!("https://{}@bitbucket.org/{}.git", spec.username, repo.path), "name": "https"},
                            {"href": format!("git@bitbucket.org:{}.git", repo.path), "name": "ssh"}
                        ]}
                    }),
                ),
                Seen::Forbidden(_) => json(
                    StatusCode::FORBIDDEN,
                    json!({"type": "error", "error": {"message": "Access denied. You must have read access to access this repository."}}),
                ),
                Seen::Missing | Seen::SsoRequired(_) => json(
                    StatusCode::NOT_FOUND,
                    json!({"type": "error", "error": {"message": format!("Repository {full} not found")}}),
                ),
            }
        }
        _ => json(
            StatusCode::NOT_FOUND,
            json!({"type": "error", "error": {"message": "Resource not found"}}),
        ),
    };
    if *state.scopes_header.lock().unwrap()
        && let Some(scopes) = &spec.scopes
    {
        response
            .headers_mut()
            .insert("x-oauth-scopes", scopes.join(", ").parse().unwrap());
    }
    response
}

impl std::ops::Deref for FakeBitbucketServer {
    type Target = FakeServer;

    fn deref(&self) -> &FakeServer {
        &self.server
    }
}

impl std::ops::Deref for FakeBitbucketCloud {
    type Target = FakeServer;

    fn deref(&self) -> &FakeServer {
        &self.server
    }
}
