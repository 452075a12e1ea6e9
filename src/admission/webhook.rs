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

use super::rules::{Claim, Holders, check_unique, parse_spec, validate_spec};
use super::tls::{CertError, CertStore};
use crate::api::{GROUP, GitProviderConnection};
use crate::index::{ConnectionIndex, InstanceKey, ObjectKey};
use crate::metrics::Metrics;
use axum::body::Body;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use kube::Resource;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview, Operation};
use kube::core::{DynamicObject, GroupVersionKind, Status, TypeMeta};
use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// How long an admitted create keeps its name reserved while the watch catches up.
pub const DEFAULT_RESERVATION_TTL: Duration = Duration::from_secs(30);
/// The largest review body accepted (two objects of at most ~1.5 MiB each, plus the envelope).
pub const MAX_BODY: usize = 8 * 1024 * 1024;
/// The path the API server posts reviews to.
pub const VALIDATE_PATH: &str = "/validate";

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// A sweep of the reservations starts at most this often.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Reservations one review looks at while a sweep is in progress: the sweep is spread over the
/// reviews that follow instead of holding the lock (and every other review) for all of them.
const SWEEP_STEP: usize = 16;

/// The webhook's state: the live index, metrics, the serving certificate and the reservations.
pub struct Webhook {
    index: Arc<ConnectionIndex>,
    metrics: Arc<Metrics>,
    certs: Arc<CertStore>,
    reservations: Mutex<Reservations>,
    reservation_ttl: Duration,
}

/// Why a request got no AdmissionReview back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    /// HTTP 400: the body is not an AdmissionReview with a request.
    BadRequest(String),
    /// HTTP 503: the index has not finished its first list.
    NotReady(String),
}

/// The outcome of one review, before it is wrapped into an AdmissionResponse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The denial message (empty when allowed).
    pub message: String,
    pub warnings: Vec<String>,
}

impl Decision {
    fn allow() -> Decision {
        Decision {
            allowed: true,
            ..Decision::default()
        }
    }

