//! The controller: turns a connection and its Secret into a verified status.
//!
//! One reconcile = decide the Ready reason ([`evaluate`]), compute the status
//! ([`crate::status::next_status`]), write it only if something changed, record an Event when
//! Ready moved, and schedule the next verification (interval with jitter, or capped exponential
//! backoff for transient failures).
//!
//! What triggers a reconcile, and the queue that runs them, is [`crate::triggers`]'s job.

use crate::api::{CaBundleKind, GitProviderConnection, GitProviderConnectionStatus, ReadyReason, RepositoryStatus};
use crate::duration::parse_verify_interval;
use crate::index::{ConnectionIndex, ObjectKey};
use crate::metrics::Metrics;
use crate::politeness::{Busy, HostLimiter};
use crate::providers::http::{HttpClient, TlsOptions};
use crate::providers::{Target, Verification, parse_base_url, provider};
use crate::repositories::{self, Apis};
use crate::status::{StatusContext, materially_changed, next_status, ready_transition, status_merge_patch};
use crate::throttle::{Holds, delay_until};
use crate::token::Token;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::OwnedSemaphorePermit;
use url::Url;

/// Name under which the operator writes status and records events.
pub const FIELD_MANAGER: &str = "gitprovider-operator";

/// Errors that stop a reconcile; they are retried by [`error_policy`]. Verification failures are
/// not errors: they are a status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {what}: {source}")]
    Read {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("cannot write the status of {object}: {source}")]
    WriteStatus {
        object: String,
        #[source]
        source: kube::Error,
    },
    #[error("the reconcile was cancelled (the runtime is shutting down)")]
    Cancelled,
}

/// Settings of the controller.
#[derive(Debug, Clone)]
pub struct Settings {
    /// TokenExpiringSoon turns True within this long of the expiry.
    pub expiry_warning: Duration,
    /// First retry delay after a transient failure (doubled per failure).
    pub backoff_base: Duration,
    /// Longest retry delay after transient failures (never longer than the interval).
    pub backoff_max: Duration,
    /// Retry delay after an API error of our own (reading a Secret, writing status).
    pub api_error_retry: Duration,
    /// Reconciles running at once (each verification is one of them).
    pub max_concurrent_verifications: u16,
    /// Verifications in flight against one host (0: no cap beyond the global one).
    pub max_in_flight_per_host: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            expiry_warning: Duration::from_secs(14 * 86_400),
            backoff_base: Duration::from_secs(10),
            backoff_max: Duration::from_secs(300),
            api_error_retry: Duration::from_secs(5),
            max_concurrent_verifications: 32,
            max_in_flight_per_host: 8,
        }
    }
}

/// Everything a reconcile needs.
pub struct Context {
    pub client: Client,
    pub http: HttpClient,
    pub index: Arc<ConnectionIndex>,
    /// Who records Events. A `Recorder` is made per Event: kube's keeps every Event it published
    /// for minutes (to turn repeats into a series), ~2.4 KB per connection whose Ready moved,
    /// and scans that cache on each publish; Events here mark Ready transitions only, so the
    /// series aggregation is not worth 24 MB at 10,000 connections.
    pub reporter: Reporter,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    hosts: HostLimiter,
    /// Tokens an instance rate-limited, held until its reset.
    holds: Holds,
    /// Consecutive transient failures per connection, for the backoff.
    failures: Mutex<HashMap<ObjectKey, u32>>,
}

