//! Rate-limited answers, told apart from every other refusal, with the time the instance will
//! take the token's requests again.
//!
//! What each provider answers when a token is over its limit, as documented:
//! - GitHub (<https://docs.github.com/en/rest/using-the-rest-api/rate-limits-for-the-rest-api>):
//!   primary limit 403 or 429 with `x-ratelimit-remaining: 0` and `x-ratelimit-reset` (epoch
//!   seconds); secondary limits 403 or 429 with `retry-after` (seconds), or without it and a
//!   "secondary rate limit" message, then "wait at least one minute".
//! - GitLab (<https://docs.gitlab.com/administration/settings/user_and_ip_rate_limits/>): 429
//!   with `Retry-After` (seconds), `RateLimit-Reset` (epoch seconds) and `RateLimit-ResetTime`
//!   (an HTTP date).
//! - Azure DevOps (<https://learn.microsoft.com/en-us/azure/devops/integrate/concepts/rate-limits>):
//!   blocked requests get 429 with `Retry-After` (seconds) and `X-RateLimit-Reset` (epoch
//!   seconds); merely delayed ones succeed (`X-RateLimit-Delay`) and are not limits here.
//! - Bitbucket Cloud (<https://support.atlassian.com/bitbucket-cloud/docs/api-request-limits/>):
//!   429 "Rate limit for this resource has been exceeded", with no reset time: the window rolls
//!   by the minute, so [`UNKNOWN_RESET_WAIT`] is waited.
//! - Bitbucket Data Center
//!   (<https://confluence.atlassian.com/bitbucketserver/improving-instance-stability-with-rate-limiting-976171954.html>):
//!   429 when the user's token bucket is empty, `Retry-After` when sent; the bucket refills at
//!   a steady rate, so without it [`UNKNOWN_RESET_WAIT`] is waited.
//! - Gitea / Forgejo: no API rate limit of their own; a proxy in front answering 429 with
//!   `Retry-After` is honoured like any other.

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use std::time::Duration;

/// How long to wait when a rate-limited answer does not say until when (GitHub's documented
/// minimum for secondary limits; Bitbucket's windows roll by the minute).
pub const UNKNOWN_RESET_WAIT: Duration = Duration::from_secs(60);

/// When a rate-limited answer lets the token's requests in again, or `None` if the answer is
/// not a rate limit. `body` is the (capped) body, read for GitHub's secondary-limit message.
pub fn rate_limited_until(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Option<jiff::Timestamp> {
    let limited = match status {
        StatusCode::TOO_MANY_REQUESTS => true,
        StatusCode::FORBIDDEN => {
            header(headers, "x-ratelimit-remaining") == Some("0")
                || headers.contains_key(reqwest::header::RETRY_AFTER)
                || says_rate_limit(body)
        }
        _ => false,
    };
    if !limited {
        return None;
    }
    let now = jiff::Timestamp::now();
    let until = retry_after(headers, now)
        .or_else(|| epoch(headers, "x-ratelimit-reset"))
        .or_else(|| epoch(headers, "ratelimit-reset"))
        .or_else(|| http_date(header(headers, "ratelimit-resettime")?))
        .filter(|until| *until >= now)
        .unwrap_or_else(|| now + UNKNOWN_RESET_WAIT);
    Some(until)
}

/// `Retry-After` as a delay: seconds or an HTTP date.
pub fn retry_after_delay(headers: &HeaderMap) -> Option<Duration> {
    let now = jiff::Timestamp::now();
    let until = retry_after(headers, now)?;
    Some(Duration::try_from(until.duration_since(now)).unwrap_or(Duration::ZERO))
}

fn retry_after(headers: &HeaderMap, now: jiff::Timestamp) -> Option<jiff::Timestamp> {
    let value = header(headers, reqwest::header::RETRY_AFTER.as_str())?;
    if let Ok(seconds) = value.parse::<u64>() {
        let seconds = i64::try_from(seconds).ok()?;
        return now.checked_add(jiff::SignedDuration::from_secs(seconds)).ok();
    }
    http_date(value)
}

fn epoch(headers: &HeaderMap, name: &str) -> Option<jiff::Timestamp> {
    let seconds: i64 = header(headers, name)?.parse().ok()?;
    jiff::Timestamp::from_second(seconds).ok()
}

fn http_date(value: &str) -> Option<jiff::Timestamp> {
    Some(jiff::fmt::rfc2822::parse(value).ok()?.timestamp())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim)
}

fn says_rate_limit(body: &[u8]) -> bool {
    let text = String::from_utf8_lossy(&body[..body.len().min(4096)]).to_ascii_lowercase();
    text.contains("rate limit")
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        map
    }

    fn in_secs(until: jiff::Timestamp) -> i64 {
        until.duration_since(jiff::Timestamp::now()).as_secs()
    }

    #[test]
    fn each_providers_answer() {
        let reset = jiff::Timestamp::now().as_second() + 600;
        let github = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", &reset.to_string()),
        ]);
        let until = rate_limited_until(StatusCode::FORBIDDEN, &github, b"{}").unwrap();
        assert_eq!(until.as_second(), reset);

        let secondary = headers(&[("retry-after", "30")]);
        assert!((29..=30).contains(&in_secs(
            rate_limited_until(StatusCode::FORBIDDEN, &secondary, b"").unwrap()
        )));
        let message = br#"{"message":"You have exceeded a secondary rate limit."}"#;
        assert!((59..=60).contains(&in_secs(
            rate_limited_until(StatusCode::FORBIDDEN, &HeaderMap::new(), message).unwrap()
        )));

        let gitlab = headers(&[("ratelimit-reset", &reset.to_string())]);
        assert_eq!(
            rate_limited_until(StatusCode::TOO_MANY_REQUESTS, &gitlab, b"")
                .unwrap()
                .as_second(),
            reset
        );
        let bitbucket = rate_limited_until(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), b"").unwrap();
        assert!((59..=60).contains(&in_secs(bitbucket)));
    }

    #[test]
    fn refusals_that_are_not_limits() {
        let scope = br#"{"message":"Resource not accessible by personal access token"}"#;
        assert_eq!(
            rate_limited_until(StatusCode::FORBIDDEN, &HeaderMap::new(), scope),
            None
        );
        let remaining = headers(&[("x-ratelimit-remaining", "4999")]);
        assert_eq!(rate_limited_until(StatusCode::FORBIDDEN, &remaining, b"{}"), None);
        let retry = headers(&[("retry-after", "5")]);
        assert_eq!(rate_limited_until(StatusCode::SERVICE_UNAVAILABLE, &retry, b""), None);
    }

    #[test]
    fn a_reset_in_the_past_waits_the_default() {
        let past = headers(&[("x-ratelimit-reset", "1000")]);
        let until = rate_limited_until(StatusCode::TOO_MANY_REQUESTS, &past, b"").unwrap();
        assert!((59..=60).contains(&in_secs(until)));
    }
}