    fn deny(message: impl Into<String>) -> Decision {
        Decision {
            allowed: false,
            message: message.into(),
            warnings: Vec::new(),
        }
    }
}

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
        Arc::new(Webhook {
            index,
            metrics,
            certs,
            reservations: Mutex::new(Reservations::default()),
            reservation_ttl,
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
        let now = Instant::now();
        let reservations = self.reservations();
        reservations
            .by_instance
            .iter()
            .filter(|(instance, r)| {
                now.saturating_duration_since(r.at) < self.reservation_ttl && !r.superseded(instance, &self.index)
            })
            .count()
    }

    fn reservations(&self) -> std::sync::MutexGuard<'_, Reservations> {
        self.reservations.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answers one review body: the HTTP-free core of `POST /validate`.
    ///
    /// The body is read into [`ReviewBody`]: only what a decision reads (the objects' name,
    /// namespace, generation and `spec`) is kept; the rest of the objects, `userInfo` and the
    /// options are skipped over without being built (reading them into a typed
    /// `AdmissionReview<DynamicObject>` cost as much CPU as TLS and HTTP together).
    pub fn review_body(&self, body: &[u8]) -> Result<AdmissionReview<DynamicObject>, Rejection> {
        let review: ReviewBody = serde_json::from_slice(body)
            .map_err(|e| Rejection::BadRequest(format!("the body is not an AdmissionReview: {e}")))?;
        if review.kind != "AdmissionReview" || !review.api_version.starts_with("admission.k8s.io/") {
            return Err(Rejection::BadRequest(format!(
                "expected kind AdmissionReview of admission.k8s.io/v1, got kind {:?} apiVersion {:?}",
                review.kind, review.api_version
            )));
        }
        let Some(request) = review.request else {
            return Err(Rejection::BadRequest("the AdmissionReview has no request".to_owned()));
        };
        let started = Instant::now();
        let decision = self.decide_subject(&request.subject())?;
        self.metrics
            .review_done(operation_name(&request.operation), decision.allowed, started.elapsed());
        // What `AdmissionResponse::from(&AdmissionRequest)` makes, without a typed request.
        let mut response = AdmissionResponse::invalid("");
        response.types = TypeMeta {
            api_version: review.api_version,
            kind: review.kind,
        };
        response.uid = request.uid;
        response.allowed = true;
        response.result = Status::default();
        if !decision.allowed {
            response = response.deny(decision.message);
        }
        if !decision.warnings.is_empty() {
            response.warnings = Some(decision.warnings);
        }
        Ok(response.into_review())
    }

    /// Decides one request.
    pub fn decide(&self, request: &AdmissionRequest<DynamicObject>) -> Result<Decision, Rejection> {
        fn object(o: &DynamicObject) -> ObjectView<'_> {
            ObjectView {
                name: o.metadata.name.as_deref(),
                namespace: o.metadata.namespace.as_deref(),
                generation: o.metadata.generation,
                spec: o.data.get("spec"),
            }
        }
        self.decide_subject(&Subject {
            kind: &request.kind,
            operation: &request.operation,
            sub_resource: request.sub_resource.as_deref(),
            namespace: request.namespace.as_deref(),
            name: &request.name,
            dry_run: request.dry_run,
            object: request.object.as_ref().map(object),
            old_object: request.old_object.as_ref().map(object),
        })
    }

    fn decide_subject(&self, request: &Subject<'_>) -> Result<Decision, Rejection> {
        let kind = request.kind;
        if kind.group != GROUP || kind.kind != GitProviderConnection::kind(&()) {
            return Ok(Decision::deny(format!(
                "this webhook only validates {GROUP} GitProviderConnections, not {}; check the rules of the \
                 ValidatingWebhookConfiguration that sent this review",
                describe_kind(&kind.group, &kind.version, &kind.kind)
            )));
        }
        match request.operation {
            Operation::Create | Operation::Update => {}
            Operation::Delete | Operation::Connect => return Ok(Decision::allow()),
        }
        if request.sub_resource.is_some_and(|s| !s.is_empty()) {
            // status writes (should the configuration ever match them) change no spec
            return Ok(Decision::allow());
        }
        let Some(object) = &request.object else {
            return Ok(Decision::deny("the review carries no object to validate"));
        };
        let namespace = request
            .namespace
            .filter(|ns| !ns.is_empty())
            .or(object.namespace)
            .unwrap_or_default();
        let name = object.name.filter(|n| !n.is_empty()).unwrap_or(request.name);
        let key = ObjectKey::new(namespace, name);
        let old = match request.operation {
            Operation::Update => request.old_object.as_ref(),
            _ => None,
        };
        let raw_spec = object.spec;

        // An update that leaves the spec alone (labels, finalizers, deletion) is never blocked:
        // the controller must be able to remove its finalizer from whatever is stored.
        if let Some(old) = old
            && old.spec == raw_spec
        {
            let mut decision = Decision::allow();
            match parse_spec(raw_spec) {
                Ok(spec) => {
                    let review = validate_spec(&spec);
                    decision.warnings = review.warnings;
                    decision
                        .warnings
                        .extend(review.problems.into_iter().map(|p| format!("existing problem: {p}")));
                }
                Err(problem) => decision.warnings.push(format!("existing problem: {problem}")),
            }
            return Ok(decision);
        }

        let spec = match parse_spec(raw_spec) {
            Ok(spec) => spec,
            Err(problem) => return Ok(Decision::deny(problem)),
        };
        let review = validate_spec(&spec);
        let mut problems = review.problems;
        let old_spec = old.and_then(|o| parse_spec(o.spec).ok());
        let claim = Claim::of(&spec);
        let old_claim = old_spec.as_ref().map(Claim::of);
        let scope = self.index.scope();
        let instance = claim.instance_key(scope, &key.namespace);
        let keeps_claim = old_claim.is_some_and(|o| o.instance_key(scope, &key.namespace) == instance);

        if !keeps_claim {
            if !self.index.is_synced() {
                if problems.is_empty() {
                    return Err(Rejection::NotReady(
                        "the operator has not finished loading the existing GitProviderConnections yet, so it cannot \
                         check instanceName uniqueness; retry in a few seconds"
                            .to_owned(),
                    ));
                }
            } else {
                let now = Instant::now();
                let ttl = self.reservation_ttl;
                let mut reservations = self.reservations();
                reservations.retire(&instance, now, ttl, &self.index);
                reservations.sweep(now, ttl, &self.index);
                let outcome = {
                    let index = &*self.index;
                    let reserved = &*reservations;
                    let holders = |instance: &InstanceKey, candidate: &ObjectKey| {
                        index
                            .holder_of(instance, candidate)
                            .or_else(|| reserved.holder(instance, candidate, now, ttl, index))
                    };
                    check_unique(&holders, scope, &key, claim, old_claim)
                };
                match outcome {
                    Err(duplicate) => {
                        let mut message = duplicate.message();
                        if let Some(reservation) = reservations.by_instance.get(&instance)
                            && reservation.holder == duplicate.holder
                            && self
                                .index
                                .claim_of(&reservation.holder)
                                .is_none_or(|(i, _)| i != instance)
                        {
                            let age = now.saturating_duration_since(reservation.at).as_secs();
                            let left = ttl
                                .saturating_sub(now.saturating_duration_since(reservation.at))
                                .as_secs()
                                + 1;
                            message.push_str(&format!(
                                "; {} was admitted {age}s ago and is not visible to the operator yet; if it was \
                                 not actually created, the name is free again in {left}s",
                                duplicate.holder
                            ));
                        }
                        problems.push(message);
                    }
                    Ok(()) if problems.is_empty() && !request.dry_run && !key.name.is_empty() => {
                        reservations.reserve(
                            instance,
                            Reservation {
                                holder: key.clone(),
                                at: now,
                                old_generation: match request.operation {
                                    Operation::Update => Some(old.and_then(|o| o.generation)),
                                    _ => None,
                                },
                            },
                        );
                    }
                    Ok(()) => {}
                }
            }
        }

        Ok(Decision {
            allowed: problems.is_empty(),
            message: problems.join("; "),
            warnings: review.warnings,
        })
    }
}

