//! End to end: the real `gitprovider-operator run` binary as a child process, against a real
//! kube-apiserver and etcd on loopback (`tests/support/control_plane`) and a local GitLab
//! (`tests/support/fake_providers`), with the admission webhook wired in through a
//! ValidatingWebhookConfiguration kube-apiserver calls over HTTPS. The operator runs with the
//! chart's ServiceAccount and RBAC, not as admin: a `forbidden` in its log fails the test.
//!
//! Each test has namespaces, a GitLab and operator process(es) of its own, so they run in
//! parallel on the run's shared control plane; a test that restarts kube-apiserver or needs it
//! started differently has a control plane of its own: without a watch cache
//! (`--no-watch-cache`: a watch resumed from before an etcd compaction gets a real 410), or
//! calling a webhook's `service` through the Service's EndpointSlice (`--aggregator-routing`).
//! Faults on the API connection (the server out of reach, every watch cut at once) come from a
//! relay between the operator and kube-apiserver (`tests/support/relay.rs`).
//!
//! Every wait is bounded (see `harness::eventually`); the only long wait is the 30 s of
//! `no_status_writes_once_converged`.

mod support;

#[path = "e2e/harness.rs"]
mod harness;

use gitprovider_operator::api::{GitProviderConnection, TOKEN_EXPIRING_SOON};
use harness::{
    Cluster, Operator, OperatorSpec, REVOKED, TOKEN, WAIT, api_error, b64, eventually, free_port, non_loopback_address,
};
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use serde_json::json;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::fake_providers::{FakeGitLab, Fault, TokenSpec, assert_reveals_jane_doe};

/// Nothing listens on port 1 of the loopback address: connections are refused (a free port
/// chosen now could be taken by a parallel test later).
const UNREACHABLE: &str = "http://127.0.0.1:1";

/// Namespaces on the shared control plane, a GitLab, one operator serving the webhook (file
/// certificates) and the webhook configuration pointing at it with failurePolicy Fail.
async fn setup() -> (Cluster, Operator) {
    let cluster = Cluster::start().await;
    let operator = cluster.operator("gpo-0").await;
    operator.wait_ready().await;
    cluster.install_webhook(&operator.webhook_url(), "Fail").await;
    (cluster, operator)
}

fn ready(conn: &GitProviderConnection) -> &k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    conn.ready_condition().expect("a Ready condition")
}

fn gauge(ns: &str, name: &str, value: u8) -> String {
    format!(r#"gitprovider_connection_ready{{namespace="{ns}",name="{name}",provider="GitLab"}} {value}"#)
}

/// 1. A Secret and a connection: Verified, with what GitLab revealed, for the current generation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_and_connection_become_verified() {
    let (c, _op) = setup().await;
    c.put_secret(&c.ns, "gitlab-pat", TOKEN).await;
    let created = c.create(&c.ns, "gitlab-main", "main", "gitlab-pat", json!({})).await;
    let conn = c.wait_reason(&c.ns, "gitlab-main", "Verified").await;

    let status = conn.status.clone().expect("status");
    let condition = ready(&conn);
    assert_eq!(condition.status, "True");
    assert_eq!(condition.message, "authenticated as jdoe on GitLab 17.5.1-ee");
    assert_eq!(created.metadata.generation, Some(1));
    assert_eq!(status.observed_generation, conn.metadata.generation);
    assert_eq!(condition.observed_generation, conn.metadata.generation);
    assert_reveals_jane_doe(&status);
    let expiring = status
        .conditions
        .iter()
        .find(|c| c.type_ == TOKEN_EXPIRING_SOON)
        .expect("TokenExpiringSoon");
    assert_eq!(
        (expiring.status.as_str(), expiring.reason.as_str()),
        ("False", "TokenValid")
    );

    // The transition is an Event from this replica.
    let events = eventually("a Verified event", WAIT, || async {
        let events = c.events_for(&c.ns, "gitlab-main").await;
        if events.iter().any(|e| e.reason.as_deref() == Some("Verified")) {
            Ok(events)
        } else {
            Err(format!("{events:?}"))
        }
    })
    .await;
    let event = events.iter().find(|e| e.reason.as_deref() == Some("Verified")).unwrap();
    assert_eq!(event.type_.as_deref(), Some("Normal"));
    assert_eq!(event.reporting_controller.as_deref(), Some("gitprovider-operator"));
    assert_eq!(event.reporting_instance.as_deref(), Some("gpo-0"));

    // GitLab saw the token in its documented header.
    assert!(
        c.gitlab
            .requests()
            .iter()
            .any(|r| r.header("private-token") == Some(TOKEN))
    );
}

/// `run --ca-file` (the chart's `providerCABundle`): a CA trusted for every connection, none of
/// which names it in `spec.tls`. A file that is not a CA bundle is a usage error at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_ca_file_is_trusted_for_every_connection() {
    let bin = env!("CARGO_BIN_EXE_gitprovider-operator");
    let not_pem = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(not_pem.path(), "not a certificate").expect("write");
    for (file, message) in [
        (
            Path::new("/nonexistent/ca.crt"),
            "error: cannot read --ca-file /nonexistent/ca.crt: ",
        ),
        (not_pem.path(), "no PEM certificate found"),
    ] {
        let output = std::process::Command::new(bin)
            .args(["run", "--ca-file"])
            .arg(file)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("the binary runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(message), "{stderr}");
    }

    let c = Cluster::start().await;
    let ca = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(ca.path(), &support::fake_providers::pki().ca_pem).expect("write the CA");
    let ca_path = ca.path().display().to_string();
    let op = c
        .operator_with(OperatorSpec::new("gpo-0").args(["--ca-file", ca_path.as_str()]))
        .await;
    op.wait_ready().await;
    c.put_secret(&c.ns, "gitlab-pat", TOKEN).await;
    let https = c.gitlab.https_url();
    c.create(
        &c.ns,
        "gitlab-tls",
        "main",
        "gitlab-pat",
        json!({"url": https.as_str()}),
    )
    .await;
    let conn = c.wait_reason(&c.ns, "gitlab-tls", "Verified").await;
    assert_eq!(ready(&conn).message, "authenticated as jdoe on GitLab 17.5.1-ee");
}

