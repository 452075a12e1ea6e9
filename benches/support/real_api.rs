//! `--api real`: the scale benchmark on a real control plane, kube-apiserver and etcd started by
//! `scripts/control-plane up` (one per scenario run, like the emulator's fresh cluster), with the
//! project's CRD and the chart's ServiceAccount and RBAC applied. The operator runs as that
//! ServiceAccount, so API Priority and Fairness treats it as a workload (the benchmark's own
//! admin client, `system:masters`, is exempt).
//!
//! What the emulator's request record gives, kube-apiserver's audit log gives here, read at level
//! Metadata (`up --audit metadata`: no request bodies, so the seeding and the 50 KiB Secrets of
//! the memory phase cost the server no body writes): every request the operator sent, with the
//! times the server received it and finished its response (`requestReceivedTimestamp`,
//! `stageTimestamp`). A metadata watch in this process ([`WatchClock`]) sees the same writes as
//! any client of the server would, for comparison.

// Shared by the scale and peer benchmarks; neither uses all of it.
#![allow(dead_code)]

use crate::support::control_plane::{self, ControlPlane, ROOT, SYSTEM_NAMESPACE};
use futures::StreamExt;
use gitprovider_operator::api::GitProviderConnection;
use kube::Api;
use kube::api::{ListParams, PartialObjectMeta, PostParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, watcher};
use serde::Deserialize;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// One request the operator sent, as the API server's record has it (the emulator's record is
/// read into the same shape).
#[derive(Clone, Debug)]
pub struct ApiCall {
    /// When the server had answered (the emulator records when the request arrived).
    pub at: SystemTime,
    /// How long the server took from receiving the request to finishing the response (real only).
    pub latency: Option<Duration>,
    pub verb: String,
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub code: u16,
    /// Time queued by API Priority and Fairness, when the server notes it (real only).
    pub apf_wait: Option<Duration>,
}

impl ApiCall {
    pub fn is_write(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        )
    }

    pub fn is_status_write(&self) -> bool {
        self.is_write() && self.subresource.as_deref() == Some("status")
    }

    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.code)
    }

    /// A write of an Event (`events` of core/v1 or events.k8s.io).
    pub fn is_event_write(&self) -> bool {
        self.is_write() && self.resource == "events"
    }
}

/// CPU time and peak RSS of kube-apiserver and etcd (from /proc).
#[derive(Clone, Copy, Debug, Default)]
pub struct Usage {
    pub apiserver_cpu: Duration,
    pub etcd_cpu: Duration,
    /// VmHWM: the peak since the process started (seeding included).
    pub apiserver_peak_kib: u64,
    pub etcd_peak_kib: u64,
}

/// A control plane of the benchmark's own, stopped (`scripts/control-plane down`) when dropped.
pub struct RealApi {
    /// Its folder; stopped when dropped.
    down: Down,
    client: kube::Client,
    operator_kubeconfig: PathBuf,
    audit: AuditTail,
    apiserver_pid: u32,
    etcd_pid: u32,
}

