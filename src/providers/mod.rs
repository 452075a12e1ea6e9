//! Verifying a token against a Git provider: one small trait, one file per provider, and the
//! HTTP client they share.

pub mod address_guard;
pub mod azure_devops;
pub mod bitbucket;
pub mod gitea;
pub mod github;
pub mod gitlab;
pub mod http;
pub mod http_error;
pub mod memory;
pub mod rate_limit;
pub mod request;
pub mod tls;

use crate::api::{AuthenticatedUser, Deployment, ProviderKind, ReadyReason};
use crate::token::Token;
use futures::future::BoxFuture;
use http::{HttpClient, HttpError, HttpResponse, TlsOptions};
use reqwest::Url;

/// Most characters of a provider's own words quoted in a message.
pub const MAX_EXCERPT_CHARS: usize = 200;
/// Most characters of a verification's message (the API server refuses a condition message over
/// 32,768; people read far less).
pub const MAX_MESSAGE_CHARS: usize = 1024;

/// A short excerpt of what a provider said, for a message: white space runs (line breaks
/// included) become one space, control characters go, and at most [`MAX_EXCERPT_CHARS`]
/// characters are kept (an ellipsis says when text was cut).
pub fn excerpt(text: &str) -> String {
    let flat = text
        .split(|c: char| c.is_whitespace() || c.is_control())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    cut(&flat, MAX_EXCERPT_CHARS)
}

/// What a provider said, as the tail of a message's parenthesis (`HTTP 403: …`): `: ` and its
/// [`excerpt`], or nothing when it said nothing.
pub fn said(text: &str) -> String {
    let text = excerpt(text);
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

/// `text` cut to at most `max` characters, the last of them an ellipsis when it was cut.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Verifies `target` with `provider`: the one entry point every caller (the controller, the
/// `verify` command) goes through. It applies the rules every provider shares once: a spec the
/// provider refuses ([`Provider::check_spec`]) is InvalidSpec without a request, one deadline,
/// the HTTP time-out (retries and `Retry-After` included), and no token leaves a verification
/// (see [`Verification::without_token`]).
pub async fn verify_within(provider: &dyn Provider, http: &HttpClient, target: &Target) -> Verification {
    if let Err(message) = provider.check_spec(&target.base_url, target.username.as_deref()) {
        return Verification::failed(ReadyReason::InvalidSpec, message).without_token(&target.token);
    }
    let within = http.config().timeout;
    let verification = match http::deadline::run(within, provider.prove(http, target)).await {
        Some(verification) => verification,
        None => Verification::failed(
            ReadyReason::Unreachable,
            format!(
                "{}: no answer within {within:?} (retries included)",
                target.base_url.host_str().unwrap_or("the instance")
            ),
        ),
    };
    verification.without_token(&target.token)
}

/// Everything needed to verify one token.
#[derive(Debug)]
pub struct Target {
    /// The instance's base URL, without a trailing slash.
    pub base_url: Url,
    pub token: Token,
    /// `spec.username`, for providers that need a login beside the token.
    pub username: Option<String>,
    /// The user the connection's status named after its last verification: a guess for a
    /// provider that gives a user's details only by name (Bitbucket Data Center), trusted only
    /// once the provider confirms it.
    pub last_user: Option<String>,
    pub tls: TlsOptions,
}

impl Target {
    /// `base_url` joined with an API path (`path` starts with `/`).
    pub fn endpoint(&self, path: &str) -> Result<Url, HttpError> {
        join(self.base_url.as_str(), path)
    }
}

/// What a provider revealed about the token. Anything it did not reveal stays `None`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    pub user: Option<AuthenticatedUser>,
    pub server_version: Option<String>,
    pub deployment: Option<Deployment>,
    pub scopes: Option<Vec<String>>,
    pub expires_at: Option<jiff::Timestamp>,
}

impl Facts {
    /// Nothing learned yet but where the instance runs (the cloud service or self-hosted).
    pub fn on(deployment: Deployment) -> Facts {
        Facts {
            deployment: Some(deployment),
            ..Facts::default()
        }
    }
}

/// The account a provider named, each part kept only when it is not blank.
pub(crate) fn account(
    username: Option<String>,
    display_name: Option<String>,
    email: Option<String>,
) -> AuthenticatedUser {
    AuthenticatedUser {
        username: non_empty(username),
        display_name: non_empty(display_name),
        email: non_empty(email),
    }
}

