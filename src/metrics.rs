//! Prometheus metrics. Labels name connections and providers, never a token.

use crate::api::{GitProviderConnectionStatus, ProviderKind, READY, ReadyReason};
use crate::index::ObjectKey;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerificationLabels {
    provider: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: &'static str,
}

/// Shared text, so that the two per-connection families hold one copy of each name.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabels {
    namespace: Arc<str>,
    name: Arc<str>,
    provider: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReviewLabels {
    operation: String,
    allowed: &'static str,
}

/// All metrics of the process, registered once.
pub struct Metrics {
    registry: Registry,
    reconciliations: Family<ResultLabels, Counter>,
    reconcile_duration: Histogram,
    verifications: Family<VerificationLabels, Counter>,
    verification_duration: Family<ProviderLabels, Histogram>,
    reviews: Family<ReviewLabels, Counter>,
    review_duration: Histogram,
    token_expiry: Family<ConnectionLabels, Gauge>,
    ready: Family<ConnectionLabels, Gauge>,
    suspended: Family<ConnectionLabels, Gauge>,
    // Per connection, not per path: paths are at most 100 per connection but unbounded across
    // connections, and which ones fail is in status.repositories.
    unreadable_repositories: Family<ConnectionLabels, Gauge>,
    /// The provider each connection's series are labelled with, so that a change of provider
    /// removes the old series instead of leaving them behind.
    providers: Mutex<HashMap<ObjectKey, ProviderKind>>,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// Registers metrics and hands them back, so that each is named where it is made.
struct Registering<'a>(&'a mut Registry);

