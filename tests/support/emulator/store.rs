//! Object storage with etcd-like semantics: one global, monotonically increasing
//! resourceVersion; every write gets the next one and is appended to a bounded event history
//! (the window a watch can resume from); live watchers are fed under the same lock that orders
//! writes, so no watcher can miss or reorder an event.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::registry::{Registry, StorageKey};
use super::util::{meta_str, metadata_mut, rv_of};

/// `(namespace, name)`; namespace is `""` for cluster-scoped objects.
pub type ObjKey = (String, String);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
}

/// One write, as kept in the history and sent to watchers.
#[derive(Debug)]
pub struct WatchRecord {
    pub rv: u64,
    pub storage: StorageKey,
    pub namespace: String,
    pub kind: EventType,
    /// The object after the write.
    pub object: Arc<Value>,
}

/// Why a write could not be committed.
#[derive(Debug, PartialEq, Eq)]
pub enum WriteError {
    NotFound,
    AlreadyExists,
    /// The stored object's resourceVersion is not the expected one.
    Conflict,
}

/// A requested resourceVersion is older than the history window.
#[derive(Debug, PartialEq, Eq)]
pub struct TooOld {
    pub oldest: u64,
}

struct WatcherSlot {
    id: u64,
    storage: StorageKey,
    namespace: Option<String>,
    tx: mpsc::UnboundedSender<Arc<WatchRecord>>,
}

pub struct State {
    pub registry: Registry,
    collections: HashMap<StorageKey, BTreeMap<ObjKey, Arc<Value>>>,
    rv: u64,
    history: VecDeque<Arc<WatchRecord>>,
    history_cap: usize,
    /// The rv of the newest event dropped from the history (0: nothing dropped yet). A watch
    /// from rv R works iff R >= compacted.
    compacted: u64,
    watchers: Vec<WatcherSlot>,
    next_watcher: u64,
}

/// The shared store; lock it for a consistent view and never hold the guard across an await.
pub struct Store {
    state: Mutex<State>,
}

