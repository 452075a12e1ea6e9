//! Every provider against a local server that answers as the provider's documentation shows:
//! success, bad token, expired, insufficient scope and the provider's quirks, asserting the
//! whole resulting `Verification` (reason, facts, and a message that says what to do and
//! never contains the token).

mod support;

use gitprovider_operator::api::{AuthenticatedUser, Deployment, ReadyReason};
use gitprovider_operator::providers::bitbucket::{BITBUCKET, Bitbucket};
use gitprovider_operator::providers::github::{GITHUB, GitHub};
use gitprovider_operator::providers::http::HttpClient;
use gitprovider_operator::providers::{Facts, Provider, Target, Verification, provider, verify_within};
use std::time::Duration;
use support::fake_providers::*;
use support::verifying::{http_client, target};

fn client() -> HttpClient {
    http_client(Duration::from_secs(5))
}

fn at(text: &str) -> jiff::Timestamp {
    text.parse().expect("timestamp")
}

fn user(username: &str, display_name: Option<&str>, email: Option<&str>) -> Option<AuthenticatedUser> {
    Some(AuthenticatedUser {
        username: Some(username.to_owned()),
        display_name: display_name.map(str::to_owned),
        email: email.map(str::to_owned),
    })
}

fn scopes(list: &[&str]) -> Option<Vec<String>> {
    Some(list.iter().map(|s| (*s).to_owned()).collect())
}

/// The reason, and a message that contains every `needle` (ignoring case) and not the token.
#[track_caller]
fn assert_outcome(v: &Verification, reason: ReadyReason, token: &str, needles: &[&str]) {
    assert_eq!(v.reason, reason, "{v:#?}");
    assert!(
        !v.message.contains(token),
        "the message reveals the token: {}",
        v.message
    );
    let lower = v.message.to_lowercase();
    for needle in needles {
        assert!(
            lower.contains(&needle.to_lowercase()),
            "message lacks {needle:?}: {}",
            v.message
        );
    }
}

async fn verify(provider: &dyn Provider, target: &Target) -> Verification {
    tokio::time::timeout(Duration::from_secs(20), verify_within(provider, &client(), target))
        .await
        .expect("verification finished in time")
}

/// One token a table verifies: the reason it must get and the words its message must carry.
struct Row {
    token: &'static str,
    reason: ReadyReason,
    says: &'static [&'static str],
}

