//! `gitprovider-operator verify`: the built binary against a local GitLab, asserting exit codes,
//! the printed status, and that the token never appears in any output, even at trace level.

mod support;

use serde_json::Value;
use std::process::Output;
use support::fake_providers::gitlab::FakeGitLab;
use support::fake_providers::{TokenSpec, pki};

const TOKEN: &str = "glpat-s3cr3t-verify-cli-token";

async fn gitlab() -> FakeGitLab {
    let gitlab = FakeGitLab::start().await;
    gitlab.add_token(
        TOKEN,
        TokenSpec::user("jdoe")
            .display_name("Jane Doe")
            .email("jdoe@example.com")
            .scopes(["read_api"])
            .expires_at("2099-01-31T00:00:00Z".parse().unwrap()),
    );
    gitlab
}

/// Runs the binary off the runtime thread so the fake keeps answering.
async fn verify(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_gitprovider-operator"));
    command.arg("verify").args(args).env_remove("RUST_LOG");
    for (key, value) in envs {
        command.env(key, value);
    }
    tokio::task::spawn_blocking(move || command.output().expect("run the binary"))
        .await
        .unwrap()
}

fn assert_no_token(output: &Output) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stdout.contains(TOKEN), "token in stdout:\n{stdout}");
    assert!(!stderr.contains(TOKEN), "token in stderr:\n{stderr}");
}

/// The command exited with `code` (its stderr in the failure message).
#[track_caller]
fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn status(output: &Output) -> Value {
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not the status JSON ({e}):\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    })
}

fn ready(status: &Value) -> (&str, &str) {
    let ready = status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .expect("a Ready condition");
    (ready["status"].as_str().unwrap(), ready["reason"].as_str().unwrap())
}

#[tokio::test]
async fn verified_token_exits_zero_with_the_status_the_controller_writes() {
    let gitlab = gitlab().await;
    let url = gitlab.url().to_string();
    // Provider names are accepted in any case; trace logging must not leak the token.
    let output = verify(
        &["--provider", "gitlab", "--url", &url, "--token-env", "GL_TOKEN"],
        &[("GL_TOKEN", TOKEN), ("RUST_LOG", "trace")],
    )
    .await;
    assert_no_token(&output);
    assert_exit(&output, 0);
    let status = status(&output);
    assert_eq!(ready(&status), ("True", "Verified"));
    assert_eq!(status["authenticatedUser"]["username"], "jdoe");
    assert_eq!(status["authenticatedUser"]["email"], "jdoe@example.com");
    assert_eq!(status["serverVersion"], "17.5.1-ee");
    assert_eq!(status["deployment"], "SelfHosted");
    assert_eq!(status["tokenScopes"], serde_json::json!(["read_api"]));
    assert_eq!(status["tokenExpiresAt"], "2099-01-31T00:00:00Z");
    assert!(status.get("observedGeneration").is_none(), "no object, no generation");
}

#[tokio::test]
async fn token_from_a_file_with_a_trailing_newline() {
    let gitlab = gitlab().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let output = verify(
        &[
            "--provider",
            "GitLab",
            "--url",
            gitlab.url().as_str(),
            "--token-file",
            file.to_str().unwrap(),
        ],
        &[],
    )
    .await;
    assert_exit(&output, 0);
    assert_eq!(ready(&status(&output)), ("True", "Verified"));
}

#[tokio::test]
async fn rejected_token_exits_one() {
    let gitlab = gitlab().await;
    let output = verify(
        &[
            "--provider",
            "GITLAB",
            "--url",
            gitlab.url().as_str(),
            "--token-env",
            "GL_TOKEN",
        ],
        &[("GL_TOKEN", "glpat-wrong-token"), ("RUST_LOG", "trace")],
    )
    .await;
    assert_exit(&output, 1);
    let status = status(&output);
    assert_eq!(ready(&status), ("False", "Unauthorized"));
    assert!(status.get("authenticatedUser").is_none());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stdout.contains("glpat-wrong-token") && !stderr.contains("glpat-wrong-token"));
}

#[tokio::test]
async fn tls_needs_the_ca_or_an_explicit_skip() {
    let gitlab = gitlab().await;
    let url = gitlab.https_url().to_string();
    let envs = [("GL_TOKEN", TOKEN)];

    let untrusted = verify(
        &["--provider", "gitlab", "--url", &url, "--token-env", "GL_TOKEN"],
        &envs,
    )
    .await;
    assert_eq!(untrusted.status.code(), Some(1));
    assert_eq!(ready(&status(&untrusted)), ("False", "TLSError"));

    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.crt");
    std::fs::write(&ca, &pki().ca_pem).unwrap();
    let trusted = verify(
        &[
            "--provider",
            "gitlab",
            "--url",
            &url,
            "--token-env",
            "GL_TOKEN",
            "--ca-file",
            ca.to_str().unwrap(),
        ],
        &envs,
    )
    .await;
    assert_eq!(
        trusted.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&trusted.stdout)
    );

    let skipped = verify(
        &[
            "--provider",
            "gitlab",
            "--url",
            &url,
            "--token-env",
            "GL_TOKEN",
            "--insecure-skip-tls-verify",
        ],
        &envs,
    )
    .await;
    assert_eq!(skipped.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&skipped.stderr).contains("verification is disabled"));
}

