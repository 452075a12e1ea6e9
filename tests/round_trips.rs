//! One provider round trip per verification, and the fewest requests each provider allows.
//!
//! The stand-ins answer in waves (`answer_in_waves_of(n)`): n requests must be in flight
//! together before any is answered, else they get 503 — so a verification that is Verified
//! sent exactly those requests at once, proven without timing anything. Instance facts (the
//! version) are asked once per instance and reused; token hints let the next verification of a
//! token send what it needs at once.

mod support;

use gitprovider_operator::api::{ProviderKind, ReadyReason};
use gitprovider_operator::providers::bitbucket::{BITBUCKET, Bitbucket};
use gitprovider_operator::providers::github::GitHub;
use gitprovider_operator::providers::http::HttpClient;
use gitprovider_operator::providers::{Provider, Target, Verification, provider, verify_within};
use reqwest::Url;
use std::time::Duration;
use support::fake_providers::*;
use support::verifying::{http_client, target};

fn client() -> HttpClient {
    http_client(Duration::from_secs(20))
}

/// Verifies in waves of `wave` requests and returns the outcome and the paths requested.
async fn verify_in_waves(
    http: &HttpClient,
    fake: &FakeServer,
    wave: usize,
    provider: &dyn Provider,
    target: &Target,
) -> (Verification, Vec<String>) {
    fake.clear_requests();
    fake.answer_in_waves_of(Some(wave));
    let v = tokio::time::timeout(Duration::from_secs(30), verify_within(provider, http, target))
        .await
        .expect("verification finished in time");
    fake.answer_in_waves_of(None);
    let mut paths: Vec<String> = fake.requests().into_iter().map(|r| r.path).collect();
    paths.sort();
    (v, paths)
}

#[track_caller]
fn assert_verified(v: &Verification, paths: &[String], expected: &[&str]) {
    assert_eq!(v.reason, ReadyReason::Verified, "{v:#?}");
    assert_eq!(paths, expected, "requests of one verification");
}

#[tokio::test]
async fn gitlab_two_requests_and_the_version_once_per_instance() {
    let fake = FakeGitLab::start().await;
    fake.add_token("glpat-one", TokenSpec::jane_doe());
    fake.add_token("glpat-two", TokenSpec::jane_doe());
    fake.set_version("17.5.1-ee");
    let http = client();
    let gitlab = provider(ProviderKind::GitLab);

    let (v, paths) = verify_in_waves(&http, &fake, 3, gitlab, &target(&fake.url(), "glpat-one")).await;
    assert_verified(
        &v,
        &paths,
        &["/api/v4/personal_access_tokens/self", "/api/v4/user", "/api/v4/version"],
    );
    assert_eq!(v.facts.server_version.as_deref(), Some("17.5.1-ee"));

    // Another token on the same instance: the version is remembered.
    let (v, paths) = verify_in_waves(&http, &fake, 2, gitlab, &target(&fake.url(), "glpat-two")).await;
    assert_verified(&v, &paths, &["/api/v4/personal_access_tokens/self", "/api/v4/user"]);
    assert_eq!(v.facts.server_version.as_deref(), Some("17.5.1-ee"));

    // The instance fails: what it said before may no longer hold, so it is asked again.
    fake.fault(Some("/api/v4/user"), Fault::status(503), Some(3));
    fake.clear_requests();
    let v = verify_within(gitlab, &http, &target(&fake.url(), "glpat-one")).await;
    assert_eq!(v.reason, ReadyReason::ProviderError, "{v:#?}");
    fake.set_version("17.6.0-ee");
    let (v, paths) = verify_in_waves(&http, &fake, 3, gitlab, &target(&fake.url(), "glpat-one")).await;
    assert_verified(
        &v,
        &paths,
        &["/api/v4/personal_access_tokens/self", "/api/v4/user", "/api/v4/version"],
    );
    assert_eq!(v.facts.server_version.as_deref(), Some("17.6.0-ee"));
}

