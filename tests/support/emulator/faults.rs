//! Fault injection, shared between the test (through [`Faults`]) and the server.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::error::ApiError;
use super::record::Target;
use super::store::Store;

type Predicate = Arc<dyn Fn(&str, &str, Option<&Target>) -> bool + Send + Sync>;

struct FailRule {
    remaining: usize,
    status: u16,
    matches: Option<Predicate>,
}

#[derive(Default)]
struct FaultState {
    gone_watches: usize,
    fail: VecDeque<FailRule>,
    stall: Duration,
}

/// A handle on the emulator's fault injection; cheap to clone.
#[derive(Clone)]
pub struct Faults {
    state: Arc<Mutex<FaultState>>,
    store: Arc<Store>,
}

impl Faults {
    pub(crate) fn new(store: Arc<Store>) -> Self {
        Self {
            state: Arc::default(),
            store,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FaultState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Ends every open watch stream now (cleanly, as a server-side timeout or an apiserver
    /// restart behind a load balancer would). Returns how many were open.
    pub fn drop_all_watches(&self) -> usize {
        self.store.lock().drop_watchers()
    }

    /// The next `n` watches that resume from a specific resourceVersion are answered with an
    /// `ERROR` event carrying a 410 Expired `Status`, as when that version has been compacted.
    pub fn gone_on_next_watches(&self, n: usize) {
        self.lock().gone_watches += n;
    }

    /// The next `n` requests (any kind, after authentication) fail with `status`: 500
    /// InternalError, 429 TooManyRequests or 503 ServiceUnavailable with `Retry-After: 1`,
    /// 504 Timeout, or a generic Status for other codes.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.lock().fail.push_back(FailRule {
            remaining: n,
            status,
            matches: None,
        });
    }

    /// Like [`fail_next`](Self::fail_next), for requests `pred(method, path, target)` selects.
    pub fn fail_next_matching(
        &self,
        n: usize,
        status: u16,
        pred: impl Fn(&str, &str, Option<&Target>) -> bool + Send + Sync + 'static,
    ) {
        self.lock().fail.push_back(FailRule {
            remaining: n,
            status,
            matches: Some(Arc::new(pred)),
        });
    }

    /// Delays every request by `d` before it is handled (`Duration::ZERO` to stop).
    pub fn stall(&self, d: Duration) {
        self.lock().stall = d;
    }

    /// Clears all pending faults.
    pub fn clear(&self) {
        *self.lock() = FaultState::default();
    }

    pub(crate) fn stall_duration(&self) -> Duration {
        self.lock().stall
    }

    /// Consumes one pending failure that applies to this request, if any.
    pub(crate) fn take_failure(
        &self,
        method: &str,
        path: &str,
        target: Option<&Target>,
    ) -> Option<ApiError> {
        let mut st = self.lock();
        let idx = st.fail.iter().position(|r| {
            r.remaining > 0 && r.matches.as_ref().is_none_or(|p| p(method, path, target))
        })?;
        let rule = &mut st.fail[idx];
        rule.remaining -= 1;
        let status = rule.status;
        if rule.remaining == 0 {
            st.fail.remove(idx);
        }
        Some(match status {
            429 => ApiError::too_many_requests(1),
            503 => ApiError::service_unavailable(1),
            504 => ApiError::timeout("injected fault: the request timed out"),
            500 => ApiError::internal("injected fault"),
            code => ApiError::new(code, "", format!("injected fault ({code})")),
        })
    }

    /// Consumes one pending forced-410 watch, if any.
    pub(crate) fn take_gone(&self) -> bool {
        let mut st = self.lock();
        if st.gone_watches > 0 {
            st.gone_watches -= 1;
            true
        } else {
            false
        }
    }
}
