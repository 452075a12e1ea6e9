//! GitLab REST API v4 as documented (pages cited in `src/providers/gitlab.rs`):
//! - `PRIVATE-TOKEN: T` or `Authorization: Bearer T`;
//! - unknown token: 401 `{"message":"401 Unauthorized"}`; revoked / expired (flag, or
//!   `expires_at` in the past): 401 `{"error":"invalid_token","error_description":"Token was
//!   revoked..."}` / `"Token is expired..."`;
//! - `GET /api/v4/personal_access_tokens/self` (GitLab 15.5+; 404 when switched off with
//!   [`FakeGitLab::set_self_endpoint`]): `scopes`, `expires_at` as a date, `active`, `revoked`;
//! - `GET /api/v4/user` needs `api`, `read_api` or `read_user` (else 403 `insufficient_scope`);
//! - `GET /api/v4/version`: `{"version": ..., "revision": ...}`;
//! - `GET /api/v4/projects/:id/variables` (project-level CI/CD variables API) needs `api` or
//!   `read_api`: one variable, for any project id. External Secrets Operator validates its GitLab
//!   SecretStore with this call (the peer benchmark, `benches/peer.rs`).
//! - `GET /api/v4/projects/:url-encoded-path`: needs `api` or `read_api` (else 403
//!   `insufficient_scope`); a project that does not exist or that the token cannot see: 404
//!   `{"message":"404 Project Not Found"}`; a forbidden one answers with the Guest role
//!   (`permissions.project_access.access_level` 10) on a private project, which GitLab shows
//!   but does not let read the code; `default_branch` `null` for an empty repository.

use super::repositories::{Seen, decode, resolve};
use super::{FakeServer, Fault, RecordedRequest, TokenSpec, Tokens, authorization, id_of, json, lookup};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use reqwest::Url;
use serde_json::json;
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Settings {
    version: Option<String>,
    no_self_endpoint: bool,
}

#[derive(Clone)]
struct AppState {
    tokens: Tokens,
    settings: Arc<Mutex<Settings>>,
}

/// Dereferences to its [`FakeServer`]: `url()`, `https_url()`, `requests()`, `fault()`.
pub struct FakeGitLab {
    server: FakeServer,
    state: AppState,
}

impl FakeGitLab {
    pub async fn start() -> FakeGitLab {
        let state = AppState {
            tokens: Tokens::default(),
            settings: Arc::new(Mutex::new(Settings {
                version: Some("17.5.1-ee".to_owned()),
                ..Settings::default()
            })),
        };
        let app = Router::new().fallback(handle).with_state(state.clone());
        FakeGitLab {
            server: FakeServer::start(app).await,
            state,
        }
    }

    pub fn add_token(&self, token: &str, spec: TokenSpec) {
        self.state.tokens.lock().unwrap().insert(token.to_owned(), spec);
    }

    pub fn remove_token(&self, token: &str) {
        self.state.tokens.lock().unwrap().remove(token);
    }

    /// The version `/api/v4/version` reports (default `17.5.1-ee`).
    pub fn set_version(&self, version: &str) {
        self.state.settings.lock().unwrap().version = Some(version.to_owned());
    }

    /// `/api/v4/version` answers 404.
    pub fn hide_version(&self) {
        self.state.settings.lock().unwrap().version = None;
    }

    /// `false`: `/personal_access_tokens/self` answers 404, as GitLab before 15.5 does.
    pub fn set_self_endpoint(&self, available: bool) {
        self.state.settings.lock().unwrap().no_self_endpoint = !available;
    }
}

fn unauthorized() -> Response {
    json(StatusCode::UNAUTHORIZED, json!({"message": "401 Unauthorized"}))
}

fn not_found() -> Response {
    json(StatusCode::NOT_FOUND, json!({"message": "404 Not Found"}))
}

