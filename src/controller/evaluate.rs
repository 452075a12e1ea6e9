//! Deciding a connection's Ready reason, as named steps: local checks → host slot → credentials
//! → verify. Each step either hands the next one what it needs or stops the evaluation with a
//! typed [`Stop`]; every Ready reason except the provider's own is decided here.

use super::Context;
use super::credentials::credentials;
use super::outcome::{Evaluation, Refusal, Stop};
use crate::api::{GitProviderConnection, ReadyReason};
use crate::duration::parse_verify_interval;
use crate::index::{ConnectionIndex, ObjectKey};
use crate::politeness::HostSlot;
use crate::providers::{Provider, Target, Verification, parse_base_url, provider};
use crate::repositories::{self, Apis};
use std::time::Instant;
use url::Url;

/// What the local checks found in order: the provider, the parsed URL and the instance the
/// requests go to (the per-host cap and rate-limit holds count by it).
pub(super) struct Checked {
    pub(super) provider: &'static dyn Provider,
    pub(super) base_url: Url,
    pub(super) instance: String,
}

/// Local checks → host slot → credentials → verify.
pub async fn evaluate(conn: &GitProviderConnection, ctx: &Context) -> Result<Evaluation, Stop> {
    let checked = local_checks(conn, &ctx.index)?;
    // After the local checks, so that suspended, duplicate and invalid connections never
    // compete for it; before the Secret is read, so that a busy instance costs no API request.
    let slot = ctx.hosts.acquire_or_queue(&checked.instance, &ObjectKey::of(conn))?;
    let target = credentials(conn, &ctx.client, checked.base_url.clone()).await?;
    Ok(verify(conn, ctx, &checked, target, slot).await)
}

/// What can be decided from the spec and the index alone.
pub(super) fn local_checks(conn: &GitProviderConnection, index: &ConnectionIndex) -> Result<Checked, Refusal> {
    let spec = &conn.spec;
    if spec.suspend {
        return Err(Refusal::new(
            ReadyReason::Suspended,
            "verification is suspended (spec.suspend is true)",
        ));
    }
    if let Some(holder) = index.duplicate_holder(conn) {
        return Err(Refusal::new(
            ReadyReason::DuplicateInstanceName,
            format!(
                "{} connection {} already holds instanceName {:?}; rename this one (spec.instanceName) or delete one of them",
                spec.provider,
                holder.key,
                spec.instance_name.trim()
            ),
        ));
    }
    let invalid = |message: String| Refusal::new(ReadyReason::InvalidSpec, message);
    let base_url = parse_base_url(&spec.url).map_err(|bad| invalid(bad.to_string()))?;
    parse_verify_interval(&spec.verify_interval).map_err(|error| invalid(format!("spec.verifyInterval: {error}")))?;
    let provider = provider(spec.provider);
    provider
        .check_spec(&base_url, spec.username.as_deref())
        .map_err(invalid)?;
    Ok(Checked {
        provider,
        instance: provider.api_host(&base_url),
        base_url,
    })
}

