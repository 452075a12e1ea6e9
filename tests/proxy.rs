//! `HTTP_PROXY`/`HTTPS_PROXY`/`NO_PROXY` are honoured for requests to providers. The proxy
//! variables are process-wide, so this binary holds one test that sets them once.

use axum::Router;
use axum::extract::Request;
use gitprovider_operator::providers::http::{Auth, HttpClient, HttpConfig, TlsOptions};
use std::sync::{Arc, Mutex};

#[tokio::test]
async fn proxy_variables_are_honoured() {
    // A forward proxy stand-in: records the request target and answers 200.
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
    let proxy = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    // SAFETY: this test binary runs this single test; nothing else reads the environment
    // concurrently.
    unsafe {
        std::env::set_var("HTTP_PROXY", format!("http://{proxy}"));
        std::env::set_var("NO_PROXY", "direct.example.invalid");
    }
    let http = HttpClient::new(HttpConfig::default());

    // Through the proxy: the target host is never resolved here, the proxy gets the absolute URL.
    let url = "http://gitlab.proxied.example/api/v4/version".parse().unwrap();
    let response = http
        .get(&url, Auth::None, &TlsOptions::default())
        .await
        .expect("the proxy answers");
    assert_eq!(response.status.as_u16(), 200);
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        ["http://gitlab.proxied.example/api/v4/version"]
    );

    // NO_PROXY: connected directly, so the unresolvable name is a DNS failure, not a proxy hit.
    let direct = "http://direct.example.invalid/api/v4/version".parse().unwrap();
    let error = http
        .get(&direct, Auth::None, &TlsOptions::default())
        .await
        .expect_err("no such host");
    assert!(error.to_string().contains("direct.example.invalid"), "{error}");
    assert_eq!(seen.lock().unwrap().len(), 1, "NO_PROXY bypassed the proxy");
}