/// An AdmissionReview as `review_body` reads it: the envelope, and of the request what a
/// decision or the answer needs. The fields kube's `AdmissionRequest` requires are required here
/// too (`resource` and `userInfo` are checked for presence only).
#[derive(Deserialize)]
struct ReviewBody {
    #[serde(rename = "apiVersion")]
    api_version: String,
    kind: String,
    #[serde(default)]
    request: Option<RequestBody>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestBody {
    uid: String,
    kind: GroupVersionKind,
    #[serde(rename = "resource")]
    _resource: IgnoredAny,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    operation: Operation,
    #[serde(rename = "userInfo")]
    _user_info: IgnoredAny,
    #[serde(default)]
    object: Option<ObjectBody>,
    #[serde(default)]
    old_object: Option<ObjectBody>,
    #[serde(default)]
    dry_run: bool,
}

#[derive(Deserialize)]
struct ObjectBody {
    #[serde(default)]
    metadata: MetadataBody,
    /// `Some(Value::Null)` for `"spec": null`, as `DynamicObject::data.get("spec")` has it.
    #[serde(default, deserialize_with = "present")]
    spec: Option<Value>,
}

#[derive(Deserialize, Default)]
struct MetadataBody {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    generation: Option<i64>,
}

fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(deserializer).map(Some)
}

impl RequestBody {
    fn subject(&self) -> Subject<'_> {
        fn object(o: &ObjectBody) -> ObjectView<'_> {
            ObjectView {
                name: o.metadata.name.as_deref(),
                namespace: o.metadata.namespace.as_deref(),
                generation: o.metadata.generation,
                spec: o.spec.as_ref(),
            }
        }
        Subject {
            kind: &self.kind,
            operation: &self.operation,
            sub_resource: self.sub_resource.as_deref(),
            namespace: self.namespace.as_deref(),
            name: &self.name,
            dry_run: self.dry_run,
            object: self.object.as_ref().map(object),
            old_object: self.old_object.as_ref().map(object),
        }
    }
}

/// What a decision reads from a request, borrowed from a typed `AdmissionRequest` or from a
/// [`RequestBody`].
struct Subject<'a> {
    kind: &'a GroupVersionKind,
    operation: &'a Operation,
    sub_resource: Option<&'a str>,
    namespace: Option<&'a str>,
    name: &'a str,
    dry_run: bool,
    object: Option<ObjectView<'a>>,
    old_object: Option<ObjectView<'a>>,
}

struct ObjectView<'a> {
    name: Option<&'a str>,
    namespace: Option<&'a str>,
    generation: Option<i64>,
    spec: Option<&'a Value>,
}

fn describe_kind(group: &str, version: &str, kind: &str) -> String {
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    format!("{kind} ({group_version})")
}

fn operation_name(operation: &Operation) -> &'static str {
    match operation {
        Operation::Create => "CREATE",
        Operation::Update => "UPDATE",
        Operation::Delete => "DELETE",
        Operation::Connect => "CONNECT",
    }
}

