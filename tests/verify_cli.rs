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
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
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
    assert_eq!(output.status.code(), Some(0));
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
    assert_eq!(output.status.code(), Some(1));
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
