//! The controller in-process against a real kube-apiserver (the run's shared control plane,
//! a namespace per test) and a local GitLab that speaks the documented API over real HTTP:
//! every path of a connection's life, from the status the user reads.

mod support;

use gitprovider_operator::api::{READY, TOKEN_EXPIRING_SOON};
use gitprovider_operator::controller::Settings;
use kube::api::{DeleteParams, Patch, PatchParams};
use serde_json::json;
use std::time::Duration;
use support::controller::{Harness, TOKEN, WAIT};
use support::fake_providers::{Fault, TokenSpec, assert_reveals_jane_doe};

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
    holds_every_connection_of_the_token_until_the_reset("/api/v4/user", json!({}), "ProviderError").await;
}

/// A rate limit met by a repository look-up holds the token on the instance as the token
/// check's own does.
#[tokio::test]
async fn a_rate_limited_repository_look_up_holds_the_token_too() {
    holds_every_connection_of_the_token_until_the_reset(
        "/api/v4/projects/",
        json!({"repositories": ["app-team/web"]}),
        "RepositoryUnreadable",
    )
    .await;
}

/// The instance rate-limits the token once on `path` (GitLab's real answer): the connection
/// that met it gets `reason`, another connection with the same token is not sent into the same
/// wall, and both are verified right after the reset, nothing asked before it.
async fn holds_every_connection_of_the_token_until_the_reset(path: &str, extra: serde_json::Value, reason: &str) {
    use support::fake_providers::rate_limits::{RateLimitAnswer, rate_limited};
    let h = Harness::start().await;
    h.gitlab.add_repository("app-team/web");
    h.put_secret("gitlab-pat", json!({"token": TOKEN})).await;
    h.put_secret("gitlab-pat-2", json!({"token": TOKEN})).await;
    // Longer than the blind backoff (10 s at most for a first failure).
    let reset_in = Duration::from_secs(20);
    h.gitlab
        .fault(Some(path), rate_limited(RateLimitAnswer::GitLab, reset_in), Some(1));
    h.create_connection("first", "first", "gitlab-pat", extra.clone()).await;
    let first = h.wait_reason("first", reason).await;
    let limited_at = std::time::SystemTime::now();
    let message = first.ready_condition().unwrap().message.clone();
    let said = match reason {
        "ProviderError" => message.clone(),
        // the repository's own entry says it
        _ => serde_json::to_string(&first.status.as_ref().unwrap().repositories).unwrap(),
    };
    assert!(said.contains("rate-limited"), "{said}");
    let asked = h.gitlab.requests().len();

    // Another connection with the same token is not sent into the same wall.
    h.create_connection("second", "second", "gitlab-pat-2", extra).await;
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

/// Many Ready connections due for re-verification at once (a restart re-verifies every one)
/// and a new connection created while they are under way: the new one is verified ahead of
/// them, after at most a few re-verifications however many are due, and the re-verifications
/// are only postponed. No timing: the order in which the GitLab stand-in saw the verifications.
#[tokio::test]
async fn a_new_connection_goes_ahead_of_due_re_verifications() {
    const READY_CONNECTIONS: usize = 100;
    const CONCURRENCY: u16 = 2;
    const NEW_TOKEN: &str = "glpat-new-connection-0123";
    let mut h = Harness::start().await;
    h.put_secret("gitlab-pat", json!({"token": TOKEN})).await;
    h.create_verified("ready", READY_CONNECTIONS, "gitlab-pat").await;

    // Every answer now takes a while, so that the restart's re-verifications queue up behind
    // two slots.
    h.gitlab.fault(None, Fault::Delay(Duration::from_millis(100)), None);
    h.gitlab.clear_requests();
    h.restart(Settings {
        max_concurrent_verifications: CONCURRENCY,
        max_in_flight_per_host: 0,
        ..Settings::default()
    });
    let started = |gitlab: &support::fake_providers::gitlab::FakeGitLab| -> Vec<Option<String>> {
        gitlab
            .requests()
            .iter()
            .filter(|r| r.path.starts_with("/api/v4/personal_access_tokens/self"))
            .map(|r| r.header("private-token").map(str::to_owned))
            .collect()
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    while started(&h.gitlab).len() < 2 * usize::from(CONCURRENCY) {
        assert!(tokio::time::Instant::now() < deadline, "the restart verified nothing");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    h.gitlab.add_token(NEW_TOKEN, TokenSpec::jane_doe());
    h.put_secret("new-pat", json!({"token": NEW_TOKEN})).await;
    let before = started(&h.gitlab).len();
    h.create_connection("new", "new", "new-pat", json!({})).await;
    h.wait_reason("new", "Verified").await;
    let order = started(&h.gitlab);
    let position = order
        .iter()
        .position(|token| token.as_deref() == Some(NEW_TOKEN))
        .expect("the new connection was verified");
    let ahead = position.saturating_sub(before);
    assert!(
        ahead <= 3 * usize::from(CONCURRENCY),
        "{ahead} re-verifications began between the new connection's creation and its own \
         verification (at most the ones in flight and about to start were expected); \
         {} of {READY_CONNECTIONS} were still due",
        READY_CONNECTIONS.saturating_sub(position)
    );

    // Postponed, not dropped: every Ready connection is verified again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let again = started(&h.gitlab)
            .iter()
            .filter(|token| token.as_deref() == Some(TOKEN))
            .count();
        if again >= READY_CONNECTIONS {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{again} of {READY_CONNECTIONS} re-verified"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Connections to one instance whose per-host cap is full are queued for it and woken by the
/// slot that frees, not looked at again on a timer: each is reconciled about twice (found the
/// instance busy, woken), where a look every 20–80 ms would add dozens while they wait.
#[tokio::test]
async fn a_busy_instance_wakes_its_queued_connections_as_slots_free() {
    const CONNECTIONS: usize = 6;
    let h = Harness::start_with(Settings {
        max_concurrent_verifications: 4,
        max_in_flight_per_host: 1,
        ..Settings::default()
    })
    .await;
    h.gitlab.fault(None, Fault::Delay(Duration::from_millis(150)), None);
    h.put_secret("gitlab-pat", json!({"token": TOKEN})).await;
    h.create_verified("queued", CONNECTIONS, "gitlab-pat").await;
    let metrics = h.metrics.encode();
    let reconciles: u64 = metrics
        .lines()
        .filter(|line| line.starts_with("gitprovider_reconciliations_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert!(
        reconciles >= CONNECTIONS as u64,
        "every connection was reconciled: {metrics}"
    );
    assert!(
        reconciles <= 3 * CONNECTIONS as u64,
        "{reconciles} reconciles for {CONNECTIONS} connections queued for one slot"
    );
    // A wake-up never verifies a connection a second time.
    let users = h
        .gitlab
        .requests()
        .iter()
        .filter(|r| r.path.split('?').next() == Some("/api/v4/user"))
        .count();
    assert_eq!(users, CONNECTIONS, "one verification each");
}

#[tokio::test]
async fn a_restarted_operator_verifies_a_bitbucket_data_center_token_in_one_round_trip() {
    let mut h = Harness::start().await;
    let bitbucket = support::fake_providers::FakeBitbucketServer::start().await;
    bitbucket.add_token("BBDC-one", TokenSpec::jane_doe());
    h.put_secret("bbdc-pat", json!({"token": "BBDC-one"})).await;
    let spec = json!({"provider": "Bitbucket", "url": bitbucket.url().as_str()});
    h.create_connection("bbdc", "dc", "bbdc-pat", spec).await;
    h.wait_reason("bbdc", "Verified").await;
    let writes = h.status_writes("bbdc");

    // A new process remembers neither the instance's version nor the token's user; the status
    // still names the user, so the details go out with the rest. The stand-in answers only when
    // all three requests are in flight together (else 503, and the connection would turn
    // ProviderError).
    bitbucket.answer_in_waves_of(Some(3));
    bitbucket.clear_requests();
    h.restart(Settings::default());
    support::eventually("the restarted operator writes the status", WAIT, || async {
        match h.status_writes("bbdc") {
            now if now > writes => Ok(()),
            _ => Err(format!("{writes} status writes, none since the restart")),
        }
    })
    .await;
    let conn = h.connections().get("bbdc").await.unwrap();
    let status = conn.status.expect("status");
    let ready = status.conditions.iter().find(|c| c.type_ == READY).expect("Ready");
    assert_eq!(ready.reason, "Verified", "{ready:?}");
    let user = status.authenticated_user.expect("user");
    assert_eq!(user.display_name.as_deref(), Some("Jane Doe"));
    let mut paths: Vec<String> = bitbucket.requests().into_iter().map(|r| r.path).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "/rest/api/1.0/application-properties",
            "/rest/api/1.0/repos?limit=1",
            "/rest/api/1.0/users/jdoe",
        ]
    );
}