impl RealApi {
    /// Starts kube-apiserver + etcd (about 4 s), applies the CRD, the chart's ServiceAccount and
    /// RBAC, and creates `namespaces`.
    pub async fn start(namespaces: &[String]) -> Result<RealApi, String> {
        let parent = Path::new(ROOT).join("target/control-planes");
        std::fs::create_dir_all(&parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        let dir = parent.join(format!("scale-{}-{}", std::process::id(), fastrand::u32(..)));
        let dir_arg = dir.display().to_string();
        // SCALE_AUDIT_LEVEL=request: the tests' audit level, with request bodies (to compare).
        let level = std::env::var("SCALE_AUDIT_LEVEL").unwrap_or_else(|_| "metadata".to_owned());
        if level != "metadata" && level != "request" {
            return Err(format!(
                "SCALE_AUDIT_LEVEL={level}: the benchmark reads the audit log (metadata or request)"
            ));
        }
        tokio::task::block_in_place(|| control_plane::script(&["up", "--dir", &dir_arg, "--audit", &level]))?;
        // Stopped when this is dropped, whatever fails below (open_existing leaves it running).
        let down = Down(dir.clone());
        let plane = ControlPlane::open_existing(&dir);
        let pid = |name: &str| -> Result<u32, String> {
            let path = dir.join(name);
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            text.trim()
                .parse()
                .map_err(|_| format!("{}: {text:?} is no pid", path.display()))
        };
        let (apiserver_pid, etcd_pid) = (pid("kube-apiserver.pid")?, pid("etcd.pid")?);
        let operator_kubeconfig = tokio::task::block_in_place(|| {
            prepare(&plane);
            plane.operator_kubeconfig()
        });
        let audit = AuditTail::new(plane.audit_log_path(), &plane.operator_user());
        let client = plane.client().await;
        let real = RealApi {
            down,
            client,
            operator_kubeconfig,
            audit,
            apiserver_pid,
            etcd_pid,
        };
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(real.client.clone());
        let created = futures::stream::iter(namespaces.iter().map(|name| {
            let namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": name}}));
            let api = api.clone();
            async move {
                let namespace = namespace.map_err(|e| e.to_string())?;
                api.create(&PostParams::default(), &namespace)
                    .await
                    .map(|_| ())
                    .map_err(|e| format!("namespace {name}: {e}"))
            }
        }))
        .buffer_unordered(16)
        .collect::<Vec<Result<(), String>>>()
        .await;
        created.into_iter().collect::<Result<Vec<()>, String>>()?;
        Ok(real)
    }

    /// The control plane, for kubectl and kubeconfigs (not stopped when dropped: this is).
    pub fn plane(&self) -> ControlPlane {
        ControlPlane::open_existing(&self.down.0)
    }

    /// A record of the requests of another user (a peer operator's ServiceAccount), read from
    /// the start of the audit log.
    pub fn audit_of(&self, user: &str) -> AuditTail {
        AuditTail::new(self.plane().audit_log_path(), user)
    }

    /// An admin client (`system:masters`: exempt from priority and fairness).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The operator's kubeconfig: the chart's ServiceAccount (a TokenRequest token).
    pub fn operator_kubeconfig(&self) -> &Path {
        &self.operator_kubeconfig
    }

    /// How many of the operator's requests from index `from` on satisfy `pred`, and how many
    /// there are.
    pub fn count_from(&self, from: usize, pred: impl Fn(&ApiCall) -> bool) -> (usize, usize) {
        self.audit.count_from(from, pred)
    }

    /// The operator's requests from index `from` on.
    pub fn calls_from(&self, from: usize) -> Vec<ApiCall> {
        self.audit.calls_from(from)
    }

    /// Connections whose Ready condition is True, listed 500 at a time.
    pub async fn ready_count(&self) -> usize {
        let api: Api<GitProviderConnection> = Api::all(self.client.clone());
        let mut params = ListParams::default().limit(500);
        let mut ready = 0;
        loop {
            let page = match api.list(&params).await {
                Ok(page) => page,
                Err(error) => {
                    eprintln!("cannot list connections: {error}");
                    return ready;
                }
            };
            ready += page
                .items
                .iter()
                .filter(|c| {
                    c.status
                        .as_ref()
                        .is_some_and(|s| s.conditions.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                })
                .count();
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => return ready,
            }
        }
    }

    /// CPU time and peak RSS of kube-apiserver and etcd so far.
    pub fn usage(&self) -> Usage {
        let pid = |p: u32| p.to_string();
        Usage {
            apiserver_cpu: crate::process::cpu_of(&pid(self.apiserver_pid)),
            etcd_cpu: crate::process::cpu_of(&pid(self.etcd_pid)),
            apiserver_peak_kib: crate::process::proc_kib(self.apiserver_pid, "VmHWM"),
            etcd_peak_kib: crate::process::proc_kib(self.etcd_pid, "VmHWM"),
        }
    }

    /// A metadata watch on every connection, listed before this returns.
    pub async fn watch_clock(&self) -> WatchClock {
        WatchClock::start(self.client.clone(), Duration::from_secs(120)).await
    }
}

/// `scripts/control-plane down --dir DIR` when dropped.
struct Down(PathBuf);

impl Drop for Down {
    fn drop(&mut self) {
        if let Err(e) = control_plane::script(&["down", "--dir", &self.0.display().to_string()]) {
            eprintln!("{e}");
        }
    }
}

/// What `ControlPlane::private` applies: the namespace of the chart, the CRD (Established), the
/// ServiceAccount and RBAC.
fn prepare(plane: &ControlPlane) {
    plane.kubectl_ok(&["create", "namespace", SYSTEM_NAMESPACE]);
    for file in [
        "crds/gitproviderconnections.yaml",
        "deploy/serviceaccount.yaml",
        "deploy/rbac.yaml",
    ] {
        let path = Path::new(ROOT).join(file).display().to_string();
        plane.kubectl_ok(&["apply", "--server-side", "--field-manager", "scale-bench", "-f", &path]);
    }
    plane.kubectl_ok(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/gitproviderconnections.gitprovider.dev",
    ]);
}