impl Context {
    pub fn new(
        client: Client,
        http: HttpClient,
        index: Arc<ConnectionIndex>,
        metrics: Arc<Metrics>,
        settings: Settings,
        reporter: Reporter,
    ) -> Context {
        Context {
            reporter,
            client,
            http,
            index,
            metrics,
            hosts: HostLimiter::new(settings.max_in_flight_per_host),
            holds: Holds::default(),
            settings,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn note_failure(&self, key: &ObjectKey, transient: bool) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if transient {
            let count = failures.entry(key.clone()).or_insert(0);
            *count += 1;
            *count
        } else {
            failures.remove(key);
            0
        }
    }
}

/// The outcome of looking at a connection: the verification, whether the instance was asked,
/// and what the look-ups of spec.repositories found (when the token verified and some are listed).
pub struct Evaluation {
    pub verification: Verification,
    pub contacted_provider: bool,
    pub repositories: Option<Vec<RepositoryStatus>>,
}

impl Evaluation {
    fn local(reason: ReadyReason, message: impl Into<String>) -> Evaluation {
        Evaluation {
            verification: Verification::failed(reason, message),
            contacted_provider: false,
            repositories: None,
        }
    }
}

/// Decides the Ready reason of a connection, asking the provider only when everything local is
/// in order. This is where every Ready reason except the provider's own is decided.
/// `base_url` is `spec.url` parsed by [`parse_base_url`] (the caller needs it too); `slot` is
/// the connection's place under the per-host cap, given up as soon as the instance answered.
pub async fn evaluate(
    conn: &GitProviderConnection,
    ctx: &Context,
    base_url: Result<Url, String>,
    slot: Option<OwnedSemaphorePermit>,
) -> Result<Evaluation, Error> {
    let spec = &conn.spec;
    let namespace = conn.namespace().unwrap_or_default();
    if spec.suspend {
        return Ok(Evaluation::local(
            ReadyReason::Suspended,
            "verification is suspended (spec.suspend is true)",
        ));
    }
    if let Some(holder) = ctx.index.duplicate_holder(conn) {
        return Ok(Evaluation::local(
            ReadyReason::DuplicateInstanceName,
            format!(
                "{} connection {} already holds instanceName {:?}; rename this one (spec.instanceName) or delete one of them",
                spec.provider,
                holder.key,
                spec.instance_name.trim()
            ),
        ));
    }
    let base_url = match base_url {
        Ok(url) => url,
        Err(message) => return Ok(Evaluation::local(ReadyReason::InvalidSpec, message)),
    };
    if let Err(error) = parse_verify_interval(&spec.verify_interval) {
        return Ok(Evaluation::local(
            ReadyReason::InvalidSpec,
            format!("spec.verifyInterval: {error}"),
        ));
    }
    let provider = provider(spec.provider);
    if let Err(message) = provider.check_spec(&base_url, spec.username.as_deref()) {
        return Ok(Evaluation::local(ReadyReason::InvalidSpec, message));
    }

    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let secret_name = &spec.token_secret_ref.name;
    let key = &spec.token_secret_ref.key;
    let secret = match secrets.get_opt(secret_name).await {
        Ok(secret) => secret,
        // RBAC (e.g. a chart confined to other namespaces): the user can fix this, so say so.
        Err(kube::Error::Api(status)) if status.code == 403 => {
            return Ok(Evaluation::local(
                ReadyReason::SecretNotFound,
                format!(
                    "the operator is not allowed to read Secret {secret_name} in namespace {namespace}; grant it access (Helm value watchNamespaces) or move the connection"
                ),
            ));
        }
        Err(source) => {
            return Err(Error::Read {
                what: format!("Secret {namespace}/{secret_name}"),
                source,
            });
        }
    };
    let Some(secret) = secret else {
        return Ok(Evaluation::local(
            ReadyReason::SecretNotFound,
            format!(
                "Secret {secret_name} not found in namespace {namespace}; create it with the token under key {key:?}"
            ),
        ));
    };
    let token = secret
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .and_then(|value| Token::from_bytes(&value.0));
    let Some(token) = token else {
        return Ok(Evaluation::local(
            ReadyReason::SecretKeyNotFound,
            format!(
                "Secret {secret_name} has no non-empty key {key:?}; put the token there or set spec.tokenSecretRef.key"
            ),
        ));
    };

    let tls = spec.tls.clone().unwrap_or_default();
    let extra_ca_pem = match &tls.ca_bundle_ref {
        None => None,
        Some(ca) => match read_ca_bundle(ctx, &namespace, ca.kind, &ca.name, &ca.key).await? {
            Ok(pem) => Some(pem),
            Err(message) => return Ok(Evaluation::local(ReadyReason::InvalidSpec, message)),
        },
    };
    if let Some(pem) = &extra_ca_pem
        && let Err(error) = crate::providers::tls::parse_ca_bundle(pem)
    {
        let ca = tls.ca_bundle_ref.as_ref().map(|c| c.name.as_str()).unwrap_or_default();
        return Ok(Evaluation::local(
            ReadyReason::InvalidSpec,
            format!("CA bundle {ca}: {error}"),
        ));
    }
    if tls.insecure_skip_verify {
        tracing::warn!(connection = %ObjectKey::of(conn), "TLS certificate verification is disabled by spec.tls.insecureSkipVerify");
    }
    let target = Target {
        base_url,
        token,
        username: spec.username.clone(),
        tls: TlsOptions {
            extra_ca_pem,
            insecure_skip_verify: tls.insecure_skip_verify,
        },
    };
    // The instance rate-limited this token (on this connection or another): not before the reset.
    let instance = provider.api_host(&target.base_url);
    if let Some(until) = ctx.holds.held_until(&instance, &target.token) {
        return Ok(Evaluation {
            verification: Verification::rate_limited(
                format_args!("{instance} rate-limited this token until {until}"),
                until,
            ),
            contacted_provider: false,
            repositories: None,
        });
    }
    let started = Instant::now();
    let verification = crate::providers::verify_within(provider, &ctx.http, &target).await;
    // The look-ups go out in this verification's slot and in whichever others are free.
    let (verification, repositories) = if verification.reason == ReadyReason::Verified && !spec.repositories.is_empty()
    {
        let (concurrency, _extra_slots) = repositories::borrow_slots(&ctx.hosts, &instance);
        let found = repositories::check_all(
            spec.provider,
            Apis::deployed(),
            &ctx.http,
            &target,
            &spec.repositories,
            concurrency,
        )
        .await;
        (repositories::readiness(verification, &found), Some(found))
    } else {
        (verification, None)
    };
    drop(slot);
    if let Some(until) = verification.retry_at {
        ctx.holds.hold(&instance, &target.token, until);
    }
    ctx.metrics
        .verification_done(spec.provider, verification.reason, started.elapsed());
    Ok(Evaluation {
        verification,
        contacted_provider: true,
        repositories,
    })
}

/// Reads a PEM bundle from a ConfigMap or Secret; `Ok(Err(message))` for a bad reference.
async fn read_ca_bundle(
    ctx: &Context,
    namespace: &str,
    kind: CaBundleKind,
    name: &str,
    key: &str,
) -> Result<Result<String, String>, Error> {
    let read_error = |source| Error::Read {
        what: format!("{kind:?} {namespace}/{name}"),
        source,
    };
    let value = match kind {
        CaBundleKind::ConfigMap => {
            let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), namespace);
            let Some(map) = api.get_opt(name).await.map_err(read_error)? else {
                return Ok(Err(format!(
                    "CA bundle ConfigMap {name} not found in namespace {namespace}"
                )));
            };
            map.data.and_then(|d| d.get(key).cloned()).or_else(|| {
                map.binary_data
                    .and_then(|d| d.get(key).and_then(|b| String::from_utf8(b.0.clone()).ok()))
            })
        }
        CaBundleKind::Secret => {
            let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
            let Some(secret) = api.get_opt(name).await.map_err(read_error)? else {
                return Ok(Err(format!(
                    "CA bundle Secret {name} not found in namespace {namespace}"
                )));
            };
            secret
                .data
                .and_then(|d| d.get(key).and_then(|b| String::from_utf8(b.0.clone()).ok()))
        }
    };
    Ok(value
        .filter(|v| !v.trim().is_empty())
        .ok_or_else(|| format!("CA bundle {kind:?} {name} has no key {key:?}")))
}

