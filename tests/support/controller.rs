//! The controller in-process against a real kube-apiserver (the run's shared control plane,
//! a namespace per test) and a local GitLab stand-in; the controller can be restarted with other
//! settings (a new feed, index and context, as a new process would have).

use super::control_plane::{AuditLog, ControlPlane};
use super::fake_providers::TokenSpec;
use super::fake_providers::gitlab::FakeGitLab;
use gitprovider_operator::api::GitProviderConnection;
use gitprovider_operator::controller::Settings;
use gitprovider_operator::index::UniquenessScope;
use gitprovider_operator::metrics::Metrics;
use gitprovider_operator::operator::Reconciler;
use gitprovider_operator::providers::http::HttpConfig;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::{Api, Client};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

pub const TOKEN: &str = "glpat-valid-0123456789";
pub const WAIT: Duration = Duration::from_secs(15);

pub struct Harness {
    /// The test's namespace.
    pub ns: String,
    pub audit: AuditLog,
    pub client: Client,
    pub gitlab: FakeGitLab,
    pub metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
}

impl Harness {
    /// A controller with the default settings.
    pub async fn start() -> Harness {
        Harness::start_with(Settings::default()).await
    }

    pub async fn start_with(settings: Settings) -> Harness {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let plane = ControlPlane::shared();
        let ns = plane.namespace("team-a");
        let audit = plane.audit().only_namespaces(std::slice::from_ref(&ns));
        let client = plane.client().await;
        let gitlab = FakeGitLab::start().await;
        gitlab.add_token(TOKEN, TokenSpec::jane_doe());
        gitlab.add_token("glpat-revoked", TokenSpec::user("jdoe").revoked());
        let metrics = Arc::new(Metrics::new());
        let stop = spawn_controller(&client, &ns, &metrics, settings);
        Harness {
            ns,
            audit,
            client,
            gitlab,
            metrics,
            stop,
        }
    }

    /// Stops the controller (its in-flight reconciles finish) and starts a new one, which
    /// knows nothing but what it lists, as after a process restart.
    pub fn restart(&mut self, settings: Settings) {
        let _ = self.stop.send(true);
        self.stop = spawn_controller(&self.client, &self.ns, &self.metrics, settings);
    }

    pub fn connections(&self) -> Api<GitProviderConnection> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    pub async fn put_secret(&self, name: &str, data: serde_json::Value) {
        let secret: Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": self.ns},
            "stringData": data,
        }))
        .unwrap();
        // stringData is write-only: turn it into data the way the API server does.
        let mut secret = secret;
        if let Some(string_data) = secret.string_data.take() {
            secret.data = Some(
                string_data
                    .into_iter()
                    .map(|(k, v)| (k, k8s_openapi::ByteString(v.into_bytes())))
                    .collect(),
            );
        }
        let api = self.secrets();
        match api.get_opt(name).await.unwrap() {
            Some(existing) => {
                secret.metadata.resource_version = existing.metadata.resource_version;
                api.replace(name, &PostParams::default(), &secret).await.unwrap();
            }
            None => {
                api.create(&PostParams::default(), &secret).await.unwrap();
            }
        }
    }

    pub async fn create_connection(&self, name: &str, instance: &str, secret: &str, extra: serde_json::Value) {
        let mut spec = json!({
            "provider": "GitLab",
            "instanceName": instance,
            "url": self.gitlab.url().as_str(),
            "tokenSecretRef": {"name": secret},
        });
        if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                spec.insert(k.clone(), v.clone());
            }
        }
        let conn: GitProviderConnection = serde_json::from_value(json!({
            "apiVersion": "gitprovider.dev/v1alpha1", "kind": "GitProviderConnection",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": spec,
        }))
        .unwrap();
        self.connections().create(&PostParams::default(), &conn).await.unwrap();
    }

    /// Creates `count` connections `PREFIX-i` (each its own instance name) on Secret `secret`,
    /// then waits until every one is Verified.
    pub async fn create_verified(&self, prefix: &str, count: usize, secret: &str) {
        for i in 0..count {
            let name = format!("{prefix}-{i}");
            self.create_connection(&name, &name, secret, json!({})).await;
        }
        for i in 0..count {
            self.wait_reason(&format!("{prefix}-{i}"), "Verified").await;
        }
    }

    /// Waits until the connection's Ready reason is `reason` (and returns the object).
    pub async fn wait_reason(&self, name: &str, reason: &str) -> GitProviderConnection {
        let api = self.connections();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let conn = api.get(name).await.unwrap();
            if conn.ready_condition().is_some_and(|c| c.reason == reason) {
                return conn;
            }
            if tokio::time::Instant::now() > deadline {
                panic!(
                    "{name} did not become {reason} within {WAIT:?}; status: {}",
                    serde_json::to_string_pretty(&conn.status).unwrap()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn status_writes(&self, name: &str) -> usize {
        self.audit.count(|r| {
            r.target.as_ref().is_some_and(|t| {
                t.resource == "gitproviderconnections"
                    && t.subresource.as_deref() == Some("status")
                    && t.name.as_deref() == Some(name)
                    && matches!(t.verb.as_str(), "patch" | "update")
            })
        })
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// The controller `operator::run` starts, with this test's client, namespace and settings.
fn spawn_controller(client: &Client, ns: &str, metrics: &Arc<Metrics>, settings: Settings) -> watch::Sender<bool> {
    let http = HttpConfig {
        timeout: Duration::from_secs(3),
        retry_base_delay: Duration::from_millis(10),
        ..HttpConfig::default()
    };
    let reconciler = Reconciler::new(
        client.clone(),
        metrics.clone(),
        UniquenessScope::Namespace,
        &[ns.to_owned()],
        http,
        settings,
        "test",
    );
    let (stop, stopped) = watch::channel(false);
    let mut feed_stopped = stopped.clone();
    let watch = reconciler.watch();
    tokio::spawn(async move {
        tokio::select! {
            _ = watch => {}
            _ = feed_stopped.wait_for(|s| *s) => {}
        }
    });
    let mut stopped_rx = stopped;
    tokio::spawn(reconciler.term(async move {
        let _ = stopped_rx.wait_for(|s| *s).await;
    }));
    stop
}