#[tokio::test]
async fn gitea_two_requests_and_the_version_once_per_instance() {
    let fake = FakeGitea::start().await;
    fake.add_token(
        "gt-one",
        TokenSpec::user("alice").scopes(["read:user", "read:repository"]),
    );
    let http = client();
    let gitea = provider(ProviderKind::Gitea);
    let (v, paths) = verify_in_waves(&http, &fake, 3, gitea, &target(&fake.url(), "gt-one")).await;
    assert_verified(
        &v,
        &paths,
        &["/api/v1/user", "/api/v1/user/repos?limit=1", "/api/v1/version"],
    );
    let (v, paths) = verify_in_waves(&http, &fake, 2, gitea, &target(&fake.url(), "gt-one")).await;
    assert_verified(&v, &paths, &["/api/v1/user", "/api/v1/user/repos?limit=1"]);
    assert!(v.facts.server_version.is_some(), "{v:#?}");
}

#[tokio::test]
async fn azure_devops_two_requests_and_the_api_version_once_per_instance() {
    let services = FakeAzureDevOps::start_services().await;
    services.add_token("az-one", TokenSpec::user("jane@example.com").scopes(["vso.project"]));
    let http = client();
    let azure = provider(ProviderKind::AzureDevOps);
    let url = services.collection_url("/fabrikam");
    let (v, paths) = verify_in_waves(&http, &services, 2, azure, &target(&url, "az-one")).await;
    assert_verified(
        &v,
        &paths,
        &[
            "/fabrikam/_apis/connectionData?connectOptions=none",
            "/fabrikam/_apis/projects?$top=1&api-version=5.0",
        ],
    );

    // TFS 2017: the first verification learns that 5.0 is refused, the next ones ask 2.0 at once.
    let tfs = FakeAzureDevOps::start_server().await;
    tfs.add_token("az-one", TokenSpec::user("CONTOSO\\jdoe"));
    tfs.set_max_api_version(3.2);
    let url = tfs.collection_url("/tfs/DefaultCollection");
    let first = verify_within(azure, &http, &target(&url, "az-one")).await;
    assert_eq!(first.reason, ReadyReason::Verified, "{first:#?}");
    let (v, paths) = verify_in_waves(&http, &tfs, 2, azure, &target(&url, "az-one")).await;
    assert_verified(
        &v,
        &paths,
        &[
            "/tfs/DefaultCollection/_apis/connectionData?connectOptions=none",
            "/tfs/DefaultCollection/_apis/projects?$top=1&api-version=2.0",
        ],
    );
}

#[tokio::test]
async fn github_one_request_unless_the_email_comes_from_the_list() {
    let fake = FakeGitHub::start().await;
    let github = GitHub::with_cloud_api(fake.url());
    let github_com: Url = "https://github.com".parse().expect("url");
    fake.add_token(
        "ghp_public",
        TokenSpec::user("pub")
            .email("pub@example.com")
            .public_email()
            .scopes(["repo", "user"]),
    );
    fake.add_token(
        "ghp_private",
        TokenSpec::user("priv")
            .email("priv@example.com")
            .scopes(["repo", "user:email"]),
    );
    let http = client();

    // First verification of a token: /user/emails goes out with /user, in case it is needed.
    let (v, paths) = verify_in_waves(&http, &fake, 2, &github, &target(&github_com, "ghp_public")).await;
    assert_verified(&v, &paths, &["/user", "/user/emails"]);
    // Public e-mail: from now on /user alone.
    let (v, paths) = verify_in_waves(&http, &fake, 1, &github, &target(&github_com, "ghp_public")).await;
    assert_verified(&v, &paths, &["/user"]);
    assert_eq!(v.facts.user.and_then(|u| u.email).as_deref(), Some("pub@example.com"));

    // Private e-mail read from the list: both, together, every time.
    for _ in 0..2 {
        let (v, paths) = verify_in_waves(&http, &fake, 2, &github, &target(&github_com, "ghp_private")).await;
        assert_verified(&v, &paths, &["/user", "/user/emails"]);
        assert_eq!(v.facts.user.and_then(|u| u.email).as_deref(), Some("priv@example.com"));
    }
}

/// A Bitbucket Data Center stand-in where token `BBDC-one` is Jane Doe (`jdoe`).
async fn bitbucket_server_with_jane_doe() -> FakeBitbucketServer {
    let fake = FakeBitbucketServer::start().await;
    fake.add_token(
        "BBDC-one",
        TokenSpec::user("jdoe")
            .display_name("Jane Doe")
            .email("jdoe@example.com"),
    );
    fake
}

