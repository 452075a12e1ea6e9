//! GitHub: github.com and GitHub Enterprise Server (GHES).
//!
//! Documentation followed:
//! - Users API, `GET /user`: <https://docs.github.com/en/rest/users/users#get-the-authenticated-user>
//!   — `login`, `name`, `email` (may be `null`: only a public address, or none); 401 "Requires
//!   authentication", 403 "Forbidden"; fine-grained tokens need no permission for it.
//! - Emails API, `GET /user/emails`:
//!   <https://docs.github.com/en/rest/users/emails#list-email-addresses-for-the-authenticated-user>
//!   — classic tokens need `user:email` (or `user`), fine-grained ones "Email addresses" (read);
//!   answers `[{"email","primary","verified","visibility"}]`, 403/404 without the permission.
//! - Scopes: <https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/scopes-for-oauth-apps>
//!   — `X-OAuth-Scopes: repo, user` lists a classic token's scopes; fine-grained tokens have no
//!   scopes and send no such header (then `tokenScopes` is left out).
//! - Token expiry: the `GitHub-Authentication-Token-Expiration` response header, announced with
//!   PAT expiration (<https://github.blog/changelog/2021-07-26-expiration-options-for-personal-access-tokens/>),
//!   format `2027-01-31 00:00:00 UTC` (also seen with a numeric offset, `+0900`).
//! - Rate limits: <https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api>
//!   — exceeding one answers 403 or 429 with `x-ratelimit-remaining: 0` (primary) or a
//!   "secondary rate limit" message / `retry-after` (secondary). Not a token problem: the
//!   HTTP client tells them apart ([`super::rate_limit`]) before this module sees a 403.
//! - Authentication: <https://docs.github.com/en/rest/authentication/authenticating-to-the-rest-api>
//!   — `Authorization: Bearer TOKEN`; a bad token answers 401 `{"message":"Bad credentials"}`
//!   (GHES may say "Must authenticate to access this API.", so only the status is relied on).
//! - GHES: API root `http(s)://HOSTNAME/api/v3`; the version is in the `X-GitHub-Enterprise-Version`
//!   response header (<https://docs.github.com/en/enterprise-server@3.10/rest/enterprise-admin>).
//! - Media type and API version headers (`Accept: application/vnd.github+json`,
//!   `X-GitHub-Api-Version: 2022-11-28`): <https://docs.github.com/en/rest/about-the-rest-api/api-versions>.
//!
//! # Requests per verification: 1 or 2, in one round trip
//!
//! `GET /user` proves the token and carries everything else in its headers (scopes, expiry,
//! the GHES version), so there is no instance fact to remember. The e-mail is in `/user` only
//! when public; otherwise `GET /user/emails` has it, if the token may read it. Whether it is
//! worth asking is known only after `/user`, so it goes out *with* `/user` on a token's first
//! verification, and afterwards only while the last one found it useful (a token hint, see
//! [`super::memory`]): 1 request for a token whose e-mail is public or unreadable, 2 for one
//! whose e-mail comes from the list, always one round trip.
//!
//! Not confirmed by the documentation: what an expired token gets exactly. GitHub documents
//! that an expired token stops working; in practice `/user` then answers 401 "Bad credentials"
//! without an expiry header, which is indistinguishable from a revoked token (Unauthorized).
//! Only an expiry header in the past is reported as TokenExpired.
//!
//! # Where github.com requests go, and how tests replace it
//!
//! `spec.url` `https://github.com` (or `https://api.github.com`) means the cloud service, whose
//! API lives on another host, `https://api.github.com`; any other URL is a GHES instance whose
//! API is `{url}/api/v3` (a `spec.url` that already ends in `/api/v3` is used as it is). The
//! cloud API root is a field of [`GitHub`]: [`GITHUB`], which [`super::provider`] hands out,
//! uses `https://api.github.com`; [`GitHub::with_cloud_api`] builds one that sends github.com
//! requests to another root — a local test server. The URL mapping stays the real one (tests
//! verify `https://github.com` and see the requests arrive at `/user` on their server), and no
//! spec value can redirect a token: only code constructs such a provider. Treating hosts that
//! merely look like `api.github.*` as the cloud API would let a spec send github.com-style
//! requests anywhere and still call it Cloud, so that was not done.

use super::http::{Auth, HttpClient, HttpResponse};
use super::request::{Api, message, oauth_scopes};
use super::{Facts, Provider, Target, Verification, account, host_port, non_empty};
use crate::api::{Deployment, ProviderKind, ReadyReason};
use futures::future::BoxFuture;
use reqwest::{StatusCode, Url};
use serde::Deserialize;

