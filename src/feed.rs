//! The one watch of GitProviderConnections, shared by the controller and the admission webhook.
//!
//! Every replica runs it (the webhook answers on all replicas); only the leader subscribes its
//! controller. Each watched partition (all namespaces, or each `--namespace`) is a watcher whose
//! events update, in order, the reflector store (objects, for the controller), the index
//! (names and references, for everyone) and the subscriber's reconcile queue.
//!
//! A relist (after a 410 Gone or a dropped watch) is applied per partition: objects listed are
//! applied, objects of that partition that the list no longer holds are deleted. So several
//! partitions can share one store without one relist wiping the others.

use crate::api::GitProviderConnection;
use crate::index::{ConnectionIndex, Effect, ObjectKey};
use crate::metrics::Metrics;
use crate::priority::{FirstInLine, never_verified};
use futures::channel::mpsc;
use futures::{Stream, StreamExt};
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::watcher::{self, Event, watcher};
use kube::runtime::{WatchStreamExt, reflector};
use kube::{Api, Client, Resource};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

/// The shared watch; see the module documentation.
pub struct Feed {
    index: Arc<ConnectionIndex>,
    metrics: Arc<Metrics>,
    store: Store<GitProviderConnection>,
    writer: Mutex<StoreWriter>,
    subscriber: Mutex<Option<mpsc::UnboundedSender<ObjectRef<GitProviderConnection>>>>,
    /// What the subscriber keeps per connection (e.g. its backoff count) and forgets on delete.
    on_delete: Mutex<Option<Forget>>,
    /// Connections whose change waits for a first verification (see [`crate::priority`]).
    first_in_line: Arc<FirstInLine>,
}

/// Called with the key of each deleted connection.
pub type Forget = Box<dyn Fn(&ObjectKey) + Send + Sync>;

/// The reflector store's writer. Until every partition has listed once, objects go to the
/// writer's init buffer, which becomes the store (and marks it ready) in one swap: the store is
/// built once, not copied onto itself, which at 10,000 connections would hold a second copy of
/// every object at the moment of start-up.
struct StoreWriter {
    writer: Writer<GitProviderConnection>,
    initializing: bool,
}

impl Feed {
    pub fn new(index: Arc<ConnectionIndex>, metrics: Arc<Metrics>) -> Arc<Feed> {
        let (store, mut writer) = reflector::store();
        writer.apply_watcher_event(&Event::Init);
        Arc::new(Feed {
            index,
            metrics,
            store,
            writer: Mutex::new(StoreWriter {
                writer,
                initializing: true,
            }),
            subscriber: Mutex::new(None),
            on_delete: Mutex::new(None),
            first_in_line: Arc::new(FirstInLine::default()),
        })
    }

    pub fn store(&self) -> Store<GitProviderConnection> {
        self.store.clone()
    }

    pub fn index(&self) -> &Arc<ConnectionIndex> {
        &self.index
    }

    pub fn first_in_line(&self) -> &Arc<FirstInLine> {
        &self.first_in_line
    }