/// Asks the instance (unless it rate-limited this token), then looks the repositories up; the
/// host slot is given up as soon as the instance has answered.
async fn verify(
    conn: &GitProviderConnection,
    ctx: &Context,
    checked: &Checked,
    target: Target,
    slot: Option<HostSlot>,
) -> Evaluation {
    let spec = &conn.spec;
    let instance = &checked.instance;
    // The instance rate-limited this token (on this connection or another): not before the reset.
    if let Some(until) = ctx.holds.held_until(instance, &target.token) {
        return Evaluation {
            verification: Verification::rate_limited(
                format_args!("{instance} rate-limited this token until {until}"),
                until,
            ),
            contacted_provider: false,
            repositories: None,
        };
    }
    if target.tls.insecure_skip_verify {
        tracing::warn!(connection = %ObjectKey::of(conn), "TLS certificate verification is disabled by spec.tls.insecureSkipVerify");
    }
    let started = Instant::now();
    let verification = crate::providers::verify_within(checked.provider, &ctx.http, &target).await;
    // The look-ups go out in this verification's slot and in whichever others are free.
    let (verification, repositories) = if verification.reason == ReadyReason::Verified && !spec.repositories.is_empty()
    {
        let (concurrency, _extra_slots) = repositories::borrow_slots(&ctx.hosts, instance);
        let found = repositories::check_all(
            spec.provider,
            Apis::deployed(),
            &ctx.http,
            &target,
            &spec.repositories,
            concurrency,
        )
        .await;
        (found.readiness(verification), Some(found.repositories))
    } else {
        (verification, None)
    };
    drop(slot);
    if let Some(until) = verification.retry_at {
        ctx.holds.hold(instance, &target.token, until);
    }
    ctx.metrics
        .verification_done(spec.provider, verification.reason, started.elapsed());
    Evaluation {
        verification,
        contacted_provider: true,
        repositories,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::UniquenessScope;
    use crate::metrics::Metrics;
    use crate::providers::http::{HttpClient, HttpConfig};
    use kube::Client;
    use kube::runtime::events::Reporter;
    use std::sync::Arc;

    fn conn(name: &str, instance_name: &str) -> GitProviderConnection {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "gitprovider.dev/v1alpha1", "kind": "GitProviderConnection",
            "metadata": {"name": name, "namespace": "n", "uid": name, "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"provider": "GitLab", "instanceName": instance_name, "url": "https://gitlab.invalid",
                     "tokenSecretRef": {"name": "s"}}
        }))
        .unwrap()
    }

    /// A context whose API server and instance are never reached: a step that got that far
    /// would fail with an API error, not the Ready reason the tests expect.
    fn context(per_host: usize) -> Context {
        let config = kube::Config::new("http://127.0.0.1:9".parse().unwrap());
        let client = Client::try_from(config).unwrap();
        Context::new(
            client,
            HttpClient::new(HttpConfig::default()),
            Arc::new(ConnectionIndex::new(UniquenessScope::Namespace)),
            Arc::new(Metrics::new()),
            crate::controller::Settings {
                max_in_flight_per_host: per_host,
                ..Default::default()
            },
            Reporter {
                controller: "test".into(),
                instance: None,
            },
        )
    }

    fn refused(stop: Result<Evaluation, Stop>) -> ReadyReason {
        match stop {
            Err(Stop::Refused(refusal)) => refusal.reason,
            Err(Stop::HostBusy(_)) => panic!("competed for the host slot"),
            Err(Stop::Failed(error)) => panic!("went past the local checks: {error}"),
            Ok(evaluation) => panic!("verified: {:?}", evaluation.verification.reason),
        }
    }

    #[tokio::test]
    async fn local_refusals_do_not_compete_for_the_host_slot() {
        let ctx = context(1);
        let mut suspended = conn("suspended", "x");
        suspended.spec.suspend = true;
        let holder = conn("holder", "dup");
        let mut duplicate = conn("duplicate", "dup");
        duplicate.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            "2026-02-01T00:00:00Z".parse().unwrap(),
        ));
        ctx.index.apply(&holder);
        ctx.index.apply(&duplicate);
        let mut invalid = conn("invalid", "y");
        invalid.spec.verify_interval = "soon".into();

        // Every slot for the instance is taken.
        let instance = local_checks(&conn("other", "z"), &ctx.index).unwrap().instance;
        let _taken = ctx.hosts.try_acquire(&instance).unwrap();
        assert!(matches!(
            evaluate(&conn("other", "z"), &ctx).await,
            Err(Stop::HostBusy(_))
        ));

        assert_eq!(refused(evaluate(&suspended, &ctx).await), ReadyReason::Suspended);
        assert_eq!(
            refused(evaluate(&duplicate, &ctx).await),
            ReadyReason::DuplicateInstanceName
        );
        assert_eq!(refused(evaluate(&invalid, &ctx).await), ReadyReason::InvalidSpec);
    }

    #[test]
    fn local_checks_name_the_instance_the_requests_go_to() {
        let index = ConnectionIndex::new(UniquenessScope::Namespace);
        let mut github = conn("c", "x");
        github.spec.provider = crate::api::ProviderKind::GitHub;
        github.spec.url = "https://github.com".into();
        let checked = local_checks(&github, &index).unwrap();
        assert_eq!(checked.instance, "api.github.com:443");
        assert_eq!(checked.base_url.as_str(), "https://github.com/");
        github.spec.url = "ftp://github.com".into();
        let refusal = local_checks(&github, &index).err().unwrap();
        assert_eq!(refusal.reason, ReadyReason::InvalidSpec);
        assert!(refusal.message.contains("https://"), "{}", refusal.message);
    }
}
