//! A Kubernetes API server emulator in the benchmark's own process, for what a real
//! kube-apiserver cannot give: the scale benchmark (`benches/scale.rs`, `--api emulator`, its
//! default) isolates the operator's cost from kube-apiserver's and etcd's. Thousands of
//! connections and Secrets live in memory, every write is visible at once, and a record of every
//! request (target, status, time; no bodies) lets it count status writes as they happen
//! ([`Emulator::count_since`]) and read objects directly ([`Emulator::object`]). Every test runs
//! against a real kube-apiserver and etcd (`tests/support/control_plane.rs`); `benches/scale.rs
//! --api real` runs the same scenarios on one.
//!
//! It serves, over HTTPS with a throw-away CA, what the operator binary (without leader
//! election, its webhook certificate from files) and kube-rs send there: get, list (in pages),
//! watch (resumable, with bookmarks and 410s), create and JSON merge patch (with optimistic
//! concurrency when the patch names a resourceVersion), of Secrets, ConfigMaps,
//! `events.k8s.io` Events, CRDs and the custom resources of CRDs (with their status subresource
//! and `metadata.generation`), in full or as `PartialObjectMetadata`, errors as `Status`
//! objects. `tests/emulator.rs` tests what the benchmark relies on.
//!
//! Module map: `server` (TLS, routing, the request record) → `handlers` (verbs) → `store`
//! (objects, resourceVersions, history, watchers), with `watch` (event streams), `registry`
//! (resource types), `http` (paths, queries, responses), `error`, `kubeconfig`, `util`. The
//! record's type is `tests/support/record.rs`, shared with the audit log of the real server;
//! the certificates come from `tests/support/pki.rs`.
//!
//! # Where it differs from kube-apiserver
//!
//! - Resources: only the built-in types above, in one version each (`v1`); a CRD's resource in
//!   its storage version only (no conversion). Anything else is a 404, and so are discovery,
//!   `/version`, health endpoints and OpenAPI: clients must know what they address, as kube's
//!   typed APIs do. No Namespace or Service objects: namespaced objects are created in any
//!   namespace.
//! - Verbs: nothing is ever replaced or deleted (PUT, DELETE and deletecollection are 405), so
//!   there are no finalizers, no garbage collection and no namespace termination. The only
//!   patch type is the JSON merge patch (what the operator writes status and Event series
//!   with); server-side apply, JSON patch and strategic merge patch are 415. No dry runs
//!   (`dryRun` is ignored). Request bodies are JSON only.
//! - No validation and no defaulting: objects are stored as sent, with the metadata the server
//!   owns (uid, creationTimestamp, resourceVersion; generation for custom resources only).
//!   CRD schemas are not applied (no pruning, defaults, types, enums, CEL rules),
//!   `fieldValidation` is ignored, names and labels are not checked, Secret `stringData` is not
//!   merged into `data`, CRDs get no status.
//! - No label or field selectors: a list or watch with one is a 400.
//! - A list shows the current state (`resourceVersion` and `resourceVersionMatch` are ignored).
//!   Paginated lists (`limit`, `continue`) are not one snapshot: each page shows the objects
//!   as they are when it is read, and every page carries the first page's resourceVersion, so
//!   a watch from it replays whatever changed meanwhile (which is what kube's watcher needs).
//!   No `remainingItemCount`; continue tokens never expire.
//! - Watches start from `""`/`"0"` (an ADDED event per object first) or from a resourceVersion
//!   within the last `watch_history` writes (older: a 410 `ERROR` event); a watch from a future
//!   resourceVersion waits for it rather than failing after 3 s. No streaming lists
//!   (`sendInitialEvents` is ignored). Bookmarks come every second (not about every minute) and
//!   before the timeout. Every write is visible at once (one process, one lock): watches never
//!   lag.
//! - Representations: JSON only. A request whose `Accept` asks for `PartialObjectMetadata`
//!   gets metadata, any other gets the full object (no Table, no protobuf, never a 406). List
//!   items carry `apiVersion` and `kind`, which the real server leaves out of lists of built-in
//!   types.
//! - No admission: no webhooks are called, no built-in admission plugins or policies.
//! - No authentication (the kubeconfig's user has no credentials), no RBAC, no priority and
//!   fairness: every request is served.

mod error;
mod handlers;
mod http;
mod kubeconfig;
use crate::support::{control_plane, pki, record};
mod registry;
mod server;
mod store;
mod util;
mod watch;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::PostParams;
use serde_json::Value;
use tokio::sync::watch as signal;

