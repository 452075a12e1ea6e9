//! A Kubernetes API server emulator for tests.
//!
//! No kube-apiserver can run where these tests run, so this serves the subset of the
//! Kubernetes API the operator and its tests use, faithfully on the wire: HTTPS with a
//! generated CA, built-in resources and the custom resources CRDs define, every verb kube-rs and kubectl send (watch with bookmarks, streaming
//! lists and 410s included), `Status` errors, validating admission webhooks over real HTTPS,
//! plus fault injection and a record of every request.
//!
//! Module map: `server` (TLS, routing, record) → `handlers` (verbs) → `store` (objects,
//! resourceVersions, history, watchers), with `watch`, `admission`, `registry`,
//! `faults`, `record`, `tls`, `kubeconfig`.
//!
//! # Where it differs from kube-apiserver
//!
//! - The only patch type is the JSON merge patch (what the operator writes status with);
//!   server-side apply, JSON patch and strategic merge patch are 415. No dry runs
//!   (`dryRun` is ignored): every write is stored. Request bodies are JSON only.
//! - No validation and no defaulting: objects are stored as sent (with the metadata the server
//!   owns: uid, creationTimestamp, resourceVersion, generation). CRD schemas are not applied
//!   (no pruning, defaults, types, enums, CEL rules), `fieldValidation` is ignored, names and
//!   labels are not checked, Secret `stringData` is not merged into `data`, CRDs get no status.
//! - Only the built-in types the operator uses are served, each in one version: Secrets,
//!   ConfigMaps, `events.k8s.io/v1` Events (no core `v1` Events), Leases, CRDs and
//!   ValidatingWebhookConfigurations; a CRD's resource is served in its storage version only
//!   (no conversion). Anything else is a 404. List items carry `apiVersion` and `kind`.
//! - Nothing is ever deleted: DELETE and deletecollection are 405, so there are no
//!   finalizers, no garbage collection and no namespace termination.
//! - No Namespace or Service objects: namespaced objects are created in any namespace.
//! - No label or field selectors: a list or watch with one is a 400.
//! - A list shows the current state (`resourceVersion` and `resourceVersionMatch` are ignored).
//!   Paginated lists (`limit`, `continue`) are not one snapshot: each page shows the objects
//!   as they are when it is read, and every page carries the first page's resourceVersion, so
//!   a watch from it replays whatever changed meanwhile (which is what kube's watcher needs).
//!   No `remainingItemCount`; continue tokens never expire.
//! - Watches: from `""`/`"0"` (ADDED events for the current state first) or from a
//!   resourceVersion within the last `watch_history` writes (older: a 410 `ERROR` event); no
//!   streaming lists (`sendInitialEvents` is ignored).
//! - Every write is immediately visible (one process, one lock); watches never lag.
//!   Bookmarks come every `bookmark_interval` (default 1 s, not ~1 min) and before timeout.
//!   A watch from a future resourceVersion waits for it rather than failing after 3 s.
//! - Admission: validating webhooks only (no mutating webhooks, no built-in admission
//!   plugins, no RBAC: every request is allowed); a webhook is called when its rules match:
//!   `namespaceSelector`, `objectSelector`, `matchConditions` and `matchPolicy` are not
//!   evaluated; matching webhooks are called concurrently; a missing `caBundle` fails the
//!   call (no system roots).
//! - No authentication: the kubeconfig's user has no credentials and every request is served;
//!   `userInfo` is fixed (`EmulatorOptions::username`, groups system:masters and
//!   system:authenticated).
//! - Only resource paths are served: no discovery documents, `/version`, health endpoints or
//!   OpenAPI (404), so clients must know what they address, as kube's typed APIs do.
//! - Only JSON; no protobuf, no Table.

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
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch as signal;

// Re-exports for test files; not every test binary uses each of them.
#[allow(unused_imports)]
pub use error::{ApiError, EmulatorError};
#[allow(unused_imports)]
pub use faults::Faults;
#[allow(unused_imports)]
pub use record::{RecordedRequest, Target};

/// How to run an emulator.
#[derive(Clone, Debug)]
pub struct EmulatorOptions {
    /// Write events kept for watch resumption; a watch from an older resourceVersion gets 410
    /// Expired. Default 1000.
    pub watch_history: usize,
    /// `(namespace, service name)` → local address, for webhooks configured with
    /// `clientConfig.service` (the certificate must be valid for `<name>.<namespace>.svc`).
    pub service_endpoints: HashMap<(String, String), SocketAddr>,
    /// How often watches with `allowWatchBookmarks=true` get a BOOKMARK. Default 1 s (the real
    /// server: about a minute; shorter keeps tests quick).
    pub bookmark_interval: Duration,
    /// Watch length when the client sends no `timeoutSeconds`. Default 30 min.
    pub default_watch_timeout: Duration,
    /// `userInfo.username` sent to admission webhooks. Default `kubernetes-admin`.
    pub username: String,
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
            bookmark_interval: Duration::from_secs(1),
            default_watch_timeout: Duration::from_secs(1800),
            username: "kubernetes-admin".into(),
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
    /// Starts serving HTTPS on 127.0.0.1 (a free port), with a fresh CA and a serving
    /// certificate for `127.0.0.1` and `localhost`, and writes a kubeconfig for it.
    /// [`Emulator::start`], with the project's GitProviderConnection CRD applied.
    pub async fn start_with_project_crd(opts: EmulatorOptions) -> Emulator {
        let emulator = Emulator::start(opts).await.expect("emulator starts");
        emulator
            .apply_yaml_file(std::path::Path::new(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/crds/gitproviderconnections.yaml"
            )))
            .await
            .expect("the CRD applies");
        emulator
    }

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
                username: opts.username.clone(),
            },
            settings: server::Settings {
                bookmark_interval: opts.bookmark_interval,
                default_watch_timeout: opts.default_watch_timeout,
                max_body: 16 * 1024 * 1024,
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
        self.apply_yaml(&text, &path.display().to_string()).await
    }

    /// [`apply_yaml_file`](Self::apply_yaml_file) for YAML text; `origin` names it in errors.
    pub async fn apply_yaml(&self, text: &str, origin: &str) -> Result<Vec<Value>, EmulatorError> {
        let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| EmulatorError::Yaml {
            path: origin.to_owned(),
            message: e.to_string(),
        })?;
        let client = self.try_client().await?;
        let mut out = Vec::new();
        for (index, doc) in docs.into_iter().enumerate().filter(|(_, d)| !d.is_null()) {
            let bad = |message: String| EmulatorError::Manifest {
                path: origin.to_owned(),
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

    /// Fault injection.
    pub fn faults(&self) -> Faults {
        self.ctx.faults.clone()
    }

    /// Every request answered so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.ctx.recorder.all()
    }

    pub fn clear_requests(&self) {
        self.ctx.recorder.clear();
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

    /// Recorded requests that mention `needle` in their request or response body.
    pub fn requests_mentioning(&self, needle: &str) -> Vec<RecordedRequest> {
        self.requests().into_iter().filter(|r| r.mentions(needle)).collect()
    }

    /// Number of open watch streams.
    pub fn open_watches(&self) -> usize {
        self.ctx.store.lock().watcher_count()
    }

    /// The current (global) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.ctx.store.lock().current_rv()
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
