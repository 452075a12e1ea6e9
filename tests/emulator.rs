//! Tests of the Kubernetes API emulator, for what its users rely on: the scale benchmark
//! (`benches/scale.rs`) and the `emulator_` end-to-end tests of `tests/e2e.rs`. Fault injection,
//! the request record, watch resumption and 410s, bookmarks, paginated lists, metadata-only
//! watches, the status subresource, optimistic concurrency, Events, and admission webhooks
//! reached through a `service` reference. Everything else about the API is tested against a
//! real kube-apiserver (`tests/support/control_plane.rs`).

mod support;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
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
use support::emulator::tls::TestCa;
use support::emulator::{Emulator, EmulatorOptions};
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
    let emu = Emulator::start(opts).await.expect("emulator starts");
    let client = emu.client().await;
    (emu, client)
}

/// The emulator with the project's CRD, as the benchmark and the end-to-end tests start it.
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

/// Drives `stream` on its own task, so that it makes progress (e.g. a watcher opening its
/// watch) while the test is doing something else.
fn background<S, T>(stream: S) -> impl Stream<Item = T> + Unpin
where
    S: Stream<Item = T> + Send + 'static,
    T: Send + 'static,
{
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(item) = stream.next().await {
            if tx.send(item).is_err() {
                break;
            }
        }
    });
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Waits (bounded) until `cond` holds, re-checking every few milliseconds.
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    bounded(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
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

// ------------------------------------------------------------------ faults and the record

/// As `emulator_not_ready_until_the_first_list` uses it: lists fail until the rule is cleared;
/// other requests pass; a counted rule fails only as many matching requests.
#[tokio::test]
async fn injected_failures_hit_the_matching_requests_until_cleared() {
    let (emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    cms.create(&PostParams::default(), &cm("f", &[])).await.unwrap();

    emu.faults().fail_next_matching(usize::MAX, 500, |_, _, target| {
        target.is_some_and(|t| t.resource == "configmaps" && t.verb == "list")
    });
    for _ in 0..3 {
        let e = api_err(cms.list(&ListParams::default()).await.unwrap_err());
        assert_eq!((e.code, e.reason.as_str()), (500, "InternalError"));
    }
    cms.get("f").await.expect("a get is not a list");
    emu.faults().clear();
    assert_eq!(cms.list(&ListParams::default()).await.unwrap().items.len(), 1);

    emu.faults().fail_next_matching(1, 500, |method, path, _| {
        method == "PATCH" && path.ends_with("/configmaps/f")
    });
    let patch = Patch::Merge(json!({"data": {"a": "1"}}));
    assert_eq!(
        api_err(cms.patch("f", &PatchParams::default(), &patch).await.unwrap_err()).code,
        500
    );
    cms.patch("f", &PatchParams::default(), &patch)
        .await
        .expect("only one request failed");
    assert_eq!(emu.count(|r| r.status == 500), 4, "failures are recorded");
}

/// What the benchmark counts: successful status writes, from the whole record or from a mark
/// on; and what it reads directly: the stored object.
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
    assert_eq!(emu.count(status_write), 3);
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
    assert!(first.mentions("\"v0\""));
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

/// The benchmark turns bodies off: the record stays small and still counts.
#[tokio::test]
async fn the_record_without_bodies_still_counts() {
    let (emu, client) = start_with(EmulatorOptions {
        record_bodies: false,
        ..Default::default()
    })
    .await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "team-a");
    secrets
        .create(&PostParams::default(), &secret("pat", "glpat-secret"))
        .await
        .unwrap();
    secrets.get("pat").await.unwrap();
    let requests = emu.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests.iter().all(|r| r.body.is_empty() && r.response_body.is_empty()));
    assert_eq!(emu.count(|r| r.verb() == "create" && r.succeeded()), 1);
    assert_eq!(requests[0].status, 201);
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

/// Leader election and the certificate Secret rely on these: creates of existing objects and
/// writes of stale copies conflict, reads of missing objects are 404.
#[tokio::test]
async fn creates_and_stale_writes_conflict() {
    let (_emu, client) = start().await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "gitprovider-system");
    assert!(leases.get_opt("gitprovider-operator").await.unwrap().is_none());
    let lease = Lease {
        metadata: ObjectMeta {
            name: Some("gitprovider-operator".into()),
            ..Default::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some("pod-a".into()),
            lease_duration_seconds: Some(15),
            ..Default::default()
        }),
    };
    let created = leases.create(&PostParams::default(), &lease).await.unwrap();
    let e = api_err(leases.create(&PostParams::default(), &lease).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists"));

    let mut renewed = created.clone();
    renewed.spec.as_mut().unwrap().holder_identity = Some("pod-b".into());
    let renewed = leases
        .replace("gitprovider-operator", &PostParams::default(), &renewed)
        .await
        .unwrap();
    assert_eq!(renewed.spec.as_ref().unwrap().holder_identity.as_deref(), Some("pod-b"));
    assert_ne!(renewed.resource_version(), created.resource_version());
    // The other candidate, holding the old copy, loses the race.
    let e = api_err(
        leases
            .replace("gitprovider-operator", &PostParams::default(), &created)
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    let e = api_err(leases.get("nope").await.unwrap_err());
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

    let accept = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
    let list = emu
        .requests()
        .into_iter()
        .find(|r| r.verb() == "list" && r.accept.as_deref() == Some(accept))
        .expect("a metadata list");
    let list_body = list.response_body;
    let list: Value = serde_json::from_slice(&list_body).unwrap();
    assert_eq!(list["kind"], "PartialObjectMetadataList");
    assert_eq!(list["items"][0]["kind"], "PartialObjectMetadata");
    assert_eq!(list["items"][0]["metadata"]["name"], "s0");
    assert!(list["items"][0].get("data").is_none());
    assert!(!String::from_utf8_lossy(&list_body).contains(&b64("glpat-first")));
}

/// As `emulator_dropped_watches_with_a_change_in_between` uses it: every watch is dropped, the
/// resumed watch is told its version is gone, the watcher relists; a plain drop is resumed.
#[tokio::test]
async fn watcher_relists_after_410_and_recovers_from_dropped_watches() {
    let (emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let mut stream = background(watcher::watcher(cms.clone(), watcher::Config::default()));
    wait_for(&mut stream, "InitDone", |e| matches!(e, Ok(Event::InitDone)))
        .await
        .unwrap();
    eventually("the watch to open", || emu.open_watches() == 1).await;

    emu.faults().gone_on_next_watches(1);
    assert_eq!(emu.faults().drop_all_watches(), 1);
    let err = wait_for(&mut stream, "410", |e| e.is_err()).await.unwrap_err();
    assert!(
        matches!(&err, watcher::Error::WatchError(s) if s.code == 410),
        "{err:?}"
    );
    wait_for(&mut stream, "relist", |e| matches!(e, Ok(Event::Init)))
        .await
        .unwrap();
    wait_for(&mut stream, "relist done", |e| matches!(e, Ok(Event::InitDone)))
        .await
        .unwrap();
    cms.create(&PostParams::default(), &cm("after-410", &[])).await.unwrap();
    wait_for(&mut stream, "event after relist", |e| applied(e, "after-410").is_some())
        .await
        .unwrap();

    // A plain drop: the watcher resumes from its last version and misses nothing.
    let lists = emu.count(|r| r.verb() == "list");
    eventually("the watch to reopen", || emu.open_watches() == 1).await;
    emu.faults().drop_all_watches();
    cms.create(&PostParams::default(), &cm("after-drop", &[]))
        .await
        .unwrap();
    wait_for(&mut stream, "event after drop", |e| applied(e, "after-drop").is_some())
        .await
        .unwrap();
    assert_eq!(emu.count(|r| r.verb() == "list"), lists, "resumed, not relisted");
}

#[tokio::test]
async fn watch_from_a_compacted_version_gets_410() {
    let (_emu, client) = start_with(EmulatorOptions {
        watch_history: 5,
        ..Default::default()
    })
    .await;
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

// ------------------------------------------------------------------ admission

/// A tiny HTTPS admission webhook: answers each review with `decide(request)`.
struct Webhook {
    addr: std::net::SocketAddr,
    ca_pem: String,
    reviews: Arc<Mutex<Vec<Value>>>,
}

impl Webhook {
    async fn start(sans: &[&str], decide: impl Fn(&Value) -> Value + Send + Sync + 'static) -> Webhook {
        use hyper_util::rt::TokioIo;
        let ca = TestCa::new("webhook-ca").unwrap();
        let cert = ca.issue(sans).unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(cert.server_config().unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reviews: Arc<Mutex<Vec<Value>>> = Arc::default();
        let decide = Arc::new(decide);
        let seen = reviews.clone();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, decide, seen) = (acceptor.clone(), decide.clone(), seen.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let svc = hyper::service::service_fn(move |req: axum::http::Request<hyper::body::Incoming>| {
                        let (decide, seen) = (decide.clone(), seen.clone());
                        async move {
                            assert_eq!(req.uri().path(), "/validate");
                            assert!(
                                req.uri().query().unwrap_or("").starts_with("timeout="),
                                "{:?}",
                                req.uri()
                            );
                            let bytes = axum::body::to_bytes(axum::body::Body::new(req.into_body()), usize::MAX)
                                .await
                                .unwrap();
                            let review: Value = serde_json::from_slice(&bytes).unwrap();
                            seen.lock().unwrap().push(review.clone());
                            let mut response = decide(&review["request"]);
                            response["uid"] = review["request"]["uid"].clone();
                            let out = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response});
                            Ok::<_, std::convert::Infallible>(axum::http::Response::new(axum::body::Body::from(
                                out.to_string(),
                            )))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), svc)
                        .await;
                });
            }
        });
        Webhook {
            addr,
            ca_pem: ca.cert_pem().to_owned(),
            reviews,
        }
    }

    fn reviews(&self) -> Vec<Value> {
        self.reviews.lock().unwrap().clone()
    }
}

