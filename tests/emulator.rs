//! Tests of the Kubernetes API emulator, for what its one user relies on: the scale benchmark
//! (`benches/scale.rs`, `--api emulator`). The request record, the status subresource and
//! generation, creates that conflict and patches that name a stale resourceVersion, Events,
//! paginated lists, metadata-only watches, watch resumption and 410s, bookmarks. Everything
//! else about the API is tested against a real kube-apiserver
//! (`tests/support/control_plane.rs`).

#[path = "support/emulator/mod.rs"]
mod emulator;
mod support;

use std::future::Future;
use std::time::Duration;

use emulator::{Emulator, EmulatorOptions};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, ObjectReference, Secret};
use k8s_openapi::api::events::v1::Event as EventV1;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, ObjectMeta, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::record::RecordedRequest;

const WAIT: Duration = Duration::from_secs(15);

async fn bounded<F: Future>(what: &str, f: F) -> F::Output {
    match tokio::time::timeout(WAIT, f).await {
        Ok(v) => v,
        Err(_) => panic!("timed out waiting for {what}"),
    }
}

async fn start() -> (Emulator, Client) {
    start_with(EmulatorOptions::default()).await
}

async fn start_with(opts: EmulatorOptions) -> (Emulator, Client) {
    let emu = Emulator::start(opts).await;
    let client = emu.client().await;
    (emu, client)
}

/// The emulator with the project's CRD, as the benchmark starts it.
async fn start_with_crd() -> (Emulator, Client) {
    let emu = Emulator::start_with_project_crd(EmulatorOptions::default()).await;
    let client = emu.client().await;
    (emu, client)
}

fn cm(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(data.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()),
        ..Default::default()
    }
}

fn secret(name: &str, token: &str) -> Secret {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name},
        "type": "Opaque",
        "data": {"token": b64(token)},
    }))
    .unwrap()
}

fn api_err(e: kube::Error) -> Box<kube::core::Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn b64(s: &str) -> String {
    serde_json::to_value(k8s_openapi::ByteString(s.as_bytes().to_vec()))
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

fn gpc_api(client: &Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("gitprovider.dev", "v1alpha1", "GitProviderConnection");
    Api::namespaced_with(
        client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, "gitproviderconnections"),
    )
}

fn gpc(name: &str, instance: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "gitprovider.dev/v1alpha1",
        "kind": "GitProviderConnection",
        "metadata": {"name": name},
        "spec": {
            "provider": "GitLab",
            "instanceName": instance,
            "url": "https://gitlab.example.com",
            "tokenSecretRef": {"name": "pat", "key": "token"},
        },
        "status": {"serverVersion": "ignored on create"},
    }))
    .unwrap()
}

/// Polls `stream` until `pred` accepts an item (errors are handed to `pred` as well).
async fn wait_for<S, T, E>(stream: &mut S, what: &str, mut pred: impl FnMut(&Result<T, E>) -> bool) -> Result<T, E>
where
    S: Stream<Item = Result<T, E>> + Unpin,
{
    bounded(what, async {
        loop {
            match stream.next().await {
                Some(item) if pred(&item) => return item,
                Some(_) => continue,
                None => panic!("stream ended while waiting for {what}"),
            }
        }
    })
    .await
}

fn applied<'a, K: ResourceExt>(ev: &'a Result<Event<K>, watcher::Error>, name: &str) -> Option<&'a K> {
    match ev {
        Ok(Event::Apply(o) | Event::InitApply(o)) if o.name_any() == name => Some(o),
        _ => None,
    }
}

// ------------------------------------------------------------------ the record

