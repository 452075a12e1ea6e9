//! Per-instance politeness: a cap on verifications in flight against one instance, so that many
//! connections to the same instance never hammer it, while connections spread over many hosts
//! still use the full `--max-concurrent-verifications`.
//!
//! What it counts is what is really in flight: the key is the host the requests go to
//! ([`crate::providers::Provider::api_host`]: github.com and api.github.com are one), and the
//! controller gives the slot up as soon as the instance has answered, before the status write.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct HostLimiter {
    per_host: usize,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl HostLimiter {
    /// `per_host == 0` means no cap beyond the global concurrency.
    pub fn new(per_host: usize) -> HostLimiter {
        HostLimiter {
            per_host,
            hosts: Mutex::new(HashMap::new()),
        }
    }

    fn semaphore(&self, host: &str) -> Arc<Semaphore> {
        let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
        hosts
            .entry(host.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_host)))
            .clone()
    }

    /// Takes a slot for `host` if one is free right now: `Err(Busy)` otherwise. The controller
    /// uses this so that a connection waiting for a busy host never holds one of the global
    /// verification slots (which would starve connections to other hosts).
    pub fn try_acquire(&self, host: &str) -> Result<Option<OwnedSemaphorePermit>, Busy> {
        if self.per_host == 0 {
            return Ok(None);
        }
        self.semaphore(host).try_acquire_owned().map(Some).map_err(|_| Busy)
    }
}

/// Every slot for the host is taken.
#[derive(Debug, PartialEq, Eq)]
pub struct Busy;

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(limiter.try_acquire("a").unwrap_err(), Busy);
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
}
