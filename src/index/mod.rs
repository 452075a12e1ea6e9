//! The in-memory index of connections, kept by one watch and read by everyone:
//! - the controller asks which connections reference a Secret or ConfigMap that changed
//!   (so Secrets themselves are never cached: only their names cross this index);
//! - the controller and the admission webhook ask who holds an instance name.
//!
//! It is fed every watch event in order ([`ConnectionIndex::apply`], [`ConnectionIndex::remove`],
//! and the relist events), so it is as fresh as the watch: a few milliseconds behind the API
//! server. What it cannot see (two creates racing inside that window) the controller heals.

mod keys;

pub use keys::{Holder, InstanceKey, ObjectKey, RefKind, UniquenessScope, normalize_instance_name};

use crate::api::{CaBundleKind, GitProviderConnection, ProviderKind};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

/// Shared text: the index keeps each namespace once (interned) and each name once, however
/// many of its tables refer to it (per-table copies were a third of the index's memory:
/// BENCHMARKS.md, figures behind choices).
type Text = Arc<str>;

/// [`ObjectKey`] as stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    namespace: Text,
    name: Text,
}

impl Key {
    fn public(&self) -> ObjectKey {
        ObjectKey::new(&*self.namespace, &*self.name)
    }
}

/// [`InstanceKey`] as stored.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Instance {
    scope: Option<Text>,
    provider: ProviderKind,
    name: Text,
}

impl Instance {
    fn public(&self) -> InstanceKey {
        InstanceKey {
            scope: self.scope.as_deref().map(str::to_owned),
            provider: self.provider,
            name: self.name.to_string(),
        }
    }
}

/// [`Holder`] as stored; same order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Held {
    created: i64,
    uid: Text,
    key: Key,
}