impl Registering<'_> {
    fn metric<M: Metric + Clone>(&mut self, name: &str, help: &str, metric: M) -> M {
        self.0.register(name, help, metric.clone());
        metric
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("gitprovider");
        let mut register = Registering(&mut registry);
        let per_connection = Family::<ConnectionLabels, Gauge>::default;
        Metrics {
            reconciliations: register.metric("reconciliations", "Reconciliations by result", Family::default()),
            reconcile_duration: register.metric(
                "reconcile_duration_seconds",
                "Duration of reconciliations",
                latency_histogram(),
            ),
            verifications: register.metric(
                "verifications",
                "Token verifications against providers, by provider and Ready reason",
                Family::default(),
            ),
            verification_duration: register.metric(
                "verification_duration_seconds",
                "Duration of token verifications, by provider",
                Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            ),
            reviews: register.metric(
                "webhook_reviews",
                "Admission reviews by operation and outcome",
                Family::default(),
            ),
            review_duration: register.metric(
                "webhook_review_duration_seconds",
                "Time to answer an admission review",
                latency_histogram(),
            ),
            token_expiry: register.metric(
                "token_expiry_timestamp_seconds",
                "When each connection's token expires (Unix time), where the provider reveals it",
                per_connection(),
            ),
            ready: register.metric(
                "connection_ready",
                "1 when the connection's Ready condition is True",
                per_connection(),
            ),
            // Beside `ready` (0 for a suspended connection too), so that an alert on `ready == 0`
            // can leave out deliberate suspensions.
            suspended: register.metric(
                "connection_suspended",
                "1 when the connection is suspended (spec.suspend: Ready is Unknown, reason Suspended)",
                per_connection(),
            ),
            unreadable_repositories: register.metric(
                "connection_unreadable_repositories",
                "How many of the connection's spec.repositories the token cannot read (only connections that list some, after the token verified)",
                per_connection(),
            ),
            providers: Mutex::new(HashMap::new()),
            registry,
        }
    }

    pub fn reconcile_done(&self, ok: bool, took: Duration) {
        let result = if ok { "success" } else { "error" };
        self.reconciliations.get_or_create(&ResultLabels { result }).inc();
        self.reconcile_duration.observe(took.as_secs_f64());
    }

    pub fn verification_done(&self, provider: ProviderKind, reason: ReadyReason, took: Duration) {
        self.verifications
            .get_or_create(&VerificationLabels {
                provider: provider.as_str(),
                reason: reason.as_str(),
            })
            .inc();
        self.verification_duration
            .get_or_create(&ProviderLabels {
                provider: provider.as_str(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn review_done(&self, operation: &str, allowed: bool, took: Duration) {
        self.reviews
            .get_or_create(&ReviewLabels {
                operation: operation.to_owned(),
                allowed: if allowed { "true" } else { "false" },
            })
            .inc();
        self.review_duration.observe(took.as_secs_f64());
    }

    fn labels(key: &ObjectKey, provider: ProviderKind) -> ConnectionLabels {
        ConnectionLabels {
            namespace: key.namespace.as_str().into(),
            name: key.name.as_str().into(),
            provider: provider.as_str(),
        }
    }

    /// Records a connection's Ready and expiry after a reconcile.
    pub fn connection_status(&self, key: &ObjectKey, provider: ProviderKind, status: &GitProviderConnectionStatus) {
        let previous = self
            .providers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.clone(), provider);
        if let Some(previous) = previous.filter(|p| *p != provider) {
            self.remove_series(key, previous);
        }
        let labels = Self::labels(key, provider);
        let condition = status.conditions.iter().find(|c| c.type_ == READY);
        let ready = condition.is_some_and(|c| c.status == "True");
        let suspended = condition.is_some_and(|c| c.reason == ReadyReason::Suspended.as_str());
        self.ready.get_or_create(&labels).set(i64::from(ready));
        self.suspended.get_or_create(&labels).set(i64::from(suspended));
        match &status.token_expires_at {
            Some(at) => {
                self.token_expiry.get_or_create(&labels).set(at.0.as_second());
            }
            None => {
                self.token_expiry.remove(&labels);
            }
        }
        match &status.repositories {
            Some(repositories) => {
                let unreadable = repositories.iter().filter(|r| !r.readable).count();
                self.unreadable_repositories
                    .get_or_create(&labels)
                    .set(i64::try_from(unreadable).unwrap_or(i64::MAX));
            }
            None => {
                self.unreadable_repositories.remove(&labels);
            }
        }
    }

    /// Forgets a deleted connection (and any provider it had).
    pub fn connection_deleted(&self, key: &ObjectKey, provider: ProviderKind) {
        let recorded = self.providers.lock().unwrap_or_else(|p| p.into_inner()).remove(key);
        if let Some(recorded) = recorded.filter(|p| *p != provider) {
            self.remove_series(key, recorded);
        }
        self.remove_series(key, provider);
    }

    fn remove_series(&self, key: &ObjectKey, provider: ProviderKind) {
        let labels = Self::labels(key, provider);
        self.ready.remove(&labels);
        self.suspended.remove(&labels);
        self.token_expiry.remove(&labels);
        self.unreadable_repositories.remove(&labels);
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(error) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(%error, "cannot encode metrics");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

    /// A `Ready` condition with `status` and `reason`, last changed `at`.
    fn ready(status: &str, reason: &str, at: jiff::Timestamp) -> Condition {
        Condition {
            type_: READY.into(),
            status: status.into(),
            reason: reason.into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: Time(at),
        }
    }

    /// The series `metric` of connection team-a/`name` as the exposition writes it, before
    /// its value.
    fn series(metric: &str, name: &str, provider: &str) -> String {
        format!(r#"gitprovider_{metric}{{namespace="team-a",name="{name}",provider="{provider}"}}"#)
    }

    /// Deleting `key`, last seen as a connection of `provider`, leaves none of its series.
    fn assert_deleted_without_trace(metrics: &Metrics, key: &ObjectKey, provider: ProviderKind) {
        metrics.connection_deleted(key, provider);
        let text = metrics.encode();
        assert!(!text.contains(&format!(r#"name="{}""#, key.name)), "{text}");
    }

    #[test]
    fn unreadable_repositories_per_connection() {
        use crate::api::{RepositoryReason, RepositoryStatus};
        let metrics = Metrics::new();
        let key = ObjectKey::new("team-a", "gh");
        let entry = |path: &str, readable: bool| RepositoryStatus {
            path: path.into(),
            readable,
            reason: (!readable).then_some(RepositoryReason::NotFound),
            ..Default::default()
        };
        let mut status = GitProviderConnectionStatus {
            repositories: Some(vec![entry("a/1", true), entry("a/2", false), entry("a/3", false)]),
            ..Default::default()
        };
        metrics.connection_status(&key, ProviderKind::GitHub, &status);
        let line = series("connection_unreadable_repositories", "gh", "GitHub");
        assert!(metrics.encode().contains(&format!("{line} 2")), "{}", metrics.encode());
        assert!(!metrics.encode().contains("a/2"), "no path labels");
        status.repositories = None;
        metrics.connection_status(&key, ProviderKind::GitHub, &status);
        assert!(!metrics.encode().contains(&line), "gone once nothing is listed");
    }

    #[test]
    fn exposes_connection_gauges_and_forgets_deleted() {
        let metrics = Metrics::new();
        let key = ObjectKey::new("team-a", "gl");
        let at = jiff::Timestamp::from_second(1_800_000_000).unwrap();
        let status = GitProviderConnectionStatus {
            token_expires_at: Some(Time(at)),
            conditions: vec![ready("True", "Verified", at)],
            ..Default::default()
        };
        metrics.connection_status(&key, ProviderKind::GitLab, &status);
        metrics.verification_done(ProviderKind::GitLab, ReadyReason::Verified, Duration::from_millis(3));
        metrics.reconcile_done(true, Duration::from_millis(4));
        metrics.review_done("CREATE", false, Duration::from_micros(300));
        let text = metrics.encode();
        let gauge = |metric: &str, value: &str| format!("{} {value}", series(metric, "gl", "GitLab"));
        assert!(text.contains(&gauge("connection_ready", "1")), "{text}");
        assert!(text.contains(&gauge("token_expiry_timestamp_seconds", "1800000000")));
        assert!(text.contains(r#"gitprovider_verifications_total{provider="GitLab",reason="Verified"} 1"#));
        assert!(text.contains(r#"gitprovider_reconciliations_total{result="success"} 1"#));
        assert!(text.contains(r#"gitprovider_webhook_reviews_total{operation="CREATE",allowed="false"} 1"#));
        assert!(text.contains(&gauge("connection_suspended", "0")));
        assert_deleted_without_trace(&metrics, &key, ProviderKind::GitLab);
    }

    #[test]
    fn a_change_of_provider_leaves_no_series_behind() {
        let metrics = Metrics::new();
        let key = ObjectKey::new("team-a", "moved");
        let status = GitProviderConnectionStatus {
            token_expires_at: Some(Time("2027-01-15T08:00:00Z".parse().unwrap())),
            ..Default::default()
        };
        metrics.connection_status(&key, ProviderKind::GitLab, &status);
        metrics.connection_status(&key, ProviderKind::GitHub, &status);
        let text = metrics.encode();
        assert!(!text.contains(r#"name="moved",provider="GitLab""#), "{text}");
        assert!(
            text.contains(&format!("{} 0", series("connection_ready", "moved", "GitHub"))),
            "{text}"
        );
        // Deleted under the provider its spec had last (the one the index knows).
        assert_deleted_without_trace(&metrics, &key, ProviderKind::GitLab);
    }

    /// A suspended connection is not Ready (0) and says why: the PrometheusRule's
    /// GitProviderConnectionNotReady leaves it out through `gitprovider_connection_suspended`.
    #[test]
    fn suspended_connections_are_marked() {
        let metrics = Metrics::new();
        let key = ObjectKey::new("team-a", "paused");
        let line = |family: &str, value: u8| format!("{} {value}", series(family, "paused", "Gitea"));
        // (Ready's status and reason, the ready gauge, the suspended gauge)
        for (status, reason, ready_value, suspended) in [
            ("Unknown", "Suspended", 0, 1),
            ("False", "Unauthorized", 0, 0),
            ("True", "Verified", 1, 0),
        ] {
            let status = GitProviderConnectionStatus {
                conditions: vec![ready(status, reason, jiff::Timestamp::UNIX_EPOCH)],
                ..Default::default()
            };
            metrics.connection_status(&key, ProviderKind::Gitea, &status);
            let text = metrics.encode();
            assert!(
                text.contains(&line("connection_ready", ready_value))
                    && text.contains(&line("connection_suspended", suspended)),
                "{reason}: {text}"
            );
        }
    }
}