use record::RecordedRequest;

/// How to run an emulator.
#[derive(Clone, Debug)]
pub struct EmulatorOptions {
    /// Write events kept for watch resumption; a watch from an older resourceVersion gets 410
    /// Expired. Default 1000.
    pub watch_history: usize,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        Self { watch_history: 1000 }
    }
}

/// A running emulator. Dropping it stops the server and ends every connection.
pub struct Emulator {
    kubeconfig_path: PathBuf,
    _dir: tempfile::TempDir,
    ctx: Arc<server::Ctx>,
    shutdown: signal::Sender<bool>,
}

impl Emulator {
    /// [`Emulator::start`], with the project's GitProviderConnection CRD created (as the
    /// benchmark starts it).
    pub async fn start_with_project_crd(opts: EmulatorOptions) -> Emulator {
        use kube::CustomResourceExt as _;
        let emulator = Emulator::start(opts).await;
        // The CRD `crds/gitproviderconnections.yaml` holds (tests/crd.rs proves them one).
        let crd = gitprovider_operator::api::GitProviderConnection::crd();
        Api::<CustomResourceDefinition>::all(emulator.client().await)
            .create(&PostParams::default(), &crd)
            .await
            .unwrap_or_else(|e| panic!("the emulator did not create the CRD: {e}"));
        emulator
    }

    /// Starts serving HTTPS on 127.0.0.1 (a free port), with a fresh CA and a serving
    /// certificate for `127.0.0.1` and `localhost`, and writes a kubeconfig for it. Panics when
    /// it cannot (a broken test machine, not a finding).
    pub async fn start(opts: EmulatorOptions) -> Emulator {
        let broken = |what: &str, e: &dyn std::fmt::Display| -> ! { panic!("the emulator cannot start: {what}: {e}") };
        let ca = pki::TestCa::new("kube-apiserver-emulator-ca").unwrap_or_else(|e| broken("its CA", &e));
        let serving = ca
            .issue(&["127.0.0.1", "localhost"])
            .unwrap_or_else(|e| broken("its certificate", &e));
        let tls = serving
            .server_config()
            .unwrap_or_else(|e| broken("its TLS configuration", &e));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| broken("listening on 127.0.0.1", &e));
        let addr = listener.local_addr().unwrap_or_else(|e| broken("its address", &e));

        let store = store::Store::new(registry::Registry::with_builtins(), opts.watch_history);
        let ctx = Arc::new(server::Ctx {
            store,
            recorder: server::Recorder::default(),
        });

        let dir = tempfile::Builder::new()
            .prefix("kube-emulator-")
            .tempdir()
            .unwrap_or_else(|e| broken("a temporary folder", &e));
        let kubeconfig_path = dir.path().join("kubeconfig");
        let url = format!("https://{addr}");
        kubeconfig::write(&kubeconfig_path, &kubeconfig::render(&url, ca.cert_pem(), "default"))
            .unwrap_or_else(|e| broken("its kubeconfig", &e));

        let (shutdown, rx) = signal::channel(false);
        tokio::spawn(server::serve(listener, tls, ctx.clone(), rx));
        Emulator {
            kubeconfig_path,
            _dir: dir,
            ctx,
            shutdown,
        }
    }

    /// A kubeconfig (CA data, server URL, a user without credentials) in a temporary directory
    /// that lives as long as the emulator.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// A kube client configured from the kubeconfig, as the operator builds one.
    pub async fn client(&self) -> kube::Client {
        control_plane::client_from(&self.kubeconfig_path).await
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.ctx.recorder.all()
    }

    /// How many recorded requests from index `from` on satisfy `pred`, and how many requests
    /// are recorded: as the record grows, each request is looked at once.
    pub fn count_since(&self, from: usize, pred: impl Fn(&RecordedRequest) -> bool) -> (usize, usize) {
        self.ctx.recorder.count_since(from, pred)
    }

    /// Reads a stored object directly (not recorded): `group` `""` for core, `resource` the
    /// plural, `namespace` `""` for cluster-scoped.
    pub fn object(&self, group: &str, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        self.ctx
            .store
            .lock()
            .get(&registry::StorageKey::new(group, resource), namespace, name)
            .map(|o| (*o).clone())
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        self.ctx.store.lock().drop_watchers();
    }
}