/// One reconcile: evaluate, write the status if it changed, record the transition, requeue.
///
/// kube's applier polls every reconcile future from its own single task, so decoding Secrets,
/// building requests and parsing answers for all concurrent verifications would share one
/// core. Each reconcile runs as its own task instead; dropping the returned future (the
/// controller stopping, e.g. on lost leadership) aborts it as before.
pub async fn reconcile(conn: Arc<GitProviderConnection>, ctx: Arc<Context>) -> Result<Action, Error> {
    let task = AbortOnDrop(tokio::spawn(async move {
        let started = Instant::now();
        let key = ObjectKey::of(&conn);
        let result = reconcile_inner(&conn, &ctx, &key).await;
        ctx.metrics.reconcile_done(result.is_ok(), started.elapsed());
        result
    }));
    match task.await {
        Ok(result) => result,
        // A panic stays a panic, as it was when the reconcile ran inside the applier.
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(_) => Err(Error::Cancelled),
    }
}

/// A task handle that aborts the task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl<T> std::future::Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

async fn reconcile_inner(conn: &GitProviderConnection, ctx: &Context, key: &ObjectKey) -> Result<Action, Error> {
    // Until every connection is listed, "nobody else holds this name" cannot be trusted.
    if !ctx.index.is_synced() {
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    let base_url = parse_base_url(&conn.spec.url);
    // Taken before the Secret is read, so that a busy instance costs no API request; given
    // up when the instance answered (see [`evaluate`]).
    let slot = match &base_url {
        Ok(url) => match ctx.hosts.try_acquire(&provider(conn.spec.provider).api_host(url)) {
            Ok(slot) => slot,
            // The instance already has its share in flight: look again shortly, holding nothing.
            // Shortly: a busy host frees a slot every latency ÷ cap, and at the end of a burst
            // a long wait here is the whole tail (100–500 ms cost 0.2–0.3 s at 10,000 × 256).
            Err(Busy) => return Ok(Action::requeue(Duration::from_millis(20 + fastrand::u64(..60)))),
        },
        Err(_) => None,
    };
    let evaluation = evaluate(conn, ctx, base_url, slot).await?;
    let reason = evaluation.verification.reason;
    let previous = conn.status.as_ref();
    let status = next_status(
        StatusContext {
            previous,
            generation: conn.metadata.generation,
            now: jiff::Timestamp::now(),
            expiry_warning: ctx.settings.expiry_warning,
            contacted_provider: evaluation.contacted_provider,
            repositories: evaluation.repositories.as_deref(),
        },
        &evaluation.verification,
    );
    // Write when something changed, or to record the time of a verification the token passed.
    let changed = materially_changed(previous, &status);
    let token_passed = matches!(reason, ReadyReason::Verified | ReadyReason::RepositoryUnreadable);
    if changed || (evaluation.contacted_provider && token_passed) {
        write_status(conn, ctx, &status).await?;
    }
    if ready_transition(previous, &status) {
        publish_transition(conn, ctx, &evaluation.verification);
    }
    ctx.metrics.connection_status(key, conn.spec.provider, &status);

    // A look-up that failed on the instance's side is retried like the token's own failures.
    let transient = reason.is_transient()
        || evaluation
            .repositories
            .as_deref()
            .is_some_and(repositories::any_transient);
    let failures = ctx.note_failure(key, transient);
    Ok(next_action(
        conn,
        reason,
        failures,
        transient,
        evaluation.verification.retry_at,
        &ctx.settings,
    ))
}

async fn write_status(
    conn: &GitProviderConnection,
    ctx: &Context,
    status: &GitProviderConnectionStatus,
) -> Result<(), Error> {
    let namespace = conn.namespace().unwrap_or_default();
    let api: Api<GitProviderConnection> = Api::namespaced(ctx.client.clone(), &namespace);
    api.patch_status(
        &conn.name_any(),
        &PatchParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PatchParams::default()
        },
        &Patch::Merge(status_merge_patch(status)),
    )
    .await
    .map_err(|source| Error::WriteStatus {
        object: ObjectKey::of(conn).to_string(),
        source,
    })?;
    Ok(())
}

