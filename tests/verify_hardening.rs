//! `gitprovider-operator verify`, the built binary, where verification must not go: every
//! notation of a metadata address, names resolving into refused ranges (also behind a proxy),
//! and the operator's own `--deny-cidr` / `--allow-cidr`.

mod support;

use axum::Router;
use axum::extract::Request;
use std::process::Output;
use std::sync::{Arc, Mutex};
use support::fake_providers::TokenSpec;
use support::fake_providers::gitlab::FakeGitLab;

const TOKEN: &str = "glpat-s3cr3t-hardening-token";

async fn verify(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_gitprovider-operator"));
    command.arg("verify").args(["--token-env", "GL_TOKEN"]);
    if !args.contains(&"--provider") {
        command.args(["--provider", "GitLab"]);
    }
    if !args.contains(&"--timeout") {
        command.args(["--timeout", "3s"]);
    }
    command.args(args).env("GL_TOKEN", TOKEN).env_remove("RUST_LOG");
    for name in support::control_plane::PROXY_VARIABLES {
        command.env_remove(name);
    }
    for (key, value) in envs {
        command.env(key, value);
    }
    tokio::task::spawn_blocking(move || command.output().expect("run the binary"))
        .await
        .unwrap()
}

/// A URL refused before any request: a usage error (exit 2), nothing on stdout, one `error:`
/// line naming --url; returns that line.
fn refused(output: &Output) -> String {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{stdout}{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(stderr.starts_with("error: --url "), "{stderr}");
    assert!(!stderr.contains(TOKEN), "the token leaked");
    stderr
}

/// The Ready condition's reason and message; the token never appears anywhere.
fn ready(output: &Output) -> (String, String) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stdout.contains(TOKEN) && !stderr.contains(TOKEN), "the token leaked");
    support::verifying::ready_of(output)
}

#[tokio::test]
async fn metadata_addresses_in_every_notation_are_refused_without_connecting() {
    for url in [
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://[::a9fe:a9fe]/",
        "http://[::ffff:0:a9fe:a9fe]/",
        "http://[fec0::1]/",
        "http://[fd00:ec2::254]/",
        "http://100.100.100.200/",
        "http://168.63.129.16/",
        "http://[::ffff:a83f:8110]/",
        "http://2852039166/",
    ] {
        let output = verify(&["--url", url], &[]).await;
        let message = refused(&output);
        assert!(
            message.contains("which the operator never contacts"),
            "{url}: {message}"
        );
    }
}

async fn gitlab() -> FakeGitLab {
    let gitlab = FakeGitLab::start().await;
    gitlab.add_token(TOKEN, TokenSpec::user("jdoe").scopes(["read_api"]));
    gitlab
}

#[tokio::test]
async fn deny_and_allow_ranges_apply_to_resolved_names() {
    let gitlab = gitlab().await;
    let port = gitlab.url().port().unwrap();
    let by_name = format!("http://localhost:{port}");
    let output = verify(&["--url", &by_name], &[]).await;
    assert_eq!(ready(&output).0, "Verified");

    let output = verify(
        &[
            "--url",
            &by_name,
            "--deny-cidr",
            "127.0.0.0/8",
            "--deny-cidr",
            "::1/128",
        ],
        &[],
    )
    .await;
    let message = refused(&output);
    assert!(message.contains("refused by --deny-cidr"), "{message}");

    let output = verify(&["--url", &by_name, "--allow-cidr", "10.0.0.0/8"], &[]).await;
    let message = refused(&output);
    assert!(
        message.contains("outside the ranges allowed by --allow-cidr"),
        "{message}"
    );

    let output = verify(
        &["--url", &by_name, "--allow-cidr", "127.0.0.0/8", "--allow-cidr", "::1"],
        &[],
    )
    .await;
    assert_eq!(ready(&output).0, "Verified");

    let output = verify(&["--url", &by_name, "--deny-cidr", "10.0.0.0/33"], &[]).await;
    assert_eq!(output.status.code(), Some(2), "a bad CIDR is a usage error");
}

#[tokio::test]
async fn behind_a_proxy_the_name_is_judged_locally_first() {
    // A forward proxy stand-in that records what it is asked for and answers like GitLab would
    // not: any request reaching it is the failure.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = seen.clone();
    let app = Router::new().fallback(move |request: Request| {
        let record = record.clone();
        async move {
            record.lock().unwrap().push(request.uri().to_string());
            "{}"
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let output = verify(
        &[
            "--url",
            "http://localhost:9/",
            "--deny-cidr",
            "127.0.0.0/8",
            "--deny-cidr",
            "::1/128",
        ],
        &[("HTTP_PROXY", &proxy), ("HTTPS_PROXY", &proxy)],
    )
    .await;
    let message = refused(&output);
    assert!(message.contains("refused by --deny-cidr"), "{message}");
    assert!(seen.lock().unwrap().is_empty(), "the proxy was asked: {seen:?}");

    // A name only the proxy can resolve still goes through it (its DNS decides).
    let output = verify(&["--url", "http://gitlab.proxied.invalid/"], &[("HTTP_PROXY", &proxy)]).await;
    let _ = ready(&output);
    assert!(!seen.lock().unwrap().is_empty(), "the proxy was not asked");
}

/// A stand-in instance answering every request with `status`, `headers` and `body`.
async fn answering(status: u16, headers: &'static [(&'static str, &'static str)], body: String) -> String {
    let app = Router::new().fallback(move || {
        let body = body.clone();
        async move {
            let mut response = axum::response::Response::new(axum::body::Body::from(body));
            *response.status_mut() = axum::http::StatusCode::from_u16(status).unwrap();
            for (name, value) in headers {
                response
                    .headers_mut()
                    .insert(*name, axum::http::HeaderValue::from_static(value));
            }
            response
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn a_provider_says_at_most_a_short_excerpt() {
    // just under the 1 MiB body cap, in every field a provider's error may use
    let said = "x".repeat(300_000);
    let body = serde_json::json!({
        "message": said, "error": {"message": said}, "errors": [{"message": said}], "error_description": "y",
    })
    .to_string();
    let url = answering(401, &[("content-type", "application/json")], body).await;
    for (provider, path) in [
        ("GitLab", ""),
        ("GitHub", ""),
        ("Gitea", ""),
        ("Bitbucket", ""),
        ("AzureDevOps", "/DefaultCollection"),
    ] {
        let url = format!("{url}{path}");
        let output = verify(&["--url", &url, "--provider", provider], &[]).await;
        let (reason, message) = ready(&output);
        assert_ne!(reason, "Verified", "{provider}");
        assert!(
            message.chars().count() <= 1024,
            "{provider}: {} characters",
            message.chars().count()
        );
        assert!(!message.contains(&"x".repeat(201)), "{provider}: more than an excerpt");
    }
}

#[tokio::test]
async fn retry_after_does_not_outlast_the_timeout() {
    let url = answering(503, &[("retry-after", "30")], "busy".into()).await;
    let started = std::time::Instant::now();
    let output = verify(&["--url", &url, "--timeout", "4s"], &[]).await;
    let took = started.elapsed();
    let (reason, message) = ready(&output);
    assert_eq!(reason, "ProviderError", "{message}");
    eprintln!("503 + Retry-After: 30 under --timeout 4s ended after {took:?}: {message}");
    // a bound far below the 30 s the instance asked for (twice, before)
    assert!(took < std::time::Duration::from_secs(15), "took {took:?}");
}
