//! The CRD: `gitprovider-operator crd` equals the committed file, and what it declares
//! (names, printer columns, defaults, descriptions) is what the contract asks for. Its CEL
//! rules are enforced by a real kube-apiserver in `tests/kubectl.rs`.

use gitprovider_operator::api::GitProviderConnection;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::{Value, json};
use std::process::Command;

const CRD_FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/crds/gitproviderconnections.yaml");

#[test]
fn crd_subcommand_matches_committed_file() {
    let output = Command::new(env!("CARGO_BIN_EXE_gitprovider-operator"))
        .arg("crd")
        .output()
        .expect("run the binary");
    assert!(output.status.success());
    let committed = std::fs::read(CRD_FILE).expect("crds/gitproviderconnections.yaml exists");
    assert!(
        output.stdout == committed,
        "crds/gitproviderconnections.yaml is stale: regenerate it with `cargo run -- crd > crds/gitproviderconnections.yaml`"
    );
}

fn committed_crd() -> CustomResourceDefinition {
    let text = std::fs::read_to_string(CRD_FILE).unwrap();
    serde_saphyr::from_str(&text).expect("the committed CRD parses")
}

#[test]
fn names_scope_and_subresources() {
    let crd = committed_crd();
    assert_eq!(
        crd.metadata.name.as_deref(),
        Some("gitproviderconnections.gitprovider.dev")
    );
    assert_eq!(crd.spec.group, "gitprovider.dev");
    assert_eq!(crd.spec.scope, "Namespaced");
    assert_eq!(crd.spec.names.kind, "GitProviderConnection");
    assert_eq!(crd.spec.names.plural, "gitproviderconnections");
    assert_eq!(crd.spec.names.singular.as_deref(), Some("gitproviderconnection"));
    assert_eq!(
        crd.spec.names.short_names,
        Some(vec!["gpc".to_owned(), "gitconn".to_owned()])
    );
    let version = &crd.spec.versions[0];
    assert_eq!(version.name, "v1alpha1");
    assert!(version.served && version.storage);
    assert!(version.subresources.as_ref().and_then(|s| s.status.as_ref()).is_some());
}

#[test]
fn printer_columns() {
    let crd = committed_crd();
    let columns: Vec<(String, String)> = crd.spec.versions[0]
        .additional_printer_columns
        .clone()
        .unwrap()
        .into_iter()
        .filter(|c| c.priority.unwrap_or(0) == 0)
        .map(|c| (c.name.to_uppercase(), c.json_path))
        .collect();
    let expected = [
        ("PROVIDER", ".spec.provider"),
        ("INSTANCE", ".spec.instanceName"),
        ("URL", ".spec.url"),
        ("READY", ".status.conditions[?(@.type==\"Ready\")].status"),
        ("REASON", ".status.conditions[?(@.type==\"Ready\")].reason"),
        ("USER", ".status.authenticatedUser.username"),
        ("EXPIRES", ".status.tokenExpiresAt"),
        ("AGE", ".metadata.creationTimestamp"),
    ];
    let expected: Vec<(String, String)> = expected.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
    assert_eq!(columns, expected, "the columns of `kubectl get gpc`");
    // `-o wide` adds how many listed repositories are readable.
    let wide: Vec<(String, String, Option<i32>)> = crd.spec.versions[0]
        .additional_printer_columns
        .clone()
        .unwrap()
        .into_iter()
        .filter(|c| c.priority.unwrap_or(0) > 0)
        .map(|c| (c.name.to_uppercase(), c.json_path, c.priority))
        .collect();
    assert_eq!(
        wide,
        [(
            "REPOSITORIES".to_owned(),
            ".status.repositorySummary".to_owned(),
            Some(1)
        )]
    );
}

fn schema() -> Value {
    let crd = GitProviderConnection::crd();
    serde_json::to_value(
        crd.spec.versions[0]
            .schema
            .as_ref()
            .unwrap()
            .open_api_v3_schema
            .as_ref()
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn defaults_and_required_fields() {
    let schema = schema();
    let spec = &schema["properties"]["spec"];
    assert_eq!(
        spec["properties"]["tokenSecretRef"]["properties"]["key"]["default"],
        "token"
    );
    assert_eq!(spec["properties"]["verifyInterval"]["default"], "1h");
    assert_eq!(spec["properties"]["suspend"]["default"], false);
    let required: Vec<&str> = spec["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for field in ["provider", "instanceName", "url", "tokenSecretRef"] {
        assert!(required.contains(&field), "{field} is required");
    }
    let providers: Vec<&str> = spec["properties"]["provider"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(providers, ["GitLab", "Bitbucket", "AzureDevOps", "GitHub", "Gitea"]);
    assert_eq!(spec["properties"]["instanceName"]["maxLength"], 63);
    let kinds = &spec["properties"]["tls"]["properties"]["caBundleRef"]["properties"]["kind"]["enum"];
    assert_eq!(kinds, &json!(["ConfigMap", "Secret"]));
    // every field documented, for `kubectl explain`
    fn assert_described(path: &str, node: &Value) {
        if let Some(props) = node.get("properties").and_then(Value::as_object) {
            for (name, child) in props {
                let child_path = format!("{path}.{name}");
                assert!(child.get("description").is_some(), "{child_path} has no description");
                assert_described(&child_path, child);
            }
        }
    }
    assert_described("spec", spec);
}
