//! `spec.repositories` against every provider's stand-in: each repository endpoint answers as
//! its vendor documents it (see `src/repositories/*.rs`), and the look-ups run the way the
//! controller and `verify` run them — the token verified first, then every path looked up.
//! Readable, missing, forbidden, SSO-required, mixes, 100 entries, a token that loses access,
//! the instance failing, a redirect to another host; cloud and self-hosted variants.

mod support;

use gitprovider_operator::api::{ProviderKind, ReadyReason, RepositoryReason, RepositoryStatus};
use gitprovider_operator::providers::bitbucket::Bitbucket;
use gitprovider_operator::providers::github::GitHub;
use gitprovider_operator::providers::http::{HttpClient, HttpConfig, TlsOptions};
use gitprovider_operator::providers::{Target, Verification, provider, verify_within};
use gitprovider_operator::repositories::{self, Apis, Concurrency};
use std::time::Duration;
use support::fake_providers::*;
use support::verifying::{http_client, target};

fn client() -> HttpClient {
    http_client(Duration::from_secs(5))
}

fn paths(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

/// What the controller does: verify the token with the provider, then look every path up.
async fn check(
    kind: ProviderKind,
    apis: Apis<'_>,
    target: &Target,
    list: &[String],
) -> (Verification, Vec<RepositoryStatus>) {
    let http = client();
    let run = async {
        let verification = match kind {
            ProviderKind::GitHub => verify_within(apis.github, &http, target).await,
            ProviderKind::Bitbucket => verify_within(apis.bitbucket, &http, target).await,
            other => verify_within(provider(other), &http, target).await,
        };
        assert_eq!(verification.reason, ReadyReason::Verified, "{verification:#?}");
        let found = repositories::check_all(kind, apis, &http, target, list, Concurrency::new(8)).await;
        (found.readiness(verification), found.repositories)
    };
    tokio::time::timeout(Duration::from_secs(30), run)
        .await
        .expect("finished in time")
}

/// A readable entry with these facts.
#[track_caller]
fn assert_readable(entry: &RepositoryStatus, path: &str, branch: Option<&str>, clone_url: Option<&str>) {
    assert_eq!(entry.path, path);
    assert!(entry.readable, "{entry:#?}");
    assert_eq!(entry.default_branch.as_deref(), branch, "{entry:#?}");
    assert_eq!(entry.clone_url.as_deref(), clone_url, "{entry:#?}");
    assert_eq!((entry.reason, entry.message.as_deref()), (None, None));
}

/// An unreadable entry with this reason and a message holding every needle (not the token).
#[track_caller]
fn assert_unreadable(entry: &RepositoryStatus, path: &str, reason: RepositoryReason, token: &str, needles: &[&str]) {
    assert_eq!(entry.path, path);
    assert!(!entry.readable, "{entry:#?}");
    assert_eq!(entry.reason, Some(reason), "{entry:#?}");
    assert!(entry.default_branch.is_none() && entry.clone_url.is_none());
    let message = entry.message.as_deref().unwrap_or_default();
    assert!(!message.contains(token), "the message reveals the token: {message}");
    for needle in needles {
        assert!(
            message.to_lowercase().contains(&needle.to_lowercase()),
            "message lacks {needle:?}: {message}"
        );
    }
}

/// What one entry of a look-up must be: a row of [`assert_entries`].
enum Entry<'a> {
    Readable {
        path: &'a str,
        branch: Option<&'a str>,
        clone_url: Option<&'a str>,
    },
    Unreadable {
        path: &'a str,
        reason: RepositoryReason,
        says: &'a [&'a str],
    },
}

fn readable<'a>(path: &'a str, branch: Option<&'a str>, clone_url: Option<&'a str>) -> Entry<'a> {
    Entry::Readable {
        path,
        branch,
        clone_url,
    }
}

fn unreadable<'a>(path: &'a str, reason: RepositoryReason, says: &'a [&'a str]) -> Entry<'a> {
    Entry::Unreadable { path, reason, says }
}

