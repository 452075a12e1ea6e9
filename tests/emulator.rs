//! Tests of the Kubernetes API emulator, driven with the real kube client (and, where a test
//! must see raw HTTP, with raw requests through that client).

mod support;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ObjectReference, Secret};
use k8s_openapi::api::events::v1::Event as EventV1;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, ObjectMeta, Patch, PatchParams,
    PostParams, WatchEvent, WatchParams,
};
use kube::core::PartialObjectMeta;
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use support::emulator::tls::TestCa;
use support::emulator::{Emulator, EmulatorOptions};

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

fn cm(name: &str, labels: &[(&str, &str)], data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(labels.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()),
            ..Default::default()
        },
        data: Some(data.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect()),
        ..Default::default()
    }
}

fn api_err(e: kube::Error) -> Box<kube::core::Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("expected an API error, got {other:?}"),
    }
}

/// A raw request through the kube client (auth, TLS) that returns status, headers and body.
async fn raw(
    client: &Client,
    method: &str,
    path: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Vec<String>, Value) {
    let req = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("Content-Type", content_type)
        .body(kube::client::Body::from(body))
        .unwrap();
    let resp = client.send(req).await.expect("request sent");
    let status = resp.status().as_u16();
    let warnings = resp
        .headers()
        .get_all("warning")
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    let bytes = axum::body::to_bytes(axum::body::Body::new(resp.into_body()), usize::MAX)
        .await
        .unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, warnings, body)
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

// ------------------------------------------------------------------ basics

#[tokio::test]
async fn serves_version_and_discovery() {
    let (emu, client) = start().await;
    let v = client.apiserver_version().await.unwrap();
    assert_eq!(v.git_version, "v1.34.0");
    assert_eq!((v.major.as_str(), v.minor.as_str()), ("1", "34"));

    let groups = client.list_api_groups().await.unwrap();
    let names: Vec<&str> = groups.groups.iter().map(|g| g.name.as_str()).collect();
    for g in [
        "events.k8s.io",
        "coordination.k8s.io",
        "apiextensions.k8s.io",
        "admissionregistration.k8s.io",
    ] {
        assert!(names.contains(&g), "{g} missing from {names:?}");
    }
    assert!(!names.contains(&"gitprovider.dev"));
    let core = client.list_core_api_resources("v1").await.unwrap();
    let secrets = core.resources.iter().find(|r| r.name == "secrets").unwrap();
    assert!(secrets.namespaced);
    assert!(secrets.verbs.contains(&"watch".to_owned()));

    // A CRD makes its group appear, with the status subresource.
    emu.apply_yaml_file(Path::new("crds/gitproviderconnections.yaml"))
        .await
        .unwrap();
    let groups = client.list_api_groups().await.unwrap();
    let g = groups
        .groups
        .iter()
        .find(|g| g.name == "gitprovider.dev")
        .expect("CRD group served");
    assert_eq!(g.preferred_version.as_ref().unwrap().version, "v1alpha1");
    let res = client
        .list_api_group_resources("gitprovider.dev/v1alpha1")
        .await
        .unwrap();
    let names: Vec<&str> = res.resources.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["gitproviderconnections", "gitproviderconnections/status"]);
    assert_eq!(
        res.resources[0].short_names.as_deref(),
        Some(&["gpc".to_owned(), "gitconn".to_owned()][..])
    );

    // kube's discovery walks all of it.
    let discovery = kube::Discovery::new(client.clone()).run().await.unwrap();
    assert!(discovery.has_group("gitprovider.dev"));
}