#[tokio::test]
async fn bitbucket_server_details_with_the_rest_once_the_name_is_known() {
    let fake = bitbucket_server_with_jane_doe().await;
    let http = client();
    let url = fake.url();
    // First: repositories and version together, then the details of the name it revealed.
    let first = verify_within(&BITBUCKET, &http, &target(&url, "BBDC-one")).await;
    assert_eq!(first.reason, ReadyReason::Verified, "{first:#?}");
    // Then: repositories and details together; the version is remembered.
    let (v, paths) = verify_in_waves(&http, &fake, 2, &BITBUCKET, &target(&url, "BBDC-one")).await;
    assert_verified(&v, &paths, &["/rest/api/1.0/repos?limit=1", "/rest/api/1.0/users/jdoe"]);
    assert_eq!(v.facts, first.facts);
    let user = v.facts.user.expect("user");
    assert_eq!(user.display_name.as_deref(), Some("Jane Doe"));
    assert!(v.facts.server_version.is_some());
}

#[tokio::test]
async fn bitbucket_cloud_user_and_emails_together() {
    let fake = FakeBitbucketCloud::start().await;
    fake.add_token(
        "ATATT-one",
        TokenSpec::user("jdoe")
            .email("jdoe@example.com")
            .scopes(["read:user:bitbucket"]),
    );
    let bitbucket = Bitbucket::with_cloud_api(fake.url());
    let mut target = target(&"https://bitbucket.org".parse().expect("url"), "ATATT-one");
    target.username = Some("jdoe@example.com".to_owned());
    let http = client();
    let (v, paths) = verify_in_waves(&http, &fake, 2, &bitbucket, &target).await;
    assert_verified(&v, &paths, &["/2.0/user", "/2.0/user/emails"]);
    assert_eq!(v.facts.user.and_then(|u| u.email).as_deref(), Some("jdoe@example.com"));
}

/// Token `BBDC-one` with the user guessed as `name`: by `spec.username`, and by the status
/// (all a restarted operator knows).
fn guessing(url: &Url, name: &str) -> [(&'static str, Target); 2] {
    let mut stated = target(url, "BBDC-one");
    stated.username = Some(name.to_owned());
    let mut restarted = target(url, "BBDC-one");
    restarted.last_user = Some(name.to_owned());
    [("spec.username", stated), ("status", restarted)]
}

#[tokio::test]
async fn bitbucket_server_one_round_trip_from_the_first_when_spec_username_or_the_status_names_the_user() {
    let fake = bitbucket_server_with_jane_doe().await;
    for (case, guessed) in guessing(&fake.url(), "jdoe") {
        // A client of its own: nothing remembered about the token or the instance.
        let http = client();
        // The first verification of the token: repositories, version and details, all at once.
        let (v, paths) = verify_in_waves(&http, &fake, 3, &BITBUCKET, &guessed).await;
        assert_eq!(v.reason, ReadyReason::Verified, "{case}: {v:#?}");
        assert_eq!(
            paths,
            [
                "/rest/api/1.0/application-properties",
                "/rest/api/1.0/repos?limit=1",
                "/rest/api/1.0/users/jdoe",
            ],
            "{case}"
        );
        let user = v.facts.user.expect("user");
        assert_eq!(user.display_name.as_deref(), Some("Jane Doe"), "{case}");
        assert_eq!(user.email.as_deref(), Some("jdoe@example.com"), "{case}");
    }
}

#[tokio::test]
async fn bitbucket_server_a_guessed_user_who_is_not_the_token_user_is_only_a_wrong_guess() {
    let fake = bitbucket_server_with_jane_doe().await;
    fake.add_token("BBDC-other", TokenSpec::user("someone").display_name("Some One"));
    // From the status: the Secret now holds Jane Doe's token, the status names the last one's user.
    for (case, wrong) in guessing(&fake.url(), "someone") {
        let http = client();
        fake.clear_requests();
        let v = verify_within(&BITBUCKET, &http, &wrong).await;
        assert_eq!(v.reason, ReadyReason::Verified, "{case}: {v:#?}");
        // The status names who the token is, with that user's details (asked one round trip later).
        let user = v.facts.user.expect("user");
        assert_eq!(user.username.as_deref(), Some("jdoe"), "{case}");
        assert_eq!(user.display_name.as_deref(), Some("Jane Doe"), "{case}");
        let paths: Vec<String> = fake.requests().into_iter().map(|r| r.path).collect();
        assert!(
            paths.iter().any(|p| p == "/rest/api/1.0/users/jdoe"),
            "{case}: {paths:?}"
        );
    }
}