/// The outcome of one verification: the Ready reason, a message for people, and the facts
/// learned on the way (also on failure: an expired token still has a known expiry).
#[derive(Debug, Clone, PartialEq)]
pub struct Verification {
    pub reason: ReadyReason,
    pub message: String,
    pub facts: Facts,
    /// The instance rate-limited the token: when it takes its requests again.
    pub retry_at: Option<jiff::Timestamp>,
}

impl Verification {
    pub fn verified(message: impl Into<String>, facts: Facts) -> Verification {
        Verification {
            reason: ReadyReason::Verified,
            message: message.into(),
            facts,
            retry_at: None,
        }
    }

    /// The token proved itself: it authenticates as `who` on `on` (the product, its version or
    /// address).
    pub fn authenticated(who: impl std::fmt::Display, on: impl std::fmt::Display, facts: Facts) -> Verification {
        Verification::verified(format!("authenticated as {who} on {on}"), facts)
    }

    pub fn failed(reason: ReadyReason, message: impl Into<String>) -> Verification {
        Verification {
            reason,
            message: message.into(),
            facts: Facts::default(),
            retry_at: None,
        }
    }

    pub fn with_facts(mut self, facts: Facts) -> Verification {
        self.facts = facts;
        self
    }

    /// Replaces the token in the message, should an instance have echoed it back in an error
    /// body that the message quotes, and bounds the message to [`MAX_MESSAGE_CHARS`].
    /// [`verify_within`] applies it to every verification.
    pub fn without_token(mut self, token: &Token) -> Verification {
        token.redact(&mut self.message);
        if self.message.chars().count() > MAX_MESSAGE_CHARS {
            self.message = cut(&self.message, MAX_MESSAGE_CHARS);
        }
        self
    }

    /// Forgets what is remembered about the instance (`key`) when this outcome says the
    /// instance answered differently: unreachable, another TLS identity, not its API, failing.
    pub(crate) fn settle(self, http: &HttpClient, key: &str) -> Verification {
        if self.retry_at.is_none()
            && matches!(
                self.reason,
                ReadyReason::Unreachable
                    | ReadyReason::TlsError
                    | ReadyReason::EndpointNotFound
                    | ReadyReason::ProviderError
            )
        {
            http.memory().forget_instance(key);
        }
        self
    }

    /// The instance refused `what` to the token with `status`: it lacks a scope or permission.
    /// `provider_said` is quoted after the status, `advice` says what to do.
    pub fn refused(
        what: impl std::fmt::Display,
        status: reqwest::StatusCode,
        provider_said: &str,
        advice: &str,
    ) -> Verification {
        Verification::failed(
            ReadyReason::InsufficientScope,
            format!("{what} (HTTP {}{}); {advice}", status.as_u16(), said(provider_said)),
        )
    }

    /// A rate-limited token: not a token problem; verified again after `until`.
    pub fn rate_limited(message: impl std::fmt::Display, until: jiff::Timestamp) -> Verification {
        Verification {
            retry_at: Some(until),
            ..Verification::failed(
                ReadyReason::ProviderError,
                format!("{message}; this is not a token problem: it is verified again after that"),
            )
        }
    }

    /// A request that got no usable answer, mapped to its reason.
    pub fn from_http_error(provider: ProviderKind, error: &HttpError) -> Verification {
        if let HttpError::RateLimited { until, .. } = error {
            return Verification::rate_limited(error, *until);
        }
        let reason = match error {
            HttpError::Tls { .. } => ReadyReason::TlsError,
            HttpError::Dns { .. } | HttpError::Connect { .. } | HttpError::Timeout { .. } => ReadyReason::Unreachable,
            HttpError::Unavailable { .. } | HttpError::Other { .. } | HttpError::RateLimited { .. } => {
                ReadyReason::ProviderError
            }
            HttpError::BodyTooLarge { .. } => ReadyReason::EndpointNotFound,
            HttpError::InvalidUrl { .. } | HttpError::AddressRefused(_) | HttpError::InvalidCaBundle(_) => {
                ReadyReason::InvalidSpec
            }
        };
        let hint = match reason {
            ReadyReason::EndpointNotFound => format!("; is this a {provider} URL?"),
            _ => String::new(),
        };
        Verification::failed(reason, format!("{error}{hint}"))
    }

