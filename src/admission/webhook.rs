//! The validating admission webhook: `POST /validate` over HTTPS, `admission.k8s.io/v1`.
//!
//! On CREATE and UPDATE of a `GitProviderConnection` it applies [`rules`](super::rules):
//! the spec rules and the uniqueness rule against the in-memory [`ConnectionIndex`] (never a
//! LIST of the API), answers with every problem in one denial message and with the risky-but-legal
//! findings as `warnings`. DELETE and CONNECT are allowed untouched; a review of another kind is
//! denied (the webhook configuration is wrong); a body that is not an AdmissionReview is answered
//! with HTTP 400.
//!
//! # Staleness and races
//!
//! The index is fed by the watch, so it lags the API server by the time an event takes to arrive
//! (milliseconds; longer while a watch reconnects and relists). Two things follow:
//!
//! - **Two creates of the same name racing inside that window** would both pass a check against
//!   the index alone. The webhook therefore keeps short-lived *reservations*: a CREATE (or an UPDATE
//!   that takes a new name) that it allows, unless dry-run, reserves `(scope, provider, normalised
//!   name)` for the requesting `namespace/name` for [`DEFAULT_RESERVATION_TTL`]. The check and the
//!   reservation happen under one lock, so of N concurrent creates of one name exactly one is
//!   allowed and the others are denied naming it. The index supersedes a reservation as soon as it
//!   shows the reserved object (for an UPDATE: with the reserved name or a newer generation), after
//!   which the index alone answers. A connection holds at most one reservation: taking another name
//!   releases the previous one. A create by `generateName` (no name yet) is checked against the
//!   index and the reservations but reserves nothing, since it has no identity to reserve for.
//! - **What still slips through** is healed behind the door by the controller, which marks the
//!   younger of two holders `DuplicateInstanceName` (the older keeps the name, by creationTimestamp
//!   then uid). That covers: several webhook replicas (reservations are per process), a restart
//!   inside the window, a watch that is behind by more than the TTL, objects created while the
//!   webhook was bypassed (failurePolicy, `--validate=false` on an older cluster, etc.).
//! - **The opposite error** (a stale entry denying a free name) lasts at most until the index
//!   catches up: for a reservation, a create that the API server then rejected for another reason,
//!   or an object created and deleted within the TTL, keeps the name blocked for up to the TTL; the
//!   denial message says how old the reservation is and that it expires.
//!
//! Until the index has finished its first list ([`ConnectionIndex::is_synced`]) the webhook is
//! not ready, and a review that needs the uniqueness rule is answered with HTTP 503 so that the
//! API server applies the webhook's failurePolicy instead of trusting an empty index.

use super::confirm::{CONFIRM_AFTER, Confirm};
use super::decision::{Deferral, Rejection, Unconfirmed, Verdict, decide};
use super::reservations::{DEFAULT_RESERVATION_TTL, Ledger};
use super::review::{answer, decode, operation_name};
use super::tls::CertStore;
use crate::index::ConnectionIndex;
use crate::metrics::Metrics;
use kube::core::DynamicObject;
use kube::core::admission::AdmissionReview;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The webhook's state: the live index, metrics, the serving certificate and the reservations.
pub struct Webhook {
    index: Arc<ConnectionIndex>,
    metrics: Arc<Metrics>,
    certs: Arc<CertStore>,
    ledger: Ledger,
    confirm: Option<Arc<dyn Confirm>>,
}

/// Confirmations one review may ask for before a reservation's word is taken as it is.
const MAX_CONFIRMATIONS: u32 = 3;

impl Webhook {
    pub fn new(index: Arc<ConnectionIndex>, metrics: Arc<Metrics>, certs: Arc<CertStore>) -> Arc<Webhook> {
        Webhook::with_reservation_ttl(index, metrics, certs, DEFAULT_RESERVATION_TTL)
    }

    pub fn with_reservation_ttl(
        index: Arc<ConnectionIndex>,
        metrics: Arc<Metrics>,
        certs: Arc<CertStore>,
        reservation_ttl: Duration,
    ) -> Arc<Webhook> {
        Webhook::assemble(index, metrics, certs, reservation_ttl, None)
    }

