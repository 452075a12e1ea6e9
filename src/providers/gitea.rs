//! Gitea and Forgejo (self-hosted; codeberg.org and gitea.com are instances like any other).
//!
//! Documentation followed:
//! - API usage: <https://docs.gitea.com/development/api-usage> — `Authorization: token TOKEN`;
//!   scoped tokens (Gitea 1.19+, Forgejo alike) are limited to route groups: `/user` needs
//!   `read:user`, `/user/repos` needs `read:repository`.
//! - Token scopes: <https://docs.gitea.com/development/oauth2-provider#scopes> (the table of
//!   `read:*`/`write:*` scopes shared with personal access tokens).
//! - API reference (Swagger, served at `/api/swagger` by every instance):
//!   `GET /api/v1/user` (`login`, `full_name`, `email`), `GET /api/v1/user/repos`,
//!   `GET /api/v1/version` (`{"version": "1.22.3"}`, Forgejo `"9.0.0+gitea-1.22.0"`).
//! - Error bodies `{"message": ..., "url": ".../api/swagger"}`: 401 `"token is required"` /
//!   invalid token; 403 `"token does not have at least one of required scope(s): [read:user]"`
//!   for a token without the scope (Gitea's `tokenRequiresScope` check, seen in Gitea and
//!   Forgejo test suites and clients).
//! - `/api/v1/version` itself answered 403 to some scoped tokens in Gitea 1.20.0
//!   (<https://github.com/go-gitea/gitea/issues/26035>), so the version is best effort.
//!
//! # Requests per verification: 2, in one round trip
//!
//! `GET /user` (who) and `GET /user/repos?limit=1` (may it read repositories: a scope of its
//! own) do not depend on each other and go out together. `GET /version` belongs to the
//! instance: asked once per instance per [`super::memory::INSTANCE_FACTS_TTL`] (again at once
//! after the instance failed or answered something other than its API), alongside the others.
//!
//! Not revealed to a token, so left out: its scopes (listing tokens needs the password) and
//! its expiry (Gitea tokens do not expire; a 401 body that says "expired" is still reported
//! as TokenExpired).

use super::http::{Auth, HttpClient, HttpResponse};
use super::request::{Api, message, remembered};
use super::{Provider, Target, Verification, account, non_empty};
use crate::api::{Deployment, ProviderKind, ReadyReason};
use futures::future::BoxFuture;
use reqwest::StatusCode;
use serde::Deserialize;

pub struct Gitea;

const KIND: ProviderKind = ProviderKind::Gitea;

/// The API of the instance at `spec.url`, the token sent as `Authorization: token TOKEN`.
pub fn api<'a>(http: &'a HttpClient, target: &'a Target) -> Api<'a> {
    Api::new(KIND, http, target, Auth::TokenScheme(&target.token))
}

#[derive(Deserialize)]
struct User {
    login: String,
    #[serde(default)]
    full_name: Option<String>,
    #[serde(default)]
    email: Option<String>,
}

/// The scope named in Gitea's "required scope(s): [read:user]" message, if any.
fn required_scope(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    if !lower.contains("scope") {
        return None;
    }
    let start = text.rfind('[')?;
    let end = text[start..].find(']')? + start;
    non_empty(Some(text[start + 1..end].to_owned()))
}

fn rejected(what: &str, needed: &str, response: &HttpResponse) -> Verification {
    let said = message(response);
    if response.status == StatusCode::FORBIDDEN && said.to_ascii_lowercase().contains("scope") {
        let scope = required_scope(&said).unwrap_or_else(|| needed.to_owned());
        return Verification::failed(
            ReadyReason::InsufficientScope,
            format!("the token may not call {what}: Gitea says \"{said}\"; create a token with the {scope} scope"),
        );
    }
    if said.to_ascii_lowercase().contains("expired") {
        return Verification::failed(
            ReadyReason::TokenExpired,
            format!("Gitea says the token has expired (\"{said}\"); create a new one and update the Secret"),
        );
    }
    let quoted = if said.is_empty() {
        String::new()
    } else {
        format!(": \"{said}\"")
    };
    Verification::failed(
        ReadyReason::Unauthorized,
        format!(
            "Gitea rejected the token on {what} (HTTP {}{quoted}); check that the Secret holds a valid access token",
            response.status.as_u16()
        ),
    )
}

async fn verify(api: Api<'_>) -> Result<Verification, Verification> {
    // One round trip: the user, the repositories and (when not remembered) the version.
    let requests = futures::future::join(api.get("/api/v1/user"), api.get("/api/v1/user/repos?limit=1"));
    let (mut facts, (user_response, repos_response)) = api
        .beside_version(Deployment::SelfHosted, "/api/v1/version", requests)
        .await;

    // 1. Who the token is.
    const USER: &str = "GET /api/v1/user";
    let response = api.answered(user_response)?;
    let user: User = match response.status {
        StatusCode::OK => api.json(USER, &response)?,
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN if response.json::<serde_json::Value>().is_ok() => {
            return Err(rejected(USER, "read:user", &response).with_facts(facts));
        }
        _ => return Err(api.unexpected(USER, &response)),
    };
    facts.user = Some(account(Some(user.login.clone()), user.full_name, user.email));

    // 2. What a Git connection needs: reading repositories.
    const REPOS: &str = "GET /api/v1/user/repos";
    let response = api.answered(repos_response).map_err(|v| v.with_facts(facts.clone()))?;
    match response.status {
        StatusCode::OK if response.json::<serde_json::Value>().is_ok() => {}
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            let mut verification = rejected(REPOS, "read:repository", &response);
            if verification.reason == ReadyReason::Unauthorized {
                verification = Verification::refused(
                    format_args!(
                        "the token authenticates as {} but may not list repositories",
                        user.login
                    ),
                    response.status,
                    "",
                    "give it the read:repository scope",
                );
            }
            return Err(verification.with_facts(facts));
        }
        _ => return Err(api.unexpected(REPOS, &response).with_facts(facts)),
    }

    let on = match &facts.server_version {
        Some(version) if version.contains("gitea-") || version.contains("forgejo") => format!("Forgejo {version}"),
        Some(version) => format!("Gitea {version}"),
        None => format!("Gitea at {}", api.target.base_url),
    };
    Ok(Verification::authenticated(user.login, on, facts))
}

impl Provider for Gitea {
    fn prove<'a>(&'a self, http: &'a HttpClient, target: &'a Target) -> BoxFuture<'a, Verification> {
        Box::pin(remembered(api(http, target), verify))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_from_message() {
        for (message, scope) in [
            (
                "token does not have at least one of required scope(s): [read:user]",
                Some("read:user"),
            ),
            ("token is required", None),
        ] {
            assert_eq!(required_scope(message).as_deref(), scope, "{message}");
        }
    }
}