const fn row(token: &'static str, reason: ReadyReason, says: &'static [&'static str]) -> Row {
    Row { token, reason, says }
}

/// Verifies each row's token with `provider` against `target(token)`, in order, checking its
/// outcome as [`assert_outcome`] does; a failure names the row's token. The verifications,
/// for what a row checks beyond.
async fn verify_rows(provider: &dyn Provider, target: impl Fn(&str) -> Target, rows: &[Row]) -> Vec<Verification> {
    let mut outcomes = Vec::new();
    for row in rows {
        let v = verify(provider, &target(row.token)).await;
        assert_eq!(v.reason, row.reason, "row {}: {v:#?}", row.token);
        assert!(
            !v.message.contains(row.token),
            "row {}: the message reveals the token: {}",
            row.token,
            v.message
        );
        let lower = v.message.to_lowercase();
        for needle in row.says {
            assert!(
                lower.contains(&needle.to_lowercase()),
                "row {}: message lacks {needle:?}: {}",
                row.token,
                v.message
            );
        }
        outcomes.push(v);
    }
    outcomes
}

// ---- GitLab ---------------------------------------------------------------------------

const GL_TOKEN: &str = "glpat-SECRET-aaaaaaaaaaaa";

#[tokio::test]
async fn gitlab_verified_with_every_fact() {
    let gitlab = FakeGitLab::start().await;
    gitlab.add_token(GL_TOKEN, TokenSpec::jane_doe());
    let v = verify(
        provider(gitprovider_operator::api::ProviderKind::GitLab),
        &target(&gitlab.url(), GL_TOKEN),
    )
    .await;
    assert_outcome(
        &v,
        ReadyReason::Verified,
        GL_TOKEN,
        &["authenticated as jdoe on GitLab 17.5.1-ee"],
    );
    assert_eq!(
        v.facts,
        Facts {
            user: user("jdoe", Some("Jane Doe"), Some("jdoe@example.com")),
            server_version: Some("17.5.1-ee".into()),
            deployment: Some(Deployment::SelfHosted),
            scopes: scopes(&["read_api", "read_repository"]),
            expires_at: Some(at("2099-01-31T00:00:00Z")),
        }
    );
    let requests = gitlab.requests();
    assert!(requests.iter().all(|r| r.header("private-token") == Some(GL_TOKEN)));
}

#[tokio::test]
async fn gitlab_bad_expired_revoked_and_scopeless_tokens() {
    let gitlab = FakeGitLab::start().await;
    gitlab.add_token("glpat-SECRET-expired", TokenSpec::user("a").expired());
    gitlab.add_token("glpat-SECRET-revoked", TokenSpec::user("b").revoked());
    gitlab.add_token("glpat-SECRET-readuser", TokenSpec::user("c").scopes(["read_user"]));
    let gl = provider(gitprovider_operator::api::ProviderKind::GitLab);
    let outcomes = verify_rows(
        gl,
        |token| target(&gitlab.url(), token),
        &[
            row("glpat-SECRET-unknown", ReadyReason::Unauthorized, &["401", "Secret"]),
            row(
                "glpat-SECRET-expired",
                ReadyReason::TokenExpired,
                &["expired", "create a new one"],
            ),
            row(
                "glpat-SECRET-revoked",
                ReadyReason::Unauthorized,
                &["revoked", "create a new one"],
            ),
            row(
                "glpat-SECRET-readuser",
                ReadyReason::InsufficientScope,
                &["read_api", "add the scope"],
            ),
        ],
    )
    .await;
    assert_eq!(outcomes[3].facts.user, user("c", None, None));
    assert_eq!(outcomes[3].facts.scopes, scopes(&["read_user"]));
}

#[tokio::test]
async fn gitlab_before_15_5_has_no_token_endpoint() {
    let gitlab = FakeGitLab::start().await;
    gitlab.set_self_endpoint(false);
    gitlab.set_version("15.0.0");
    gitlab.add_token(GL_TOKEN, TokenSpec::user("jdoe"));
    let v = verify(
        provider(gitprovider_operator::api::ProviderKind::GitLab),
        &target(&gitlab.url(), GL_TOKEN),
    )
    .await;
    assert_outcome(&v, ReadyReason::Verified, GL_TOKEN, &["jdoe", "15.0.0"]);
    assert_eq!(v.facts.scopes, None);
    assert_eq!(v.facts.expires_at, None);
}

// ---- GitHub ---------------------------------------------------------------------------

const GH_TOKEN: &str = "ghp_SECRETaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn github_cloud(fake: &FakeGitHub) -> GitHub {
    GitHub::with_cloud_api(fake.url())
}

fn github_com(token: &str) -> Target {
    target(&"https://github.com".parse().unwrap(), token)
}

#[tokio::test]
async fn github_com_classic_token() {
    let fake = FakeGitHub::start().await;
    fake.add_token(
        GH_TOKEN,
        TokenSpec::user("octocat")
            .display_name("The Octocat")
            .email("octocat@github.com")
            .scopes(["repo", "user:email"])
            .expires_at(at("2099-01-31T00:00:00Z")),
    );
    let v = verify(&github_cloud(&fake), &github_com(GH_TOKEN)).await;
    assert_outcome(
        &v,
        ReadyReason::Verified,
        GH_TOKEN,
        &["authenticated as octocat on GitHub.com"],
    );
    assert_eq!(
        v.facts,
        Facts {
            user: user("octocat", Some("The Octocat"), Some("octocat@github.com")),
            server_version: None,
            deployment: Some(Deployment::Cloud),
            scopes: scopes(&["repo", "user:email"]),
            expires_at: Some(at("2099-01-31T00:00:00Z")),
        }
    );
    let requests = fake.requests();
    let paths: Vec<_> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/user", "/user/emails"]);
    for r in &requests {
        assert_eq!(r.header("authorization"), Some(format!("Bearer {GH_TOKEN}").as_str()));
        assert_eq!(r.header("accept"), Some("application/vnd.github+json"));
        assert_eq!(r.header("x-github-api-version"), Some("2022-11-28"));
    }
}