/// A webhook configuration for CREATE and UPDATE of ConfigMaps.
fn webhook_configuration(client_config: Value, failure_policy: &str) -> DynamicObject {
    serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "gitprovider-operator"},
        "webhooks": [{
            "name": "validate.gitprovider.dev",
            "clientConfig": client_config,
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["configmaps"]}],
            "failurePolicy": failure_policy,
            "sideEffects": "None",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 5,
        }],
    }))
    .unwrap()
}

fn webhook_configurations(client: &Client) -> Api<DynamicObject> {
    Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration"),
            "validatingwebhookconfigurations",
        ),
    )
}

/// As `emulator_self_managed_webhook_certificates_through_the_service` uses it: a webhook
/// configured with `clientConfig.service` is called at the address registered for the Service,
/// verified for `<service>.<namespace>.svc` against the `caBundle` the operator patches in.
#[tokio::test]
async fn admission_webhook_by_service_reference() {
    let hook = Webhook::start(&["gitprovider-operator-webhook.operators.svc"], |req| {
        if req["object"]["data"]["verdict"] == "deny" {
            json!({"allowed": false, "status": {"message": "instanceName \"x\" is taken by team-a/other"}})
        } else {
            json!({"allowed": true})
        }
    })
    .await;
    let mut opts = EmulatorOptions::default();
    opts.service_endpoints
        .insert(("operators".into(), "gitprovider-operator-webhook".into()), hook.addr);
    let (_emu, client) = start_with(opts).await;
    let service =
        json!({"service": {"namespace": "operators", "name": "gitprovider-operator-webhook", "path": "/validate"}});
    let configs = webhook_configurations(&client);
    configs
        .create(&PostParams::default(), &webhook_configuration(service.clone(), "Fail"))
        .await
        .unwrap();

    // No caBundle yet: the call fails, and failurePolicy Fail refuses the request.
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let e = api_err(cms.create(&PostParams::default(), &cm("early", &[])).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (500, "InternalError"));
    assert!(
        e.message
            .starts_with("Internal error occurred: failed calling webhook \"validate.gitprovider.dev\""),
        "{}",
        e.message
    );
    assert!(hook.reviews().is_empty());

    // The caBundle is patched in (as the operator does, by replacing the configuration).
    let mut config = configs.get("gitprovider-operator").await.unwrap();
    config.data["webhooks"][0]["clientConfig"]["caBundle"] = json!(b64(&hook.ca_pem));
    configs
        .replace("gitprovider-operator", &PostParams::default(), &config)
        .await
        .unwrap();

    cms.create(&PostParams::default(), &cm("ok", &[("verdict", "allow")]))
        .await
        .unwrap();
    let review = &hook.reviews()[0];
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["request"]["operation"], "CREATE");
    assert_eq!(
        review["request"]["resource"],
        json!({"group": "", "version": "v1", "resource": "configmaps"})
    );
    assert_eq!(review["request"]["namespace"], "default");
    // The review deserialises as kube's admission types.
    let parsed: kube::core::admission::AdmissionReview<DynamicObject> = serde_json::from_value(review.clone()).unwrap();
    let parsed: kube::core::admission::AdmissionRequest<DynamicObject> = parsed.try_into().unwrap();
    assert_eq!(parsed.name, "ok");

    // Denied: the apiserver's message; a denial without a code is a 400.
    let e = api_err(
        cms.create(&PostParams::default(), &cm("no", &[("verdict", "deny")]))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 400);
    assert_eq!(
        e.message,
        "admission webhook \"validate.gitprovider.dev\" denied the request: instanceName \"x\" is taken by team-a/other"
    );
    assert_eq!(api_err(cms.get("no").await.unwrap_err()).code, 404);

    // Updates are reviewed with the old object.
    let e = api_err(
        cms.patch(
            "ok",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"verdict": "deny"}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 400);
    let update = hook
        .reviews()
        .into_iter()
        .find(|r| r["request"]["operation"] == "UPDATE")
        .unwrap();
    assert_eq!(update["request"]["oldObject"]["data"]["verdict"], "allow");
    assert_eq!(update["request"]["object"]["data"]["verdict"], "deny");

    // Other resources are not sent to this webhook.
    let before = hook.reviews().len();
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    secrets.create(&PostParams::default(), &secret("s", "x")).await.unwrap();
    assert_eq!(hook.reviews().len(), before);

    // A Service nobody registered is a call failure; failurePolicy Ignore lets it through.
    let mut config = configs.get("gitprovider-operator").await.unwrap();
    config.data["webhooks"][0]["clientConfig"]["service"]["name"] = json!("elsewhere");
    config.data["webhooks"][0]["failurePolicy"] = json!("Ignore");
    configs
        .replace("gitprovider-operator", &PostParams::default(), &config)
        .await
        .unwrap();
    cms.create(&PostParams::default(), &cm("ignored", &[("verdict", "deny")]))
        .await
        .unwrap();
    assert_eq!(hook.reviews().len(), before);
}
