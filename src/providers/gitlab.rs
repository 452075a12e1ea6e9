//! GitLab (gitlab.com and self-managed).
//!
//! Documentation followed:
//! - Personal access tokens API, `GET /personal_access_tokens/self` (GitLab 15.5+):
//!   <https://docs.gitlab.com/api/personal_access_tokens/> — `scopes`, `expires_at` (a date),
//!   `active`, `revoked`.
//! - Users API, `GET /user`: <https://docs.gitlab.com/api/users/> — `username`, `name`, `email`
//!   (own account), `public_email`.
//! - Version API, `GET /version`: <https://docs.gitlab.com/api/version/> — `version`.
//! - REST authentication: <https://docs.gitlab.com/api/rest/authentication/> — `PRIVATE-TOKEN`
//!   header; 401 `{"message":"401 Unauthorized"}` for a bad token; OAuth-style bodies
//!   `{"error":"invalid_token","error_description":"Token is expired..."}` / `"Token was revoked..."`;
//!   403 `{"error":"insufficient_scope",...}` when the token lacks a scope.
//!
//! # Requests per verification: 2, in one round trip
//!
//! `GET /personal_access_tokens/self` (scopes, expiry, revoked: the user endpoint shows none of
//! them) and `GET /user` (who: the token endpoint names only a `user_id`) do not depend on each
//! other and go out together. `GET /version` belongs to the instance, not the token: it is asked
//! once per instance per [`super::memory::INSTANCE_FACTS_TTL`] (again at once after the instance
//! failed or answered something other than its API), alongside the other two, so it adds no
//! latency and one request per instance per interval.

use super::http::{Auth, HttpClient, HttpResponse};
use super::request::{Api, remembered};
use super::{Provider, Target, Verification, account, non_empty};
use crate::api::{Deployment, ProviderKind, ReadyReason};
use futures::future::BoxFuture;
use reqwest::{StatusCode, Url};
use serde::Deserialize;

pub struct GitLab;

const KIND: ProviderKind = ProviderKind::GitLab;

#[derive(Deserialize)]
struct TokenSelf {
    #[serde(default)]
    scopes: Option<Vec<String>>,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    active: Option<bool>,
    #[serde(default)]
    revoked: Option<bool>,
}

#[derive(Deserialize)]
struct User {
    username: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    public_email: Option<String>,
}

#[derive(Deserialize, Default)]
struct ErrorBody {
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    error_description: Option<String>,
    #[serde(default)]
    message: Option<serde_json::Value>,
}

impl ErrorBody {
    fn text(&self) -> String {
        let text = [
            self.error.clone(),
            self.error_description.clone(),
            self.message.as_ref().map(|m| m.to_string()),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
        super::excerpt(&text)
    }
}

/// `expires_at` is a date (`2027-01-31`); the token stops working at the start of that day UTC.
pub(crate) fn parse_expiry(text: &str) -> Option<jiff::Timestamp> {
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return Some(ts);
    }
    let date: jiff::civil::Date = text.parse().ok()?;
    date.to_zoned(jiff::tz::TimeZone::UTC).ok().map(|z| z.timestamp())
}

/// Maps a 401/403 answer to a reason, reading GitLab's error body.
fn rejected(what: &str, response: &HttpResponse) -> Verification {
    let body: ErrorBody = response.json().unwrap_or_default();
    let text = body.text().to_ascii_lowercase();
    if response.status == StatusCode::FORBIDDEN && text.contains("insufficient_scope") {
        return Verification::failed(
            ReadyReason::InsufficientScope,
            format!("the token is valid but may not call {what}: GitLab requires the read_api (or api) scope"),
        );
    }
    if text.contains("expired") {
        return Verification::failed(
            ReadyReason::TokenExpired,
            "GitLab says the token has expired; create a new one and update the Secret",
        );
    }
    if text.contains("revoked") {
        return Verification::failed(
            ReadyReason::Unauthorized,
            "GitLab says the token was revoked; create a new one and update the Secret",
        );
    }
    if response.status == StatusCode::FORBIDDEN {
        return Verification::failed(
            ReadyReason::InsufficientScope,
            format!("GitLab refused {what} (HTTP 403) for this token; check its scopes and the account's state"),
        );
    }
    Verification::failed(
        ReadyReason::Unauthorized,
        format!(
            "GitLab rejected the token on {what} (HTTP 401); check that the Secret holds a valid personal access token"
        ),
    )
}

