//! "Passes `check` ⇒ accepted at the door": a table of manifests, valid and invalid, each run
//! through `check -` (the real binary, reading standard input) and through the real
//! kube-apiserver (`kubectl apply --dry-run=server --validate=strict`, in a namespace no webhook
//! selects, so the API server's schema and CEL alone judge). Both must give the row's verdict.
//! The webhook's own rules are stricter than the CRD: the last rows are refused by `check` and,
//! without the webhook, accepted by the API server — `check` is never looser than the door.

mod support;

use std::process::Command;
use support::control_plane::{ControlPlane, run_with_stdin};

const HEAD: &str = "apiVersion: gitprovider.dev/v1alpha1\nkind: GitProviderConnection\n";
const META: &str = "metadata:\n  name: row\n";
const SPEC: &str = "spec:\n  provider: GitLab\n  instanceName: main\n  url: https://gitlab.example.com\n  \
                    tokenSecretRef:\n    name: pat\n";

/// A manifest: the usual head, metadata and spec, with `extra` lines appended under `spec:`
/// (when indented) or at the top level.
fn with(extra: &str) -> String {
    format!("{HEAD}{META}{SPEC}{extra}")
}

/// The spec with the line starting with `field:` replaced by `line` (empty: removed).
fn replace(field: &str, line: &str) -> String {
    let spec: Vec<String> = SPEC
        .lines()
        .filter_map(|l| {
            if l.trim_start().starts_with(&format!("{field}:")) {
                (!line.is_empty()).then(|| format!("  {line}"))
            } else {
                Some(l.to_owned())
            }
        })
        .collect();
    format!("{HEAD}{META}{}\n", spec.join("\n"))
}

