//! Rate-limited answers, as each provider gives them, through the real HTTP client and the
//! real `verify` binary: a ProviderError that carries the reset time (in the message and as
//! `retry_at`), no request sent again into the limit, a short limit waited out, and `verify`
//! waiting out a reset within its `--timeout` but not beyond.

mod support;

use support::verifying::ready_of as ready;

use gitprovider_operator::api::{ProviderKind, ReadyReason};
use gitprovider_operator::providers::bitbucket::Bitbucket;
use gitprovider_operator::providers::github::GitHub;
use gitprovider_operator::providers::http::{HttpClient, HttpConfig, TlsOptions};
use gitprovider_operator::providers::{Provider, Target, Verification, parse_base_url, provider, verify_within};
use gitprovider_operator::token::Token;
use reqwest::Url;
use std::time::Duration;
use support::fake_providers::rate_limits::{RateLimitAnswer, rate_limited};
use support::fake_providers::*;

const TOKEN: &str = "tok-SECRET-rate-limited";
const RESET_IN: Duration = Duration::from_secs(600);

fn target(url: &Url, username: Option<&str>) -> Target {
    Target {
        base_url: parse_base_url(url.as_str()).expect("base url"),
        token: Token::new(TOKEN).expect("token"),
        username: username.map(str::to_owned),
        last_user: None,
        tls: TlsOptions::default(),
    }
}

async fn verify(provider: &dyn Provider, target: &Target) -> Verification {
    let http = HttpClient::new(HttpConfig {
        timeout: Duration::from_secs(5),
        retry_base_delay: Duration::from_millis(10),
        ..HttpConfig::default()
    });
    tokio::time::timeout(Duration::from_secs(20), verify_within(provider, &http, target))
        .await
        .expect("verification finished in time")
}

/// A ProviderError until about `reset_in` from now, saying so, without the token.
#[track_caller]
fn assert_limited_until(v: &Verification, reset_in: Duration) {
    assert_eq!(v.reason, ReadyReason::ProviderError, "{v:#?}");
    let until = v.retry_at.expect("a reset time");
    let from_now = until.duration_since(jiff::Timestamp::now()).as_secs();
    let expected = reset_in.as_secs() as i64;
    assert!(
        (expected - 3..=expected + 1).contains(&from_now),
        "reset in {from_now}s, not {expected}s"
    );
    assert!(v.message.contains(&until.to_string()), "{}", v.message);
    assert!(
        v.message.contains("rate-limited") && v.message.contains("not a token problem"),
        "{}",
        v.message
    );
    assert!(!v.message.contains(TOKEN));
}

/// `fake` rate-limits `path` with `answer` (a reset in [`RESET_IN`]): verifying gives a
/// ProviderError until about `reset_in` from now (what the instance said, or its rolling
/// window), and `path` was asked once: nothing is sent again into the limit.
async fn limited_once(
    fake: &FakeServer,
    path: &str,
    answer: RateLimitAnswer,
    reset_in: Duration,
    provider: &dyn Provider,
    target: Target,
) -> Verification {
    fake.fault(Some(path), rate_limited(answer, RESET_IN), None);
    let v = verify(provider, &target).await;
    assert_limited_until(&v, reset_in);
    let query = format!("{path}?");
    let asked = fake
        .requests()
        .iter()
        .filter(|r| r.path == path || r.path.starts_with(&query))
        .count();
    assert_eq!(asked, 1, "requests to {path}: {:?}", fake.requests());
    v
}

#[tokio::test]
async fn github_primary_and_secondary_limits() {
    let github_com: Url = "https://github.com".parse().expect("url");
    for (answer, says) in [
        (RateLimitAnswer::GitHubPrimary, Some("HTTP 403")),
        (RateLimitAnswer::GitHubSecondary, None),
    ] {
        let fake = FakeGitHub::start().await;
        fake.add_token(TOKEN, TokenSpec::user("octocat").scopes(["repo"]));
        let github = GitHub::with_cloud_api(fake.url());
        let v = limited_once(&fake, "/user", answer, RESET_IN, &github, target(&github_com, None)).await;
        if let Some(says) = says {
            assert!(v.message.contains(says), "{answer:?}: {}", v.message);
        }
    }
}