#[tokio::test]
async fn github_fine_grained_token_reveals_no_scopes() {
    let fake = FakeGitHub::start().await;
    fake.add_token(GH_TOKEN, TokenSpec::user("octocat").email("octocat@github.com"));
    let v = verify(&github_cloud(&fake), &github_com(GH_TOKEN)).await;
    assert_outcome(&v, ReadyReason::Verified, GH_TOKEN, &["octocat"]);
    // No X-OAuth-Scopes, no public e-mail, no "Email addresses" permission: all left out.
    assert_eq!(
        v.facts,
        Facts {
            user: user("octocat", None, None),
            server_version: None,
            deployment: Some(Deployment::Cloud),
            scopes: None,
            expires_at: None,
        }
    );
}

#[tokio::test]
async fn github_enterprise_server() {
    let fake = FakeGitHub::start_enterprise("3.14.2").await;
    fake.add_token(
        GH_TOKEN,
        TokenSpec::user("hubot")
            .email("hubot@corp.example")
            .public_email()
            .scopes(["repo"]),
    );
    let v = verify(&GITHUB, &target(&fake.url(), GH_TOKEN)).await;
    assert_outcome(
        &v,
        ReadyReason::Verified,
        GH_TOKEN,
        &["authenticated as hubot on GitHub Enterprise Server 3.14.2"],
    );
    assert_eq!(
        v.facts,
        Facts {
            user: user("hubot", None, Some("hubot@corp.example")),
            server_version: Some("3.14.2".into()),
            deployment: Some(Deployment::SelfHosted),
            scopes: scopes(&["repo"]),
            expires_at: None,
        }
    );
    assert_eq!(fake.requests()[0].path, "/api/v3/user");
}

#[tokio::test]
async fn github_bad_expired_and_scopeless_tokens() {
    let fake = FakeGitHub::start().await;
    let gh = github_cloud(&fake);
    fake.add_token("ghp_SECRET_expired", TokenSpec::user("a").expired());
    fake.add_token(
        "ghp_SECRET_past",
        TokenSpec::user("b")
            .scopes(["repo"])
            .expires_at(at("2020-01-01T00:00:00Z")),
    );
    fake.add_token("ghp_SECRET_org", TokenSpec::user("c").scopes(["read:org"]));
    fake.add_token("ghp_SECRET_none", TokenSpec::user("d").scopes(Vec::<String>::new()));

    let outcomes = verify_rows(
        &gh,
        github_com,
        &[
            row(
                "ghp_SECRET_unknown",
                ReadyReason::Unauthorized,
                &["Bad credentials", "create a new"],
            ),
            // An expired token gets plain "Bad credentials": GitHub does not say it expired.
            row(
                "ghp_SECRET_expired",
                ReadyReason::Unauthorized,
                &["expired", "create a new"],
            ),
            // The expiry header says it has passed: that GitHub does say.
            row(
                "ghp_SECRET_past",
                ReadyReason::TokenExpired,
                &["2020-01-01", "create a new token"],
            ),
            row(
                "ghp_SECRET_org",
                ReadyReason::InsufficientScope,
                &["read:org", "add repo"],
            ),
            row(
                "ghp_SECRET_none",
                ReadyReason::InsufficientScope,
                &["no scopes", "add repo"],
            ),
        ],
    )
    .await;
    assert_eq!(outcomes[0].facts.deployment, Some(Deployment::Cloud));
    assert_eq!(outcomes[2].facts.expires_at, Some(at("2020-01-01T00:00:00Z")));
    assert_eq!(outcomes[2].facts.user, user("b", None, None));
    assert_eq!(outcomes[3].facts.scopes, scopes(&["read:org"]));
    assert_eq!(outcomes[4].facts.scopes, Some(vec![]));
}

#[tokio::test]
async fn github_rate_limit_is_not_a_token_problem() {
    let fake = FakeGitHub::start().await;
    fake.add_token(GH_TOKEN, TokenSpec::user("octocat").scopes(["repo"]));
    fake.exhaust_rate_limit(true);
    let v = verify(&github_cloud(&fake), &github_com(GH_TOKEN)).await;
    assert_outcome(
        &v,
        ReadyReason::ProviderError,
        GH_TOKEN,
        &["rate-limited", "2100-01-01", "not a token problem", "verified again"],
    );
    assert_eq!(
        fake.requests().iter().filter(|r| r.path == "/user").count(),
        1,
        "a 403 is not retried"
    );

    // A secondary rate limit: 429 with Retry-After, retried by the client, then fine.
    fake.exhaust_rate_limit(false);
    fake.fault(
        Some("/user"),
        Fault::status_with(
            429,
            &[("retry-after", "0"), ("content-type", "application/json")],
            r#"{"message":"You have exceeded a secondary rate limit."}"#,
        ),
        Some(1),
    );
    let v = verify(&github_cloud(&fake), &github_com(GH_TOKEN)).await;
    assert_outcome(&v, ReadyReason::Verified, GH_TOKEN, &["octocat"]);
}