async fn handle(State(state): State<AppState>, request: Request) -> Response {
    let token = request
        .headers()
        .get("private-token")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| authorization(&request, &["Bearer"]));
    let path = request.uri().path().to_owned();
    if !path.starts_with("/api/v4/") {
        return not_found();
    }
    let Some(spec) = lookup(&state.tokens, token.as_deref()) else {
        return unauthorized();
    };
    if spec.revoked {
        return json(
            StatusCode::UNAUTHORIZED,
            json!({"error": "invalid_token", "error_description": "Token was revoked. You have to re-authorize from the user."}),
        );
    }
    if spec.is_expired() {
        return json(
            StatusCode::UNAUTHORIZED,
            json!({"error": "invalid_token", "error_description": "Token is expired. You can either do re-authorization or token refresh."}),
        );
    }
    // A project by its URL-encoded path (no `/` left): `/api/v4/projects/app-team%2Fweb`.
    if let Some(project) = path.strip_prefix("/api/v4/projects/").filter(|p| !p.contains('/')) {
        return project_answer(&request, &spec, &decode(project));
    }
    let settings = state.settings.lock().unwrap();
    match path.as_str() {
        "/api/v4/personal_access_tokens/self" if !settings.no_self_endpoint => json(
            StatusCode::OK,
            json!({
                "id": id_of(&spec.username),
                "name": "verification",
                "revoked": false,
                "created_at": "2026-01-01T00:00:00.000Z",
                "scopes": spec.scopes.clone().unwrap_or_else(|| vec!["api".to_owned()]),
                "user_id": id_of(&spec.username),
                "last_used_at": null,
                "active": true,
                "expires_at": spec.expires_at.map(|at| at.strftime("%Y-%m-%d").to_string()),
            }),
        ),
        "/api/v4/user" => {
            if !spec.has_scope(&["api", "read_api", "read_user", "sudo"]) {
                return json(
                    StatusCode::FORBIDDEN,
                    json!({
                        "error": "insufficient_scope",
                        "error_description": "The request requires higher privileges than provided by the access token.",
                        "scope": "api read_user"
                    }),
                );
            }
            json(
                StatusCode::OK,
                json!({
                    "id": id_of(&spec.username),
                    "username": spec.username,
                    "name": spec.display_name,
                    "state": "active",
                    "email": spec.email,
                    "public_email": if spec.public_email { spec.email.clone() } else { None },
                }),
            )
        }
        "/api/v4/version" => match &settings.version {
            Some(version) => json(StatusCode::OK, json!({"version": version, "revision": "6a5f9e3b"})),
            None => not_found(),
        },
        path if path.starts_with("/api/v4/projects/") && path.ends_with("/variables") => {
            if !spec.has_scope(&["api", "read_api"]) {
                return json(
                    StatusCode::FORBIDDEN,
                    json!({"error": "insufficient_scope", "scope": "api read_api"}),
                );
            }
            json(
                StatusCode::OK,
                json!([{
                    "variable_type": "env_var",
                    "key": "DEPLOY_TARGET",
                    "value": "staging",
                    "protected": false,
                    "masked": false,
                    "hidden": false,
                    "raw": false,
                    "environment_scope": "*",
                    "description": null,
                }]),
            )
        }
        _ => not_found(),
    }
}

fn project_answer(request: &Request, spec: &TokenSpec, path: &str) -> Response {
    if !spec.has_scope(&["api", "read_api"]) {
        return json(
            StatusCode::FORBIDDEN,
            json!({
                "error": "insufficient_scope",
                "error_description": "The request requires higher privileges than provided by the access token.",
                "scope": "api read_api"
            }),
        );
    }
    let (repo, level) = match resolve(request, spec, path) {
        Seen::Missing | Seen::SsoRequired(_) => {
            return json(StatusCode::NOT_FOUND, json!({"message": "404 Project Not Found"}));
        }
        Seen::Read(repo) => (repo, 30),
        Seen::Forbidden(repo) => (repo, 10),
    };
    let host = request
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("gitlab.example.com");
    json(
        StatusCode::OK,
        json!({
            "id": id_of(&repo.path),
            "path_with_namespace": repo.path,
            "default_branch": repo.default_branch,
            "visibility": if repo.private { "private" } else { "public" },
            "http_url_to_repo": format!("http://{host}/{}.git", repo.path),
            "ssh_url_to_repo": format!("git@{host}:{}.git", repo.path),
            "repository_access_level": "enabled",
            "permissions": {"project_access": {"access_level": level, "notification_level": 3}, "group_access": null},
        }),
    )
}

impl std::ops::Deref for FakeGitLab {
    type Target = FakeServer;

    fn deref(&self) -> &FakeServer {
        &self.server
    }
}
