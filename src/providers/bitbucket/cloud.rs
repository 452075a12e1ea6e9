//! Bitbucket Cloud: the account behind an Atlassian API token (Basic with the account's e-mail),
//! its e-mail addresses and the token's scopes.

use super::{Bitbucket, KIND};
use crate::api::{Deployment, ReadyReason};
use crate::providers::http::{Auth, HttpClient, HttpResponse};
use crate::providers::request::{Api, oauth_scopes};
use crate::providers::{Facts, Target, Verification, account, non_empty};
use reqwest::StatusCode;
use serde::Deserialize;

#[derive(Deserialize)]
struct CloudUser {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    nickname: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    account_id: Option<String>,
}

#[derive(Deserialize)]
struct CloudEmails {
    #[serde(default)]
    values: Vec<CloudEmail>,
}

#[derive(Deserialize)]
struct CloudEmail {
    email: String,
    #[serde(default)]
    is_primary: bool,
    #[serde(default)]
    is_confirmed: bool,
}

#[derive(Deserialize, Default)]
struct CloudError {
    #[serde(default)]
    error: Option<CloudErrorDetail>,
}

#[derive(Deserialize)]
struct CloudErrorDetail {
    #[serde(default)]
    message: Option<String>,
}

fn cloud_error_text(response: &HttpResponse) -> String {
    let body: CloudError = response.json().unwrap_or_default();
    crate::providers::excerpt(&body.error.and_then(|e| e.message).unwrap_or_default())
}

impl Bitbucket {
    /// The cloud API ([`Bitbucket::cloud_root`]), the API token sent as HTTP Basic with the
    /// account's e-mail (`spec.username`).
    pub fn cloud_api<'a>(&self, http: &'a HttpClient, target: &'a Target) -> Api<'a> {
        let auth = Auth::Basic {
            user: account_email(target),
            token: &target.token,
        };
        Api::new(KIND, http, target, auth).beneath(self.cloud_root())
    }

    pub(super) async fn verify_cloud(&self, http: &HttpClient, target: &Target) -> Result<Verification, Verification> {
        let email = account_email(target);
        let api = self.cloud_api(http, target);
        let mut facts = Facts::on(Deployment::Cloud);

        // One round trip: the e-mail list goes out with /2.0/user unless this token's last
        // verification could not read it.
        let (response, emails) = api.get_beside_emails("/2.0/user", "/2.0/user/emails").await;
        const USER: &str = "GET /2.0/user";
        let response = api.answered(response)?;
        let user: CloudUser = match response.status {
            StatusCode::OK => api.json(USER, &response)?,
            StatusCode::UNAUTHORIZED => {
                let text = cloud_error_text(&response);
                if text.to_ascii_lowercase().contains("expired") {
                    return Err(Verification::failed(
                        ReadyReason::TokenExpired,
                        format!(
                            "Bitbucket Cloud says the API token has expired ({text}); create a new one and update the Secret"
                        ),
                    ));
                }
                return Err(Verification::failed(
                    ReadyReason::Unauthorized,
                    format!(
                        "Bitbucket Cloud rejected the credentials on {USER} (HTTP 401): check that spec.username is the Atlassian account email ({email}) and that the Secret holds a valid API token of that account"
                    ),
                ));
            }
            StatusCode::FORBIDDEN => {
                return Err(Verification::refused(
                    format_args!("Bitbucket Cloud refused {USER}"),
                    response.status,
                    &cloud_error_text(&response),
                    "the API token needs the read:user:bitbucket scope — create a token with it",
                )
                .with_facts(facts));
            }
            _ => return Err(api.unexpected(USER, &response)),
        };
        facts.scopes = oauth_scopes(&response);

        // The e-mail, when the token may read it.
        let address = api.read_emails(emails, |emails: CloudEmails| {
            emails
                .values
                .into_iter()
                .find(|e| e.is_primary && e.is_confirmed)
                .map(|e| e.email)
        });
        let username = non_empty(user.username)
            .or(non_empty(user.nickname))
            .or(non_empty(user.account_id));
        facts.user = Some(account(username.clone(), user.display_name, address));
        let who = username.unwrap_or_else(|| email.to_owned());
        Ok(Verification::verified(
            format!("authenticated as {who} on Bitbucket Cloud"),
            facts,
        ))
    }
}

/// `spec.username`: the Atlassian account e-mail that owns the API token.
fn account_email(target: &Target) -> &str {
    target.username.as_deref().unwrap_or_default().trim()
}
