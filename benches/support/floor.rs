//! The admission floor: the least any HTTPS webhook must do per review. A minimal rustls +
//! hyper (HTTP/1.1, keep-alive) server that reads the body, parses it as JSON, and answers a
//! fixed AdmissionReview carrying the request's uid. No index, no rules, no typed decoding:
//! what is left is TLS + HTTP + JSON, on the same libraries the operator uses.

use axum::body::Body;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::net::TcpListener;

/// A rustls server configuration for one certificate chain and key (PEM), HTTP/1.1 only.
pub fn server_config(cert_pem: &str, key_pem: &str) -> Arc<rustls::ServerConfig> {
    let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("certificate PEM");
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("key PEM");
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .expect("certificate and key");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

async fn answer(request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let body = axum::body::to_bytes(Body::new(request.into_body()), 8 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let review: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let uid = review["request"]["uid"].as_str().unwrap_or_default();
    let answer = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": uid, "allowed": true},
    });
    let mut response = Response::new(Body::from(serde_json::to_vec(&answer).unwrap_or_default()));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

/// Serves until the task is dropped.
pub async fn serve(listener: TcpListener, config: Arc<rustls::ServerConfig>) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), hyper::service::service_fn(answer))
                .await;
        });
    }
}