#[tokio::test]
async fn github_url_that_is_no_github() {
    // A GitLab answers /api/v3/user with 404: not GitHub Enterprise Server.
    let gitlab = FakeGitLab::start().await;
    let v = verify(&GITHUB, &target(&gitlab.url(), GH_TOKEN)).await;
    assert_outcome(&v, ReadyReason::EndpointNotFound, GH_TOKEN, &["404", "check spec.url"]);
}

// ---- Bitbucket Data Center ------------------------------------------------------------

const BB_TOKEN: &str = "BBDC-SECRETaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

#[tokio::test]
async fn bitbucket_server_verified() {
    let fake = FakeBitbucketServer::start().await;
    fake.add_token(
        BB_TOKEN,
        TokenSpec::user("jdoe")
            .display_name("Jane Doe")
            .email("jdoe@example.com"),
    );
    let v = verify(&BITBUCKET, &target(&fake.url(), BB_TOKEN)).await;
    assert_outcome(
        &v,
        ReadyReason::Verified,
        BB_TOKEN,
        &["authenticated as jdoe on Bitbucket Data Center 8.19.5"],
    );
    assert_eq!(
        v.facts,
        Facts {
            user: user("jdoe", Some("Jane Doe"), Some("jdoe@example.com")),
            server_version: Some("8.19.5".into()),
            deployment: Some(Deployment::SelfHosted),
            scopes: None,
            expires_at: None,
        }
    );
    let requests = fake.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.header("authorization") == Some(format!("Bearer {BB_TOKEN}").as_str()))
    );
    assert!(requests.iter().all(|r| r.path.starts_with("/rest/api/1.0/")));
}

#[tokio::test]
async fn bitbucket_server_user_whose_slug_differs_from_the_name() {
    let fake = FakeBitbucketServer::start().await;
    fake.add_token(BB_TOKEN, TokenSpec::user("Jane.Doe").display_name("Jane Doe"));
    let v = verify(&BITBUCKET, &target(&fake.url(), BB_TOKEN)).await;
    assert_outcome(&v, ReadyReason::Verified, BB_TOKEN, &["Jane.Doe"]);
    assert_eq!(v.facts.user, user("Jane.Doe", Some("Jane Doe"), None));
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.path.starts_with("/rest/api/1.0/users?filter=Jane.Doe"))
    );
}

#[tokio::test]
async fn bitbucket_server_bad_expired_and_powerless_tokens() {
    let fake = FakeBitbucketServer::start().await;
    fake.add_token("BBDC-SECRET-expired", TokenSpec::user("a").expired());
    fake.add_token("BBDC-SECRET-none", TokenSpec::user("b").scopes(Vec::<String>::new()));

    let outcomes = verify_rows(
        &BITBUCKET,
        |token| target(&fake.url(), token),
        &[
            row(
                "BBDC-SECRET-unknown",
                ReadyReason::Unauthorized,
                &["401", "Authentication failed", "HTTP access token"],
            ),
            // Data Center does not document a distinct answer for expired tokens.
            row("BBDC-SECRET-expired", ReadyReason::Unauthorized, &["401"]),
            row(
                "BBDC-SECRET-none",
                ReadyReason::InsufficientScope,
                &["authenticates as b", "repository read"],
            ),
        ],
    )
    .await;
    assert_eq!(outcomes[2].facts.user, user("b", Some("b"), None));
    assert_eq!(outcomes[2].facts.server_version, Some("8.19.5".into()));
}