impl Held {
    fn public(&self) -> Holder {
        Holder {
            created: self.created,
            uid: self.uid.to_string(),
            key: self.key.public(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RefKey {
    kind: RefKind,
    namespace: Text,
    name: Text,
}

/// One connection as the index keeps it, kept narrow: it is the value of the largest table.
#[derive(Debug)]
struct Entry {
    generation: Option<i64>,
    instance: Instance,
    created: i64,
    uid: Text,
    /// The token Secret's name (same namespace).
    token: Text,
    /// Rare, so boxed: it would otherwise widen every entry of the table.
    ca: Option<Box<RefKey>>,
}

impl Entry {
    fn holder(&self, key: &Key) -> Held {
        Held {
            created: self.created,
            uid: self.uid.clone(),
            key: key.clone(),
        }
    }

    fn refs(&self, key: &Key) -> impl Iterator<Item = RefKey> {
        let token = RefKey {
            kind: RefKind::Secret,
            namespace: key.namespace.clone(),
            name: self.token.clone(),
        };
        std::iter::once(token).chain(self.ca.as_deref().cloned())
    }
}

#[derive(Default)]
struct Inner {
    namespaces: HashSet<Text>,
    by_object: HashMap<Key, Entry>,
    /// Holders of each instance name, oldest first. A sorted `Vec` rather than a `BTreeSet`:
    /// nearly every name has one holder, and a B-tree node costs far more than a one-element
    /// `Vec`, which costs the holder itself (BENCHMARKS.md, figures behind choices).
    by_instance: HashMap<Instance, Vec<Held>>,
    /// Connections reading each Secret/ConfigMap; nearly always one.
    by_ref: HashMap<RefKey, Vec<Key>>,
    partitions_expected: usize,
    partitions_synced: HashSet<Option<String>>,
}

/// What a watch event means for reconciliation.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Effect {
    /// Connections to reconcile: the object itself when it is new or its spec changed, and the
    /// members of every instance-name group whose holder may have changed.
    pub reconcile: Vec<ObjectKey>,
}

/// See the module documentation.
pub struct ConnectionIndex {
    scope: UniquenessScope,
    inner: RwLock<Inner>,
    synced: AtomicBool,
}

impl ConnectionIndex {
    pub fn new(scope: UniquenessScope) -> ConnectionIndex {
        ConnectionIndex {
            scope,
            inner: RwLock::new(Inner::default()),
            synced: AtomicBool::new(false),
        }
    }

    pub fn scope(&self) -> UniquenessScope {
        self.scope
    }

    /// True once the first full list has been indexed.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    pub fn len(&self) -> usize {
        self.read().by_object.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// A connection was created or changed.
    pub fn apply(&self, conn: &GitProviderConnection) -> Effect {
        // Most events are the controller's own status writes: same object, same generation,
        // so nothing the index keeps (all of it from the spec, uid and creation time) moved.
        if conn.metadata.generation.is_some() && self.holds_generation(conn) {
            return Effect::default();
        }
        let mut inner = self.write();
        let (key, entry) = inner.entry_for(self.scope, conn);
        let mut groups = vec![entry.instance.clone()];
        if let Some(previous) = inner.by_object.get(&key)
            && previous.instance != entry.instance
        {
            groups.push(previous.instance.clone());
        }
        let holders_before: Vec<Option<Key>> = groups.iter().map(|g| inner.holder_key(g)).collect();
        let previous = inner.remove(&key);
        let spec_changed = previous.as_ref().is_none_or(|p| p.generation != entry.generation);
        inner.insert(key.clone(), entry);
        let mut effect = Effect::default();
        if spec_changed {
            effect.reconcile.push(key.public());
        }
        for (group, before) in groups.iter().zip(holders_before) {
            if inner.holder_key(group) != before {
                inner.members(group, &key, &mut effect.reconcile);
            }
        }
        effect
    }

    fn holds_generation(&self, conn: &GitProviderConnection) -> bool {
        let inner = self.read();
        let public = ObjectKey::of(conn);
        inner
            .find_key(&public.namespace, &public.name)
            .and_then(|key| inner.by_object.get(&key))
            .is_some_and(|entry| {
                entry.generation == conn.metadata.generation
                    && conn.metadata.uid.as_deref().is_some_and(|uid| *entry.uid == *uid)
            })
    }

    /// A connection was deleted: its provider (for the caller's bookkeeping) and whom that
    /// wakes, or `None` when the index did not hold it.
    pub fn remove(&self, key: &ObjectKey) -> Option<(ProviderKind, Effect)> {
        let mut inner = self.write();
        let key = inner.find_key(&key.namespace, &key.name)?;
        let previous = inner.remove(&key)?;
        let mut effect = Effect::default();
        inner.members(&previous.instance, &key, &mut effect.reconcile);
        Some((previous.instance.provider, effect))
    }

    /// True when the index holds the connection.
    pub fn contains(&self, key: &ObjectKey) -> bool {
        let inner = self.read();
        inner
            .find_key(&key.namespace, &key.name)
            .is_some_and(|k| inner.by_object.contains_key(&k))
    }

    /// The keys of all indexed connections in `namespace` (all when `None`).
    pub fn keys_in(&self, namespace: Option<&str>) -> Vec<ObjectKey> {
        self.read()
            .by_object
            .keys()
            .filter(|k| namespace.is_none_or(|ns| &*k.namespace == ns))
            .map(Key::public)
            .collect()
    }

    /// All keys.
    pub fn keys(&self) -> Vec<ObjectKey> {
        self.keys_in(None)
    }

    /// Declares how many watch partitions (namespaces, or one for all) feed the index.
    pub fn expect_partitions(&self, count: usize) {
        self.write().partitions_expected = count;
    }

    /// A partition finished its (re)list; once all have, the index is synced.
    pub fn partition_synced(&self, partition: Option<&str>) {
        let mut inner = self.write();
        inner.partitions_synced.insert(partition.map(str::to_owned));
        if inner.partitions_synced.len() >= inner.partitions_expected.max(1) {
            self.synced.store(true, Ordering::Release);
        }
    }

    /// The connection that keeps the name `conn` uses, when it is not `conn` itself.
    pub fn duplicate_holder(&self, conn: &GitProviderConnection) -> Option<Holder> {
        let key = ObjectKey::of(conn);
        let instance = InstanceKey::new(self.scope, &key.namespace, conn.spec.provider, &conn.spec.instance_name);
        let inner = self.read();
        let holder = inner.holders(&instance)?.first()?;
        // An object the index has not seen yet is younger than anything it has.
        (*holder.key.namespace != *key.namespace || *holder.key.name != *key.name).then(|| holder.public())
    }

    /// The oldest connection other than `exclude` holding `instance` (for admission).
    pub fn holder_other_than(&self, instance: &InstanceKey, exclude: &ObjectKey) -> Option<Holder> {
        let inner = self.read();
        inner
            .holders(instance)?
            .iter()
            .find(|h| *h.key.namespace != *exclude.namespace || *h.key.name != *exclude.name)
            .map(Held::public)
    }

    /// The instance key and generation the index holds for `key`, when it has seen it (the
    /// admission webhook retires its reservations with it).
    pub fn claim_of(&self, key: &ObjectKey) -> Option<(InstanceKey, Option<i64>)> {
        let inner = self.read();
        let key = inner.find_key(&key.namespace, &key.name)?;
        inner.by_object.get(&key).map(|e| (e.instance.public(), e.generation))
    }

    /// Connections that read the given Secret or ConfigMap.
    pub fn referencing(&self, kind: RefKind, namespace: &str, name: &str) -> Vec<ObjectKey> {
        let inner = self.read();
        let Some(namespace) = inner.namespaces.get(namespace).cloned() else {
            return Vec::new();
        };
        let probe = RefKey {
            kind,
            namespace,
            name: name.into(),
        };
        inner
            .by_ref
            .get(&probe)
            .map(|keys| keys.iter().map(Key::public).collect())
            .unwrap_or_default()
    }
}

impl Inner {
    /// The interned copy of a namespace, added when new. Namespaces are never forgotten: there
    /// are few, and a deleted one usually comes back.
    fn intern(&mut self, namespace: &str) -> Text {
        if let Some(known) = self.namespaces.get(namespace) {
            return known.clone();
        }
        let text: Text = namespace.into();
        self.namespaces.insert(text.clone());
        text
    }

    /// The stored form of a key, or `None` when its namespace was never seen (then the index
    /// cannot hold it).
    fn find_key(&self, namespace: &str, name: &str) -> Option<Key> {
        Some(Key {
            namespace: self.namespaces.get(namespace)?.clone(),
            name: name.into(),
        })
    }

    fn entry_for(&mut self, scope: UniquenessScope, conn: &GitProviderConnection) -> (Key, Entry) {
        let public = ObjectKey::of(conn);
        let namespace = self.intern(&public.namespace);
        let key = Key {
            namespace: namespace.clone(),
            name: public.name.into(),
        };
        let spec = &conn.spec;
        let ca = spec.tls.as_ref().and_then(|t| t.ca_bundle_ref.as_ref()).map(|ca| {
            Box::new(RefKey {
                kind: match ca.kind {
                    CaBundleKind::ConfigMap => RefKind::ConfigMap,
                    CaBundleKind::Secret => RefKind::Secret,
                },
                namespace: namespace.clone(),
                name: ca.name.as_str().into(),
            })
        });
        let holder = Holder::of(conn);
        let entry = Entry {
            generation: conn.metadata.generation,
            instance: Instance {
                scope: match scope {
                    UniquenessScope::Namespace => Some(namespace),
                    UniquenessScope::Cluster => None,
                },
                provider: spec.provider,
                name: normalize_instance_name(&spec.instance_name).into(),
            },
            created: holder.created,
            uid: holder.uid.into(),
            token: spec.token_secret_ref.name.as_str().into(),
            ca,
        };
        (key, entry)
    }

    fn holders(&self, instance: &InstanceKey) -> Option<&Vec<Held>> {
        let scope = match &instance.scope {
            Some(namespace) => Some(self.namespaces.get(namespace.as_str())?.clone()),
            None => None,
        };
        self.by_instance.get(&Instance {
            scope,
            provider: instance.provider,
            name: instance.name.as_str().into(),
        })
    }

    fn holder_key(&self, instance: &Instance) -> Option<Key> {
        self.by_instance
            .get(instance)
            .and_then(|set| set.first())
            .map(|h| h.key.clone())
    }

    fn members(&self, instance: &Instance, except: &Key, out: &mut Vec<ObjectKey>) {
        if let Some(set) = self.by_instance.get(instance) {
            out.extend(set.iter().filter(|h| &h.key != except).map(|h| h.key.public()));
        }
    }

    fn insert(&mut self, key: Key, entry: Entry) {
        let holder = entry.holder(&key);
        let holders = self
            .by_instance
            .entry(entry.instance.clone())
            .or_insert_with(|| Vec::with_capacity(1));
        if let Err(at) = holders.binary_search(&holder) {
            holders.insert(at, holder);
        }
        for r in entry.refs(&key) {
            let readers = self.by_ref.entry(r).or_insert_with(|| Vec::with_capacity(1));
            if !readers.contains(&key) {
                readers.push(key.clone());
            }
        }
        self.by_object.insert(key, entry);
    }

    fn remove(&mut self, key: &Key) -> Option<Entry> {
        let entry = self.by_object.remove(key)?;
        if let Some(set) = self.by_instance.get_mut(&entry.instance) {
            if let Ok(at) = set.binary_search(&entry.holder(key)) {
                set.remove(at);
            }
            if set.is_empty() {
                self.by_instance.remove(&entry.instance);
            }
        }
        for r in entry.refs(key) {
            if let Some(readers) = self.by_ref.get_mut(&r) {
                readers.retain(|k| k != key);
                if readers.is_empty() {
                    self.by_ref.remove(&r);
                }
            }
        }
        Some(entry)
    }
}

/// A connection `ns/name` of `provider` claiming `instance`, created at second `created`: what
/// the index's and admission's tests claim names with.
#[cfg(test)]
pub(crate) fn test_connection(
    ns: &str,
    name: &str,
    provider: ProviderKind,
    instance: &str,
    created: i64,
) -> GitProviderConnection {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    let spec = crate::api::GitProviderConnectionSpec::new(
        provider,
        instance,
        "https://git.example.com",
        format!("{name}-pat"),
    );
    let mut c = GitProviderConnection::new(name, spec);
    c.metadata.namespace = Some(ns.into());
    c.metadata.uid = Some(format!("uid-{name}"));
    c.metadata.generation = Some(1);
    c.metadata.creation_timestamp = Some(Time(jiff::Timestamp::from_second(created).expect("a test time")));
    c
}

#[cfg(test)]
mod tests {
    use super::test_connection as conn;
    use super::*;

    /// An index of `scope` that has seen `connections`, in that order.
    fn indexed(scope: UniquenessScope, connections: &[&GitProviderConnection]) -> ConnectionIndex {
        let index = ConnectionIndex::new(scope);
        for connection in connections {
            index.apply(connection);
        }
        index
    }

    /// Two GitLab connections of one namespace claiming one name: the older holds it.
    fn older_and_younger() -> (GitProviderConnection, GitProviderConnection) {
        (
            conn("a", "old", ProviderKind::GitLab, "x", 1),
            conn("a", "young", ProviderKind::GitLab, "x", 2),
        )
    }

    #[test]
    fn normalisation() {
        assert_eq!(normalize_instance_name("  Dev1 \t"), "dev1");
        assert_eq!(normalize_instance_name("ÄB"), "Äb", "only ASCII case is folded");
    }

    #[test]
    fn oldest_keeps_the_name() {
        let older = conn("a", "old", ProviderKind::AzureDevOps, "Instance", 100);
        let younger = conn("a", "young", ProviderKind::AzureDevOps, " instance ", 200);
        let index = indexed(UniquenessScope::Namespace, &[&younger, &older]);
        assert_eq!(index.duplicate_holder(&older), None);
        assert_eq!(
            index.duplicate_holder(&younger).unwrap().key,
            ObjectKey::new("a", "old")
        );
        // same name, other provider or other namespace: fine
        let gitlab = conn("a", "gl", ProviderKind::GitLab, "instance", 50);
        let other_ns = conn("b", "x", ProviderKind::AzureDevOps, "instance", 10);
        index.apply(&gitlab);
        index.apply(&other_ns);
        assert_eq!(index.duplicate_holder(&gitlab), None);
        assert_eq!(index.duplicate_holder(&other_ns), None);
        assert_eq!(index.duplicate_holder(&older), None);
    }

    #[test]
    fn uid_breaks_ties() {
        let b = conn("a", "b", ProviderKind::GitLab, "x", 100);
        let a = conn("a", "a", ProviderKind::GitLab, "x", 100);
        let index = indexed(UniquenessScope::Namespace, &[&b, &a]);
        assert_eq!(index.duplicate_holder(&b).unwrap().key.name, "a");
    }

    #[test]
    fn cluster_scope_spans_namespaces() {
        let first = conn("a", "one", ProviderKind::GitLab, "x", 1);
        let second = conn("b", "two", ProviderKind::GitLab, "X", 2);
        let index = indexed(UniquenessScope::Cluster, &[&first, &second]);
        assert_eq!(index.duplicate_holder(&second).unwrap().key, ObjectKey::new("a", "one"));
    }

    #[test]
    fn deleting_the_holder_wakes_the_others() {
        let (older, younger) = older_and_younger();
        let index = indexed(UniquenessScope::Namespace, &[&older]);
        let effect = index.apply(&younger);
        assert_eq!(effect.reconcile, vec![ObjectKey::new("a", "young")]);
        let effect = index.remove(&ObjectKey::of(&older)).map(|(_, e)| e).unwrap_or_default();
        assert_eq!(effect.reconcile, vec![ObjectKey::new("a", "young")]);
        assert_eq!(index.duplicate_holder(&younger), None);
    }

    #[test]
    fn renaming_wakes_both_groups_and_status_writes_wake_nobody() {
        let (older, younger) = older_and_younger();
        let index = indexed(UniquenessScope::Namespace, &[&older, &younger]);
        // a status write: same generation, nothing to do
        assert_eq!(index.apply(&older), Effect::default());
        let mut renamed = older.clone();
        renamed.spec.instance_name = "y".into();
        renamed.metadata.generation = Some(2);
        let effect = index.apply(&renamed);
        assert!(effect.reconcile.contains(&ObjectKey::new("a", "old")));
        assert!(effect.reconcile.contains(&ObjectKey::new("a", "young")));
        assert_eq!(index.duplicate_holder(&younger), None);
    }

    #[test]
    fn secret_references() {
        let mut one = conn("a", "one", ProviderKind::GitLab, "x", 1);
        one.spec.token_secret_ref.name = "shared".into();
        let mut two = conn("a", "two", ProviderKind::GitHub, "x", 2);
        two.spec.token_secret_ref.name = "shared".into();
        two.spec.tls = Some(crate::api::TlsSpec {
            ca_bundle_ref: Some(crate::api::CaBundleRef {
                kind: CaBundleKind::ConfigMap,
                name: "corp-ca".into(),
                key: "ca.crt".into(),
            }),
            insecure_skip_verify: false,
        });
        let index = indexed(UniquenessScope::Namespace, &[&one, &two]);
        let mut refs = index.referencing(RefKind::Secret, "a", "shared");
        refs.sort();
        assert_eq!(refs, vec![ObjectKey::new("a", "one"), ObjectKey::new("a", "two")]);
        assert_eq!(
            index.referencing(RefKind::ConfigMap, "a", "corp-ca"),
            vec![ObjectKey::new("a", "two")]
        );
        assert!(
            index.referencing(RefKind::Secret, "b", "shared").is_empty(),
            "never across namespaces"
        );
        index.remove(&ObjectKey::of(&two));
        assert_eq!(
            index.referencing(RefKind::Secret, "a", "shared"),
            vec![ObjectKey::new("a", "one")]
        );
        assert!(index.referencing(RefKind::ConfigMap, "a", "corp-ca").is_empty());
    }

    #[test]
    fn synced_when_every_partition_listed() {
        let index = ConnectionIndex::new(UniquenessScope::Namespace);
        index.expect_partitions(2);
        index.partition_synced(Some("a"));
        assert!(!index.is_synced());
        index.partition_synced(Some("a"));
        assert!(!index.is_synced());
        index.partition_synced(Some("b"));
        assert!(index.is_synced());
        index.apply(&conn("a", "x", ProviderKind::GitLab, "x", 1));
        index.apply(&conn("b", "y", ProviderKind::GitLab, "x", 1));
        assert_eq!(index.keys_in(Some("b")), vec![ObjectKey::new("b", "y")]);
        assert_eq!(index.keys().len(), 2);
    }
}