#[tokio::test]
async fn rejects_requests_without_the_token() {
    let (emu, _client) = start().await;
    let tls = support::emulator::tls::client_config_trusting(emu.ca_pem().as_bytes()).unwrap();
    let http = reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap();
    let resp = http
        .get(format!("{}/api/v1/namespaces/default/secrets", emu.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let body: Value = resp.json_body().await;
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["reason"], "Unauthorized");
    assert_eq!(body["code"], 401);

    let resp = http
        .get(format!("{}/api/v1/namespaces", emu.url()))
        .header("Authorization", "Bearer wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(emu.count(|r| r.status == 401), 2);

    // The kubeconfig names the server, trusts the CA and carries the token.
    let kc = kube::config::Kubeconfig::read_from(emu.kubeconfig_path()).unwrap();
    let cluster = kc.clusters[0].cluster.as_ref().unwrap();
    assert_eq!(cluster.server.as_deref(), Some(emu.url().as_str()));
    assert!(cluster.certificate_authority_data.is_some());
    let user = kc.auth_infos[0].auth_info.as_ref().unwrap();
    assert!(user.token.is_some());
    assert!(emu.url().ends_with(&emu.addr().port().to_string()));
    assert!(!emu.token().is_empty());
}

#[test]
fn emulator_can_be_shared_between_tasks() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Emulator>();
    send_sync::<support::emulator::Faults>();
}

/// `reqwest::Response::json` needs a feature this project does not enable.
trait JsonBody {
    async fn json_body(self) -> Value;
}
impl JsonBody for reqwest::Response {
    async fn json_body(self) -> Value {
        serde_json::from_slice(&self.bytes().await.unwrap()).unwrap()
    }
}

#[tokio::test]
async fn secrets_and_configmaps_crud() {
    let (emu, client) = start().await;
    let secrets: Api<Secret> = Api::namespaced(client.clone(), "team-a");
    let s: Secret = serde_json::from_value(json!({
        "metadata": {"generateName": "pat-"},
        "stringData": {"token": "glpat-very-secret"},
    }))
    .unwrap();
    let created = secrets.create(&PostParams::default(), &s).await.unwrap();
    let name = created.name_any();
    assert!(name.starts_with("pat-") && name.len() == 9, "{name}");
    assert_eq!(created.type_.as_deref(), Some("Opaque"));
    assert!(created.string_data.is_none(), "stringData is write-only");
    assert_eq!(created.data.as_ref().unwrap()["token"].0, b"glpat-very-secret");
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    assert_eq!(created.metadata.generation, None, "secrets have no generation");
    assert_eq!(created.metadata.namespace.as_deref(), Some("team-a"));

    let got = secrets.get(&name).await.unwrap();
    assert_eq!(got.metadata.resource_version, created.metadata.resource_version);
    assert!(
        emu.requests_mentioning("glpat-very-secret").len() == 1,
        "only the create body carries it in clear"
    );

    // AlreadyExists and NotFound are Status objects like the apiserver's.
    let mut dup = s.clone();
    dup.metadata.generate_name = None;
    dup.metadata.name = Some(name.clone());
    let e = api_err(secrets.create(&PostParams::default(), &dup).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(e.message, format!("secrets \"{name}\" already exists"));
    let e = api_err(secrets.get("nope").await.unwrap_err());
    assert_eq!(
        (e.code, e.reason.as_str(), e.message.as_str()),
        (404, "NotFound", "secrets \"nope\" not found")
    );
    let d = e.details.unwrap();
    assert_eq!((d.name.as_str(), d.kind.as_str()), ("nope", "secrets"));

    // ConfigMaps: create, replace, merge patch, JSON patch, list, delete.
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "team-a");
    let c = cms
        .create(&PostParams::default(), &cm("conf", &[("app", "x")], &[("a", "1")]))
        .await
        .unwrap();
    let mut c2 = c.clone();
    c2.data.as_mut().unwrap().insert("b".into(), "2".into());
    let c2 = cms.replace("conf", &PostParams::default(), &c2).await.unwrap();
    assert_ne!(c2.metadata.resource_version, c.metadata.resource_version);
    let c3 = cms
        .patch(
            "conf",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": null, "c": "3"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        c3.data.unwrap(),
        BTreeMap::from([("b".into(), "2".into()), ("c".into(), "3".into())])
    );
    let jp = serde_json::from_value(json!([{"op": "add", "path": "/data/d", "value": "4"}])).unwrap();
    let c4 = cms
        .patch("conf", &PatchParams::default(), &Patch::<()>::Json(jp))
        .await
        .unwrap();
    assert_eq!(c4.data.unwrap()["d"], "4");
    let failing = serde_json::from_value(json!([{"op": "test", "path": "/data/d", "value": "x"}])).unwrap();
    let e = api_err(
        cms.patch("conf", &PatchParams::default(), &Patch::<()>::Json(failing))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    let listed = cms.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert!(listed.metadata.resource_version.is_some());

    let deleted = cms.delete("conf", &DeleteParams::default()).await.unwrap();
    let status = deleted.right().expect("a Status for an immediate delete");
    assert_eq!(status.details.unwrap().name, "conf");
    assert_eq!(api_err(cms.get("conf").await.unwrap_err()).code, 404);
    assert_eq!(
        api_err(cms.delete("conf", &DeleteParams::default()).await.unwrap_err()).code,
        404
    );
}

#[tokio::test]
async fn optimistic_concurrency_and_no_op_writes() {
    let (emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let c = cms
        .create(&PostParams::default(), &cm("cc", &[], &[("a", "1")]))
        .await
        .unwrap();
    let mut newer = c.clone();
    newer.data.as_mut().unwrap().insert("a".into(), "2".into());
    cms.replace("cc", &PostParams::default(), &newer).await.unwrap();

    // The stale copy loses.
    let mut stale = c.clone();
    stale.data.as_mut().unwrap().insert("a".into(), "3".into());
    let e = api_err(cms.replace("cc", &PostParams::default(), &stale).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        e.message,
        "Operation cannot be fulfilled on configmaps \"cc\": the object has been modified; please apply your changes to the latest version and try again"
    );
    // So does a patch pinned to an old resourceVersion.
    let pinned = json!({"metadata": {"resourceVersion": c.resource_version()}, "data": {"a": "4"}});
    assert_eq!(
        api_err(
            cms.patch("cc", &PatchParams::default(), &Patch::Merge(pinned))
                .await
                .unwrap_err()
        )
        .code,
        409
    );

    // A write that changes nothing stores nothing.
    let current = cms.get("cc").await.unwrap();
    let rv = emu.resource_version();
    let same = cms.replace("cc", &PostParams::default(), &current).await.unwrap();
    assert_eq!(same.resource_version(), current.resource_version());
    let same = cms
        .patch(
            "cc",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": "2"}})),
        )
        .await
        .unwrap();
    assert_eq!(same.resource_version(), current.resource_version());
    assert_eq!(emu.resource_version(), rv);

    // Name mismatch between URL and body.
    let mut other = current.clone();
    other.metadata.name = Some("other".into());
    let e = api_err(cms.replace("cc", &PostParams::default(), &other).await.unwrap_err());
    assert_eq!(e.code, 400);
}

#[tokio::test]
async fn label_and_field_selectors() {
    let (_emu, client) = start().await;
    for (ns, name, labels) in [
        ("a", "one", vec![("tier", "web"), ("env", "prod")]),
        ("a", "two", vec![("tier", "db"), ("env", "prod")]),
        ("a", "three", vec![("tier", "web")]),
        ("b", "four", vec![("tier", "cache"), ("env", "dev")]),
    ] {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        api.create(&PostParams::default(), &cm(name, &labels, &[]))
            .await
            .unwrap();
    }
    let all: Api<ConfigMap> = Api::all(client.clone());
    let names = |sel: &str| {
        let all = all.clone();
        let sel = sel.to_owned();
        async move {
            let mut n: Vec<String> = all
                .list(&ListParams::default().labels(&sel))
                .await
                .unwrap()
                .iter()
                .map(|c| c.name_any())
                .collect();
            n.sort();
            n
        }
    };
    assert_eq!(names("tier=web").await, ["one", "three"]);
    assert_eq!(names("tier!=web").await, ["four", "two"]);
    assert_eq!(names("tier in (db, cache)").await, ["four", "two"]);
    assert_eq!(names("tier notin (web),env").await, ["four", "two"]);
    assert_eq!(names("!env").await, ["three"]);
    assert_eq!(names("env=prod,tier==web").await, ["one"]);

    let by_field = all
        .list(&ListParams::default().fields("metadata.namespace=b"))
        .await
        .unwrap();
    assert_eq!(
        by_field.items.iter().map(|c| c.name_any()).collect::<Vec<_>>(),
        ["four"]
    );
    let a: Api<ConfigMap> = Api::namespaced(client.clone(), "a");
    let by_name = a
        .list(&ListParams::default().fields("metadata.name!=one"))
        .await
        .unwrap();
    assert_eq!(by_name.items.len(), 2);

    let e = api_err(
        all.list(&ListParams::default().labels("tier in (web"))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 400);
    let e = api_err(all.list(&ListParams::default().fields("data.x=1")).await.unwrap_err());
    assert_eq!((e.code, e.message.as_str()), (400, "field label not supported: data.x"));
}

#[tokio::test]
async fn pagination_is_consistent() {
    let (_emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    for i in 0..7 {
        cms.create(&PostParams::default(), &cm(&format!("cm-{i}"), &[], &[]))
            .await
            .unwrap();
    }
    let first = cms.list(&ListParams::default().limit(3)).await.unwrap();
    assert_eq!(first.items.len(), 3);
    assert_eq!(first.metadata.remaining_item_count, Some(4));
    let token = first.metadata.continue_.clone().expect("a continue token");

    // Changes after the first page do not show in later pages: they are at a newer version.
    cms.delete("cm-5", &DeleteParams::default()).await.unwrap();
    cms.create(&PostParams::default(), &cm("cm-9", &[], &[])).await.unwrap();

    let second = cms
        .list(&ListParams::default().limit(3).continue_token(&token))
        .await
        .unwrap();
    let third = cms
        .list(
            &ListParams::default()
                .limit(3)
                .continue_token(second.metadata.continue_.as_deref().unwrap()),
        )
        .await
        .unwrap();
    assert!(third.metadata.continue_.is_none());
    let names: Vec<String> = first
        .iter()
        .chain(second.iter())
        .chain(third.iter())
        .map(|c| c.name_any())
        .collect();
    assert_eq!(names, (0..7).map(|i| format!("cm-{i}")).collect::<Vec<_>>());
    assert_eq!(second.metadata.resource_version, first.metadata.resource_version);

    // A garbled token is a 400.
    let e = api_err(
        cms.list(&ListParams::default().continue_token("garbage"))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 400);
}

/// Every page of a paginated list, each page followed by `between(page number)`; returns
/// the `(namespace/name, data.n)` of the items and checks the list's invariants on the way.
async fn list_in_pages<F, Fut>(api: &Api<ConfigMap>, limit: u32, mut between: F) -> Vec<(String, String)>
where
    F: FnMut(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut items = Vec::new();
    let mut token: Option<String> = None;
    let mut rv: Option<String> = None;
    for page in 0.. {
        let mut params = ListParams::default().limit(limit);
        if let Some(t) = &token {
            params = params.continue_token(t);
        }
        let list = api.list(&params).await.unwrap();
        assert!(list.items.len() <= limit as usize);
        match &rv {
            None => rv = list.metadata.resource_version.clone(),
            // Every page is of the same snapshot.
            Some(first) => assert_eq!(list.metadata.resource_version.as_ref(), Some(first)),
        }
        items.extend(list.items.iter().map(|c| {
            (
                format!("{}/{}", c.namespace().unwrap_or_default(), c.name_any()),
                c.data.as_ref().and_then(|d| d.get("n")).cloned().unwrap_or_default(),
            )
        }));
        token = list.metadata.continue_.clone();
        match &token {
            Some(_) => assert!(list.metadata.remaining_item_count.is_some_and(|r| r > 0)),
            None => {
                assert_eq!(list.metadata.remaining_item_count, None);
                break;
            }
        }
        between(page).await;
    }
    items
}

#[tokio::test]
async fn paginated_list_of_a_large_collection_is_one_snapshot_despite_writes() {
    let (_emu, client) = start_with(EmulatorOptions {
        watch_history: 10_000,
        ..Default::default()
    })
    .await;
    let namespaces = ["a", "b", "c"];
    let per_namespace = 120;
    let mut expected = Vec::new();
    for ns in namespaces {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
        for i in 0..per_namespace {
            let name = format!("cm-{i:03}");
            api.create(&PostParams::default(), &cm(&name, &[], &[("n", "0")]))
                .await
                .unwrap();
            expected.push((format!("{ns}/{name}"), "0".to_owned()));
        }
    }
    expected.sort();

    // Between pages: objects on later pages are modified and deleted, new ones appear before
    // and after the position reached, in every namespace, and a deleted name comes back.
    // (Whether each write applies does not matter, only that the collection keeps changing.)
    let write = |page: usize| {
        let client = client.clone();
        async move {
            for ns in namespaces {
                let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
                let later = format!("cm-{:03}", (page * 17 + 60) % per_namespace);
                let _ = api
                    .patch(
                        &later,
                        &PatchParams::default(),
                        &Patch::Merge(json!({"data": {"n": (page + 1).to_string()}})),
                    )
                    .await;
                let gone = format!("cm-{:03}", (per_namespace - 1 + page * 7) % per_namespace);
                let _ = api.delete(&gone, &DeleteParams::default()).await;
                if page % 2 == 1 {
                    let _ = api
                        .create(&PostParams::default(), &cm(&gone, &[], &[("n", "again")]))
                        .await;
                }
                for name in [
                    format!("aaa-{page}"),
                    format!("cm-{:03}-new", page * 10 % per_namespace),
                    format!("zzz-{page}"),
                ] {
                    let _ = api
                        .create(&PostParams::default(), &cm(&name, &[], &[("n", "new")]))
                        .await;
                }
            }
        }
    };

    // Across namespaces.
    let all: Api<ConfigMap> = Api::all(client.clone());
    let mut seen = list_in_pages(&all, 25, write).await;
    seen.sort();
    assert_eq!(seen, expected);

    // Within one namespace (the others keep changing too).
    let b: Api<ConfigMap> = Api::namespaced(client.clone(), "b");
    let before: Vec<(String, String)> = {
        let mut now: Vec<(String, String)> = b
            .list(&ListParams::default())
            .await
            .unwrap()
            .iter()
            .map(|c| {
                (
                    format!("b/{}", c.name_any()),
                    c.data.as_ref().and_then(|d| d.get("n")).cloned().unwrap_or_default(),
                )
            })
            .collect();
        now.sort();
        now
    };
    let seen = list_in_pages(&b, 7, |page| write(page + 100)).await;
    assert_eq!(seen, before, "one snapshot, in key order");

    // A list at an exact older resourceVersion, in pages, is that snapshot too.
    let first = all.list(&ListParams::default().limit(1)).await.unwrap();
    let rv = first.metadata.resource_version.clone().unwrap();
    let snapshot: Vec<String> = all
        .list(&ListParams::default())
        .await
        .unwrap()
        .iter()
        .map(|c| format!("{}/{}", c.namespace().unwrap_or_default(), c.name_any()))
        .collect();
    write(200).await;
    let mut names = Vec::new();
    let mut params = ListParams::default()
        .limit(40)
        .at(&rv)
        .matching(kube::api::VersionMatch::Exact);
    loop {
        let page = all.list(&params).await.unwrap();
        assert_eq!(page.metadata.resource_version.as_deref(), Some(rv.as_str()));
        names.extend(
            page.iter()
                .map(|c| format!("{}/{}", c.namespace().unwrap_or_default(), c.name_any())),
        );
        match page.metadata.continue_ {
            Some(t) => params = ListParams::default().limit(40).continue_token(&t),
            None => break,
        }
    }
    assert_eq!(names, snapshot);
}

#[tokio::test]
async fn continue_token_expires_with_history() {
    let (_emu, client) = start_with(EmulatorOptions {
        watch_history: 5,
        ..Default::default()
    })
    .await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    for i in 0..4 {
        cms.create(&PostParams::default(), &cm(&format!("cm-{i}"), &[], &[]))
            .await
            .unwrap();
    }
    let first = cms.list(&ListParams::default().limit(2)).await.unwrap();
    for i in 0..10 {
        cms.patch(
            "cm-0",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"n": i.to_string()}})),
        )
        .await
        .unwrap();
    }
    let e = api_err(
        cms.list(&ListParams::default().continue_token(first.metadata.continue_.as_deref().unwrap()))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (410, "Expired"));
}