/// The API of the instance at `spec.url`, the token sent as `PRIVATE-TOKEN`.
pub fn api<'a>(http: &'a HttpClient, target: &'a Target) -> Api<'a> {
    let auth = Auth::Header {
        name: "private-token",
        token: &target.token,
    };
    Api::new(KIND, http, target, auth)
}

async fn verify(api: Api<'_>) -> Result<Verification, Verification> {
    // One round trip: the token, its user and (when not remembered) the version, together.
    let requests = futures::future::join(api.get("/api/v4/personal_access_tokens/self"), api.get("/api/v4/user"));
    let deployment = deployment(&api.target.base_url);
    let (mut facts, (token_self, user_response)) = api.beside_version(deployment, "/api/v4/version", requests).await;

    // 1. The token itself: scopes, expiry, revoked. Older GitLab (< 15.5) answers 404.
    const TOKEN: &str = "GET /api/v4/personal_access_tokens/self";
    let token_self = api.answered(token_self)?;
    match token_self.status {
        StatusCode::OK => {
            let info: TokenSelf = api.json(TOKEN, &token_self)?;
            facts.scopes = info.scopes;
            facts.expires_at = info.expires_at.as_deref().and_then(parse_expiry);
            if info.revoked == Some(true) {
                return Err(Verification::failed(
                    ReadyReason::Unauthorized,
                    "GitLab says the token was revoked; create a new one and update the Secret",
                )
                .with_facts(facts));
            }
            let expired = facts.expires_at.is_some_and(|at| at <= jiff::Timestamp::now());
            if expired || info.active == Some(false) {
                return Err(Verification::failed(
                    ReadyReason::TokenExpired,
                    "GitLab says the token has expired; create a new one and update the Secret",
                )
                .with_facts(facts));
            }
        }
        StatusCode::UNAUTHORIZED => return Err(rejected(TOKEN, &token_self)),
        // Not fatal: older servers lack the endpoint, some scopes may not read it; /user decides.
        StatusCode::NOT_FOUND | StatusCode::FORBIDDEN => {}
        _ => return Err(api.unexpected(TOKEN, &token_self)),
    }

    // 2. Who the token is.
    const USER: &str = "GET /api/v4/user";
    let user_response = api.answered(user_response)?;
    let user: User = match user_response.status {
        StatusCode::OK => api.json(USER, &user_response)?,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            return Err(rejected(USER, &user_response).with_facts(facts));
        }
        _ => return Err(api.unexpected(USER, &user_response)),
    };
    let email = non_empty(user.email).or(user.public_email);
    facts.user = Some(account(Some(user.username.clone()), user.name, email));

    // Scopes known and none of them reads the API: /user may pass with read_user, but
    // reading projects and repositories through the API will not.
    if let Some(scopes) = &facts.scopes
        && !scopes.iter().any(|s| s == "api" || s == "read_api")
    {
        return Err(Verification::failed(
            ReadyReason::InsufficientScope,
            format!(
                "the token authenticates as {} but its scopes [{}] lack read_api (or api); add the scope or create a new token",
                user.username,
                scopes.join(", ")
            ),
        )
        .with_facts(facts));
    }

    let on = match &facts.server_version {
        Some(version) => format!("GitLab {version}"),
        None => format!("GitLab at {}", api.target.base_url),
    };
    Ok(Verification::authenticated(user.username, on, facts))
}

/// Whether `base_url` is the provider's cloud service or a self-hosted server.
pub fn deployment(base_url: &Url) -> Deployment {
    Deployment::cloud_if(
        base_url
            .host_str()
            .is_some_and(|host| host.eq_ignore_ascii_case("gitlab.com")),
    )
}

impl Provider for GitLab {
    fn prove<'a>(&'a self, http: &'a HttpClient, target: &'a Target) -> BoxFuture<'a, Verification> {
        Box::pin(remembered(api(http, target), verify))
    }
}
