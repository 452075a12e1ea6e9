//! Which verification goes first when more are due than there are slots: a connection never
//! verified (new, or its spec changed since its status was written) or whose Secret or
//! ConfigMap changed goes ahead of a scheduled re-verification.
//!
//! Why the controller decides this and not the queue: kube's applier, when all its slots are
//! busy, keeps the requests that came due in a hash set and takes whichever the set's iteration
//! yields first, so the same connections win again and again. When more re-verifications come
//! due per interval than the instances can answer (10,000 connections at `verifyInterval: 1m`
//! on a slow instance), connections never verified could wait forever behind connections that
//! are already Ready. So a re-verification that comes up while first verifications are waiting
//! gives its turn away: it goes back to the queue for a while, holding nothing, and the applier
//! takes the next request, until the waiting ones have had theirs.
//!
//! "Waiting" is a mark per connection: set when a change reaches the operator (the watch of
//! connections for never-verified ones, the Secret/ConfigMap watches for changed references),
//! cleared when that connection's verification starts or the connection is deleted. A mark
//! older than [`MARK_LIFETIME`] no longer counts, so a change that somehow never ran can hold
//! re-verifications back for a bounded time only.

use crate::api::GitProviderConnection;
use crate::index::ObjectKey;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a mark counts.
pub const MARK_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Shortest and longest time a re-verification steps aside for.
const GIVE_WAY_MIN: Duration = Duration::from_secs(1);
const GIVE_WAY_MAX: Duration = Duration::from_secs(30);
/// A rough cost of one verification in its slot, to size the step aside to the backlog.
const SLOT_TIME: Duration = Duration::from_millis(100);
/// Stale marks are swept at most this often (a sweep walks every mark).
const SWEEP_EVERY: Duration = Duration::from_secs(10);

/// See the module documentation.
pub struct FirstInLine {
    inner: Mutex<Marks>,
}

struct Marks {
    /// Connection → when the change that needs its verification arrived.
    waiting: HashMap<ObjectKey, Instant>,
    swept: Instant,
}

impl Default for FirstInLine {
    fn default() -> Self {
        FirstInLine {
            inner: Mutex::new(Marks {
                waiting: HashMap::new(),
                swept: Instant::now(),
            }),
        }
    }
}

/// Whether the connection's status says nothing about its current spec: never verified, or its
/// spec changed since.
pub fn never_verified(conn: &GitProviderConnection) -> bool {
    let observed = conn.status.as_ref().and_then(|s| s.observed_generation);
    observed.is_none() || observed != conn.metadata.generation
}

impl FirstInLine {
    fn lock(&self) -> std::sync::MutexGuard<'_, Marks> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A change reached the operator: `key` goes ahead of re-verifications until it starts.
    pub fn mark(&self, key: ObjectKey) {
        let mut marks = self.lock();
        marks.sweep();
        marks.waiting.entry(key).or_insert_with(Instant::now);
    }

    /// `key` is gone: it no longer waits.
    pub fn clear(&self, key: &ObjectKey) {
        self.lock().waiting.remove(key);
    }

    /// `key` starts its verification: it no longer waits. Whether it was waiting.
    pub fn take(&self, key: &ObjectKey) -> bool {
        self.lock().waiting.remove(key).is_some()
    }

    /// Connections waiting for their turn (marks within their lifetime).
    pub fn waiting(&self) -> usize {
        let mut marks = self.lock();
        marks.sweep();
        marks.waiting.len()
    }

    /// `None`: go ahead. `Some(delay)`: this is a re-verification and others are waiting for a
    /// first one; look again after `delay` (longer for a longer backlog, so that thousands of
    /// re-verifications due at once are not looked at over and over while it drains).
    pub fn give_way(&self, key: &ObjectKey, conn: &GitProviderConnection, concurrency: usize) -> Option<Duration> {
        if never_verified(conn) {
            return None;
        }
        let mut marks = self.lock();
        marks.sweep();
        if marks.waiting.is_empty() || marks.waiting.contains_key(key) {
            return None;
        }
        let backlog = SLOT_TIME.mul_f64(marks.waiting.len() as f64 / concurrency.max(1) as f64);
        let delay = backlog.clamp(GIVE_WAY_MIN, GIVE_WAY_MAX);
        Some(delay.mul_f64(0.75 + fastrand::f64() * 0.5))
    }
}