const KIND: ProviderKind = ProviderKind::GitHub;
const USER: &str = "GET /user";
const USER_PATH: &str = "/user";
const EMAILS_PATH: &str = "/user/emails";
const CLOUD_API: &str = "https://api.github.com";
const HEADERS: &[(&str, &str)] = &[
    ("accept", "application/vnd.github+json"),
    ("x-github-api-version", "2022-11-28"),
];

/// GitHub, with the API root used for github.com.
pub struct GitHub {
    cloud_api: Option<Url>,
}

/// The GitHub provider as deployed: github.com goes to `https://api.github.com`.
pub static GITHUB: GitHub = GitHub { cloud_api: None };

impl GitHub {
    /// A GitHub provider that sends github.com requests to `api_root` instead of
    /// `https://api.github.com` (for tests: a local server standing in for the cloud API).
    pub fn with_cloud_api(api_root: Url) -> GitHub {
        GitHub {
            cloud_api: Some(api_root),
        }
    }

    /// The REST API root for `spec.url`, without a trailing slash.
    pub fn api_root(&self, base_url: &Url) -> String {
        if is_cloud(base_url) {
            return match &self.cloud_api {
                Some(root) => root.as_str().trim_end_matches('/').to_owned(),
                None => CLOUD_API.to_owned(),
            };
        }
        let base = base_url.as_str().trim_end_matches('/');
        if base_url.path().trim_end_matches('/').ends_with("/api/v3") {
            base.to_owned()
        } else {
            format!("{base}/api/v3")
        }
    }
}

fn is_cloud(base_url: &Url) -> bool {
    base_url
        .host_str()
        .is_some_and(|h| h.eq_ignore_ascii_case("github.com") || h.eq_ignore_ascii_case("api.github.com"))
}

#[derive(Deserialize)]
struct User {
    login: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    email: Option<String>,
}

#[derive(Deserialize)]
struct Email {
    email: String,
    #[serde(default)]
    primary: bool,
    #[serde(default)]
    verified: bool,
}

/// `GitHub-Authentication-Token-Expiration`: `2027-01-31 00:00:00 UTC`, `2027-03-31 00:00:00 +0900`,
/// or RFC 3339.
pub fn parse_expiry(text: &str) -> Option<jiff::Timestamp> {
    let text = text.trim();
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return Some(ts);
    }
    let (datetime, zone) = text.rsplit_once(' ')?;
    let datetime: jiff::civil::DateTime = datetime.trim().replacen(' ', "T", 1).parse().ok()?;
    let offset = match zone.trim() {
        z if z.eq_ignore_ascii_case("UTC") || z.eq_ignore_ascii_case("GMT") || z == "Z" => jiff::tz::Offset::UTC,
        z => parse_offset(z)?,
    };
    datetime
        .to_zoned(jiff::tz::TimeZone::fixed(offset))
        .ok()
        .map(|z| z.timestamp())
}

/// `+0900`, `-07:00`, `+09`.
fn parse_offset(text: &str) -> Option<jiff::tz::Offset> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) || !matches!(digits.len(), 2 | 4) {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = if digits.len() == 4 {
        digits[2..].parse().ok()?
    } else {
        0
    };
    jiff::tz::Offset::from_seconds(sign * (hours * 3600 + minutes * 60)).ok()
}

fn expiry(response: &HttpResponse) -> Option<jiff::Timestamp> {
    response
        .header("github-authentication-token-expiration")
        .and_then(parse_expiry)
}

fn expired(at: Option<jiff::Timestamp>) -> bool {
    at.is_some_and(|at| at <= jiff::Timestamp::now())
}

fn expired_verification(at: jiff::Timestamp) -> Verification {
    Verification::failed(
        ReadyReason::TokenExpired,
        format!("GitHub says the token expired at {at}; create a new token and update the Secret"),
    )
}

fn product(target: &Target, version: Option<&str>) -> String {
    match (is_cloud(&target.base_url), version) {
        (true, _) => "GitHub.com".to_owned(),
        (false, Some(version)) => format!("GitHub Enterprise Server {version}"),
        (false, None) => format!("GitHub Enterprise Server at {}", target.base_url),
    }
}

impl GitHub {
    /// The REST API for `spec.url` ([`GitHub::api_root`]), the token sent as a Bearer token
    /// with the media type and API version GitHub asks for.
    pub fn api<'a>(&self, http: &'a HttpClient, target: &'a Target) -> Api<'a> {
        Api::new(KIND, http, target, Auth::Bearer(&target.token))
            .beneath(self.api_root(&target.base_url))
            .with_headers(HEADERS)
    }

