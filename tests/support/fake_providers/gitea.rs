//! Gitea / Forgejo API v1, as documented (pages cited in `src/providers/gitea.rs`):
//! - `Authorization: token T` (also `Bearer`); a missing or unknown token leaves the request
//!   anonymous and the API answers 401 `{"message":"token is required","url":".../api/swagger"}`.
//!   Gitea tokens do not expire, so `expired` and `revoked` specs are answered like unknown ones;
//! - scoped tokens: `GET /api/v1/user` needs `read:user` (or `write:user`/`all`), `GET
//!   /api/v1/user/repos` `read:repository`; else 403
//!   `{"message":"token does not have at least one of required scope(s): [read:user]",...}`;
//!   `scopes: None` is an old all-access token;
//! - `GET /api/v1/version`: `{"version": ...}` (`1.22.3` by default, see [`FakeGitea::set_version`]);
//! - `GET /api/v1/repos/{owner}/{repo}`: needs `read:repository`; a repository that does not
//!   exist or that the token's user cannot see: 404 `{"message":"The target couldn't be
//!   found.","url":...,"errors":[]}`; one it sees without code access (a team with other units
//!   only): 200 with `permissions.pull: false`; `empty: true` and no branch for an empty one.

use super::repositories::{Seen, decode, resolve};
use super::{FakeServer, Fault, RecordedRequest, TokenSpec, Tokens, authorization, id_of, json, lookup};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use reqwest::Url;
use serde_json::json;
use std::sync::{Arc, Mutex};

#[derive(Clone)]
struct AppState {
    tokens: Tokens,
    version: Arc<Mutex<String>>,
}

/// Dereferences to its [`FakeServer`]: `url()`, `https_url()`, `requests()`, `fault()`.
pub struct FakeGitea {
    server: FakeServer,
    state: AppState,
}

impl FakeGitea {
    pub async fn start() -> FakeGitea {
        let state = AppState {
            tokens: Tokens::default(),
            version: Arc::new(Mutex::new("1.22.3".to_owned())),
        };
        let app = Router::new().fallback(handle).with_state(state.clone());
        FakeGitea {
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
}

fn scope_error(scope: &str, base: &str) -> Response {
    json(
        StatusCode::FORBIDDEN,
        json!({
            "message": format!("token does not have at least one of required scope(s): [{scope}]"),
            "url": format!("{base}/api/swagger")
        }),
    )
}

async fn handle(State(state): State<AppState>, request: Request) -> Response {
    let base = format!(
        "http://{}",
        request
            .headers()
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost")
    );
    let path = request.uri().path().to_owned();
    if path == "/api/v1/version" {
        return json(StatusCode::OK, json!({"version": *state.version.lock().unwrap()}));
    }
    let token = authorization(&request, &["token", "Bearer"]);
    let Some(spec) = lookup(&state.tokens, token.as_deref()).filter(|s| !s.revoked && !s.is_expired()) else {
        return json(
            StatusCode::UNAUTHORIZED,
            json!({"message": "token is required", "url": format!("{base}/api/swagger")}),
        );
    };
    match path.as_str() {
        "/api/v1/user" => {
            if !spec.has_scope(&["read:user", "write:user", "all"]) {
                return scope_error("read:user", &base);
            }
            json(
                StatusCode::OK,
                json!({
                    "id": id_of(&spec.username),
                    "login": spec.username,
                    "login_name": "",
                    "full_name": spec.display_name.clone().unwrap_or_default(),
                    "email": spec.email.clone().unwrap_or_default(),
                    "is_admin": false,
                    "active": true,
                    "prohibit_login": false,
                }),
            )
        }
        "/api/v1/user/repos" => {
            if !spec.has_scope(&["read:repository", "write:repository", "all"]) {
                return scope_error("read:repository", &base);
            }
            json(
                StatusCode::OK,
                json!([{"id": 1, "name": "app", "full_name": format!("{}/app", spec.username), "private": true}]),
            )
        }
        _ if path.starts_with("/api/v1/repos/") => {
            if !spec.has_scope(&["read:repository", "write:repository", "all"]) {
                return scope_error("read:repository", &base);
            }
            let rest = &path["/api/v1/repos/".len()..];
            let full: Vec<String> = rest.split('/').map(decode).collect();
            let (repo, pull) = match resolve(&request, &spec, &full.join("/")) {
                Seen::Read(repo) => (repo, true),
                Seen::Forbidden(repo) => (repo, false),
                Seen::Missing | Seen::SsoRequired(_) => {
                    return json(
                        StatusCode::NOT_FOUND,
                        json!({"message": "The target couldn't be found.", "url": format!("{base}/api/swagger"), "errors": []}),
                    );
                }
            };
            json(
                StatusCode::OK,
                json!({
                    "id": id_of(&repo.path),
                    "full_name": repo.path,
                    "private": repo.private,
                    "empty": repo.default_branch.is_none(),
                    "default_branch": repo.default_branch.clone().unwrap_or_else(|| "main".to_owned()),
                    "clone_url": format!("{base}/{}.git", repo.path),
                    "ssh_url": format!("git@localhost:{}.git", repo.path),
                    "permissions": {"admin": false, "push": false, "pull": pull},
                }),
            )
        }
        _ => json(
            StatusCode::NOT_FOUND,
            json!({"message": "Not Found", "url": format!("{base}/api/swagger")}),
        ),
    }
}

impl std::ops::Deref for FakeGitea {
    type Target = FakeServer;

    fn deref(&self) -> &FakeServer {
        &self.server
    }
}
