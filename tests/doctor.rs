//! `doctor` through the built binary on the real control plane: all OK with the operator running
//! (its webhook, Lease and the chart's RBAC), then each failure it exists to find — the CRD
//! missing or of another schema, the webhook configuration missing, its Service missing, its
//! caBundle expired, the webhook not answering, no Lease or a stale one, a ServiceAccount lacking
//! a permission — each asserted by its line and the exit code.

mod support;

#[path = "e2e/harness.rs"]
mod harness;

use gitprovider_operator::api::GitProviderConnection;
use harness::{Cluster, OperatorSpec, WAIT, b64, eventually};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, CustomResourceExt};
use serde_json::{Value, json};
use std::path::Path;
use support::control_plane::{ControlPlane, SYSTEM_NAMESPACE, binary, random_suffix};

struct Doctor {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Doctor {
    /// The line of one check (`OK   crd: ...`); panics with the whole report when absent.
    fn line(&self, check: &str) -> &str {
        self.stdout
            .lines()
            .find(|l| l.get(5..).is_some_and(|rest| rest.starts_with(&format!("{check}: "))))
            .unwrap_or_else(|| panic!("no {check} line:\n{}{}", self.stdout, self.stderr))
    }

    fn assert_line(&self, check: &str, status: &str, needle: &str) {
        let line = self.line(check);
        assert!(
            line.starts_with(status) && line.contains(needle),
            "expected {status} ... {needle:?} in:\n{}",
            self.stdout
        );
    }
}

async fn doctor(kubeconfig: &Path, args: &[&str]) -> Doctor {
    let mut command = binary(&["doctor"], kubeconfig);
    command.args(args);
    let output = tokio::task::spawn_blocking(move || command.output().expect("run the binary"))
        .await
        .expect("the binary ran");
    let doctor = Doctor {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(!doctor.stderr.contains("panicked"), "{}", doctor.stderr);
    doctor
}

/// `doctor` for the test's operator: its Lease and webhook configuration, with file certificates.
fn operator_flags(cluster: &Cluster) -> Vec<String> {
    vec![
        "--namespace".into(),
        SYSTEM_NAMESPACE.into(),
        "--leader-election-id".into(),
        cluster.lease_id.clone(),
        "--webhook-configuration".into(),
        cluster.webhook_configuration.clone(),
        "--webhook-certs".into(),
        "external".into(),
    ]
}

/// A webhook configuration of the test's namespaces with failurePolicy Ignore (it blocks
/// nothing); its name.
fn configuration(cluster: &Cluster, client_config: Value) -> String {
    configuration_with(cluster, client_config, "Ignore")
}

/// A webhook configuration of the test's namespaces with `failure_policy`; its name.
fn configuration_with(cluster: &Cluster, client_config: Value, failure_policy: &str) -> String {
    let name = format!("doctor-{}", random_suffix());
    let config = cluster.webhook_configuration(&name, client_config, failure_policy);
    let plane = cluster.plane();
    plane.apply(&serde_json::to_value(config).expect("JSON"));
    name
}

/// The test's world with no operator, its flags, and doctor's report of it (exit 1).
async fn without_operator() -> (Cluster, Vec<String>, Doctor) {
    let cluster = Cluster::start().await;
    let flags = operator_flags(&cluster);
    let plane = cluster.plane();
    let report = doctor(&plane.kubeconfig(), &strs(&flags)).await;
    assert_eq!(report.code, Some(1), "{}", report.stdout);
    (cluster, flags, report)
}

fn strs(flags: &[String]) -> Vec<&str> {
    flags.iter().map(String::as_str).collect()
}

#[tokio::test]
async fn all_ok_with_the_operator_running_then_the_webhook_stops_answering() {
    let cluster = Cluster::start().await;
    let plane = cluster.plane();
    let operator = cluster
        .operator_with(
            OperatorSpec::new("doctor-0")
                .args(cluster.pki.args())
                .args(cluster.election_args()),
        )
        .await;
    cluster.install_webhook(&operator.webhook_url(), "Fail").await;
    eventually("the operator leads", WAIT, || async {
        cluster.lease_holder().await.ok_or_else(|| "no holder".to_owned())
    })
    .await;
    let flags = operator_flags(&cluster);

    let report = doctor(&plane.kubeconfig(), &strs(&flags)).await;
    assert_eq!(report.code, Some(0), "{}{}", report.stdout, report.stderr);
    assert_eq!(report.stdout.lines().count(), 6, "{}", report.stdout);
    assert!(report.stdout.lines().all(|l| l.starts_with("OK ")), "{}", report.stdout);
    report.assert_line("api-server", "OK", "answers: Kubernetes v1.");
    report.assert_line("crd", "OK", "serves v1alpha1 with this binary's schema");
    report.assert_line("webhook-configuration", "OK", &operator.webhook_url());
    // The probe namespace comes from the configuration's namespaceSelector.
    report.assert_line(
        "webhook-answers",
        "OK",
        &format!("a dry-run create in {} was allowed with its warning", cluster.ns),
    );
    report.assert_line("lease", "OK", "held by doctor-0");
    report.assert_line(
        "rbac",
        "OK",
        "ServiceAccount gitprovider-system/gitprovider-operator has all",
    );

    let mut json_flags = strs(&flags);
    json_flags.extend(["-o", "json"]);
    let report = doctor(&plane.kubeconfig(), &json_flags).await;
    assert_eq!(report.code, Some(0));
    let document: Value = serde_json::from_str(&report.stdout).expect("-o json is JSON");
    assert_eq!(
        document["summary"],
        json!({"checks": 6, "ok": 6, "failed": 0, "skipped": 0})
    );
    assert_eq!(document["checks"][3]["check"], "webhook-answers");

    // A configuration that calls the same webhook but trusts another CA: the API server cannot
    // verify the certificate the webhook serves. (Bounded: the API server picks a new
    // configuration up a moment after its create.)
    let other_ca = support::pki::TestCa::new("not the webhook's CA").expect("a CA");
    let wrong_ca = configuration_with(
        &cluster,
        json!({"url": operator.webhook_url(), "caBundle": b64(other_ca.cert_pem())}),
        "Fail",
    );
    let mut wrong_ca_flags = flags.clone();
    wrong_ca_flags[5] = wrong_ca.clone();
    let kubeconfig = plane.kubeconfig();
    let report = eventually(
        "the API server uses the configuration with another CA",
        WAIT,
        || async {
            let report = doctor(&kubeconfig, &strs(&wrong_ca_flags)).await;
            match report.line("webhook-answers").contains("cannot call the webhook") {
                true => Ok(report),
                false => Err(report.stdout),
            }
        },
    )
    .await;
    assert_eq!(report.code, Some(1), "{}", report.stdout);
    report.assert_line(
        "webhook-answers",
        "FAIL",
        "caBundle is not the CA of the certificate the webhook serves",
    );
    report.assert_line("webhook-configuration", "OK", "caBundle valid until");
    Api::<ValidatingWebhookConfiguration>::all(cluster.client.clone())
        .delete(&wrong_ca, &DeleteParams::default())
        .await
        .expect("delete the configuration with another CA");

    // The webhook's process is gone: the API server cannot call it.
    drop(operator);
    let report = doctor(&plane.kubeconfig(), &strs(&flags)).await;
    assert_eq!(report.code, Some(1), "{}", report.stdout);
    report.assert_line("webhook-answers", "FAIL", "the API server cannot call the webhook");
    report.assert_line(
        "webhook-answers",
        "FAIL",
        "with failurePolicy Fail, every create and update",
    );
    report.assert_line("webhook-configuration", "OK", "caBundle valid until");
}

#[tokio::test]
async fn no_lease_or_a_stale_one() {
    let (cluster, mut flags, report) = without_operator().await;
    let plane = cluster.plane();
    report.assert_line(
        "lease",
        "FAIL",
        &format!("Lease {SYSTEM_NAMESPACE}/{} does not exist", cluster.lease_id),
    );

    // Held by a replica that stopped renewing an hour ago.
    let renewed = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
    let lease: Lease = serde_json::from_value(json!({
        "metadata": {"name": cluster.lease_id, "namespace": SYSTEM_NAMESPACE},
        "spec": {"holderIdentity": "gone-pod", "leaseDurationSeconds": 15,
                 "renewTime": renewed.strftime("%Y-%m-%dT%H:%M:%S.%6fZ").to_string()},
    }))
    .expect("a Lease");
    Api::<Lease>::namespaced(cluster.client.clone(), SYSTEM_NAMESPACE)
        .create(&PostParams::default(), &lease)
        .await
        .expect("create the Lease");
    let report = doctor(&plane.kubeconfig(), &strs(&flags)).await;
    assert_eq!(report.code, Some(1));
    report.assert_line("lease", "FAIL", "is stale: gone-pod last renewed it");

    // Without leader election there is no Lease line.
    flags.push("--leader-elect=false".into());
    let report = doctor(&plane.kubeconfig(), &strs(&flags)).await;
    assert!(!report.stdout.contains("lease:"), "{}", report.stdout);

    // Usage errors exit 2.
    let report = doctor(&plane.kubeconfig(), &["--timeout", "0s"]).await;
    assert_eq!(report.code, Some(2), "{}", report.stderr);
    let report = doctor(Path::new("/nonexistent/kubeconfig"), &[]).await;
    assert_eq!(report.code, Some(2), "{}", report.stderr);
    assert!(report.stderr.contains("cannot read --kubeconfig"), "{}", report.stderr);
}

#[tokio::test]
async fn webhook_configuration_missing_without_its_service_or_with_an_expired_ca() {
    let (cluster, mut flags, report) = without_operator().await;
    let plane = cluster.plane();
    report.assert_line(
        "webhook-configuration",
        "FAIL",
        &format!(
            "ValidatingWebhookConfiguration {} not found",
            cluster.webhook_configuration
        ),
    );
    report.assert_line("webhook-configuration", "FAIL", "kubectl apply -k deploy/");
    report.assert_line("webhook-answers", "SKIP", "no webhook configuration to call");

    // A configuration calling a Service that does not exist (Ignore: it blocks nothing).
    let service = json!({"service": {"name": "doctor-absent", "namespace": cluster.ns, "path": "/validate"},
                         "caBundle": b64(&cluster.pki.ca_pem)});
    flags[5] = configuration(&cluster, service);
    let report = doctor(&plane.kubeconfig(), &strs(&flags)).await;
    assert_eq!(report.code, Some(1));
    report.assert_line(
        "webhook-configuration",
        "FAIL",
        &format!(
            "calls Service {}/doctor-absent:443/validate, which does not exist",
            cluster.ns
        ),
    );

    // A caBundle whose CA expired yesterday.
    let key = rcgen::KeyPair::generate().expect("a key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(30);
    params.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    let expired = params.self_signed(&key).expect("a CA").pem();
    flags[5] = configuration(
        &cluster,
        json!({"url": "https://127.0.0.1:1/validate", "caBundle": b64(&expired)}),
    );
    let report = doctor(&plane.kubeconfig(), &strs(&flags)).await;
    assert_eq!(report.code, Some(1));
    report.assert_line("webhook-configuration", "FAIL", "expired at");
}

#[tokio::test]
async fn a_service_account_lacking_a_permission() {
    let cluster = Cluster::start().await;
    let plane = cluster.plane();
    let ns = &cluster.ns;
    plane.kubectl_ok(&["create", "serviceaccount", "doctor-sa", "-n", ns]);
    // The chart's rules, less one verb: patch on events.k8s.io Events.
    let shipped = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/rbac.yaml"))
        .expect("deploy/rbac.yaml");
    let watch: Value = shipped
        .split("\n---\n")
        .map(|doc| serde_saphyr::from_str::<Value>(doc).expect("YAML"))
        .find(|doc| doc["kind"] == "ClusterRole" && doc["metadata"]["name"] == "gitprovider-operator")
        .expect("the watch ClusterRole");
    let mut rules = watch["rules"].clone();
    for rule in rules.as_array_mut().expect("rules") {
        if rule["apiGroups"] == json!(["events.k8s.io"]) {
            rule["verbs"] = json!(["create"]);
        }
    }
    let role_name = format!("doctor-{}", random_suffix());
    let subject = json!([{"kind": "ServiceAccount", "name": "doctor-sa", "namespace": ns}]);
    let role_ref =
        |kind: &str, name: &str| json!({"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name});
    plane.apply(&json!({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": role_name}, "rules": rules},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": role_name}, "roleRef": role_ref("ClusterRole", &role_name), "subjects": subject},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
         "metadata": {"name": "leader-election", "namespace": ns},
         "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"],
                    "verbs": ["get", "create", "update", "patch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
         "metadata": {"name": "leader-election", "namespace": ns},
         "roleRef": role_ref("Role", "leader-election"), "subjects": subject},
    ]}));

    let args = [
        "--namespace",
        ns,
        "--service-account",
        "doctor-sa",
        "--webhook-certs",
        "external",
    ];
    let report = eventually("the RBAC is in effect", WAIT, || async {
        let report = doctor(&plane.kubeconfig(), &args).await;
        let line = report.line("rbac");
        if line.contains("leases") || line.contains("gitproviderconnections") {
            Err(report.stdout)
        } else {
            Ok(report)
        }
    })
    .await;
    assert_eq!(report.code, Some(1));
    assert_eq!(
        report.line("rbac"),
        format!(
            "FAIL rbac: ServiceAccount {ns}/doctor-sa may not patch events.events.k8s.io (cluster-wide); \
             fix: apply the chart's RBAC (helm upgrade, or kubectl apply -f deploy/rbac.yaml); ask again with \
             kubectl auth can-i patch events.events.k8s.io -A --as=system:serviceaccount:{ns}:doctor-sa"
        )
    );

    // Watching named namespaces, the permissions are asked there.
    let watched = [&args[..], &["--watch-namespace", ns]].concat();
    let report = doctor(&plane.kubeconfig(), &watched).await;
    report.assert_line("rbac", "FAIL", &format!("may not patch events.events.k8s.io in {ns};"));

    // The self-managed certificate needs more: its Secret and the webhook configuration.
    let args = ["--namespace", ns, "--service-account", "doctor-sa"];
    let report = doctor(&plane.kubeconfig(), &args).await;
    report.assert_line("rbac", "FAIL", &format!("create secrets in {ns}"));
    report.assert_line(
        "rbac",
        "FAIL",
        "patch validatingwebhookconfigurations.admissionregistration.k8s.io/gitprovider-operator",
    );
}

#[tokio::test]
async fn crd_missing_then_of_another_schema() {
    let plane = tokio::task::spawn_blocking(ControlPlane::private_bare)
        .await
        .expect("a control plane of its own");
    let report = doctor(&plane.kubeconfig(), &[]).await;
    assert_eq!(report.code, Some(1));
    report.assert_line(
        "crd",
        "FAIL",
        "CustomResourceDefinition gitproviderconnections.gitprovider.dev is not installed; \
         fix: gitprovider-operator crd | kubectl apply",
    );

    // An older CRD: one property fewer than this binary's.
    let mut crd = serde_json::to_value(GitProviderConnection::crd()).expect("JSON");
    let properties = &mut crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"];
    assert!(
        properties
            .as_object_mut()
            .expect("spec properties")
            .remove("suspend")
            .is_some(),
        "the CRD has spec.suspend"
    );
    let crd: CustomResourceDefinition = serde_json::from_value(crd).expect("a CRD");
    let client = support::control_plane::client_from(&plane.kubeconfig()).await;
    let api = Api::<CustomResourceDefinition>::all(client);
    api.create(&PostParams::default(), &crd).await.expect("create the CRD");
    let report = eventually("the CRD is Established", WAIT, || async {
        let report = doctor(&plane.kubeconfig(), &[]).await;
        if report.line("crd").contains("Established") {
            Err(report.stdout)
        } else {
            Ok(report)
        }
    })
    .await;
    assert_eq!(report.code, Some(1));
    report.assert_line(
        "crd",
        "FAIL",
        "with a schema other than this binary's (first difference at properties.spec.properties.suspend)",
    );
    report.assert_line("webhook-configuration", "FAIL", "not found");
}
