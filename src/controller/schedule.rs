//! When to look at a connection again: the interval with jitter, capped exponential backoff
//! after transient failures, right after a rate limit's reset, or not until the spec changes.

use super::Settings;
use crate::api::{GitProviderConnection, ReadyReason};
use crate::duration::parse_verify_interval;
use crate::throttle::delay_until;
use kube::runtime::controller::Action;
use std::time::Duration;

/// When to look again: right after a rate limit's reset (`retry_at`), else by the reason.
pub fn next_action(
    conn: &GitProviderConnection,
    reason: ReadyReason,
    failures: u32,
    transient: bool,
    retry_at: Option<jiff::Timestamp>,
    settings: &Settings,
) -> Action {
    if let Some(until) = retry_at {
        return Action::requeue(delay_until(until));
    }
    match reason {
        // Nothing to do until the spec changes (or, for duplicates, the holder goes away:
        // the index triggers that).
        ReadyReason::Suspended | ReadyReason::DuplicateInstanceName => Action::await_change(),
        _ => {
            let interval = parse_verify_interval(&conn.spec.verify_interval).unwrap_or(Duration::from_secs(3600));
            if transient {
                Action::requeue(backoff_delay(failures, interval, settings))
            } else {
                Action::requeue(jittered(interval))
            }
        }
    }
}

/// Exponential backoff with full jitter on the upper half: base·2^(n-1), capped by
/// `backoff_max` and by the interval itself.
pub fn backoff_delay(failures: u32, interval: Duration, settings: &Settings) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    let raw = settings.backoff_base.saturating_mul(1u32 << exponent);
    let capped = raw.min(settings.backoff_max).min(interval);
    capped.mul_f64(0.5 + fastrand::f64() * 0.5)
}

/// The interval ±10%, so connections created together do not verify together forever.
pub fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(0.9 + fastrand::f64() * 0.2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(interval: &str) -> GitProviderConnection {
        let mut c: GitProviderConnection = serde_json::from_value(serde_json::json!({
            "apiVersion": "gitprovider.dev/v1alpha1", "kind": "GitProviderConnection",
            "metadata": {"name": "c", "namespace": "n"},
            "spec": {"provider": "GitLab", "instanceName": "x", "url": "https://g", "tokenSecretRef": {"name": "s"}}
        }))
        .unwrap();
        c.spec.verify_interval = interval.into();
        c
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let settings = Settings::default();
        let hour = Duration::from_secs(3600);
        for _ in 0..50 {
            let first = backoff_delay(1, hour, &settings);
            assert!(
                first >= Duration::from_secs(5) && first <= Duration::from_secs(10),
                "{first:?}"
            );
            let third = backoff_delay(3, hour, &settings);
            assert!(
                third >= Duration::from_secs(20) && third <= Duration::from_secs(40),
                "{third:?}"
            );
            let many = backoff_delay(30, hour, &settings);
            assert!(many <= settings.backoff_max, "{many:?}");
            let short = backoff_delay(30, Duration::from_secs(60), &settings);
            assert!(
                short <= Duration::from_secs(60),
                "never longer than the interval: {short:?}"
            );
        }
    }

    #[test]
    fn interval_is_jittered_within_ten_percent() {
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(3600));
            assert!(
                d >= Duration::from_secs(3240) && d <= Duration::from_secs(3960),
                "{d:?}"
            );
        }
    }

    #[test]
    fn actions_per_reason() {
        let settings = Settings::default();
        let c = conn("30m");
        assert_eq!(
            next_action(&c, ReadyReason::Suspended, 0, false, None, &settings),
            Action::await_change()
        );
        assert_eq!(
            next_action(&c, ReadyReason::DuplicateInstanceName, 0, false, None, &settings),
            Action::await_change()
        );
        let verified = format!(
            "{:?}",
            next_action(&c, ReadyReason::Verified, 0, false, None, &settings)
        );
        assert!(verified.contains("requeue_after: Some("), "{verified}");

        // A rate limit: right after its reset, not on the backoff (at most 10 s for a first
        // failure) nor the interval.
        let reset = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(100);
        let limited = next_action(&c, ReadyReason::ProviderError, 1, true, Some(reset), &settings);
        let backoff = Action::requeue(backoff_delay(1, Duration::from_secs(1800), &settings));
        assert_ne!(limited, backoff);
        for _ in 0..20 {
            let action = format!(
                "{:?}",
                next_action(&c, ReadyReason::ProviderError, 1, true, Some(reset), &settings)
            );
            let secs: f64 = action
                .split("requeue_after: Some(")
                .nth(1)
                .and_then(|rest| rest.split('s').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{action}"));
            assert!((99.0..=111.0).contains(&secs), "{action}");
        }
    }
}
