//! GitHub REST API as documented (pages cited in `src/providers/github.rs`):
//! - `Authorization: Bearer T` (or `token T`); unknown, revoked or expired token: 401
//!   `{"message":"Bad credentials","documentation_url":"https://docs.github.com/rest","status":"401"}`;
//! - `GET /user`: `login`, `id`, `name`, `email` (public e-mail or `null`); headers
//!   `X-OAuth-Scopes` (classic tokens: `scopes: Some`; fine-grained: `None`, no header),
//!   `GitHub-Authentication-Token-Expiration: 2027-01-31 00:00:00 UTC` when the token expires,
//!   `X-RateLimit-*`, and on GHES `X-GitHub-Enterprise-Version`;
//! - `GET /user/emails`: needs `user` or `user:email` (classic); fine-grained tokens here lack
//!   the "Email addresses" permission: 403 "Resource not accessible by personal access token";
//! - [`FakeGitHub::exhaust_rate_limit`]: 403 "API rate limit exceeded" with
//!   `x-ratelimit-remaining: 0`;
//! - `GET /repos/{owner}/{repo}`: `full_name`, `private`, `default_branch`, `clone_url`,
//!   `permissions`; a repository that does not exist or that the token cannot see (a
//!   fine-grained token made for other repositories): 404 "Not Found"; one it sees without
//!   the permission: 403 "Resource not accessible by personal access token"; an organisation
//!   enforcing SAML SSO for an unauthorised classic token: 403 "Resource protected by
//!   organization SAML enforcement..." with `X-GitHub-SSO: required; url=https://github.com/orgs/ORG/sso?authorization_request=...`.
//!
//! [`FakeGitHub::start`] stands in for `https://api.github.com` (paths at the root);
//! [`FakeGitHub::start_enterprise`] is a GHES instance (paths under `/api/v3`).

use super::repositories::{Seen, decode, resolve};
use super::{FakeServer, Fault, RecordedRequest, TokenSpec, Tokens, authorization, id_of, lookup};
use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use reqwest::Url;
use serde_json::json;
use std::sync::{Arc, Mutex};

#[derive(Clone)]
struct AppState {
    tokens: Tokens,
    enterprise_version: Option<String>,
    rate_limited: Arc<Mutex<bool>>,
}

/// Dereferences to its [`FakeServer`]: `url()`, `https_url()`, `requests()`, `fault()`.
pub struct FakeGitHub {
    server: FakeServer,
    state: AppState,
}

impl FakeGitHub {
    /// The github.com API (`https://api.github.com`).
    pub async fn start() -> FakeGitHub {
        Self::start_with(None).await
    }

    /// A GitHub Enterprise Server of this version.
    pub async fn start_enterprise(version: &str) -> FakeGitHub {
        Self::start_with(Some(version.to_owned())).await
    }

    async fn start_with(enterprise_version: Option<String>) -> FakeGitHub {
        let state = AppState {
            tokens: Tokens::default(),
            enterprise_version,
            rate_limited: Arc::new(Mutex::new(false)),
        };
        let app = Router::new().fallback(handle).with_state(state.clone());
        FakeGitHub {
            server: FakeServer::start(app).await,
            state,
        }
    }

    pub fn add_token(&self, token: &str, spec: TokenSpec) {
        self.state.tokens.lock().unwrap().insert(token.to_owned(), spec);
    }

    /// Every authenticated request answers 403 with an exhausted primary rate limit.
    pub fn exhaust_rate_limit(&self, exhausted: bool) {
        *self.state.rate_limited.lock().unwrap() = exhausted;
    }
}

const RESET: i64 = 4_102_444_800; // 2100-01-01T00:00:00Z

