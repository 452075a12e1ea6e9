//! The shared HTTP client's guarantees, seen through a provider (GitLab) against a local fake
//! and, where the error itself matters, through `HttpClient` directly.

mod support;

use gitprovider_operator::api::{ProviderKind, ReadyReason};
use gitprovider_operator::providers::http::{Auth, HttpClient, HttpConfig, HttpError, TlsOptions};
use gitprovider_operator::providers::{Target, Verification, parse_base_url, provider, verify_within};
use gitprovider_operator::token::Token;
use reqwest::Url;
use std::time::{Duration, Instant};
use support::fake_providers::*;

const TOKEN: &str = "glpat-SECRET-http-client";

fn client_with(timeout: Duration) -> HttpClient {
    HttpClient::new(HttpConfig {
        timeout,
        retry_base_delay: Duration::from_millis(10),
        ..HttpConfig::default()
    })
}

fn client() -> HttpClient {
    client_with(Duration::from_secs(5))
}

fn target(url: &Url, tls: TlsOptions) -> Target {
    Target {
        base_url: parse_base_url(url.as_str()).expect("base url"),
        token: Token::new(TOKEN).expect("token"),
        username: None,
        last_user: None,
        tls,
    }
}

async fn verify_with(client: &HttpClient, target: &Target) -> Verification {
    tokio::time::timeout(
        Duration::from_secs(20),
        verify_within(provider(ProviderKind::GitLab), client, target),
    )
    .await
    .expect("verification finished in time")
}

async fn gitlab() -> FakeGitLab {
    let gitlab = FakeGitLab::start().await;
    gitlab.add_token(TOKEN, TokenSpec::user("jdoe").scopes(["read_api"]));
    gitlab
}

#[track_caller]
fn assert_reason(v: &Verification, reason: ReadyReason, needles: &[&str]) {
    assert_eq!(v.reason, reason, "{v:#?}");
    assert!(
        !v.message.contains(TOKEN),
        "the message reveals the token: {}",
        v.message
    );
    for needle in needles {
        assert!(
            v.message.to_lowercase().contains(&needle.to_lowercase()),
            "message lacks {needle:?}: {}",
            v.message
        );
    }
}

#[tokio::test]
async fn slow_answer_times_out_within_bound() {
    let gitlab = gitlab().await;
    gitlab.fault(None, Fault::Delay(Duration::from_secs(30)), None);
    let started = Instant::now();
    let v = verify_with(
        &client_with(Duration::from_millis(300)),
        &target(&gitlab.url(), TlsOptions::default()),
    )
    .await;
    assert_reason(&v, ReadyReason::Unreachable, &["no answer", "within"]);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn five_megabyte_body_is_a_clean_error() {
    let gitlab = gitlab().await;
    gitlab.fault(Some("/api/v4/user"), Fault::LargeBody(5 * 1024 * 1024), Some(1));
    let v = verify_with(&client(), &target(&gitlab.url(), TlsOptions::default())).await;
    assert_reason(&v, ReadyReason::EndpointNotFound, &["larger than 1048576 bytes"]);

    // The same without a Content-Length: the cap applies while reading.
    gitlab.fault(Some("/api/v4/user"), Fault::LargeStream(5 * 1024 * 1024), Some(1));
    let v = verify_with(&client(), &target(&gitlab.url(), TlsOptions::default())).await;
    assert_reason(&v, ReadyReason::EndpointNotFound, &["larger than 1048576 bytes"]);
}

#[tokio::test]
async fn too_many_requests_with_retry_after_then_success() {
    let gitlab = gitlab().await;
    gitlab.fault(
        Some("/api/v4/personal_access_tokens/self"),
        Fault::status_with(429, &[("retry-after", "1")], "slow down"),
        Some(1),
    );
    let started = Instant::now();
    let v = verify_with(&client(), &target(&gitlab.url(), TlsOptions::default())).await;
    assert_reason(&v, ReadyReason::Verified, &["jdoe"]);
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "Retry-After was not honoured"
    );
    let self_calls = gitlab
        .requests()
        .iter()
        .filter(|r| r.path == "/api/v4/personal_access_tokens/self")
        .count();
    assert_eq!(self_calls, 2);
}

