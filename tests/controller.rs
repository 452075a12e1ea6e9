//! The controller in-process against a real kube-apiserver (the run's shared control plane,
//! a namespace per test) and a local GitLab that speaks the documented API over real HTTP:
//! every path of a connection's life, from the status the user reads.

mod support;

use gitprovider_operator::api::{GitProviderConnection, READY, TOKEN_EXPIRING_SOON};
use gitprovider_operator::controller::{Context, Settings};
use gitprovider_operator::feed::Feed;
use gitprovider_operator::index::{ConnectionIndex, UniquenessScope};
use gitprovider_operator::metrics::Metrics;
use gitprovider_operator::providers::http::{HttpClient, HttpConfig};
use gitprovider_operator::triggers;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::events::Reporter;
use kube::{Api, Client};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use support::control_plane::{AuditLog, ControlPlane};
use support::fake_providers::gitlab::FakeGitLab;
use support::fake_providers::{TokenSpec, assert_reveals_jane_doe};
use tokio::sync::watch;

const TOKEN: &str = "glpat-valid-0123456789";
const WAIT: Duration = Duration::from_secs(15);

struct Harness {
    /// The test's namespace.
    ns: String,
    audit: AuditLog,
    client: Client,
    gitlab: FakeGitLab,
    metrics: Arc<Metrics>,
    stop: watch::Sender<bool>,
}

impl Harness {
    async fn start() -> Harness {
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
        let index = Arc::new(ConnectionIndex::new(UniquenessScope::Namespace));
        let feed = Feed::new(index.clone(), metrics.clone());
        tokio::spawn(feed.clone().run(client.clone(), vec![Some(ns.clone())]));
        let ctx = Arc::new(Context::new(
            client.clone(),
            HttpClient::new(HttpConfig {
                timeout: Duration::from_secs(3),
                retry_base_delay: Duration::from_millis(10),
                ..HttpConfig::default()
            }),
            index,
            metrics.clone(),
            Settings::default(),
            Reporter {
                controller: "gitprovider-operator".into(),
                instance: Some("test".into()),
            },
        ));
        let (stop, stopped) = watch::channel(false);
        let mut stopped_rx = stopped.clone();
        tokio::spawn(triggers::run(
            ctx,
            feed.clone(),
            feed.store(),
            vec![Some(ns.clone())],
            async move {
                let _ = stopped_rx.wait_for(|s| *s).await;
            },
        ));
        drop(stopped);
        Harness {
            ns,
            audit,
            client,
            gitlab,
            metrics,
            stop,
        }
    }

    fn connections(&self) -> Api<GitProviderConnection> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.ns)
    }

    async fn put_secret(&self, name: &str, data: serde_json::Value) {
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

    async fn create_connection(&self, name: &str, instance: &str, secret: &str, extra: serde_json::Value) {
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

    /// Waits until the connection's Ready reason is `reason` (and returns the object).
    async fn wait_reason(&self, name: &str, reason: &str) -> GitProviderConnection {
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

    fn status_writes(&self, name: &str) -> usize {
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

#[tokio::test]
async fn verified_status_carries_what_gitlab_revealed() {
    let h = Harness::start().await;
    h.put_secret("gitlab-pat", json!({"token": TOKEN})).await;
    h.create_connection("gitlab-main", "main", "gitlab-pat", json!({}))
        .await;
    let conn = h.wait_reason("gitlab-main", "Verified").await;
    let status = conn.status.clone().unwrap();
    let ready = conn.ready_condition().unwrap();
    assert_eq!(ready.status, "True");
    assert_eq!(ready.message, "authenticated as jdoe on GitLab 17.5.1-ee");
    assert_eq!(ready.observed_generation, conn.metadata.generation);
    assert_eq!(status.observed_generation, conn.metadata.generation);
    assert_reveals_jane_doe(&status);
    let expiring = status
        .conditions
        .iter()
        .find(|c| c.type_ == TOKEN_EXPIRING_SOON)
        .unwrap();
    assert_eq!(
        (expiring.status.as_str(), expiring.reason.as_str()),
        ("False", "TokenValid")
    );

    // An Event records the transition (published beside the reconcile, so it may trail the
    // status by a moment), and metrics expose the connection.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let events = h.audit.count(|r| {
            r.target
                .as_ref()
                .is_some_and(|t| t.resource == "events" && t.verb == "create")
                && r.mentions("Verified")
        });
        if events >= 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no event for the Ready transition"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(h.metrics.encode().contains(&format!(
        r#"gitprovider_connection_ready{{namespace="{}",name="gitlab-main",provider="GitLab"}} 1"#,
        h.ns
    )));

    // The token reached GitLab in the documented header, and nowhere in the API traffic.
    assert!(
        h.gitlab
            .requests()
            .iter()
            .any(|r| r.header("private-token") == Some(TOKEN))
    );
    assert!(
        h.audit
            .requests_mentioning(TOKEN)
            .iter()
            .all(|r| r.target.as_ref().is_some_and(|t| t.resource == "secrets")),
        "the token appears only in Secret traffic"
    );
}

