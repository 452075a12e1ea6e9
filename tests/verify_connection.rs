//! `verify --connection NS/NAME` through the built binary, on the real control plane: the
//! connection's spec and Secret read with the given kubeconfig, verified against a local GitLab as
//! the operator would, and clear errors for a missing connection, missing access and a missing
//! key — the token never in any output.

mod support;

use support::verifying::ready_of as ready;

use serde_json::Value;
use std::path::Path;
use std::process::Output;
use support::control_plane::{ControlPlane, binary};
use support::fake_providers::TokenSpec;
use support::fake_providers::gitlab::FakeGitLab;

const TOKEN: &str = "glpat-s3cr3t-verify-connection";

async fn verify(kubeconfig: &Path, reference: &str) -> Output {
    let mut command = binary(&["verify", "--connection", reference], kubeconfig);
    let output = tokio::task::spawn_blocking(move || command.output().expect("run the binary"))
        .await
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!all.contains(TOKEN), "the token leaked:\n{all}");
    output
}

fn connection(namespace: &str, name: &str, url: &str, secret: &str) -> Value {
    serde_json::json!({
        "apiVersion": "gitprovider.dev/v1alpha1", "kind": "GitProviderConnection",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"provider": "GitLab", "instanceName": name, "url": url,
                 "tokenSecretRef": {"name": secret, "key": "token"}}
    })
}

fn secret(namespace: &str, name: &str, key: &str, value: &str) -> Value {
    serde_json::json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "stringData": {key: value}
    })
}

#[tokio::test]
async fn a_connection_in_the_cluster_is_verified_with_the_users_kubeconfig() {
    let plane = ControlPlane::shared();
    let gitlab = FakeGitLab::start().await;
    gitlab.add_token(TOKEN, TokenSpec::user("jdoe").scopes(["read_api"]));
    let ns = plane.namespace("verify-conn");
    let url = gitlab.url().as_str().trim_end_matches('/').to_owned();
    plane.apply(&secret(&ns, "pat", "token", TOKEN));
    plane.apply(&connection(&ns, "gitlab", &url, "pat"));
    plane.apply(&secret(&ns, "wrong-key", "pat", TOKEN));
    plane.apply(&connection(&ns, "no-key", &url, "wrong-key"));
    let admin = plane.kubeconfig();

    let output = verify(&admin, &format!("{ns}/gitlab")).await;
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let status: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(ready(&output).0, "Verified");
    assert_eq!(status["authenticatedUser"]["username"], "jdoe");
    assert_eq!(status["observedGeneration"], 1);

    // A missing key is what the operator would report: a status, exit 1, naming the key.
    let output = verify(&admin, &format!("{ns}/no-key")).await;
    assert_eq!(output.status.code(), Some(1));
    let (reason, message) = ready(&output);
    assert_eq!(reason, "SecretKeyNotFound", "{message}");
    assert!(message.contains("\"token\""), "{message}");

    // Not found, and a malformed reference: usage errors.
    let output = verify(&admin, &format!("{ns}/absent")).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("GitProviderConnection {ns}/absent not found")),
        "{stderr}"
    );
    let output = verify(&admin, "no-slash").await;
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("use NAMESPACE/NAME"));

    // A user who may read the connection but not its Secret is told so (not the operator).
    plane.kubectl_ok(&["create", "serviceaccount", "reader", "-n", &ns]);
    let reader = plane.service_account_kubeconfig(&ns, "reader");
    let output = verify(&reader, &format!("{ns}/gitlab")).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("forbidden") && stderr.contains("gitproviderconnections"),
        "{stderr}"
    );
    plane.kubectl_ok(&[
        "create",
        "role",
        "gpc-reader",
        "-n",
        &ns,
        "--verb=get",
        "--resource=gitproviderconnections.gitprovider.dev",
    ]);
    plane.kubectl_ok(&[
        "create",
        "rolebinding",
        "gpc-reader",
        "-n",
        &ns,
        "--role=gpc-reader",
        &format!("--serviceaccount={ns}:reader"),
    ]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let stderr = loop {
        let output = verify(&reader, &format!("{ns}/gitlab")).await;
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        if stderr.contains("secrets") || std::time::Instant::now() > deadline {
            break stderr;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(
        stderr.contains(&format!("cannot get secrets {ns}/pat")) && stderr.contains("auth can-i get secrets"),
        "{stderr}"
    );
}