// ---- the audit log ---------------------------------------------------------------------

/// The audit log as a growing record of one user's requests: reads what was appended since the
/// last look (and the end of the rotated file when the log was rotated meanwhile); other users'
/// lines are skipped unparsed.
pub struct AuditTail {
    path: PathBuf,
    /// `"username":"USER"`
    needle: String,
    state: Mutex<TailState>,
}

#[derive(Default)]
struct TailState {
    offset: u64,
    inode: u64,
    calls: Vec<ApiCall>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuditEvent {
    stage: String,
    #[serde(default)]
    verb: String,
    #[serde(default)]
    object_ref: Option<ObjectRef>,
    #[serde(default)]
    response_status: Option<ResponseStatus>,
    #[serde(default)]
    request_received_timestamp: Option<jiff::Timestamp>,
    #[serde(default)]
    stage_timestamp: Option<jiff::Timestamp>,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

#[derive(Deserialize)]
struct ObjectRef {
    #[serde(default)]
    resource: String,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

#[derive(Deserialize)]
struct ResponseStatus {
    #[serde(default)]
    code: u16,
}

impl AuditTail {
    fn new(path: PathBuf, user: &str) -> AuditTail {
        AuditTail {
            path,
            needle: format!("\"username\":\"{user}\""),
            state: Mutex::new(TailState::default()),
        }
    }

    /// How many of the user's requests from index `from` on satisfy `pred`, and how many there
    /// are.
    pub fn count_from(&self, from: usize, pred: impl Fn(&ApiCall) -> bool) -> (usize, usize) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.read_new(&mut state);
        let matching = state
            .calls
            .get(from..)
            .map_or(0, |new| new.iter().filter(|c| pred(c)).count());
        (matching, state.calls.len())
    }

    /// The user's requests from index `from` on.
    pub fn calls_from(&self, from: usize) -> Vec<ApiCall> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.read_new(&mut state);
        state.calls.get(from..).unwrap_or_default().to_vec()
    }

    fn read_new(&self, state: &mut TailState) {
        let Ok(metadata) = std::fs::metadata(&self.path) else {
            return;
        };
        if state.inode != 0 && metadata.ino() != state.inode {
            // Rotated (--audit-log-maxsize): the rest of the old file is the newest backup.
            if let Some(backup) = newest_backup(&self.path) {
                self.read_file(&backup, state.offset, &mut state.calls);
            }
            state.offset = 0;
        }
        state.inode = metadata.ino();
        state.offset = self.read_file(&self.path, state.offset, &mut state.calls);
    }

    /// Reads whole lines of `path` from byte `from`; returns the offset after the last one.
    fn read_file(&self, path: &Path, from: u64, calls: &mut Vec<ApiCall>) -> u64 {
        let Ok(file) = std::fs::File::open(path) else {
            return from;
        };
        let mut reader = BufReader::new(file);
        if reader.seek(SeekFrom::Start(from)).is_err() {
            return from;
        }
        let mut offset = from;
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return offset,
                // a line still being written: read it whole next time
                Ok(_) if !line.ends_with('\n') => return offset,
                Ok(n) => offset += n as u64,
            }
            if !line.contains(&self.needle) {
                continue;
            }
            if let Ok(event) = serde_json::from_str::<AuditEvent>(&line)
                && let Some(call) = call_of(event)
            {
                calls.push(call);
            }
        }
    }
}

/// `audit-TIMESTAMP.log` beside `audit.log` with the latest name (the timestamps sort).
fn newest_backup(path: &Path) -> Option<PathBuf> {
    let dir = path.parent()?;
    std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("audit-") && n.ends_with(".log"))
        })
        .max()
}