/// 2. A missing Secret is SecretNotFound; creating it verifies the connection within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_secret_then_created_becomes_verified() {
    let (c, _op) = setup().await;
    c.create(&c.ns, "gitlab-main", "main", "gitlab-pat", json!({})).await;
    let conn = c.wait_reason(&c.ns, "gitlab-main", "SecretNotFound").await;
    let condition = ready(&conn);
    assert_eq!(condition.status, "False");
    assert!(
        condition.message.contains("gitlab-pat") && condition.message.contains(&c.ns),
        "{}",
        condition.message
    );
    assert!(c.gitlab.requests().is_empty(), "nothing to verify without a token");

    let started = Instant::now();
    c.put_secret(&c.ns, "gitlab-pat", TOKEN).await;
    let conn = c.wait_reason(&c.ns, "gitlab-main", "Verified").await;
    eprintln!("Verified {:?} after the Secret was created", started.elapsed());
    assert_eq!(ready(&conn).status, "True");
}

/// 3. Rotating the token to a revoked one is Unauthorized within seconds; rotating back heals.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_to_a_revoked_token_and_back() {
    let (c, _op) = setup().await;
    c.put_secret(&c.ns, "gitlab-pat", TOKEN).await;
    c.create(&c.ns, "gitlab-main", "main", "gitlab-pat", json!({})).await;
    let verified = c.wait_reason(&c.ns, "gitlab-main", "Verified").await;
    let verified_at = ready(&verified).last_transition_time.clone();

    let started = Instant::now();
    c.put_secret(&c.ns, "gitlab-pat", REVOKED).await;
    let revoked = c.wait_reason(&c.ns, "gitlab-main", "Unauthorized").await;
    eprintln!("Unauthorized {:?} after the rotation", started.elapsed());
    let condition = ready(&revoked);
    assert_eq!(condition.status, "False");
    assert!(condition.message.contains("revoked"), "{}", condition.message);
    assert!(condition.last_transition_time >= verified_at);
    assert!(
        revoked.status.as_ref().unwrap().authenticated_user.is_none(),
        "facts of the old token are gone"
    );
    assert!(
        c.gitlab
            .requests()
            .iter()
            .any(|r| r.header("private-token") == Some(REVOKED)),
        "the new token was presented"
    );

    let started = Instant::now();
    c.put_secret(&c.ns, "gitlab-pat", TOKEN).await;
    c.wait_reason(&c.ns, "gitlab-main", "Verified").await;
    eprintln!("Verified again {:?} after the rotation back", started.elapsed());

    // Each change of Ready is an Event: Verified, Unauthorized (a Warning), Verified.
    eventually("Events for both transitions", WAIT, || async {
        let events = c.events_for(&c.ns, "gitlab-main").await;
        let warning = events
            .iter()
            .any(|e| e.reason.as_deref() == Some("Unauthorized") && e.type_.as_deref() == Some("Warning"));
        let normal = events.iter().any(|e| e.reason.as_deref() == Some("Verified"));
        if warning && normal {
            Ok(())
        } else {
            Err(format!("{events:?}"))
        }
    })
    .await;
}

/// 4. Admission: a duplicate is denied naming the holder; another namespace or provider is
/// fine; an `http://` URL comes back with a Warning header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_denies_duplicates_and_warns_about_http() {
    let (c, _op) = setup().await;

    // Created through a raw request to see the response headers: allowed, with a warning.
    let body = serde_json::to_value(c.connection(&c.ns, "older", "main", "pat", json!({}))).unwrap();
    let path = format!(
        "/apis/gitprovider.dev/v1alpha1/namespaces/{}/gitproviderconnections",
        c.ns
    );
    let (code, warnings, created) = c.raw("POST", &path, &body).await;
    assert_eq!(code, 201, "{created}");
    assert!(
        warnings
            .iter()
            .any(|w| w.starts_with("299 ") && w.contains("spec.url uses http://")),
        "a Warning header about http://: {warnings:?}"
    );

    // The same name, differently spelled, in the same namespace and provider: denied.
    let denied = api_error(c.try_create(&c.ns, "dup", "  MAIN ", "pat", json!({})).await);
    assert!(
        denied.message.contains(&format!("{}/older", c.ns)),
        "the holder is named: {}",
        denied.message
    );
    assert!(denied.message.contains("denied the request"), "{}", denied.message);
    assert!((400..500).contains(&denied.code), "{denied:?}");
    // The API server's record shows the denied create, with the same message.
    let denied_request = eventually("the denied create in the audit log", WAIT, || async {
        c.requests()
            .into_iter()
            .find(|r| r.verb() == "create" && r.body_text().contains("\"dup\""))
            .ok_or_else(|| "not yet".to_owned())
    })
    .await;
    assert!(!denied_request.succeeded());
    assert!(denied_request.mentions(&format!("{}/older", c.ns)));
    assert!(
        c.connections(&c.ns).get_opt("dup").await.unwrap().is_none(),
        "nothing was stored"
    );

    // Another namespace, another provider: allowed.
    c.create(&c.other_ns, "older", "main", "pat", json!({})).await;
    c.create(&c.ns, "gitea-main", "main", "pat", json!({"provider": "Gitea"}))
        .await;

    // An update that keeps its own name is fine; one that takes a held name is not.
    c.patch_spec(&c.ns, "older", json!({"verifyInterval": "2h"})).await;
    c.create(&c.ns, "other", "other", "pat", json!({})).await;
    let denied = api_error(
        c.connections(&c.ns)
            .patch(
                "other",
                &kube::api::PatchParams::default(),
                &kube::api::Patch::Merge(&json!({"spec": {"instanceName": "Main"}})),
            )
            .await,
    );
    assert!(
        denied.message.contains(&format!("{}/older", c.ns)),
        "{}",
        denied.message
    );
}

