//! A Kubernetes API server emulator, kept for what a real kube-apiserver cannot give the tests.
//!
//! Almost every test runs against a real kube-apiserver and etcd
//! (`tests/support/control_plane.rs`). The emulator remains for two users:
//!
//! - The `emulator_` tests of `tests/e2e.rs`, for faults a real server cannot produce on
//!   demand: an error on chosen requests ([`Faults::fail_next_matching`]: the first list of
//!   connections fails), every open watch ended at once ([`Faults::drop_all_watches`]) with
//!   the resumed watches told their resourceVersion is gone ([`Faults::gone_on_next_watches`]),
//!   and webhooks whose `clientConfig.service` is a port on 127.0.0.1
//!   ([`EmulatorOptions::service_endpoints`]; a real server needs a cluster network for that).
//! - The scale benchmark (`benches/scale.rs`), for speed: thousands of connections and Secrets
//!   in the benchmark's own process, and a record of every request (target, status, time;
//!   bodies optional) it counts status writes from as they happen ([`Emulator::count_since`]).
//!
//! It serves, over HTTPS with a throw-away CA, what the operator binary and kube-rs send there:
//! get, list (in pages), watch (resumable, with bookmarks and 410s), create, update (with
//! optimistic concurrency) and JSON merge patch, of Secrets, ConfigMaps, `events.k8s.io`
//! Events, Leases, CRDs, ValidatingWebhookConfigurations and the custom resources of CRDs (with
//! their status subresource and `metadata.generation`), in full or as `PartialObjectMetadata`,
//! errors as `Status` objects, and validating admission webhooks called over real HTTPS.
//! `tests/emulator.rs` tests what its users rely on.
//!
//! Module map: `server` (TLS, routing, injected failures, the request record) → `handlers`
//! (verbs) → `store` (objects, resourceVersions, history, watchers), with `watch` (event
//! streams), `admission` (webhooks), `registry` (resource types), `http` (paths, queries,
//! responses), `faults`, `error`, `kubeconfig`, `tls`, `util`. The record's type is
//! `tests/support/record.rs`, shared with the audit log of the real server.
//!
//! # Where it differs from kube-apiserver
//!
//! - Resources: only the built-in types above, in one version each (`v1`); a CRD's resource in
//!   its storage version only (no conversion). Anything else is a 404, and so are discovery,
//!   `/version`, health endpoints and OpenAPI: clients must know what they address, as kube's
//!   typed APIs do. No Namespace or Service objects: namespaced objects are created in any
//!   namespace.
//! - Verbs: nothing is ever deleted (DELETE and deletecollection are 405), so there are no
//!   finalizers, no garbage collection and no namespace termination. The only patch type is
//!   the JSON merge patch (what the operator writes status with); server-side apply, JSON patch
//!   and strategic merge patch are 415, so [`Emulator::apply_yaml_file`] creates. No dry runs
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
//! - Admission: validating webhooks only (no mutating webhooks, no built-in admission plugins
//!   or policies). A webhook is called when its rules match: `namespaceSelector`,
//!   `objectSelector`, `matchConditions` and `matchPolicy` are not evaluated; matching webhooks
//!   are called concurrently; a missing `caBundle` fails the call (no system roots); webhooks'
//!   warnings are not relayed; `userInfo` is always `kubernetes-admin` (groups system:masters,
//!   system:authenticated).
//! - No authentication (the kubeconfig's user has no credentials), no RBAC, no priority and
//!   fairness: every request is served.

mod admission;
mod error;
mod faults;
mod handlers;
mod http;
mod kubeconfig;
use super::record;
mod registry;
mod server;
mod store;
pub mod tls;
mod util;
mod watch;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::watch as signal;

pub use error::EmulatorError;
pub use faults::Faults;
use record::RecordedRequest;