fn call_of(event: AuditEvent) -> Option<ApiCall> {
    // One event per request: ResponseComplete, or ResponseStarted for a watch (whose
    // ResponseComplete comes when it ends).
    let once = match event.stage.as_str() {
        "ResponseStarted" => event.verb == "watch",
        "ResponseComplete" => event.verb != "watch",
        _ => false,
    };
    if !once {
        return None;
    }
    let at: SystemTime = event.stage_timestamp?.into();
    let latency = event
        .request_received_timestamp
        .and_then(|r| at.duration_since(r.into()).ok());
    let apf_wait = event
        .annotations
        .get("apiserver.latency.k8s.io/apf-queue-wait")
        .and_then(|d| go_duration(d));
    let object = event.object_ref;
    Some(ApiCall {
        at,
        latency,
        verb: event.verb,
        resource: object.as_ref().map(|o| o.resource.clone()).unwrap_or_default(),
        subresource: object.as_ref().and_then(|o| o.subresource.clone()),
        namespace: object.as_ref().and_then(|o| o.namespace.clone()),
        name: object.and_then(|o| o.name),
        code: event.response_status.map_or(0, |s| s.code),
        apf_wait,
    })
}

/// A Go duration as Go prints one (`1.5ms`, `2m3.4s`, `812µs`).
fn go_duration(text: &str) -> Option<Duration> {
    let mut total = 0.0;
    let mut rest = text.trim();
    while !rest.is_empty() {
        let split = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let (number, tail) = rest.split_at(split);
        let number: f64 = number.parse().ok()?;
        let unit_len = tail.find(|c: char| c.is_ascii_digit()).unwrap_or(tail.len());
        let (unit, next) = tail.split_at(unit_len);
        total += number
            * match unit {
                "ns" => 1e-9,
                "us" | "µs" | "μs" => 1e-6,
                "ms" => 1e-3,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                _ => return None,
            };
        rest = next;
    }
    Some(Duration::from_secs_f64(total))
}

// ---- a watch in the benchmark process ----------------------------------------------------

/// A metadata watch on every connection: when each change (a new resourceVersion) reached this
/// process, counted per connection.
pub struct WatchClock {
    state: Arc<Mutex<ClockState>>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct ClockState {
    listed: bool,
    /// Changes seen after the first list, per connection.
    changes: HashMap<(String, String), usize>,
    total: usize,
    last: Option<SystemTime>,
    /// Lists after the first (the watch could not resume) and errors.
    relists: usize,
    errors: usize,
}

/// What the watch saw.
#[derive(Clone, Copy, Debug, Default)]
pub struct Seen {
    pub last: Option<SystemTime>,
    pub min_per_connection: usize,
    pub max_per_connection: usize,
    pub relists: usize,
    pub errors: usize,
}

impl WatchClock {
    async fn start(client: kube::Client, within: Duration) -> WatchClock {
        let api: Api<PartialObjectMeta<GitProviderConnection>> = Api::all(client);
        let state = Arc::new(Mutex::new(ClockState::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            let mut events = watcher(api, watcher::Config::default()).default_backoff().boxed();
            while let Some(event) = events.next().await {
                let now = SystemTime::now();
                let mut s = shared.lock().unwrap_or_else(|p| p.into_inner());
                match event {
                    Ok(watcher::Event::InitDone) => s.listed = true,
                    Ok(watcher::Event::Init) if s.listed => s.relists += 1,
                    Ok(watcher::Event::Apply(object)) if s.listed => {
                        let key = (
                            object.metadata.namespace.unwrap_or_default(),
                            object.metadata.name.unwrap_or_default(),
                        );
                        *s.changes.entry(key).or_default() += 1;
                        s.total += 1;
                        s.last = Some(now);
                    }
                    Ok(_) => {}
                    Err(_) => s.errors += 1,
                }
            }
        });
        let clock = WatchClock { state, task };
        let deadline = Instant::now() + within;
        while !clock.lock().listed {
            if Instant::now() > deadline {
                eprintln!("the benchmark's watch on connections has not listed after {within:?}");
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        clock
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ClockState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits until the watch has seen `target` changes; false on time-out.
    pub async fn wait_changes(&self, target: usize, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while self.lock().total < target {
            if Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// What the watch saw so far, over `n` connections.
    pub fn seen(&self, n: usize) -> Seen {
        let s = self.lock();
        Seen {
            last: s.last,
            min_per_connection: if s.changes.len() < n {
                0
            } else {
                s.changes.values().copied().min().unwrap_or(0)
            },
            max_per_connection: s.changes.values().copied().max().unwrap_or(0),
            relists: s.relists,
            errors: s.errors,
        }
    }
}

impl Drop for WatchClock {
    fn drop(&mut self) {
        self.task.abort();
    }
}
