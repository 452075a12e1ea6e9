//! What a look-up's answer means for a repository: the building blocks the provider files
//! share. A provider's look-up returns [`Found`]; a request without an answer travels as
//! [`NotRead::Request`] and is turned into a status once, by [`super::lookup`], and an answer
//! is read by [`documented`] the way every vendor documents it (200, 404, 401/403, the rest).

use super::RATE_LIMITED;
use crate::api::{ProviderKind, RepositoryReason, RepositoryStatus};
use crate::providers::http::{HttpError, HttpResponse};
use crate::providers::request::{Api, what_came_back};
use crate::providers::said;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;

/// What a provider's look-up of one path found.
pub(crate) type Found = Result<RepositoryStatus, NotRead>;

/// Why a look-up ended before it found a readable repository.
#[derive(Debug)]
pub(crate) enum NotRead {
    /// A request got no usable answer.
    Request(HttpError),
    /// The answer says the repository cannot be read, and why.
    Answer(RepositoryStatus),
}

impl From<HttpError> for NotRead {
    fn from(error: HttpError) -> Self {
        NotRead::Request(error)
    }
}

impl NotRead {
    /// The status of `path`.
    pub(crate) fn status(self, path: &str) -> RepositoryStatus {
        match self {
            NotRead::Request(error) => from_http_error(path, &error),
            NotRead::Answer(status) => status,
        }
    }
}

/// How a provider's answer about one repository is read.
pub(crate) struct Reading<'a> {
    /// The provider's words in an error answer.
    pub said: fn(&HttpResponse) -> String,
    /// What to do about a 401/403, for the message.
    pub what_to_do: &'a str,
}

/// The documented JSON of `api`'s 200 answer about `path`; a 404 is NotFound, a 401/403
/// Forbidden, anything else (an HTML page with 200 included) an unexpected answer.
pub(crate) fn documented<T: DeserializeOwned>(
    api: &Api<'_>,
    path: &str,
    reading: &Reading<'_>,
    response: &HttpResponse,
) -> Result<T, NotRead> {
    let status = match response.status {
        StatusCode::OK if !response.is_html() => {
            return response
                .json::<T>()
                .map_err(|_| NotRead::Answer(unexpected(path, api.kind, response)));
        }
        StatusCode::NOT_FOUND => not_found(path, &(reading.said)(response)),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => forbidden(
            path,
            response.status.as_u16(),
            &(reading.said)(response),
            reading.what_to_do,
        ),
        _ => unexpected(path, api.kind, response),
    };
    Err(NotRead::Answer(status))
}

/// The two segments of `path`, whose `form` (e.g. "an owner/repo") the provider expects; a
/// path of another form is not found.
pub(crate) fn two_segments<'p>(path: &'p str, form: &str) -> Result<(&'p str, &'p str), NotRead> {
    path.split_once('/')
        .ok_or_else(|| NotRead::Answer(not_found(path, &format!("not {form} path"))))
}

/// A readable repository.
pub(crate) fn readable(path: &str, default_branch: Option<String>, clone_url: Option<String>) -> RepositoryStatus {
    RepositoryStatus {
        path: path.to_owned(),
        readable: true,
        default_branch: default_branch.filter(|b| !b.trim().is_empty()),
        clone_url: clone_url.filter(|u| !u.trim().is_empty()),
        reason: None,
        message: None,
    }
}

/// An unreadable repository.
pub(crate) fn unreadable(path: &str, reason: RepositoryReason, message: impl Into<String>) -> RepositoryStatus {
    RepositoryStatus {
        path: path.to_owned(),
        readable: false,
        default_branch: None,
        clone_url: None,
        reason: Some(reason),
        message: Some(message.into()),
    }
}

/// A 404: the token cannot see the repository, or it does not exist. Both are said.
pub(crate) fn not_found(path: &str, provider_said: &str) -> RepositoryStatus {
    unreadable(
        path,
        RepositoryReason::NotFound,
        format!(
            "the token cannot see {path} or it does not exist (404{}); grant the token's user access to it, or fix the path",
            said(provider_said)
        ),
    )
}

/// The token sees the repository (or its project) but may not read it.
pub(crate) fn forbidden(path: &str, status: u16, provider_said: &str, what_to_do: &str) -> RepositoryStatus {
    unreadable(
        path,
        RepositoryReason::Forbidden,
        format!(
            "the token may not read {path} (HTTP {status}{}); {what_to_do}",
            said(provider_said)
        ),
    )
}

/// A request that got no usable answer. A rate limit is noted for [`super::check_all`]'s
/// caller.
fn from_http_error(path: &str, error: &HttpError) -> RepositoryStatus {
    if let HttpError::RateLimited { until, .. } = error {
        let _ = RATE_LIMITED.try_with(|latest| latest.set(latest.get().max(Some(*until))));
    }
    let reason = match error {
        HttpError::Dns { .. } | HttpError::Connect { .. } | HttpError::Timeout { .. } | HttpError::Tls { .. } => {
            RepositoryReason::Unreachable
        }
        _ => RepositoryReason::ProviderError,
    };
    unreadable(
        path,
        reason,
        format!("looking up {path} failed: {error}; it is tried again"),
    )
}

/// An answer the API does not document for this request.
fn unexpected(path: &str, provider: ProviderKind, response: &HttpResponse) -> RepositoryStatus {
    let body = match response.is_login_page() {
        true => "a sign-in page",
        false => what_came_back(response),
    };
    unreadable(
        path,
        RepositoryReason::ProviderError,
        format!(
            "looking up {path} answered HTTP {} with {body}, not the {provider} API; it is tried again",
            response.status.as_u16()
        ),
    )
}

/// A clone URL without user info (Bitbucket Cloud puts the account name in it).
pub(crate) fn clean_clone_url(raw: &str) -> Option<String> {
    let mut url = url::Url::parse(raw).ok()?;
    if !matches!(url.scheme(), "https" | "http") {
        return None;
    }
    // Setting empty user info cannot fail on an http(s) URL with a host.
    let _ = url.set_username("");
    let _ = url.set_password(None);
    Some(url.to_string())
}
