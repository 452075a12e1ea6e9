//! Hardening, end to end: the real `gitprovider-operator run` binary against the real
//! kube-apiserver (see tests/e2e.rs for the set-up), probed the way an attacker who can reach
//! the webhook port would.

mod support;

#[path = "e2e/harness.rs"]
mod harness;

use harness::{Cluster, Operator};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn setup() -> (Cluster, Operator) {
    let cluster = Cluster::start().await;
    let operator = cluster.operator("gpo-0").await;
    operator.wait_ready().await;
    cluster.install_webhook(&operator.webhook_url(), "Fail").await;
    (cluster, operator)
}

/// An HTTPS client that trusts the webhook's CA, as any client on the network could.
fn webhook_client(ca_pem: &str) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    use rustls_pki_types::pem::PemObject as _;
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// A CREATE review of `ns/name` claiming GitLab `instance`, as only the API server should send.
fn forged_review(ns: &str, name: &str, instance: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": format!("forged-{name}"),
            "kind": {"group": "gitprovider.dev", "version": "v1alpha1", "kind": "GitProviderConnection"},
            "resource": {"group": "gitprovider.dev", "version": "v1alpha1", "resource": "gitproviderconnections"},
            "name": name,
            "namespace": ns,
            "operation": "CREATE",
            "userInfo": {"username": "mallory"},
            "object": {
                "apiVersion": "gitprovider.dev/v1alpha1",
                "kind": "GitProviderConnection",
                "metadata": {"name": name, "namespace": ns},
                "spec": {"provider": "GitLab", "instanceName": instance, "url": "https://gitlab.example.com",
                         "tokenSecretRef": {"name": "pat"}},
            },
            "dryRun": false,
        }
    })
}