#[tokio::test]
async fn bitbucket_server_quirks() {
    let fake = FakeBitbucketServer::start().await;
    fake.add_token(BB_TOKEN, TokenSpec::user("jdoe"));

    // A 401 whose body says the token expired.
    fake.fault(
        Some("/rest/api/1.0/repos"),
        Fault::status_with(
            401,
            &[("content-type", "application/json")],
            r#"{"errors":[{"context":null,"message":"The access token has expired.","exceptionName":"com.atlassian.bitbucket.auth.ExpiredAccessTokenException"}]}"#,
        ),
        Some(1),
    );
    let v = verify(&BITBUCKET, &target(&fake.url(), BB_TOKEN)).await;
    assert_outcome(
        &v,
        ReadyReason::TokenExpired,
        BB_TOKEN,
        &["expired", "create a new HTTP access token"],
    );

    // The CAPTCHA lock after failed logins.
    fake.fault(
        Some("/rest/api/1.0/repos"),
        Fault::status_with(
            403,
            &[(
                "x-authentication-denied-reason",
                "CAPTCHA_CHALLENGE; login-url=http://bb/login",
            )],
            "",
        ),
        Some(1),
    );
    let v = verify(&BITBUCKET, &target(&fake.url(), BB_TOKEN)).await;
    assert_outcome(
        &v,
        ReadyReason::Unauthorized,
        BB_TOKEN,
        &["CAPTCHA", "sign in once in a browser"],
    );

    // A proxy that strips Authorization: the server answers anonymously.
    fake.ignore_credentials(true);
    let v = verify(&BITBUCKET, &target(&fake.url(), BB_TOKEN)).await;
    assert_outcome(&v, ReadyReason::Unauthorized, BB_TOKEN, &["X-AUSERNAME", "proxy"]);
    assert_eq!(v.facts.server_version, Some("8.19.5".into()));
    assert_eq!(v.facts.user, None);
}

// ---- Bitbucket Cloud ------------------------------------------------------------------

const BBC_TOKEN: &str = "ATATT3xSECRETaaaaaaaaaaaaaaaaaaaa";

fn bitbucket_org(token: &str, username: Option<&str>) -> Target {
    Target {
        username: username.map(str::to_owned),
        ..target(&"https://bitbucket.org".parse().unwrap(), token)
    }
}

#[tokio::test]
async fn bitbucket_cloud_needs_a_username() {
    let fake = FakeBitbucketCloud::start().await;
    let bb = Bitbucket::with_cloud_api(fake.url());
    let spec_url = "https://bitbucket.org".parse().unwrap();
    let message = bb.check_spec(&spec_url, None).unwrap_err();
    assert!(message.contains("spec.username"), "{message}");
    let v = verify(&bb, &bitbucket_org(BBC_TOKEN, None)).await;
    assert_outcome(
        &v,
        ReadyReason::InvalidSpec,
        BBC_TOKEN,
        &["needs spec.username", "Atlassian account email"],
    );
    assert!(fake.requests().is_empty(), "nothing is sent without a username");
}

#[tokio::test]
async fn bitbucket_cloud_api_token() {
    let fake = FakeBitbucketCloud::start().await;
    fake.add_token(
        BBC_TOKEN,
        TokenSpec::user("jdoe")
            .display_name("Jane Doe")
            .email("jdoe@example.com")
            .scopes(["read:user:bitbucket", "read:repository:bitbucket"]),
    );
    let bb = Bitbucket::with_cloud_api(fake.url());
    let v = verify(&bb, &bitbucket_org(BBC_TOKEN, Some("jdoe@example.com"))).await;
    assert_outcome(
        &v,
        ReadyReason::Verified,
        BBC_TOKEN,
        &["authenticated as jdoe on Bitbucket Cloud"],
    );
    assert_eq!(
        v.facts,
        Facts {
            user: user("jdoe", Some("Jane Doe"), Some("jdoe@example.com")),
            server_version: None,
            deployment: Some(Deployment::Cloud),
            scopes: None,
            expires_at: None,
        }
    );
    let requests = fake.requests();
    assert_eq!(requests[0].path, "/2.0/user");
    assert!(
        requests[0]
            .header("authorization")
            .is_some_and(|a| a.starts_with("Basic "))
    );
}

