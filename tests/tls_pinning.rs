//! TLS a self-hosted user meets, through the `verify` binary: a self-signed server certificate
//! made the usual way (`openssl req -x509` marks it CA:TRUE) given as `--ca-file` is accepted
//! (pinned); an untrusted, an expired and a wrong-host certificate are explained in plain words.

mod support;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use std::process::Output;
use std::sync::Arc;

const TOKEN: &str = "glpat-s3cr3t-tls-token";

/// An HTTPS instance serving `cert` that answers 401 to everything: reaching it at all means
/// TLS was accepted.
async fn https_instance(cert: CertificateDer<'static>, key: &KeyPair) -> u16 {
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let mut config = rustls::ServerConfig::builder_with_provider(support::pki::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app =
        axum::Router::new().fallback(|| async { (axum::http::StatusCode::UNAUTHORIZED, "{\"message\":\"401\"}") });
    let service = hyper_util::service::TowerToHyperService::new(app);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            let service = service.clone();
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(tcp).await {
                    let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                        .await;
                }
            });
        }
    });
    port
}

async fn verify(url: &str, ca_pem: Option<&str>) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_gitprovider-operator"));
    command
        .args([
            "verify",
            "--provider",
            "GitLab",
            "--url",
            url,
            "--token-env",
            "GL_TOKEN",
            "--timeout",
            "5s",
        ])
        .env("GL_TOKEN", TOKEN)
        .env_remove("RUST_LOG");
    for name in support::control_plane::PROXY_VARIABLES {
        command.env_remove(name);
    }
    if let Some(pem) = ca_pem {
        let path = dir.path().join("ca.crt");
        std::fs::write(&path, pem).unwrap();
        command.arg("--ca-file").arg(path);
    }
    let output: Output = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    support::verifying::ready_of(&output)
}

/// What `openssl req -x509 -subj /CN=127.0.0.1 -addext subjectAltName=...` makes: self-signed,
/// CA:TRUE.
fn self_signed_ca_style(names: &[&str]) -> (CertificateDer<'static>, String, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    (cert.der().clone(), cert.pem(), key)
}

#[tokio::test]
async fn a_self_signed_certificate_given_as_the_ca_file_is_accepted() {
    let (cert, pem, key) = self_signed_ca_style(&["127.0.0.1", "localhost"]);
    let port = https_instance(cert, &key).await;
    // TLS passes: the instance's 401 is what the verification reports
    let (reason, message) = verify(&format!("https://127.0.0.1:{port}"), Some(&pem)).await;
    assert_eq!(reason, "Unauthorized", "{message}");

    // without it: untrusted, and the message says what to do
    let (reason, message) = verify(&format!("https://127.0.0.1:{port}"), None).await;
    assert_eq!(reason, "TLSError");
    assert!(
        // verify speaks in flags; the operator's status names spec.tls.caBundleRef instead
        message.contains("in --ca-file") && !message.contains("spec."),
        "{message}"
    );
}

#[tokio::test]
async fn a_pinned_certificate_must_still_name_the_host() {
    let (cert, pem, key) = self_signed_ca_style(&["git.example.com"]);
    let port = https_instance(cert, &key).await;
    let (reason, message) = verify(&format!("https://127.0.0.1:{port}"), Some(&pem)).await;
    assert_eq!(reason, "TLSError");
    assert!(message.contains("issued for another name"), "{message}");
}

#[tokio::test]
async fn expired_and_wrong_host_certificates_are_explained() {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca_params, ca_key);

    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    params.not_before = rcgen::date_time_ymd(2020, 1, 1);
    params.not_after = rcgen::date_time_ymd(2021, 1, 1);
    let expired = params.signed_by(&key, &issuer).unwrap();
    let port = https_instance(expired.der().clone(), &key).await;
    let (reason, message) = verify(&format!("https://127.0.0.1:{port}"), Some(&ca_pem)).await;
    assert_eq!(reason, "TLSError");
    assert!(message.contains("has expired: renew it on the server"), "{message}");

    let key = KeyPair::generate().unwrap();
    let other = CertificateParams::new(vec!["git.example.com".to_owned()])
        .unwrap()
        .signed_by(&key, &issuer)
        .unwrap();
    let port = https_instance(other.der().clone(), &key).await;
    let (reason, message) = verify(&format!("https://127.0.0.1:{port}"), Some(&ca_pem)).await;
    assert_eq!(reason, "TLSError");
    assert!(message.contains("issued for another name"), "{message}");
}