/// 5. Duplicates that got past admission are healed: the younger is DuplicateInstanceName
/// naming the holder, and becomes Verified when the holder goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_past_admission_heal_when_the_holder_goes() {
    let c = Cluster::start().await;
    let op = c.operator("gpo-0").await;
    op.wait_ready().await;
    c.put_secret(&c.ns, "gitlab-pat", TOKEN).await;

    // No webhook configuration yet: nothing stops the duplicate.
    c.create(&c.ns, "older", "main", "gitlab-pat", json!({})).await;
    c.wait_reason(&c.ns, "older", "Verified").await;
    // creationTimestamp has second precision: make the order unambiguous.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.create(&c.ns, "younger", " Main", "gitlab-pat", json!({})).await;
    let conn = c.wait_reason(&c.ns, "younger", "DuplicateInstanceName").await;
    let message = &ready(&conn).message;
    assert!(
        message.contains(&format!("{}/older", c.ns)),
        "the holder is named: {message}"
    );
    assert_eq!(ready(&conn).status, "False");
    // The holder keeps its name.
    assert_eq!(
        ready(&c.connections(&c.ns).get("older").await.unwrap()).reason,
        "Verified"
    );

    // A webhook that cannot be reached, with failurePolicy Ignore: admitted all the same.
    c.install_webhook("https://127.0.0.1:1/validate", "Ignore").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.create(&c.ns, "youngest", "MAIN", "gitlab-pat", json!({})).await;
    let conn = c.wait_reason(&c.ns, "youngest", "DuplicateInstanceName").await;
    assert!(
        ready(&conn).message.contains(&format!("{}/older", c.ns)),
        "{}",
        ready(&conn).message
    );

    // The holder goes: the next oldest takes the name and is verified at once.
    let started = Instant::now();
    c.connections(&c.ns)
        .delete("older", &DeleteParams::default())
        .await
        .unwrap();
    c.wait_reason(&c.ns, "younger", "Verified").await;
    eprintln!(
        "the younger was Verified {:?} after the holder was deleted",
        started.elapsed()
    );
    let conn = c.wait_reason(&c.ns, "youngest", "DuplicateInstanceName").await;
    assert!(
        ready(&conn).message.contains(&format!("{}/younger", c.ns)),
        "now held by the younger: {}",
        ready(&conn).message
    );
}

/// How many lists of the operator kube-apiserver has seen.
fn operator_lists(c: &Cluster) -> usize {
    let operator = c.plane().operator_user();
    c.count(|r| r.verb() == "list" && r.user.as_deref() == Some(operator.as_str()))
}

/// Waits until the operator listed again at least twice since `before` lists: its resumed
/// watches were refused with 410 Gone.
async fn relisted(c: &Cluster, before: usize) {
    eventually("the operator relisted after 410 Gone", WAIT, || async {
        let lists = operator_lists(c);
        if lists >= before + 2 {
            Ok(())
        } else {
            Err(format!("{before} lists before, {lists} now"))
        }
    })
    .await;
}

/// 6. A real `410 Gone`: etcd is compacted past every resourceVersion the operator has seen and
/// kube-apiserver is restarted (every watch breaks; the new watch cache starts at etcd's
/// revision), so each resumed watch is refused as too old: the operator relists and still
/// reacts to Secret and connection changes within seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reacts_to_changes_after_a_real_410_gone() {
    let mut c = Cluster::start_private().await;
    let mut op = c.operator("gpo-0").await;
    op.wait_ready().await;
    c.install_webhook(&op.webhook_url(), "Fail").await;
    c.put_secret(&c.ns, "gitlab-pat", TOKEN).await;
    c.create(&c.ns, "gitlab-main", "main", "gitlab-pat", json!({})).await;
    c.wait_reason(&c.ns, "gitlab-main", "Verified").await;

    let lists_before = operator_lists(&c);
    // Writes the operator does not watch move etcd's revision past everything it has seen.
    let elsewhere = c.plane().namespace("unwatched");
    for i in 0..3 {
        c.put_secret(&elsewhere, &format!("filler-{i}"), "x").await;
    }
    let plane = c.plane();
    let revision = plane.compact();
    eprintln!("etcd compacted at revision {revision}");
    let started = Instant::now();
    op.tolerate_forbidden_from_now();
    tokio::task::block_in_place(|| plane.restart_apiserver());
    eprintln!("kube-apiserver restarted in {:?}", started.elapsed());
    c.reconnect().await;

    // Each resumed watch was refused: the operator listed again.
    relisted(&c, lists_before).await;

    let started = Instant::now();
    c.put_secret(&c.ns, "gitlab-pat", REVOKED).await;
    c.wait_reason(&c.ns, "gitlab-main", "Unauthorized").await;
    eprintln!(
        "Unauthorized {:?} after the rotation that followed the 410",
        started.elapsed()
    );
    c.patch_spec(&c.ns, "gitlab-main", json!({"suspend": true})).await;
    c.wait_reason(&c.ns, "gitlab-main", "Suspended").await;
    assert!(op.exited().is_none(), "the operator is still running");
}

