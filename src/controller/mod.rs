//! The controller: turns a connection and its Secret into a verified status.
//!
//! One reconcile = decide the Ready reason ([`evaluate`]: local checks → host slot →
//! credentials → verify), compute the status
//! ([`crate::status::next_status`]), write it only if something changed, record an Event when
//! Ready moved, and schedule the next verification (interval with jitter, or capped exponential
//! backoff for transient failures).
//!
//! What triggers a reconcile, and the queue that runs them, is [`crate::triggers`]'s job.

mod credentials;
mod evaluate;
mod outcome;
mod schedule;

pub use evaluate::evaluate;
pub use outcome::{Evaluation, Refusal, Stop};
pub use schedule::{backoff_delay, jittered, next_action};

use crate::api::{GitProviderConnection, GitProviderConnectionStatus, ReadyReason};
use crate::index::{ConnectionIndex, ObjectKey};
use crate::metrics::Metrics;
use crate::politeness::{Busy, HostLimiter, WakeUps};
use crate::priority::FirstInLine;
use crate::providers::Verification;
use crate::providers::http::HttpClient;
use crate::repositories;
use crate::status::{StatusContext, materially_changed, next_status, ready_transition, status_merge_patch};
use crate::throttle::Holds;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Name under which the operator writes status and records events.
pub const FIELD_MANAGER: &str = "gitprovider-operator";

/// Errors that stop a reconcile; they are retried by [`error_policy`]. Verification failures are
/// not errors: they are a status.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {what}: {cause}")]
    Read { what: String, cause: kube::Error },
    #[error("cannot write the status of {object}: {cause}")]
    WriteStatus { object: String, cause: kube::Error },
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
    /// for minutes (to turn repeats into a series) and scans that cache on each publish; Events
    /// here mark Ready transitions only, so the series aggregation is not worth its memory
    /// (BENCHMARKS.md, figures behind choices).
    pub reporter: Reporter,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    hosts: HostLimiter,
    /// Connections woken by a freed host slot, until the controller's queue takes them.
    wake_ups: Mutex<Option<WakeUps>>,
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
        let (hosts, wake_ups) = HostLimiter::waking(settings.max_in_flight_per_host);
        Context {
            reporter,
            client,
            http,
            index,
            metrics,
            hosts,
            wake_ups: Mutex::new(Some(wake_ups)),
            holds: Holds::default(),
            settings,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// The connections a freed host slot wakes (once: the controller's queue takes them).
    pub fn take_wake_ups(&self) -> Option<WakeUps> {
        self.wake_ups.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    /// Forgets what is kept about a deleted connection (its backoff count).
    pub fn forget(&self, key: &ObjectKey) {
        self.failures.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
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

/// One reconcile: evaluate, write the status if it changed, record the transition, requeue.
///
/// kube's applier polls every reconcile future from its own single task, so decoding Secrets,
/// building requests and parsing answers for all concurrent verifications would share one
/// core. Each reconcile runs as its own task instead; dropping the returned future (the
/// controller stopping, e.g. on lost leadership) aborts it as before.
pub async fn reconcile(
    conn: Arc<GitProviderConnection>,
    ctx: Arc<Context>,
    line: Arc<FirstInLine>,
) -> Result<Action, Error> {
    let task = AbortOnDrop(tokio::spawn(async move {
        let started = Instant::now();
        let key = ObjectKey::of(&conn);
        let result = reconcile_inner(&conn, &ctx, &key, &line).await;
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

async fn reconcile_inner(
    conn: &GitProviderConnection,
    ctx: &Context,
    key: &ObjectKey,
    line: &FirstInLine,
) -> Result<Action, Error> {
    // Until every connection is listed, "nobody else holds this name" cannot be trusted.
    if !ctx.index.is_synced() {
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    // A re-verification steps aside, holding nothing, while changes wait for their first one.
    let concurrency = usize::from(ctx.settings.max_concurrent_verifications);
    if let Some(delay) = line.give_way(key, conn, concurrency) {
        return Ok(Action::requeue(delay));
    }
    let was_waiting = line.take(key);
    let evaluation = match evaluate(conn, ctx).await {
        Ok(evaluation) => evaluation,
        Err(Stop::Refused(refusal)) => Evaluation::refused(refusal),
        // The instance already has its share in flight: the connection is queued for the host
        // and the next slot that frees wakes it, holding nothing meanwhile (and still ahead of
        // re-verifications if it was).
        Err(Stop::HostBusy(busy)) => {
            if was_waiting {
                line.mark(key.clone());
            }
            return Ok(Action::requeue(busy_fallback(&busy, &ctx.settings)));
        }
        Err(Stop::Failed(error)) => return Err(error),
    };
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

/// When a connection queued for a busy host is looked at again if no freed slot woke it first
/// (a slot woke a connection that then did not take it: it gave way, or was deleted). Long, as
/// the wake-up is what normally brings it back; longer the more are queued, so that a long
/// queue does not turn into a poll.
fn busy_fallback(busy: &Busy, settings: &Settings) -> Duration {
    let per_host = settings.max_in_flight_per_host.max(1) as u32;
    let drain = BUSY_SLOT_TIME * u32::try_from(busy.waiting).unwrap_or(u32::MAX) / per_host;
    drain
        .clamp(BUSY_FALLBACK_MIN, BUSY_FALLBACK_MAX)
        .mul_f64(1.0 + fastrand::f64() / 2.0)
}

/// A rough time one verification holds a host slot, to size [`busy_fallback`] to the queue.
const BUSY_SLOT_TIME: Duration = Duration::from_millis(100);
const BUSY_FALLBACK_MIN: Duration = Duration::from_secs(1);
const BUSY_FALLBACK_MAX: Duration = Duration::from_secs(60);

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
        cause: source,
    })?;
    Ok(())
}

/// Records the transition as an Event, off the reconcile's path: the status already says it,
/// and the verification slot is free one API round trip sooner.
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

/// Retries our own API errors quickly; verification outcomes never come here.
pub fn error_policy(conn: Arc<GitProviderConnection>, error: &Error, ctx: Arc<Context>) -> Action {
    tracing::warn!(connection = %ObjectKey::of(&conn), error = crate::api_server::describe(error), "reconcile failed; retrying");
    Action::requeue(ctx.settings.api_error_retry.mul_f64(0.5 + fastrand::f64()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_deleted_connection_starts_its_backoff_afresh() {
        let ctx = Context::new(
            Client::try_from(kube::Config::new("http://127.0.0.1:9".parse().unwrap())).unwrap(),
            HttpClient::new(crate::providers::http::HttpConfig::default()),
            Arc::new(ConnectionIndex::new(crate::index::UniquenessScope::Namespace)),
            Arc::new(Metrics::new()),
            Settings::default(),
            Reporter {
                controller: "test".into(),
                instance: None,
            },
        );
        let key = ObjectKey::new("n", "c");
        assert_eq!(ctx.note_failure(&key, true), 1);
        assert_eq!(ctx.note_failure(&key, true), 2);
        ctx.forget(&key);
        assert!(
            ctx.failures.lock().unwrap().is_empty(),
            "nothing kept for a deleted connection"
        );
        assert_eq!(ctx.note_failure(&key, true), 1);
    }

    #[test]
    fn truncates_on_char_boundary() {
        assert_eq!(truncate("héllo", 2), "h…");
        assert_eq!(truncate("abc", 5), "abc");
    }
}