// ------------------------------------------------------------------ custom resources

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
            "tokenSecretRef": {"name": "pat"},
        },
        "status": {"serverVersion": "ignored on create"},
    }))
    .unwrap()
}

#[tokio::test]
async fn custom_resources_follow_their_crd() {
    let (emu, client) = start().await;
    let api = gpc_api(&client, "team-a");
    // Before the CRD exists the resource is unknown.
    assert_eq!(api_err(api.list(&ListParams::default()).await.unwrap_err()).code, 404);

    let crds = emu
        .apply_yaml_file(Path::new("crds/gitproviderconnections.yaml"))
        .await
        .unwrap();
    let conditions = crds[0]["status"]["conditions"].as_array().unwrap();
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "Established" && c["status"] == "True")
    );

    let created = api.create(&PostParams::default(), &gpc("dev", "Dev")).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(
        created.data.get("status").is_none(),
        "status is dropped on create with a status subresource"
    );
    // Schema defaults are applied.
    assert_eq!(created.data["spec"]["tokenSecretRef"]["key"], "token");
    assert_eq!(created.data["spec"]["verifyInterval"], "1h");
    assert_eq!(created.data["spec"]["suspend"], false);

    // Status writes: only status changes, generation stays, resourceVersion moves.
    let status = json!({"status": {"observedGeneration": 1, "conditions": [{
        "type": "Ready", "status": "True", "reason": "Verified", "message": "ok",
        "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
    let after_status = api
        .patch_status(
            "dev",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"instanceName": "sneaky"}, "status": status["status"]})),
        )
        .await
        .unwrap();
    assert_eq!(after_status.metadata.generation, Some(1));
    assert_eq!(
        after_status.data["spec"]["instanceName"], "Dev",
        "spec is ignored on /status"
    );
    assert_eq!(after_status.data["status"]["conditions"][0]["reason"], "Verified");
    assert_ne!(after_status.resource_version(), created.resource_version());

    // Spec writes bump generation and leave status alone; metadata-only writes do not bump.
    let after_spec = api
        .patch(
            "dev",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"instanceName": "Dev 2"}, "status": null})),
        )
        .await
        .unwrap();
    assert_eq!(after_spec.metadata.generation, Some(2));
    assert_eq!(after_spec.data["status"]["conditions"][0]["reason"], "Verified");
    let after_label = api
        .patch(
            "dev",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .unwrap();
    assert_eq!(after_label.metadata.generation, Some(2));

    // Server-side apply on the status subresource, as controllers write status.
    let ssa = PatchParams::apply("gitprovider-operator").force();
    let applied = api
        .patch_status(
            "dev",
            &ssa,
            &Patch::Apply(json!({
            "apiVersion": "gitprovider.dev/v1alpha1", "kind": "GitProviderConnection",
            "status": {"observedGeneration": 2, "serverVersion": "17.5.1"}})),
        )
        .await
        .unwrap();
    assert_eq!(applied.data["status"]["serverVersion"], "17.5.1");
    assert_eq!(applied.metadata.generation, Some(2));

    // Custom resources refuse unconditional PUTs, and stale ones conflict.
    let mut unconditional = after_label.clone();
    unconditional.metadata.resource_version = None;
    let e = api_err(
        api.replace("dev", &PostParams::default(), &unconditional)
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    let e = api_err(
        api.replace("dev", &PostParams::default(), &after_spec)
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 409);

    // Strategic merge patch is not accepted for custom resources (415, as upstream).
    let e = api_err(
        api.patch("dev", &PatchParams::default(), &Patch::Strategic(json!({"spec": {}})))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (415, "UnsupportedMediaType"));

    // Schema validation.
    let mut bad = gpc("bad", "x");
    bad.data["spec"]["provider"] = json!("Perforce");
    bad.data["spec"].as_object_mut().unwrap().remove("url");
    let e = api_err(api.create(&PostParams::default(), &bad).await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (422, "Invalid"));
    assert!(
        e.message
            .starts_with("GitProviderConnection.gitprovider.dev \"bad\" is invalid: ["),
        "{}",
        e.message
    );
    assert!(e.message.contains("spec.url: Required value"), "{}", e.message);
    assert!(
        e.message
            .contains("spec.provider: Unsupported value: \"Perforce\": supported values: \"GitLab\""),
        "{}",
        e.message
    );
    let e = api_err(
        api.patch_status(
            "dev",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"lastVerifiedTime": "yesterday"}})),
        )
        .await
        .unwrap_err(),
    );
    assert!(e.message.contains("status.lastVerifiedTime"), "{}", e.message);

    // Unknown fields are pruned, with a warning.
    let mut extra = gpc("extra", "e");
    extra.data["spec"]["color"] = json!("blue");
    let body = serde_json::to_vec(&extra).unwrap();
    let (code, warnings, stored) = raw(
        &client,
        "POST",
        "/apis/gitprovider.dev/v1alpha1/namespaces/team-a/gitproviderconnections",
        "application/json",
        body,
    )
    .await;
    assert_eq!(code, 201);
    assert_eq!(warnings, ["299 - \"unknown field \\\"spec.color\\\"\""]);
    assert!(stored["spec"].get("color").is_none());

    // Lists of custom resources carry apiVersion/kind on each item.
    let list = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 2);
    assert!(
        list.items
            .iter()
            .all(|i| { i.types.as_ref().is_some_and(|t| t.kind == "GitProviderConnection") })
    );
}

