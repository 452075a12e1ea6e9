//! The decision on one review: the spec rules and the uniqueness rule, against the index and
//! the reservation ledger.

use super::reservations::{Ledger, Reservation};
use super::rules::{Claim, Holders, check_unique, parse_spec, validate_spec};
use crate::api::{GROUP, GitProviderConnection};
use crate::index::{ConnectionIndex, InstanceKey, ObjectKey};
use kube::Resource;
use kube::core::GroupVersionKind;
use kube::core::admission::Operation;
use serde_json::Value;
use std::time::Instant;

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

/// What a decision reads from a request, borrowed from the decoded body (see
/// [`super::review`]).
pub(super) struct Subject<'a> {
    pub(super) kind: &'a GroupVersionKind,
    pub(super) operation: &'a Operation,
    pub(super) sub_resource: Option<&'a str>,
    pub(super) namespace: Option<&'a str>,
    pub(super) name: &'a str,
    pub(super) dry_run: bool,
    pub(super) object: Option<ObjectView<'a>>,
    pub(super) old_object: Option<ObjectView<'a>>,
}

pub(super) struct ObjectView<'a> {
    pub(super) name: Option<&'a str>,
    pub(super) namespace: Option<&'a str>,
    pub(super) generation: Option<i64>,
    pub(super) spec: Option<&'a Value>,
}

/// A denial that rests on a reservation only the webhook's own word supports: the reserved object
/// is not in the index. Before it denies, the caller asks the API server whether that object
/// exists (see [`super::confirm`]).
#[derive(Debug, Clone)]
pub(super) struct Unconfirmed {
    pub(super) instance: InstanceKey,
    pub(super) holder: ObjectKey,
    pub(super) at: Instant,
}

pub(super) enum Verdict {
    Decided(Decision),
    Unconfirmed(Unconfirmed),
}

/// How a review treats reservations it has not seen confirmed.
#[derive(Debug, Clone, Copy)]
pub(super) struct Deferral {
    /// A denial that rests only on an unconfirmed reservation comes back as
    /// [`Verdict::Unconfirmed`] instead.
    pub(super) may_defer: bool,
    /// Reservations made at or after this instant are not counted: once this review found a
    /// reservation to be unfounded, a new one made while it waited (a forger posting again)
    /// must not send it back to the end of the queue.
    pub(super) ignore_from: Option<Instant>,
}

/// Decides one request.
pub(super) fn decide(
    request: &Subject<'_>,
    index: &ConnectionIndex,
    ledger: &Ledger,
    deferral: Deferral,
) -> Result<Verdict, Rejection> {
    let mut unconfirmed = None;
    let slot = deferral.may_defer.then_some(&mut unconfirmed);
    let decision = decide_or_defer(request, index, ledger, slot, deferral.ignore_from)?;
    Ok(match unconfirmed {
        Some(unconfirmed) => Verdict::Unconfirmed(unconfirmed),
        None => Verdict::Decided(decision),
    })
}

fn decide_or_defer(
    request: &Subject<'_>,
    index: &ConnectionIndex,
    ledger: &Ledger,
    defer: Option<&mut Option<Unconfirmed>>,
    ignore_from: Option<Instant>,
) -> Result<Decision, Rejection> {
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
    let scope = index.scope();
    let instance = claim.instance_key(scope, &key.namespace);
    let keeps_claim = old_claim.is_some_and(|o| o.instance_key(scope, &key.namespace) == instance);

    if !keeps_claim {
        if !index.is_synced() {
            if problems.is_empty() {
                return Err(Rejection::NotReady(
                    "the operator has not finished loading the existing GitProviderConnections yet, so it cannot \
                     check instanceName uniqueness; retry in a few seconds"
                        .to_owned(),
                ));
            }
        } else {
            let now = Instant::now();
            let ttl = ledger.ttl;
            let mut reservations = ledger.lock();
            reservations.retire(&instance, now, ttl, index);
            reservations.sweep(now, ttl, index);
            let outcome = {
                let reserved = &*reservations;
                let holders = |instance: &InstanceKey, candidate: &ObjectKey| {
                    index
                        .holder_of(instance, candidate)
                        .or_else(|| reserved.holder(instance, candidate, now, ttl, index, ignore_from))
                };
                check_unique(&holders, scope, &key, claim, old_claim)
            };
            match outcome {
                Err(duplicate) => {
                    let mut message = duplicate.message();
                    if let Some(reservation) = reservations.by_instance.get(&instance)
                        && reservation.holder == duplicate.holder
                        && index.claim_of(&reservation.holder).is_none_or(|(i, _)| i != instance)
                    {
                        if let Some(slot) = defer {
                            *slot = Some(Unconfirmed {
                                instance: instance.clone(),
                                holder: reservation.holder.clone(),
                                at: reservation.at,
                            });
                            return Ok(Decision::deny(message));
                        }
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

fn describe_kind(group: &str, version: &str, kind: &str) -> String {
    let group_version = if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    };
    format!("{kind} ({group_version})")
}