#[tokio::test]
async fn server_error_then_success() {
    let gitlab = gitlab().await;
    gitlab.fault(None, Fault::status(500), Some(2));
    let v = verify_with(&client(), &target(&gitlab.url(), TlsOptions::default())).await;
    assert_reason(&v, ReadyReason::Verified, &["jdoe"]);
}

#[tokio::test]
async fn server_error_forever_is_a_provider_error() {
    let gitlab = gitlab().await;
    gitlab.fault(None, Fault::status(500), None);
    let v = verify_with(&client(), &target(&gitlab.url(), TlsOptions::default())).await;
    assert_reason(&v, ReadyReason::ProviderError, &["HTTP 500", "3 attempts"]);
    let user_calls = gitlab.requests().iter().filter(|r| r.path == "/api/v4/user").count();
    assert_eq!(user_calls, 3);

    // A Retry-After beyond what is honoured ends the retries at once.
    let other = FakeGitLab::start().await;
    other.fault(None, Fault::status_with(503, &[("retry-after", "3600")], ""), None);
    let v = verify_with(&client(), &target(&other.url(), TlsOptions::default())).await;
    assert_reason(&v, ReadyReason::ProviderError, &["HTTP 503", "retry after 3600s"]);
    let user_calls = other.requests().iter().filter(|r| r.path == "/api/v4/user").count();
    assert_eq!(user_calls, 1);
}

#[tokio::test]
async fn redirect_to_another_host_carries_no_credentials() {
    let first = gitlab().await;
    let second = gitlab().await; // would accept the token, were it ever sent there
    first.fault(
        None,
        Fault::Redirect(format!("{}api/v4/personal_access_tokens/self", second.url())),
        None,
    );
    let v = verify_with(&client(), &target(&first.url(), TlsOptions::default())).await;
    assert_ne!(v.reason, ReadyReason::Verified, "{v:#?}");
    assert_reason(&v, ReadyReason::EndpointNotFound, &["302"]);
    assert!(
        second.requests().iter().all(|r| !r.has_credentials()),
        "the second host saw credentials: {:?}",
        second.requests()
    );
    assert!(
        first
            .requests()
            .iter()
            .all(|r| r.header("private-token") == Some(TOKEN))
    );
}

#[tokio::test]
async fn redirect_within_the_same_origin_is_followed() {
    let gitlab = gitlab().await;
    gitlab.fault(
        Some("/api/v4/personal_access_tokens/self"),
        Fault::Redirect(format!("{}api/v4/personal_access_tokens/self", gitlab.url())),
        Some(1),
    );
    let v = verify_with(&client(), &target(&gitlab.url(), TlsOptions::default())).await;
    assert_reason(&v, ReadyReason::Verified, &["jdoe"]);
    assert!(
        gitlab
            .requests()
            .iter()
            .all(|r| r.header("private-token") == Some(TOKEN))
    );
}

#[tokio::test]
async fn untrusted_certificate_is_a_tls_error() {
    let gitlab = gitlab().await;
    let v = verify_with(&client(), &target(&gitlab.https_url(), TlsOptions::default())).await;
    assert_reason(&v, ReadyReason::TlsError, &["TLS error", "127.0.0.1"]);
    assert!(
        gitlab.requests().is_empty(),
        "no request gets through an untrusted connection"
    );
}

#[tokio::test]
async fn custom_ca_is_trusted() {
    let gitlab = gitlab().await;
    let tls = TlsOptions {
        extra_ca_pem: Some(pki().ca_pem.clone()),
        insecure_skip_verify: false,
    };
    let v = verify_with(&client(), &target(&gitlab.https_url(), tls)).await;
    assert_reason(&v, ReadyReason::Verified, &["jdoe"]);
}