#[test]
fn check_and_the_api_server_agree() {
    let long_name = "x".repeat(64);
    let many: String = (0..101).map(|i| format!("  - group/repo-{i}\n")).collect();
    let accepted: Vec<(&str, String)> = vec![
        ("minimal", with("")),
        (
            "every field",
            with(
                "  username: someone@example.com\n  verifyInterval: 1h30m\n  suspend: true\n  tls:\n    caBundleRef:\n      \
                 kind: Secret\n      name: corp-ca\n      key: ca.pem\n    insecureSkipVerify: false\n  repositories:\n  \
                 - group/project\n  - group/sub/project\n  tokenSecretRef:\n    name: pat\n    key: token\n",
            )
            .replace("  tokenSecretRef:\n    name: pat\n  username", "  username"),
        ),
        (
            "nulls count as absent",
            with("  username: null\n  tls: null\n  suspend: null\n  verifyInterval: null\n  repositories: null\n"),
        ),
        ("YAML 1.1 boolean", with("  suspend: yes\n")),
        ("spaces around the instance name", replace("instanceName", "instanceName: \" Dev 1 \"")),
        ("port and path", replace("url", "url: http://gitlab.internal:8080/gitlab/")),
        ("90s", with("  verifyInterval: 90s\n")),
        ("100 repositories", with(&format!("  repositories:\n{}", &many[..many.rfind("  -").unwrap_or(0)]))),
        (
            "metadata",
            format!(
                "{HEAD}metadata:\n  name: row.v-1\n  labels: {{app.kubernetes.io/name: x, empty: \"\", nulled: null}}\n  \
                 annotations: {{Example.com/Note: any text}}\n  creationTimestamp: null\n{SPEC}"
            ),
        ),
        (
            "server-set metadata",
            format!(
                "{HEAD}metadata:\n  name: row\n  resourceVersion: \"12\"\n  uid: x\n  generation: 5\n  \
                 finalizers: [example.com/f]\n{SPEC}"
            ),
        ),
        ("known status fields", with("status:\n  observedGeneration: 3\n  repositorySummary: 1/1\n")),
        ("status of the wrong type (dropped on create)", with("status:\n  observedGeneration: soon\n")),
        // kubectl keeps the last value (check warns)
        ("a key twice", with("  url: https://other.example.com\n")),
    ];
    let refused: Vec<(&str, String)> = vec![
        ("unknown field in spec", with("  verifyinterval: 10s\n")),
        (
            "unknown field deeper",
            with("  tls:\n    caBundleRef: {kind: Secret, name: ca, namespace: other}\n"),
        ),
        ("unknown top-level field", with("foo: 1\n")),
        (
            "unknown metadata field",
            format!("{HEAD}metadata:\n  name: row\n  nmespace: x\n{SPEC}"),
        ),
        ("unknown status field", with("status:\n  ready: true\n")),
        (
            "string for integer-free string field",
            replace("instanceName", "instanceName: 7"),
        ),
        ("quoted boolean", with("  suspend: \"true\"\n")),
        ("string for a list", with("  repositories: group/project\n")),
        (
            "string for an object",
            replace("tokenSecretRef", "tokenSecretRef: pat").replace("    name: pat\n", ""),
        ),
        (
            "labels as a string",
            format!("{HEAD}metadata:\n  name: row\n  labels: x\n{SPEC}"),
        ),
        ("number for a nullable string", with("  username: 5\n")),
        ("null inside a list", with("  repositories: [null]\n")),
        (
            "annotation value a number",
            format!("{HEAD}metadata:\n  name: row\n  annotations: {{a: 1}}\n{SPEC}"),
        ),
        (
            "YAML 1.1 boolean where a string is due",
            format!(
                "{HEAD}metadata:\n  name: row\n  ownerReferences: [{{apiVersion: v1, kind: X, name: y, uid: u}}]\n{SPEC}"
            ),
        ),
        ("provider outside the enum", replace("provider", "provider: Gitlab")),
        (
            "CA kind outside the enum",
            with("  tls:\n    caBundleRef: {kind: Configmap, name: ca}\n"),
        ),
        ("no spec", format!("{HEAD}{META}")),
        ("no url", replace("url", "")),
        ("instanceName null", replace("instanceName", "instanceName: null")),
        (
            "no Secret name",
            replace("tokenSecretRef", "tokenSecretRef: {key: token}").replace("    name: pat\n", ""),
        ),
        (
            "empty Secret name",
            replace("tokenSecretRef", "tokenSecretRef: {name: \"\"}").replace("    name: pat\n", ""),
        ),
        (
            "instanceName too long",
            replace("instanceName", &format!("instanceName: {long_name}")),
        ),
        ("101 repositories", with(&format!("  repositories:\n{many}"))),
        (
            "a repository twice",
            with("  repositories: [group/project, group/project]\n"),
        ),
        (
            "repository path without a slash",
            with("  repositories: [group-project]\n"),
        ),
        ("ftp URL", replace("url", "url: ftp://gitlab.example.com")),
        (
            "user info in the URL",
            replace("url", "url: https://me:pw@gitlab.example.com"),
        ),
        (
            "query in the URL",
            replace("url", "url: https://gitlab.example.com/?private_token=x"),
        ),
        (
            "fragment in the URL",
            replace("url", "url: https://gitlab.example.com/#x"),
        ),
        ("blank instanceName", replace("instanceName", "instanceName: \"  \"")),
        ("interval under 1m", with("  verifyInterval: 30s\n")),
        ("interval in days", with("  verifyInterval: 1d\n")),
        (
            "invalid metadata.name",
            format!("{HEAD}metadata:\n  name: Row_1\n{SPEC}"),
        ),
        (
            "invalid label key",
            format!("{HEAD}metadata:\n  name: row\n  labels: {{\"/k\": v}}\n{SPEC}"),
        ),
        ("unknown version of the group", with("").replace("v1alpha1", "v2")),
        (
            "unknown kind of the group",
            with("").replace("kind: GitProviderConnection", "kind: GitProviderConection"),
        ),
        ("not YAML", with("  tls: {caBundleRef: [\n")),
    ];
    // Refused by the operator's webhook only (and so by `check`); accepted by the API server
    // without the webhook.
    let webhook_only: Vec<(&str, String)> = vec![
        ("link-local URL", replace("url", "url: http://169.254.169.254")),
        (
            "invalid Secret name",
            replace("tokenSecretRef", "tokenSecretRef: {name: My_Secret}").replace("    name: pat\n", ""),
        ),
        ("GitHub path with three segments", {
            with("  repositories: [owner/repo/extra]\n").replace("provider: GitLab", "provider: GitHub")
        }),
    ];

    eprintln!(
        "{} rows: {} accepted, {} refused, {} refused by the webhook only",
        accepted.len() + refused.len() + webhook_only.len(),
        accepted.len(),
        refused.len(),
        webhook_only.len()
    );
    let plane = ControlPlane::shared();
    let ns = plane.namespace("check-agrees");
    let mut disagreements = Vec::new();
    let rows = accepted
        .iter()
        .map(|(name, yaml)| (*name, yaml, true, true))
        .chain(refused.iter().map(|(name, yaml)| (*name, yaml, false, false)))
        .chain(webhook_only.iter().map(|(name, yaml)| (*name, yaml, false, true)));
    for (name, yaml, check_accepts, server_accepts) in rows {
        let (checked, check_output) = run_with_stdin(
            Command::new(env!("CARGO_BIN_EXE_gitprovider-operator")).args(["check", "-"]),
            yaml,
        );
        let (applied, server_output) = run_with_stdin(
            plane
                .kubectl()
                .args(["apply", "--dry-run=server", "--validate=strict", "-n", &ns, "-f", "-"]),
            yaml,
        );
        if checked != check_accepts || applied != server_accepts {
            disagreements.push(format!(
                "{name}: check {} (want {}), API server {} (want {})\n{yaml}--- check:\n{check_output}--- kubectl:\n{server_output}",
                verdict(checked),
                verdict(check_accepts),
                verdict(applied),
                verdict(server_accepts)
            ));
        }
    }
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n\n"));
}

fn verdict(accepted: bool) -> &'static str {
    if accepted { "accepts" } else { "refuses" }
}