#[tokio::test]
async fn finalizers_delay_deletion() {
    let (emu, client) = start().await;
    emu.apply_yaml_file(Path::new("crds/gitproviderconnections.yaml"))
        .await
        .unwrap();
    let api = gpc_api(&client, "default");
    let mut obj = gpc("fin", "f");
    obj.metadata.finalizers = Some(vec!["gitprovider.dev/cleanup".into()]);
    api.create(&PostParams::default(), &obj).await.unwrap();

    let pending = api
        .delete("fin", &DeleteParams::default())
        .await
        .unwrap()
        .left()
        .expect("object still there");
    assert!(pending.metadata.deletion_timestamp.is_some());
    assert_eq!(pending.metadata.generation, Some(2));
    let e = api_err(
        api.patch(
            "fin",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"finalizers": ["gitprovider.dev/cleanup", "more"]}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 422);
    api.patch(
        "fin",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(api_err(api.get("fin").await.unwrap_err()).code, 404);
}

#[tokio::test]
async fn namespaces_delete_their_content() {
    let (_emu, client) = start().await;
    let nss: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": "doomed"}})).unwrap();
    let created = nss.create(&PostParams::default(), &ns).await.unwrap();
    assert_eq!(created.labels()["kubernetes.io/metadata.name"], "doomed");
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "doomed");
    cms.create(&PostParams::default(), &cm("x", &[], &[])).await.unwrap();
    nss.delete("doomed", &DeleteParams::default()).await.unwrap();
    assert_eq!(api_err(cms.get("x").await.unwrap_err()).code, 404);
    assert_eq!(api_err(nss.get("doomed").await.unwrap_err()).code, 404);
}

// ------------------------------------------------------------------ watches