    /// A webhook that asks `confirm` before a reservation alone denies a review (see
    /// [`super::confirm`]): what the operator runs.
    pub fn confirmed_by(
        index: Arc<ConnectionIndex>,
        metrics: Arc<Metrics>,
        certs: Arc<CertStore>,
        reservation_ttl: Duration,
        confirm: Arc<dyn Confirm>,
    ) -> Arc<Webhook> {
        Webhook::assemble(index, metrics, certs, reservation_ttl, Some(confirm))
    }

    fn assemble(
        index: Arc<ConnectionIndex>,
        metrics: Arc<Metrics>,
        certs: Arc<CertStore>,
        reservation_ttl: Duration,
        confirm: Option<Arc<dyn Confirm>>,
    ) -> Arc<Webhook> {
        Arc::new(Webhook {
            index,
            metrics,
            certs,
            ledger: Ledger::new(reservation_ttl),
            confirm,
        })
    }

    /// The certificate store the server resolves through (feed it with `set` or `watch_files`).
    pub fn certs(&self) -> &Arc<CertStore> {
        &self.certs
    }

    pub fn index(&self) -> &Arc<ConnectionIndex> {
        &self.index
    }

    /// Ready to answer: the index has finished its first list and a certificate is loaded.
    pub fn is_ready(&self) -> bool {
        self.index.is_synced() && self.certs.is_loaded()
    }

    /// Reservations not yet expired nor superseded by the index (for tests and diagnostics).
    pub fn live_reservations(&self) -> usize {
        self.ledger.live(&self.index)
    }

    /// Answers one review body: the HTTP-free core of `POST /validate`, and the one way in for
    /// the server, the tests and the fuzz targets alike.
    pub async fn review_body(&self, body: &[u8]) -> Result<AdmissionReview<DynamicObject>, Rejection> {
        let decoded = decode(body)?;
        let started = Instant::now();
        let subject = decoded.request.subject();
        let mut confirmations = 0;
        let mut ignore_from = None;
        let decision = loop {
            let deferral = Deferral {
                may_defer: self.confirm.is_some() && confirmations < MAX_CONFIRMATIONS,
                ignore_from,
            };
            match decide(&subject, &self.index, &self.ledger, deferral)? {
                Verdict::Decided(decision) => break decision,
                Verdict::Unconfirmed(unconfirmed) => {
                    confirmations += 1;
                    let waited_from = Instant::now();
                    if self.confirm_reservation(unconfirmed).await {
                        // the reservation stands: decide once more, taking its word
                        confirmations = MAX_CONFIRMATIONS;
                    } else {
                        ignore_from.get_or_insert(waited_from);
                    }
                }
            }
        };
        self.metrics.review_done(
            operation_name(&decoded.request.operation),
            decision.allowed,
            started.elapsed(),
        );
        Ok(answer(decoded, decision))
    }

