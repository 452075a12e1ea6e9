//! Bitbucket: Bitbucket Cloud (bitbucket.org) and Bitbucket Server / Data Center.
//!
//! # Bitbucket Server / Data Center
//!
//! Documentation followed:
//! - HTTP access tokens: <https://confluence.atlassian.com/bitbucketserver/http-access-tokens-939515499.html>
//!   — user, project and repository tokens, usable for the REST API; project and repository
//!   tokens only with `Authorization: Bearer`, so Bearer is what is sent for every kind.
//! - `X-AUSERNAME`: Atlassian's answer on the developer community
//!   (<https://community.developer.atlassian.com/t/obtain-authorised-users-username-from-api/24422>)
//!   — there is no "who am I" resource; every response to an authenticated request carries the
//!   user name in `X-AUSERNAME` (even a 404). It is read from the first call.
//! - REST API: <https://developer.atlassian.com/server/bitbucket/rest/> —
//!   `GET /rest/api/1.0/application-properties` (`version`, `buildNumber`, `displayName`),
//!   `GET /rest/api/1.0/users/{userSlug}` (`name`, `slug`, `displayName`, `emailAddress`),
//!   `GET /rest/api/1.0/repos?limit=1`; errors as `{"errors":[{"message":...}]}`, 401 for
//!   credentials that are not accepted.
//! - Access tokens behind a reverse proxy / on non-REST paths redirect to the login page
//!   (<https://confluence.atlassian.com/bitbucketserverkb/access-tokens-no-longer-work-as-expected-after-upgrading-bitbucket-data-center-1455430278.html>):
//!   only `/rest/...` paths are used, and a login page is Unauthorized.
//!
//! Requests per verification: 1 or 2 from a token's second verification on, in one round trip:
//! `GET /rest/api/1.0/repos?limit=1` (the scope check, and its `X-AUSERNAME` says who) and
//! `GET /rest/api/1.0/users/{slug}` (display name, e-mail), whose path needs the user name:
//! it is remembered from the token's last verification (a token hint, [`super::memory`]), so
//! only a token's first verification asks for the details one round trip later.
//! `application-properties` (the version) is the same for every token: asked once per instance
//! per [`super::memory::INSTANCE_FACTS_TTL`], alongside.
//!
//! Not confirmed by the documentation: the body of a 401 for an *expired* token (a body that
//! says "expired" is TokenExpired, any other 401 Unauthorized), and when Data Center answers
//! 403 to a token; here a 401/403 on listing repositories after the token authenticated is
//! InsufficientScope, and user details that cannot be read are simply left out. The token's
//! expiry and permissions are not revealed to the token itself (managing tokens needs a
//! password), so `tokenScopes` and `tokenExpiresAt` stay unset.
//!
//! # Bitbucket Cloud
//!
//! Documentation followed:
//! - API tokens: <https://support.atlassian.com/bitbucket-cloud/docs/using-api-tokens/> — used
//!   with HTTP Basic auth as `ATLASSIAN_ACCOUNT_EMAIL:API_TOKEN` for the REST API, so
//!   `spec.username` is required; they carry scopes such as `read:user:bitbucket`.
//! - Users API: <https://developer.atlassian.com/cloud/bitbucket/rest/api-group-users/> —
//!   `GET /2.0/user` (`display_name`, `username`, `nickname`, `account_id`, `uuid`) needs the
//!   account / `read:user:bitbucket` scope; `GET /2.0/user/emails`
//!   (`values[].email`, `is_primary`, `is_confirmed`) needs the email scope.
//! - 401 for credentials that are not accepted:
//!   <https://support.atlassian.com/bitbucket-cloud/kb/getting-401-http-error-while-authenticating-to-bitbucket-cloud-rest-apis/>;
//!   403 `{"type":"error","error":{"message":...}}` for a token lacking the scope.
//!
//! Requests per verification: 2, or 1 for a token that may not read its e-mail addresses (a
//! token hint, [`super::memory`]), in one round trip: `GET /2.0/user` and `GET /2.0/user/emails`
//! do not depend on each other and go out together.
//!
//! Not confirmed by the documentation: whether API tokens get an `X-OAuth-Scopes` header (OAuth
//! access tokens do); it is read when present and `tokenScopes` is left out otherwise.
//! The server version is not revealed by the cloud.
//!
//! # Where Bitbucket Cloud requests go, and how tests replace it
//!
//! `spec.url` `https://bitbucket.org` (or `https://api.bitbucket.org`) means the cloud, whose
//! API is `https://api.bitbucket.org/2.0`; any other URL is a Server / Data Center instance.
//! Like [`super::github`], the cloud API root is a field: [`BITBUCKET`] uses
//! `https://api.bitbucket.org`, [`Bitbucket::with_cloud_api`] builds a provider whose cloud
//! requests go to a local test server (paths `/2.0/...` beneath it). Only code can build such
//! a provider, so no spec can point Basic credentials at a host of its choosing while being
//! reported as Cloud.