#[tokio::test]
async fn bitbucket_cloud_scopes_header_and_no_email_scope() {
    let fake = FakeBitbucketCloud::start().await;
    fake.send_scopes_header(true);
    fake.add_token(
        BBC_TOKEN,
        TokenSpec::user("jdoe")
            .email("jdoe@example.com")
            .scopes(["account", "repository"]),
    );
    let bb = Bitbucket::with_cloud_api(fake.url());
    let v = verify(&bb, &bitbucket_org(BBC_TOKEN, Some("jdoe@example.com"))).await;
    assert_outcome(&v, ReadyReason::Verified, BBC_TOKEN, &["jdoe"]);
    assert_eq!(
        v.facts,
        Facts {
            user: user("jdoe", None, None),
            server_version: None,
            deployment: Some(Deployment::Cloud),
            scopes: scopes(&["account", "repository"]),
            expires_at: None,
        }
    );
}

#[tokio::test]
async fn bitbucket_cloud_rejections() {
    let fake = FakeBitbucketCloud::start().await;
    fake.add_token(
        BBC_TOKEN,
        TokenSpec::user("jdoe")
            .email("jdoe@example.com")
            .scopes(["read:user:bitbucket"]),
    );
    fake.add_token(
        "ATATT-SECRET-expired",
        TokenSpec::user("x").email("x@example.com").expired(),
    );
    fake.add_token(
        "ATATT-SECRET-repo",
        TokenSpec::user("y")
            .email("y@example.com")
            .scopes(["read:repository:bitbucket"]),
    );
    let bb = Bitbucket::with_cloud_api(fake.url());

    let v = verify(&bb, &bitbucket_org(BBC_TOKEN, Some("someone-else@example.com"))).await;
    assert_outcome(
        &v,
        ReadyReason::Unauthorized,
        BBC_TOKEN,
        &["spec.username", "Atlassian account email", "API token"],
    );

    let v = verify(&bb, &bitbucket_org("ATATT-SECRET-unknown", Some("jdoe@example.com"))).await;
    assert_outcome(&v, ReadyReason::Unauthorized, "ATATT-SECRET-unknown", &["401"]);

    let v = verify(&bb, &bitbucket_org("ATATT-SECRET-expired", Some("x@example.com"))).await;
    assert_outcome(&v, ReadyReason::Unauthorized, "ATATT-SECRET-expired", &["401"]);

    let v = verify(&bb, &bitbucket_org("ATATT-SECRET-repo", Some("y@example.com"))).await;
    assert_outcome(
        &v,
        ReadyReason::InsufficientScope,
        "ATATT-SECRET-repo",
        &["403", "read:user:bitbucket"],
    );
    assert_eq!(v.facts.deployment, Some(Deployment::Cloud));
}

// ---- Azure DevOps ---------------------------------------------------------------------

const AZ_TOKEN: &str = "azpatSECRETaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn azure() -> &'static dyn Provider {
    provider(gitprovider_operator::api::ProviderKind::AzureDevOps)
}

#[tokio::test]
async fn azure_devops_services_verified() {
    let fake = FakeAzureDevOps::start_services().await;
    fake.add_token(
        AZ_TOKEN,
        TokenSpec::user("jane@example.com")
            .display_name("Jane Doe")
            .scopes(["vso.project", "vso.code"]),
    );
    let v = verify(azure(), &target(&fake.collection_url("/fabrikam"), AZ_TOKEN)).await;
    assert_outcome(
        &v,
        ReadyReason::Verified,
        AZ_TOKEN,
        &["authenticated as jane@example.com on Azure DevOps Services"],
    );
    assert_eq!(
        v.facts,
        Facts {
            user: user("jane@example.com", Some("Jane Doe"), Some("jane@example.com")),
            server_version: None,
            deployment: Some(Deployment::Cloud),
            scopes: None,
            expires_at: None,
        }
    );
    let requests = fake.requests();
    let paths: Vec<_> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/fabrikam/_apis/connectionData?connectOptions=none",
            "/fabrikam/_apis/projects?$top=1&api-version=5.0"
        ]
    );
    use base64::Engine as _;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(":{AZ_TOKEN}"))
    );
    assert!(
        requests
            .iter()
            .all(|r| r.header("authorization") == Some(basic.as_str()))
    );
}