#[tokio::test]
async fn gitlab_limit() {
    let fake = FakeGitLab::start().await;
    fake.add_token(TOKEN, TokenSpec::jane_doe());
    let gitlab = provider(ProviderKind::GitLab);
    let target = target(&fake.url(), None);
    let v = limited_once(&fake, "/api/v4/user", RateLimitAnswer::GitLab, RESET_IN, gitlab, target).await;
    assert!(v.message.contains("HTTP 429"), "{}", v.message);
}

#[tokio::test]
async fn azure_devops_limit() {
    let fake = FakeAzureDevOps::start_services().await;
    fake.add_token(TOKEN, TokenSpec::user("jane@example.com"));
    let azure = provider(ProviderKind::AzureDevOps);
    let target = target(&fake.collection_url("/fabrikam"), None);
    let path = "/fabrikam/_apis/connectionData";
    limited_once(&fake, path, RateLimitAnswer::AzureDevOps, RESET_IN, azure, target).await;
}

#[tokio::test]
async fn bitbucket_limits() {
    let server = FakeBitbucketServer::start().await;
    server.add_token(TOKEN, TokenSpec::user("jdoe"));
    let bitbucket = provider(ProviderKind::Bitbucket);
    let target_server = target(&server.url(), None);
    let path = "/rest/api/1.0/repos";
    limited_once(
        &server,
        path,
        RateLimitAnswer::BitbucketServer,
        RESET_IN,
        bitbucket,
        target_server,
    )
    .await;

    // Bitbucket Cloud names no reset: its window rolls by the minute.
    let cloud = FakeBitbucketCloud::start().await;
    cloud.add_token(TOKEN, TokenSpec::user("jdoe").email("jdoe@example.com"));
    let bitbucket = Bitbucket::with_cloud_api(cloud.url());
    let bitbucket_org = "https://bitbucket.org".parse().expect("url");
    let target_cloud = target(&bitbucket_org, Some("jdoe@example.com"));
    let minute = Duration::from_secs(60);
    limited_once(
        &cloud,
        "/2.0/user",
        RateLimitAnswer::BitbucketCloud,
        minute,
        &bitbucket,
        target_cloud,
    )
    .await;
}

#[tokio::test]
async fn a_short_limit_is_waited_out_inside_the_request() {
    let fake = FakeGitLab::start().await;
    fake.add_token(TOKEN, TokenSpec::jane_doe());
    fake.fault(
        Some("/api/v4/user"),
        rate_limited(RateLimitAnswer::GitLab, Duration::from_secs(1)),
        Some(1),
    );
    let v = verify(provider(ProviderKind::GitLab), &target(&fake.url(), None)).await;
    assert_eq!(v.reason, ReadyReason::Verified, "{v:#?}");
    assert_eq!(v.retry_at, None);
}

// ---- the verify command ---------------------------------------------------------------

async fn verify_cli(url: &Url, timeout: &str) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_gitprovider-operator"));
    command
        .args(["verify", "--provider", "GitLab", "--url", url.as_str()])
        .args(["--token-env", "GL_TOKEN", "--timeout", timeout])
        .env("GL_TOKEN", TOKEN)
        .env_remove("RUST_LOG");
    tokio::task::spawn_blocking(move || command.output().expect("run the binary"))
        .await
        .expect("join")
}

#[tokio::test]
async fn verify_waits_out_a_reset_within_its_timeout() {
    let fake = FakeGitLab::start().await;
    fake.add_token(TOKEN, TokenSpec::jane_doe());
    // Longer than what the client waits inside a request, shorter than --timeout.
    fake.fault(
        Some("/api/v4/user"),
        rate_limited(RateLimitAnswer::GitLab, Duration::from_secs(7)),
        Some(1),
    );
    let output = verify_cli(&fake.url(), "30s").await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert_eq!(ready(&output).0, "Verified");
    assert!(
        stderr.contains("rate-limited until") && stderr.contains("verifying again"),
        "{stderr}"
    );
    assert!(!stderr.contains(TOKEN));
    // Asked again only once the reset had passed.
    let users: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/v4/user")
        .collect();
    assert_eq!(users.len(), 2);
    let waited = users[1].at.duration_since(users[0].at).unwrap_or_default();
    assert!(waited >= Duration::from_secs(5), "asked again after {waited:?}");
}