    /// An answer that is not what the provider's API documents for this status, mapped to a
    /// reason: a sign-in page means the token was not accepted, anything else means the URL
    /// does not serve this provider's API.
    pub fn unexpected_answer(provider: ProviderKind, what: &str, response: &HttpResponse) -> Verification {
        if response.is_login_page() {
            return Verification::failed(
                ReadyReason::Unauthorized,
                format!(
                    "{what} at {} answered HTTP {} with a sign-in page instead of the {provider} API: the token was not accepted",
                    response.url,
                    response.status.as_u16()
                ),
            );
        }
        let body = request::what_came_back(response);
        Verification::failed(
            ReadyReason::EndpointNotFound,
            format!(
                "{what} at {} answered HTTP {} with {body}, not the {provider} API; check spec.url",
                response.url,
                response.status.as_u16()
            ),
        )
    }
}

/// One Git provider product.
pub trait Provider: Send + Sync {
    /// Spec problems only this provider knows about (e.g. Bitbucket Cloud needs a username).
    /// Used by the controller and by admission.
    fn check_spec(&self, _base_url: &Url, _username: Option<&str>) -> Result<(), String> {
        Ok(())
    }

    /// The instance the requests for `base_url` really go to, as `host:port`: the per-host cap
    /// and rate-limit holds count by it (github.com and api.github.com are one instance).
    fn api_host(&self, base_url: &Url) -> String {
        host_port(base_url)
    }

    /// Proves the token against the instance and reports what the instance revealed. Callers go
    /// through [`verify_within`], which bounds it in time and takes the token out of the result.
    fn prove<'a>(&'a self, http: &'a HttpClient, target: &'a Target) -> BoxFuture<'a, Verification>;
}

/// The implementation of a provider.
pub fn provider(kind: ProviderKind) -> &'static dyn Provider {
    match kind {
        ProviderKind::GitLab => &gitlab::GitLab,
        ProviderKind::Bitbucket => &bitbucket::BITBUCKET,
        ProviderKind::AzureDevOps => &azure_devops::AzureDevOps,
        ProviderKind::GitHub => &github::GITHUB,
        ProviderKind::Gitea => &gitea::Gitea,
    }
}

/// `host:port` of a URL, the port explicit.
pub fn host_port(url: &Url) -> String {
    format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or_default()
    )
}

/// `Some(text)` unless it is missing or blank.
pub(crate) fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// `base` (no trailing slash) followed by `path` (starting with `/`), as a URL.
pub(crate) fn join(base: &str, path: &str) -> Result<Url, HttpError> {
    let joined = format!("{}{}", base.trim_end_matches('/'), path);
    Url::parse(&joined).map_err(|e| HttpError::InvalidUrl {
        url: joined,
        reason: e.to_string(),
    })
}

/// Why `spec.url` cannot be used. Every message starts with "url", so that it reads as a
/// field's problem after `spec.` or `--`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadUrl {
    #[error("url {raw:?} is not a valid URL: {reason}")]
    Invalid { raw: String, reason: String },
    #[error("url {raw:?} must use https:// (or http://)")]
    Scheme { raw: String },
    #[error("url {raw:?} has no host")]
    NoHost { raw: String },
    #[error("url must not contain user info; put the token in the Secret")]
    UserInfo,
    #[error("url {raw:?} must not contain a query")]
    Query { raw: String },
    #[error("url {raw:?} must not contain a fragment")]
    Fragment { raw: String },
}

/// Parses and normalises `spec.url`: absolute http(s), a host, no user info, query or fragment,
/// trailing slash removed.
pub fn parse_base_url(raw: &str) -> Result<Url, BadUrl> {
    let owned = || raw.to_owned();
    let url = Url::parse(raw.trim()).map_err(|e| BadUrl::Invalid {
        raw: owned(),
        reason: e.to_string(),
    })?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(BadUrl::Scheme { raw: owned() });
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(BadUrl::NoHost { raw: owned() });
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(BadUrl::UserInfo);
    }
    if url.query().is_some() {
        return Err(BadUrl::Query { raw: owned() });
    }
    if url.fragment().is_some() {
        return Err(BadUrl::Fragment { raw: owned() });
    }
    let mut url = url;
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&path);
    Ok(url)
}

