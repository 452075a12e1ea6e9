//! Which repositories a connection reaches: every path of `spec.repositories` looked up with
//! the connection's token, once the token itself is verified.
//!
//! One file per provider holds the look-up as its vendor documents it (`gitlab`, `github`,
//! `bitbucket`, `azure_devops`, `gitea`); [`paths`] checks the path forms for admission and
//! `check`. This module runs the look-ups and decides what they mean for Ready:
//! - look-ups of one connection go out together, at most [`Concurrency`] at once: the controller
//!   gives them only the per-host politeness slots that are free (never waiting for one, so two
//!   connections to one host can never hold each other's slots), `verify` a fixed number;
//! - every request goes through the shared [`HttpClient`] to URLs built from `spec.url` (or the
//!   provider's fixed cloud API root), so the TLS settings and the address guard are the
//!   token's, and a redirect to another host never carries it;
//! - the token verified but a listed repository unreadable: Ready turns False with
//!   `RepositoryUnreadable`, the token facts stay.

mod answer;
mod azure_devops;
mod bitbucket;
mod gitea;
mod github;
mod gitlab;
pub mod paths;

use crate::api::{ProviderKind, ReadyReason, RepositoryReason, RepositoryStatus};
use crate::politeness::{Busy, HostLimiter, HostSlot};
use crate::providers::bitbucket::{BITBUCKET, Bitbucket};
use crate::providers::github::{GITHUB, GitHub};
use crate::providers::http::{HttpClient, deadline};
use crate::providers::{self, Target, Verification};
use answer::unreadable;
use futures::StreamExt;
use std::cell::Cell;

/// Look-ups in flight at once for one connection when nothing else limits them (`verify`).
pub const DEFAULT_CONCURRENCY: usize = 8;
/// Unreadable paths named in the Ready message; the rest are counted.
const NAMED_IN_MESSAGE: usize = 3;

/// Where the cloud APIs of GitHub and Bitbucket live: the deployed roots, or (tests) a local
/// stand-in. Only code builds these, never a spec.
#[derive(Clone, Copy)]
pub struct Apis<'a> {
    pub github: &'a GitHub,
    pub bitbucket: &'a Bitbucket,
}

impl Apis<'static> {
    /// `https://api.github.com` and `https://api.bitbucket.org`.
    pub fn deployed() -> Apis<'static> {
        Apis {
            github: &GITHUB,
            bitbucket: &BITBUCKET,
        }
    }
}

/// How many look-ups of one connection may be in flight at once (at least one).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Concurrency(usize);

impl Concurrency {
    pub fn new(n: usize) -> Concurrency {
        Concurrency(n.max(1))
    }

    pub fn get(self) -> usize {
        self.0
    }
}

/// Takes the host's free politeness slots, up to [`DEFAULT_CONCURRENCY`] look-ups in all,
/// without waiting: the caller's own verification slot is the first. Hold the permits while
/// the look-ups run.
pub fn borrow_slots(limiter: &HostLimiter, host: &str) -> (Concurrency, Vec<HostSlot>) {
    let mut permits = Vec::new();
    while permits.len() + 1 < DEFAULT_CONCURRENCY {
        match limiter.try_acquire(host) {
            Ok(Some(permit)) => permits.push(permit),
            // No cap on this host: as many as one connection sends at most.
            Ok(None) => return (Concurrency::new(DEFAULT_CONCURRENCY), Vec::new()),
            Err(Busy { .. }) => break,
        }
    }
    (Concurrency::new(permits.len() + 1), permits)
}

/// What the look-ups of one connection found.
#[derive(Debug)]
pub struct Lookups {
    /// One entry per path, in order.
    pub repositories: Vec<RepositoryStatus>,
    /// The instance rate-limited the token during the look-ups: when it takes its requests
    /// again (the latest reset seen).
    pub rate_limited_until: Option<jiff::Timestamp>,
}

impl Lookups {
    /// [`readiness`], and a rate limit met by a look-up schedules the next verification as the
    /// token's own would (and holds the token on the instance until the reset).
    pub fn readiness(&self, verification: Verification) -> Verification {
        let mut verification = readiness(verification, &self.repositories);
        verification.retry_at = verification.retry_at.max(self.rate_limited_until);
        verification
    }
}

tokio::task_local! {
    /// The latest reset a look-up of the running [`check_all`] was told of.
    static RATE_LIMITED: Cell<Option<jiff::Timestamp>>;
}

/// Looks every path up, in order; one entry per path. Once the instance rate-limited the token,
/// the paths not yet asked for are not sent into the same wall: they say so and are looked up
/// after the reset.
pub async fn check_all(
    kind: ProviderKind,
    apis: Apis<'_>,
    http: &HttpClient,
    target: &Target,
    paths: &[String],
    concurrency: Concurrency,
) -> Lookups {
    // The futures are made by the iterator, not by a closure of the stream: a closure that
    // returns a borrowing future makes the reconcile task's future not `Send` for all lifetimes.
    let lookups: Vec<_> = paths
        .iter()
        .map(|path| lookup(kind, apis, http, target, path))
        .collect();
    let all = futures::stream::iter(lookups).buffered(concurrency.get()).collect();
    RATE_LIMITED
        .scope(Cell::new(None), async {
            let repositories = all.await;
            Lookups {
                repositories,
                rate_limited_until: RATE_LIMITED.with(Cell::get),
            }
        })
        .await
}

