//! Helpers shared by the webhook tests and the admission benchmark.
#![allow(dead_code)]

#[path = "../support/pki.rs"]
mod pki;

use gitprovider_operator::admission::{CertStore, Webhook, serve};
use gitprovider_operator::api::{GitProviderConnection, GitProviderConnectionSpec, ProviderKind};
use gitprovider_operator::index::{ConnectionIndex, UniquenessScope};
use gitprovider_operator::metrics::Metrics;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::oneshot;

/// A certificate authority and one serving certificate for localhost/127.0.0.1 it signed.
pub struct TestPki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

impl TestPki {
    pub fn new(ca_name: &str) -> TestPki {
        let ca = pki::TestCa::new(ca_name).expect("test CA");
        let leaf = ca.issue(&["localhost", "127.0.0.1"]).expect("webhook certificate");
        TestPki {
            ca_pem: ca.cert_pem().to_owned(),
            cert_pem: leaf.cert_pem,
            key_pem: leaf.key_pem,
        }
    }
}

/// A rustls client configuration trusting only `ca_pem`.
pub fn client_tls(ca_pem: &str, alpn: &[&[u8]]) -> rustls::ClientConfig {
    let mut config = pki::client_config_trusting(ca_pem.as_bytes()).expect("a CA to trust");
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    config
}

/// An HTTPS client trusting only `ca_pem` (HTTP/1.1 keep-alive).
pub fn client(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(client_tls(ca_pem, &[b"http/1.1"]))
        .build()
        .unwrap()
}

/// An HTTPS client trusting only `ca_pem`, speaking HTTP/2 (negotiated with ALPN).
pub fn client_h2(ca_pem: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(client_tls(ca_pem, &[b"h2"]))
        .build()
        .unwrap()
}

/// A stored connection for the index.
pub fn stored(ns: &str, name: &str, provider: ProviderKind, instance: &str, created: i64) -> GitProviderConnection {
    let mut c = GitProviderConnection::new(
        name,
        GitProviderConnectionSpec::new(provider, instance, "https://git.example.com", format!("{name}-pat")),
    );
    c.metadata.namespace = Some(ns.into());
    c.metadata.uid = Some(format!("uid-{ns}-{name}"));
    c.metadata.generation = Some(1);
    c.metadata.creation_timestamp = Some(Time(jiff::Timestamp::from_second(created).unwrap()));
    c
}

pub fn spec(provider: &str, instance: &str, url: &str) -> Value {
    json!({
        "provider": provider,
        "instanceName": instance,
        "url": url,
        "tokenSecretRef": {"name": "pat", "key": "token"},
    })
}

/// An `admission.k8s.io/v1` AdmissionReview of a GitProviderConnection.
pub fn review(
    uid: &str,
    operation: &str,
    ns: &str,
    name: &str,
    spec: Option<Value>,
    old_spec: Option<Value>,
    dry_run: bool,
) -> Value {
    let object = |spec: Value, generation: i64| {
        json!({
            "apiVersion": "gitprovider.dev/v1alpha1",
            "kind": "GitProviderConnection",
            "metadata": {"name": name, "namespace": ns, "generation": generation, "uid": format!("obj-{name}")},
            "spec": spec,
        })
    };
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "gitprovider.dev", "version": "v1alpha1", "kind": "GitProviderConnection"},
            "resource": {"group": "gitprovider.dev", "version": "v1alpha1", "resource": "gitproviderconnections"},
            "requestKind": {"group": "gitprovider.dev", "version": "v1alpha1", "kind": "GitProviderConnection"},
            "name": name,
            "namespace": ns,
            "operation": operation,
            "userInfo": {"username": "alice", "groups": ["system:authenticated"]},
            "object": spec.map(|s| object(s, if old_spec.is_some() { 2 } else { 1 })),
            "oldObject": old_spec.map(|s| object(s, 1)),
            "dryRun": dry_run,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        }
    })
}

/// A running webhook server.
pub struct Server {
    pub addr: SocketAddr,
    pub webhook: Arc<Webhook>,
    pub index: Arc<ConnectionIndex>,
    pub metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Server {
    pub async fn start(index: Arc<ConnectionIndex>, certs: Arc<CertStore>) -> Server {
        let metrics = Arc::new(Metrics::new());
        let webhook = Webhook::new(index.clone(), metrics.clone(), certs);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, webhook.clone(), async move {
            let _ = stopped.await;
        }));
        Server {
            addr,
            webhook,
            index,
            metrics,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// A synced index of the given scope and a server with `pki`'s certificate.
    pub async fn synced(scope: UniquenessScope, pki: &TestPki) -> Server {
        let index = Arc::new(ConnectionIndex::new(scope));
        index.partition_synced(None);
        let certs = CertStore::from_pem(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes()).unwrap();
        Server::start(index, certs).await
    }

    pub fn url(&self) -> String {
        format!("https://localhost:{}/validate", self.addr.port())
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap().unwrap();
        }
    }
}

/// Posts a review and returns the parsed response.
pub async fn post(client: &reqwest::Client, url: &str, body: &Value) -> Value {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.bytes().await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    serde_json::from_slice(&bytes).unwrap()
}