/// A URL written out in a test.
#[cfg(test)]
pub(crate) fn url(text: &str) -> Url {
    text.parse().expect("a test URL")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_normalisation() {
        for (raw, normalised) in [
            ("https://gitlab.example.com/", "https://gitlab.example.com/"),
            ("https://dev.azure.com/org/", "https://dev.azure.com/org"),
        ] {
            assert_eq!(parse_base_url(raw).map(String::from).as_deref(), Ok(normalised));
        }
        let raw = |text: &str| text.to_owned();
        for (text, bad, says) in [
            ("ftp://x", BadUrl::Scheme { raw: raw("ftp://x") }, "https://"),
            ("https://user:pw@x", BadUrl::UserInfo, "user info"),
            (
                "https://x/?a=b",
                BadUrl::Query {
                    raw: raw("https://x/?a=b"),
                },
                "query",
            ),
            (
                "https://x/#f",
                BadUrl::Fragment {
                    raw: raw("https://x/#f"),
                },
                "fragment",
            ),
        ] {
            assert_eq!(parse_base_url(text), Err(bad.clone()));
            assert!(bad.to_string().contains(says), "{bad}");
        }
        assert!(matches!(
            parse_base_url("gitlab.example.com"),
            Err(BadUrl::Invalid { .. })
        ));
    }

    /// A provider's reading of where an instance runs.
    type ReadsDeployment = fn(&Url) -> Deployment;
    /// A provider's reading of a token's expiry.
    type ReadsExpiry = fn(&str) -> Option<jiff::Timestamp>;

    #[test]
    fn every_provider_tells_its_cloud_from_self_hosted() {
        use Deployment::{Cloud, SelfHosted};
        let cases: [(ReadsDeployment, &str, Deployment); 10] = [
            (gitlab::deployment, "https://gitlab.com", Cloud),
            (gitlab::deployment, "https://git.example.com", SelfHosted),
            (github::deployment, "https://github.com", Cloud),
            (github::deployment, "https://ghe.example.com", SelfHosted),
            (bitbucket::deployment, "https://bitbucket.org", Cloud),
            (bitbucket::deployment, "https://api.bitbucket.org", Cloud),
            (bitbucket::deployment, "https://bb.example.com/bitbucket", SelfHosted),
            (azure_devops::deployment, "https://dev.azure.com/org", Cloud),
            (azure_devops::deployment, "https://org.visualstudio.com", Cloud),
            (
                azure_devops::deployment,
                "https://tfs.example.com/tfs/DefaultCollection",
                SelfHosted,
            ),
        ];
        for (deployment, base_url, expected) in cases {
            assert_eq!(deployment(&url(base_url)), expected, "{base_url}");
        }
    }

    #[test]
    fn endpoint_joins_without_double_slash() {
        let target = Target {
            base_url: parse_base_url("https://h/tfs/Coll/").unwrap(),
            token: Token::new("t").unwrap(),
            username: None,
            last_user: None,
            tls: TlsOptions::default(),
        };
        assert_eq!(
            target.endpoint("/_apis/connectionData").unwrap().as_str(),
            "https://h/tfs/Coll/_apis/connectionData"
        );
    }

    #[test]
    fn expiries_in_each_providers_format() {
        let cases: [(ReadsExpiry, &str, Option<&str>); 9] = [
            // GitLab: `expires_at`, a date (the start of that day UTC) or a timestamp.
            (gitlab::parse_expiry, "2027-01-31", Some("2027-01-31T00:00:00Z")),
            (
                gitlab::parse_expiry,
                "2027-01-31T10:00:00Z",
                Some("2027-01-31T10:00:00Z"),
            ),
            (gitlab::parse_expiry, "soon", None),
            // GitHub: the `GitHub-Authentication-Token-Expiration` header.
            (
                github::parse_expiry,
                "2027-01-31 00:00:00 UTC",
                Some("2027-01-31T00:00:00Z"),
            ),
            (
                github::parse_expiry,
                "2027-03-31 09:00:00 +0900",
                Some("2027-03-31T00:00:00Z"),
            ),
            (
                github::parse_expiry,
                "2027-03-31 09:00:00 +09:00",
                Some("2027-03-31T00:00:00Z"),
            ),
            (
                github::parse_expiry,
                " 2027-01-31T00:00:00Z ",
                Some("2027-01-31T00:00:00Z"),
            ),
            (github::parse_expiry, "next tuesday", None),
            (github::parse_expiry, "2027-01-31 00:00:00 CEST", None),
        ];
        for (parse, text, at) in cases {
            assert_eq!(parse(text).map(|t| t.to_string()).as_deref(), at, "{text:?}");
        }
    }
}