impl Store {
    pub fn new(registry: Registry, history_cap: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                registry,
                collections: HashMap::new(),
                rv: 1,
                history: VecDeque::new(),
                history_cap: history_cap.max(1),
                compacted: 0,
                watchers: Vec::new(),
                next_watcher: 1,
            }),
        })
    }

    /// Locks the state. A panic elsewhere while holding the lock cannot leave the maps in a
    /// torn state (every mutation is a single insert/remove), so poisoning is ignored.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    pub fn current_rv(&self) -> u64 {
        self.rv
    }

    pub fn get(&self, storage: &StorageKey, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.collections
            .get(storage)
            .and_then(|c| c.get(&(ns.to_owned(), name.to_owned())))
            .cloned()
    }

    /// Current objects of a collection, in key order, optionally within one namespace.
    pub fn list(&self, storage: &StorageKey, ns: Option<&str>) -> Vec<Arc<Value>> {
        self.collections
            .get(storage)
            .map(|c| {
                c.iter()
                    .filter(|((n, _), _)| ns.is_none_or(|want| want == n))
                    .map(|(_, v)| v.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// One page of a collection (optionally within one namespace): the objects with keys after
    /// `after` (from the first when `None`), in key order, at most `max` of them. Costs the
    /// page, never a copy of the collection, so that listing a large collection page by page
    /// is linear.
    pub fn page(
        &self,
        storage: &StorageKey,
        ns: Option<&str>,
        after: Option<&ObjKey>,
        max: Option<usize>,
    ) -> Vec<Arc<Value>> {
        let lower: Bound<ObjKey> = match (after, ns) {
            (Some(a), Some(n)) if a.0.as_str() < n => Bound::Included((n.to_owned(), String::new())),
            (Some(a), _) => Bound::Excluded(a.clone()),
            (None, Some(n)) => Bound::Included((n.to_owned(), String::new())),
            (None, None) => Bound::Unbounded,
        };
        let Some(coll) = self.collections.get(storage) else {
            return Vec::new();
        };
        coll.range((lower, Bound::Unbounded))
            .take_while(|((n, _), _)| ns.is_none_or(|want| want == n))
            .take(max.unwrap_or(usize::MAX))
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// History entries after `rv` for one collection, or `TooOld` when the window no longer
    /// reaches back that far.
    pub fn history_since(
        &self,
        storage: &StorageKey,
        ns: Option<&str>,
        rv: u64,
    ) -> Result<Vec<Arc<WatchRecord>>, TooOld> {
        if rv < self.compacted {
            return Err(TooOld {
                oldest: self.compacted + 1,
            });
        }
        let mut out: Vec<Arc<WatchRecord>> = self
            .history
            .iter()
            .rev()
            .take_while(|r| r.rv > rv)
            .filter(|r| r.storage == *storage && ns.is_none_or(|n| n == r.namespace))
            .cloned()
            .collect();
        out.reverse();
        Ok(out)
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn stamp(obj: &mut Value, rv: u64) {
        metadata_mut(obj).insert("resourceVersion".into(), json!(rv.to_string()));
    }

    fn record(&mut self, rec: WatchRecord) {
        let rec = Arc::new(rec);
        self.watchers.retain(|w| !w.tx.is_closed());
        for w in &self.watchers {
            if w.storage == rec.storage && w.namespace.as_ref().is_none_or(|n| *n == rec.namespace) {
                // A send only fails when the watcher is gone; it is pruned on the next write.
                let _ = w.tx.send(rec.clone());
            }
        }
        self.history.push_back(rec);
        while self.history.len() > self.history_cap {
            if let Some(old) = self.history.pop_front() {
                self.compacted = old.rv;
            }
        }
    }

    /// Stores a new object (name and namespace from its metadata) at the next resourceVersion.
    pub fn create(&mut self, storage: &StorageKey, mut obj: Value) -> Result<Arc<Value>, WriteError> {
        let key = (
            meta_str(&obj, "namespace").to_owned(),
            meta_str(&obj, "name").to_owned(),
        );
        let coll = self.collections.entry(storage.clone()).or_default();
        if coll.contains_key(&key) {
            return Err(WriteError::AlreadyExists);
        }
        let rv = self.next_rv();
        Self::stamp(&mut obj, rv);
        let obj = Arc::new(obj);
        self.collections
            .entry(storage.clone())
            .or_default()
            .insert(key.clone(), obj.clone());
        self.record(WatchRecord {
            rv,
            storage: storage.clone(),
            namespace: key.0,
            kind: EventType::Added,
            object: obj.clone(),
        });
        Ok(obj)
    }

    /// Replaces an object whose stored resourceVersion is `expected_rv`.
    pub fn update(&mut self, storage: &StorageKey, mut obj: Value, expected_rv: u64) -> Result<Arc<Value>, WriteError> {
        let key = (
            meta_str(&obj, "namespace").to_owned(),
            meta_str(&obj, "name").to_owned(),
        );
        let old = self
            .collections
            .get(storage)
            .and_then(|c| c.get(&key))
            .cloned()
            .ok_or(WriteError::NotFound)?;
        if rv_of(&old) != expected_rv {
            return Err(WriteError::Conflict);
        }
        let rv = self.next_rv();
        Self::stamp(&mut obj, rv);
        let obj = Arc::new(obj);
        self.collections
            .entry(storage.clone())
            .or_default()
            .insert(key.clone(), obj.clone());
        self.record(WatchRecord {
            rv,
            storage: storage.clone(),
            namespace: key.0,
            kind: EventType::Modified,
            object: obj.clone(),
        });
        Ok(obj)
    }

    /// Registers a live watcher. Call in the same critical section as the initial snapshot or
    /// history read, so nothing is missed or duplicated between the two.
    pub fn register_watcher(
        &mut self,
        storage: &StorageKey,
        ns: Option<&str>,
    ) -> (u64, mpsc::UnboundedReceiver<Arc<WatchRecord>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let id = self.next_watcher;
        self.next_watcher += 1;
        self.watchers.push(WatcherSlot {
            id,
            storage: storage.clone(),
            namespace: ns.map(str::to_owned),
            tx,
        });
        (id, rx)
    }

    pub fn unregister_watcher(&mut self, id: u64) {
        self.watchers.retain(|w| w.id != id);
    }

    /// Ends every open watch (their streams close cleanly, as on a server-side timeout).
    pub fn drop_watchers(&mut self) {
        self.watchers.clear();
    }
}
