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
//! it is remembered from the token's last verification (a token hint, [`super::memory`]), or
//! taken from `spec.username` before that, else from the user the status named (an operator
//! that restarted), so only a connection's first verification without a (right)
//! `spec.username` asks for the details one round trip later.
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

mod cloud;
mod server;

pub use server::server_api;

use super::http::HttpClient;
use super::request::remembered;
use super::{Provider, Target, Verification, host_port};
use crate::api::{Deployment, ProviderKind};
use futures::future::BoxFuture;
use reqwest::Url;
use server::verify_server;

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

pub(super) fn is_cloud(base_url: &Url) -> bool {
    base_url
        .host_str()
        .is_some_and(|h| h.eq_ignore_ascii_case("bitbucket.org") || h.eq_ignore_ascii_case("api.bitbucket.org"))
}

fn blank(value: Option<&str>) -> bool {
    value.is_none_or(|v| v.trim().is_empty())
}

/// Whether `base_url` is the provider's cloud service or a self-hosted server.
pub fn deployment(base_url: &Url) -> Deployment {
    Deployment::cloud_if(is_cloud(base_url))
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
                self.verify_cloud(http, target).await.unwrap_or_else(|failed| failed)
            } else {
                remembered(server_api(http, target), verify_server).await
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::request::path_segment;
    use crate::providers::url;

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
    fn cloud_roots() {
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