/// 6b. Every watch cut at once, a change made while none can reopen, and each resumed watch
/// answered 410 Gone: the operator relists and sees the change. A [`Relay`] between the operator
/// and kube-apiserver cuts the watches and refuses new connections; the control plane runs
/// without a watch cache (`--no-watch-cache`), so etcd serves every watch and a watch resumed
/// from a compacted version is refused as too old, without a restart.
///
/// [`Relay`]: support::relay::Relay
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_watches_resumed_into_410_gone_see_the_change_in_between() {
    let c = Cluster::start_private_with(&["--no-watch-cache"]).await;
    let (relay, kubeconfig) = c.relay().await;
    let op = c
        .operator_with(OperatorSpec::new("gpo-0").args(c.pki.args()).kubeconfig(kubeconfig))
        .await;
    op.wait_ready().await;
    c.put_secret(&c.ns, "gitlab-pat", TOKEN).await;
    c.create(&c.ns, "gitlab-main", "main", "gitlab-pat", json!({})).await;
    c.wait_reason(&c.ns, "gitlab-main", "Verified").await;
    // The operator watches connections, Secrets and ConfigMaps at least, each on a connection
    // of its own.
    eventually("the operator's watches are open", WAIT, || async {
        let open = relay.open_connections();
        if open >= 3 {
            Ok(open)
        } else {
            Err(format!("{open} open"))
        }
    })
    .await;
    let lists_before = operator_lists(&c);

    relay.close();
    let dropped = relay.cut_all();
    assert!(dropped >= 3, "{dropped} watches dropped");
    // The change, through the test's own client while the operator cannot reach the server;
    // then writes it does not watch, and a compaction past every version it has seen.
    c.put_secret(&c.ns, "gitlab-pat", REVOKED).await;
    let plane = c.plane();
    let elsewhere = plane.namespace("unwatched");
    for i in 0..3 {
        c.put_secret(&elsewhere, &format!("filler-{i}"), "x").await;
    }
    let revision = tokio::task::block_in_place(|| plane.compact());
    eprintln!("etcd compacted at revision {revision}");
    relay.open();

    // Each resumed watch was refused as too old: the operator listed again.
    relisted(&c, lists_before).await;
    // kube-apiserver's words for the 410, as the operator logged the refused watch.
    op.wait_log("The resourceVersion for the provided watch is too old")
        .await;
    c.wait_reason(&c.ns, "gitlab-main", "Unauthorized").await;
}

/// 7. A spec change is re-verified and observedGeneration follows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spec_changes_are_reverified() {
    let (c, _op) = setup().await;
    c.put_secret(&c.ns, "gitlab-pat", TOKEN).await;
    c.put_secret(&c.ns, "revoked-pat", REVOKED).await;
    c.create(&c.ns, "gitlab-main", "main", "gitlab-pat", json!({})).await;
    let first = c.wait_reason(&c.ns, "gitlab-main", "Verified").await;
    assert_eq!(first.status.as_ref().unwrap().observed_generation, Some(1));
    let verifications = c.gitlab.requests().len();

    // A change that keeps the outcome: verified again for generation 2.
    let patched = c
        .patch_spec(&c.ns, "gitlab-main", json!({"verifyInterval": "2h"}))
        .await;
    assert_eq!(patched.metadata.generation, Some(2));
    let conn = c
        .wait_status(&c.ns, "gitlab-main", "Verified", |c| {
            c.status.as_ref().is_some_and(|s| s.observed_generation == Some(2))
        })
        .await;
    assert_eq!(ready(&conn).observed_generation, Some(2));
    assert!(
        c.gitlab.requests().len() > verifications,
        "the new spec was verified against GitLab"
    );

    // A change of the Secret reference: the other token is revoked.
    c.patch_spec(&c.ns, "gitlab-main", json!({"tokenSecretRef": {"name": "revoked-pat"}}))
        .await;
    let conn = c.wait_reason(&c.ns, "gitlab-main", "Unauthorized").await;
    assert_eq!(conn.status.as_ref().unwrap().observed_generation, Some(3));
    assert_eq!(ready(&conn).observed_generation, Some(3));

    // A URL nobody answers: Unreachable, generation 4.
    c.patch_spec(
        &c.ns,
        "gitlab-main",
        json!({"url": UNREACHABLE, "tokenSecretRef": {"name": "gitlab-pat"}}),
    )
    .await;
    let conn = c.wait_reason(&c.ns, "gitlab-main", "Unreachable").await;
    assert_eq!(conn.status.as_ref().unwrap().observed_generation, Some(4));
}

/// 8. Suspended connections are Suspended and never reach the provider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suspended_connections_never_call_the_provider() {
    let (c, op) = setup().await;
    // The suspended connection has a GitLab of its own, so that any call it makes shows.
    let its_gitlab = FakeGitLab::start().await;
    let (first, second) = ("glpat-e2e-shared-19ad", "glpat-e2e-shared-2b7e");
    for token in [first, second] {
        its_gitlab.add_token(token, TokenSpec::user("sam"));
        c.gitlab.add_token(token, TokenSpec::user("sam"));
    }
    c.put_secret(&c.ns, "shared-pat", first).await;
    c.create(
        &c.ns,
        "paused",
        "paused",
        "shared-pat",
        json!({"suspend": true, "url": its_gitlab.url().as_str()}),
    )
    .await;
    let conn = c.wait_reason(&c.ns, "paused", "Suspended").await;
    assert_eq!(ready(&conn).status, "Unknown");
    assert_eq!(conn.status.as_ref().unwrap().observed_generation, Some(1));
    // Not ready, and marked suspended: the chart's GitProviderConnectionNotReady leaves it out.
    // The gauges are set just after the status write: read them with a bounded wait.
    let ns = &c.ns;
    let expected = [
        gauge(ns, "paused", 0),
        format!(r#"gitprovider_connection_suspended{{namespace="{ns}",name="paused",provider="GitLab"}} 1"#),
    ];
    eventually("the suspended connection's gauges", WAIT, || async {
        let metrics = op.metrics().await;
        match expected
            .iter()
            .find(|line| !metrics.lines().any(|l| l == line.as_str()))
        {
            None => Ok(()),
            Some(line) => Err(format!("{line} in:\n{metrics}")),
        }
    })
    .await;

    // Another connection shares the Secret: when it has been re-verified with the rotated
    // token, the suspended one has been told about the rotation too, and must not have called.
    c.create(&c.ns, "watcher", "watcher", "shared-pat", json!({})).await;
    c.wait_reason(&c.ns, "watcher", "Verified").await;
    c.put_secret(&c.ns, "shared-pat", second).await;
    eventually("the watcher verified the rotated token", WAIT, || async {
        let seen = c
            .gitlab
            .requests()
            .iter()
            .any(|r| r.header("private-token") == Some(second));
        if seen { Ok(()) } else { Err("not yet".to_owned()) }
    })
    .await;
    c.wait_reason(&c.ns, "watcher", "Verified").await;
    assert!(
        its_gitlab.requests().is_empty(),
        "the suspended connection called GitLab: {:?}",
        its_gitlab.requests()
    );
    assert_eq!(
        ready(&c.connections(&c.ns).get("paused").await.unwrap()).reason,
        "Suspended"
    );

    // Suspending a verified one: Suspended for generation 2, what was learned is kept.
    c.patch_spec(&c.ns, "watcher", json!({"suspend": true})).await;
    let conn = c.wait_reason(&c.ns, "watcher", "Suspended").await;
    assert_eq!(conn.status.as_ref().unwrap().observed_generation, Some(2));
    assert!(conn.status.as_ref().unwrap().authenticated_user.is_some());

    // Resuming verifies at once, with the current token.
    c.patch_spec(&c.ns, "paused", json!({"suspend": false})).await;
    let conn = c.wait_reason(&c.ns, "paused", "Verified").await;
    assert_eq!(conn.status.as_ref().unwrap().observed_generation, Some(2));
    let calls = its_gitlab.requests();
    assert!(!calls.is_empty() && calls.iter().all(|r| r.header("private-token") == Some(second)));
}