#[tokio::test]
async fn watcher_sees_adds_updates_and_deletes() {
    let (_emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    cms.create(&PostParams::default(), &cm("before", &[], &[]))
        .await
        .unwrap();
    let mut stream = watcher::watcher(cms.clone(), watcher::Config::default()).boxed();
    wait_for(&mut stream, "initial object", |e| applied(e, "before").is_some())
        .await
        .unwrap();
    wait_for(&mut stream, "InitDone", |e| matches!(e, Ok(Event::InitDone)))
        .await
        .unwrap();

    cms.create(&PostParams::default(), &cm("w", &[], &[("k", "1")]))
        .await
        .unwrap();
    wait_for(&mut stream, "add", |e| applied(e, "w").is_some())
        .await
        .unwrap();
    cms.patch("w", &PatchParams::default(), &Patch::Merge(json!({"data": {"k": "2"}})))
        .await
        .unwrap();
    wait_for(&mut stream, "update", |e| {
        applied(e, "w").is_some_and(|c| c.data.as_ref().unwrap()["k"] == "2")
    })
    .await
    .unwrap();
    cms.delete("w", &DeleteParams::default()).await.unwrap();
    wait_for(
        &mut stream,
        "delete",
        |e| matches!(e, Ok(Event::Delete(c)) if c.name_any() == "w"),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn label_selected_watch_sees_objects_enter_and_leave() {
    let (_emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    cms.create(&PostParams::default(), &cm("sel", &[("on", "no")], &[]))
        .await
        .unwrap();
    let rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut events = cms
        .watch(&WatchParams::default().labels("on=yes"), &rv)
        .await
        .unwrap()
        .boxed();
    cms.patch(
        "sel",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"on": "yes"}}})),
    )
    .await
    .unwrap();
    let ev = bounded("ADDED", events.next()).await.unwrap().unwrap();
    assert!(
        matches!(ev, WatchEvent::Added(ref c) if c.name_any() == "sel"),
        "{ev:?}"
    );
    cms.patch(
        "sel",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"on": "no"}}})),
    )
    .await
    .unwrap();
    let ev = bounded("DELETED", events.next()).await.unwrap().unwrap();
    assert!(matches!(ev, WatchEvent::Deleted(_)), "{ev:?}");
}