use super::http::{Auth, HttpClient, HttpResponse};
use super::memory::{Hint, InstanceFacts, instance_key};
use super::{Facts, Provider, Target, Verification, host_port, join, non_empty};
use crate::api::{AuthenticatedUser, Deployment, ProviderKind, ReadyReason};
use futures::future::BoxFuture;
use reqwest::{StatusCode, Url};
use serde::Deserialize;

const KIND: ProviderKind = ProviderKind::Bitbucket;
const CLOUD_API: &str = "https://api.bitbucket.org";

/// Bitbucket, with the API root used for bitbucket.org.
pub struct Bitbucket {
    cloud_api: Option<Url>,
}

/// The Bitbucket provider as deployed: bitbucket.org goes to `https://api.bitbucket.org`.
pub static BITBUCKET: Bitbucket = Bitbucket { cloud_api: None };

impl Bitbucket {
    /// A Bitbucket provider that sends bitbucket.org requests to `api_root` (beneath which the
    /// `/2.0/...` paths are requested) instead of `https://api.bitbucket.org`.
    pub fn with_cloud_api(api_root: Url) -> Bitbucket {
        Bitbucket {
            cloud_api: Some(api_root),
        }
    }

    pub fn cloud_root(&self) -> String {
        match &self.cloud_api {
            Some(root) => root.as_str().trim_end_matches('/').to_owned(),
            None => CLOUD_API.to_owned(),
        }
    }
}

fn is_cloud(base_url: &Url) -> bool {
    base_url
        .host_str()
        .is_some_and(|h| h.eq_ignore_ascii_case("bitbucket.org") || h.eq_ignore_ascii_case("api.bitbucket.org"))
}

fn blank(value: Option<&str>) -> bool {
    value.is_none_or(|v| v.trim().is_empty())
}

// ---- Server / Data Center -------------------------------------------------------------

#[derive(Deserialize)]
struct ApplicationProperties {
    #[serde(default)]
    version: Option<String>,
}

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
        super::excerpt(
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
    let said = if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    };
    Verification::failed(
        ReadyReason::Unauthorized,
        format!(
            "Bitbucket rejected the token on {what} (HTTP {}{said}); check that the Secret holds a valid HTTP access token",
            response.status.as_u16()
        ),
    )
}

