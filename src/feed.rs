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
use crate::controller::scoped_api;
use crate::index::{ConnectionIndex, Effect, ObjectKey};
use crate::metrics::Metrics;
use futures::channel::mpsc;
use futures::{Stream, StreamExt};
use kube::runtime::reflector::{ObjectRef, Store, store::Writer};
use kube::runtime::watcher::{self, Event, watcher};
use kube::runtime::{WatchStreamExt, reflector};
use kube::{Client, ResourceExt};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The shared watch; see the module documentation.
pub struct Feed {
    index: Arc<ConnectionIndex>,
    metrics: Arc<Metrics>,
    store: Store<GitProviderConnection>,
    writer: Mutex<Writer<GitProviderConnection>>,
    subscriber: Mutex<Option<mpsc::UnboundedSender<ObjectRef<GitProviderConnection>>>>,
}

impl Feed {
    pub fn new(index: Arc<ConnectionIndex>, metrics: Arc<Metrics>) -> Arc<Feed> {
        let (store, writer) = reflector::store();
        Arc::new(Feed {
            index,
            metrics,
            store,
            writer: Mutex::new(writer),
            subscriber: Mutex::new(None),
        })
    }

    pub fn store(&self) -> Store<GitProviderConnection> {
        self.store.clone()
    }

    pub fn index(&self) -> &Arc<ConnectionIndex> {
        &self.index
    }

    /// The reconcile queue for a (new) leader: every known connection first, then every change.
    pub fn subscribe(&self) -> mpsc::UnboundedReceiver<ObjectRef<GitProviderConnection>> {
        let (tx, rx) = mpsc::unbounded();
        let mut subscriber = self.subscriber.lock().unwrap_or_else(|p| p.into_inner());
        for key in self.index.keys() {
            let _ = tx.unbounded_send(object_ref(&key));
        }
        *subscriber = Some(tx);
        rx
    }

    fn notify(&self, effect: Effect) {
        if effect.reconcile.is_empty() {
            return;
        }
        let mut subscriber = self.subscriber.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = subscriber.as_ref() {
            for key in &effect.reconcile {
                if tx.unbounded_send(object_ref(key)).is_err() {
                    // The controller stopped (lost leadership); stop queueing.
                    *subscriber = None;
                    break;
                }
            }
        }
    }

    fn apply(&self, conn: &GitProviderConnection) {
        self.writer_apply(&Event::Apply(conn.clone()));
        let effect = self.index.apply(conn);
        self.notify(effect);
    }

    fn delete(&self, conn: &GitProviderConnection) {
        self.writer_apply(&Event::Delete(conn.clone()));
        let effect = self.index.delete(conn);
        self.metrics
            .connection_deleted(&ObjectKey::of(conn), conn.spec.provider);
        self.notify(effect);
    }

    /// The store's readiness (which the applier waits for) comes from a relist of the whole
    /// store; partitions are listed separately, so once all are, relist the store onto itself.
    fn mark_store_ready(&self) {
        let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        writer.apply_watcher_event(&Event::Init);
        for conn in self.store.state() {
            writer.apply_watcher_event(&Event::InitApply(conn.as_ref().clone()));
        }
        writer.apply_watcher_event(&Event::InitDone);
    }

    fn writer_apply(&self, event: &Event<GitProviderConnection>) {
        self.writer
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .apply_watcher_event(event);
    }

    /// Watches every partition until the process ends.
    pub async fn run(self: Arc<Self>, client: Client, namespaces: Vec<Option<String>>) {
        self.index.expect_partitions(namespaces.len());
        let partitions = namespaces.into_iter().map(|namespace| {
            let api = scoped_api::<GitProviderConnection>(&client, namespace.as_deref());
            // managedFields and kubectl's last-applied copy are never read; dropping them keeps
            // the store small (they are often larger than the spec itself).
            let events = watcher(api, watcher::Config::default())
                .default_backoff()
                .modify(|conn| {
                    conn.managed_fields_mut().clear();
                    conn.annotations_mut().remove(LAST_APPLIED);
                });
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
                Ok(Event::Apply(conn)) => self.apply(&conn),
                Ok(Event::Delete(conn)) => self.delete(&conn),
                Ok(Event::Init) => listed = Some(HashSet::new()),
                Ok(Event::InitApply(conn)) => {
                    listed.get_or_insert_with(HashSet::new).insert(ObjectKey::of(&conn));
                    self.apply(&conn);
                }
                Ok(Event::InitDone) => {
                    let seen = listed.take().unwrap_or_default();
                    for key in self.index.keys_in(partition.as_deref()) {
                        if !seen.contains(&key)
                            && let Some(gone) = self.store.get(&object_ref(&key))
                        {
                            self.delete(&gone);
                        }
                    }
                    let was_synced = self.index.is_synced();
                    self.index.partition_synced(partition.as_deref());
                    if !was_synced && self.index.is_synced() {
                        self.mark_store_ready();
                    }
                    tracing::debug!(partition = partition.as_deref().unwrap_or("*"), "connections listed");
                }
                Err(error) => tracing::warn!(%error, "watch of GitProviderConnections failed; retrying"),
            }
        }
    }
}

fn object_ref(key: &ObjectKey) -> ObjectRef<GitProviderConnection> {
    ObjectRef::new(&key.name).within(&key.namespace)
}
