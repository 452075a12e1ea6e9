//! What triggers a reconcile, and the controller's queue that runs them.
//!
//! The queue merges: the [`Feed`]'s requests (a connection that is new or whose spec changed —
//! status writes do not trigger: the index compares generations — or whose instance name changed
//! holder), a Secret or ConfigMap a connection references being created, changed or deleted
//! (metadata-only watches, mapped through the index), a freed host slot waking the connection
//! queued for it ([`crate::politeness`]), and each reconcile's own requeue timer
//! (kube's applier). What a reconcile does is [`crate::controller`]'s job.

use crate::api::GitProviderConnection;
use crate::controller::{self, Context};
use crate::feed::{Feed, scoped_api};
use crate::index::{ConnectionIndex, ObjectKey, RefKind};
use crate::priority::FirstInLine;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::Resource;
use kube::api::Api;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{Config as ApplierConfig, applier};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use std::sync::Arc;

/// Runs the controller until `shutdown` resolves; in-flight reconciles finish first.
pub async fn run(
    ctx: Arc<Context>,
    feed: Arc<Feed>,
    store: Store<GitProviderConnection>,
    namespaces: Vec<Option<String>>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let index = ctx.index.clone();
    let forget = Arc::downgrade(&ctx);
    feed.on_delete(Box::new(move |key| {
        if let Some(ctx) = forget.upgrade() {
            ctx.forget(key);
        }
    }));
    let line = feed.first_in_line().clone();
    let mut signals = vec![feed.subscribe().map(Signal::Request).boxed()];
    // A freed host slot wakes the connection queued first for that host.
    if let Some(wake_ups) = ctx.take_wake_ups() {
        signals.push(wake_ups.map(|key| Signal::Request(key.object_ref())).boxed());
    }
    for namespace in &namespaces {
        // Metadata only: the operator never holds other people's Secret data in memory.
        let secrets: Api<PartialObjectMeta<Secret>> = scoped_api(&ctx.client, namespace.as_deref());
        let configmaps: Api<PartialObjectMeta<ConfigMap>> = scoped_api(&ctx.client, namespace.as_deref());
        let config = watcher::Config::default();
        signals.push(referenced_by(
            index.clone(),
            line.clone(),
            RefKind::Secret,
            watcher(secrets, config.clone()),
        ));
        signals.push(referenced_by(
            index.clone(),
            line.clone(),
            RefKind::ConfigMap,
            watcher(configmaps, config),
        ));
    }
    // A Secret and a ConfigMap watch per namespace.
    let lists = 2 * namespaces.len();
    let queue = hold_until_listed(futures::stream::select_all(signals), lists, index.clone()).take_until(shutdown);
    let config = ApplierConfig::default().concurrency(ctx.settings.max_concurrent_verifications);
    applier(
        move |conn, ctx| Box::pin(controller::reconcile(conn, ctx, line.clone())),
        controller::error_policy,
        ctx,
        store,
        queue,
        config,
    )
    .for_each(|result| async move {
        if let Err(error) = result {
            tracing::debug!(%error, "reconcile request not run");
        }
    })
    .await;
    tracing::info!("controller stopped");
}

/// What the controller's input streams say.
enum Signal {
    /// Reconcile this connection.
    Request(ObjectRef<GitProviderConnection>),
    /// A Secret or ConfigMap watch finished its first list (or failed, so that a watch the
    /// operator may not make, e.g. for lack of RBAC, does not stop verification).
    Listed,
}

type Queue = futures::stream::BoxStream<'static, Result<ObjectRef<GitProviderConnection>, watcher::Error>>;

/// Holds every reconcile request back until each of the `lists` Secret and ConfigMap watches
/// has listed once, then releases each connection exactly once, and passes requests through
/// after that. The first list of Secrets names every referenced Secret once more: a connection
/// verified before it arrived would be verified (and its status written) a second time, and a
/// request arriving while the first verification runs would be run again after it.
fn hold_until_listed(
    signals: impl futures::Stream<Item = Signal> + Send + 'static,
    lists: usize,
    index: Arc<ConnectionIndex>,
) -> Queue {
    let mut remaining = lists;
    let mut held = Some(std::collections::HashSet::new());
    signals
        .map(move |signal| {
            let release: Vec<ObjectRef<GitProviderConnection>> = match (signal, held.as_mut()) {
                (Signal::Request(request), Some(held)) => {
                    held.insert(request);
                    Vec::new()
                }
                (Signal::Request(request), None) => vec![request],
                (Signal::Listed, _) => {
                    remaining = remaining.saturating_sub(1);
                    match held.take_if(|_| remaining == 0) {
                        Some(mut held) => {
                            held.extend(index.keys().iter().map(ObjectKey::object_ref));
                            held.into_iter().collect()
                        }
                        None => Vec::new(),
                    }
                }
            };
            futures::stream::iter(release.into_iter().map(Ok))
        })
        .flatten()
        .boxed()
}