#[tokio::test]
async fn verify_fails_at_once_on_a_reset_beyond_its_timeout() {
    let fake = FakeGitLab::start().await;
    fake.add_token(TOKEN, TokenSpec::jane_doe());
    fake.fault(
        Some("/api/v4/user"),
        rate_limited(RateLimitAnswer::GitLab, RESET_IN),
        None,
    );
    let output = verify_cli(&fake.url(), "10s").await;
    assert_eq!(output.status.code(), Some(1));
    let (reason, message) = ready(&output);
    assert_eq!(reason, "ProviderError");
    assert!(message.contains("rate-limited this token until 20"), "{message}");
    assert!(message.contains("--timeout 10s"), "{message}");
    assert_eq!(fake.requests().iter().filter(|r| r.path == "/api/v4/user").count(), 1);
}

/// A rate-limited answer to a repository look-up, as each provider gives it: the look-ups
/// report the reset (which the controller turns into a hold of the token on the instance and
/// the next verification's time), the Ready reason stays the repositories' own, and the paths
/// not yet asked are not sent into the same wall.
#[tokio::test]
async fn a_rate_limited_repository_look_up_gives_the_reset_and_asks_no_further() {
    use gitprovider_operator::api::RepositoryReason;
    use gitprovider_operator::repositories::{self, Apis, Concurrency};
    let http = HttpClient::new(HttpConfig {
        timeout: Duration::from_secs(5),
        retry_base_delay: Duration::from_millis(10),
        ..HttpConfig::default()
    });
    let gitlab = FakeGitLab::start().await;
    let github = FakeGitHub::start_enterprise("3.14.2").await;
    let bitbucket = FakeBitbucketServer::start().await;
    let cases: [(ProviderKind, &FakeServer, RateLimitAnswer, &str, [&str; 3]); 3] = [
        (
            ProviderKind::GitLab,
            &*gitlab,
            RateLimitAnswer::GitLab,
            "/api/v4/projects/",
            ["a/one", "a/two", "a/three"],
        ),
        (
            ProviderKind::GitHub,
            &*github,
            RateLimitAnswer::GitHubPrimary,
            "/api/v3/repos/",
            ["o/one", "o/two", "o/three"],
        ),
        (
            ProviderKind::Bitbucket,
            &*bitbucket,
            RateLimitAnswer::BitbucketServer,
            "/rest/api/1.0/projects/",
            ["PRJ/one", "PRJ/two", "PRJ/three"],
        ),
    ];
    for (kind, fake, answer, prefix, list) in cases {
        for path in list {
            fake.add_repository(path);
        }
        fake.fault(Some(prefix), rate_limited(answer, RESET_IN), None);
        let list: Vec<String> = list.iter().map(|p| (*p).to_owned()).collect();
        let t = target(&fake.url(), None);
        let found = tokio::time::timeout(
            Duration::from_secs(20),
            repositories::check_all(kind, Apis::deployed(), &http, &t, &list, Concurrency::new(1)),
        )
        .await
        .expect("look-ups finished in time");

        let until = found.rate_limited_until.expect("the reset is reported");
        let from_now = until.duration_since(jiff::Timestamp::now()).as_secs();
        let expected = RESET_IN.as_secs() as i64;
        assert!(
            (expected - 3..=expected + 1).contains(&from_now),
            "{kind}: reset in {from_now}s"
        );
        for entry in &found.repositories {
            assert!(!entry.readable, "{kind}: {entry:#?}");
            assert_eq!(
                entry.reason,
                Some(RepositoryReason::ProviderError),
                "{kind}: {entry:#?}"
            );
            assert!(
                entry.message.as_deref().is_some_and(|m| !m.contains(TOKEN)),
                "{kind}: {entry:#?}"
            );
        }
        let skipped = found.repositories[1].message.as_deref().unwrap_or_default();
        assert!(
            skipped.contains("not looked up") && skipped.contains(&until.to_string()),
            "{kind}: {skipped}"
        );
        let asked = fake.requests().iter().filter(|r| r.path.starts_with(prefix)).count();
        assert_eq!(asked, 1, "{kind}: {:?}", fake.requests());

        // The token passed: Ready says which repositories failed, and the next verification
        // is due at the reset.
        let passed = Verification::verified("authenticated as jdoe", Default::default());
        let v = found.readiness(passed);
        assert_eq!(v.reason, ReadyReason::RepositoryUnreadable, "{kind}: {v:#?}");
        assert_eq!(v.retry_at, Some(until), "{kind}");
    }
}