/// One name reserved for a connection the webhook admitted but the index has not shown yet.
#[derive(Debug, Clone)]
struct Reservation {
    holder: ObjectKey,
    at: Instant,
    /// `None` for a CREATE; for an UPDATE, the generation of the object it replaced.
    old_generation: Option<Option<i64>>,
}

impl Reservation {
    /// Whether the index now shows what this reservation was standing in for.
    fn superseded(&self, instance: &InstanceKey, index: &ConnectionIndex) -> bool {
        match (index.claim_of(&self.holder), self.old_generation) {
            (None, _) => false,
            (Some(_), None) => true,
            (Some((seen, generation)), Some(old_generation)) => {
                &seen == instance || (generation.is_some() && generation > old_generation)
            }
        }
    }
}

#[derive(Default)]
struct Reservations {
    by_instance: HashMap<InstanceKey, Reservation>,
    by_object: HashMap<ObjectKey, InstanceKey>,
    /// Every reservation made, in the order the sweep visits them: its instance and when it was
    /// made. An entry whose reservation was replaced or dropped since is discarded when visited.
    queue: VecDeque<(InstanceKey, Instant)>,
    /// Entries of `queue` the sweep in progress has yet to visit (0: none in progress).
    sweep_left: usize,
    last_sweep: Option<Instant>,
}

impl Reservations {
    /// The holder of a live reservation of `instance`, when it is not `candidate`.
    fn holder(
        &self,
        instance: &InstanceKey,
        candidate: &ObjectKey,
        now: Instant,
        ttl: Duration,
        index: &ConnectionIndex,
    ) -> Option<ObjectKey> {
        let reservation = self.by_instance.get(instance)?;
        let live = now.saturating_duration_since(reservation.at) < ttl && !reservation.superseded(instance, index);
        (live && &reservation.holder != candidate).then(|| reservation.holder.clone())
    }

    fn reserve(&mut self, instance: InstanceKey, reservation: Reservation) {
        if let Some(previous) = self.by_object.remove(&reservation.holder)
            && self
                .by_instance
                .get(&previous)
                .is_some_and(|r| r.holder == reservation.holder)
        {
            self.by_instance.remove(&previous);
        }
        self.by_object.insert(reservation.holder.clone(), instance.clone());
        self.queue.push_back((instance.clone(), reservation.at));
        let holder = reservation.holder.clone();
        if let Some(displaced) = self.by_instance.insert(instance.clone(), reservation)
            && displaced.holder != holder
            && self.by_object.get(&displaced.holder) == Some(&instance)
        {
            // an expired or superseded reservation of someone else
            self.by_object.remove(&displaced.holder);
        }
    }

    /// Drops the reservation of `instance` when it expired or the index superseded it, so that
    /// it cannot come back to life when the index later forgets its holder (a delete).
    fn retire(&mut self, instance: &InstanceKey, now: Instant, ttl: Duration, index: &ConnectionIndex) {
        if let Some(r) = self.by_instance.get(instance)
            && (now.saturating_duration_since(r.at) >= ttl || r.superseded(instance, index))
        {
            let holder = r.holder.clone();
            self.by_instance.remove(instance);
            if self.by_object.get(&holder) == Some(instance) {
                self.by_object.remove(&holder);
            }
        }
    }