    async fn run(&self, http: &HttpClient, target: &Target) -> Result<Verification, Verification> {
        let api = self.api(http, target);
        let mut facts = Facts::on(deployment(&target.base_url));

        // One round trip: the e-mail list goes out with /user unless this token's last
        // verification found it of no use (public e-mail, or not readable).
        let (response, emails) = api.get_beside_emails(USER_PATH, EMAILS_PATH).await;
        let response = api.answered(response)?;
        facts.expires_at = expiry(&response);
        facts.server_version = non_empty(response.header("x-github-enterprise-version").map(str::to_owned));
        let user: User = match response.status {
            StatusCode::OK => api.json(USER, &response)?,
            StatusCode::UNAUTHORIZED => {
                if let Some(at) = facts.expires_at.filter(|at| expired(Some(*at))) {
                    return Err(expired_verification(at).with_facts(facts));
                }
                let said = match message(&response) {
                    said if said.is_empty() => said,
                    said => format!(" ({said})"),
                };
                return Err(Verification::failed(
                    ReadyReason::Unauthorized,
                    format!(
                        "GitHub rejected the token on GET /user (HTTP 401{said}): it is invalid, expired or revoked; create a new personal access token and update the Secret"
                    ),
                )
                .with_facts(facts));
            }
            StatusCode::FORBIDDEN | StatusCode::TOO_MANY_REQUESTS => {
                if response.json::<serde_json::Value>().is_err() {
                    return Err(api.unexpected(USER, &response));
                }
                return Err(Verification::refused(
                    "GitHub refused GET /user for this token",
                    StatusCode::FORBIDDEN,
                    &message(&response),
                    "check the token's permissions and the account's state",
                )
                .with_facts(facts));
            }
            _ => return Err(api.unexpected(USER, &response)),
        };
        facts.scopes = oauth_scopes(&response);

        // The e-mail: /user shows only a public one; /user/emails needs user:email (classic) or
        // the "Email addresses" permission (fine-grained, whose permissions cannot be seen).
        let email = non_empty(user.email.clone());
        let needs_emails = email.is_none()
            && match &facts.scopes {
                Some(scopes) => scopes.iter().any(|s| s == "user" || s == "user:email"),
                None => true,
            };
        let emails = match emails {
            Some(emails) => Some(emails),
            // The hint is stale for a classic token whose scopes now allow the list: ask.
            None if needs_emails && facts.scopes.is_some() => Some(api.get(EMAILS_PATH).await),
            None => None,
        };
        let listed = api.read_emails(emails.filter(|_| needs_emails), |emails: Vec<Email>| {
            emails.into_iter().find(|e| e.primary && e.verified).map(|e| e.email)
        });
        facts.user = Some(account(Some(user.login.clone()), user.name, email.or(listed)));

        if let Some(at) = facts.expires_at.filter(|at| expired(Some(*at))) {
            return Err(expired_verification(at).with_facts(facts));
        }

        // A classic token that cannot read any repository is of no use as a Git connection.
        if let Some(scopes) = &facts.scopes
            && !scopes.iter().any(|s| s == "repo" || s == "public_repo")
        {
            let list = if scopes.is_empty() {
                "no scopes".to_owned()
            } else {
                format!("the scopes [{}]", scopes.join(", "))
            };
            return Err(Verification::failed(
                ReadyReason::InsufficientScope,
                format!(
                    "the token authenticates as {} but has {list}, without repo or public_repo; add repo (or public_repo for public repositories only) or create a new token",
                    user.login
                ),
            )
            .with_facts(facts));
        }

        let on = product(target, facts.server_version.as_deref());
        Ok(Verification::authenticated(user.login, on, facts))
    }
}

/// Whether `base_url` is the provider's cloud service or a self-hosted server.
pub fn deployment(base_url: &Url) -> Deployment {
    Deployment::cloud_if(is_cloud(base_url))
}

impl Provider for GitHub {
    fn api_host(&self, base_url: &Url) -> String {
        Url::parse(&self.api_root(base_url)).map_or_else(|_| host_port(base_url), |api| host_port(&api))
    }

    fn prove<'a>(&'a self, http: &'a HttpClient, target: &'a Target) -> BoxFuture<'a, Verification> {
        Box::pin(async move { self.run(http, target).await.unwrap_or_else(|failed| failed) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_roots() {
        use crate::providers::url;
        assert_eq!(GITHUB.api_root(&url("https://github.com")), "https://api.github.com");
        assert_eq!(
            GITHUB.api_root(&url("https://api.github.com")),
            "https://api.github.com"
        );
        assert_eq!(
            GITHUB.api_root(&url("https://ghe.example.com")),
            "https://ghe.example.com/api/v3"
        );
        assert_eq!(
            GITHUB.api_root(&url("https://ghe.example.com/api/v3")),
            "https://ghe.example.com/api/v3"
        );
        let test = GitHub::with_cloud_api(url("http://127.0.0.1:9/"));
        assert_eq!(test.api_root(&url("https://github.com")), "http://127.0.0.1:9");
        assert_eq!(
            test.api_root(&url("https://ghe.example.com")),
            "https://ghe.example.com/api/v3"
        );
    }
}
