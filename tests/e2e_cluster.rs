//! End to end against a real cluster, with the operator installed by the Helm chart
//! (charts/gitprovider-operator, default values: self-managed webhook certificates,
//! failurePolicy Fail, uniqueness per namespace). `.github/workflows/e2e.yml` runs them on kind:
//!
//! ```sh
//! GPO_E2E_KUBECONFIG=$HOME/.kube/config cargo nextest run --test e2e_cluster --run-ignored only
//! ```
//!
//! No Git provider is reachable from the cluster, so these are the scenarios that need none:
//! the CRD and webhook are installed, a missing Secret is SecretNotFound, suspend is Suspended,
//! the webhook denies a duplicate naming its holder (and warns about `http://`), a duplicate that
//! got past admission is healed, and an unresolvable host is Unreachable.
//!
//! Each test works in a namespace of its own (`gpo-e2e-<test>-<random>`), deleted afterwards
//! even when the test fails.

use gitprovider_operator::api::GitProviderConnection;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// How long the operator in the cluster may take to react.
const WAIT: Duration = Duration::from_secs(60);
/// The webhook's name in the chart's ValidatingWebhookConfiguration.
const WEBHOOK_NAME: &str = "validate.gitproviderconnections.gitprovider.dev";
/// Namespaces carrying this label are skipped by the webhook while a test bypasses admission.
const BYPASS_LABEL: &str = "gitprovider.dev/e2e-bypass-admission";
/// A host that never resolves (RFC 2606).
const UNRESOLVABLE_URL: &str = "https://gitlab.invalid";

fn kubeconfig_path() -> String {
    match std::env::var("GPO_E2E_KUBECONFIG") {
        Ok(path) if !path.trim().is_empty() => path,
        _ => panic!(
            "GPO_E2E_KUBECONFIG is not set: these tests need a real cluster with the operator installed by \
             the Helm chart (charts/gitprovider-operator). Point GPO_E2E_KUBECONFIG at its kubeconfig, e.g. \
             GPO_E2E_KUBECONFIG=$HOME/.kube/config cargo nextest run --test e2e_cluster --run-ignored only"
        ),
    }
}

async fn client() -> Client {
    let path = kubeconfig_path();
    let kubeconfig = kube::config::Kubeconfig::read_from(&path)
        .unwrap_or_else(|e| panic!("cannot read GPO_E2E_KUBECONFIG={path}: {e}"));
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("GPO_E2E_KUBECONFIG={path} is not usable: {e}"));
    Client::try_from(config).expect("a kube client")
}

/// Runs `f` on a runtime of its own, on another thread: for clean-up in `Drop`, where the
/// test's runtime may not be driven any more.
fn block_on_fresh<F>(f: impl FnOnce() -> F + Send + 'static)
where
    F: std::future::Future<Output = ()>,
{
    let thread = std::thread::spawn(
        move || match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt.block_on(f()),
            Err(e) => eprintln!("clean-up runtime: {e}"),
        },
    );
    let _ = thread.join();
}

/// A namespace for one test, deleted when dropped.
struct TestNamespace {
    client: Client,
    name: String,
}

