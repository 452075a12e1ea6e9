//! Each provider's answer to a token over its rate limit, as its documentation shows (pages
//! cited in `src/providers/rate_limit.rs`), as a [`Fault`] to put in front of a stand-in.

use super::Fault;
use std::time::Duration;

/// A rate-limited answer of one provider's kind.
#[derive(Clone, Copy, Debug)]
pub enum RateLimitAnswer {
    /// 403, `x-ratelimit-remaining: 0`, `x-ratelimit-reset` (epoch seconds).
    GitHubPrimary,
    /// 403, `retry-after`, "secondary rate limit".
    GitHubSecondary,
    /// 429, `Retry-After`, `RateLimit-Reset`, `RateLimit-ResetTime`, body `Retry later`.
    GitLab,
    /// 429, `Retry-After`, `X-RateLimit-Resource`, `X-RateLimit-Reset`.
    AzureDevOps,
    /// 429, "Rate limit for this resource has been exceeded", no reset time.
    BitbucketCloud,
    /// 429 from an empty token bucket, `Retry-After`.
    BitbucketServer,
}

/// The answer, resetting `reset_in` from now (whole seconds).
pub fn rate_limited(answer: RateLimitAnswer, reset_in: Duration) -> Fault {
    let seconds = reset_in.as_secs();
    let reset = (jiff::Timestamp::now().as_second() + seconds as i64).to_string();
    let reset_time = jiff::Timestamp::from_second(reset.parse().expect("epoch"))
        .map(|t| jiff::fmt::rfc2822::DateTimePrinter::new().timestamp_to_rfc9110_string(&t))
        .expect("timestamp")
        .expect("HTTP date");
    let retry = seconds.to_string();
    match answer {
        RateLimitAnswer::GitHubPrimary => Fault::status_with(
            403,
            &[
                ("content-type", "application/json; charset=utf-8"),
                ("x-ratelimit-limit", "5000"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-used", "5000"),
                ("x-ratelimit-reset", &reset),
                ("x-ratelimit-resource", "core"),
            ],
            r#"{"message":"API rate limit exceeded for user ID 1.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api","status":"403"}"#,
        ),
        RateLimitAnswer::GitHubSecondary => Fault::status_with(
            403,
            &[
                ("content-type", "application/json; charset=utf-8"),
                ("retry-after", &retry),
            ],
            r#"{"message":"You have exceeded a secondary rate limit. Please wait a few minutes before you try again.","documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits","status":"403"}"#,
        ),
        RateLimitAnswer::GitLab => Fault::status_with(
            429,
            &[
                ("content-type", "text/plain"),
                ("ratelimit-name", "throttle_authenticated_api"),
                ("ratelimit-limit", "2000"),
                ("ratelimit-observed", "2001"),
                ("ratelimit-remaining", "0"),
                ("ratelimit-reset", &reset),
                ("ratelimit-resettime", &reset_time),
                ("retry-after", &retry),
            ],
            "Retry later\n",
        ),
        RateLimitAnswer::AzureDevOps => Fault::status_with(
            429,
            &[
                ("content-type", "application/json; charset=utf-8"),
                ("retry-after", &retry),
                ("x-ratelimit-resource", "ATCPU"),
                ("x-ratelimit-delay", "0"),
                ("x-ratelimit-limit", "200"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", &reset),
            ],
            r#"{"message":"TF400733: The request has been canceled: Request was blocked due to exceeding usage of resource 'ATCPU' in namespace 'User'.","typeKey":"RequestBlockedException"}"#,
        ),
        RateLimitAnswer::BitbucketCloud => Fault::status_with(
            429,
            &[
                ("content-type", "application/json; charset=utf-8"),
                ("x-ratelimit-limit", "1000"),
                ("x-ratelimit-resource", "api"),
                ("x-ratelimit-nearlimit", "false"),
            ],
            r#"{"type":"error","error":{"message":"Rate limit for this resource has been exceeded"}}"#,
        ),
        RateLimitAnswer::BitbucketServer => Fault::status_with(
            429,
            &[
                ("content-type", "application/json;charset=UTF-8"),
                ("retry-after", &retry),
                ("x-ratelimit-limit", "60"),
                ("x-ratelimit-remaining", "0"),
            ],
            r#"{"errors":[{"context":null,"message":"You have been rate limited. Please try again later.","exceptionName":null}]}"#,
        ),
    }
}
