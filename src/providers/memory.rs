//! What verifications remember between themselves, so that each one costs one round trip and
//! as few requests as its provider allows.
//!
//! - **Instance facts** (server version, which API version the instance serves) belong to the
//!   instance, not to a token: they are learned once per instance, reused for
//!   [`INSTANCE_FACTS_TTL`], and forgotten at once when the instance answers differently (a
//!   failure to reach it, an answer that is not its API). Concurrent verifications of a stale
//!   instance learn it once: the first one asks, the others wait for that answer — alongside
//!   their own requests, so the wait costs no extra round trip.
//! - **Token hints** (GitHub and Bitbucket Cloud: whether the e-mail list is worth reading;
//!   Bitbucket Server: the user name the token acts as) let the next verification of the same
//!   token send every request it needs at once. They are keyed by [`Token::fingerprint`], so no
//!   token is kept, bounded in number and, like instance facts, asked afresh once stale (a
//!   token that gains a permission is noticed within that time).

use crate::api::ProviderKind;
use crate::token::Token;
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long instance facts are reused before the instance is asked again.
pub const INSTANCE_FACTS_TTL: Duration = Duration::from_secs(15 * 60);
/// Token hints kept at most; beyond that they are dropped (a dropped hint costs one
/// verification its best request plan, nothing else).
const MAX_HINTS: usize = 100_000;

/// Facts about an instance that every token sees alike.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstanceFacts {
    pub server_version: Option<String>,
    /// The instance refuses the current API version and serves an older one only
    /// (Azure DevOps Server before 2019).
    pub legacy_api: bool,
}

/// What the last verification of a token learned about the requests the next one needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hint {
    /// Whether reading the e-mail list gave the e-mail (else it is not asked for).
    ReadEmails(bool),
    /// The user name the token acts as (Bitbucket Server: its details need it in the path).
    Username(String),
}

type Learned = Arc<tokio::sync::Mutex<Option<(Instant, InstanceFacts)>>>;

/// The memory shared by every verification of one [`super::http::HttpClient`].
pub struct Memory {
    ttl: Duration,
    instances: Mutex<HashMap<String, Learned>>,
    hints: Mutex<HashMap<u64, (Instant, Hint)>>,
}

impl Default for Memory {
    fn default() -> Self {
        Memory::new(INSTANCE_FACTS_TTL)
    }
}

/// The memory key of an instance: provider and API root.
pub fn instance_key(kind: ProviderKind, api_root: &str) -> String {
    format!("{kind} {}", api_root.trim_end_matches('/'))
}

impl Memory {
    pub fn new(ttl: Duration) -> Memory {
        Memory {
            ttl,
            instances: Mutex::new(HashMap::new()),
            hints: Mutex::new(HashMap::new()),
        }
    }

    fn slot(&self, key: &str) -> Learned {
        let mut instances = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        instances.entry(key.to_owned()).or_default().clone()
    }

    /// The instance's facts: remembered ones while fresh, else those `learn` finds out (which
    /// are then remembered, also when it found out nothing: the instance is not asked again
    /// before they go stale).
    pub async fn instance_facts<F, Fut>(&self, key: &str, learn: F) -> InstanceFacts
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = InstanceFacts>,
    {
        let slot = self.slot(key);
        let mut learned = slot.lock().await;
        if let Some((at, facts)) = learned.as_ref()
            && at.elapsed() < self.ttl
        {
            return facts.clone();
        }
        let facts = learn().await;
        *learned = Some((Instant::now(), facts.clone()));
        facts
    }

    /// Fresh facts of the instance, if any, without asking it.
    pub fn known_facts(&self, key: &str) -> Option<InstanceFacts> {
        let slot = self.slot(key);
        let learned = slot.try_lock().ok()?;
        learned
            .as_ref()
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, facts)| facts.clone())
    }

    /// Remembers facts an answer revealed on the way.
    pub fn remember_facts(&self, key: &str, facts: InstanceFacts) {
        if let Ok(mut learned) = self.slot(key).try_lock() {
            *learned = Some((Instant::now(), facts));
        }
    }

    /// The instance answered differently from what is remembered: ask it again next time.
    pub fn forget_instance(&self, key: &str) {
        let mut instances = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        instances.remove(key);
    }

    pub fn hint(&self, key: &str, token: &Token) -> Option<Hint> {
        let hints = self.hints.lock().unwrap_or_else(|p| p.into_inner());
        hints
            .get(&token.fingerprint(key))
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, hint)| hint.clone())
    }

    pub fn remember_hint(&self, key: &str, token: &Token, hint: Hint) {
        let mut hints = self.hints.lock().unwrap_or_else(|p| p.into_inner());
        if hints.len() >= MAX_HINTS {
            hints.clear();
        }
        hints.insert(token.fingerprint(key), (Instant::now(), hint));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn version(v: &str) -> InstanceFacts {
        InstanceFacts {
            server_version: Some(v.to_owned()),
            legacy_api: false,
        }
    }

    #[tokio::test]
    async fn facts_are_learned_once_until_stale_or_forgotten() {
        let memory = Memory::new(Duration::from_secs(60));
        let asked = AtomicUsize::new(0);
        let learn = || async {
            asked.fetch_add(1, Ordering::SeqCst);
            version("17.5.1")
        };
        let all = futures::future::join_all((0..10).map(|_| memory.instance_facts("a", learn))).await;
        assert!(all.iter().all(|f| *f == version("17.5.1")));
        assert_eq!(asked.load(Ordering::SeqCst), 1, "concurrent verifications ask once");
        assert_eq!(memory.known_facts("a"), Some(version("17.5.1")));
        memory.forget_instance("a");
        assert_eq!(memory.known_facts("a"), None);
        memory.instance_facts("a", learn).await;
        assert_eq!(asked.load(Ordering::SeqCst), 2);

        let stale = Memory::new(Duration::ZERO);
        stale.instance_facts("b", learn).await;
        stale.instance_facts("b", learn).await;
        assert_eq!(asked.load(Ordering::SeqCst), 4, "stale facts are learned again");
    }

    #[test]
    fn hints_are_per_instance_and_token() {
        let memory = Memory::default();
        let one = Token::new("t1").unwrap();
        let two = Token::new("t2").unwrap();
        memory.remember_hint("a", &one, Hint::ReadEmails(false));
        assert_eq!(memory.hint("a", &one), Some(Hint::ReadEmails(false)));
        assert_eq!(memory.hint("a", &two), None);
        assert_eq!(memory.hint("b", &one), None);
    }
}