/// What the benchmark counts: successful status writes, from the whole record or from a mark
/// on; and what it reads directly: the stored object. The record keeps no bodies (the
/// benchmark sends 10,000s of requests).
#[tokio::test]
async fn request_record_counts_status_writes() {
    let (emu, client) = start_with_crd().await;
    let api = gpc_api(&client, "team-a");
    api.create(&PostParams::default(), &gpc("rec", "r")).await.unwrap();
    let (_, mark) = emu.count_since(0, |_| false);
    for i in 0..3 {
        api.patch_status(
            "rec",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"serverVersion": format!("v{i}")}})),
        )
        .await
        .unwrap();
    }
    api.get("rec").await.unwrap();
    let status_write = |r: &RecordedRequest| r.is_status_write() && r.succeeded();
    assert_eq!(emu.count_since(0, status_write), (3, mark + 4));
    assert_eq!(emu.count_since(mark, status_write), (3, mark + 4));
    assert_eq!(emu.count_since(mark + 3, status_write), (0, mark + 4));

    let requests = emu.requests();
    assert_eq!(requests.len(), mark + 4);
    let first = &requests[mark];
    assert_eq!(first.method, "PATCH");
    assert_eq!(
        first.path,
        "/apis/gitprovider.dev/v1alpha1/namespaces/team-a/gitproviderconnections/rec/status"
    );
    assert_eq!(first.content_type.as_deref(), Some("application/merge-patch+json"));
    assert!(first.is_for("gitproviderconnections", Some("team-a"), "rec"));
    assert_eq!(first.verb(), "patch");
    assert_eq!(first.status, 200);
    assert!(requests.iter().all(|r| r.body.is_empty() && r.response_body.is_empty()));
    assert!(first.time <= requests[mark + 3].time);
    assert_eq!(requests[mark + 3].verb(), "get");

    let stored = emu
        .object("gitprovider.dev", "gitproviderconnections", "team-a", "rec")
        .expect("the stored connection");
    assert_eq!(stored["status"]["serverVersion"], "v2");
    assert!(
        emu.object("gitprovider.dev", "gitproviderconnections", "team-a", "nope")
            .is_none()
    );
}

/// The benchmark hands the operator the emulator's kubeconfig: a client built from it, as the
/// operator builds one, reaches the emulator (TLS trusted through the kubeconfig's CA).
#[tokio::test]
async fn the_kubeconfig_reaches_the_emulator() {
    let (emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client, "team-a");
    cms.create(&PostParams::default(), &cm("seen", &[])).await.unwrap();
    let operator_like = support::control_plane::client_from(emu.kubeconfig_path()).await;
    let cms: Api<ConfigMap> = Api::namespaced(operator_like, "team-a");
    assert_eq!(cms.get("seen").await.unwrap().name_any(), "seen");
}

// ------------------------------------------------------------------ objects