/// Records the transition as an Event, off the reconcile's path: the status already says it,
/// and the verification slot is free one API round trip sooner (with 256 verifications in flight
/// that round trip was a few ms of each ~55 ms verification).
fn publish_transition(conn: &GitProviderConnection, ctx: &Context, verification: &Verification) {
    let type_ = match verification.reason.condition_status() {
        "False" => EventType::Warning,
        _ => EventType::Normal,
    };
    let event = KubeEvent {
        type_,
        reason: verification.reason.as_str().to_owned(),
        note: Some(truncate(&verification.message, 1000)),
        action: "Verify".to_owned(),
        secondary: None,
    };
    let recorder = Recorder::new(ctx.client.clone(), ctx.reporter.clone());
    let reference = conn.object_ref(&());
    let key = ObjectKey::of(conn);
    tokio::spawn(async move {
        if let Err(error) = recorder.publish(&event, &reference).await {
            // An Event is a courtesy; the status already says it.
            tracing::warn!(connection = %key, %error, "cannot record an event");
        }
    });
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// When to look again: right after a rate limit's reset (`retry_at`), else by the reason.
pub fn next_action(
    conn: &GitProviderConnection,
    reason: ReadyReason,
    failures: u32,
    transient: bool,
    retry_at: Option<jiff::Timestamp>,
    settings: &Settings,
) -> Action {
    if let Some(until) = retry_at {
        return Action::requeue(delay_until(until));
    }
    match reason {
        // Nothing to do until the spec changes (or, for duplicates, the holder goes away:
        // the index triggers that).
        ReadyReason::Suspended | ReadyReason::DuplicateInstanceName => Action::await_change(),
        _ => {
            let interval = parse_verify_interval(&conn.spec.verify_interval).unwrap_or(Duration::from_secs(3600));
            if transient {
                Action::requeue(backoff_delay(failures, interval, settings))
            } else {
                Action::requeue(jittered(interval))
            }
        }
    }
}

/// Exponential backoff with full jitter on the upper half: base·2^(n-1), capped by
/// `backoff_max` and by the interval itself.
pub fn backoff_delay(failures: u32, interval: Duration, settings: &Settings) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    let raw = settings.backoff_base.saturating_mul(1u32 << exponent);
    let capped = raw.min(settings.backoff_max).min(interval);
    capped.mul_f64(0.5 + fastrand::f64() * 0.5)
}