    /// Waits until the reservation is [`CONFIRM_AFTER`] old, then asks the API server about the
    /// reserved object: released when it is absent or claims another name. Whether it stands.
    async fn confirm_reservation(&self, unconfirmed: Unconfirmed) -> bool {
        let Some(confirm) = &self.confirm else {
            return true;
        };
        tokio::time::sleep_until((unconfirmed.at + CONFIRM_AFTER).into()).await;
        if self.index.claim_of(&unconfirmed.holder).is_some() {
            // the watch delivered it meanwhile: the index answers from now on
            return false;
        }
        match confirm.current_claim(&unconfirmed.holder).await {
            Ok(Some(claim)) if claim == unconfirmed.instance => true,
            Ok(_) => {
                tracing::info!(holder = %unconfirmed.holder, "releasing a reservation for an object that was not created");
                self.ledger
                    .release(&unconfirmed.instance, &unconfirmed.holder, unconfirmed.at);
                false
            }
            Err(error) => {
                tracing::warn!(holder = %unconfirmed.holder, %error, "cannot confirm a reservation; it stands");
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::confirm::Confirm;
    use crate::admission::decision::Decision;
    use crate::admission::reservations::{SWEEP_EVERY, SWEEP_STEP};
    use crate::api::{GitProviderConnection, GitProviderConnectionSpec, ProviderKind};
    use crate::index::{InstanceKey, ObjectKey, UniquenessScope};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use kube::core::admission::{AdmissionRequest, AdmissionResponse};
    use serde_json::{Value, json};

    fn spec_json(provider: &str, instance: &str) -> Value {
        json!({
            "provider": provider,
            "instanceName": instance,
            "url": "https://git.example.com",
            "tokenSecretRef": {"name": "pat", "key": "token"},
        })
    }

    fn request(op: &str, ns: &str, name: &str, spec: Value, old: Option<(Value, i64)>, dry_run: bool) -> Vec<u8> {
        let object = |spec: Value, generation: i64| {
            json!({
                "apiVersion": "gitprovider.dev/v1alpha1",
                "kind": "GitProviderConnection",
                "metadata": {"name": name, "namespace": ns, "generation": generation},
                "spec": spec,
            })
        };
        let review = json!({
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": "u-1",
                "kind": {"group": "gitprovider.dev", "version": "v1alpha1", "kind": "GitProviderConnection"},
                "resource": {"group": "gitprovider.dev", "version": "v1alpha1", "resource": "gitproviderconnections"},
                "name": name,
                "namespace": ns,
                "operation": op,
                "userInfo": {"username": "tester"},
                "object": object(spec, old.as_ref().map_or(1, |(_, g)| g + 1)),
                "oldObject": old.map(|(spec, generation)| object(spec, generation)),
                "dryRun": dry_run,
            }
        });
        serde_json::to_vec(&review).unwrap()
    }

    /// The decision carried by the answer to `body`, through [`Webhook::review_body`].
    fn decide(hook: &Webhook, body: &[u8]) -> Result<Decision, Rejection> {
        let response = futures::executor::block_on(hook.review_body(body))?.response.unwrap();
        Ok(Decision {
            allowed: response.allowed,
            message: response.result.message,
            warnings: response.warnings.unwrap_or_default(),
        })
    }

    fn create(ns: &str, name: &str, provider: &str, instance: &str) -> Vec<u8> {
        request("CREATE", ns, name, spec_json(provider, instance), None, false)
    }

    /// An update of GitLab connection `ns/name` from instance `old` (at `generation`) to `new`.
    fn gitlab_update(ns: &str, name: &str, new: &str, (old, generation): (&str, i64)) -> Vec<u8> {
        let old = Some((spec_json("GitLab", old), generation));
        request("UPDATE", ns, name, spec_json("GitLab", new), old, false)
    }

    /// The decision on `body` is a denial whose message contains `expected`.
    fn assert_denied_with(hook: &Webhook, body: &[u8], expected: &str) {
        let denied = decide(hook, body).unwrap();
        assert!(!denied.allowed, "{expected}");
        assert!(denied.message.contains(expected), "{}", denied.message);
    }

    fn stored(ns: &str, name: &str, provider: ProviderKind, instance: &str, generation: i64) -> GitProviderConnection {
        let mut c = GitProviderConnection::new(
            name,
            GitProviderConnectionSpec::new(provider, instance, "https://git.example.com", "pat"),
        );
        c.metadata.namespace = Some(ns.into());
        c.metadata.uid = Some(format!("uid-{name}"));
        c.metadata.generation = Some(generation);
        c.metadata.creation_timestamp = Some(Time(jiff::Timestamp::from_second(1_000).unwrap()));
        c
    }

    fn webhook(scope: UniquenessScope, ttl: Duration) -> Arc<Webhook> {
        let index = Arc::new(ConnectionIndex::new(scope));
        index.partition_synced(None);
        Webhook::with_reservation_ttl(index, Arc::new(Metrics::new()), CertStore::new(), ttl)
    }

    #[test]
    fn a_racing_create_is_denied_by_the_reservation() {
        let hook = webhook(UniquenessScope::Namespace, DEFAULT_RESERVATION_TTL);
        assert!(decide(&hook, &create("a", "first", "GitLab", "main")).unwrap().allowed);
        assert_eq!(hook.live_reservations(), 1);
        let denied = decide(&hook, &create("a", "second", "GitLab", " MAIN")).unwrap();
        assert!(!denied.allowed);
        assert!(
            denied
                .message
                .starts_with("instanceName \"MAIN\" is already used by GitLab connection a/first; choose another"),
            "{}",
            denied.message
        );
        assert!(
            denied
                .message
                .contains("a/first was admitted 0s ago and is not visible to the operator yet")
        );
        // the same object again (a retried request) is fine; other providers and namespaces too
        assert!(decide(&hook, &create("a", "first", "GitLab", "main")).unwrap().allowed);
        assert!(decide(&hook, &create("a", "gh", "GitHub", "main")).unwrap().allowed);
        assert!(decide(&hook, &create("b", "first", "GitLab", "main")).unwrap().allowed);
    }

    #[test]
    fn dry_run_reserves_nothing() {
        let hook = webhook(UniquenessScope::Namespace, DEFAULT_RESERVATION_TTL);
        let dry = request("CREATE", "a", "first", spec_json("GitLab", "main"), None, true);
        assert!(decide(&hook, &dry).unwrap().allowed);
        assert_eq!(hook.live_reservations(), 0);
        assert!(decide(&hook, &create("a", "second", "GitLab", "main")).unwrap().allowed);
    }

    #[test]
    fn reservations_expire() {
        let hook = webhook(UniquenessScope::Namespace, Duration::from_millis(50));
        assert!(decide(&hook, &create("a", "first", "GitLab", "main")).unwrap().allowed);
        assert!(!decide(&hook, &create("a", "second", "GitLab", "main")).unwrap().allowed);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(hook.live_reservations(), 0);
        assert!(decide(&hook, &create("a", "second", "GitLab", "main")).unwrap().allowed);
    }

    #[test]
    fn the_index_supersedes_a_reservation_for_good() {
        let hook = webhook(UniquenessScope::Namespace, DEFAULT_RESERVATION_TTL);
        assert!(decide(&hook, &create("a", "first", "GitLab", "main")).unwrap().allowed);
        let first = stored("a", "first", ProviderKind::GitLab, "main", 1);
        hook.index().apply(&first);
        assert_eq!(hook.live_reservations(), 0);
        let denied = decide(&hook, &create("a", "second", "GitLab", "main")).unwrap();
        assert!(!denied.allowed);
        assert!(
            !denied.message.contains("admitted"),
            "the index answers now: {}",
            denied.message
        );
        // once the index forgot the deleted holder, the name is free: the reservation is gone
        hook.index().remove(&ObjectKey::of(&first));
        assert!(decide(&hook, &create("a", "second", "GitLab", "main")).unwrap().allowed);
    }

    /// The answer built the typed way (kube's `AdmissionResponse::from(&AdmissionRequest)`),
    /// carrying the decision `hook` makes.
    fn typed_review_body(hook: &Webhook, body: &[u8]) -> Value {
        let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body).unwrap();
        let request: AdmissionRequest<DynamicObject> = review.try_into().unwrap();
        let decision = decide(hook, body).unwrap();
        let mut response = AdmissionResponse::from(&request);
        if !decision.allowed {
            response = response.deny(decision.message);
        }
        if !decision.warnings.is_empty() {
            response.warnings = Some(decision.warnings);
        }
        serde_json::to_value(response.into_review()).unwrap()
    }

    #[test]
    fn the_lean_body_answers_as_the_typed_review_does() {
        let review = |op: &str, name: &str, spec: Value, old: Option<Value>, kind: &str, extra: Value| {
            let object = |spec: Value, generation: i64| {
                json!({
                    "apiVersion": "gitprovider.dev/v1alpha1",
                    "kind": "GitProviderConnection",
                    "metadata": {"name": name, "namespace": "a", "generation": generation, "uid": "o-1",
                                 "labels": {"x": "y"}, "managedFields": [{"manager": "kubectl"}]},
                    "spec": spec,
                    "status": {"conditions": []},
                })
            };
            let mut request = json!({
                "uid": format!("u-{name}"),
                "kind": {"group": "gitprovider.dev", "version": "v1alpha1", "kind": kind},
                "resource": {"group": "gitprovider.dev", "version": "v1alpha1", "resource": "gitproviderconnections"},
                "name": name,
                "namespace": "a",
                "operation": op,
                "userInfo": {"username": "tester", "groups": ["system:authenticated"], "extra": {"k": ["v"]}},
                "object": object(spec, 2),
                "oldObject": old.map(|spec| object(spec, 1)),
                "dryRun": false,
                "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
            });
            for (k, v) in extra.as_object().unwrap() {
                request[k] = v.clone();
            }
            serde_json::to_vec(
                &json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}),
            )
            .unwrap()
        };
        let gvk = "GitProviderConnection";
        let mut short = spec_json("GitLab", "x");
        short["verifyInterval"] = json!("10s");
        let bodies = [
            review("CREATE", "new", spec_json("GitLab", "free"), None, gvk, json!({})),
            review("CREATE", "dup", spec_json("GitLab", " X "), None, gvk, json!({})),
            review("CREATE", "both", short.clone(), None, gvk, json!({})),
            review("CREATE", "nul", Value::Null, None, gvk, json!({})),
            review("CREATE", "bad", json!({"provider": "Gitlab"}), None, gvk, json!({})),
            review("UPDATE", "old", short.clone(), Some(short), gvk, json!({})),
            review(
                "UPDATE",
                "old",
                spec_json("GitLab", "y"),
                Some(spec_json("GitLab", "x")),
                gvk,
                json!({}),
            ),
            review("DELETE", "old", spec_json("GitLab", "x"), None, gvk, json!({})),
            review("CREATE", "pod", spec_json("GitLab", "z"), None, "Pod", json!({})),
            review(
                "UPDATE",
                "old",
                spec_json("GitLab", "q"),
                Some(spec_json("GitLab", "x")),
                gvk,
                json!({"subResource": "status"}),
            ),
            review(
                "CREATE",
                "dry",
                spec_json("GitLab", "d"),
                None,
                gvk,
                json!({"dryRun": true}),
            ),
            review("CREATE", "", spec_json("GitLab", "g"), None, gvk, json!({"name": ""})),
        ];
        // two webhooks with the same index content, so that reservations match as well
        let (lean, typed) = (
            webhook(UniquenessScope::Namespace, DEFAULT_RESERVATION_TTL),
            webhook(UniquenessScope::Namespace, DEFAULT_RESERVATION_TTL),
        );
        for hook in [&lean, &typed] {
            hook.index().apply(&stored("a", "old", ProviderKind::GitLab, "x", 1));
        }
        for body in &bodies {
            let answer = serde_json::to_value(futures::executor::block_on(lean.review_body(body)).unwrap()).unwrap();
            assert_eq!(
                answer,
                typed_review_body(&typed, body),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        assert_eq!(lean.live_reservations(), typed.live_reservations());
        // what kube's typed review requires, the lean one requires too
        for missing in ["uid", "kind", "resource", "operation", "userInfo"] {
            let mut body: Value = serde_json::from_slice(&bodies[0]).unwrap();
            body["request"].as_object_mut().unwrap().remove(missing);
            let bytes = serde_json::to_vec(&body).unwrap();
            assert!(serde_json::from_slice::<AdmissionReview<DynamicObject>>(&bytes).is_err());
            assert!(
                matches!(futures::executor::block_on(lean.review_body(&bytes)), Err(Rejection::BadRequest(m)) if m.contains(missing)),
                "{missing}"
            );
        }
    }

    #[test]
    fn the_sweep_is_spread_over_reviews_and_drops_superseded_reservations() {
        let hook = webhook(UniquenessScope::Namespace, DEFAULT_RESERVATION_TTL);
        let count = SWEEP_STEP * 5 + 3;
        for i in 0..count {
            let name = format!("c{i}");
            assert!(decide(&hook, &create("a", &name, "GitLab", &name)).unwrap().allowed);
        }
        // the watch delivers every one of them; then one is deleted again
        for i in 0..count {
            let name = format!("c{i}");
            hook.index().apply(&stored("a", &name, ProviderKind::GitLab, &name, 1));
        }
        hook.index().remove(&ObjectKey::new("a", "c0"));
        let later = Instant::now() + SWEEP_EVERY * 2;
        let mut calls = 0;
        loop {
            let mut reservations = hook.ledger.lock();
            let before = reservations.by_instance.len();
            reservations.sweep(later, DEFAULT_RESERVATION_TTL, hook.index());
            assert!(before - reservations.by_instance.len() <= SWEEP_STEP);
            calls += 1;
            if reservations.sweep_left == 0 {
                break;
            }
        }
        assert_eq!(calls, count.div_ceil(SWEEP_STEP));
        let reservations = hook.ledger.lock();
        // c0's reservation was not superseded (the index forgot it) and stays until it expires
        assert_eq!(reservations.by_instance.len(), 1);
        assert_eq!(reservations.by_object.len(), 1);
        assert_eq!(reservations.queue.len(), 1);
        drop(reservations);
        assert!(!decide(&hook, &create("a", "other", "GitLab", "c0")).unwrap().allowed);
        // the others' reservations are gone for good: deleted later, their names are free
        hook.index().remove(&ObjectKey::new("a", "c1"));
        assert!(decide(&hook, &create("a", "other", "GitLab", "c1")).unwrap().allowed);
    }

    #[test]
    fn an_update_taking_a_name_reserves_it_until_the_index_shows_the_update() {
        let hook = webhook(UniquenessScope::Namespace, DEFAULT_RESERVATION_TTL);
        hook.index().apply(&stored("a", "one", ProviderKind::GitLab, "x", 3));
        hook.index().apply(&stored("a", "two", ProviderKind::GitLab, "y", 1));
        let rename = gitlab_update("a", "one", "z", ("x", 3));
        assert!(decide(&hook, &rename).unwrap().allowed);
        assert_eq!(hook.live_reservations(), 1, "the index still shows the old name");
        let racing = gitlab_update("a", "two", "z", ("y", 1));
        assert_denied_with(&hook, &racing, "already used by GitLab connection a/one");
        // the watch delivers the update: the index answers from now on
        hook.index().apply(&stored("a", "one", ProviderKind::GitLab, "z", 4));
        assert_eq!(hook.live_reservations(), 0);
        assert_denied_with(&hook, &racing, "already used by GitLab connection a/one");
        // and "x" is free again
        let back = gitlab_update("a", "two", "x", ("y", 1));
        assert!(decide(&hook, &back).unwrap().allowed);
    }

    #[test]
    fn taking_another_name_releases_the_previous_reservation() {
        let hook = webhook(UniquenessScope::Namespace, DEFAULT_RESERVATION_TTL);
        assert!(decide(&hook, &create("a", "first", "GitLab", "main")).unwrap().allowed);
        // the create is retried with another name before the watch delivered the first one
        assert!(decide(&hook, &create("a", "first", "GitLab", "other")).unwrap().allowed);
        assert_eq!(hook.live_reservations(), 1);
        assert!(decide(&hook, &create("a", "second", "GitLab", "main")).unwrap().allowed);
    }

    #[test]
    fn concurrent_creates_of_one_name_admit_exactly_one() {
        let hook = webhook(UniquenessScope::Cluster, DEFAULT_RESERVATION_TTL);
        let allowed: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..32)
                .map(|i| {
                    let hook = &hook;
                    s.spawn(move || {
                        let ns = format!("ns-{}", i % 4);
                        let name = format!("conn-{i}");
                        let decision = decide(hook, &create(&ns, &name, "AzureDevOps", "dev1")).unwrap();
                        decision.allowed.then(|| format!("{ns}/{name}"))
                    })
                })
                .collect();
            handles.into_iter().filter_map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(allowed.len(), 1, "{allowed:?}");
    }

