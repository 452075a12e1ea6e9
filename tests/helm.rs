//! The chart through the real helm v4 CLI into a real kube-apiserver of the test's own: install
//! with default values and with `replicaCount=2`, upgrade, uninstall (the CRD stays), and the
//! values schema refusing bad values. No kubelet runs, so nothing waits for Pods (`--wait` is
//! never used); what is checked is what the API server stored.

mod support;

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use support::control_plane::{ControlPlane, ROOT, helm};

const RELEASE: &str = "gitprovider-operator";
const NAMESPACE: &str = "gitprovider-system";

struct Helm<'a> {
    plane: &'a ControlPlane,
    binary: std::path::PathBuf,
}

impl Helm<'_> {
    fn command(&self, args: &[&str]) -> Output {
        let mut command = Command::new(&self.binary);
        command
            .args(args)
            .env("KUBECONFIG", self.plane.kubeconfig())
            // Helm keeps caches and repositories under these: keep them inside the control plane's folder.
            .env("HELM_CACHE_HOME", self.plane.dir().join("helm/cache"))
            .env("HELM_CONFIG_HOME", self.plane.dir().join("helm/config"))
            .env("HELM_DATA_HOME", self.plane.dir().join("helm/data"))
            .stdin(Stdio::null());
        command.output().expect("helm runs")
    }

    fn ok(&self, args: &[&str]) -> String {
        let output = self.command(args);
        let text = text(&output);
        assert!(
            output.status.success(),
            "helm {}: {}\n{text}",
            args.join(" "),
            output.status
        );
        text
    }

    fn fails(&self, args: &[&str]) -> String {
        let output = self.command(args);
        let text = text(&output);
        assert!(!output.status.success(), "helm {} must fail:\n{text}", args.join(" "));
        text
    }
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn chart() -> String {
    Path::new(ROOT)
        .join("charts/gitprovider-operator")
        .display()
        .to_string()
}

/// `kubectl get KIND [NAME] -o json` (in the release namespace unless `cluster`), or `None`
/// when it does not exist.
fn get(plane: &ControlPlane, kind: &str, name: &str, cluster: bool) -> Option<Value> {
    let mut command = plane.kubectl();
    command.args(["get", kind, name, "-o", "json"]);
    if !cluster {
        command.args(["-n", NAMESPACE]);
    }
    let output = command.output().expect("kubectl runs");
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("NotFound"), "kubectl get {kind} {name}: {stderr}");
        return None;
    }
    Some(serde_json::from_slice(&output.stdout).expect("JSON"))
}

/// The objects a default install creates, by kind and name.
const RELEASE_OBJECTS: &[(&str, &str, bool)] = &[
    ("serviceaccount", "gitprovider-operator", false),
    ("deployment", "gitprovider-operator", false),
    ("service", "gitprovider-operator-webhook", false),
    ("service", "gitprovider-operator-metrics", false),
    ("clusterrole", "gitprovider-operator", true),
    ("clusterrolebinding", "gitprovider-operator", true),
    ("role", "gitprovider-operator-leader-election", false),
    ("rolebinding", "gitprovider-operator-leader-election", false),
    ("validatingwebhookconfiguration", "gitprovider-operator", true),
    ("validatingadmissionpolicy", "gitprovider-operator-webhook-cert", true),
    (
        "validatingadmissionpolicybinding",
        "gitprovider-operator-webhook-cert",
        true,
    ),
];

/// One control plane for the whole life of a release (a start costs seconds).
#[test]
fn install_upgrade_uninstall() {
    let plane = ControlPlane::private_bare();
    let helm = Helm {
        plane: &plane,
        binary: helm(),
    };
    let version = helm.ok(&["version", "--short"]);
    assert!(version.starts_with("v4."), "helm v4: {version}");
    the_values_schema_refuses_bad_values(&helm);

    let installed = helm.ok(&[
        "install",
        RELEASE,
        &chart(),
        "--namespace",
        NAMESPACE,
        "--create-namespace",
    ]);
    assert!(installed.contains("STATUS: deployed"), "{installed}");
    // The CRD comes from the chart's crds/ folder and is Established.
    plane.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/gitproviderconnections.gitprovider.dev",
    ]);
    for (kind, name, cluster) in RELEASE_OBJECTS {
        assert!(get(&plane, kind, name, *cluster).is_some(), "{kind}/{name} was created");
    }
    let deployment = get(&plane, "deployment", RELEASE, false).expect("the Deployment");
    assert_eq!(deployment["spec"]["replicas"], 1);
    assert!(
        get(&plane, "poddisruptionbudget", RELEASE, false).is_none(),
        "one replica: no PodDisruptionBudget"
    );
    let webhook = get(&plane, "validatingwebhookconfiguration", RELEASE, true).expect("the webhook");
    assert_eq!(
        webhook["webhooks"][0]["clientConfig"]["service"]["name"],
        "gitprovider-operator-webhook"
    );

    // Upgrade to two replicas: a PodDisruptionBudget appears.
    let upgraded = helm.ok(&[
        "upgrade",
        RELEASE,
        &chart(),
        "--namespace",
        NAMESPACE,
        "--set",
        "replicaCount=2",
    ]);
    assert!(upgraded.contains("REVISION: 2"), "{upgraded}");
    let deployment = get(&plane, "deployment", RELEASE, false).expect("the Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    assert!(
        get(&plane, "poddisruptionbudget", RELEASE, false).is_some(),
        "a PodDisruptionBudget"
    );

    // Uninstall: the release's objects go, the CRD stays.
    helm.ok(&["uninstall", RELEASE, "--namespace", NAMESPACE]);
    for (kind, name, cluster) in RELEASE_OBJECTS {
        assert!(get(&plane, kind, name, *cluster).is_none(), "{kind}/{name} was removed");
    }
    assert!(
        get(&plane, "crd", "gitproviderconnections.gitprovider.dev", true).is_some(),
        "the CRD stays"
    );

    // A fresh install with two replicas (the CRD is already there: helm leaves it alone).
    helm.ok(&[
        "install",
        RELEASE,
        &chart(),
        "--namespace",
        NAMESPACE,
        "--set",
        "replicaCount=2",
    ]);
    let deployment = get(&plane, "deployment", RELEASE, false).expect("the Deployment");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let args = deployment["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(args.contains("--leader-elect"), "{args}");
    assert!(get(&plane, "poddisruptionbudget", RELEASE, false).is_some());
    helm.ok(&["uninstall", RELEASE, "--namespace", NAMESPACE]);
}

/// The values schema refuses bad values through the CLI, before anything is created.
fn the_values_schema_refuses_bad_values(helm: &Helm) {
    for (value, expected) in [
        ("replicaCount=0", "replicaCount"),
        ("webhook.timeoutSeconds=30", "timeoutSeconds"),
        ("uniquenessScope=galaxy", "uniquenessScope"),
        ("image.tag=latest", "tag"),
    ] {
        let refused = helm.fails(&[
            "install",
            RELEASE,
            &chart(),
            "--namespace",
            NAMESPACE,
            "--create-namespace",
            "--set",
            value,
        ]);
        assert!(
            refused.contains("values don't meet the specifications of the schema"),
            "{value}: {refused}"
        );
        assert!(refused.contains(expected), "{value}: {refused}");
    }
    let listed = helm.ok(&["list", "--all-namespaces", "-q"]);
    assert_eq!(listed.trim(), "", "nothing was installed");
}