#[tokio::test]
async fn azure_devops_server_verified_and_old_tfs() {
    let fake = FakeAzureDevOps::start_server().await;
    fake.add_token(AZ_TOKEN, TokenSpec::user("CONTOSO\\jdoe").display_name("Jane Doe"));
    let url = fake.collection_url("/tfs/DefaultCollection");
    let v = verify(azure(), &target(&url, AZ_TOKEN)).await;
    assert_outcome(
        &v,
        ReadyReason::Verified,
        AZ_TOKEN,
        &["authenticated as CONTOSO\\jdoe on Azure DevOps Server"],
    );
    assert_eq!(
        v.facts,
        Facts {
            user: user("CONTOSO\\jdoe", Some("Jane Doe"), None),
            server_version: None,
            deployment: Some(Deployment::SelfHosted),
            scopes: None,
            expires_at: None,
        }
    );

    // TFS 2017 does not serve api-version 5.0: the projects read falls back to 2.0.
    fake.set_max_api_version(3.2);
    let v = verify(azure(), &target(&url, AZ_TOKEN)).await;
    assert_outcome(&v, ReadyReason::Verified, AZ_TOKEN, &["CONTOSO\\jdoe"]);
    assert!(fake.requests().iter().any(|r| r.path.ends_with("api-version=2.0")));
}

#[tokio::test]
async fn azure_devops_invalid_pat_in_all_its_shapes() {
    let fake = FakeAzureDevOps::start_services().await;
    let url = fake.collection_url("/fabrikam");
    let bad = "azpatSECRET-unknown";

    let v = verify(azure(), &target(&url, bad)).await;
    assert_outcome(&v, ReadyReason::Unauthorized, bad, &["401", "valid PAT"]);

    fake.answer_invalid_tokens_with(InvalidTokenAnswer::SignInPage203);
    let v = verify(azure(), &target(&url, bad)).await;
    assert_outcome(
        &v,
        ReadyReason::Unauthorized,
        bad,
        &["203", "sign-in page", "create a new one"],
    );

    fake.answer_invalid_tokens_with(InvalidTokenAnswer::RedirectToSignIn);
    let v = verify(azure(), &target(&url, bad)).await;
    assert_outcome(&v, ReadyReason::Unauthorized, bad, &["302", "sign-in page"]);
    // The sign-in host is never contacted, let alone with the PAT.
    assert!(fake.requests().iter().all(|r| r.path.starts_with("/fabrikam/_apis/")));
}

#[tokio::test]
async fn azure_devops_expired_and_scopeless_pats() {
    let fake = FakeAzureDevOps::start_services().await;
    fake.add_token("azpatSECRET-expired", TokenSpec::user("a@example.com").expired());
    fake.add_token(
        "azpatSECRET-code",
        TokenSpec::user("b@example.com").scopes(["vso.code"]),
    );
    let url = fake.collection_url("/fabrikam");

    let outcomes = verify_rows(
        azure(),
        |token| target(&url, token),
        &[
            row(
                "azpatSECRET-expired",
                ReadyReason::TokenExpired,
                &[
                    "The Personal Access Token used has expired",
                    "create a new personal access token",
                ],
            ),
            row(
                "azpatSECRET-code",
                ReadyReason::InsufficientScope,
                &["b@example.com", "Project and Team (Read)"],
            ),
        ],
    )
    .await;
    assert_eq!(
        outcomes[1].facts.user,
        user("b@example.com", Some("b@example.com"), Some("b@example.com"))
    );
    assert_eq!(outcomes[1].facts.deployment, Some(Deployment::Cloud));
}

#[tokio::test]
async fn azure_devops_html_is_never_success() {
    let fake = FakeAzureDevOps::start_services().await;
    fake.add_token(AZ_TOKEN, TokenSpec::user("jane@example.com").scopes(["vso.project"]));
    let url = fake.collection_url("/fabrikam");

    // A sign-in page with 200.
    fake.fault(
        None,
        Fault::status_with(
            200,
            &[("content-type", "text/html")],
            support::fake_providers::azure_devops::SIGN_IN_PAGE,
        ),
        Some(1),
    );
    let v = verify(azure(), &target(&url, AZ_TOKEN)).await;
    assert_outcome(
        &v,
        ReadyReason::Unauthorized,
        AZ_TOKEN,
        &["sign-in page", "not accepted"],
    );

    // Some other portal page with 200.
    fake.fault(
        None,
        Fault::status_with(
            200,
            &[("content-type", "text/html")],
            "<html><body>Welcome to the intranet</body></html>",
        ),
        Some(1),
    );
    let v = verify(azure(), &target(&url, AZ_TOKEN)).await;
    assert_outcome(
        &v,
        ReadyReason::EndpointNotFound,
        AZ_TOKEN,
        &["HTML page", "check spec.url"],
    );
}