/// 9. Once converged, unchanged objects get no status writes (and no Events) for 30 s, even
/// while transient failures are retried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_status_writes_once_converged() {
    let c = Cluster::start().await;
    let mut op = c.operator("gpo-0").await;
    op.wait_ready().await;
    let failing = FakeGitLab::start().await;
    failing.fault(None, Fault::status(503), None);
    c.put_secret(&c.ns, "gitlab-pat", TOKEN).await;
    c.put_secret(&c.ns, "revoked-pat", REVOKED).await;

    c.create(&c.ns, "ok", "ok", "gitlab-pat", json!({})).await;
    c.create(&c.ns, "revoked", "revoked", "revoked-pat", json!({})).await;
    c.create(&c.ns, "no-secret", "no-secret", "missing-pat", json!({}))
        .await;
    c.create(&c.ns, "paused", "paused", "gitlab-pat", json!({"suspend": true}))
        .await;
    c.create(&c.ns, "down", "down", "gitlab-pat", json!({"url": UNREACHABLE}))
        .await;
    c.create(
        &c.ns,
        "failing",
        "failing",
        "gitlab-pat",
        json!({"url": failing.url().as_str()}),
    )
    .await;
    c.wait_reason(&c.ns, "ok", "Verified").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    c.create(&c.ns, "dup", "OK", "gitlab-pat", json!({})).await;
    // The webhook is wired in once the duplicate exists (it would deny it).
    c.install_webhook(&op.webhook_url(), "Fail").await;

    for (name, reason) in [
        ("ok", "Verified"),
        ("revoked", "Unauthorized"),
        ("no-secret", "SecretNotFound"),
        ("paused", "Suspended"),
        ("down", "Unreachable"),
        ("failing", "ProviderError"),
        ("dup", "DuplicateInstanceName"),
    ] {
        c.wait_reason(&c.ns, name, reason).await;
    }
    // Converged: every connection has its first status and Event.
    eventually("one Event per connection", WAIT, || async {
        let writes = c.event_writes();
        if writes >= 7 {
            Ok(())
        } else {
            Err(format!("{writes} event writes"))
        }
    })
    .await;

    let status_writes = c.status_writes(None);
    let event_writes = c.event_writes();
    let failing_calls = failing.requests().len();
    let per_connection: Vec<(&str, usize)> = ["ok", "revoked", "no-secret", "paused", "down", "failing", "dup"]
        .into_iter()
        .map(|n| (n, c.status_writes(Some(n))))
        .collect();

    // The one long wait of the suite: absence of writes can only be seen over time.
    tokio::time::sleep(Duration::from_secs(30)).await;

    let after: Vec<(&str, usize)> = per_connection
        .iter()
        .map(|(n, _)| (*n, c.status_writes(Some(n))))
        .collect();
    assert_eq!(after, per_connection, "no status writes on unchanged objects for 30 s");
    assert_eq!(c.status_writes(None), status_writes);
    assert_eq!(c.event_writes(), event_writes, "no Events without a transition");
    assert!(
        failing.requests().len() > failing_calls,
        "the transient failure was retried meanwhile ({failing_calls} calls before, {} after)",
        failing.requests().len()
    );
    assert!(op.exited().is_none(), "the operator is still running");
}

/// 10. `/healthz` answers at once; `/readyz` is 503 until the first list of connections
/// succeeded, then 200. Until the test opens it, a closed [`Relay`] closes every connection the
/// operator makes to kube-apiserver, so no list can succeed.
///
/// [`Relay`]: support::relay::Relay
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn not_ready_until_the_first_list() {
    let c = Cluster::start().await;
    let (relay, kubeconfig) = c.relay().await;
    // The API server is out of reach: the operator is alive but not ready.
    relay.close();
    let op = c
        .operator_with(OperatorSpec::new("gpo-0").args(c.pki.args()).kubeconfig(kubeconfig))
        .await;
    let (code, body) = op.get("/healthz").await.unwrap();
    assert_eq!((code, body.trim()), (200, "ok"));
    let (code, body) = op.get("/readyz").await.unwrap();
    assert_eq!(code, 503, "not ready before the first list: {body}");
    assert!(body.contains("not ready"), "{body}");
    relay.open();
    op.wait_ready().await;
}