/// Arguments, environment, and what stderr must mention.
type UsageCase<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[tokio::test]
async fn usage_errors_exit_two_with_a_message() {
    let cases: &[UsageCase] = &[
        (
            &["--provider", "gitlab", "--url", "https://gitlab.example.com"],
            &[],
            "--token-env",
        ),
        (
            &[
                "--provider",
                "gitlab",
                "--url",
                "https://gitlab.example.com",
                "--token-env",
                "UNSET_VAR_X",
            ],
            &[],
            "UNSET_VAR_X",
        ),
        (
            &["--provider", "nope", "--url", "https://x", "--token-env", "T"],
            &[("T", TOKEN)],
            "unknown provider",
        ),
        (
            &[
                "--provider",
                "gitlab",
                "--url",
                "gitlab.example.com",
                "--token-env",
                "T",
            ],
            &[("T", TOKEN)],
            "--url",
        ),
        (
            &[
                "--provider",
                "bitbucket",
                "--url",
                "https://bitbucket.org",
                "--token-env",
                "T",
            ],
            &[("T", TOKEN)],
            "username",
        ),
        (
            &[
                "--provider",
                "gitlab",
                "--url",
                "https://gitlab.example.com",
                "--token-env",
                "T",
            ],
            &[("T", "   ")],
            "empty",
        ),
        (
            &[
                "--provider",
                "gitlab",
                "--url",
                "https://x",
                "--token-file",
                "/nonexistent/token",
            ],
            &[],
            "/nonexistent/token",
        ),
    ];
    for (args, envs, expected) in cases {
        let output = verify(args, envs).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}: nothing on stdout");
        assert_no_token(&output);
    }
}

// ---- --repository -----------------------------------------------------------------------

fn repository_args<'a>(url: &'a str, repos: &'a [&'a str]) -> Vec<&'a str> {
    let mut args = vec!["--provider", "GitLab", "--url", url, "--token-env", "GL_TOKEN"];
    for repo in repos {
        args.push("--repository");
        args.push(repo);
    }
    args
}

#[tokio::test]
async fn repositories_readable_missing_and_forbidden_in_order() {
    let gitlab = gitlab().await;
    for path in ["app-team/web", "app-team/ops"] {
        gitlab.add_repository(path);
    }
    gitlab.add_token(
        TOKEN,
        TokenSpec::user("jdoe")
            .scopes(["read_api"])
            .reads(["app-team/web"])
            .forbidden_on("app-team/ops"),
    );
    let url = gitlab.url().to_string();
    let output = verify(
        &repository_args(&url, &["app-team/web", "app-team/secret-thing", "app-team/ops"]),
        &[("GL_TOKEN", TOKEN)],
    )
    .await;
    assert_no_token(&output);
    assert_exit(&output, 1);
    let status = status(&output);
    assert_eq!(ready(&status), ("False", "RepositoryUnreadable"));
    assert_eq!(status["authenticatedUser"]["username"], "jdoe", "the token facts stay");
    assert_eq!(status["repositorySummary"], "1/3");
    let entries = status["repositories"].as_array().unwrap();
    let paths: Vec<&str> = entries.iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["app-team/web", "app-team/secret-thing", "app-team/ops"]);
    assert_eq!(entries[0]["readable"], true);
    assert_eq!(entries[0]["defaultBranch"], "main");
    assert!(entries[0]["cloneURL"].as_str().unwrap().ends_with("/app-team/web.git"));
    assert!(entries[0].get("reason").is_none());
    assert_eq!(
        (&entries[1]["readable"], &entries[1]["reason"]),
        (&Value::Bool(false), &Value::from("NotFound"))
    );
    let missing = entries[1]["message"].as_str().unwrap();
    assert!(
        missing.contains("cannot see app-team/secret-thing or it does not exist"),
        "{missing}"
    );
    assert_eq!(entries[2]["reason"], "Forbidden");
    let message = ready_message(&status);
    assert!(
        message.starts_with("2 of 3 listed repositories cannot be read"),
        "{message}"
    );
}