#[tokio::test]
async fn azure_devops_needs_the_organization() {
    let v = verify(azure(), &target(&"https://dev.azure.com/".parse().unwrap(), AZ_TOKEN)).await;
    assert_outcome(
        &v,
        ReadyReason::InvalidSpec,
        AZ_TOKEN,
        &["https://dev.azure.com/ORGANIZATION"],
    );
}

// ---- Gitea / Forgejo ------------------------------------------------------------------

const GT_TOKEN: &str = "0123456789abcdefSECRET0123456789abcdef01";

fn gitea() -> &'static dyn Provider {
    provider(gitprovider_operator::api::ProviderKind::Gitea)
}

#[tokio::test]
async fn gitea_verified() {
    let fake = FakeGitea::start().await;
    fake.add_token(
        GT_TOKEN,
        TokenSpec::user("alice")
            .display_name("Alice Liddell")
            .email("alice@example.com")
            .scopes(["read:user", "read:repository"]),
    );
    let v = verify(gitea(), &target(&fake.url(), GT_TOKEN)).await;
    assert_outcome(
        &v,
        ReadyReason::Verified,
        GT_TOKEN,
        &["authenticated as alice on Gitea 1.22.3"],
    );
    assert_eq!(
        v.facts,
        Facts {
            user: user("alice", Some("Alice Liddell"), Some("alice@example.com")),
            server_version: Some("1.22.3".into()),
            deployment: Some(Deployment::SelfHosted),
            scopes: None,
            expires_at: None,
        }
    );
    let requests = fake.requests();
    assert!(
        requests
            .iter()
            .all(|r| r.header("authorization") == Some(format!("token {GT_TOKEN}").as_str()))
    );
}

#[tokio::test]
async fn forgejo_is_named_as_such() {
    let fake = FakeGitea::start().await;
    fake.set_version("9.0.0+gitea-1.22.0");
    fake.add_token(GT_TOKEN, TokenSpec::user("alice"));
    let v = verify(gitea(), &target(&fake.url(), GT_TOKEN)).await;
    assert_outcome(&v, ReadyReason::Verified, GT_TOKEN, &["on Forgejo 9.0.0+gitea-1.22.0"]);
    assert_eq!(v.facts.user, user("alice", None, None));
}

#[tokio::test]
async fn gitea_bad_expired_and_scopeless_tokens() {
    let fake = FakeGitea::start().await;
    fake.add_token("gitea-SECRET-expired", TokenSpec::user("a").expired());
    fake.add_token("gitea-SECRET-repo", TokenSpec::user("b").scopes(["read:repository"]));
    fake.add_token("gitea-SECRET-user", TokenSpec::user("c").scopes(["read:user"]));

    let outcomes = verify_rows(
        gitea(),
        |token| target(&fake.url(), token),
        &[
            row(
                "gitea-SECRET-unknown",
                ReadyReason::Unauthorized,
                &["401", "token is required", "valid access token"],
            ),
            // Gitea tokens do not expire; one the server no longer takes is just rejected.
            row("gitea-SECRET-expired", ReadyReason::Unauthorized, &["401"]),
            row(
                "gitea-SECRET-repo",
                ReadyReason::InsufficientScope,
                &["[read:user]", "create a token with the read:user scope"],
            ),
            row(
                "gitea-SECRET-user",
                ReadyReason::InsufficientScope,
                &["read:repository"],
            ),
        ],
    )
    .await;
    assert_eq!(outcomes[3].facts.user, user("c", None, None));
}

#[tokio::test]
async fn an_echoed_token_never_reaches_the_message() {
    let fake = FakeGitea::start().await;
    fake.fault(
        Some("/api/v1/user"),
        Fault::status_with(
            401,
            &[("content-type", "application/json")],
            &format!(r#"{{"message":"unknown token {GT_TOKEN}"}}"#),
        ),
        None,
    );
    let v = verify(gitea(), &target(&fake.url(), GT_TOKEN)).await;
    assert_outcome(&v, ReadyReason::Unauthorized, GT_TOKEN, &["unknown token <redacted>"]);
}