/// The interval ±10%, so connections created together do not verify together forever.
pub fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(0.9 + fastrand::f64() * 0.2)
}

/// Retries our own API errors quickly; verification outcomes never come here.
pub fn error_policy(conn: Arc<GitProviderConnection>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(connection = %ObjectKey::of(&conn), %error, "reconcile failed; retrying");
    Action::requeue(ctx.settings.api_error_retry.mul_f64(0.5 + fastrand::f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(interval: &str) -> GitProviderConnection {
        let mut c: GitProviderConnection = serde_json::from_value(serde_json::json!({
            "apiVersion": "gitprovider.dev/v1alpha1", "kind": "GitProviderConnection",
            "metadata": {"name": "c", "namespace": "n"},
            "spec": {"provider": "GitLab", "instanceName": "x", "url": "https://g", "tokenSecretRef": {"name": "s"}}
        }))
        .unwrap();
        c.spec.verify_interval = interval.into();
        c
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let settings = Settings::default();
        let hour = Duration::from_secs(3600);
        for _ in 0..50 {
            let first = backoff_delay(1, hour, &settings);
            assert!(
                first >= Duration::from_secs(5) && first <= Duration::from_secs(10),
                "{first:?}"
            );
            let third = backoff_delay(3, hour, &settings);
            assert!(
                third >= Duration::from_secs(20) && third <= Duration::from_secs(40),
                "{third:?}"
            );
            let many = backoff_delay(30, hour, &settings);
            assert!(many <= settings.backoff_max, "{many:?}");
            let short = backoff_delay(30, Duration::from_secs(60), &settings);
            assert!(
                short <= Duration::from_secs(60),
                "never longer than the interval: {short:?}"
            );
        }
    }

    #[test]
    fn interval_is_jittered_within_ten_percent() {
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(3600));
            assert!(
                d >= Duration::from_secs(3240) && d <= Duration::from_secs(3960),
                "{d:?}"
            );
        }
    }

    #[test]
    fn actions_per_reason() {
        let settings = Settings::default();
        let c = conn("30m");
        assert_eq!(
            next_action(&c, ReadyReason::Suspended, 0, false, None, &settings),
            Action::await_change()
        );
        assert_eq!(
            next_action(&c, ReadyReason::DuplicateInstanceName, 0, false, None, &settings),
            Action::await_change()
        );
        let verified = format!(
            "{:?}",
            next_action(&c, ReadyReason::Verified, 0, false, None, &settings)
        );
        assert!(verified.contains("requeue_after: Some("), "{verified}");

        // A rate limit: right after its reset, not on the backoff (at most 10 s for a first
        // failure) nor the interval.
        let reset = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(100);
        let limited = next_action(&c, ReadyReason::ProviderError, 1, true, Some(reset), &settings);
        let backoff = Action::requeue(backoff_delay(1, Duration::from_secs(1800), &settings));
        assert_ne!(limited, backoff);
        for _ in 0..20 {
            let action = format!(
                "{:?}",
                next_action(&c, ReadyReason::ProviderError, 1, true, Some(reset), &settings)
            );
            let secs: f64 = action
                .split("requeue_after: Some(")
                .nth(1)
                .and_then(|rest| rest.split('s').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{action}"));
            assert!((99.0..=111.0).contains(&secs), "{action}");
        }
    }

    #[test]
    fn truncates_on_char_boundary() {
        assert_eq!(truncate("héllo", 2), "h…");
        assert_eq!(truncate("abc", 5), "abc");
    }
}