/// Looks one path up with the provider's API.
pub async fn lookup(
    kind: ProviderKind,
    apis: Apis<'_>,
    http: &HttpClient,
    target: &Target,
    path: &str,
) -> RepositoryStatus {
    if let Some(until) = RATE_LIMITED.try_with(Cell::get).ok().flatten() {
        return unreadable(
            path,
            RepositoryReason::ProviderError,
            format!("not looked up: the instance rate-limited this token until {until}; it is looked up after that"),
        );
    }
    let work = async {
        let found = match kind {
            ProviderKind::GitLab => gitlab::lookup(&providers::gitlab::api(http, target), path).await,
            ProviderKind::GitHub => github::lookup(&apis.github.api(http, target), path).await,
            ProviderKind::Bitbucket => bitbucket::lookup(apis.bitbucket, http, target, path).await,
            ProviderKind::AzureDevOps => azure_devops::lookup(&providers::azure_devops::api(http, target), path).await,
            ProviderKind::Gitea => gitea::lookup(&providers::gitea::api(http, target), path).await,
        };
        found.unwrap_or_else(|not_read| not_read.status(path))
    };
    // One deadline per look-up, as for the token check: retries and Retry-After included.
    let within = http.config().timeout;
    let status = match deadline::run(within, work).await {
        Some(status) => status,
        None => unreadable(
            path,
            RepositoryReason::Unreachable,
            format!("looking up {path}: no answer within {within:?}; it is tried again"),
        ),
    };
    without_token(status, target)
}

/// An instance that echoes the token back in an error body never gets it into a status.
fn without_token(mut status: RepositoryStatus, target: &Target) -> RepositoryStatus {
    if let Some(message) = &mut status.message {
        target.token.redact(message);
    }
    status
}

/// Turns a verified token with unreadable repositories into `RepositoryUnreadable`; any other
/// verification passes unchanged (the token's own failure says more).
pub fn readiness(verification: Verification, repositories: &[RepositoryStatus]) -> Verification {
    if verification.reason != ReadyReason::Verified {
        return verification;
    }
    let unreadable: Vec<&RepositoryStatus> = repositories.iter().filter(|r| !r.readable).collect();
    if unreadable.is_empty() {
        return verification;
    }
    let named: Vec<String> = unreadable
        .iter()
        .take(NAMED_IN_MESSAGE)
        .map(|r| match r.reason {
            Some(reason) => format!("{} ({reason})", r.path),
            None => r.path.clone(),
        })
        .collect();
    let more = match unreadable.len().saturating_sub(NAMED_IN_MESSAGE) {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    let message = format!(
        "{} of {} listed repositories cannot be read with this token: {}{more}; see status.repositories ({})",
        unreadable.len(),
        repositories.len(),
        named.join(", "),
        verification.message,
    );
    Verification {
        reason: ReadyReason::RepositoryUnreadable,
        message,
        ..verification
    }
}

/// `READABLE/LISTED`, the `-o wide` column.
pub fn summary(repositories: &[RepositoryStatus]) -> String {
    let readable = repositories.iter().filter(|r| r.readable).count();
    format!("{readable}/{}", repositories.len())
}

/// Whether a repository failed in a way that may heal by itself (look again with backoff).
pub fn any_transient(repositories: &[RepositoryStatus]) -> bool {
    repositories
        .iter()
        .any(|r| r.reason.is_some_and(RepositoryReason::is_transient))
}

#[cfg(test)]
mod tests {
    use super::answer::{clean_clone_url, readable};
    use super::*;
    use crate::providers::Facts;

    fn entry(path: &str, reason: Option<RepositoryReason>) -> RepositoryStatus {
        match reason {
            None => readable(path, Some("main".into()), None),
            Some(reason) => unreadable(path, reason, "x"),
        }
    }

    #[test]
    fn readiness_names_the_first_few_and_counts_the_rest() {
        let verified = Verification::verified("authenticated as jdoe", Facts::default());
        let all_good = [entry("a/b", None)];
        assert_eq!(readiness(verified.clone(), &all_good).reason, ReadyReason::Verified);
        let mixed = [
            entry("a/ok", None),
            entry("a/1", Some(RepositoryReason::NotFound)),
            entry("a/2", Some(RepositoryReason::Forbidden)),
            entry("a/3", Some(RepositoryReason::SsoRequired)),
            entry("a/4", Some(RepositoryReason::NotFound)),
            entry("a/5", Some(RepositoryReason::NotFound)),
        ];
        let v = readiness(verified, &mixed);
        assert_eq!(v.reason, ReadyReason::RepositoryUnreadable);
        assert!(
            v.message
                .starts_with("5 of 6 listed repositories cannot be read with this token: a/1 (NotFound), a/2 (Forbidden), a/3 (SSORequired) and 2 more"),
            "{}",
            v.message
        );
        assert_eq!(summary(&mixed), "1/6");
        let failed = Verification::failed(ReadyReason::Unauthorized, "no");
        assert_eq!(readiness(failed, &mixed).reason, ReadyReason::Unauthorized);
    }

    #[test]
    fn look_ups_use_only_free_host_slots() {
        let limiter = HostLimiter::new(4);
        let _own = limiter.try_acquire("h:443").unwrap();
        let (concurrency, extra) = borrow_slots(&limiter, "h:443");
        assert_eq!(
            (concurrency.get(), extra.len()),
            (4, 3),
            "its own slot and the 3 free ones"
        );
        let (busy, none) = borrow_slots(&limiter, "h:443");
        assert_eq!(
            (busy.get(), none.len()),
            (1, 0),
            "a full host leaves one look-up at a time"
        );
        drop(extra);
        let unlimited = HostLimiter::new(0);
        assert_eq!(borrow_slots(&unlimited, "h").0.get(), DEFAULT_CONCURRENCY);
    }

    #[test]
    fn clone_urls_lose_user_info() {
        assert_eq!(
            clean_clone_url("https://jdoe@bitbucket.org/ws/app.git").as_deref(),
            Some("https://bitbucket.org/ws/app.git")
        );
        assert_eq!(clean_clone_url("ssh://git@host/x.git"), None);
    }
}
