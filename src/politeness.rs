//! Per-instance politeness: a cap on verifications in flight against one instance, so that many
//! connections to the same instance never hammer it, while connections spread over many hosts
//! still use the full `--max-concurrent-verifications`.
//!
//! What it counts is what is really in flight: the key is the host the requests go to
//! ([`crate::providers::Provider::api_host`]: github.com and api.github.com are one), and the
//! controller gives the slot up as soon as the instance has answered, before the status write.
//!
//! A connection that finds its instance full does not wait in a verification slot (that would
//! starve connections to other hosts) and is not looked at again on a timer: it queues for the
//! host, and the slot that frees first wakes it ([`WakeUps`], fed to the controller's queue).

use crate::index::ObjectKey;
use futures::channel::mpsc::{UnboundedReceiver, UnboundedSender, unbounded};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Connections whose host has a free slot for them, in the order the slots freed.
pub type WakeUps = UnboundedReceiver<ObjectKey>;

pub struct HostLimiter {
    per_host: usize,
    shared: Arc<Shared>,
}

struct Shared {
    hosts: Mutex<HashMap<String, Host>>,
    wake: Option<UnboundedSender<ObjectKey>>,
}

struct Host {
    slots: Arc<Semaphore>,
    /// Connections waiting for a slot, first come first woken. A key taken out of `queued`
    /// (it got a slot another way) stays in the deque and is skipped when its turn comes.
    waiting: VecDeque<ObjectKey>,
    queued: HashSet<ObjectKey>,
}

impl HostLimiter {
    /// `per_host == 0` means no cap beyond the global concurrency. Without wake-ups: a busy
    /// host only says so ([`HostLimiter::try_acquire`]).
    pub fn new(per_host: usize) -> HostLimiter {
        HostLimiter::build(per_host, None)
    }

    /// As [`HostLimiter::new`], and [`HostLimiter::acquire_or_queue`] wakes a queued connection
    /// through the returned stream when a slot of its host frees.
    pub fn waking(per_host: usize) -> (HostLimiter, WakeUps) {
        let (sender, receiver) = unbounded();
        (HostLimiter::build(per_host, Some(sender)), receiver)
    }

    fn build(per_host: usize, wake: Option<UnboundedSender<ObjectKey>>) -> HostLimiter {
        HostLimiter {
            per_host,
            shared: Arc::new(Shared {
                hosts: Mutex::new(HashMap::new()),
                wake,
            }),
        }
    }

    /// Takes a slot for `host` if one is free right now: `Err(Busy)` otherwise, and nobody is
    /// woken for it later (the look-ups of `spec.repositories` borrow free slots this way).
    pub fn try_acquire(&self, host: &str) -> Result<Option<HostSlot>, Busy> {
        self.take(host, None)
    }

    /// Takes a slot for `host` for connection `key`, or queues `key` for the host: the next slot
    /// that frees wakes it. `Err(Busy)` says how many wait for the host.
    pub fn acquire_or_queue(&self, host: &str, key: &ObjectKey) -> Result<Option<HostSlot>, Busy> {
        self.take(host, Some(key))
    }

