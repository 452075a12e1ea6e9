//! Bitbucket Server / Data Center: the version, the user behind the token, and a read that
//! needs the REPO_READ permission.

use super::KIND;
use crate::api::{Deployment, ReadyReason};
use crate::providers::http::{Auth, HttpClient, HttpResponse};
use crate::providers::memory::Hint;
use crate::providers::request::{Api, path_segment};
use crate::providers::{Target, Verification, account, non_empty};
use reqwest::StatusCode;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ServerUser {
    name: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    email_address: Option<String>,
}

#[derive(Deserialize)]
struct ServerUserPage {
    #[serde(default)]
    values: Vec<ServerUser>,
}

#[derive(Deserialize, Default)]
struct ServerErrors {
    #[serde(default)]
    errors: Vec<ServerErrorEntry>,
}

#[derive(Deserialize)]
struct ServerErrorEntry {
    #[serde(default)]
    message: Option<String>,
}

impl ServerErrors {
    fn text(response: &HttpResponse) -> String {
        let body: ServerErrors = response.json().unwrap_or_default();
        crate::providers::excerpt(
            &body
                .errors
                .into_iter()
                .filter_map(|e| e.message)
                .collect::<Vec<_>>()
                .join("; "),
        )
    }
}

/// A 401 from Bitbucket Server, or the CAPTCHA lock Atlassian applies after failed logins.
fn server_rejected(what: &str, response: &HttpResponse) -> Verification {
    if let Some(reason) = response.header("x-authentication-denied-reason")
        && reason.to_ascii_uppercase().contains("CAPTCHA")
    {
        return Verification::failed(
            ReadyReason::Unauthorized,
            "Bitbucket locked the account behind a CAPTCHA after failed logins; sign in once in a browser, then check the token in the Secret",
        );
    }
    let text = ServerErrors::text(response);
    if text.to_ascii_lowercase().contains("expired") {
        return Verification::failed(
            ReadyReason::TokenExpired,
            format!(
                "Bitbucket says the token has expired ({text}); create a new HTTP access token and update the Secret"
            ),
        );
    }
    let said = crate::providers::said(&text);
    Verification::failed(
        ReadyReason::Unauthorized,
        format!(
            "Bitbucket rejected the token on {what} (HTTP {}{said}); check that the Secret holds a valid HTTP access token",
            response.status.as_u16()
        ),
    )
}

/// The instance's REST API at `spec.url`, the token sent as a Bearer token (the one form
/// project and repository tokens accept).
pub fn server_api<'a>(http: &'a HttpClient, target: &'a Target) -> Api<'a> {
    Api::new(KIND, http, target, Auth::Bearer(&target.token))
}

/// The display name and e-mail of `username`: nice to know, not needed (project and repository
/// tokens act as service users without a readable profile).
async fn user_details(api: &Api<'_>, username: &str) -> Option<ServerUser> {
    match api
        .get(&format!("/rest/api/1.0/users/{}", path_segment(username)))
        .await
    {
        Ok(response) if response.status == StatusCode::OK => response.json::<ServerUser>().ok(),
        Ok(response) if response.status == StatusCode::NOT_FOUND => {
            // The slug differs from the name (e.g. characters a URL cannot hold): search by name.
            match api
                .get(&format!(
                    "/rest/api/1.0/users?filter={}&limit=25",
                    path_segment(username)
                ))
                .await
            {
                Ok(response) if response.status == StatusCode::OK => response
                    .json::<ServerUserPage>()
                    .ok()
                    .and_then(|page| page.values.into_iter().find(|u| u.name == username)),
                _ => None,
            }
        }
        _ => None,
    }
}

pub(super) async fn verify_server(api: Api<'_>) -> Result<Verification, Verification> {
    let (memory, target) = (api.http.memory(), api.target);
    let key = api.instance_key();

    // One round trip: the repositories (the scope check; its X-AUSERNAME says who), the
    // version when not remembered, and the user's details when the user is known beforehand:
    // remembered from this token's last verification, else as `spec.username` says, else as
    // the status last said (an operator that restarted). The guess is only trusted when
    // X-AUSERNAME confirms it.
    let hinted = match memory.hint(key, &target.token) {
        Some(Hint::Username(name)) => Some(name),
        _ => non_empty(target.username.clone()).or_else(|| non_empty(target.last_user.clone())),
    };
    const REPOS: &str = "GET /rest/api/1.0/repos";
    let details = async {
        match &hinted {
            Some(name) => Some(user_details(&api, name).await),
            None => None,
        }
    };
    let requests = futures::future::join(api.get("/rest/api/1.0/repos?limit=1"), details);
    let (mut facts, (response, details)) = api
        .beside_version(Deployment::SelfHosted, "/rest/api/1.0/application-properties", requests)
        .await;
    let response = api.answered(response)?;
    let username = non_empty(response.header("x-ausername").map(str::to_owned));
    let anonymous = || {
        Verification::failed(
            ReadyReason::Unauthorized,
            format!(
                "Bitbucket at {} answered as if no one had signed in (no X-AUSERNAME header): the token was not used; check that it is a valid HTTP access token and that no proxy strips the Authorization header",
                target.base_url
            ),
        )
    };
    match (response.status, &username) {
        (StatusCode::OK | StatusCode::FORBIDDEN, Some(_)) => {}
        // Not "authentication failed" but "not permitted": the request arrived without
        // credentials (an anonymous user may not list repositories).
        (StatusCode::UNAUTHORIZED, None)
            if ServerErrors::text(&response)
                .to_ascii_lowercase()
                .contains("not permitted") =>
        {
            return Err(anonymous().with_facts(facts));
        }
        (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, _) => {
            return Err(server_rejected(REPOS, &response).with_facts(facts));
        }
        (StatusCode::OK, None) if response.json::<serde_json::Value>().is_ok() => {}
        _ => return Err(api.unexpected(REPOS, &response)),
    }
    let Some(username) = username else {
        return Err(anonymous().with_facts(facts));
    };
    // Without a hint (or with a wrong one) the first verification of a token learns its name
    // here, and its details one round trip later; the next ones ask for them together.
    let details = match details {
        Some(details) if hinted.as_deref() == Some(username.as_str()) => details,
        _ => user_details(&api, &username).await,
    };
    memory.remember_hint(key, &target.token, Hint::Username(username.clone()));
    let (display_name, email) = details
        .map(|details| (details.display_name, details.email_address))
        .unwrap_or_default();
    facts.user = Some(account(Some(username.clone()), display_name, email));

    if response.status == StatusCode::FORBIDDEN {
        return Err(Verification::refused(
            format_args!("the token authenticates as {username} but may not list repositories"),
            response.status,
            &ServerErrors::text(&response),
            "give it at least repository read permission",
        )
        .with_facts(facts));
    }
    if response.json::<serde_json::Value>().is_err() {
        return Err(api.unexpected(REPOS, &response).with_facts(facts));
    }

    let on = match &facts.server_version {
        Some(version) => format!("Bitbucket Data Center {version}"),
        None => format!("Bitbucket at {}", target.base_url),
    };
    Ok(Verification::authenticated(username, on, facts))
}

// ---- Cloud ----------------------------------------------------------------------------