fn ready_message(status: &Value) -> String {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn a_hundred_readable_repositories_exit_zero_and_a_rotated_token_that_lost_them_exits_one() {
    let gitlab = gitlab().await;
    let list: Vec<String> = (0..100).map(|i| format!("group/p{i}")).collect();
    for path in &list {
        gitlab.add_repository(path);
    }
    let refs: Vec<&str> = list.iter().map(String::as_str).collect();
    let url = gitlab.url().to_string();
    let output = verify(&repository_args(&url, &refs), &[("GL_TOKEN", TOKEN)]).await;
    assert_exit(&output, 0);
    let all = status(&output);
    assert_eq!(ready(&all), ("True", "Verified"));
    assert_eq!(all["repositorySummary"], "100/100");
    assert_eq!(all["repositories"].as_array().unwrap().len(), 100);

    let rotated = "glpat-s3cr3t-rotated-without-access";
    gitlab.add_token(rotated, TokenSpec::user("jdoe").scopes(["read_api"]).reads_nothing());
    let output = verify(&repository_args(&url, &refs), &[("GL_TOKEN", rotated)]).await;
    assert_exit(&output, 1);
    let none = status(&output);
    assert_eq!(ready(&none), ("False", "RepositoryUnreadable"));
    assert_eq!(none["repositorySummary"], "0/100");
    assert!(!String::from_utf8_lossy(&output.stdout).contains(rotated));
}

#[tokio::test]
async fn sso_required_names_the_authorisation_url() {
    // The same look-up code serves github.com and GHES; the binary can only reach a local
    // stand-in as a GHES URL (github.com's API root is fixed), so the SSO answer comes from it.
    let github = support::fake_providers::FakeGitHub::start_enterprise("3.14.2").await;
    github.add_repository("sso-org/app");
    github.add_token(TOKEN, TokenSpec::user("octocat").sso_required_on("sso-org/app"));
    let url = github.url().to_string();
    let output = verify(
        &[
            "--provider",
            "GitHub",
            "--url",
            &url,
            "--token-env",
            "GH_TOKEN",
            "--repository",
            "sso-org/app",
        ],
        &[("GH_TOKEN", TOKEN)],
    )
    .await;
    assert_no_token(&output);
    assert_exit(&output, 1);
    let status = status(&output);
    let entry = &status["repositories"][0];
    assert_eq!(entry["reason"], "SSORequired");
    assert!(
        entry["message"]
            .as_str()
            .unwrap()
            .contains("https://github.com/orgs/sso-org/sso?authorization_request="),
        "{entry}"
    );
}

#[tokio::test]
async fn malformed_duplicate_and_too_many_repositories_are_usage_errors() {
    let url = "https://gitlab.example.com";
    let many: Vec<String> = (0..101).map(|i| format!("g/p{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    for (row, refs, expected) in [
        (
            "duplicate",
            &["app-team/web", "App-Team/Web"][..],
            r#"--repository[1] "App-Team/Web" duplicates --repository[0] "app-team/web""#,
        ),
        ("malformed", &["web"][..], r#"--repository[0] "web""#),
        ("too many", &many[..], "101 entries; at most 100"),
    ] {
        let output = verify(&repository_args(url, refs), &[("GL_TOKEN", TOKEN)]).await;
        assert_exit(&output, 2);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "row {row}: {stderr}");
    }
}

// ---- one rule for URL problems, flags not spec fields, a deadline above zero ---------------

#[tokio::test]
async fn every_url_problem_is_a_usage_error_said_in_flags() {
    let envs = [("T", TOKEN)];
    // The form of the URL, and where it leads (a metadata address, literal or by name), are
    // found before any request: exit 2, one line naming --url, nothing on stdout.
    for (url, expected) in [
        ("ftp://x", "must use https://"),
        ("gitlab.example.com", "not a valid URL"),
        ("https://user:pw@x", "user info"),
        ("http://169.254.169.254", "link-local"),
        ("http://[::ffff:169.254.169.254]/", "never contacts"),
        ("http://100.100.100.200/", "never contacts"),
    ] {
        let output = verify(&["--provider", "gitlab", "--url", url, "--token-env", "T"], &envs).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{url}: {stderr}");
        assert!(stderr.starts_with("error: --url"), "{url}: {stderr}");
        assert!(stderr.contains(expected), "{url}: {stderr}");
        assert!(output.stdout.is_empty(), "{url}: nothing on stdout");
    }
    // A URL that is fine but does not answer is the verification's result: exit 1, a status.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let output = verify(&["--provider", "gitlab", "--url", &url, "--token-env", "T"], &envs).await;
    assert_exit(&output, 1);
    assert_eq!(ready(&status(&output)).0, "False");
}

#[tokio::test]
async fn messages_name_flags_not_spec_fields() {
    let envs = [("T", TOKEN)];
    let output = verify(
        &[
            "--provider",
            "bitbucket",
            "--url",
            "https://bitbucket.org",
            "--token-env",
            "T",
        ],
        &envs,
    )
    .await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("needs --username"), "{stderr}");
    assert!(!stderr.contains("spec."), "{stderr}");

    // The printed status too: a stand-in answering like no provider asks to check --url.
    let gitlab = gitlab().await;
    let url = format!("{}/not-here", gitlab.url().as_str().trim_end_matches('/'));
    let output = verify(&["--provider", "gitea", "--url", &url, "--token-env", "T"], &envs).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("check --url"), "{stdout}");
    assert!(!stdout.contains("spec."), "{stdout}");
}

#[tokio::test]
async fn a_zero_timeout_is_a_usage_error() {
    for timeout in ["0s", "0m"] {
        let output = verify(
            &[
                "--provider",
                "gitlab",
                "--url",
                "https://x",
                "--token-env",
                "T",
                "--timeout",
                timeout,
            ],
            &[("T", TOKEN)],
        )
        .await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{timeout}: {stderr}");
        assert!(
            stderr.contains("--timeout") && stderr.contains("more than 0s"),
            "{stderr}"
        );
    }
}