/// Issue 14: a forged review reserved a name for 30 s, and re-posting held it for ever. Now the
/// real create succeeds, whether the forger posted once or keeps posting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_review_cannot_hold_an_instance_name() {
    let (c, op) = setup().await;
    let client = webhook_client(&c.pki.ca_pem);
    let (url, ns) = (op.webhook_url(), c.ns.clone());
    let post = move |name: String| {
        let client = client.clone();
        let url = url.clone();
        let body = forged_review(&ns, &name, "main");
        async move {
            let response = client
                .post(url)
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&body).unwrap())
                .send()
                .await
                .unwrap();
            let answer: Value = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap();
            answer["response"]["allowed"].as_bool()
        }
    };
    assert_eq!(
        post("squatter".into()).await,
        Some(true),
        "the forged review is admitted"
    );

    // The forger keeps posting, under new names, all the time the real create takes.
    let forger = {
        let post = post.clone();
        tokio::spawn(async move {
            for i in 0.. {
                let _ = post(format!("squatter-{i}")).await;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let started = Instant::now();
    let created = c.try_create(&c.ns, "real", "main", "pat", json!({})).await;
    let took = started.elapsed();
    forger.abort();
    let created = created.unwrap_or_else(|e| panic!("the real create was denied: {e}\n{}", op.logs()));
    assert_eq!(created.spec.instance_name, "main");
    eprintln!("the real create was admitted after {took:?}");

    // The real holder now keeps the name against forged reviews too.
    assert_eq!(post("squatter-late".into()).await, Some(false));
}

/// A client for the webhook presenting `client` (PEM certificate and key) as its certificate.
fn webhook_client_with_cert(ca_pem: &str, cert_pem: &str, key_pem: &str) -> reqwest::Client {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let chain = rustls_pki_types::CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// Posts a forged review; the webhook's answer (allowed), or the transport error in full.
async fn post_forged(client: &reqwest::Client, url: &str, review: &Value) -> Result<Option<bool>, String> {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(review).unwrap())
        .send()
        .await
        .map_err(|e| {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            text
        })?;
    let answer: Value = serde_json::from_slice(&response.bytes().await.map_err(|e| e.to_string())?).unwrap();
    Ok(answer["response"]["allowed"].as_bool())
}

/// Whether a request failed because the server refused the TLS session. With TLS 1.3 the client
/// finishes its side of the handshake before the server has judged the client certificate, so
/// the refusal reaches the client either as the server's alert or, when the server's close
/// overtakes the request (a busy machine), as a connection that died before the request could
/// be sent, a reset or a closed connection: never an answer.
fn refused_in_handshake(error: &str) -> bool {
    [
        "received fatal alert",
        "connection was not ready",
        "connection reset",
        "Connection reset",
        "connection closed before message completed",
    ]
    .iter()
    .any(|sign| error.contains(sign))
}

/// Issue 14, client-certificate authentication: kube-apiserver started with an admission
/// configuration that presents a client certificate to webhooks, the operator with
/// `--webhook-client-ca`/`--webhook-client-name`. The API server's reviews are answered as
/// always (admitted, and denied for a taken name); a review posted directly fails the TLS
/// handshake — without a client certificate, with one from another CA, or with one from the
/// right CA that carries another name — and reserves nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_api_server_may_post_reviews_when_client_certificates_are_required() {
    let c = Cluster::start_private_with(&["--webhook-client-cert"]).await;
    let plane = c.plane();
    let (client_ca, client_name) = plane.webhook_client().expect("up --webhook-client-cert");
    let op = c
        .operator_with(harness::OperatorSpec::new("gpo-0").args(c.pki.args()).args([
            "--webhook-client-ca".to_owned(),
            client_ca.display().to_string(),
            "--webhook-client-name".to_owned(),
            client_name.clone(),
        ]))
        .await;
    op.wait_ready().await;
    // returns once the API server's dry-run reviews come back with the webhook's warning
    c.install_webhook(&op.webhook_url(), "Fail").await;

    let url = op.webhook_url();
    let forged = forged_review(&c.ns, "squatter", "main");
    let read = |path: &str| std::fs::read_to_string(plane.dir().join(path)).unwrap();
    let other_ca = support::pki::TestCa::new("another CA").unwrap();
    let other_ca_cert = other_ca.issue_client(&client_name).unwrap();
    let clients = [
        ("no client certificate", webhook_client(&c.pki.ca_pem)),
        (
            "a certificate with the right name from another CA",
            webhook_client_with_cert(&c.pki.ca_pem, &other_ca_cert.cert_pem, &other_ca_cert.key_pem),
        ),
        (
            "a certificate from the right CA with another name (CN=admin)",
            webhook_client_with_cert(&c.pki.ca_pem, &read("pki/admin.crt"), &read("pki/admin.key")),
        ),
    ];
    for (what, client) in &clients {
        let error = post_forged(client, &url, &forged)
            .await
            .expect_err(&format!("{what}: the forged review reached the webhook"));
        eprintln!("{what}: {error}");
        assert!(
            refused_in_handshake(&error),
            "{what}: refused, but not by the TLS handshake: {error}"
        );
    }

    // Nothing was reserved: the real create of the same name is admitted at once, and a
    // second one is denied by the webhook through the API server as usual.
    let created = c
        .try_create(&c.ns, "real", "main", "pat", json!({}))
        .await
        .unwrap_or_else(|e| panic!("the real create was denied: {e}\n{}", op.logs()));
    assert_eq!(created.spec.instance_name, "main");
    let denied = c
        .try_create(&c.ns, "second", "main", "pat", json!({}))
        .await
        .expect_err("a second connection with the same instance name is denied")
        .to_string();
    assert!(denied.contains("main"), "{denied}");

    // The API server's own certificate passes, the webhook answers it.
    let client_key = read("pki/webhook-client.key");
    let apiserver_like = webhook_client_with_cert(&c.pki.ca_pem, &read("pki/webhook-client.crt"), &client_key);
    assert_eq!(
        post_forged(&apiserver_like, &url, &forged_review(&c.ns, "late", "main")).await,
        Ok(Some(false)),
        "with the API server's certificate the review reaches the webhook (and is denied: taken)"
    );
}
