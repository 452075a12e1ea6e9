//! What the tests that verify tokens in-process share: the HTTP client they verify with (fast
//! retries) and the target of a token at a stand-in's URL.

use gitprovider_operator::providers::http::{HttpClient, HttpConfig, TlsOptions};
use gitprovider_operator::providers::{Target, parse_base_url};
use gitprovider_operator::token::Token;
use reqwest::Url;
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
        tls: TlsOptions::default(),
    }
}