#[tokio::test]
async fn metadata_watcher_and_streaming_lists() {
    let (emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    cms.create(&PostParams::default(), &cm("m0", &[("a", "b")], &[("big", "data")]))
        .await
        .unwrap();

    // The current way (`Api<PartialObjectMeta<K>>`) and the deprecated `metadata_watcher` send
    // the same requests.
    let metas: Api<PartialObjectMeta<ConfigMap>> = Api::default_namespaced(client.clone());
    let mut meta = watcher::watcher(metas, watcher::Config::default()).boxed();
    #[allow(deprecated)]
    let mut old_style = kube::runtime::metadata_watcher(cms.clone(), watcher::Config::default()).boxed();
    wait_for(&mut old_style, "metadata of m0 (metadata_watcher)", |e| {
        applied(e, "m0").is_some()
    })
    .await
    .unwrap();
    let first = wait_for(&mut meta, "metadata of m0", |e| applied(e, "m0").is_some())
        .await
        .unwrap();
    if let Event::InitApply(m) = first {
        assert_eq!(m.labels()["a"], "b");
    }
    wait_for(&mut meta, "InitDone", |e| matches!(e, Ok(Event::InitDone)))
        .await
        .unwrap();
    cms.create(&PostParams::default(), &cm("m1", &[], &[])).await.unwrap();
    wait_for(&mut meta, "metadata add", |e| applied(e, "m1").is_some())
        .await
        .unwrap();
    cms.delete("m1", &DeleteParams::default()).await.unwrap();
    wait_for(
        &mut meta,
        "metadata delete",
        |e| matches!(e, Ok(Event::Delete(m)) if m.name_any() == "m1"),
    )
    .await
    .unwrap();
    let accept = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
    assert!(emu.count(|r| r.verb() == "list" && r.accept.as_deref() == Some(accept)) >= 1);
    let list_body = emu
        .requests()
        .into_iter()
        .find(|r| r.accept.as_deref() == Some(accept))
        .unwrap()
        .response_body;
    let list: Value = serde_json::from_slice(&list_body).unwrap();
    assert_eq!(list["kind"], "PartialObjectMetadataList");
    assert!(list["items"][0].get("data").is_none());

    let mut streaming = watcher::watcher(cms.clone(), watcher::Config::default().streaming_lists()).boxed();
    wait_for(&mut streaming, "streamed m0", |e| applied(e, "m0").is_some())
        .await
        .unwrap();
    wait_for(&mut streaming, "initial-events-end", |e| {
        matches!(e, Ok(Event::InitDone))
    })
    .await
    .unwrap();
    cms.create(&PostParams::default(), &cm("m2", &[], &[])).await.unwrap();
    wait_for(&mut streaming, "streamed add", |e| applied(e, "m2").is_some())
        .await
        .unwrap();
    assert!(emu.count(|r| r.query_param("sendInitialEvents").as_deref() == Some("true")) >= 1);
}

#[tokio::test]
async fn watch_from_a_compacted_version_gets_410() {
    let (_emu, client) = start_with(EmulatorOptions {
        watch_history: 5,
        ..Default::default()
    })
    .await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let old = cms.create(&PostParams::default(), &cm("old", &[], &[])).await.unwrap();
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
async fn watcher_relists_after_410_and_recovers_from_dropped_watches() {
    let (emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let mut stream = background(watcher::watcher(cms.clone(), watcher::Config::default()));
    wait_for(&mut stream, "InitDone", |e| matches!(e, Ok(Event::InitDone)))
        .await
        .unwrap();
    eventually("the watch to open", || emu.open_watches() == 1).await;

    // The watch ends; the resumed watch is told its version is gone; the watcher relists.
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
    cms.create(&PostParams::default(), &cm("after-410", &[], &[]))
        .await
        .unwrap();
    wait_for(&mut stream, "event after relist", |e| applied(e, "after-410").is_some())
        .await
        .unwrap();

    // A plain drop: the watcher resumes from its last version and misses nothing.
    emu.faults().drop_all_watches();
    cms.create(&PostParams::default(), &cm("after-drop", &[], &[]))
        .await
        .unwrap();
    wait_for(&mut stream, "event after drop", |e| applied(e, "after-drop").is_some())
        .await
        .unwrap();
    assert!(emu.count(|r| r.verb() == "list") >= 2);
}

#[tokio::test]
async fn watches_get_bookmarks() {
    let (_emu, client) = start_with(EmulatorOptions {
        bookmark_interval: Duration::from_millis(100),
        ..Default::default()
    })
    .await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    cms.create(&PostParams::default(), &cm("b", &[], &[])).await.unwrap();
    let rv = cms
        .list(&ListParams::default())
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let others: Api<Secret> = Api::default_namespaced(client.clone());
    others
        .create(
            &PostParams::default(),
            &Secret {
                metadata: ObjectMeta {
                    name: Some("s".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut events = cms
        .watch(&WatchParams::default().timeout(2), &rv)
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
    // The stream ends at timeoutSeconds.
    bounded("timeout", async { while events.next().await.is_some() {} }).await;
}

// ------------------------------------------------------------------ faults and the record

#[tokio::test]
async fn injected_failures_and_stalls() {
    let (emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    cms.create(&PostParams::default(), &cm("f", &[], &[])).await.unwrap();

    emu.faults().fail_next(1, 500);
    let e = api_err(cms.get("f").await.unwrap_err());
    assert_eq!((e.code, e.reason.as_str()), (500, "InternalError"));
    assert!(cms.get("f").await.is_ok());

    // kube retries 429 after Retry-After.
    emu.clear_requests();
    emu.faults().fail_next(1, 429);
    assert!(cms.get("f").await.is_ok());
    let statuses: Vec<u16> = emu.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 200]);

    // Only the matching requests fail.
    emu.faults().fail_next_matching(1, 500, |method, _, target| {
        method == "PATCH" && target.is_some_and(|t| t.name.as_deref() == Some("f"))
    });
    assert!(cms.get("f").await.is_ok());
    assert_eq!(
        api_err(
            cms.patch("f", &PatchParams::default(), &Patch::Merge(json!({})))
                .await
                .unwrap_err()
        )
        .code,
        500
    );

    emu.faults().stall(Duration::from_millis(300));
    let t0 = std::time::Instant::now();
    cms.get("f").await.unwrap();
    assert!(t0.elapsed() >= Duration::from_millis(300));
    emu.faults().stall(Duration::ZERO);
}

#[tokio::test]
async fn request_record_supports_assertions() {
    let (emu, client) = start().await;
    emu.apply_yaml_file(Path::new("crds/gitproviderconnections.yaml"))
        .await
        .unwrap();
    let api = gpc_api(&client, "ns1");
    api.create(&PostParams::default(), &gpc("rec", "r")).await.unwrap();
    emu.clear_requests();
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
    assert_eq!(
        emu.count(|r| r.is_status_write() && r.is_for("gitproviderconnections", Some("ns1"), "rec")),
        3
    );
    assert_eq!(emu.count(|r| r.is_write()), 3);
    let first = &emu.requests()[0];
    assert_eq!(first.method, "PATCH");
    assert_eq!(
        first.path,
        "/apis/gitprovider.dev/v1alpha1/namespaces/ns1/gitproviderconnections/rec/status"
    );
    assert_eq!(first.content_type.as_deref(), Some("application/merge-patch+json"));
    assert!(first.mentions("\"v0\""));
    assert!(emu.requests_mentioning("never-sent").is_empty());
}

// ------------------------------------------------------------------ leases and events

#[tokio::test]
async fn leases_for_leader_election() {
    let (_emu, client) = start().await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
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
    let mut renewed = created.clone();
    renewed.spec.as_mut().unwrap().lease_transitions = Some(1);
    renewed.spec.as_mut().unwrap().holder_identity = Some("pod-b".into());
    let renewed = leases
        .replace("gitprovider-operator", &PostParams::default(), &renewed)
        .await
        .unwrap();
    assert_eq!(renewed.spec.as_ref().unwrap().holder_identity.as_deref(), Some("pod-b"));
    // The other candidate, holding the old copy, loses the race.
    let e = api_err(
        leases
            .replace("gitprovider-operator", &PostParams::default(), &created)
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 409);
}

#[tokio::test]
async fn recorder_publishes_events() {
    use kube::runtime::events::{Event as KEvent, EventType, Recorder, Reporter};
    let (emu, client) = start().await;
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
    recorder.publish(&ev, &reference).await.unwrap(); // a series: patched, not created again

    let events: Api<EventV1> = Api::namespaced(client.clone(), "team-a");
    let list = events.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    let e = &list.items[0];
    assert_eq!(e.reason.as_deref(), Some("Unauthorized"));
    assert_eq!(e.regarding.as_ref().unwrap().name.as_deref(), Some("dev"));
    assert_eq!(e.series.as_ref().map(|s| s.count), Some(2));

    // The same event through the core API (one storage, two views).
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "team-a");
    let c = &core
        .list(&ListParams::default().fields("involvedObject.name=dev"))
        .await
        .unwrap()
        .items[0];
    assert_eq!(c.message.as_deref(), Some("the instance rejected the token"));
    assert_eq!(c.reporting_component.as_deref(), Some("gitprovider-operator"));
    assert!(emu.object("", "events", "team-a", &e.name_any()).is_some());

    // events.k8s.io validation: a note over 1 kB is refused.
    let mut long = e.clone();
    long.metadata = ObjectMeta {
        name: Some("long".into()),
        ..Default::default()
    };
    long.series = None;
    long.note = Some("x".repeat(1025));
    long.event_time = Some(MicroTime(jiff::Timestamp::now()));
    let err = api_err(events.create(&PostParams::default(), &long).await.unwrap_err());
    assert_eq!(err.code, 422);
    assert!(err.message.contains("note: Too long"), "{}", err.message);
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
        Self::start_slow(sans, Duration::ZERO, decide).await
    }

    /// A webhook that takes `delay` to answer.
    async fn start_slow(
        sans: &[&str],
        delay: Duration,
        decide: impl Fn(&Value) -> Value + Send + Sync + 'static,
    ) -> Webhook {
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
                            tokio::time::sleep(delay).await;
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

fn b64(s: &str) -> String {
    serde_json::to_value(k8s_openapi::ByteString(s.as_bytes().to_vec()))
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

async fn install_webhook(client: &Client, client_config: Value, failure_policy: &str) {
    install_webhook_with(client, client_config, failure_policy, json!({})).await;
}

/// Installs the test webhook configuration; `extra` is merged into the webhook entry.
async fn install_webhook_with(client: &Client, client_config: Value, failure_policy: &str, extra: Value) {
    let vwcs: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration"),
            "validatingwebhookconfigurations",
        ),
    );
    let obj: DynamicObject = serde_json::from_value(json!({
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
            "timeoutSeconds": 2,
        }],
    }))
    .unwrap();
    let mut obj = obj;
    json_patch::merge(&mut obj.data["webhooks"][0], &extra);
    let created = vwcs.create(&PostParams::default(), &obj).await.unwrap();
    assert_eq!(
        created.data["webhooks"][0]["matchPolicy"], "Equivalent",
        "defaults are filled in"
    );
}

#[tokio::test]
async fn admission_webhook_allows_denies_and_warns() {
    let hook = Webhook::start(&["127.0.0.1"], |req| {
        let data = &req["object"]["data"];
        if data["verdict"] == "deny" {
            json!({"allowed": false, "status": {"code": 403, "reason": "Forbidden", "message": "instanceName \"x\" is taken by team-a/other"}})
        } else {
            json!({"allowed": true, "warnings": ["url uses http://"]})
        }
    })
    .await;
    let (_emu, client) = start().await;
    install_webhook(
        &client,
        json!({"url": format!("https://{}/validate", hook.addr), "caBundle": b64(&hook.ca_pem)}),
        "Fail",
    )
    .await;

    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    // Allowed, with the webhook's warning relayed as a Warning header.
    let body = serde_json::to_vec(&cm("ok", &[], &[("verdict", "allow")])).unwrap();
    let (code, warnings, _) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        body,
    )
    .await;
    assert_eq!(code, 201);
    assert_eq!(warnings, ["299 - \"url uses http://\""]);
    let review = &hook.reviews()[0];
    assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(review["request"]["operation"], "CREATE");
    assert_eq!(
        review["request"]["resource"],
        json!({"group": "", "version": "v1", "resource": "configmaps"})
    );
    assert_eq!(review["request"]["namespace"], "default");
    assert_eq!(review["request"]["dryRun"], false);
    // The review deserialises as kube's admission types (what the operator's webhook uses).
    let parsed: kube::core::admission::AdmissionReview<DynamicObject> = serde_json::from_value(review.clone()).unwrap();
    let parsed: kube::core::admission::AdmissionRequest<DynamicObject> = parsed.try_into().unwrap();
    assert_eq!(parsed.name, "ok");

    // Denied: the apiserver's message format, the webhook's code.
    let e = api_err(
        cms.create(&PostParams::default(), &cm("no", &[], &[("verdict", "deny")]))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 403);
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
    assert_eq!(e.code, 403);
    let update = hook
        .reviews()
        .into_iter()
        .find(|r| r["request"]["operation"] == "UPDATE")
        .unwrap();
    assert_eq!(update["request"]["oldObject"]["data"]["verdict"], "allow");

    // Dry run: reviewed with dryRun=true, nothing stored.
    let dry = cms
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &cm("dry", &[], &[("verdict", "allow")]),
        )
        .await
        .unwrap();
    assert_eq!(dry.name_any(), "dry");
    assert_eq!(hook.reviews().last().unwrap()["request"]["dryRun"], true);
    assert_eq!(api_err(cms.get("dry").await.unwrap_err()).code, 404);
    let e = api_err(
        cms.create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &cm("dry", &[], &[("verdict", "deny")]),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 403);

    // Other resources are not sent to this webhook.
    let secrets: Api<Secret> = Api::default_namespaced(client.clone());
    let before = hook.reviews().len();
    secrets
        .create(
            &PostParams::default(),
            &Secret {
                metadata: ObjectMeta {
                    name: Some("s".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(hook.reviews().len(), before);
}

#[tokio::test]
async fn admission_webhook_by_service_reference() {
    let hook = Webhook::start(
        &["gitprovider-operator.operators.svc"],
        |_| json!({"allowed": false, "status": {"message": "nope"}}),
    )
    .await;
    let mut opts = EmulatorOptions::default();
    opts.service_endpoints
        .insert(("operators".into(), "gitprovider-operator".into()), hook.addr);
    let (_emu, client) = start_with(opts).await;
    install_webhook(
        &client,
        json!({"service": {"namespace": "operators", "name": "gitprovider-operator", "path": "/validate"}, "caBundle": b64(&hook.ca_pem)}),
        "Fail",
    )
    .await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let e = api_err(
        cms.create(&PostParams::default(), &cm("x", &[], &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 400, "a denial without a code is a 400");
    assert_eq!(
        e.message,
        "admission webhook \"validate.gitprovider.dev\" denied the request: nope"
    );
}

#[tokio::test]
async fn admission_failure_policy() {
    // Nothing listens on this port.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let ca = TestCa::new("unused").unwrap();
    let (_emu, client) = start().await;
    install_webhook(
        &client,
        json!({"url": format!("https://{closed}/validate"), "caBundle": b64(ca.cert_pem())}),
        "Fail",
    )
    .await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let e = api_err(
        cms.create(&PostParams::default(), &cm("x", &[], &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.reason.as_str()), (500, "InternalError"));
    assert!(
        e.message.starts_with(
            "Internal error occurred: failed calling webhook \"validate.gitprovider.dev\": failed to call webhook: Post"
        ),
        "{}",
        e.message
    );

    // With Ignore, the same failure lets the request through.
    let vwcs: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("admissionregistration.k8s.io", "v1", "ValidatingWebhookConfiguration"),
            "validatingwebhookconfigurations",
        ),
    );
    vwcs.patch(
        "gitprovider-operator",
        &PatchParams::default(),
        &Patch::Json::<()>(
            serde_json::from_value(json!([{"op": "replace", "path": "/webhooks/0/failurePolicy", "value": "Ignore"}]))
                .unwrap(),
        ),
    )
    .await
    .unwrap();
    cms.create(&PostParams::default(), &cm("x", &[], &[])).await.unwrap();

    // A webhook whose certificate is not signed by caBundle is a call failure too.
    let hook = Webhook::start(&["127.0.0.1"], |_| json!({"allowed": true})).await;
    vwcs.patch(
        "gitprovider-operator",
        &PatchParams::default(),
        &Patch::Merge(json!({"webhooks": [{
            "name": "validate.gitprovider.dev",
            "clientConfig": {"url": format!("https://{}/validate", hook.addr), "caBundle": b64(ca.cert_pem())},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["configmaps"]}],
            "failurePolicy": "Fail", "sideEffects": "None", "admissionReviewVersions": ["v1"]}]})),
    )
    .await
    .unwrap();
    let e = api_err(
        cms.create(&PostParams::default(), &cm("y", &[], &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 500);
    assert!(hook.reviews().is_empty());
}

// ------------------------------------------------------------------ apply, manifests, negotiation

#[tokio::test]
async fn server_side_apply_creates_then_merges() {
    let (_emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let pp = PatchParams::apply("tester");
    let first = cms
        .patch(
            "ssa",
            &pp,
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"a": "1"}}),
            ),
        )
        .await
        .unwrap();
    assert!(first.metadata.uid.is_some());
    let second = cms
        .patch(
            "ssa",
            &pp,
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ssa"}, "data": {"b": "2"}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        second.data.unwrap(),
        BTreeMap::from([("a".into(), "1".into()), ("b".into(), "2".into())])
    );
    let e = api_err(
        cms.patch(
            "ssa",
            &pp,
            &Patch::Apply(json!({"metadata": {"name": "ssa"}, "data": {}})),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(e.code, 400, "apply configurations need apiVersion and kind");
}

#[tokio::test]
async fn apply_yaml_file_handles_multi_document_manifests() {
    let (emu, client) = start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("all.yaml");
    let crd = std::fs::read_to_string("crds/gitproviderconnections.yaml").unwrap();
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-a\n---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: pat\n  namespace: team-a\nstringData:\n  token: abc\n---\n{crd}\n---\napiVersion: gitprovider.dev/v1alpha1\nkind: GitProviderConnection\nmetadata:\n  name: dev\n  namespace: team-a\nspec:\n  provider: GitHub\n  instanceName: dev\n  url: https://github.com\n  tokenSecretRef: {{name: pat}}\n"
        ),
    )
    .unwrap();
    let objs = emu.apply_yaml_file(&path).await.unwrap();
    assert_eq!(objs.len(), 4);
    assert_eq!(
        gpc_api(&client, "team-a").get("dev").await.unwrap().data["spec"]["provider"],
        "GitHub"
    );
    let secret: Api<Secret> = Api::namespaced(client.clone(), "team-a");
    assert_eq!(secret.get("pat").await.unwrap().data.unwrap()["token"].0, b"abc");
    // Applying again is an update, not a conflict.
    emu.apply_yaml_file(&path).await.unwrap();

    std::fs::write(&path, "apiVersion: example.com/v1\nkind: Nope\nmetadata: {name: x}\n").unwrap();
    let err = emu.apply_yaml_file(&path).await.unwrap_err();
    assert!(
        err.to_string().contains("no resource serves example.com/v1 Nope"),
        "{err}"
    );
}

#[tokio::test]
async fn content_negotiation_and_decoding_errors() {
    let (_emu, client) = start().await;
    let get = |accept: &'static str| {
        let client = client.clone();
        async move {
            let req = axum::http::Request::get("/api/v1/namespaces/default/configmaps")
                .header("Accept", accept)
                .body(kube::client::Body::empty())
                .unwrap();
            client.send(req).await.unwrap().status().as_u16()
        }
    };
    // kubectl get asks for a Table but takes JSON.
    assert_eq!(get("application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json").await, 200);
    assert_eq!(get("application/vnd.kubernetes.protobuf").await, 406);

    let bad = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "b"}, "data": {"k": "not base64!"}});
    let (code, _, body) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/secrets",
        "application/json",
        serde_json::to_vec(&bad).unwrap(),
    )
    .await;
    assert_eq!((code, body["reason"].as_str()), (400, Some("BadRequest")));
    let (code, _, _) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/secrets",
        "application/json",
        b"{not json".to_vec(),
    )
    .await;
    assert_eq!(code, 400);
    let (code, _, body) = raw(
        &client,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "application/json",
        serde_json::to_vec(&json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}})).unwrap(),
    )
    .await;
    assert_eq!(code, 400, "{body}");
    // An unknown group/version is a plain 404 page, like the apiserver's mux.
    let (code, _, body) = raw(
        &client,
        "GET",
        "/apis/example.com/v1/widgets",
        "application/json",
        vec![],
    )
    .await;
    assert_eq!((code, body), (404, Value::Null));
}

