//! What the tests that verify tokens in-process share: the HTTP client they verify with (fast
//! retries) and the target of a token at a stand-in's URL.

use gitprovider_operator::providers::http::{HttpClient, HttpConfig, TlsOptions};
use gitprovider_operator::providers::{Target, parse_base_url};
use gitprovider_operator::token::Token;
use reqwest::Url;
use std::process::Output;
use std::time::Duration;

/// The provider client with a per-request `timeout` and retries a few milliseconds apart.
pub fn http_client(timeout: Duration) -> HttpClient {
    HttpClient::new(HttpConfig {
        timeout,
        retry_base_delay: Duration::from_millis(10),
        ..HttpConfig::default()
    })
}

/// `token` for the instance at `url`, default TLS, no username.
pub fn target(url: &Url, token: &str) -> Target {
    Target {
        base_url: parse_base_url(url.as_str()).expect("base url"),
        token: Token::new(token).expect("token"),
        username: None,
        last_user: None,
        tls: TlsOptions::default(),
    }
}

/// The Ready condition's reason and message from the status JSON `verify` prints on stdout;
/// panics with both streams when stdout is not that JSON.
pub fn ready_of(output: &Output) -> (String, String) {
    let status: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "not the status JSON ({e}):\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    let ready = status["conditions"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
        .expect("a Ready condition")
        .clone();
    (
        ready["reason"].as_str().expect("a reason").to_owned(),
        ready["message"].as_str().expect("a message").to_owned(),
    )
}