/// `run --ca-file`: a client-wide CA is trusted beside the connection's own bundle (which may
/// be absent or name another CA).
#[tokio::test]
async fn client_wide_ca_is_trusted_for_every_connection() {
    let gitlab = gitlab().await;
    let client = HttpClient::new(HttpConfig {
        retry_base_delay: Duration::from_millis(10),
        extra_ca_pem: Some(pki().ca_pem.clone()),
        ..HttpConfig::default()
    });
    let v = verify_with(&client, &target(&gitlab.https_url(), TlsOptions::default())).await;
    assert_reason(&v, ReadyReason::Verified, &["jdoe"]);
    let other_ca = rcgen::CertificateParams::new(Vec::<String>::new())
        .and_then(|p| p.self_signed(&rcgen::KeyPair::generate()?))
        .expect("another CA")
        .pem();
    let own = TlsOptions {
        extra_ca_pem: Some(other_ca),
        insecure_skip_verify: false,
    };
    let v = verify_with(&client, &target(&gitlab.https_url(), own)).await;
    assert_reason(&v, ReadyReason::Verified, &["jdoe"]);
}

#[tokio::test]
async fn insecure_skip_verify_works() {
    let gitlab = gitlab().await;
    let tls = TlsOptions {
        extra_ca_pem: None,
        insecure_skip_verify: true,
    };
    let v = verify_with(&client(), &target(&gitlab.https_url(), tls)).await;
    assert_reason(&v, ReadyReason::Verified, &["jdoe"]);
}

#[tokio::test]
async fn link_local_is_refused_without_connecting() {
    let url: Url = "http://169.254.169.254/".parse().unwrap();
    let started = Instant::now();
    let error = client()
        .get(&url, Auth::Bearer(&Token::new(TOKEN).unwrap()), &TlsOptions::default())
        .await
        .expect_err("refused");
    assert!(
        matches!(error, HttpError::AddressRefused(ref what) if what.starts_with("169.254.169.254 is a link-local address")),
        "{error:?}"
    );
    // A connection attempt to an unrouted address would take the connect time-out.
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "took {:?}",
        started.elapsed()
    );

    let v = verify_with(&client(), &target(&url, TlsOptions::default())).await;
    assert_reason(&v, ReadyReason::InvalidSpec, &["link-local", "169.254.169.254"]);
    let v = verify_with(
        &client(),
        &target(&"http://[fe80::1]:8080".parse().unwrap(), TlsOptions::default()),
    )
    .await;
    assert_reason(&v, ReadyReason::InvalidSpec, &["link-local"]);
}

#[tokio::test]
async fn refused_connection_is_unreachable() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    let url: Url = format!("http://{address}").parse().unwrap();
    let v = verify_with(&client(), &target(&url, TlsOptions::default())).await;
    assert_reason(&v, ReadyReason::Unreachable, &["cannot connect", &address.to_string()]);
}

#[tokio::test]
async fn unresolvable_host_is_unreachable() {
    let url: Url = "https://gitlab.does-not-exist.invalid".parse().unwrap();
    let v = verify_with(&client(), &target(&url, TlsOptions::default())).await;
    assert_reason(
        &v,
        ReadyReason::Unreachable,
        &["cannot resolve", "gitlab.does-not-exist.invalid"],
    );
}

#[tokio::test]
async fn extra_headers_and_accept_override() {
    let gitlab = gitlab().await;
    let url: Url = format!("{}api/v4/version", gitlab.url()).parse().unwrap();
    let token = Token::new(TOKEN).unwrap();
    let response = client()
        .get_with_headers(
            &url,
            Auth::Header {
                name: "private-token",
                token: &token,
            },
            &TlsOptions::default(),
            &[("accept", "application/vnd.example+json"), ("x-extra", "1")],
        )
        .await
        .expect("answer");
    assert_eq!(response.status, 200);
    let request = &gitlab.requests()[0];
    assert_eq!(request.header("accept"), Some("application/vnd.example+json"));
    assert_eq!(request.headers.get_all("accept").iter().count(), 1);
    assert_eq!(request.header("x-extra"), Some("1"));
    assert!(
        request
            .header("user-agent")
            .is_some_and(|ua| ua.starts_with("gitprovider-operator/"))
    );

    client()
        .get(&url, Auth::None, &TlsOptions::default())
        .await
        .expect("answer");
    let request = &gitlab.requests()[1];
    assert_eq!(request.header("accept"), Some("application/json"));
    assert!(!request.has_credentials());
}