#[tokio::test]
async fn namespace_existence_can_be_enforced() {
    let (_emu, client) = start_with(EmulatorOptions {
        enforce_namespace_existence: true,
        ..Default::default()
    })
    .await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "missing");
    let e = api_err(
        cms.create(&PostParams::default(), &cm("x", &[], &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!((e.code, e.message.as_str()), (404, "namespaces \"missing\" not found"));
    let defaults: Api<ConfigMap> = Api::namespaced(client.clone(), "kube-system");
    defaults
        .create(&PostParams::default(), &cm("x", &[], &[]))
        .await
        .unwrap();
}

#[tokio::test]
async fn malformed_requests_get_status_answers() {
    let (emu, client) = start().await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    for sel in [
        ")x(",
        "a in ()",
        "(",
        "a notin",
        "!",
        "a=b=c",
        "a in (b,c",
        "=x",
        "a,,b",
        "ä=ö",
        "a>b",
        "x in (a) y",
    ] {
        match cms.list(&ListParams::default().labels(sel)).await {
            Ok(_) => {}
            Err(e) => assert_eq!(api_err(e).code, 400, "label selector {sel:?}"),
        }
    }
    for fs in ["metadata.name", "=", "metadata.name!==x", "spec=1"] {
        match cms.list(&ListParams::default().fields(fs)).await {
            Ok(_) => {}
            Err(e) => assert_eq!(api_err(e).code, 400, "field selector {fs:?}"),
        }
    }
    for (method, path, ct, body) in [
        (
            "PATCH",
            "/api/v1/namespaces/default/configmaps/x",
            "application/merge-patch+json",
            b"[]".to_vec(),
        ),
        (
            "PATCH",
            "/api/v1/namespaces/default/configmaps/x",
            "text/plain",
            b"{}".to_vec(),
        ),
        (
            "PUT",
            "/api/v1/namespaces/default/configmaps/x",
            "application/json",
            b"\"str\"".to_vec(),
        ),
        ("POST", "/api/v1/configmaps", "application/json", b"{}".to_vec()),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps?limit=minus",
            "application/json",
            vec![],
        ),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=abc",
            "application/json",
            vec![],
        ),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps?resourceVersionMatch=Exact",
            "application/json",
            vec![],
        ),
        (
            "GET",
            "/api/v1/namespaces/default/configmaps/x/scale",
            "application/json",
            vec![],
        ),
        (
            "DELETE",
            "/api/v1/namespaces/default/configmaps/x",
            "application/json",
            b"{oops".to_vec(),
        ),
        (
            "POST",
            "/api/v1/namespaces/default/configmaps?dryRun=Some",
            "application/json",
            b"{}".to_vec(),
        ),
    ] {
        let (code, _, body) = raw(&client, method, path, ct, body).await;
        assert!((400..500).contains(&code), "{method} {path}: {code} {body}");
        assert_eq!(body["kind"], "Status", "{method} {path}: {body}");
    }
    // The server is still serving.
    assert!(cms.list(&ListParams::default()).await.is_ok());
    assert!(emu.requests().iter().all(|r| r.status < 500));
}