    /// Drops expired and superseded reservations: a sweep over all of them starts at most once
    /// a second and looks at [`SWEEP_STEP`] of them per call until it has seen each once. Each
    /// look asks the index, so a sweep done at once would stall every review for as long as
    /// there are reservations (milliseconds, with thousands of creates in the last TTL).
    fn sweep(&mut self, now: Instant, ttl: Duration, index: &ConnectionIndex) {
        if self.sweep_left == 0 {
            if self
                .last_sweep
                .is_some_and(|at| now.saturating_duration_since(at) < SWEEP_EVERY)
            {
                return;
            }
            self.last_sweep = Some(now);
            self.sweep_left = self.queue.len();
        }
        for _ in 0..SWEEP_STEP {
            if self.sweep_left == 0 {
                break;
            }
            self.sweep_left -= 1;
            let Some((instance, at)) = self.queue.pop_front() else {
                self.sweep_left = 0;
                break;
            };
            let Some(r) = self.by_instance.get(&instance).filter(|r| r.at == at) else {
                // dropped, or replaced by a reservation that has its own entry
                continue;
            };
            if now.saturating_duration_since(r.at) < ttl && !r.superseded(&instance, index) {
                self.queue.push_back((instance, at));
            } else if let Some(r) = self.by_instance.remove(&instance)
                && self.by_object.get(&r.holder) == Some(&instance)
            {
                self.by_object.remove(&r.holder);
            }
        }
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut body = body.into();
    body.push('\n');
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn json(body: Vec<u8>) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// Routes one HTTP request: `POST /validate`, and `GET /readyz` for convenience.
pub async fn handle(webhook: Arc<Webhook>, request: Request<Incoming>) -> Response<Body> {
    let path = request.uri().path().to_owned();
    match (request.method().clone(), path.as_str()) {
        (Method::POST, VALIDATE_PATH) => {
            let body = match axum::body::to_bytes(Body::new(request.into_body()), MAX_BODY).await {
                Ok(body) => body,
                Err(error) => {
                    let too_large = std::error::Error::source(&error)
                        .is_some_and(|s| s.to_string().contains("length limit"))
                        || error.to_string().contains("length limit");
                    return if too_large {
                        text(
                            StatusCode::PAYLOAD_TOO_LARGE,
                            format!("the AdmissionReview is larger than {MAX_BODY} bytes"),
                        )
                    } else {
                        text(
                            StatusCode::BAD_REQUEST,
                            format!("cannot read the request body: {error}"),
                        )
                    };
                }
            };
            match webhook.review_body(&body) {
                Ok(review) => match serde_json::to_vec(&review) {
                    Ok(bytes) => json(bytes),
                    Err(error) => text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("cannot encode the AdmissionReview: {error}"),
                    ),
                },
                Err(Rejection::BadRequest(message)) => text(StatusCode::BAD_REQUEST, message),
                Err(Rejection::NotReady(message)) => text(StatusCode::SERVICE_UNAVAILABLE, message),
            }
        }
        (Method::GET, "/readyz") => {
            if webhook.is_ready() {
                text(StatusCode::OK, "ok")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready")
            }
        }
        (_, VALIDATE_PATH) => text(
            StatusCode::METHOD_NOT_ALLOWED,
            "POST an admission.k8s.io/v1 AdmissionReview to /validate",
        ),
        _ => text(
            StatusCode::NOT_FOUND,
            format!("no such path {path:?}; the webhook serves POST {VALIDATE_PATH}"),
        ),
    }
}

/// Binds `addr` and [`serve`]s on it.
pub async fn serve_addr<F>(addr: SocketAddr, webhook: Arc<Webhook>, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send,
{
    let listener = TcpListener::bind(addr).await?;
    serve(listener, webhook, shutdown).await
}

/// Serves the webhook over HTTPS (HTTP/1.1 and HTTP/2, keep-alive) on `listener` until
/// `shutdown` completes, then lets open connections finish their requests (up to 5 s).
/// The certificate comes from `webhook.certs()` at each handshake.
pub async fn serve<F>(listener: TcpListener, webhook: Arc<Webhook>, shutdown: F) -> std::io::Result<()>
where
    F: Future<Output = ()> + Send,
{
    let config = webhook
        .certs()
        .server_config()
        .map_err(|e: CertError| std::io::Error::other(e.to_string()))?;
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    let builder = Arc::new(builder);
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // out of file descriptors and the like: back off instead of spinning
                    tracing::warn!(%error, "webhook cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let webhook = webhook.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "webhook TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!(%peer, "webhook TLS handshake timed out");
                    return;
                }
            };
            let service = hyper::service::service_fn(move |request| {
                let webhook = webhook.clone();
                async move { Ok::<_, Infallible>(handle(webhook, request).await) }
            });
            let connection = builder.serve_connection(TokioIo::new(tls), service);
            if let Err(error) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(%peer, %error, "webhook connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("webhook connections still open after the shutdown grace period");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{GitProviderConnectionSpec, ProviderKind};
    use crate::index::UniquenessScope;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use serde_json::{Value, json};

    fn spec_json(provider: &str, instance: &str) -> Value {
        json!({
            "provider": provider,
            "instanceName": instance,
            "url": "https://git.example.com",
            "tokenSecretRef": {"name": "pat", "key": "token"},
        })
    }

    fn request(
        op: &str,
        ns: &str,
        name: &str,
        spec: Value,
        old: Option<(Value, i64)>,
        dry_run: bool,
    ) -> AdmissionRequest<DynamicObject> {
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
        let review: AdmissionReview<DynamicObject> = serde_json::from_value(review).unwrap();
        review.try_into().unwrap()
    }

    fn create(ns: &str, name: &str, provider: &str, instance: &str) -> AdmissionRequest<DynamicObject> {
        request("CREATE", ns, name, spec_json(provider, instance), None, false)
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
        assert!(hook.decide(&create("a", "first", "GitLab", "main")).unwrap().allowed);
        assert_eq!(hook.live_reservations(), 1);
        let denied = hook.decide(&create("a", "second", "GitLab", " MAIN")).unwrap();
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
        assert!(hook.decide(&create("a", "first", "GitLab", "main")).unwrap().allowed);
        assert!(hook.decide(&create("a", "gh", "GitHub", "main")).unwrap().allowed);
        assert!(hook.decide(&create("b", "first", "GitLab", "main")).unwrap().allowed);
    }

    #[test]
    fn dry_run_reserves_nothing() {
        let hook = webhook(UniquenessScope::Namespace, DEFAULT_RESERVATION_TTL);
        let dry = request("CREATE", "a", "first", spec_json("GitLab", "main"), None, true);
        assert!(hook.decide(&dry).unwrap().allowed);
        assert_eq!(hook.live_reservations(), 0);
        assert!(hook.decide(&create("a", "second", "GitLab", "main")).unwrap().allowed);
    }

    #[test]
    fn reservations_expire() {
        let hook = webhook(UniquenessScope::Namespace, Duration::from_millis(50));
        assert!(hook.decide(&create("a", "first", "GitLab", "main")).unwrap().allowed);
        assert!(!hook.decide(&create("a", "second", "GitLab", "main")).unwrap().allowed);
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(hook.live_reservations(), 0);
        assert!(hook.decide(&create("a", "second", "GitLab", "main")).unwrap().allowed);
    }

    #[test]
    fn the_index_supersedes_a_reservation_for_good() {
        let hook = webhook(UniquenessScope::Namespace, DEFAULT_RESERVATION_TTL);
        assert!(hook.decide(&create("a", "first", "GitLab", "main")).unwrap().allowed);
        let first = stored("a", "first", ProviderKind::GitLab, "main", 1);
        hook.index().apply(&first);
        assert_eq!(hook.live_reservations(), 0);
        let denied = hook.decide(&create("a", "second", "GitLab", "main")).unwrap();
        assert!(!denied.allowed);
        assert!(
            !denied.message.contains("admitted"),
            "the index answers now: {}",
            denied.message
        );
        // once the index forgot the deleted holder, the name is free: the reservation is gone
        hook.index().delete(&first);
        assert!(hook.decide(&create("a", "second", "GitLab", "main")).unwrap().allowed);
    }

    /// `review_body` as it was before it read a [`ReviewBody`]: through the typed review.
    fn typed_review_body(hook: &Webhook, body: &[u8]) -> Value {
        let review: AdmissionReview<DynamicObject> = serde_json::from_slice(body).unwrap();
        let request: AdmissionRequest<DynamicObject> = review.try_into().unwrap();
        let decision = hook.decide(&request).unwrap();
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
            let answer = serde_json::to_value(lean.review_body(body).unwrap()).unwrap();
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
                matches!(lean.review_body(&bytes), Err(Rejection::BadRequest(m)) if m.contains(missing)),
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
            assert!(hook.decide(&create("a", &name, "GitLab", &name)).unwrap().allowed);
        }
        // the watch delivers every one of them; then one is deleted again
        for i in 0..count {
            let name = format!("c{i}");
            hook.index().apply(&stored("a", &name, ProviderKind::GitLab, &name, 1));
        }
        hook.index().delete(&stored("a", "c0", ProviderKind::GitLab, "c0", 1));
        let later = Instant::now() + SWEEP_EVERY * 2;
        let mut calls = 0;
        loop {
            let mut reservations = hook.reservations();
            let before = reservations.by_instance.len();
            reservations.sweep(later, DEFAULT_RESERVATION_TTL, hook.index());
            assert!(before - reservations.by_instance.len() <= SWEEP_STEP);
            calls += 1;
            if reservations.sweep_left == 0 {
                break;
            }
        }
        assert_eq!(calls, count.div_ceil(SWEEP_STEP));
        let reservations = hook.reservations();
        // c0's reservation was not superseded (the index forgot it) and stays until it expires
        assert_eq!(reservations.by_instance.len(), 1);
        assert_eq!(reservations.by_object.len(), 1);
        assert_eq!(reservations.queue.len(), 1);
        drop(reservations);
        assert!(!hook.decide(&create("a", "other", "GitLab", "c0")).unwrap().allowed);
        // the others' reservations are gone for good: deleted later, their names are free
        hook.index().delete(&stored("a", "c1", ProviderKind::GitLab, "c1", 1));
        assert!(hook.decide(&create("a", "other", "GitLab", "c1")).unwrap().allowed);
    }

    #[test]
    fn an_update_taking_a_name_reserves_it_until_the_index_shows_the_update() {
        let hook = webhook(UniquenessScope::Namespace, DEFAULT_RESERVATION_TTL);
        hook.index().apply(&stored("a", "one", ProviderKind::GitLab, "x", 3));
        hook.index().apply(&stored("a", "two", ProviderKind::GitLab, "y", 1));
        let rename = request(
            "UPDATE",
            "a",
            "one",
            spec_json("GitLab", "z"),
            Some((spec_json("GitLab", "x"), 3)),
            false,
        );
        assert!(hook.decide(&rename).unwrap().allowed);
        assert_eq!(hook.live_reservations(), 1, "the index still shows the old name");
        let racing = request(
            "UPDATE",
            "a",
            "two",
            spec_json("GitLab", "z"),
            Some((spec_json("GitLab", "y"), 1)),
            false,
        );
        let denied = hook.decide(&racing).unwrap();
        assert!(
            denied.message.contains("already used by GitLab connection a/one"),
            "{}",
            denied.message
        );
        // the watch delivers the update: the index answers from now on
        hook.index().apply(&stored("a", "one", ProviderKind::GitLab, "z", 4));
        assert_eq!(hook.live_reservations(), 0);
        let denied = hook.decide(&racing).unwrap();
        assert!(
            denied.message.contains("already used by GitLab connection a/one"),
            "{}",
            denied.message
        );
        // and "x" is free again
        let back = request(
            "UPDATE",
            "a",
            "two",
            spec_json("GitLab", "x"),
            Some((spec_json("GitLab", "y"), 1)),
            false,
        );
        assert!(hook.decide(&back).unwrap().allowed);
    }

    #[test]
    fn taking_another_name_releases_the_previous_reservation() {
        let hook = webhook(UniquenessScope::Namespace, DEFAULT_RESERVATION_TTL);
        assert!(hook.decide(&create("a", "first", "GitLab", "main")).unwrap().allowed);
        // the create is retried with another name before the watch delivered the first one
        assert!(hook.decide(&create("a", "first", "GitLab", "other")).unwrap().allowed);
        assert_eq!(hook.live_reservations(), 1);
        assert!(hook.decide(&create("a", "second", "GitLab", "main")).unwrap().allowed);
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
                        let decision = hook.decide(&create(&ns, &name, "AzureDevOps", "dev1")).unwrap();
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
        let decision = hook.decide(&relabel).unwrap();
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
        let decision = hook
            .decide(&request("UPDATE", "a", "b", broken.clone(), Some((broken, 1)), false))
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
            hook.decide(&create("a", "x", "GitLab", "main")),
            Err(Rejection::NotReady(_))
        ));
        // what is wrong regardless of other connections is still said
        let bad = hook.decide(&create("a", "x", "GitLab", " ")).unwrap();
        assert!(!bad.allowed);
        index.partition_synced(None);
        assert!(hook.decide(&create("a", "x", "GitLab", "main")).unwrap().allowed);
    }

    #[test]
    fn problems_and_duplicate_are_said_together() {
        let hook = webhook(UniquenessScope::Namespace, DEFAULT_RESERVATION_TTL);
        hook.index().apply(&stored("a", "old", ProviderKind::GitLab, "x", 1));
        let mut spec = spec_json("GitLab", "x");
        spec["verifyInterval"] = json!("10s");
        let decision = hook.decide(&request("CREATE", "a", "new", spec, None, false)).unwrap();
        assert!(!decision.allowed);
        assert_eq!(
            decision.message,
            "spec.verifyInterval \"10s\" is shorter than the minimum of 1m; instanceName \"x\" is already used by \
             GitLab connection a/old; choose another instanceName (names are compared ignoring case and surrounding \
             spaces)"
        );
        assert_eq!(hook.live_reservations(), 0, "a denied create reserves nothing");
    }
}
