//! Rate-limit holds: once an instance has rate-limited a token, every connection to that
//! instance that uses the same token waits until the reset instead of walking into the same
//! wall, and is looked at again right after it (with jitter), not on the blind backoff.
//!
//! Keyed by instance and [`Token::fingerprint`]: the token itself is not kept.

use crate::token::Token;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// Holds kept before expired ones are swept.
const SWEEP_AT: usize = 10_000;
/// Most jitter added after a reset, so that held connections do not all return at once.
const MAX_JITTER: Duration = Duration::from_secs(30);

#[derive(Default)]
pub struct Holds {
    until: Mutex<HashMap<u64, jiff::Timestamp>>,
}

impl Holds {
    /// Holds `token` on `instance` until `until` (a later reset wins).
    pub fn hold(&self, instance: &str, token: &Token, until: jiff::Timestamp) {
        let now = jiff::Timestamp::now();
        let mut holds = self.until.lock().unwrap_or_else(|p| p.into_inner());
        if holds.len() >= SWEEP_AT {
            holds.retain(|_, at| *at > now);
        }
        let entry = holds.entry(token.fingerprint(instance)).or_insert(until);
        *entry = (*entry).max(until);
    }

    /// Until when `token` is held on `instance`, if it is.
    pub fn held_until(&self, instance: &str, token: &Token) -> Option<jiff::Timestamp> {
        let now = jiff::Timestamp::now();
        let key = token.fingerprint(instance);
        let mut holds = self.until.lock().unwrap_or_else(|p| p.into_inner());
        match holds.get(&key) {
            Some(until) if *until > now => Some(*until),
            Some(_) => {
                holds.remove(&key);
                None
            }
            None => None,
        }
    }
}

/// How long to wait for `until`, plus jitter: up to a tenth of the wait (at most
/// [`MAX_JITTER`]) and at least a few hundred milliseconds, so that the instance's clock and
/// ours need not agree to the second.
pub fn delay_until(until: jiff::Timestamp) -> Duration {
    let wait = Duration::try_from(until.duration_since(jiff::Timestamp::now())).unwrap_or(Duration::ZERO);
    let spread = (wait / 10).min(MAX_JITTER).max(Duration::from_millis(500));
    wait + spread.mul_f64(0.5 + fastrand::f64() * 0.5)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_per_instance_and_token_until_the_reset() {
        let holds = Holds::default();
        let token = Token::new("t").unwrap();
        let other = Token::new("u").unwrap();
        let later = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(60);
        holds.hold("gitlab:443", &token, later);
        assert_eq!(holds.held_until("gitlab:443", &token), Some(later));
        assert_eq!(holds.held_until("gitlab:443", &other), None);
        assert_eq!(holds.held_until("other:443", &token), None);
        let earlier = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(10);
        holds.hold("gitlab:443", &token, earlier);
        assert_eq!(
            holds.held_until("gitlab:443", &token),
            Some(later),
            "a later reset wins"
        );

        let past = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(1);
        holds.hold("past:443", &token, past);
        assert_eq!(holds.held_until("past:443", &token), None);
    }

    #[test]
    fn delay_is_the_wait_plus_bounded_jitter() {
        let until = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(100);
        for _ in 0..100 {
            let delay = delay_until(until);
            assert!(
                delay >= Duration::from_secs(99) && delay <= Duration::from_secs(111),
                "{delay:?}"
            );
        }
        let long = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(3600);
        assert!(delay_until(long) <= Duration::from_secs(3631));
        let past = jiff::Timestamp::now() - jiff::SignedDuration::from_secs(5);
        assert!(delay_until(past) <= Duration::from_millis(500));
    }
}