    #[test]
    fn updates_that_leave_the_spec_alone_always_pass() {
        let hook = webhook(UniquenessScope::Namespace, DEFAULT_RESERVATION_TTL);
        // stored before the rules were tightened: an invalid URL and a duplicate
        hook.index().apply(&stored("a", "old", ProviderKind::GitLab, "x", 1));
        let bad = json!({"provider": "GitLab", "instanceName": "x", "url": "ftp://x", "tokenSecretRef": {"name": "p"}});
        let relabel = request("UPDATE", "a", "young", bad.clone(), Some((bad, 1)), false);
        let decision = decide(&hook, &relabel).unwrap();
        assert!(decision.allowed);
        assert!(
            decision
                .warnings
                .iter()
                .any(|w| w.starts_with("existing problem: spec.url")),
            "{decision:?}"
        );
        // an unparseable stored spec, too
        let broken = json!({"provider": "Gitlab"});
        let decision = decide(
            &hook,
            &request("UPDATE", "a", "b", broken.clone(), Some((broken, 1)), false),
        )
        .unwrap();
        assert!(decision.allowed);
        assert_eq!(decision.warnings.len(), 1);
    }

    #[test]
    fn not_synced_means_no_uniqueness_answer() {
        let index = Arc::new(ConnectionIndex::new(UniquenessScope::Namespace));
        index.expect_partitions(1);
        let hook = Webhook::new(index.clone(), Arc::new(Metrics::new()), CertStore::new());
        assert!(matches!(
            decide(&hook, &create("a", "x", "GitLab", "main")),
            Err(Rejection::NotReady(_))
        ));
        // what is wrong regardless of other connections is still said
        let bad = decide(&hook, &create("a", "x", "GitLab", " ")).unwrap();
        assert!(!bad.allowed);
        index.partition_synced(None);
        assert!(decide(&hook, &create("a", "x", "GitLab", "main")).unwrap().allowed);
    }