#[tokio::test]
async fn admission_webhook_timeouts_follow_failure_policy() {
    let hook = Webhook::start_slow(&["127.0.0.1"], Duration::from_secs(3), |_| json!({"allowed": true})).await;
    let (_emu, client) = start().await;
    let config = json!({"url": format!("https://{}/validate", hook.addr), "caBundle": b64(&hook.ca_pem)});
    install_webhook_with(&client, config, "Fail", json!({"timeoutSeconds": 1})).await;
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    let e = api_err(
        cms.create(&PostParams::default(), &cm("slow", &[], &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 500);
    assert!(e.message.ends_with("context deadline exceeded"), "{}", e.message);
    assert!(e.message.contains("?timeout=1s"), "{}", e.message);
}

#[tokio::test]
async fn admission_webhook_namespace_selector() {
    let hook = Webhook::start(&["127.0.0.1"], |_| json!({"allowed": false})).await;
    let (_emu, client) = start().await;
    let config = json!({"url": format!("https://{}/validate", hook.addr), "caBundle": b64(&hook.ca_pem)});
    let selector =
        json!({"namespaceSelector": {"matchExpressions": [{"key": "validate", "operator": "In", "values": ["yes"]}]}});
    install_webhook_with(&client, config, "Fail", selector).await;

    // `default` is not selected: no review.
    let cms: Api<ConfigMap> = Api::default_namespaced(client.clone());
    cms.create(&PostParams::default(), &cm("free", &[], &[])).await.unwrap();
    assert!(hook.reviews().is_empty());

    let nss: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace =
        serde_json::from_value(json!({"metadata": {"name": "guarded", "labels": {"validate": "yes"}}})).unwrap();
    nss.create(&PostParams::default(), &ns).await.unwrap();
    let guarded: Api<ConfigMap> = Api::namespaced(client.clone(), "guarded");
    let e = api_err(
        guarded
            .create(&PostParams::default(), &cm("x", &[], &[]))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code, 400);
    assert_eq!(
        e.message,
        "admission webhook \"validate.gitprovider.dev\" denied the request without explanation"
    );
    assert_eq!(hook.reviews().len(), 1);
}