/// 10b. `/metrics`: the ready gauge and the token expiry follow the status, and a deleted
/// connection is forgotten.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_follow_the_status() {
    let (c, op) = setup().await;
    let (code, body) = op.get("/healthz").await.unwrap();
    assert_eq!((code, body.trim()), (200, "ok"));

    c.put_secret(&c.ns, "gitlab-pat", TOKEN).await;
    c.create(&c.ns, "gitlab-main", "main", "gitlab-pat", json!({})).await;
    c.wait_reason(&c.ns, "gitlab-main", "Verified").await;
    let metrics = eventually("the ready gauge at 1", WAIT, || async {
        let text = op.metrics().await;
        if text.contains(&gauge(&c.ns, "gitlab-main", 1)) {
            Ok(text)
        } else {
            Err(text)
        }
    })
    .await;
    assert!(metrics.contains("# EOF"), "OpenMetrics text");
    let expiry = "2099-01-31T00:00:00Z".parse::<jiff::Timestamp>().unwrap().as_second();
    let expiry_line = format!(
        r#"gitprovider_token_expiry_timestamp_seconds{{namespace="{}",name="gitlab-main",provider="GitLab"}} {expiry}"#,
        c.ns
    );
    assert!(
        metrics.contains(&expiry_line),
        "the token expiry is exported:\n{metrics}"
    );

    // Not ready any more: the gauge follows.
    c.put_secret(&c.ns, "gitlab-pat", REVOKED).await;
    c.wait_reason(&c.ns, "gitlab-main", "Unauthorized").await;
    eventually("the ready gauge at 0", WAIT, || async {
        let text = op.metrics().await;
        if text.contains(&gauge(&c.ns, "gitlab-main", 0)) {
            Ok(())
        } else {
            Err(text)
        }
    })
    .await;

    // Deleted: forgotten.
    c.connections(&c.ns)
        .delete("gitlab-main", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the gauge is gone", WAIT, || async {
        let text = op.metrics().await;
        if text.contains(r#"name="gitlab-main""#) && text.contains("gitprovider_connection_ready{") {
            Err(text)
        } else {
            Ok(())
        }
    })
    .await;
    let (code, _) = op.get("/readyz").await.unwrap();
    assert_eq!(code, 200);
}

/// Sends SIGTERM and expects exit status 0 within a bound; returns the operator's output.
async fn terminate(op: &mut Operator) -> String {
    let started = Instant::now();
    op.sigterm();
    let status = op
        .wait_exit(Duration::from_secs(15))
        .await
        .unwrap_or_else(|| panic!("{}: no exit within 15 s of SIGTERM\n{}", op.name, op.logs()));
    eprintln!("{} exited {:?} after SIGTERM with {status}", op.name, started.elapsed());
    assert!(status.success(), "{}: exit status {status}\n{}", op.name, op.logs());
    let logs = op.logs();
    assert!(logs.contains("termination signal received"), "{logs}");
    assert!(logs.contains("controller stopped"), "{logs}");
    assert!(logs.contains("stopped"), "{logs}");
    assert_eq!(op.output().stdout(), "", "logs go to stderr; nothing on stdout");
    assert!(op.get("/healthz").await.is_err(), "the metrics port is closed");
    logs
}

/// 11. SIGTERM: a clean exit with status 0, with and without leader election (the Lease is
/// given back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_cleanly() {
    let c = Cluster::start().await;
    c.put_secret(&c.ns, "gitlab-pat", TOKEN).await;

    // Without leader election: the replica leads by itself.
    let mut solo = c.operator("solo").await;
    solo.wait_ready().await;
    c.create(&c.ns, "first", "first", "gitlab-pat", json!({})).await;
    c.wait_reason(&c.ns, "first", "Verified").await;
    let logs = terminate(&mut solo).await;
    assert_eq!(
        logs.matches("starting the controller").count(),
        1,
        "one term of leadership"
    );

    // With leader election.
    let mut op = c
        .operator_with(OperatorSpec::new("gpo-0").args(c.pki.args()).args(c.election_args()))
        .await;
    op.wait_ready().await;
    c.install_webhook(&op.webhook_url(), "Fail").await;
    c.create(&c.ns, "second", "second", "gitlab-pat", json!({})).await;
    c.wait_reason(&c.ns, "second", "Verified").await;
    assert_eq!(c.lease_holder().await.as_deref(), Some("gpo-0"));
    let logs = terminate(&mut op).await;
    assert!(logs.contains("released leadership"), "{logs}");
    assert_eq!(c.lease_holder().await, None, "the Lease was given back");
}