    #[test]
    fn problems_and_duplicate_are_said_together() {
        let hook = webhook(UniquenessScope::Namespace, DEFAULT_RESERVATION_TTL);
        hook.index().apply(&stored("a", "old", ProviderKind::GitLab, "x", 1));
        let mut spec = spec_json("GitLab", "x");
        spec["verifyInterval"] = json!("10s");
        let decision = decide(&hook, &request("CREATE", "a", "new", spec, None, false)).unwrap();
        assert!(!decision.allowed);
        assert_eq!(
            decision.message,
            "spec.verifyInterval \"10s\" is shorter than the minimum of 1m; instanceName \"x\" is already used by \
             GitLab connection a/old; choose another instanceName (names are compared ignoring case and surrounding \
             spaces)"
        );
        assert_eq!(hook.live_reservations(), 0, "a denied create reserves nothing");
    }

    /// What the API server says exists, for [`Confirm`].
    struct Stored(std::collections::HashMap<ObjectKey, InstanceKey>);

    impl Confirm for Stored {
        fn current_claim(
            &self,
            key: &ObjectKey,
        ) -> futures::future::BoxFuture<'_, Result<Option<InstanceKey>, kube::Error>> {
            let claim = self.0.get(key).cloned();
            Box::pin(async move { Ok(claim) })
        }
    }

    #[tokio::test]
    async fn a_reservation_for_an_object_that_was_not_created_is_released() {
        let index = Arc::new(ConnectionIndex::new(UniquenessScope::Namespace));
        index.partition_synced(None);
        let claim = |name: &str| InstanceKey::new(UniquenessScope::Namespace, "a", ProviderKind::GitLab, name);
        // "a/real-first" was created (the watch has not shown it yet); "a/forged" never was
        let stored = Stored([(ObjectKey::new("a", "real-first"), claim("taken"))].into());
        let hook = Webhook::confirmed_by(
            index,
            Arc::new(Metrics::new()),
            CertStore::new(),
            DEFAULT_RESERVATION_TTL,
            Arc::new(stored),
        );
        let review = |body: Vec<u8>| {
            let hook = hook.clone();
            async move { hook.review_body(&body).await.unwrap().response.unwrap() }
        };
        assert!(review(create("a", "forged", "GitLab", "main")).await.allowed);
        assert!(review(create("a", "real-first", "GitLab", "taken")).await.allowed);
        // denied only after the API server confirmed the holder
        let denied = review(create("a", "second", "GitLab", "taken")).await;
        assert!(!denied.allowed);
        assert!(
            denied.result.message.contains("a/real-first"),
            "{}",
            denied.result.message
        );
        // allowed: the forged reservation is released once the API server says it does not exist
        assert!(review(create("a", "real", "GitLab", "main")).await.allowed);
        assert_eq!(hook.live_reservations(), 2);
    }
}
