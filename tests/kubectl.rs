//! What users see through the real kubectl against a real kube-apiserver: the CRD Established
//! and its CEL rules enforced by the API server itself, `kubectl explain`, the printer columns
//! of the contract, `kubectl wait`, the examples applied server-side (and the invalid ones
//! refused), and the chart's RBAC as the real authorizer judges it.

mod support;

#[path = "e2e/harness.rs"]
mod harness;

use gitprovider_operator::api::GitProviderConnection;
use harness::{Cluster, TOKEN, api_error};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::PostParams;
use serde_json::{Value, json};
use std::path::Path;
use std::process::Stdio;
use support::control_plane::{ControlPlane, ROOT, SYSTEM_NAMESPACE, run_with_stdin};

fn connection(ns: &str, name: &str, spec: Value) -> GitProviderConnection {
    serde_json::from_value(json!({
        "apiVersion": "gitprovider.dev/v1alpha1",
        "kind": "GitProviderConnection",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec,
    }))
    .expect("a connection")
}

fn base_spec() -> Value {
    json!({
        "provider": "AzureDevOps",
        "instanceName": "dev1",
        "url": "https://dev1.azure.example.com/DefaultCollection",
        "tokenSecretRef": {"name": "azure-dev1-pat"}
    })
}

fn with(field: &str, value: Value) -> Value {
    let mut spec = base_spec();
    spec[field] = value;
    spec
}

/// The CRD is Established, and kube-apiserver itself (no webhook selects this namespace)
/// accepts what the CRD allows and refuses what its schema and CEL rules forbid, with the
/// messages the README lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_enforces_the_crd() {
    let plane = ControlPlane::shared();
    let client = plane.client().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds
        .get("gitproviderconnections.gitprovider.dev")
        .await
        .expect("the CRD");
    let established = crd
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default()
        .into_iter()
        .any(|c| c.type_ == "Established" && c.status == "True");
    assert!(established, "the CRD is Established");

    let ns = plane.namespace("crd");
    let api: Api<GitProviderConnection> = Api::namespaced(client, &ns);
    let dry_run = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let accepted = [
        base_spec(),
        with("url", json!("http://gitlab.internal:8080/")),
        with("url", json!("https://dev.azure.com/ORG")),
        with("verifyInterval", json!("1m")),
        with("verifyInterval", json!("1h30m")),
        with("verifyInterval", json!("90s")),
        with("instanceName", json!(" Dev 1 ")),
    ];
    for (i, spec) in accepted.into_iter().enumerate() {
        let created = api
            .create(&dry_run, &connection(&ns, &format!("ok-{i}"), spec.clone()))
            .await
            .unwrap_or_else(|e| panic!("{spec} must be accepted: {e}"));
        // Defaults are applied by the API server.
        let spec = created.spec;
        assert_eq!(spec.token_secret_ref.key, "token");
    }

    let refused = [
        (
            "url",
            json!("ftp://example.com"),
            "url must be an absolute http:// or https:// URL with a host",
        ),
        (
            "url",
            json!("example.com/gitlab"),
            "url must be an absolute http:// or https:// URL with a host",
        ),
        (
            "url",
            json!("https://user:pw@example.com"),
            "url must not contain user info",
        ),
        (
            "url",
            json!("https://example.com/?private_token=x"),
            "url must not contain a query",
        ),
        (
            "url",
            json!("https://example.com/#frag"),
            "url must not contain a fragment",
        ),
        ("instanceName", json!("   "), "instanceName must not be blank"),
        ("instanceName", json!("x".repeat(64)), "Too long"),
        ("verifyInterval", json!("30s"), "at least 1m"),
        ("verifyInterval", json!("1d"), "verifyInterval must be a duration"),
        ("verifyInterval", json!("soon"), "verifyInterval must be a duration"),
    ];
    for (i, (field, value, expected)) in refused.into_iter().enumerate() {
        let status = api_error(
            api.create(
                &dry_run,
                &connection(&ns, &format!("bad-{i}"), with(field, value.clone())),
            )
            .await,
        );
        assert_eq!(status.code, 422, "{field}={value}: {status:?}");
        assert!(
            status.message.contains(expected),
            "{field}={value}: expected {expected:?} in {:?}",
            status.message
        );
        assert!(status.message.contains(&format!("spec.{field}")), "{}", status.message);
    }
    // What the typed client cannot even send: an unknown provider, and an unknown field
    // (refused by strict field validation).
    let raw = |field: &str, value: Value| {
        let mut body = serde_json::to_value(connection(&ns, "raw", base_spec())).expect("JSON");
        body["spec"][field] = value;
        run_with_stdin(
            plane
                .kubectl()
                .args(["create", "--dry-run=server", "--validate=strict", "-f", "-"]),
            &body.to_string(),
        )
    };
    let (ok, output) = raw("provider", json!("Perforce"));
    assert!(
        !ok && output.contains("spec.provider: Unsupported value: \"Perforce\""),
        "{output}"
    );
    let (ok, output) = raw("verifyinterval", json!("10s"));
    assert!(
        !ok && output.contains("unknown field \"spec.verifyinterval\""),
        "{output}"
    );
}