#[tokio::test]
async fn missing_secret_then_created_becomes_verified() {
    let h = Harness::start().await;
    h.create_connection("gitlab-main", "main", "gitlab-pat", json!({}))
        .await;
    let conn = h.wait_reason("gitlab-main", "SecretNotFound").await;
    let ready = conn.ready_condition().unwrap();
    assert_eq!(ready.status, "False");
    assert!(
        ready.message.contains("gitlab-pat") && ready.message.contains(&h.ns),
        "{}",
        ready.message
    );
    assert!(conn.status.unwrap().authenticated_user.is_none());
    h.put_secret("gitlab-pat", json!({"token": TOKEN})).await;
    h.wait_reason("gitlab-main", "Verified").await;
}

#[tokio::test]
async fn secret_without_the_key_or_with_an_empty_value() {
    let h = Harness::start().await;
    h.put_secret("gitlab-pat", json!({"other": TOKEN})).await;
    h.create_connection("gitlab-main", "main", "gitlab-pat", json!({}))
        .await;
    let conn = h.wait_reason("gitlab-main", "SecretKeyNotFound").await;
    assert!(conn.ready_condition().unwrap().message.contains("\"token\""));
    h.put_secret("gitlab-pat", json!({"token": "  \n"})).await;
    // still SecretKeyNotFound: a blank value is no token
    tokio::time::sleep(Duration::from_millis(300)).await;
    h.wait_reason("gitlab-main", "SecretKeyNotFound").await;
    h.put_secret("gitlab-pat", json!({"token": format!("{TOKEN}\n")})).await;
    h.wait_reason("gitlab-main", "Verified").await;
}

#[tokio::test]
async fn rejected_token_is_unauthorized_and_rotation_changes_the_outcome() {
    let h = Harness::start().await;
    h.put_secret("gitlab-pat", json!({"token": "glpat-unknown"})).await;
    h.create_connection("gitlab-main", "main", "gitlab-pat", json!({}))
        .await;
    let conn = h.wait_reason("gitlab-main", "Unauthorized").await;
    assert_eq!(conn.ready_condition().unwrap().status, "False");

    // rotate to a valid token: verified within seconds
    h.put_secret("gitlab-pat", json!({"token": TOKEN})).await;
    let verified = h.wait_reason("gitlab-main", "Verified").await;
    let verified_at = verified.ready_condition().unwrap().last_transition_time.clone();

    // rotate to a revoked one: Unauthorized, lastTransitionTime moves, facts are gone
    h.put_secret("gitlab-pat", json!({"token": "glpat-revoked"})).await;
    let revoked = h.wait_reason("gitlab-main", "Unauthorized").await;
    let ready = revoked.ready_condition().unwrap();
    assert!(ready.message.contains("revoked"), "{}", ready.message);
    assert!(ready.last_transition_time >= verified_at);
    assert!(revoked.status.unwrap().authenticated_user.is_none());

    // deleting the Secret is noticed too
    h.secrets()
        .delete("gitlab-pat", &DeleteParams::default())
        .await
        .unwrap();
    h.wait_reason("gitlab-main", "SecretNotFound").await;
}

#[tokio::test]
async fn suspended_connection_never_calls_the_provider() {
    let h = Harness::start().await;
    h.put_secret("gitlab-pat", json!({"token": TOKEN})).await;
    h.create_connection("gitlab-main", "main", "gitlab-pat", json!({"suspend": true}))
        .await;
    let conn = h.wait_reason("gitlab-main", "Suspended").await;
    assert_eq!(conn.ready_condition().unwrap().status, "Unknown");
    assert!(h.gitlab.requests().is_empty(), "no request reached GitLab");

    // resuming verifies at once; observedGeneration follows the spec
    let patch = json!({"spec": {"suspend": false}});
    h.connections()
        .patch("gitlab-main", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let conn = h.wait_reason("gitlab-main", "Verified").await;
    assert_eq!(conn.status.unwrap().observed_generation, Some(2));
}

#[tokio::test]
async fn unchanged_failures_are_not_written_again() {
    let h = Harness::start().await;
    h.put_secret("gitlab-pat", json!({"token": "glpat-unknown"})).await;
    h.create_connection("gitlab-main", "main", "gitlab-pat", json!({}))
        .await;
    h.wait_reason("gitlab-main", "Unauthorized").await;
    let writes = h.status_writes("gitlab-main");
    assert_eq!(writes, 1);
    // A Secret change that keeps the same (bad) token re-verifies but changes nothing.
    let label = json!({"metadata": {"labels": {"touched": "yes"}}});
    h.secrets()
        .patch("gitlab-pat", &PatchParams::default(), &Patch::Merge(&label))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + WAIT;
    while h.gitlab.requests().len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        h.gitlab.requests().len() >= 2,
        "the Secret change triggered a verification"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        h.status_writes("gitlab-main"),
        writes,
        "nothing changed, nothing written"
    );
}

