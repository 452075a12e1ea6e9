//! The reservation ledger: names the webhook admitted that the index does not show yet.
//!
//! See [`super::webhook`] for why reservations exist. Each is kept for at most the TTL, and
//! dropped earlier as soon as the index shows what it stood in for; an incremental sweep drops
//! the rest without ever holding the lock for all of them at once.

use crate::index::{ConnectionIndex, InstanceKey, ObjectKey};
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long an admitted create keeps its name reserved while the watch catches up.
pub const DEFAULT_RESERVATION_TTL: Duration = Duration::from_secs(30);
/// A sweep of the reservations starts at most this often.
pub(super) const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Most reservations kept at once; beyond it the oldest is dropped (its race, if any, is then
/// healed by the controller), so that no client can grow the ledger without bound.
pub(super) const MAX_RESERVATIONS: usize = 10_000;
/// Reservations one review looks at while a sweep is in progress: the sweep is spread over the
/// reviews that follow instead of holding the lock (and every other review) for all of them.
pub(super) const SWEEP_STEP: usize = 16;

/// The reservations behind one lock, with their TTL.
pub(super) struct Ledger {
    reservations: Mutex<Reservations>,
    pub(super) ttl: Duration,
}

impl Ledger {
    pub(super) fn new(ttl: Duration) -> Ledger {
        Ledger {
            reservations: Mutex::new(Reservations::default()),
            ttl,
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Reservations> {
        self.reservations.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops the reservation of `instance` made for `holder` at `at`, if it is still there: the
    /// API server said that object was not created (or does not hold that name).
    pub(super) fn release(&self, instance: &InstanceKey, holder: &ObjectKey, at: Instant) {
        let mut reservations = self.lock();
        if reservations
            .by_instance
            .get(instance)
            .is_some_and(|r| &r.holder == holder && r.at == at)
        {
            reservations.by_instance.remove(instance);
            if reservations.by_object.get(holder) == Some(instance) {
                reservations.by_object.remove(holder);
            }
        }
    }

    /// Reservations not yet expired nor superseded by the index.
    pub(super) fn live(&self, index: &ConnectionIndex) -> usize {
        let now = Instant::now();
        self.lock()
            .by_instance
            .iter()
            .filter(|(instance, r)| now.saturating_duration_since(r.at) < self.ttl && !r.superseded(instance, index))
            .count()
    }
}

/// One name reserved for a connection the webhook admitted but the index has not shown yet.
#[derive(Debug, Clone)]
pub(super) struct Reservation {
    pub(super) holder: ObjectKey,
    pub(super) at: Instant,
    /// `None` for a CREATE; for an UPDATE, the generation of the object it replaced.
    pub(super) old_generation: Option<Option<i64>>,
}

impl Reservation {
    /// Whether the index now shows what this reservation was standing in for.
    pub(super) fn superseded(&self, instance: &InstanceKey, index: &ConnectionIndex) -> bool {
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
pub(super) struct Reservations {
    pub(super) by_instance: HashMap<InstanceKey, Reservation>,
    pub(super) by_object: HashMap<ObjectKey, InstanceKey>,
    /// Every reservation made, in the order the sweep visits them: its instance and when it was
    /// made. An entry whose reservation was replaced or dropped since is discarded when visited.
    pub(super) queue: VecDeque<(InstanceKey, Instant)>,
    /// Entries of `queue` the sweep in progress has yet to visit (0: none in progress).
    pub(super) sweep_left: usize,
    pub(super) last_sweep: Option<Instant>,
}

impl Reservations {
    /// The holder of a live reservation of `instance`, when it is not `candidate` (and, with
    /// `made_before`, when it was made before that instant).
    pub(super) fn holder(
        &self,
        instance: &InstanceKey,
        candidate: &ObjectKey,
        now: Instant,
        ttl: Duration,
        index: &ConnectionIndex,
        made_before: Option<Instant>,
    ) -> Option<ObjectKey> {
        let reservation = self.by_instance.get(instance)?;
        let live = now.saturating_duration_since(reservation.at) < ttl
            && !reservation.superseded(instance, index)
            && made_before.is_none_or(|before| reservation.at < before);
        (live && &reservation.holder != candidate).then(|| reservation.holder.clone())
    }

    pub(super) fn reserve(&mut self, instance: InstanceKey, reservation: Reservation) {
        while self.by_instance.len() >= MAX_RESERVATIONS {
            let Some((oldest, at)) = self.queue.pop_front() else {
                break;
            };
            self.sweep_left = self.sweep_left.min(self.queue.len());
            if self.by_instance.get(&oldest).is_some_and(|r| r.at == at)
                && let Some(r) = self.by_instance.remove(&oldest)
                && self.by_object.get(&r.holder) == Some(&oldest)
            {
                self.by_object.remove(&r.holder);
            }
        }
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
    pub(super) fn retire(&mut self, instance: &InstanceKey, now: Instant, ttl: Duration, index: &ConnectionIndex) {
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
    pub(super) fn sweep(&mut self, now: Instant, ttl: Duration, index: &ConnectionIndex) {
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