/// `kubectl explain` shows every field's description, from the CRD's published schema.
#[test]
fn kubectl_explain_describes_every_field() {
    let plane = ControlPlane::shared();
    let spec = plane.kubectl_ok(&["explain", "gpc.spec"]);
    assert!(
        spec.contains("KIND:") && spec.contains("GitProviderConnection"),
        "{spec}"
    );
    let crd: Value = serde_saphyr::from_str(
        &std::fs::read_to_string(Path::new(ROOT).join("crds/gitproviderconnections.yaml")).expect("the CRD"),
    )
    .expect("YAML");
    let properties = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
        .as_object()
        .expect("spec properties");
    for (name, schema) in properties {
        assert!(
            spec.contains(name.as_str()),
            "`kubectl explain gpc.spec` lists {name}:\n{spec}"
        );
        let description = schema["description"].as_str().expect("a description");
        let first_words: String = description.split_whitespace().take(4).collect::<Vec<_>>().join(" ");
        let flat: String = spec.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(flat.contains(&first_words), "{name}: {first_words:?} not in:\n{spec}");
    }
    let reference = plane.kubectl_ok(&["explain", "gpc.spec.tokenSecretRef.key"]);
    assert!(reference.contains("token"), "{reference}");
}

/// `kubectl apply` shows the webhook's warnings; `kubectl wait --for=condition=Ready` returns
/// once the operator verified the connection; `kubectl get gpc -A` prints exactly the
/// contract's columns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_get_and_wait() {
    let c = Cluster::start().await;
    let op = c.operator("gpo-0").await;
    op.wait_ready().await;
    c.install_webhook(&op.webhook_url(), "Fail").await;
    c.put_secret(&c.ns, "gitlab-pat", TOKEN).await;
    let plane = c.plane();
    // Created with kubectl: the webhook's warning about http:// reaches the user.
    let manifest =
        serde_json::to_string(&c.connection(&c.ns, "gitlab-main", "main", "gitlab-pat", json!({}))).expect("JSON");
    let (ok, output) = run_with_stdin(plane.kubectl().args(["apply", "-f", "-"]), &manifest);
    assert!(ok, "kubectl apply: {output}");
    assert!(
        output.contains("Warning: spec.url uses http://"),
        "the webhook's warning is shown by kubectl: {output}"
    );
    // Started before the connection is Ready: it must wait for the operator, not fail.
    let wait = tokio::task::spawn_blocking({
        let mut command = plane.kubectl();
        command.args([
            "wait",
            "--for=condition=Ready",
            "--timeout=60s",
            "-n",
            &c.ns,
            "gpc/gitlab-main",
        ]);
        move || command.output().expect("kubectl wait runs")
    });
    let output = wait.await.expect("kubectl wait");
    assert!(
        output.status.success(),
        "kubectl wait: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("condition met"));

    let table = plane.kubectl_ok(&["get", "gpc", "-A"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().expect("a header").split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAMESPACE",
            "NAME",
            "PROVIDER",
            "INSTANCE",
            "URL",
            "READY",
            "REASON",
            "USER",
            "EXPIRES",
            "AGE"
        ]
    );
    let row: Vec<&str> = lines
        .find(|l| l.starts_with(&format!("{} ", c.ns)))
        .expect("the test's connection is listed")
        .split_whitespace()
        .collect();
    let url = c.gitlab.url().as_str().to_owned();
    assert_eq!(
        row[..9],
        [
            c.ns.as_str(),
            "gitlab-main",
            "GitLab",
            "main",
            url.as_str(),
            "True",
            "Verified",
            "jdoe",
            "2099-01-31T00:00:00Z"
        ]
    );
    // The short names of the contract.
    let short = plane.kubectl_ok(&["get", "gitconn", "-n", &c.ns, "-o", "name"]);
    assert_eq!(short.trim(), "gitproviderconnection.gitprovider.dev/gitlab-main");
}

/// Stops a `scripts/quickstart` world when dropped.
struct Quickstart {
    dir: std::path::PathBuf,
}

impl Drop for Quickstart {
    fn drop(&mut self) {
        let _ = std::process::Command::new(Path::new(ROOT).join("scripts/quickstart"))
            .args(["down", "--dir", &self.dir.display().to_string()])
            .status();
    }
}

