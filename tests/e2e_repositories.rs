//! End to end, `spec.repositories`: the real operator binary against the real kube-apiserver
//! (`tests/e2e/harness.rs`), a local GitLab and a local GitHub Enterprise Server. A connection
//! lists repositories; its status says which ones the token reads, Ready turns
//! `RepositoryUnreadable` with the token facts kept, the metric counts them, `-o wide` shows
//! `readable/listed`; a path change and a rotated token re-verify at once; admission refuses
//! malformed and duplicate paths naming the entry.

mod support;

#[path = "e2e/harness.rs"]
mod harness;

use gitprovider_operator::api::{GitProviderConnection, RepositoryReason};
use harness::{Cluster, Operator, TOKEN, WAIT, eventually};
use serde_json::json;
use support::fake_providers::{FakeGitHub, TokenSpec, assert_reveals_jane_doe};

async fn setup() -> (Cluster, Operator) {
    let cluster = Cluster::start().await;
    let operator = cluster.operator("gpo-repos").await;
    operator.wait_ready().await;
    cluster.install_webhook(&operator.webhook_url(), "Fail").await;
    (cluster, operator)
}

fn summary(conn: &GitProviderConnection) -> Option<String> {
    conn.status.as_ref()?.repository_summary.clone()
}

fn unreadable_gauge(ns: &str, name: &str, provider: &str, value: u8) -> String {
    format!(
        r#"gitprovider_connection_unreadable_repositories{{namespace="{ns}",name="{name}",provider="{provider}"}} {value}"#
    )
}