/// Maps Secret or ConfigMap metadata events to the connections that reference the object. A
/// change (not the first list, which every connection's first verification reads anyway) puts
/// those connections ahead of re-verifications.
fn referenced_by<K>(
    index: Arc<ConnectionIndex>,
    line: Arc<FirstInLine>,
    kind: RefKind,
    events: impl futures::Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
) -> futures::stream::BoxStream<'static, Signal>
where
    K: Resource + Send + 'static,
{
    let mut listed = false;
    events
        .default_backoff()
        .map(move |result| {
            let mut first_list_done = || -> Vec<Signal> {
                if std::mem::replace(&mut listed, true) {
                    Vec::new()
                } else {
                    vec![Signal::Listed]
                }
            };
            let signals: Vec<Signal> = match result {
                Ok(watcher::Event::Apply(object) | watcher::Event::Delete(object)) => {
                    let keys = referencing(&index, kind, object.meta());
                    for key in &keys {
                        line.mark(key.clone());
                    }
                    keys.iter().map(|key| Signal::Request(key.object_ref())).collect()
                }
                Ok(watcher::Event::InitApply(object)) => referencing(&index, kind, object.meta())
                    .iter()
                    .map(|key| Signal::Request(key.object_ref()))
                    .collect(),
                Ok(watcher::Event::Init) => Vec::new(),
                Ok(watcher::Event::InitDone) => first_list_done(),
                Err(error) => {
                    tracing::warn!(
                        error = crate::api_server::describe(&error),
                        ?kind,
                        "watch of referenced objects failed; retrying"
                    );
                    first_list_done()
                }
            };
            futures::stream::iter(signals)
        })
        .flatten()
        .boxed()
}

fn referencing(index: &ConnectionIndex, kind: RefKind, meta: &kube::core::ObjectMeta) -> Vec<ObjectKey> {
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    let name = meta.name.as_deref().unwrap_or_default();
    index.referencing(kind, namespace, name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn conn(name: &str) -> GitProviderConnection {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "gitprovider.dev/v1alpha1", "kind": "GitProviderConnection",
            "metadata": {"name": name, "namespace": "n"},
            "spec": {"provider": "GitLab", "instanceName": "x", "url": "https://g", "tokenSecretRef": {"name": "s"}}
        }))
        .unwrap()
    }

    #[tokio::test]
    async fn requests_wait_for_every_first_list_and_then_come_once() {
        let index = Arc::new(ConnectionIndex::new(crate::index::UniquenessScope::Namespace));
        index.apply(&conn("c")); // n/c, known to the index but never requested
        let request = |name: &str| Signal::Request(ObjectRef::new(name).within("n"));
        let (tx, rx) = futures::channel::mpsc::unbounded();
        let mut queue = hold_until_listed(rx, 2, index);
        for signal in [request("a"), request("b"), request("a"), Signal::Listed] {
            tx.unbounded_send(signal).unwrap();
        }
        let nothing_yet = tokio::time::timeout(Duration::from_millis(50), queue.next()).await;
        assert!(nothing_yet.is_err(), "held until the second list is in");

        tx.unbounded_send(Signal::Listed).unwrap();
        let mut released = Vec::new();
        for _ in 0..3 {
            released.push(queue.next().await.unwrap().unwrap().name);
        }
        released.sort();
        assert_eq!(released, ["a", "b", "c"], "each connection once, the index's too");

        // afterwards requests pass straight through, and later lists change nothing
        tx.unbounded_send(Signal::Listed).unwrap();
        tx.unbounded_send(request("a")).unwrap();
        assert_eq!(queue.next().await.unwrap().unwrap().name, "a");
        drop(tx);
        assert!(queue.next().await.is_none());
    }
}