/// The README's quick start, as written: `scripts/quickstart up` gives a working operator
/// (this test's binary) with its webhook on a real control plane; the examples are accepted by
/// `kubectl apply --server-side`, and `examples-invalid/` is refused: the URL with a
/// credential by the CRD's CEL rule, the duplicate by the webhook naming the holder.
/// `kubectl get gpc -A` then shows what the README shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_and_the_examples() {
    let dir = Path::new(ROOT).join(format!(
        "target/control-planes/quickstart-{}",
        support::control_plane::random_suffix()
    ));
    let quickstart = Quickstart { dir: dir.clone() };
    let output = std::process::Command::new(Path::new(ROOT).join("scripts/quickstart"))
        .args(["up", "--dir", &dir.display().to_string()])
        .env("GPO_BIN", env!("CARGO_BIN_EXE_gitprovider-operator"))
        .stdin(Stdio::null())
        .output()
        .expect("scripts/quickstart runs");
    let printed = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "scripts/quickstart up: {}\n{printed}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        printed.contains(&format!("export KUBECONFIG={}/kubeconfig", dir.display())),
        "{printed}"
    );
    let plane = ControlPlane::open_existing(&dir);
    for ns in ["team-a", "team-b"] {
        plane.kubectl_ok(&["create", "namespace", ns]);
    }

    let examples = Path::new(ROOT).join("examples");
    let applied = plane.kubectl_ok(&["apply", "--server-side", "-f", &examples.display().to_string()]);
    assert!(
        applied.contains("gitproviderconnection.gitprovider.dev/gitlab-dev1 serverside-applied"),
        "{applied}"
    );

    let invalid = Path::new(ROOT).join("examples-invalid");
    let output = plane
        .kubectl()
        .args(["apply", "--server-side", "-f", &invalid.display().to_string()])
        .output()
        .expect("kubectl runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "examples-invalid is refused:\n{text}");
    assert!(
        text.contains("url must not contain user info"),
        "CEL refused the credential:\n{text}"
    );
    assert!(
        text.contains("denied the request") && text.contains("team-b/gitlab-staging"),
        "the webhook refused the duplicate naming the holder:\n{text}"
    );

    // Every example connection gets a status from the operator: their hosts do not resolve
    // here (Unreachable), and the three that use a placeholder CA bundle are InvalidSpec. The
    // first object of examples-invalid/duplicate.yaml was admitted before its duplicate.
    let expected = [
        ("team-a", "azure-dev1", "Unreachable"),
        ("team-a", "azure-dev2", "InvalidSpec"),
        ("team-a", "azure-services", "Unreachable"),
        ("team-a", "bitbucket-cloud", "Unreachable"),
        ("team-a", "bitbucket-dev", "Unreachable"),
        ("team-a", "bitbucket-prod", "Unreachable"),
        ("team-a", "forgejo", "Unreachable"),
        ("team-a", "gitea", "Unreachable"),
        ("team-a", "github", "Unreachable"),
        ("team-a", "gitlab-dev1", "InvalidSpec"),
        ("team-a", "gitlab-lab", "InvalidSpec"),
        ("team-a", "gitlab-prod", "Unreachable"),
        ("team-b", "gitlab-staging", "Unreachable"),
    ];
    let table = harness::eventually("every example has its Ready reason", harness::WAIT, || async {
        let table = plane.kubectl_ok(&["get", "gpc", "-A"]);
        let rows: Vec<(String, String, String)> = table
            .lines()
            .skip(1)
            .map(|l| {
                let cells: Vec<&str> = l.split_whitespace().collect();
                (cells[0].to_owned(), cells[1].to_owned(), cells[6].to_owned())
            })
            .collect();
        let want: Vec<(String, String, String)> = expected
            .iter()
            .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
            .collect();
        if rows == want { Ok(table) } else { Err(table) }
    })
    .await;
    eprintln!("kubectl get gpc -A after applying examples/:\n{table}");
    assert!(table.starts_with("NAMESPACE"), "{table}");

    // The README's way to store a token: from a prompt through stdin, never on a command line
    // (shell history, `ps`). Its pipeline, as written, with the token where the prompt puts it.
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).expect("README");
    let pipeline =
        r#"printf '%s' "$TOKEN" | kubectl -n team-a create secret generic gitlab-pat --from-file=token=/dev/stdin"#;
    assert!(
        readme.contains("read -rsp 'Token: ' TOKEN"),
        "the README prompts for the token"
    );
    assert!(readme.contains(pipeline), "the README stores it with: {pipeline}");
    assert!(!readme.contains("--from-literal=token="), "no token on a command line");
    let kubectl_path = plane.kubectl_path();
    let path = format!(
        "{}:{}",
        kubectl_path.parent().expect("kubectl's folder").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut bash = std::process::Command::new("bash");
    bash.args(["-euo", "pipefail", "-c", pipeline])
        .env("TOKEN", "glpat-from-a-prompt")
        .env("PATH", path)
        .env("KUBECONFIG", plane.kubeconfig());
    for proxy in support::control_plane::PROXY_VARIABLES {
        bash.env_remove(proxy);
    }
    let output = bash.output().expect("bash runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let stored = plane.kubectl_ok(&[
        "-n",
        "team-a",
        "get",
        "secret",
        "gitlab-pat",
        "-o",
        "jsonpath={.data.token}",
    ]);
    assert_eq!(
        stored.trim(),
        "Z2xwYXQtZnJvbS1hLXByb21wdA==",
        "exactly the token, no newline"
    );
    drop(quickstart);
    assert!(!dir.exists(), "scripts/quickstart down removed {}", dir.display());
}