/// The look-up found exactly these entries, in order, each checked as [`assert_readable`] or
/// [`assert_unreadable`] do (whose messages name the entry's path); no message holds `token`.
#[track_caller]
fn assert_entries(found: &[RepositoryStatus], token: &str, rows: &[Entry<'_>]) {
    assert_eq!(found.len(), rows.len(), "one entry per path: {found:#?}");
    for (entry, row) in found.iter().zip(rows) {
        match row {
            Entry::Readable {
                path,
                branch,
                clone_url,
            } => assert_readable(entry, path, *branch, *clone_url),
            Entry::Unreadable { path, reason, says } => assert_unreadable(entry, path, *reason, token, says),
        }
    }
}

/// Every look-up carried the token to the fake only, in the provider's scheme.
#[track_caller]
fn assert_requests(fake: &FakeServer, expected: &[&str], auth: &str) {
    let requests = fake.requests();
    let got: Vec<&str> = requests
        .iter()
        .map(|r| r.path.as_str())
        .filter(|p| expected.contains(p))
        .collect();
    assert_eq!(
        got.len(),
        expected.len(),
        "every look-up was sent: {:?}",
        requests.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
    for r in requests.iter().filter(|r| expected.contains(&r.path.as_str())) {
        assert_eq!(
            r.header("authorization").or(r.header("private-token")),
            Some(auth),
            "{}",
            r.path
        );
    }
}

// ---- GitLab ---------------------------------------------------------------------------

const GL: &str = "glpat-SECRET-repos-aaaaaaaa";

#[tokio::test]
async fn gitlab_readable_missing_forbidden_and_empty() {
    let fake = FakeGitLab::start().await;
    for path in ["app-team/web", "app-team/sub/api", "app-team/ops"] {
        fake.add_repository(path);
    }
    fake.add_repository_like(FakeRepo {
        default_branch: None,
        ..FakeRepo::new("app-team/empty")
    });
    fake.add_token(
        GL,
        TokenSpec::jane_doe()
            .reads(["app-team/web", "app-team/sub/api", "app-team/empty"])
            .forbidden_on("app-team/ops"),
    );
    let list = paths(&[
        "app-team/web",
        "app-team/sub/api",
        "app-team/empty",
        "app-team/ops",
        "app-team/secret-thing",
    ]);
    let (v, found) = check(ProviderKind::GitLab, Apis::deployed(), &target(&fake.url(), GL), &list).await;
    let base = fake.url().as_str().trim_end_matches('/').replace("http://", "");
    assert_entries(
        &found,
        GL,
        &[
            readable(
                "app-team/web",
                Some("main"),
                Some(&format!("http://{base}/app-team/web.git")),
            ),
            readable(
                "app-team/sub/api",
                Some("main"),
                Some(&format!("http://{base}/app-team/sub/api.git")),
            ),
            readable(
                "app-team/empty",
                None,
                Some(&format!("http://{base}/app-team/empty.git")),
            ),
            unreadable("app-team/ops", RepositoryReason::Forbidden, &["Guest", "Reporter"]),
            unreadable(
                "app-team/secret-thing",
                RepositoryReason::NotFound,
                &[
                    "cannot see app-team/secret-thing or it does not exist",
                    "404",
                    "grant",
                    "fix the path",
                ],
            ),
        ],
    );
    assert_eq!(v.reason, ReadyReason::RepositoryUnreadable);
    assert!(
        v.message.starts_with("2 of 5 listed repositories cannot be read with this token: app-team/ops (Forbidden), app-team/secret-thing (NotFound)"),
        "{}",
        v.message
    );
    assert_eq!(
        v.facts.user.as_ref().and_then(|u| u.username.as_deref()),
        Some("jdoe"),
        "token facts stay"
    );
    assert_eq!(repositories::summary(&found), "3/5");
    assert_requests(
        &fake,
        &[
            "/api/v4/projects/app-team%2Fweb",
            "/api/v4/projects/app-team%2Fsub%2Fapi",
            "/api/v4/projects/app-team%2Fempty",
            "/api/v4/projects/app-team%2Fops",
            "/api/v4/projects/app-team%2Fsecret-thing",
        ],
        GL,
    );
}

#[tokio::test]
async fn gitlab_project_scope_refusal_and_a_token_failure_that_wins() {
    // A token without read_api is refused by the token check already (InsufficientScope): no
    // repository is looked up, the token's own reason stands.
    let fake = FakeGitLab::start().await;
    fake.add_repository("app-team/web");
    fake.add_token(GL, TokenSpec::user("jdoe").scopes(["read_user"]));
    let v = verify_within(provider(ProviderKind::GitLab), &client(), &target(&fake.url(), GL)).await;
    assert_eq!(v.reason, ReadyReason::InsufficientScope);
    assert_eq!(repositories::readiness(v, &[]).reason, ReadyReason::InsufficientScope);
    // The project endpoint's own scope refusal (a token whose scope changed between the two).
    let found = repositories::check_all(
        ProviderKind::GitLab,
        Apis::deployed(),
        &client(),
        &target(&fake.url(), GL),
        &paths(&["app-team/web"]),
        Concurrency::new(1),
    )
    .await
    .repositories;
    assert_unreadable(
        &found[0],
        "app-team/web",
        RepositoryReason::Forbidden,
        GL,
        &["403", "insufficient_scope", "read_api"],
    );
}

#[tokio::test]
async fn hundred_repositories_in_order_and_the_same_verification_flips_them() {
    let fake = FakeGitLab::start().await;
    let list: Vec<String> = (0..100).map(|i| format!("group/project-{i:03}")).collect();
    for path in &list {
        fake.add_repository(path);
    }
    fake.add_token(GL, TokenSpec::jane_doe());
    let t = target(&fake.url(), GL);
    let (v, found) = check(ProviderKind::GitLab, Apis::deployed(), &t, &list).await;
    assert_eq!(v.reason, ReadyReason::Verified, "{}", v.message);
    assert_eq!(found.len(), 100);
    for (entry, path) in found.iter().zip(&list) {
        assert_eq!(&entry.path, path, "same order as listed");
        assert!(entry.readable);
    }
    assert_eq!(repositories::summary(&found), "100/100");

    // Half of them go away: the next verification says so, naming the first few and counting.
    for path in list.iter().skip(50) {
        fake.remove_repository(path);
    }
    let (v, found) = check(ProviderKind::GitLab, Apis::deployed(), &t, &list).await;
    assert_eq!(repositories::summary(&found), "50/100");
    assert!(
        v.message.starts_with("50 of 100 listed repositories cannot be read with this token: group/project-050 (NotFound), group/project-051 (NotFound), group/project-052 (NotFound) and 47 more"),
        "{}",
        v.message
    );
    // They come back: readable again within the same verification.
    for path in list.iter().skip(50) {
        fake.add_repository(path);
    }
    let (v, found) = check(ProviderKind::GitLab, Apis::deployed(), &t, &list).await;
    assert_eq!(
        (v.reason, repositories::summary(&found).as_str()),
        (ReadyReason::Verified, "100/100")
    );
}

#[tokio::test]
async fn rotation_to_a_token_that_lost_access() {
    let fake = FakeGitLab::start().await;
    fake.add_repository("app-team/web");
    fake.add_token(GL, TokenSpec::jane_doe().reads(["app-team/web"]));
    let new_token = "glpat-SECRET-rotated-bbbbbbbb";
    fake.add_token(new_token, TokenSpec::jane_doe().reads_nothing());
    let list = paths(&["app-team/web"]);
    let (v, _) = check(ProviderKind::GitLab, Apis::deployed(), &target(&fake.url(), GL), &list).await;
    assert_eq!(v.reason, ReadyReason::Verified);
    let (v, found) = check(
        ProviderKind::GitLab,
        Apis::deployed(),
        &target(&fake.url(), new_token),
        &list,
    )
    .await;
    assert_eq!(v.reason, ReadyReason::RepositoryUnreadable);
    assert_unreadable(
        &found[0],
        "app-team/web",
        RepositoryReason::NotFound,
        new_token,
        &["404"],
    );
    assert!(
        fake.requests()
            .iter()
            .rfind(|r| r.path.starts_with("/api/v4/projects/"))
            .unwrap()
            .header("private-token")
            == Some(new_token),
        "the look-up used the new token"
    );
}

#[tokio::test]
async fn instance_failures_are_provider_errors_and_never_leak_the_token() {
    let fake = FakeGitLab::start().await;
    fake.add_repository("a/b");
    fake.add_repository("a/c");
    fake.add_token(GL, TokenSpec::jane_doe());
    fake.fault(Some("/api/v4/projects/a%2Fb"), Fault::status(503), None);
    fake.fault(
        Some("/api/v4/projects/a%2Fc"),
        Fault::status_with(
            404,
            &[("content-type", "application/json")],
            &format!(r#"{{"message":"no project for token {GL}"}}"#),
        ),
        None,
    );
    let (v, found) = check(
        ProviderKind::GitLab,
        Apis::deployed(),
        &target(&fake.url(), GL),
        &paths(&["a/b", "a/c"]),
    )
    .await;
    assert_unreadable(
        &found[0],
        "a/b",
        RepositoryReason::ProviderError,
        GL,
        &["503", "tried again"],
    );
    assert!(repositories::any_transient(&found));
    assert_unreadable(&found[1], "a/c", RepositoryReason::NotFound, GL, &["<redacted>"]);
    assert!(!v.message.contains(GL));
}

#[tokio::test]
async fn a_redirect_to_another_host_never_carries_the_token() {
    let fake = FakeGitLab::start().await;
    let elsewhere = FakeGitLab::start().await;
    fake.add_token(GL, TokenSpec::jane_doe());
    let away = format!(
        "{}/api/v4/projects/a%2Fb",
        elsewhere.https_url().as_str().trim_end_matches('/')
    );
    fake.fault(Some("/api/v4/projects/"), Fault::Redirect(away), None);
    let (_, found) = check(
        ProviderKind::GitLab,
        Apis::deployed(),
        &target(&fake.url(), GL),
        &paths(&["a/b"]),
    )
    .await;
    assert_unreadable(&found[0], "a/b", RepositoryReason::ProviderError, GL, &["302"]);
    assert!(
        elsewhere.requests().iter().all(|r| !r.has_credentials()),
        "no credentials followed the redirect"
    );
}

#[tokio::test]
async fn unreachable_instance() {
    let fake = FakeGitLab::start().await;
    fake.add_token(GL, TokenSpec::jane_doe());
    fake.add_repository("a/b");
    fake.fault(Some("/api/v4/projects/"), Fault::Delay(Duration::from_secs(3)), None);
    let http = HttpClient::new(HttpConfig {
        timeout: Duration::from_millis(300),
        retry_base_delay: Duration::from_millis(10),
        ..HttpConfig::default()
    });
    let t = target(&fake.url(), GL);
    let found = repositories::check_all(
        ProviderKind::GitLab,
        Apis::deployed(),
        &http,
        &t,
        &paths(&["a/b"]),
        Concurrency::new(1),
    )
    .await
    .repositories;
    assert_unreadable(&found[0], "a/b", RepositoryReason::Unreachable, GL, &["no answer"]);
}

// ---- GitHub ---------------------------------------------------------------------------

const GH: &str = "ghp_SECRETreposaaaaaaaaaaaaaaaaaaaaaaaaa";

#[tokio::test]
async fn github_com_readable_fine_grained_404_forbidden_and_sso() {
    let fake = FakeGitHub::start().await;
    for path in ["octo-org/web", "octo-org/infra", "sso-org/secret", "octo-org/locked"] {
        fake.add_repository(path);
    }
    fake.add_token(
        GH,
        TokenSpec::user("octocat")
            .reads(["octo-org/web"])
            .forbidden_on("octo-org/locked")
            .sso_required_on("sso-org/secret"),
    );
    let github = GitHub::with_cloud_api(fake.url());
    let apis = Apis {
        github: &github,
        ..Apis::deployed()
    };
    let t = target(&"https://github.com".parse().unwrap(), GH);
    let list = paths(&["octo-org/web", "octo-org/infra", "sso-org/secret", "octo-org/locked"]);
    let (v, found) = check(ProviderKind::GitHub, apis, &t, &list).await;
    assert_entries(
        &found,
        GH,
        &[
            readable(
                "octo-org/web",
                Some("main"),
                Some("https://github.com/octo-org/web.git"),
            ),
            // A fine-grained token made for other repositories: GitHub answers 404, as for a missing one.
            unreadable(
                "octo-org/infra",
                RepositoryReason::NotFound,
                &["cannot see", "does not exist"],
            ),
            unreadable(
                "sso-org/secret",
                RepositoryReason::SsoRequired,
                &[
                    "SAML single sign-on",
                    "https://github.com/orgs/sso-org/sso?authorization_request=",
                ],
            ),
            unreadable(
                "octo-org/locked",
                RepositoryReason::Forbidden,
                &["403", "Resource not accessible"],
            ),
        ],
    );
    assert_eq!(v.reason, ReadyReason::RepositoryUnreadable);
    assert!(v.message.contains("sso-org/secret (SSORequired)"), "{}", v.message);
    let requests = fake.requests();
    for r in requests.iter().filter(|r| r.path.starts_with("/repos/")) {
        assert_eq!(r.header("authorization"), Some(format!("Bearer {GH}").as_str()));
        assert_eq!(r.header("accept"), Some("application/vnd.github+json"));
    }
    assert_requests(
        &fake,
        &[
            "/repos/octo-org/web",
            "/repos/octo-org/infra",
            "/repos/sso-org/secret",
            "/repos/octo-org/locked",
        ],
        &format!("Bearer {GH}"),
    );
}

#[tokio::test]
async fn github_enterprise_server_repositories() {
    let fake = FakeGitHub::start_enterprise("3.14.2").await;
    fake.add_repository("platform/api");
    fake.add_token(GH, TokenSpec::user("jdoe").scopes(["repo"]));
    let t = target(&fake.url(), GH);
    let (v, found) = check(
        ProviderKind::GitHub,
        Apis::deployed(),
        &t,
        &paths(&["platform/api", "platform/gone"]),
    )
    .await;
    let host = fake.url().as_str().trim_end_matches('/').to_owned();
    assert_entries(
        &found,
        GH,
        &[
            readable("platform/api", Some("main"), Some(&format!("{host}/platform/api.git"))),
            unreadable("platform/gone", RepositoryReason::NotFound, &["404"]),
        ],
    );
    assert_eq!(v.reason, ReadyReason::RepositoryUnreadable);
    assert_requests(
        &fake,
        &["/api/v3/repos/platform/api", "/api/v3/repos/platform/gone"],
        &format!("Bearer {GH}"),
    );
}

#[tokio::test]
async fn github_rate_limit_on_a_look_up_is_a_provider_error() {
    let fake = FakeGitHub::start().await;
    fake.add_repository("o/r");
    fake.add_token(GH, TokenSpec::user("octocat"));
    fake.fault(
        Some("/repos/"),
        Fault::status_with(
            403,
            &[("x-ratelimit-remaining", "0"), ("content-type", "application/json")],
            r#"{"message":"API rate limit exceeded"}"#,
        ),
        None,
    );
    let github = GitHub::with_cloud_api(fake.url());
    let apis = Apis {
        github: &github,
        ..Apis::deployed()
    };
    let (_, found) = check(
        ProviderKind::GitHub,
        apis,
        &target(&"https://github.com".parse().unwrap(), GH),
        &paths(&["o/r"]),
    )
    .await;
    assert_unreadable(&found[0], "o/r", RepositoryReason::ProviderError, GH, &["rate-limited"]);
}

// ---- Bitbucket ------------------------------------------------------------------------

const BBS: &str = "BBDC-SECRETreposaaaaaaaaaaaaaaaaaaaaaaaa";
const BBC: &str = "ATATT3xSECRETreposaaaaaaaaaaaaaaaa";

#[tokio::test]
async fn bitbucket_server_permissions_and_default_branch() {
    let fake = FakeBitbucketServer::start().await;
    fake.add_repository("PRJ/app");
    fake.add_repository("PRJ/ops");
    fake.add_repository_like(FakeRepo {
        default_branch: None,
        ..FakeRepo::new("PRJ/empty")
    });
    fake.add_repository("~jdoe/personal");
    fake.add_token(
        BBS,
        TokenSpec::user("jdoe")
            .reads(["PRJ/app", "PRJ/empty", "~jdoe/personal"])
            .forbidden_on("PRJ/ops"),
    );
    let t = target(&fake.url(), BBS);
    let list = paths(&["PRJ/app", "PRJ/empty", "~jdoe/personal", "PRJ/ops", "PRJ/missing"]);
    let (v, found) = check(ProviderKind::Bitbucket, Apis::deployed(), &t, &list).await;
    let host = fake.url().as_str().trim_end_matches('/').to_owned();
    assert_entries(
        &found,
        BBS,
        &[
            readable("PRJ/app", Some("main"), Some(&format!("{host}/scm/prj/app.git"))),
            readable("PRJ/empty", None, Some(&format!("{host}/scm/prj/empty.git"))),
            readable(
                "~jdoe/personal",
                Some("main"),
                Some(&format!("{host}/scm/~jdoe/personal.git")),
            ),
            // A removed project permission: Bitbucket answers 401 to an authenticated user.
            unreadable(
                "PRJ/ops",
                RepositoryReason::Forbidden,
                &["401", "not permitted", "Repository read"],
            ),
            unreadable("PRJ/missing", RepositoryReason::NotFound, &["does not exist"]),
        ],
    );
    assert_eq!(v.reason, ReadyReason::RepositoryUnreadable);
    assert_requests(
        &fake,
        &[
            "/rest/api/1.0/projects/PRJ/repos/app",
            "/rest/api/1.0/projects/PRJ/repos/app/default-branch",
            "/rest/api/1.0/projects/PRJ/repos/ops",
            "/rest/api/1.0/projects/%7Ejdoe/repos/personal",
        ],
        &format!("Bearer {BBS}"),
    );
}

#[tokio::test]
async fn bitbucket_cloud_repositories() {
    let fake = FakeBitbucketCloud::start().await;
    fake.add_repository("acme/web");
    fake.add_repository("acme/ops");
    fake.add_token(
        BBC,
        TokenSpec::user("jdoe")
            .email("jdoe@example.com")
            .scopes(["read:user:bitbucket", "read:repository:bitbucket"])
            .reads(["acme/web"])
            .forbidden_on("acme/ops"),
    );
    let bitbucket = Bitbucket::with_cloud_api(fake.url());
    let apis = Apis {
        bitbucket: &bitbucket,
        ..Apis::deployed()
    };
    let t = Target {
        username: Some("jdoe@example.com".into()),
        ..target(&"https://bitbucket.org".parse().unwrap(), BBC)
    };
    let (v, found) = check(
        ProviderKind::Bitbucket,
        apis,
        &t,
        &paths(&["acme/web", "acme/ops", "acme/gone"]),
    )
    .await;
    // The https clone link carries the account name; the status does not.
    assert_entries(
        &found,
        BBC,
        &[
            readable("acme/web", Some("main"), Some("https://bitbucket.org/acme/web.git")),
            unreadable("acme/ops", RepositoryReason::Forbidden, &["403", "read access"]),
            unreadable("acme/gone", RepositoryReason::NotFound, &["not found"]),
        ],
    );
    assert_eq!(v.reason, ReadyReason::RepositoryUnreadable);
    let requests = fake.requests();
    let repo_requests: Vec<_> = requests
        .iter()
        .filter(|r| r.path.starts_with("/2.0/repositories/"))
        .collect();
    assert_eq!(repo_requests.len(), 3);
    assert!(
        repo_requests
            .iter()
            .all(|r| r.header("authorization").is_some_and(|a| a.starts_with("Basic ")))
    );
}

#[tokio::test]
async fn bitbucket_cloud_token_without_the_repository_scope() {
    let fake = FakeBitbucketCloud::start().await;
    fake.add_repository("acme/web");
    fake.add_token(
        BBC,
        TokenSpec::user("jdoe")
            .email("jdoe@example.com")
            .scopes(["read:user:bitbucket"]),
    );
    let bitbucket = Bitbucket::with_cloud_api(fake.url());
    let apis = Apis {
        bitbucket: &bitbucket,
        ..Apis::deployed()
    };
    let t = Target {
        username: Some("jdoe@example.com".into()),
        ..target(&"https://bitbucket.org".parse().unwrap(), BBC)
    };
    let (_, found) = check(ProviderKind::Bitbucket, apis, &t, &paths(&["acme/web"])).await;
    assert_unreadable(
        &found[0],
        "acme/web",
        RepositoryReason::Forbidden,
        BBC,
        &["403", "privilege scopes", "read:repository:bitbucket"],
    );
}

// ---- Azure DevOps ---------------------------------------------------------------------

const AZ: &str = "azpatSECRETreposaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

#[tokio::test]
async fn azure_devops_services_project_and_repository_lookup() {
    let fake = FakeAzureDevOps::start_services().await;
    fake.add_repository("Fabrikam Fiber/web app");
    fake.add_repository("Fabrikam Fiber/ops");
    fake.add_repository_like(FakeRepo {
        disabled: true,
        ..FakeRepo::new("Fabrikam Fiber/old")
    });
    fake.add_token(
        AZ,
        TokenSpec::user("jane@example.com")
            .scopes(["vso.project", "vso.code"])
            .reads(["Fabrikam Fiber/web app", "Fabrikam Fiber/old"])
            .forbidden_on("Fabrikam Fiber/ops"),
    );
    let t = target(&fake.collection_url("/fabrikam"), AZ);
    let list = paths(&[
        "Fabrikam Fiber/web app",
        "Fabrikam Fiber/ops",
        "Fabrikam Fiber/old",
        "Fabrikam Fiber/missing",
        "Other Project/app",
    ]);
    let (v, found) = check(ProviderKind::AzureDevOps, Apis::deployed(), &t, &list).await;
    let host = fake.url().as_str().trim_end_matches('/').to_owned();
    assert_entries(
        &found,
        AZ,
        &[
            readable(
                "Fabrikam Fiber/web app",
                Some("main"),
                Some(&format!("{host}/fabrikam/Fabrikam%20Fiber/_git/web%20app")),
            ),
            unreadable(
                "Fabrikam Fiber/ops",
                RepositoryReason::Forbidden,
                &["401", "TF400813", "Code (Read)"],
            ),
            unreadable("Fabrikam Fiber/old", RepositoryReason::Forbidden, &["disabled"]),
            unreadable("Fabrikam Fiber/missing", RepositoryReason::NotFound, &["TF401019"]),
            unreadable(
                "Other Project/app",
                RepositoryReason::NotFound,
                &["TF200016", "project does not exist"],
            ),
        ],
    );
    assert_eq!(v.reason, ReadyReason::RepositoryUnreadable);
    assert_requests(
        &fake,
        &["/fabrikam/Fabrikam%20Fiber/_apis/git/repositories/web%20app?api-version=5.0"],
        &format!("Basic {}", {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(format!(":{AZ}"))
        }),
    );
}

#[tokio::test]
async fn azure_devops_server_old_tfs_and_a_pat_without_code_read() {
    let fake = FakeAzureDevOps::start_server().await;
    fake.set_max_api_version(3.0);
    fake.add_repository("Platform/api");
    fake.add_token(AZ, TokenSpec::user("CONTOSO\\jdoe"));
    let t = target(&fake.collection_url("/tfs/DefaultCollection"), AZ);
    let (v, found) = check(
        ProviderKind::AzureDevOps,
        Apis::deployed(),
        &t,
        &paths(&["Platform/api"]),
    )
    .await;
    assert_eq!(v.reason, ReadyReason::Verified, "{}", v.message);
    let host = fake.url().as_str().trim_end_matches('/').to_owned();
    assert_readable(
        &found[0],
        "Platform/api",
        Some("main"),
        Some(&format!("{host}/tfs/DefaultCollection/Platform/_git/api")),
    );
    let versions: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| r.path.contains("/_apis/git/repositories/"))
        .map(|r| r.path.rsplit('=').next().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(versions, ["5.0", "2.0"], "5.0 first, then the TFS fallback");

    let scoped = "azpatSECRETscopedaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    fake.add_token(scoped, TokenSpec::user("CONTOSO\\jdoe").scopes(["vso.project"]));
    let (_, found) = check(
        ProviderKind::AzureDevOps,
        Apis::deployed(),
        &target(&fake.collection_url("/tfs/DefaultCollection"), scoped),
        &paths(&["Platform/api"]),
    )
    .await;
    assert_unreadable(
        &found[0],
        "Platform/api",
        RepositoryReason::Forbidden,
        scoped,
        &["401", "Code (Read)"],
    );
}

// ---- Gitea / Forgejo ------------------------------------------------------------------

const GT: &str = "giteaSECRETreposaaaaaaaaaaaaaaaaaaaaaaaaa";

#[tokio::test]
async fn gitea_repositories() {
    let fake = FakeGitea::start().await;
    fake.add_repository("org/app");
    fake.add_repository("org/wiki-only");
    fake.add_repository_like(FakeRepo {
        default_branch: None,
        ..FakeRepo::new("org/empty")
    });
    fake.add_token(
        GT,
        TokenSpec::user("jdoe")
            .reads(["org/app", "org/empty"])
            .forbidden_on("org/wiki-only"),
    );
    let t = target(&fake.url(), GT);
    let (v, found) = check(
        ProviderKind::Gitea,
        Apis::deployed(),
        &t,
        &paths(&["org/app", "org/empty", "org/wiki-only", "org/nope"]),
    )
    .await;
    let host = fake.url().as_str().trim_end_matches('/').to_owned();
    assert_entries(
        &found,
        GT,
        &[
            readable("org/app", Some("main"), Some(&format!("{host}/org/app.git"))),
            readable("org/empty", None, Some(&format!("{host}/org/empty.git"))),
            unreadable("org/wiki-only", RepositoryReason::Forbidden, &["not read (pull)"]),
            unreadable("org/nope", RepositoryReason::NotFound, &["couldn't be found"]),
        ],
    );
    assert_eq!(v.reason, ReadyReason::RepositoryUnreadable);
    assert_requests(
        &fake,
        &["/api/v1/repos/org/app", "/api/v1/repos/org/nope"],
        &format!("token {GT}"),
    );

    // A scoped token without read:repository is refused at the token already: nothing to look up.
    let scoped = "giteaSECRETscopedaaaaaaaaaaaaaaaaaaaaaa";
    fake.add_token(scoped, TokenSpec::user("jdoe").scopes(["read:user"]));
    let v = verify_within(provider(ProviderKind::Gitea), &client(), &target(&fake.url(), scoped)).await;
    assert_eq!(v.reason, ReadyReason::InsufficientScope);
}

#[tokio::test]
async fn https_look_ups_use_the_connection_ca() {
    let fake = FakeGitea::start().await;
    fake.add_repository("org/app");
    fake.add_token(GT, TokenSpec::user("jdoe"));
    let t = Target {
        tls: TlsOptions {
            extra_ca_pem: Some(pki().ca_pem.clone()),
            insecure_skip_verify: false,
        },
        ..target(&fake.https_url(), GT)
    };
    let (v, found) = check(ProviderKind::Gitea, Apis::deployed(), &t, &paths(&["org/app"])).await;
    assert_eq!(v.reason, ReadyReason::Verified, "{}", v.message);
    assert!(found[0].readable);
}