fn answer(
    state: &AppState,
    status: StatusCode,
    mut headers: Vec<(String, String)>,
    body: serde_json::Value,
) -> Response {
    headers.push(("content-type".into(), "application/json; charset=utf-8".into()));
    headers.push(("x-github-media-type".into(), "github.v3; format=json".into()));
    if let Some(version) = &state.enterprise_version {
        headers.push(("x-github-enterprise-version".into(), version.clone()));
    }
    let mut response = (status, body.to_string()).into_response();
    for (name, value) in headers {
        response.headers_mut().append(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
    }
    response
}

fn rate_headers(remaining: u32) -> Vec<(String, String)> {
    vec![
        ("x-ratelimit-limit".into(), "5000".into()),
        ("x-ratelimit-remaining".into(), remaining.to_string()),
        ("x-ratelimit-reset".into(), RESET.to_string()),
        ("x-ratelimit-used".into(), (5000 - remaining).to_string()),
        ("x-ratelimit-resource".into(), "core".into()),
    ]
}

async fn handle(State(state): State<AppState>, request: Request) -> Response {
    let mut path = request.uri().path().to_owned();
    if state.enterprise_version.is_some() {
        match path.strip_prefix("/api/v3") {
            Some(rest) => path = rest.to_owned(),
            None => return (StatusCode::NOT_FOUND, "<html><body>Not Found</body></html>").into_response(),
        }
    }
    let not_found =
        json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest", "status": "404"});
    let token = authorization(&request, &["Bearer", "token"]);
    let spec = lookup(&state.tokens, token.as_deref()).filter(|s| !s.revoked && !s.expired);
    let Some(spec) = spec else {
        return answer(
            &state,
            StatusCode::UNAUTHORIZED,
            rate_headers(59),
            json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest", "status": "401"}),
        );
    };
    if *state.rate_limited.lock().unwrap() {
        return answer(
            &state,
            StatusCode::FORBIDDEN,
            rate_headers(0),
            json!({
                "message": format!("API rate limit exceeded for user ID {}.", id_of(&spec.username)),
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
                "status": "403"
            }),
        );
    }
    let mut headers = rate_headers(4999);
    if let Some(scopes) = &spec.scopes {
        headers.push(("x-oauth-scopes".into(), scopes.join(", ")));
        headers.push(("x-accepted-oauth-scopes".into(), String::new()));
    }
    if let Some(at) = spec.expires_at {
        headers.push((
            "github-authentication-token-expiration".into(),
            at.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        ));
    }
    match path.as_str() {
        "/user" => answer(
            &state,
            StatusCode::OK,
            headers,
            json!({
                "login": spec.username,
                "id": id_of(&spec.username),
                "type": "User",
                "site_admin": false,
                "name": spec.display_name,
                "email": if spec.public_email { spec.email.clone() } else { None },
            }),
        ),
        "/user/emails" => match &spec.scopes {
            Some(scopes) if scopes.iter().any(|s| s == "user" || s == "user:email") => answer(
                &state,
                StatusCode::OK,
                headers,
                json!(
                    spec.email
                        .iter()
                        .map(|email| json!({
                            "email": email, "primary": true, "verified": true, "visibility": "private"
                        }))
                        .collect::<Vec<_>>()
                ),
            ),
            Some(_) => answer(&state, StatusCode::NOT_FOUND, headers, not_found),
            None => answer(
                &state,
                StatusCode::FORBIDDEN,
                headers,
                json!({
                    "message": "Resource not accessible by personal access token",
                    "documentation_url": "https://docs.github.com/rest/users/emails#list-email-addresses-for-the-authenticated-user",
                    "status": "403"
                }),
            ),
        },
        _ if path.starts_with("/repos/") => {
            let full: Vec<String> = path["/repos/".len()..].split('/').map(decode).collect();
            let full = full.join("/");
            match resolve(&request, &spec, &full) {
                Seen::Missing => answer(&state, StatusCode::NOT_FOUND, headers, not_found),
                Seen::Forbidden(_) => answer(
                    &state,
                    StatusCode::FORBIDDEN,
                    headers,
                    json!({
                        "message": "Resource not accessible by personal access token",
                        "documentation_url": "https://docs.github.com/rest/repos/repos#get-a-repository",
                        "status": "403"
                    }),
                ),
                Seen::SsoRequired(repo) => {
                    let org = repo.path.split('/').next().unwrap_or_default().to_owned();
                    headers.push((
                        "x-github-sso".into(),
                        format!("required; url=https://github.com/orgs/{org}/sso?authorization_request=AZSCKtL4U8yX1H3sCQIVnVgmjmon5fWxks5YrqhJgah0b2tlbl9pZM4EuMz4"),
                    ));
                    answer(
                        &state,
                        StatusCode::FORBIDDEN,
                        headers,
                        json!({
                            "message": "Resource protected by organization SAML enforcement. You must grant your Personal Access token access to this organization.",
                            "documentation_url": "https://docs.github.com/articles/authenticating-to-a-github-organization-with-saml-single-sign-on/",
                            "status": "403"
                        }),
                    )
                }
                Seen::Read(repo) => {
                    let web = if state.enterprise_version.is_some() {
                        format!(
                            "http://{}",
                            request
                                .headers()
                                .get("host")
                                .and_then(|h| h.to_str().ok())
                                .unwrap_or("ghes.example.com")
                        )
                    } else {
                        "https://github.com".to_owned()
                    };
                    answer(
                        &state,
                        StatusCode::OK,
                        headers,
                        json!({
                            "id": id_of(&repo.path),
                            "full_name": repo.path,
                            "private": repo.private,
                            "default_branch": repo.default_branch.clone().unwrap_or_else(|| "main".to_owned()),
                            "clone_url": format!("{web}/{}.git", repo.path),
                            "permissions": {"admin": false, "maintain": false, "push": false, "triage": false, "pull": true},
                        }),
                    )
                }
            }
        }
        _ => answer(&state, StatusCode::NOT_FOUND, headers, not_found),
    }
}

impl std::ops::Deref for FakeGitHub {
    type Target = FakeServer;

    fn deref(&self) -> &FakeServer {
        &self.server
    }
}