/// What the operator's status writes and `observedGeneration` rely on.
#[tokio::test]
async fn status_writes_change_only_status_and_spec_writes_bump_generation() {
    let (_emu, client) = start_with_crd().await;
    let api = gpc_api(&client, "team-a");
    let created = api.create(&PostParams::default(), &gpc("dev", "Dev")).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    assert!(created.data.get("status").is_none(), "status is dropped on create");

    let after_status = api
        .patch_status(
            "dev",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"instanceName": "sneaky"}, "status": {"observedGeneration": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(after_status.metadata.generation, Some(1));
    assert_eq!(
        after_status.data["spec"]["instanceName"], "Dev",
        "spec is ignored on /status"
    );
    assert_eq!(after_status.data["status"]["observedGeneration"], 1);
    assert_ne!(after_status.resource_version(), created.resource_version());

    let after_spec = api
        .patch(
            "dev",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"instanceName": "Dev 2"}, "status": null})),
        )
        .await
        .unwrap();
    assert_eq!(after_spec.metadata.generation, Some(2));
    assert_eq!(
        after_spec.data["status"]["observedGeneration"], 1,
        "status is ignored on the main resource"
    );
    let after_label = api
        .patch(
            "dev",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(after_label.metadata.generation, Some(2), "metadata is not spec");

    // A write that changes nothing stores nothing: no new resourceVersion, no watch event.
    let same = api
        .patch_status(
            "dev",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"observedGeneration": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(same.resource_version(), after_label.resource_version());
}

/// The benchmark's seeding relies on a create of an existing object being a 409 (a retried
/// create that went through); the Event recorder's patches carry the resourceVersion they were
/// made from, so a patch from a stale copy conflicts; reads of missing objects are 404.
#[tokio::test]
async fn creates_and_stale_patches_conflict() {
    let (_emu, client) = start().await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "team-a");
    assert!(secrets.get_opt("pat").await.unwrap().is_none());
    let created = secrets
        .create(&PostParams::default(), &secret("pat", "glpat-first"))
        .await
        .unwrap();
    let e = api_err(
        secrets
            .create(&PostParams::default(), &secret("pat", "glpat-first"))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists"));

    let from = |copy: &Secret, token: &str| {
        Patch::Merge(json!({
            "metadata": {"resourceVersion": copy.resource_version()},
            "data": {"token": b64(token)},
        }))
    };
    let patched = secrets
        .patch("pat", &PatchParams::default(), &from(&created, "glpat-second"))
        .await
        .unwrap();
    assert_eq!(patched.data.as_ref().unwrap()["token"].0, b"glpat-second");
    assert_ne!(patched.resource_version(), created.resource_version());
    // A writer holding the first copy loses the race.
    let e = api_err(
        secrets
            .patch("pat", &PatchParams::default(), &from(&created, "glpat-third"))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    let e = api_err(secrets.get("nope").await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (404, "NotFound"));
}

/// The operator's Event recorder creates an Event, then patches it into a series.
#[tokio::test]
async fn recorder_publishes_events() {
    use kube::runtime::events::{Event as KEvent, EventType, Recorder, Reporter};
    let (_emu, client) = start().await;
    let reporter = Reporter {
        controller: "gitprovider-operator".into(),
        instance: Some("pod-a".into()),
    };
    let recorder = Recorder::new(client.clone(), reporter);
    let reference = ObjectReference {
        api_version: Some("gitprovider.dev/v1alpha1".into()),
        kind: Some("GitProviderConnection".into()),
        name: Some("dev".into()),
        namespace: Some("team-a".into()),
        uid: Some("1234".into()),
        ..Default::default()
    };
    let ev = KEvent {
        type_: EventType::Warning,
        reason: "Unauthorized".into(),
        note: Some("the instance rejected the token".into()),
        action: "Verify".into(),
        secondary: None,
    };
    recorder.publish(&ev, &reference).await.unwrap();
    recorder.publish(&ev, &reference).await.unwrap();

    let events: Api<EventV1> = Api::namespaced(client.clone(), "team-a");
    let list = events.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let e = &list.items[0];
    assert_eq!(e.reason.as_deref(), Some("Unauthorized"));
    assert_eq!(e.regarding.as_ref().unwrap().name.as_deref(), Some("dev"));
    assert_eq!(e.series.as_ref().map(|s| s.count), Some(2));
}

// ------------------------------------------------------------------ lists and watches

/// Every page of a paginated list carries the first page's resourceVersion, and a watch from it
/// misses nothing written while the pages were read (how kube's watcher lists at scale).
#[tokio::test]
async fn paginated_lists_and_a_watch_from_their_version_miss_nothing() {
    let (_emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let expected: Vec<String> = (0..7).map(|i| format!("cm-{i}")).collect();
    for name in &expected {
        cms.create(&PostParams::default(), &cm(name, &[])).await.unwrap();
    }
    let mut names = Vec::new();
    let mut rv: Option<String> = None;
    let mut params = ListParams::default().limit(3);
    for page in 0.. {
        let list = cms.list(&params).await.unwrap();
        assert!(list.items.len() <= 3);
        match &rv {
            None => rv = list.metadata.resource_version.clone(),
            Some(first) => assert_eq!(list.metadata.resource_version.as_ref(), Some(first)),
        }
        names.extend(list.items.iter().map(|c| c.name_any()));
        if page == 0 {
            // Written between pages, after the page's position in key order.
            cms.create(&PostParams::default(), &cm("cm-9", &[])).await.unwrap();
        }
        match list.metadata.continue_ {
            Some(token) => params = ListParams::default().limit(3).continue_token(&token),
            None => break,
        }
    }
    names.retain(|n| n != "cm-9");
    assert_eq!(names, expected);

    let mut events = cms
        .watch(&WatchParams::default(), rv.as_deref().unwrap())
        .await
        .unwrap()
        .boxed();
    match bounded("the write between pages", events.next())
        .await
        .unwrap()
        .unwrap()
    {
        WatchEvent::Added(c) => assert_eq!(c.name_any(), "cm-9"),
        other => panic!("expected ADDED cm-9, got {other:?}"),
    }

    // kube's watcher lists in pages too.
    let mut stream = watcher::watcher(cms.clone(), watcher::Config::default().page_size(2)).boxed();
    let mut seen = Vec::new();
    loop {
        match bounded("the paged initial list", stream.next()).await.unwrap().unwrap() {
            Event::InitApply(c) => seen.push(c.name_any()),
            Event::InitDone => break,
            _ => {}
        }
    }
    assert_eq!(seen.len(), 8, "{seen:?}");
}

/// The operator watches Secrets (and ConfigMaps) as `PartialObjectMetadata`: lists and events
/// carry metadata only.
#[tokio::test]
async fn metadata_only_watches_of_secrets() {
    let (emu, client) = start().await;
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    secrets
        .create(&PostParams::default(), &secret("s0", "glpat-first"))
        .await
        .unwrap();
    let metas: Api<PartialObjectMeta<Secret>> = Api::default_namespaced(client.clone());
    let mut meta = watcher::watcher(metas, watcher::Config::default()).boxed();
    let first = wait_for(&mut meta, "metadata of s0", |e| applied(e, "s0").is_some())
        .await
        .unwrap();
    assert!(matches!(first, Event::InitApply(_)));
    wait_for(&mut meta, "InitDone", |e| matches!(e, Ok(Event::InitDone)))
        .await
        .unwrap();
    secrets
        .create(&PostParams::default(), &secret("s1", "glpat-second"))
        .await
        .unwrap();
    wait_for(&mut meta, "metadata of s1", |e| applied(e, "s1").is_some())
        .await
        .unwrap();

    // What the watcher's list asked for, as a raw request: metadata only, no token.
    let accept = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
    assert!(
        emu.requests()
            .iter()
            .any(|r| r.verb() == "list" && r.accept.as_deref() == Some(accept)),
        "the watcher listed metadata only"
    );
    let request = axum::http::Request::get("/api/v1/namespaces/default/secrets")
        .header("Accept", accept)
        .body(Vec::new())
        .unwrap();
    let list_body = client.request_text(request).await.unwrap();
    let list: Value = serde_json::from_str(&list_body).unwrap();
    assert_eq!(list["kind"], "PartialObjectMetadataList");
    assert_eq!(list["items"][0]["kind"], "PartialObjectMetadata");
    assert_eq!(list["items"][0]["metadata"]["name"], "s0");
    assert!(list["items"][0].get("data").is_none());
    assert!(!list_body.contains(&b64("glpat-first")));
}

/// The benchmark sizes the history (`watch_history`) so a paginated list survives the writes
/// meanwhile; a watch from before the history is told its version is gone.
#[tokio::test]
async fn watch_from_a_compacted_version_gets_410() {
    let (_emu, client) = start_with(EmulatorOptions { watch_history: 5 }).await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let old = cms.create(&PostParams::default(), &cm("old", &[])).await.unwrap();
    for i in 0..10 {
        cms.patch(
            "old",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"n": i.to_string()}})),
        )
        .await
        .unwrap();
    }
    let mut events = cms
        .watch(&WatchParams::default(), old.resource_version().as_deref().unwrap())
        .await
        .unwrap()
        .boxed();
    match bounded("ERROR event", events.next()).await.unwrap().unwrap() {
        WatchEvent::Error(s) => {
            assert_eq!((s.code, s.reason.as_str()), (410, "Expired"));
            assert!(s.message.starts_with("too old resource version: "), "{}", s.message);
        }
        other => panic!("expected an ERROR event, got {other:?}"),
    }
    assert!(bounded("end of stream", events.next()).await.is_none());
}

#[tokio::test]
async fn watches_get_bookmarks_and_end_at_their_timeout() {
    let (_emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    cms.create(&PostParams::default(), &cm("b", &[])).await.unwrap();
    let rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let others: Api<Secret> = Api::default_namespaced(client.clone());
    others.create(&PostParams::default(), &secret("s", "x")).await.unwrap();
    let mut events = cms
        .watch(&WatchParams::default().timeout(3), &rv)
        .await
        .unwrap()
        .boxed();
    match bounded("bookmark", events.next()).await.unwrap().unwrap() {
        WatchEvent::Bookmark(b) => {
            // Writes to other resources move the bookmark forward too.
            assert!(b.metadata.resource_version.parse::<u64>().unwrap() > rv.parse::<u64>().unwrap());
            assert_eq!(b.types.kind, "ConfigMap");
        }
        other => panic!("expected a bookmark, got {other:?}"),
    }
    bounded("timeout", async { while events.next().await.is_some() {} }).await;
}
