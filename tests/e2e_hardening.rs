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