/// 12. Two replicas with leader election: one reconciles, both answer admission, and the
/// other takes over when the leader is stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_one_leader_and_takeover() {
    let c = Cluster::start().await;
    let spec = |name: &str| OperatorSpec::new(name).args(c.pki.args()).args(c.election_args());
    let mut a = c.operator_with(spec("replica-a")).await;
    eventually("replica-a holds the Lease", WAIT, || async {
        match c.lease_holder().await {
            Some(h) if h == "replica-a" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let b = c.operator_with(spec("replica-b")).await;
    a.wait_ready().await;
    b.wait_ready().await;
    b.wait_log("following").await;
    // Admission goes to the follower: every replica answers the webhook.
    c.install_webhook(&b.webhook_url(), "Fail").await;

    c.put_secret(&c.ns, "gitlab-pat", TOKEN).await;
    c.create(&c.ns, "first", "first", "gitlab-pat", json!({})).await;
    c.wait_reason(&c.ns, "first", "Verified").await;
    assert_eq!(a.logs().matches("starting the controller").count(), 1, "{}", a.logs());
    assert!(!b.logs().contains("starting the controller"), "{}", b.logs());
    let events = some_events(&c, "first").await;
    assert!(
        events
            .iter()
            .all(|e| e.reporting_instance.as_deref() == Some("replica-a")),
        "only the leader records events: {events:?}"
    );
    assert!(a.metrics().await.contains(&gauge(&c.ns, "first", 1)));
    assert!(
        !b.metrics().await.contains("gitprovider_connection_ready{"),
        "the follower reconciles nothing"
    );
    // The follower's webhook denies a duplicate from its own index.
    let denied = api_error(
        c.try_create(&c.ns, "first-again", "FIRST", "gitlab-pat", json!({}))
            .await,
    );
    assert!(
        denied.message.contains(&format!("{}/first", c.ns)),
        "{}",
        denied.message
    );

    // The leader stops: the follower takes over.
    let started = Instant::now();
    a.sigterm();
    let status = a.wait_exit(Duration::from_secs(15)).await.expect("the leader exits");
    assert!(status.success(), "{status}");
    eventually("replica-b holds the Lease", WAIT, || async {
        match c.lease_holder().await {
            Some(h) if h == "replica-b" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    b.wait_log("starting the controller").await;
    eprintln!(
        "replica-b took over {:?} after SIGTERM to the leader",
        started.elapsed()
    );

    c.create(&c.ns, "second", "second", "gitlab-pat", json!({})).await;
    c.wait_reason(&c.ns, "second", "Verified").await;
    let events = some_events(&c, "second").await;
    assert!(
        !events.is_empty()
            && events
                .iter()
                .all(|e| e.reporting_instance.as_deref() == Some("replica-b")),
        "{events:?}"
    );
    assert!(b.metrics().await.contains(&gauge(&c.ns, "second", 1)));
}

/// 13. The token never shows: not in the operator's output at RUST_LOG=debug, not in an Event,
/// not in anything but Secret traffic of the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_never_leaks() {
    let (c, op) = setup().await;
    let unknown = "glpat-e2e-unknown-4c7d20ee";
    c.put_secret(&c.ns, "gitlab-pat", TOKEN).await;
    c.create(&c.ns, "gitlab-main", "main", "gitlab-pat", json!({})).await;
    c.wait_reason(&c.ns, "gitlab-main", "Verified").await;
    c.put_secret(&c.ns, "gitlab-pat", unknown).await;
    c.wait_reason(&c.ns, "gitlab-main", "Unauthorized").await;
    c.put_secret(&c.ns, "gitlab-pat", REVOKED).await;
    c.wait_status(&c.ns, "gitlab-main", "Unauthorized", |c| {
        ready(c).message.contains("revoked")
    })
    .await;
    c.put_secret(&c.ns, "gitlab-pat", TOKEN).await;
    c.wait_reason(&c.ns, "gitlab-main", "Verified").await;
    let metrics = op.metrics().await;
    let events: Vec<String> = c
        .events_for(&c.ns, "gitlab-main")
        .await
        .iter()
        .map(|e| serde_json::to_string(e).unwrap())
        .collect();
    // Verified, Unauthorized (twice, as a series), Verified again (a series of the first).
    assert!(events.len() >= 2, "{events:?}");

    for token in [TOKEN, unknown, REVOKED] {
        // The needles work: GitLab got the token, the API carried it in Secret bodies.
        assert!(
            c.gitlab
                .requests()
                .iter()
                .any(|r| r.header("private-token") == Some(token))
        );
        assert!(!c.requests_mentioning(&b64(token)).is_empty());
        for needle in [token.to_owned(), b64(token)] {
            let logs = op.logs();
            assert!(!logs.contains(&needle), "{needle} in the operator's output");
            assert!(!metrics.contains(&needle), "{needle} in /metrics");
            assert!(events.iter().all(|e| !e.contains(&needle)), "{needle} in an Event");
            let leaks = c.non_secret_requests_mentioning(&needle);
            assert!(
                leaks.is_empty(),
                "{needle} in non-Secret API traffic: {:?}",
                leaks
                    .iter()
                    .map(|r| format!("{} {}", r.method, r.path))
                    .collect::<Vec<_>>()
            );
        }
    }
    assert!(
        op.logs().lines().count() > 50,
        "debug logging was on (else the check proves little)"
    );
}

/// The certificate `addr` serves, verified against `ca_pem` for `server_name` (DER).
async fn served_certificate(addr: SocketAddr, ca_pem: &[u8], server_name: &str) -> Vec<u8> {
    let config = support::pki::client_config_trusting(ca_pem).expect("CA bundle");
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect to the webhook");
    let name = rustls_pki_types::ServerName::try_from(server_name.to_owned()).expect("server name");
    let tls = connector
        .connect(name, tcp)
        .await
        .unwrap_or_else(|e| panic!("TLS handshake with {addr} as {server_name}: {e}"));
    let (_, session) = tls.get_ref();
    session.peer_certificates().expect("a certificate")[0].as_ref().to_vec()
}

/// The names the chart gives the self-managed certificate's Secret, the webhook configuration
/// and the Service (its RBAC allows writing exactly these).
const CERT_SECRET: &str = "gitprovider-operator-webhook-tls";
const CONFIGURATION: &str = "gitprovider-operator";
const SERVICE: &str = "gitprovider-operator-webhook";
const SYSTEM: &str = support::control_plane::SYSTEM_NAMESPACE;

/// 14. Self-managed webhook certificates on the real server: the Secret is created once, the
/// caBundle of a real ValidatingWebhookConfiguration is patched, and both replicas serve the
/// same certificate, valid for the Service name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_managed_webhook_certificates() {
    let c = Cluster::start().await;
    // What an earlier run on this control plane left behind.
    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), SYSTEM);
    let configs: Api<ValidatingWebhookConfiguration> = Api::all(c.client.clone());
    let _ = secrets.delete(CERT_SECRET, &DeleteParams::default()).await;
    let _ = configs.delete(CONFIGURATION, &DeleteParams::default()).await;
    let (a, b) = self_managed_certificates(&c, free_port(), IpAddr::from([127, 0, 0, 1])).await;
    drop((a, b));
}

/// 14b. The same through the Service: kube-apiserver, started with `--aggregator-routing`,
/// calls the webhook's `service` reference at the address of the Service's EndpointSlice (and
/// Endpoints), this machine's non-loopback address (endpoints must not be loopback), where
/// replica-a listens; the call is verified for the Service name against the caBundle the
/// operator patched in. Admission works through the Service with the self-issued certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_managed_webhook_certificates_through_the_service() {
    let c = Cluster::start_private_with(&["--aggregator-routing"]).await;
    let host = non_loopback_address();
    let webhook_port = free_port();
    let plane = c.plane();
    plane.apply(&json!({"apiVersion": "v1", "kind": "List", "items": [
        {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": SERVICE, "namespace": SYSTEM},
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": webhook_port}]},
        },
        {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {
                "name": SERVICE, "namespace": SYSTEM,
                "labels": {"kubernetes.io/service-name": SERVICE},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [host.to_string()], "conditions": {"ready": true}}],
            "ports": [{"name": "https", "port": webhook_port, "protocol": "TCP"}],
        },
        {
            "apiVersion": "v1", "kind": "Endpoints",
            "metadata": {"name": SERVICE, "namespace": SYSTEM},
            "subsets": [{
                "addresses": [{"ip": host.to_string()}],
                "ports": [{"name": "https", "port": webhook_port, "protocol": "TCP"}],
            }],
        },
    ]}));
    let (_a, _b) = self_managed_certificates(&c, webhook_port, host).await;
    // kube-apiserver calls the webhook once its informer has the patched caBundle.
    c.wait_webhook_in_effect().await;

    // Admission through the Service: a duplicate is denied.
    c.put_secret(&c.ns, "gitlab-pat", TOKEN).await;
    c.create(&c.ns, "gitlab-main", "main", "gitlab-pat", json!({})).await;
    c.wait_reason(&c.ns, "gitlab-main", "Verified").await;
    let denied = api_error(
        c.try_create(&c.ns, "gitlab-again", "Main", "gitlab-pat", json!({}))
            .await,
    );
    assert!(
        denied.message.contains(&format!("{}/gitlab-main", c.ns)),
        "{}",
        denied.message
    );
    assert!(
        denied
            .message
            .contains("validate.gitproviderconnections.gitprovider.dev"),
        "denied by the webhook: {}",
        denied.message
    );
}