impl TestNamespace {
    async fn new(test: &str, labels: Value) -> TestNamespace {
        let client = client().await;
        wait_for_webhook_ca(&client).await;
        let name = format!("gpo-e2e-{test}-{:06x}", fastrand::u32(..0x100_0000));
        let namespace: Namespace = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": labels},
        }))
        .expect("namespace");
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .unwrap_or_else(|e| panic!("create namespace {name}: {e}"));
        TestNamespace { client, name }
    }

    fn connections(&self) -> Api<GitProviderConnection> {
        Api::namespaced(self.client.clone(), &self.name)
    }

    async fn put_secret(&self, name: &str, token: &str) {
        let secret: Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": self.name},
            "stringData": {"token": token},
        }))
        .expect("secret");
        Api::<Secret>::namespaced(self.client.clone(), &self.name)
            .create(&PostParams::default(), &secret)
            .await
            .unwrap_or_else(|e| panic!("create Secret {name}: {e}"));
    }

    fn connection(&self, name: &str, instance: &str, url: &str, extra: Value) -> GitProviderConnection {
        let mut spec = json!({
            "provider": "GitLab",
            "instanceName": instance,
            "url": url,
            "tokenSecretRef": {"name": format!("{name}-pat")},
        });
        json_patch::merge(&mut spec, &extra);
        serde_json::from_value(json!({
            "apiVersion": "gitprovider.dev/v1alpha1", "kind": "GitProviderConnection",
            "metadata": {"name": name, "namespace": self.name},
            "spec": spec,
        }))
        .expect("connection")
    }

    async fn try_create(&self, name: &str, instance: &str, extra: Value) -> Result<GitProviderConnection, kube::Error> {
        self.connections()
            .create(
                &PostParams::default(),
                &self.connection(name, instance, UNRESOLVABLE_URL, extra),
            )
            .await
    }

    async fn create(&self, name: &str, instance: &str, extra: Value) -> GitProviderConnection {
        self.try_create(name, instance, extra)
            .await
            .unwrap_or_else(|e| panic!("create {}/{name}: {e}", self.name))
    }

    /// Waits until Ready has `reason`; returns the connection.
    async fn wait_reason(&self, name: &str, reason: &str) -> GitProviderConnection {
        let api = self.connections();
        let deadline = Instant::now() + WAIT;
        loop {
            let conn = api.get(name).await.unwrap_or_else(|e| panic!("get {name}: {e}"));
            if conn.ready_condition().is_some_and(|c| c.reason == reason) {
                return conn;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{}/{name} did not become {reason} within {WAIT:?}; status: {}",
                    self.name,
                    serde_json::to_string_pretty(&conn.status).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

impl Drop for TestNamespace {
    fn drop(&mut self) {
        let name = self.name.clone();
        block_on_fresh(move || async move {
            let client = client().await;
            if let Err(e) = Api::<Namespace>::all(client)
                .delete(&name, &DeleteParams::background())
                .await
            {
                eprintln!("cannot delete namespace {name}: {e}");
            }
        });
    }
}

fn ready(conn: &GitProviderConnection) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    conn.ready_condition().expect("a Ready condition")
}

/// The chart's ValidatingWebhookConfiguration (found by its webhook's name, whatever the
/// release is called).
async fn webhook_configuration(client: &Client) -> ValidatingWebhookConfiguration {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    api.list(&Default::default())
        .await
        .expect("list ValidatingWebhookConfigurations")
        .items
        .into_iter()
        .find(|c| c.webhooks.iter().flatten().any(|w| w.name == WEBHOOK_NAME))
        .unwrap_or_else(|| {
            panic!("no ValidatingWebhookConfiguration has the webhook {WEBHOOK_NAME}: is the chart installed?")
        })
}

/// Waits until the operator has injected its CA into the webhook configuration: before that,
/// with failurePolicy Fail, the API server cannot call the webhook and refuses every create.
async fn wait_for_webhook_ca(client: &Client) {
    let deadline = Instant::now() + WAIT;
    loop {
        let config = webhook_configuration(client).await;
        let injected = config
            .webhooks
            .iter()
            .flatten()
            .filter(|w| w.name == WEBHOOK_NAME)
            .all(|w| w.client_config.ca_bundle.as_ref().is_some_and(|b| !b.0.is_empty()));
        if injected {
            return;
        }
        if Instant::now() >= deadline {
            panic!("the operator did not inject its CA into the webhook configuration within {WAIT:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Sets the namespaceSelector of the chart's webhook (read-modify-replace, retried on conflict:
/// the operator writes the same object when it injects its CA).
async fn set_namespace_selector(client: &Client, selector: Option<LabelSelector>) {
    let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
    for _ in 0..10 {
        let mut config = webhook_configuration(client).await;
        let name = config.metadata.name.clone().expect("name");
        for webhook in config.webhooks.iter_mut().flatten() {
            if webhook.name == WEBHOOK_NAME {
                webhook.namespace_selector = selector.clone();
            }
        }
        match api.replace(&name, &PostParams::default(), &config).await {
            Ok(_) => return,
            Err(kube::Error::Api(status)) if status.code == 409 => continue,
            Err(e) => panic!("update ValidatingWebhookConfiguration {name}: {e}"),
        }
    }
    panic!("the ValidatingWebhookConfiguration kept changing under the test");
}

/// While alive, the webhook skips namespaces labelled [`BYPASS_LABEL`]; the previous
/// namespaceSelector is restored by [`AdmissionBypass::end`], or when dropped (a failed test).
struct AdmissionBypass {
    original: Option<LabelSelector>,
    restored: bool,
}

impl AdmissionBypass {
    async fn start(client: &Client) -> AdmissionBypass {
        let config = webhook_configuration(client).await;
        let original = config
            .webhooks
            .iter()
            .flatten()
            .find(|w| w.name == WEBHOOK_NAME)
            .and_then(|w| w.namespace_selector.clone());
        let mut selector = original.clone().unwrap_or_default();
        selector
            .match_expressions
            .get_or_insert_with(Vec::new)
            .push(serde_json::from_value(json!({"key": BYPASS_LABEL, "operator": "DoesNotExist"})).unwrap());
        set_namespace_selector(client, Some(selector)).await;
        AdmissionBypass {
            original,
            restored: false,
        }
    }

    async fn end(mut self) {
        let client = client().await;
        set_namespace_selector(&client, self.original.clone()).await;
        self.restored = true;
    }
}

impl Drop for AdmissionBypass {
    fn drop(&mut self) {
        if self.restored {
            return;
        }
        let original = self.original.clone();
        block_on_fresh(move || async move {
            let client = client().await;
            set_namespace_selector(&client, original).await;
        });
    }
}

#[tokio::test]
#[ignore = "needs a real cluster: set GPO_E2E_KUBECONFIG and run with --run-ignored only"]
async fn crd_and_webhook_are_installed() {
    let client = client().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds
        .get("gitproviderconnections.gitprovider.dev")
        .await
        .expect("the CRD gitproviderconnections.gitprovider.dev is installed");
    let established = crd
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|c| c.iter().any(|c| c.type_ == "Established" && c.status == "True"));
    assert!(established, "the CRD is Established");
    assert_eq!(crd.spec.names.kind, "GitProviderConnection");
    assert_eq!(crd.spec.scope, "Namespaced");
    let v1alpha1 = crd
        .spec
        .versions
        .iter()
        .find(|v| v.name == "v1alpha1")
        .expect("v1alpha1");
    assert!(v1alpha1.served && v1alpha1.storage);
    assert!(v1alpha1.subresources.as_ref().is_some_and(|s| s.status.is_some()));
    // What is installed is what the repository ships (compared by the fields the spec has:
    // numbers and defaults may be re-encoded by the API server).
    let shipped: Value = serde_saphyr::from_str(include_str!("../crds/gitproviderconnections.yaml")).unwrap();
    let installed = serde_json::to_value(&v1alpha1.schema).unwrap();
    let spec_fields = |schema: &Value| -> Vec<String> {
        let mut keys: Vec<String> = schema["openAPIV3Schema"]["properties"]["spec"]["properties"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        keys.sort();
        keys
    };
    let shipped_schema = &shipped["spec"]["versions"][0]["schema"];
    assert!(!spec_fields(shipped_schema).is_empty());
    assert_eq!(spec_fields(&installed), spec_fields(shipped_schema));
    assert_eq!(
        installed["openAPIV3Schema"]["properties"]["spec"]["required"],
        shipped_schema["openAPIV3Schema"]["properties"]["spec"]["required"]
    );

    // The operator injected its CA into the webhook configuration (self-managed certificates).
    wait_for_webhook_ca(&client).await;
    let config = webhook_configuration(&client).await;
    let webhook = config
        .webhooks
        .iter()
        .flatten()
        .find(|w| w.name == WEBHOOK_NAME)
        .unwrap();
    assert!(
        webhook
            .client_config
            .ca_bundle
            .as_ref()
            .is_some_and(|b| !b.0.is_empty()),
        "caBundle is injected"
    );
    assert_eq!(webhook.failure_policy.as_deref(), Some("Fail"));
}

#[tokio::test]
#[ignore = "needs a real cluster: set GPO_E2E_KUBECONFIG and run with --run-ignored only"]
async fn missing_secret_is_secret_not_found() {
    let ns = TestNamespace::new("secret", json!({})).await;
    let created = ns.create("gitlab-main", "main", json!({})).await;
    let conn = ns.wait_reason("gitlab-main", "SecretNotFound").await;
    let condition = ready(&conn);
    assert_eq!(condition.status, "False");
    assert!(
        condition.message.contains("gitlab-main-pat") && condition.message.contains(&ns.name),
        "{}",
        condition.message
    );
    assert_eq!(
        conn.status.as_ref().unwrap().observed_generation,
        created.metadata.generation
    );
}

#[tokio::test]
#[ignore = "needs a real cluster: set GPO_E2E_KUBECONFIG and run with --run-ignored only"]
async fn suspend_is_suspended() {
    let ns = TestNamespace::new("suspend", json!({})).await;
    ns.create("paused", "paused", json!({"suspend": true})).await;
    let conn = ns.wait_reason("paused", "Suspended").await;
    assert_eq!(ready(&conn).status, "Unknown");

    // Resumed: no Secret, so SecretNotFound; suspended again: Suspended, generation 3.
    let patch = |suspend: bool| json!({"spec": {"suspend": suspend}});
    ns.connections()
        .patch("paused", &PatchParams::default(), &Patch::Merge(&patch(false)))
        .await
        .unwrap();
    ns.wait_reason("paused", "SecretNotFound").await;
    ns.connections()
        .patch("paused", &PatchParams::default(), &Patch::Merge(&patch(true)))
        .await
        .unwrap();
    let conn = ns.wait_reason("paused", "Suspended").await;
    assert_eq!(conn.status.as_ref().unwrap().observed_generation, Some(3));
}

#[tokio::test]
#[ignore = "needs a real cluster: set GPO_E2E_KUBECONFIG and run with --run-ignored only"]
async fn webhook_denies_a_duplicate_naming_the_holder() {
    let ns = TestNamespace::new("webhook", json!({})).await;
    ns.create("older", "main", json!({})).await;
    let denied = match ns.try_create("younger", "  MAIN ", json!({})).await {
        Err(kube::Error::Api(status)) => status,
        Err(other) => panic!("expected a denial, got {other}"),
        Ok(_) => panic!("the duplicate was admitted"),
    };
    let holder = format!("{}/older", ns.name);
    assert!(denied.message.contains(&holder), "names {holder}: {}", denied.message);
    assert!(denied.message.contains(WEBHOOK_NAME), "{}", denied.message);

    // Another provider may use the name.
    ns.create("gitea", "main", json!({"provider": "Gitea"})).await;

    // An http:// URL is admitted with a warning.
    let body = serde_json::to_vec(&ns.connection("plain", "plain", "http://gitlab.invalid", json!({}))).unwrap();
    let request = http_request(
        "POST",
        &format!(
            "/apis/gitprovider.dev/v1alpha1/namespaces/{}/gitproviderconnections",
            ns.name
        ),
        body,
    );
    let response = ns.client.send(request).await.expect("request sent");
    assert_eq!(response.status().as_u16(), 201);
    let warnings: Vec<String> = response
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    assert!(
        warnings.iter().any(|w| w.contains("http://")),
        "a Warning header about http://: {warnings:?}"
    );
}

fn http_request(method: &str, path: &str, body: Vec<u8>) -> axum::http::Request<kube::client::Body> {
    axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("Content-Type", "application/json")
        .body(kube::client::Body::from(body))
        .expect("request")
}

#[tokio::test]
#[ignore = "needs a real cluster: set GPO_E2E_KUBECONFIG and run with --run-ignored only"]
async fn duplicate_past_admission_is_healed() {
    let client = client().await;
    let ns = TestNamespace::new("heal", json!({BYPASS_LABEL: "true"})).await;
    // The webhook skips this namespace while both are created.
    let bypass = AdmissionBypass::start(&client).await;
    let create_bypassing = |name: &'static str, instance: &'static str| {
        let ns = &ns;
        async move {
            // The API server may take a moment to see the changed configuration.
            let deadline = Instant::now() + WAIT;
            loop {
                match ns.try_create(name, instance, json!({})).await {
                    Ok(conn) => return conn,
                    Err(e) if Instant::now() < deadline => {
                        eprintln!("create {name} while admission is bypassed: {e}; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                    Err(e) => panic!("create {name}: {e}"),
                }
            }
        }
    };
    create_bypassing("older", "main").await;
    // creationTimestamp has second precision: make the order unambiguous.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    create_bypassing("younger", " Main").await;
    bypass.end().await;

    let conn = ns.wait_reason("younger", "DuplicateInstanceName").await;
    let holder = format!("{}/older", ns.name);
    assert!(ready(&conn).message.contains(&holder), "{}", ready(&conn).message);
    // The older keeps the name (and, with no Secret, says so).
    ns.wait_reason("older", "SecretNotFound").await;

    // The holder goes: the younger takes the name and is evaluated at once.
    ns.connections()
        .delete("older", &DeleteParams::default())
        .await
        .unwrap();
    ns.wait_reason("younger", "SecretNotFound").await;
}

#[tokio::test]
#[ignore = "needs a real cluster: set GPO_E2E_KUBECONFIG and run with --run-ignored only"]
async fn unresolvable_host_is_unreachable() {
    let ns = TestNamespace::new("unreachable", json!({})).await;
    ns.put_secret("gitlab-main-pat", "glpat-e2e-not-a-real-token").await;
    ns.create("gitlab-main", "main", json!({})).await;
    let conn = ns.wait_reason("gitlab-main", "Unreachable").await;
    let condition = ready(&conn);
    assert_eq!(condition.status, "False");
    assert!(condition.message.contains("gitlab.invalid"), "{}", condition.message);
    assert!(
        !condition.message.contains("glpat-e2e-not-a-real-token"),
        "the token never shows"
    );
}