#[tokio::test]
async fn duplicate_instance_names_heal_when_the_holder_goes() {
    let h = Harness::start().await;
    h.put_secret("gitlab-pat", json!({"token": TOKEN})).await;
    h.create_connection("older", "Main", "gitlab-pat", json!({})).await;
    h.wait_reason("older", "Verified").await;
    // creationTimestamp has second precision; make the order unambiguous.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    h.create_connection("younger", " main ", "gitlab-pat", json!({})).await;
    let conn = h.wait_reason("younger", "DuplicateInstanceName").await;
    let message = &conn.ready_condition().unwrap().message;
    assert!(message.contains(&format!("{}/older", h.ns)), "{message}");
    let before = h.gitlab.requests().len();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.gitlab.requests().len(), before, "the duplicate is not verified");
    h.wait_reason("older", "Verified").await;

    h.connections().delete("older", &DeleteParams::default()).await.unwrap();
    h.wait_reason("younger", "Verified").await;
    assert_eq!(
        h.connections()
            .get("younger")
            .await
            .unwrap()
            .ready_condition()
            .map(|c| c.type_.clone()),
        Some(READY.to_owned())
    );
}

#[tokio::test]
async fn invalid_ca_bundle_reference_is_invalid_spec() {
    let h = Harness::start().await;
    h.put_secret("gitlab-pat", json!({"token": TOKEN})).await;
    h.create_connection(
        "gitlab-main",
        "main",
        "gitlab-pat",
        json!({"tls": {"caBundleRef": {"kind": "ConfigMap", "name": "corp-ca"}}}),
    )
    .await;
    let conn = h.wait_reason("gitlab-main", "InvalidSpec").await;
    assert!(conn.ready_condition().unwrap().message.contains("corp-ca"));
}

#[tokio::test]
async fn rate_limit_holds_every_connection_of_the_token_until_the_reset() {
    use support::fake_providers::rate_limits::{RateLimitAnswer, rate_limited};
    let h = Harness::start().await;
    h.put_secret("gitlab-pat", json!({"token": TOKEN})).await;
    h.put_secret("gitlab-pat-2", json!({"token": TOKEN})).await;
    // Longer than the blind backoff (10 s at most for a first failure).
    let reset_in = Duration::from_secs(20);
    h.gitlab.fault(
        Some("/api/v4/user"),
        rate_limited(RateLimitAnswer::GitLab, reset_in),
        Some(1),
    );
    h.create_connection("first", "first", "gitlab-pat", json!({})).await;
    let first = h.wait_reason("first", "ProviderError").await;
    let limited_at = std::time::SystemTime::now();
    let message = first.ready_condition().unwrap().message.clone();
    assert!(message.contains("rate-limited this token until"), "{message}");
    let asked = h.gitlab.requests().len();

    // Another connection with the same token is not sent into the same wall.
    h.create_connection("second", "second", "gitlab-pat-2", json!({})).await;
    let second = h.wait_reason("second", "ProviderError").await;
    let held = second.ready_condition().unwrap().message.clone();
    assert!(held.contains("rate-limited this token until"), "{held}");
    assert_eq!(
        h.gitlab.requests().len(),
        asked,
        "nothing was asked for the held connection"
    );

    // Both are verified right after the reset, and nothing was asked before it.
    let deadline = Duration::from_secs(45);
    for name in ["first", "second"] {
        let api = h.connections();
        let started = tokio::time::Instant::now();
        loop {
            let conn = api.get(name).await.unwrap();
            if conn.ready_condition().is_some_and(|c| c.reason == "Verified") {
                break;
            }
            assert!(started.elapsed() < deadline, "{name} was not verified after the reset");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let requests = h.gitlab.requests();
    let early = requests[asked..]
        .iter()
        .filter(|r| r.at < limited_at + reset_in - Duration::from_secs(2))
        .count();
    assert_eq!(early, 0, "asked before the reset: {:?}", &requests[asked..]);
}