/// How to run an emulator.
#[derive(Clone, Debug)]
pub struct EmulatorOptions {
    /// Write events kept for watch resumption; a watch from an older resourceVersion gets 410
    /// Expired. Default 1000.
    pub watch_history: usize,
    /// `(namespace, service name)` → local address, for webhooks configured with
    /// `clientConfig.service` (the certificate must be valid for `<name>.<namespace>.svc`).
    pub service_endpoints: HashMap<(String, String), SocketAddr>,
    /// Keep request and response bodies in the request record. Default true; benchmarks that
    /// send 10,000s of requests turn it off so the record stays small (method, path, query,
    /// target, status and time are always kept, so counting writes still works).
    pub record_bodies: bool,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        Self {
            watch_history: 1000,
            service_endpoints: HashMap::new(),
            record_bodies: true,
        }
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
    /// [`Emulator::start`], with the project's GitProviderConnection CRD created.
    pub async fn start_with_project_crd(opts: EmulatorOptions) -> Emulator {
        let emulator = Emulator::start(opts).await.expect("emulator starts");
        emulator
            .apply_yaml_file(std::path::Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/crds/gitproviderconnections.yaml"
            )))
            .await
            .expect("the CRD is created");
        emulator
    }

    /// Starts serving HTTPS on 127.0.0.1 (a free port), with a fresh CA and a serving
    /// certificate for `127.0.0.1` and `localhost`, and writes a kubeconfig for it.
    pub async fn start(opts: EmulatorOptions) -> Result<Emulator, EmulatorError> {
        let ca = tls::TestCa::new("kube-apiserver-emulator-ca").map_err(EmulatorError::Tls)?;
        let serving = ca
            .issue(&["127.0.0.1", "localhost", "kubernetes.default.svc"])
            .map_err(EmulatorError::Tls)?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;

        let store = store::Store::new(registry::Registry::with_builtins(), opts.watch_history);
        let ctx = Arc::new(server::Ctx {
            faults: Faults::new(store.clone()),
            store,
            recorder: record::Recorder::new(opts.record_bodies),
            admission: admission::AdmissionConfig {
                service_endpoints: opts.service_endpoints.clone(),
            },
        });

        let dir = tempfile::Builder::new().prefix("kube-emulator-").tempdir()?;
        let kubeconfig_path = dir.path().join("kubeconfig");
        let url = format!("https://{addr}");
        kubeconfig::write(&kubeconfig_path, &kubeconfig::render(&url, ca.cert_pem(), "default"))?;

        let (shutdown, rx) = signal::channel(false);
        let tls = serving.server_config().map_err(EmulatorError::Tls)?;
        tokio::spawn(server::serve(listener, tls, ctx.clone(), rx));
        Ok(Emulator {
            kubeconfig_path,
            _dir: dir,
            ctx,
            shutdown,
        })
    }

    /// A kubeconfig (CA data, server URL, a user without credentials) in a temporary directory that
    /// lives as long as the emulator.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// A kube client configured from the kubeconfig, like the operator would build one.
    pub async fn try_client(&self) -> Result<kube::Client, EmulatorError> {
        let kc = kube::config::Kubeconfig::read_from(&self.kubeconfig_path)
            .map_err(|e| EmulatorError::Kubeconfig(e.to_string()))?;
        let config = kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| EmulatorError::Kubeconfig(e.to_string()))?;
        Ok(kube::Client::try_from(config)?)
    }

    /// [`try_client`](Self::try_client), for tests: a failure here is a broken emulator.
    pub async fn client(&self) -> kube::Client {
        match self.try_client().await {
            Ok(c) => c,
            Err(e) => panic!("emulator kube client: {e}"),
        }
    }

    /// Creates every object of a (multi-document) YAML file through the HTTPS API, like
    /// `kubectl create -f` (an object that exists already is a 409: the emulator has no
    /// server-side apply). Returns the objects as stored.
    pub async fn apply_yaml_file(&self, path: &Path) -> Result<Vec<Value>, EmulatorError> {
        let text = std::fs::read_to_string(path)?;
        let origin = path.display().to_string();
        let docs: Vec<Value> = serde_saphyr::from_multiple(&text).map_err(|e| EmulatorError::Yaml {
            path: origin.clone(),
            message: e.to_string(),
        })?;
        let client = self.try_client().await?;
        let mut out = Vec::new();
        for (index, doc) in docs.into_iter().enumerate().filter(|(_, d)| !d.is_null()) {
            let bad = |message: String| EmulatorError::Manifest {
                path: origin.clone(),
                index,
                message,
            };
            let api_version = doc.get("apiVersion").and_then(Value::as_str).unwrap_or("");
            let kind = doc.get("kind").and_then(Value::as_str).unwrap_or("");
            let name = util::meta_str(&doc, "name");
            let (base, plural, namespaced) = {
                let st = self.ctx.store.lock();
                let def = st
                    .registry
                    .find_kind(api_version, kind)
                    .ok_or_else(|| bad(format!("no resource serves {api_version} {kind}")))?;
                let prefix = if def.group.is_empty() {
                    "/api".to_owned()
                } else {
                    format!("/apis/{}", def.group)
                };
                (format!("{prefix}/{}", def.version), def.plural.clone(), def.namespaced)
            };
            if name.is_empty() {
                return Err(bad("metadata.name is required".into()));
            }
            let ns = util::meta_str(&doc, "namespace");
            let url = if namespaced {
                let ns = if ns.is_empty() { "default" } else { ns };
                format!("{base}/namespaces/{ns}/{plural}")
            } else {
                format!("{base}/{plural}")
            };
            let body = serde_json::to_vec(&doc).map_err(|e| bad(e.to_string()))?;
            let req = axum::http::Request::post(url)
                .header("Content-Type", "application/json")
                .body(body)
                .map_err(|e| bad(e.to_string()))?;
            out.push(client.request::<Value>(req).await?);
        }
        Ok(out)
    }

    /// Fault injection (a handle; cheap to clone).
    pub fn faults(&self) -> Faults {
        self.ctx.faults.clone()
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.ctx.recorder.all()
    }

    /// How many recorded requests satisfy `pred`.
    pub fn count(&self, pred: impl Fn(&RecordedRequest) -> bool) -> usize {
        self.ctx.recorder.count(pred)
    }

    /// How many recorded requests from index `from` on satisfy `pred`, and how many requests
    /// are recorded: [`count`](Self::count) as the record grows, each request looked at once.
    pub fn count_since(&self, from: usize, pred: impl Fn(&RecordedRequest) -> bool) -> (usize, usize) {
        self.ctx.recorder.count_since(from, pred)
    }

    /// Number of open watch streams (the operator's watches, once it is up).
    pub fn open_watches(&self) -> usize {
        self.ctx.store.lock().watcher_count()
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