/// The chart's RBAC under the real authorizer: what the operator needs, and no more.
#[test]
fn chart_rbac_is_least_privilege() {
    let plane = ControlPlane::shared();
    let user = plane.operator_user();
    let ns = plane.namespace("rbac");
    let can = |args: &[&str]| -> bool {
        let output = plane
            .kubectl()
            .args(["auth", "can-i"])
            .args(args)
            .args(["--as", &user])
            .output()
            .expect("kubectl runs");
        String::from_utf8_lossy(&output.stdout).trim() == "yes"
    };
    let allowed: &[&[&str]] = &[
        &["list", "gitproviderconnections.gitprovider.dev", "-A"],
        &["watch", "gitproviderconnections.gitprovider.dev", "-A"],
        &[
            "patch",
            "gitproviderconnections.gitprovider.dev",
            "--subresource=status",
            "-n",
            &ns,
        ],
        &["get", "secrets", "-n", &ns],
        &["watch", "configmaps", "-A"],
        &["create", "events.events.k8s.io", "-n", &ns],
        &["update", "leases.coordination.k8s.io", "-n", SYSTEM_NAMESPACE],
        &[
            "update",
            "secrets/gitprovider-operator-webhook-tls",
            "-n",
            SYSTEM_NAMESPACE,
        ],
        &["patch", "validatingwebhookconfigurations/gitprovider-operator"],
    ];
    for args in allowed {
        assert!(can(args), "the operator may {args:?}");
    }
    let denied: &[&[&str]] = &[
        &["create", "secrets", "-n", &ns],
        &["update", "secrets", "-n", &ns],
        &["delete", "secrets", "-n", &ns],
        &["update", "secrets/other", "-n", SYSTEM_NAMESPACE],
        &[
            "delete",
            "secrets/gitprovider-operator-webhook-tls",
            "-n",
            SYSTEM_NAMESPACE,
        ],
        &["get", "pods", "-n", &ns],
        &["list", "pods", "-A"],
        &["create", "gitproviderconnections.gitprovider.dev", "-n", &ns],
        &["delete", "gitproviderconnections.gitprovider.dev", "-n", &ns],
        &["update", "configmaps", "-n", &ns],
        &["update", "leases.coordination.k8s.io", "-n", &ns],
        &["patch", "validatingwebhookconfigurations/other"],
        &["create", "validatingwebhookconfigurations"],
    ];
    for args in denied {
        assert!(!can(args), "the operator must not {args:?}");
    }

    // RBAC cannot limit `create` by name, so it allows creating any Secret in the release
    // namespace; the chart's ValidatingAdmissionPolicy refuses all but the certificate Secret.
    assert!(can(&["create", "secrets", "-n", SYSTEM_NAMESPACE]));
    let create_as_operator = |name: &str| {
        let output = plane
            .kubectl()
            .args([
                "create",
                "secret",
                "generic",
                name,
                "-n",
                SYSTEM_NAMESPACE,
                "--dry-run=server",
            ])
            .args(["--from-literal=k=v", "--as", &user])
            .output()
            .expect("kubectl runs");
        (output.status.success(), text_of(&output))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let refused = loop {
        // The policy is enforced once kube-apiserver has loaded it, a moment after it is applied.
        let (ok, text) = create_as_operator("not-the-certificate");
        if !ok || std::time::Instant::now() > deadline {
            break (ok, text);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert!(!refused.0, "another Secret was created: {}", refused.1);
    assert!(
        refused.1.contains("the operator may create only its webhook certificate Secret gitprovider-system/gitprovider-operator-webhook-tls"),
        "{}",
        refused.1
    );
    let (_, text) = create_as_operator("gitprovider-operator-webhook-tls");
    assert!(
        !text.contains("may create only"),
        "the certificate Secret may be created: {text}"
    );
}

fn text_of(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