impl Marks {
    fn sweep(&mut self) {
        if self.swept.elapsed() < SWEEP_EVERY {
            return;
        }
        self.swept = Instant::now();
        self.waiting.retain(|_, since| since.elapsed() < MARK_LIFETIME);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(name: &str, generation: i64, observed: Option<i64>) -> GitProviderConnection {
        let mut c: GitProviderConnection = serde_json::from_value(serde_json::json!({
            "apiVersion": "gitprovider.dev/v1alpha1", "kind": "GitProviderConnection",
            "metadata": {"name": name, "namespace": "n", "generation": generation},
            "spec": {"provider": "GitLab", "instanceName": name, "url": "https://g", "tokenSecretRef": {"name": "s"}},
        }))
        .unwrap();
        if let Some(observed) = observed {
            c.status = Some(serde_json::from_value(serde_json::json!({"observedGeneration": observed})).unwrap());
        }
        c
    }

    #[test]
    fn re_verifications_give_way_while_a_change_waits() {
        let line = FirstInLine::default();
        let ready = conn("ready", 1, Some(1));
        let ready_key = ObjectKey::of(&ready);
        assert_eq!(line.give_way(&ready_key, &ready, 32), None, "nobody waits");

        let new = conn("new", 1, None);
        let new_key = ObjectKey::of(&new);
        line.mark(new_key.clone());
        assert_eq!(line.waiting(), 1);
        let delay = line.give_way(&ready_key, &ready, 32).expect("steps aside");
        assert!(
            delay >= GIVE_WAY_MIN.mul_f64(0.75) && delay <= GIVE_WAY_MIN.mul_f64(1.25),
            "{delay:?}"
        );
        assert_eq!(line.give_way(&new_key, &new, 32), None, "the waiting one goes");
        // Never verified or its spec changed: never steps aside, marked or not.
        let changed = conn("changed", 2, Some(1));
        assert_eq!(line.give_way(&ObjectKey::of(&changed), &changed, 32), None);

        assert!(line.take(&new_key));
        assert!(!line.take(&new_key));
        assert_eq!(line.waiting(), 0);
        assert_eq!(line.give_way(&ready_key, &ready, 32), None, "its turn again");

        // A marked re-verification (its Secret changed) goes too.
        line.mark(ready_key.clone());
        assert_eq!(line.give_way(&ready_key, &ready, 32), None);
    }

    #[test]
    fn a_longer_backlog_means_a_longer_step_aside_within_bounds() {
        let line = FirstInLine::default();
        for i in 0..6_000 {
            line.mark(ObjectKey::new("n", format!("c{i}")));
        }
        let ready = conn("ready", 1, Some(1));
        let delay = line.give_way(&ObjectKey::of(&ready), &ready, 32).unwrap();
        assert!(
            delay > GIVE_WAY_MIN * 5 && delay <= GIVE_WAY_MAX.mul_f64(1.25),
            "{delay:?}"
        );
    }

    #[test]
    fn stale_marks_stop_counting() {
        let line = FirstInLine::default();
        line.mark(ObjectKey::new("n", "lost"));
        {
            let mut marks = line.lock();
            let long_ago = Instant::now().checked_sub(MARK_LIFETIME + Duration::from_secs(1));
            let (Some(long_ago), Some(swept)) = (long_ago, Instant::now().checked_sub(SWEEP_EVERY)) else {
                return; // a clock this young cannot hold a stale mark
            };
            marks.waiting.insert(ObjectKey::new("n", "lost"), long_ago);
            marks.swept = swept;
        }
        assert_eq!(line.waiting(), 0);
    }
}
