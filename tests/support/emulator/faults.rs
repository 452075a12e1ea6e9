//! Fault injection, shared between the test (through [`Faults`]) and the server: what the
//! `emulator_` end-to-end tests need and a real server cannot do on demand.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use super::error::ApiError;
use super::record::Target;
use super::store::Store;

type Predicate = Arc<dyn Fn(&str, &str, Option<&Target>) -> bool + Send + Sync>;

struct FailRule {
    remaining: usize,
    status: u16,
    matches: Predicate,
}

#[derive(Default)]
struct FaultState {
    gone_watches: usize,
    fail: VecDeque<FailRule>,
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

    /// The next `n` requests that `pred(method, path, target)` selects fail with `status`
    /// (500: an InternalError `Status`; other codes: a `Status` with that code). Rules apply
    /// in the order they were added.
    pub fn fail_next_matching(
        &self,
        n: usize,
        status: u16,
        pred: impl Fn(&str, &str, Option<&Target>) -> bool + Send + Sync + 'static,
    ) {
        self.lock().fail.push_back(FailRule {
            remaining: n,
            status,
            matches: Arc::new(pred),
        });
    }

    /// Clears all pending faults.
    pub fn clear(&self) {
        *self.lock() = FaultState::default();
    }

    /// Consumes one pending failure that applies to this request, if any.
    pub(crate) fn take_failure(&self, method: &str, path: &str, target: Option<&Target>) -> Option<ApiError> {
        let mut st = self.lock();
        let idx = st
            .fail
            .iter()
            .position(|r| r.remaining > 0 && (r.matches)(method, path, target))?;
        let rule = &mut st.fail[idx];
        rule.remaining -= 1;
        let status = rule.status;
        if rule.remaining == 0 {
            st.fail.remove(idx);
        }
        Some(match status {
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