fn path_segment(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// The instance's version, asked once per instance per [`super::memory::INSTANCE_FACTS_TTL`]
/// (`application-properties` is the same for every token): nice to know, never a reason to fail.
async fn learn_version(http: &HttpClient, target: &Target, auth: Auth<'_>) -> InstanceFacts {
    let mut facts = InstanceFacts::default();
    if let Ok(url) = target.endpoint("/rest/api/1.0/application-properties")
        && let Ok(response) = http.get(&url, auth, &target.tls).await
        && response.status == StatusCode::OK
        && let Ok(properties) = response.json::<ApplicationProperties>()
    {
        facts.server_version = non_empty(properties.version);
    }
    facts
}

/// The display name and e-mail of `username`: nice to know, not needed (project and repository
/// tokens act as service users without a readable profile).
async fn user_details(http: &HttpClient, target: &Target, auth: Auth<'_>, username: &str) -> Option<ServerUser> {
    let get = |path: String| async move {
        let url = target.endpoint(&path)?;
        http.get(&url, auth, &target.tls).await
    };
    match get(format!("/rest/api/1.0/users/{}", path_segment(username))).await {
        Ok(response) if response.status == StatusCode::OK => response.json::<ServerUser>().ok(),
        Ok(response) if response.status == StatusCode::NOT_FOUND => {
            // The slug differs from the name (e.g. characters a URL cannot hold): search by name.
            match get(format!(
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

async fn verify_server(http: &HttpClient, target: &Target, key: &str) -> Verification {
    let auth = Auth::Bearer(&target.token);
    let memory = http.memory();
    let mut facts = Facts {
        deployment: Some(Deployment::SelfHosted),
        ..Facts::default()
    };

    // One round trip: the repositories (the scope check; its X-AUSERNAME says who), the
    // version when not remembered, and the user's details when this token's user name is
    // remembered from its last verification.
    let hinted = match memory.hint(key, &target.token) {
        Some(Hint::Username(name)) => Some(name),
        _ => None,
    };
    const REPOS: &str = "GET /rest/api/1.0/repos";
    let (instance, response, details) = futures::join!(
        memory.instance_facts(key, || learn_version(http, target, auth)),
        async {
            let url = target.endpoint("/rest/api/1.0/repos?limit=1")?;
            http.get(&url, auth, &target.tls).await
        },
        async {
            match &hinted {
                Some(name) => Some(user_details(http, target, auth, name).await),
                None => None,
            }
        },
    );
    facts.server_version = instance.server_version;
    let response = match response {
        Ok(response) => response,
        Err(error) => return Verification::from_http_error(KIND, &error),
    };
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
            return anonymous().with_facts(facts);
        }
        (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN, _) => {
            return server_rejected(REPOS, &response).with_facts(facts);
        }
        (StatusCode::OK, None) if response.json::<serde_json::Value>().is_ok() => {}
        _ => return Verification::unexpected_answer(KIND, REPOS, &response),
    }
    let Some(username) = username else {
        return anonymous().with_facts(facts);
    };
    // The first verification of a token learns its name here, and its details one round trip
    // later; the next ones ask for them together with the rest.
    let details = match details {
        Some(details) if hinted.as_deref() == Some(username.as_str()) => details,
        _ => user_details(http, target, auth, &username).await,
    };
    memory.remember_hint(key, &target.token, Hint::Username(username.clone()));
    facts.user = Some(match details {
        Some(details) => AuthenticatedUser {
            username: Some(username.clone()),
            display_name: non_empty(details.display_name),
            email: non_empty(details.email_address),
        },
        None => AuthenticatedUser {
            username: Some(username.clone()),
            ..AuthenticatedUser::default()
        },
    });

    if response.status == StatusCode::FORBIDDEN {
        let text = ServerErrors::text(&response);
        let said = if text.is_empty() {
            String::new()
        } else {
            format!(": {text}")
        };
        return Verification::failed(
            ReadyReason::InsufficientScope,
            format!(
                "the token authenticates as {username} but may not list repositories (HTTP 403{said}); give it at least repository read permission"
            ),
        )
        .with_facts(facts);
    }
    if response.json::<serde_json::Value>().is_err() {
        return Verification::unexpected_answer(KIND, REPOS, &response).with_facts(facts);
    }

    let on = match &facts.server_version {
        Some(version) => format!("Bitbucket Data Center {version}"),
        None => format!("Bitbucket at {}", target.base_url),
    };
    Verification::verified(format!("authenticated as {username} on {on}"), facts)
}

// ---- Cloud ----------------------------------------------------------------------------

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
    super::excerpt(&body.error.and_then(|e| e.message).unwrap_or_default())
}

/// Scopes, if the answer names them (`X-OAuth-Scopes`, comma or space separated).
fn cloud_scopes(response: &HttpResponse) -> Option<Vec<String>> {
    let header = response.header("x-oauth-scopes")?;
    Some(
        header
            .split([',', ' '])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
    )
}

impl Bitbucket {
    async fn verify_cloud(&self, http: &HttpClient, target: &Target) -> Verification {
        if let Err(message) = self.check_spec(&target.base_url, target.username.as_deref()) {
            return Verification::failed(ReadyReason::InvalidSpec, message);
        }
        let email = target.username.as_deref().unwrap_or_default().trim();
        let auth = Auth::Basic {
            user: email,
            token: &target.token,
        };
        let root = self.cloud_root();
        let get = |path: &'static str| {
            let root = root.clone();
            async move {
                let url = join(&root, path)?;
                http.get(&url, auth, &target.tls).await
            }
        };
        let mut facts = Facts {
            deployment: Some(Deployment::Cloud),
            ..Facts::default()
        };

        // One round trip: the e-mail list goes out with /2.0/user unless this token's last
        // verification could not read it.
        let key = instance_key(KIND, &root);
        let memory = http.memory();
        let ask_emails = memory.hint(&key, &target.token) != Some(Hint::ReadEmails(false));
        let (response, emails) = futures::join!(get("/2.0/user"), async {
            match ask_emails {
                true => Some(get("/2.0/user/emails").await),
                false => None,
            }
        });
        const USER: &str = "GET /2.0/user";
        let response = match response {
            Ok(response) => response,
            Err(error) => return Verification::from_http_error(KIND, &error),
        };
        let user = match response.status {
            StatusCode::OK => match response.json::<CloudUser>() {
                Ok(user) => user,
                Err(_) => return Verification::unexpected_answer(KIND, USER, &response),
            },
            StatusCode::UNAUTHORIZED => {
                let text = cloud_error_text(&response);
                if text.to_ascii_lowercase().contains("expired") {
                    return Verification::failed(
                        ReadyReason::TokenExpired,
                        format!(
                            "Bitbucket Cloud says the API token has expired ({text}); create a new one and update the Secret"
                        ),
                    );
                }
                return Verification::failed(
                    ReadyReason::Unauthorized,
                    format!(
                        "Bitbucket Cloud rejected the credentials on {USER} (HTTP 401): check that spec.username is the Atlassian account email ({email}) and that the Secret holds a valid API token of that account"
                    ),
                );
            }
            StatusCode::FORBIDDEN => {
                let text = cloud_error_text(&response);
                let said = if text.is_empty() {
                    String::new()
                } else {
                    format!(": {text}")
                };
                return Verification::failed(
                    ReadyReason::InsufficientScope,
                    format!(
                        "Bitbucket Cloud refused {USER} (HTTP 403{said}); the API token needs the read:user:bitbucket scope — create a token with it"
                    ),
                )
                .with_facts(facts);
            }
            _ => return Verification::unexpected_answer(KIND, USER, &response),
        };
        facts.scopes = cloud_scopes(&response);

        // The e-mail, when the token may read it.
        let mut address = None;
        let mut readable = false;
        if let Some(Ok(response)) = emails
            && response.status == StatusCode::OK
            && let Ok(emails) = response.json::<CloudEmails>()
        {
            readable = true;
            address = emails
                .values
                .into_iter()
                .find(|e| e.is_primary && e.is_confirmed)
                .and_then(|e| non_empty(Some(e.email)));
        }
        memory.remember_hint(&key, &target.token, Hint::ReadEmails(readable));
        let username = non_empty(user.username)
            .or(non_empty(user.nickname))
            .or(non_empty(user.account_id));
        facts.user = Some(AuthenticatedUser {
            username: username.clone(),
            display_name: non_empty(user.display_name),
            email: address,
        });
        let who = username.unwrap_or_else(|| email.to_owned());
        Verification::verified(format!("authenticated as {who} on Bitbucket Cloud"), facts)
    }
}

/// Whether `base_url` is the provider's cloud service or a self-hosted server.
pub fn deployment(base_url: &Url) -> Deployment {
    if is_cloud(base_url) {
        Deployment::Cloud
    } else {
        Deployment::SelfHosted
    }
}

impl Provider for Bitbucket {
    fn api_host(&self, base_url: &Url) -> String {
        let api = is_cloud(base_url)
            .then(|| Url::parse(&self.cloud_root()).ok())
            .flatten();
        host_port(api.as_ref().unwrap_or(base_url))
    }

    fn check_spec(&self, base_url: &Url, username: Option<&str>) -> Result<(), String> {
        if is_cloud(base_url) && blank(username) {
            return Err(
                "Bitbucket Cloud needs spec.username: set it to the Atlassian account email that owns the API token"
                    .to_owned(),
            );
        }
        Ok(())
    }

    fn prove<'a>(&'a self, http: &'a HttpClient, target: &'a Target) -> BoxFuture<'a, Verification> {
        Box::pin(async move {
            if is_cloud(&target.base_url) {
                self.verify_cloud(http, target).await
            } else {
                let key = instance_key(KIND, target.base_url.as_str());
                verify_server(http, target, &key).await.settle(http, &key)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        s.parse().unwrap()
    }

    #[test]
    fn cloud_needs_a_username() {
        let err = BITBUCKET.check_spec(&url("https://bitbucket.org"), None).unwrap_err();
        assert!(err.contains("spec.username"), "{err}");
        assert!(BITBUCKET.check_spec(&url("https://bitbucket.org"), Some("  ")).is_err());
        assert!(
            BITBUCKET
                .check_spec(&url("https://bitbucket.org"), Some("me@example.com"))
                .is_ok()
        );
        assert!(BITBUCKET.check_spec(&url("https://git.example.com"), None).is_ok());
    }

    #[test]
    fn deployment_and_roots() {
        assert_eq!(deployment(&url("https://bitbucket.org")), Deployment::Cloud);
        assert_eq!(deployment(&url("https://api.bitbucket.org")), Deployment::Cloud);
        assert_eq!(
            deployment(&url("https://bb.example.com/bitbucket")),
            Deployment::SelfHosted
        );
        assert_eq!(BITBUCKET.cloud_root(), "https://api.bitbucket.org");
        assert_eq!(
            Bitbucket::with_cloud_api(url("http://127.0.0.1:1/")).cloud_root(),
            "http://127.0.0.1:1"
        );
    }

    #[test]
    fn slugs_are_escaped() {
        assert_eq!(path_segment("jane doe"), "jane%20doe");
        assert_eq!(path_segment("a/b"), "a%2Fb");
    }
}