    /// The reconcile queue for a (new) leader: every known connection first, then every change.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<ObjectRef<GitProviderConnection>> {
        let (tx, rx) = mpsc::unbounded();
        let mut subscriber = self.subscriber.lock().unwrap_or_else(|p| p.into_inner());
        for key in self.index.keys() {
            let _ = tx.unbounded_send(key.object_ref());
        }
        *subscriber = Some(tx);
        rx
    }

    /// What to call when a connection is deleted, replacing the previous subscriber's.
    pub fn on_delete(&self, forget: Forget) {
        *self.on_delete.lock().unwrap_or_else(|p| p.into_inner()) = Some(forget);
    }

    fn notify(&self, effect: Effect) {
        if effect.reconcile.is_empty() {
            return;
        }
        let mut subscriber = self.subscriber.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = subscriber.as_ref() {
            for key in &effect.reconcile {
                if tx.unbounded_send(key.object_ref()).is_err() {
                    // The controller stopped (lost leadership); stop queueing.
                    *subscriber = None;
                    break;
                }
            }
        }
    }

    fn apply(&self, conn: GitProviderConnection) {
        let effect = self.index.apply(&conn);
        if never_verified(&conn) {
            let key = ObjectKey::of(&conn);
            if effect.reconcile.contains(&key) {
                self.first_in_line.mark(key);
            }
        }
        {
            let mut store = self.lock_writer();
            let event = if store.initializing {
                Event::InitApply(conn)
            } else {
                Event::Apply(conn)
            };
            store.writer.apply_watcher_event(&event);
        }
        self.notify(effect);
    }

    /// Forgets a connection: index, metrics and store.
    fn delete(&self, key: &ObjectKey) {
        self.first_in_line.clear(key);
        let Some((provider, effect)) = self.index.remove(key) else {
            return;
        };
        self.metrics.connection_deleted(key, provider);
        if let Some(forget) = self.on_delete.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            forget(key);
        }
        {
            let mut store = self.lock_writer();
            // While initializing, the object may sit in the init buffer, which cannot be edited;
            // mark_store_ready drops what the index no longer holds.
            if !store.initializing
                && let Some(gone) = self.store.get(&key.object_ref())
            {
                store.writer.apply_watcher_event(&Event::Delete(gone.as_ref().clone()));
            }
        }
        self.notify(effect);
    }

    /// Every partition has listed once: the init buffer becomes the store, which marks it
    /// ready (the applier waits for that).
    fn mark_store_ready(&self) {
        let mut store = self.lock_writer();
        store.writer.apply_watcher_event(&Event::InitDone);
        store.initializing = false;
        for conn in self.store.state() {
            if !self.index.contains(&ObjectKey::of(&conn)) {
                store.writer.apply_watcher_event(&Event::Delete(conn.as_ref().clone()));
            }
        }
    }

    fn lock_writer(&self) -> std::sync::MutexGuard<'_, StoreWriter> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Watches every partition until the process ends.
    pub async fn run(self: Arc<Self>, client: Client, namespaces: Vec<Option<String>>) {
        self.index.expect_partitions(namespaces.len());
        let partitions = namespaces.into_iter().map(|namespace| {
            let api = scoped_api::<GitProviderConnection>(&client, namespace.as_deref());
            let events = watcher(api, watcher::Config::default()).default_backoff().modify(slim);
            self.clone().run_partition(namespace, events)
        });
        futures::future::join_all(partitions).await;
    }

    async fn run_partition(
        self: Arc<Self>,
        partition: Option<String>,
        events: impl Stream<Item = Result<Event<GitProviderConnection>, watcher::Error>>,
    ) {
        let mut events = std::pin::pin!(events);
        let mut listed: Option<HashSet<ObjectKey>> = None;
        while let Some(event) = events.next().await {
            match event {
                Ok(Event::Apply(conn)) => self.apply(conn),
                Ok(Event::Delete(conn)) => self.delete(&ObjectKey::of(&conn)),
                Ok(Event::Init) => listed = Some(HashSet::new()),
                Ok(Event::InitApply(conn)) => {
                    listed.get_or_insert_with(HashSet::new).insert(ObjectKey::of(&conn));
                    self.apply(conn);
                }
                Ok(Event::InitDone) => {
                    let seen = listed.take().unwrap_or_default();
                    for key in self.index.keys_in(partition.as_deref()) {
                        if !seen.contains(&key) {
                            self.delete(&key);
                        }
                    }
                    let was_synced = self.index.is_synced();
                    self.index.partition_synced(partition.as_deref());
                    if !was_synced && self.index.is_synced() {
                        self.mark_store_ready();
                    }
                    tracing::debug!(partition = partition.as_deref().unwrap_or("*"), "connections listed");
                }
                Err(error) => tracing::warn!(
                    error = crate::api_server::describe(&error),
                    "watch of GitProviderConnections failed; retrying"
                ),
            }
        }
    }
}

/// Only name, namespace, uid, resourceVersion, generation, creation time, spec and status are
/// read; managedFields, annotations (kubectl's and GitOps tools' copies of the manifest), labels
/// and owner references are dropped from the cached copy, which keeps the store small. Cached
/// objects are never written back (the status goes by merge patch), so nothing is lost.
fn slim(conn: &mut GitProviderConnection) {
    conn.metadata.managed_fields = None;
    conn.metadata.annotations = None;
    conn.metadata.labels = None;
    conn.metadata.owner_references = None;
}