    fn take(&self, host: &str, key: Option<&ObjectKey>) -> Result<Option<HostSlot>, Busy> {
        if self.per_host == 0 {
            return Ok(None);
        }
        // Trying and queueing under one lock: a slot freed in between would wake nobody.
        let mut hosts = self.shared.lock();
        let entry = hosts.entry(host.to_owned()).or_insert_with(|| Host {
            slots: Arc::new(Semaphore::new(self.per_host)),
            waiting: VecDeque::new(),
            queued: HashSet::new(),
        });
        match entry.slots.clone().try_acquire_owned() {
            Ok(permit) => {
                if let Some(key) = key {
                    entry.queued.remove(key);
                }
                Ok(Some(HostSlot {
                    permit: Some(permit),
                    host: host.to_owned(),
                    shared: self.shared.clone(),
                }))
            }
            Err(_) => {
                if let Some(key) = key
                    && self.shared.wake.is_some()
                    && entry.queued.insert(key.clone())
                {
                    entry.waiting.push_back(key.clone());
                }
                Err(Busy {
                    waiting: entry.queued.len(),
                })
            }
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Host>> {
        self.hosts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A slot of `host` freed: wake the first connection still queued for it.
    fn freed(&self, host: &str) {
        let Some(wake) = &self.wake else {
            return;
        };
        let mut hosts = self.lock();
        let Some(entry) = hosts.get_mut(host) else {
            return;
        };
        while let Some(key) = entry.waiting.pop_front() {
            if entry.queued.remove(&key) {
                // The controller stopped: nobody to wake.
                let _ = wake.unbounded_send(key);
                break;
            }
        }
        if entry.waiting.is_empty() {
            entry.waiting.shrink_to(16);
        }
    }
}

/// One verification's (or look-up's) place at a host; dropping it frees the place and wakes the
/// next connection queued for the host.
pub struct HostSlot {
    permit: Option<OwnedSemaphorePermit>,
    host: String,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for HostSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostSlot").field("host", &self.host).finish()
    }
}

impl Drop for HostSlot {
    fn drop(&mut self) {
        // Free first: the woken connection must find the slot free.
        drop(self.permit.take());
        self.shared.freed(&self.host);
    }
}

/// Every slot for the host is taken.
#[derive(Debug, PartialEq, Eq)]
pub struct Busy {
    /// Connections queued for the host (0 when nobody is woken for it).
    pub waiting: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{FutureExt, StreamExt};

    #[test]
    fn caps_each_host_separately() {
        let limiter = HostLimiter::new(2);
        let a1 = limiter.try_acquire("a:443").unwrap();
        let _a2 = limiter.try_acquire("a:443").unwrap();
        assert!(limiter.try_acquire("a:443").is_err(), "no third slot for a");
        let _b = limiter.try_acquire("b:443").expect("b is not limited by a");
        drop(a1);
        limiter.try_acquire("a:443").expect("a slot frees up");
    }

    #[test]
    fn try_acquire_does_not_wait() {
        let limiter = HostLimiter::new(1);
        let first = limiter.try_acquire("a").unwrap();
        assert!(first.is_some());
        assert_eq!(limiter.try_acquire("a").unwrap_err(), Busy { waiting: 0 });
        assert!(limiter.try_acquire("b").is_ok());
        drop(first);
        assert!(limiter.try_acquire("a").is_ok());
    }

    #[test]
    fn zero_means_unlimited() {
        let limiter = HostLimiter::new(0);
        for _ in 0..100 {
            assert!(limiter.try_acquire("a").unwrap().is_none());
        }
    }

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new("n", name)
    }

    /// What the wake-ups said so far, without waiting.
    fn woken(wake_ups: &mut WakeUps) -> Vec<String> {
        let mut names = Vec::new();
        while let Some(Some(key)) = wake_ups.next().now_or_never() {
            names.push(key.name);
        }
        names
    }

    #[test]
    fn a_freed_slot_wakes_the_first_connection_queued_for_its_host() {
        let (limiter, mut wake_ups) = HostLimiter::waking(1);
        let held = limiter.acquire_or_queue("a", &key("first")).unwrap();
        assert_eq!(limiter.acquire_or_queue("a", &key("second")).unwrap_err().waiting, 1);
        assert_eq!(limiter.acquire_or_queue("a", &key("third")).unwrap_err().waiting, 2);
        assert_eq!(
            limiter.acquire_or_queue("a", &key("second")).unwrap_err().waiting,
            2,
            "queued once however often it finds the host busy"
        );
        let other = limiter.acquire_or_queue("b", &key("elsewhere")).unwrap();
        drop(other);
        assert!(woken(&mut wake_ups).is_empty(), "nobody waits for b");

        drop(held);
        assert_eq!(woken(&mut wake_ups), ["second"], "one slot, one wake-up, in order");
        let second = limiter.acquire_or_queue("a", &key("second")).unwrap();
        drop(second);
        assert_eq!(woken(&mut wake_ups), ["third"]);
        drop(limiter.acquire_or_queue("a", &key("third")).unwrap());
        assert!(woken(&mut wake_ups).is_empty(), "the queue is empty");
    }

    #[test]
    fn a_connection_that_got_a_slot_another_way_is_not_woken_again() {
        let (limiter, mut wake_ups) = HostLimiter::waking(2);
        let one = limiter.acquire_or_queue("a", &key("one")).unwrap();
        let two = limiter.acquire_or_queue("a", &key("two")).unwrap();
        limiter.acquire_or_queue("a", &key("late")).unwrap_err();
        limiter.acquire_or_queue("a", &key("later")).unwrap_err();
        drop(one);
        assert_eq!(woken(&mut wake_ups), ["late"]);
        // "later" comes back on its own (e.g. its fallback timer) and finds the slot "late" was
        // woken for: it takes it, and leaves the queue.
        let later = limiter.acquire_or_queue("a", &key("later")).unwrap();
        limiter.acquire_or_queue("a", &key("late")).unwrap_err();
        drop(two);
        assert_eq!(woken(&mut wake_ups), ["late"], "not 'later', which is verifying");
        drop(later);
        assert!(woken(&mut wake_ups).is_empty());
    }

    #[test]
    fn borrowed_slots_wake_queued_connections_when_they_are_given_back() {
        let (limiter, mut wake_ups) = HostLimiter::waking(1);
        let borrowed = limiter.try_acquire("a").unwrap();
        limiter.acquire_or_queue("a", &key("waiting")).unwrap_err();
        assert_eq!(
            limiter.try_acquire("a").unwrap_err().waiting,
            1,
            "a look-up does not queue"
        );
        drop(borrowed);
        assert_eq!(woken(&mut wake_ups), ["waiting"]);
    }
}