/// `kubectl get gpc -o wide` asks the API server for a Table with every column; the
/// Repositories column (priority 1, so only in wide output) shows readable/listed.
async fn wide_cells(c: &Cluster, ns: &str, name: &str) -> (Vec<String>, Vec<serde_json::Value>) {
    let request = axum::http::Request::get(format!(
        "/apis/gitprovider.dev/v1alpha1/namespaces/{ns}/gitproviderconnections/{name}"
    ))
    .header("accept", "application/json;as=Table;g=meta.k8s.io;v=v1")
    .body(Vec::new())
    .expect("request");
    let text = c.client.request_text(request).await.expect("a Table");
    let table: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let columns = table["columnDefinitions"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| format!("{}:{}", c["name"].as_str().unwrap_or_default(), c["priority"]))
        .collect();
    let cells = table["rows"][0]["cells"].as_array().cloned().unwrap_or_default();
    (columns, cells)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_repositories_path_change_rotation_and_metrics() {
    let (c, op) = setup().await;
    for path in ["app-team/web", "app-team/ops", "app-team/api"] {
        c.gitlab.add_repository(path);
    }
    c.gitlab.add_token(
        TOKEN,
        TokenSpec::jane_doe()
            .reads(["app-team/web", "app-team/api"])
            .forbidden_on("app-team/ops"),
    );
    c.put_secret(&c.ns, "gitlab-pat", TOKEN).await;
    c.create(
        &c.ns,
        "gl",
        "main",
        "gitlab-pat",
        json!({"repositories": ["app-team/web", "app-team/secret-thing", "app-team/ops"]}),
    )
    .await;
    let conn = c.wait_reason(&c.ns, "gl", "RepositoryUnreadable").await;
    let status = conn.status.clone().expect("status");
    assert_reveals_jane_doe(&status);
    let ready = conn.ready_condition().expect("Ready");
    assert_eq!(ready.status, "False");
    assert!(
        ready.message.starts_with(
            "2 of 3 listed repositories cannot be read with this token: app-team/secret-thing (NotFound), app-team/ops (Forbidden)"
        ),
        "{}",
        ready.message
    );
    let entries = status.repositories.clone().expect("status.repositories");
    let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["app-team/web", "app-team/secret-thing", "app-team/ops"]);
    assert!(entries[0].readable && entries[0].default_branch.as_deref() == Some("main"));
    assert!(
        entries[0]
            .clone_url
            .as_deref()
            .is_some_and(|u| u.ends_with("/app-team/web.git"))
    );
    assert_eq!(entries[1].reason, Some(RepositoryReason::NotFound));
    assert_eq!(entries[2].reason, Some(RepositoryReason::Forbidden));
    assert_eq!(summary(&conn).as_deref(), Some("1/3"));

    let (columns, cells) = wide_cells(&c, &c.ns, "gl").await;
    let at = columns
        .iter()
        .position(|c| c == "Repositories:1")
        .unwrap_or_else(|| panic!("{columns:?}"));
    assert_eq!(cells[at], "1/3");
    let gauge = unreadable_gauge(&c.ns, "gl", "GitLab", 2);
    eventually("the unreadable-repositories gauge", WAIT, || async {
        let text = op.metrics().await;
        if text.contains(&gauge) { Ok(()) } else { Err(text) }
    })
    .await;

    // A path change re-verifies at once (the interval is an hour).
    c.patch_spec(&c.ns, "gl", json!({"repositories": ["app-team/web", "app-team/api"]}))
        .await;
    let conn = c
        .wait_status(&c.ns, "gl", "Verified", |conn| summary(conn).as_deref() == Some("2/2"))
        .await;
    assert_eq!(conn.status.as_ref().and_then(|s| s.observed_generation), Some(2));
    assert_eq!(
        conn.status.as_ref().and_then(|s| s.repositories.as_ref()).map(Vec::len),
        Some(2)
    );

    // Rotation to a token that cannot see them: re-verified at once, NotFound, the facts kept.
    let rotated = "glpat-e2e-rotated-no-repos-7c41";
    c.gitlab.add_token(rotated, TokenSpec::jane_doe().reads_nothing());
    c.put_secret(&c.ns, "gitlab-pat", rotated).await;
    let conn = c
        .wait_status(&c.ns, "gl", "RepositoryUnreadable", |conn| {
            summary(conn).as_deref() == Some("0/2")
        })
        .await;
    let status = conn.status.expect("status");
    assert_reveals_jane_doe(&status);
    assert!(
        status
            .repositories
            .expect("entries")
            .iter()
            .all(|e| e.reason == Some(RepositoryReason::NotFound))
    );

    // Neither token reached the API server in anything but its Secret.
    for token in [TOKEN, rotated] {
        assert!(c.non_secret_requests_mentioning(token).is_empty(), "{token} leaked");
    }
    assert!(!op.logs().contains(rotated));

    // Without repositories, nothing is listed any more and the gauge goes away.
    c.gitlab.add_token(rotated, TokenSpec::jane_doe());
    c.patch_spec(&c.ns, "gl", json!({"repositories": null})).await;
    let conn = c
        .wait_status(&c.ns, "gl", "Verified", |conn| summary(conn).is_none())
        .await;
    assert!(conn.status.expect("status").repositories.is_none());
    let gone = format!(
        r#"gitprovider_connection_unreadable_repositories{{namespace="{}",name="gl""#,
        c.ns
    );
    eventually("the gauge is gone", WAIT, || async {
        let text = op.metrics().await;
        if text.contains(&gone) { Err(text) } else { Ok(()) }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn github_sso_required_names_the_authorisation_url() {
    let (c, _op) = setup().await;
    let github = FakeGitHub::start_enterprise("3.14.2").await;
    github.add_repository("sso-org/app");
    github.add_repository("octo/web");
    let token = "ghp_e2eSSOaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    github.add_token(
        token,
        TokenSpec::user("octocat")
            .reads(["octo/web"])
            .sso_required_on("sso-org/app"),
    );
    c.put_secret(&c.ns, "gh-pat", token).await;
    c.create(
        &c.ns,
        "gh",
        "ghes",
        "gh-pat",
        json!({"provider": "GitHub", "url": github.url().as_str(), "repositories": ["octo/web", "sso-org/app"]}),
    )
    .await;
    let conn = c.wait_reason(&c.ns, "gh", "RepositoryUnreadable").await;
    let status = conn.status.expect("status");
    assert_eq!(
        status.authenticated_user.and_then(|u| u.username).as_deref(),
        Some("octocat")
    );
    let entries = status.repositories.expect("entries");
    assert!(entries[0].readable);
    assert_eq!(entries[1].reason, Some(RepositoryReason::SsoRequired));
    assert!(
        entries[1]
            .message
            .as_deref()
            .is_some_and(|m| m.contains("https://github.com/orgs/sso-org/sso?authorization_request=")),
        "{entries:?}"
    );
    assert_eq!(status.repository_summary.as_deref(), Some("1/2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admission_refuses_malformed_and_duplicate_paths() {
    let (c, _op) = setup().await;
    c.put_secret(&c.ns, "gitlab-pat", TOKEN).await;
    // The webhook: a duplicate ignoring case and a GitLab path that is a clone URL's tail.
    let denied = c
        .try_create(
            &c.ns,
            "bad",
            "bad",
            "gitlab-pat",
            json!({"repositories": ["app-team/web", "App-Team/Web", "app-team/web.git"]}),
        )
        .await
        .expect_err("denied");
    let text = denied.to_string();
    assert!(
        text.contains(r#"spec.repositories[1] \"App-Team/Web\" duplicates spec.repositories[0] \"app-team/web\""#)
            || text.contains(r#"spec.repositories[1] "App-Team/Web" duplicates spec.repositories[0] "app-team/web""#),
        "{text}"
    );
    assert!(text.contains("app-team/web.git"), "{text}");
    // The API server itself: an exact duplicate of a set, a leading slash, more than 100.
    let exact = c
        .try_create(
            &c.ns,
            "bad2",
            "bad2",
            "gitlab-pat",
            json!({"repositories": ["a/b", "a/b"]}),
        )
        .await
        .expect_err("denied");
    assert!(exact.to_string().contains("Duplicate value"), "{exact}");
    let slash = c
        .try_create(&c.ns, "bad3", "bad3", "gitlab-pat", json!({"repositories": ["/a/b"]}))
        .await
        .expect_err("denied");
    assert!(slash.to_string().contains("no leading or trailing /"), "{slash}");
    let many: Vec<String> = (0..101).map(|i| format!("g/p{i}")).collect();
    let too_many = c
        .try_create(&c.ns, "bad4", "bad4", "gitlab-pat", json!({"repositories": many}))
        .await
        .expect_err("denied");
    assert!(too_many.to_string().contains("100"), "{too_many}");
}