/// An `Api` for all namespaces or one.
pub fn scoped_api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{GitProviderConnectionSpec, ProviderKind};
    use crate::index::UniquenessScope;

    fn conn(namespace: &str, name: &str) -> GitProviderConnection {
        let spec = GitProviderConnectionSpec::new(ProviderKind::GitLab, name, "https://git.example.com", "pat");
        let mut conn = GitProviderConnection::new(name, spec);
        conn.metadata.namespace = Some(namespace.into());
        conn.metadata.generation = Some(1);
        conn
    }

    /// A feed whose store waits for `partitions` partitions to list.
    fn feed(partitions: usize) -> Arc<Feed> {
        let feed = Feed::new(
            Arc::new(ConnectionIndex::new(UniquenessScope::Namespace)),
            Arc::new(Metrics::new()),
        );
        feed.index().expect_partitions(partitions);
        feed
    }

    /// What a partition's watcher says when it (re)lists `names` of namespace `ns`.
    fn listing(ns: &str, names: &[&str]) -> Vec<Event<GitProviderConnection>> {
        let listed = names.iter().map(|name| Event::InitApply(conn(ns, name)));
        std::iter::once(Event::Init)
            .chain(listed)
            .chain([Event::InitDone])
            .collect()
    }

    /// Runs `partition` of `feed` through `events`.
    async fn run(feed: &Arc<Feed>, partition: &str, events: impl IntoIterator<Item = Event<GitProviderConnection>>) {
        let events = futures::stream::iter(events).map(Ok);
        feed.clone().run_partition(Some(partition.into()), events).await;
    }

    fn names(store: &Store<GitProviderConnection>) -> Vec<String> {
        let mut names: Vec<String> = store.state().iter().map(|c| ObjectKey::of(c).to_string()).collect();
        names.sort();
        names
    }

    #[test]
    fn cached_copies_keep_what_the_controller_reads() {
        let mut full: GitProviderConnection = serde_json::from_value(serde_json::json!({
            "apiVersion": "gitprovider.dev/v1alpha1", "kind": "GitProviderConnection",
            "metadata": {
                "name": "c", "namespace": "n", "uid": "u-1", "resourceVersion": "7", "generation": 3,
                "creationTimestamp": "2026-01-01T00:00:00Z",
                "labels": {"app.kubernetes.io/instance": "x"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{...}"},
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
                "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "o", "uid": "u-2"}]
            },
            "spec": {"provider": "GitLab", "instanceName": "x", "url": "https://g", "tokenSecretRef": {"name": "s"}},
            "status": {"observedGeneration": 3, "user": "alice"}
        }))
        .unwrap();
        let before = full.clone();
        slim(&mut full);
        assert_eq!(full.spec, before.spec);
        assert_eq!(full.status, before.status);
        assert_eq!(full.metadata.uid, before.metadata.uid);
        assert_eq!(full.metadata.resource_version, before.metadata.resource_version);
        assert_eq!(full.metadata.generation, before.metadata.generation);
        assert_eq!(full.metadata.creation_timestamp, before.metadata.creation_timestamp);
        assert_eq!(ObjectKey::of(&full), ObjectKey::of(&before));
        assert!(full.metadata.labels.is_none() && full.metadata.annotations.is_none());
        assert!(full.metadata.managed_fields.is_none() && full.metadata.owner_references.is_none());
    }

    #[tokio::test]
    async fn a_deleted_connection_is_forgotten_by_the_subscriber() {
        let feed = feed(1);
        let forgotten = Arc::new(Mutex::new(Vec::new()));
        let seen = forgotten.clone();
        feed.on_delete(Box::new(move |key| seen.lock().unwrap().push(key.to_string())));
        let events = [listing("a", &["a1", "a2"]), vec![Event::Delete(conn("a", "a2"))]];
        run(&feed, "a", events.concat()).await;
        assert_eq!(*forgotten.lock().unwrap(), ["a/a2"]);
        assert_eq!(feed.index().len(), 1);
    }

    #[tokio::test]
    async fn the_store_is_built_once_every_partition_has_listed() {
        let feed = feed(2);
        // Partition a lists, then keeps watching while b is still listing: a2 is deleted and
        // a3 created in that window.
        let a = [
            listing("a", &["a1", "a2"]),
            vec![Event::Delete(conn("a", "a2")), Event::Apply(conn("a", "a3"))],
        ];
        run(&feed, "a", a.concat()).await;
        let store = feed.store();
        assert!(store.is_empty(), "not ready (nor filled) before every partition listed");
        assert_eq!(feed.index().len(), 2);

        run(&feed, "b", listing("b", &["b1"])).await;
        tokio::time::timeout(std::time::Duration::from_secs(5), store.wait_until_ready())
            .await
            .expect("ready once both partitions listed")
            .expect("writer alive");
        assert_eq!(names(&store), ["a/a1", "a/a3", "b/b1"]);

        // After that, events go to the store directly, and a relist drops what it no longer has.
        let relist = [vec![Event::Apply(conn("b", "b2"))], listing("b", &["b2"])];
        run(&feed, "b", relist.concat()).await;
        assert_eq!(names(&store), ["a/a1", "a/a3", "b/b2"]);
        assert_eq!(feed.index().len(), 3);
    }
}