/// Two replicas issuing the webhook certificate themselves; replica-a listens on `host`
/// (`webhook_port`). Returns the replicas, serving.
async fn self_managed_certificates(c: &Cluster, webhook_port: u16, host: IpAddr) -> (Operator, Operator) {
    use rustls_pki_types::pem::PemObject;
    let configs: Api<ValidatingWebhookConfiguration> = Api::all(c.client.clone());
    configs
        .create(
            &PostParams::default(),
            &c.webhook_configuration(
                CONFIGURATION,
                json!({"service": {"namespace": SYSTEM, "name": SERVICE, "path": "/validate"}}),
                "Fail",
            ),
        )
        .await
        .unwrap();

    let mut args = vec![
        "--webhook-cert-secret".to_owned(),
        CERT_SECRET.into(),
        "--webhook-configuration".into(),
        CONFIGURATION.into(),
        "--webhook-service".into(),
        SERVICE.into(),
    ];
    args.extend(c.election_args());
    // Both replicas start together and race for the Secret.
    let (a, b) = tokio::join!(
        c.operator_with(
            OperatorSpec::new("replica-a")
                .args(args.clone())
                .webhook_port(webhook_port)
                .bind_address(host)
        ),
        c.operator_with(OperatorSpec::new("replica-b").args(args)),
    );
    a.wait_ready().await;
    b.wait_ready().await;

    let secrets: Api<Secret> = Api::namespaced(c.client.clone(), SYSTEM);
    let secret = secrets.get(CERT_SECRET).await.expect("the certificate Secret");
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let data = secret.data.clone().expect("data");
    let ca_pem = data.get("ca.crt").expect("ca.crt").0.clone();
    let cert_pem = data.get("tls.crt").expect("tls.crt").0.clone();
    assert!(data.contains_key("tls.key"));
    let successful_creates = c.count(|r| {
        r.verb() == "create"
            && r.succeeded()
            && r.target
                .as_ref()
                .is_some_and(|t| t.resource == "secrets" && t.namespace.as_deref() == Some(SYSTEM))
            && r.body_text().contains(CERT_SECRET)
    });
    assert_eq!(successful_creates, 1, "one replica created the Secret");

    // The CA went into the webhook configuration.
    eventually("caBundle injected", WAIT, || async {
        let config = configs.get(CONFIGURATION).await.map_err(|e| e.to_string())?;
        let bundle = config.webhooks.unwrap_or_default()[0].client_config.ca_bundle.clone();
        match bundle {
            Some(b) if b.0 == ca_pem => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;

    // Both replicas serve the Secret's certificate, valid for the Service name.
    let expected = rustls_pki_types::CertificateDer::from_pem_slice(&cert_pem)
        .expect("tls.crt")
        .as_ref()
        .to_vec();
    for op in [&a, &b] {
        let served = served_certificate(op.webhook_addr, &ca_pem, &format!("{SERVICE}.{SYSTEM}.svc")).await;
        assert_eq!(served, expected, "{} serves the shared certificate", op.name);
    }

    // The key never left the Secret.
    let key = String::from_utf8(data.get("tls.key").unwrap().0.clone()).unwrap();
    let key_body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
    for op in [&a, &b] {
        assert!(!op.logs().contains(key_body.get(..40).unwrap_or(&key_body)));
    }
    (a, b)
}

/// The Events of a connection, once there are any (they are published beside the reconcile, so
/// they may trail its status by a moment).
async fn some_events(c: &Cluster, name: &str) -> Vec<k8s_openapi::api::events::v1::Event> {
    eventually(&format!("an Event for {name}"), WAIT, || async {
        let events = c.events_for(&c.ns, name).await;
        if events.is_empty() {
            Err("none yet".to_owned())
        } else {
            Ok(events)
        }
    })
    .await
}
