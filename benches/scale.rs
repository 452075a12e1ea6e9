//! The operator at scale: `cargo bench --bench scale -- [--sizes 1000,10000] [--runs 3] ...`
//! (see `BENCHMARKS.md` for the flags and the figures).
//!
//! Everything that concerns the operator process is measured on the real binary
//! (`target/release/gitprovider-operator`, built by `cargo bench`), started as a child process
//! whose KUBECONFIG points at the Kubernetes API emulator running in this process (`--api
//! emulator`, the default) or at a real kube-apiserver + etcd of `scripts/control-plane` (`--api
//! real`, `benches/support/real_api.rs`), with `GitHub` Enterprise Server stand-ins here that
//! answer `GET /api/v3/user` after a fixed delay (one request per verification). For each size N
//! (connections, in 100 namespaces, each with its own token Secret) and each run:
//!
//! 1. **Verification**: four scenarios, each on a fresh cluster: one instance with the
//!    per-host cap off at `--max-concurrent-verifications` 32 and 256, and 64 instances with
//!    the default `--max-in-flight-per-host 8` at 32 and 256. Time from `/readyz` 200 to the
//!    last status write (all Ready), against the ideal N × requests/verification × latency ÷
//!    concurrency; status writes per connection from the emulator's record (real: from the
//!    audit log, which also times the last status write).
//! 2. **Steady state** (64 instances, defaults): API requests and writes over a window after
//!    convergence at the default 1h interval; optionally (`--interval-window`) a run at the
//!    minimum interval of 1m to see each connection written once per interval and never between.
//! 3. **Admission**: on the same operator (its index holds the N connections), reviews over HTTPS
//!    keep-alive, half duplicates: sequential and 32 concurrent clients; the same against the
//!    floor (a minimal rustls server answering a fixed AdmissionReview, in its own process).
//! 4. **Memory**: peak RSS (VmHWM) of the operator after a restart with N connections and their
//!    Secrets, then after a restart with N unrelated Secrets of 50 KiB more; start-up to
//!    `/readyz` 200 for both.

// `common` (webhook helpers) and `support` both include the test PKI module.
#[allow(clippy::duplicate_mod)]
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/support/emulator/mod.rs"]
mod emulator;
#[path = "support/first_verification.rs"]
mod first_verification;
#[path = "support/floor.rs"]
mod floor;
#[path = "support/load.rs"]
mod load;
#[path = "support/process.rs"]
mod process;
#[path = "support/provider_mix.rs"]
mod provider_mix;
#[path = "support/real_api.rs"]
mod real_api;
#[path = "../tests/support/mod.rs"]
mod support;

use emulator::{Emulator, EmulatorOptions};
use futures::StreamExt;
use gitprovider_operator::api::GitProviderConnection;
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use load::{Shot, Stats};
use process::{cpu_of, proc_kib};
use real_api::{ApiCall, RealApi, Usage};
use serde_json::json;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};
use support::record::RecordedRequest;

const NAMESPACES: usize = 100;
const PROVIDER_DELAY: Duration = Duration::from_millis(50);
const TOKEN: &str = "ghp_benchmark0123456789";
const ADMISSION_SEQUENTIAL: usize = 2_000;
const ADMISSION_CONCURRENT: usize = 4_000;
const ADMISSION_PARALLELISM: usize = 32;

// ---- command line ---------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Options {
    /// The API server the operator talks to (`--api emulator|real`).
    api: ApiKind,
    sizes: Vec<usize>,
    runs: usize,
    /// Runs for particular sizes (`--runs-for 50000=1`), overriding `runs`.
    runs_for: HashMap<usize, usize>,
    /// Scenario indexes to run (all by default).
    scenarios: Vec<usize>,
    admission: bool,
    /// Admission rounds per run, alternating which server goes first (operator, floor).
    admission_rounds: usize,
    /// Also measure the webhook alone: the product's server and index holding the same N
    /// connections, in a process of its own without the controller (like the floor).
    webhook_alone: bool,
    memory: bool,
    /// Seconds of observation at the default interval after convergence (0: skip).
    steady_window: u64,
    /// Seconds of observation at verifyInterval 1m (0: skip); run at the smallest size only.
    interval_window: u64,
    blob_kib: usize,
    report: Option<PathBuf>,
    /// Only the provider mix (`--provider-mix`): every provider variant, at the defaults and
    /// with the per-host cap off.
    provider_mix: bool,
    /// Only the first-verification check (`--first-verification C`): at this concurrency.
    first_verification: Option<u16>,
}

fn usage() -> ! {
    eprintln!(
        "usage: cargo bench --bench scale -- [--api emulator|real] [--sizes 1000,10000,50000] [--runs 3]\n\
         \x20      [--runs-for 50000=1] [--scenarios 0,1,2,3]\n\
         \x20      [--no-admission] [--admission-rounds 2] [--webhook-alone] [--no-memory] [--steady-window SECS]\n\
         \x20      [--interval-window SECS] [--provider-mix] [--first-verification CONCURRENCY]\n\
         \x20      [--blob-kib 50] [--report DIR]"
    );
    std::process::exit(2)
}

fn parse_options(args: &[String]) -> Options {
    let mut options = Options {
        api: ApiKind::Emulator,
        sizes: vec![1_000, 10_000],
        runs: 3,
        runs_for: HashMap::new(),
        scenarios: (0..SCENARIOS.len()).collect(),
        admission: true,
        admission_rounds: 2,
        webhook_alone: false,
        memory: true,
        steady_window: 20,
        interval_window: 0,
        blob_kib: 50,
        report: None,
        provider_mix: false,
        first_verification: None,
    };
    let list = |v: &str| -> Vec<usize> {
        v.split(',')
            .map(|x| x.trim().replace('_', "").parse().unwrap_or_else(|_| usage()))
            .collect()
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().cloned().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--bench" => {}
            "--api" => {
                options.api = match value().as_str() {
                    "emulator" => ApiKind::Emulator,
                    "real" => ApiKind::Real,
                    _ => usage(),
                }
            }
            "--sizes" => options.sizes = list(&value()),
            "--runs" => options.runs = value().parse().unwrap_or_else(|_| usage()),
            "--runs-for" => {
                let v = value();
                let (size, runs) = v.split_once('=').unwrap_or_else(|| usage());
                options.runs_for.insert(
                    size.replace('_', "").parse().unwrap_or_else(|_| usage()),
                    runs.parse().unwrap_or_else(|_| usage()),
                );
            }
            "--scenarios" => options.scenarios = list(&value()),
            "--no-admission" => options.admission = false,
            "--webhook-alone" => options.webhook_alone = true,
            "--admission-rounds" => {
                options.admission_rounds = value().parse::<usize>().unwrap_or_else(|_| usage()).max(1);
            }
            "--no-memory" => options.memory = false,
            "--steady-window" => options.steady_window = value().parse().unwrap_or_else(|_| usage()),
            "--interval-window" => options.interval_window = value().parse().unwrap_or_else(|_| usage()),
            "--blob-kib" => options.blob_kib = value().parse().unwrap_or_else(|_| usage()),
            "--report" => options.report = Some(PathBuf::from(value())),
            "--provider-mix" => options.provider_mix = true,
            "--first-verification" => {
                options.first_verification = Some(value().parse().unwrap_or_else(|_| usage()));
            }
            _ => usage(),
        }
    }
    options
}

// ---- scenarios ------------------------------------------------------------------------

struct Scenario {
    label: &'static str,
    hosts: usize,
    concurrency: u16,
    /// `None`: the default (8).
    per_host: Option<usize>,
}

const SCENARIOS: [Scenario; 4] = [
    Scenario {
        label: "1 instance, c=32, per-host cap off",
        hosts: 1,
        concurrency: 32,
        per_host: Some(0),
    },
    Scenario {
        label: "1 instance, c=256, per-host cap off",
        hosts: 1,
        concurrency: 256,
        per_host: Some(0),
    },
    Scenario {
        label: "64 instances, c=32, per-host 8 (defaults)",
        hosts: 64,
        concurrency: 32,
        per_host: None,
    },
    Scenario {
        label: "64 instances, c=256, per-host 8",
        hosts: 64,
        concurrency: 256,
        per_host: None,
    },
];
/// The scenario with the default flags: steady state, admission and memory run on it.
const DEFAULTS: usize = 2;

// ---- fixed-latency provider -----------------------------------------------------------

/// GitHub Enterprise Server stand-ins over plain HTTP: every request waits `delay`, then
/// `GET .../user` answers a user with an e-mail and the `repo` scope (so verification is one
/// request). Requests are counted.
struct Providers {
    addrs: Vec<SocketAddr>,
    requests: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Providers {
    async fn start(hosts: usize, delay: Duration) -> Providers {
        let requests = Arc::new(AtomicU64::new(0));
        let mut addrs = Vec::new();
        let mut tasks = Vec::new();
        for _ in 0..hosts {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addrs.push(listener.local_addr().unwrap());
            let requests = requests.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    let requests = requests.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                            let requests = requests.clone();
                            async move {
                                requests.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(delay).await;
                                Ok::<_, std::convert::Infallible>(provider_answer(request.uri().path()))
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tcp), service)
                            .await;
                    });
                }
            }));
        }
        Providers { addrs, requests, tasks }
    }

    fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

/// Provider requests counted by stand-ins.
trait RequestCount {
    fn requests(&self) -> u64;
}

impl RequestCount for Providers {
    fn requests(&self) -> u64 {
        Providers::requests(self)
    }
}

impl Drop for Providers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

fn provider_answer(path: &str) -> Response<axum::body::Body> {
    let (status, body) = if path.ends_with("/user") {
        (
            200,
            r#"{"login":"bench","id":1,"name":"Bench User","email":"bench@example.com"}"#,
        )
    } else {
        (404, r#"{"message":"Not Found"}"#)
    };
    Response::builder()
        .status(status)
        .header("content-type", "application/json; charset=utf-8")
        .header("x-oauth-scopes", "repo, user")
        .header("x-github-enterprise-version", "3.14.0")
        .body(axum::body::Body::from(body))
        .unwrap()
}

// ---- the cluster ----------------------------------------------------------------------

fn ns_of(i: usize) -> String {
    format!("ns-{}", i % NAMESPACES)
}

async fn start_emulator(n: usize) -> Emulator {
    Emulator::start_with_project_crd(EmulatorOptions {
        // like etcd's minutes of history: a paginated list must survive the writes meanwhile
        watch_history: 200_000 + 10 * n,
    })
    .await
}

/// Creates `make(0..n)`, `parallel` at a time; returns how many creates were retried.
async fn create_all<K, F>(client: &kube::Client, n: usize, parallel: usize, make: F) -> usize
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    F: Fn(usize) -> K,
{
    futures::stream::iter((0..n).map(|i| {
        let object = make(i);
        let api: Api<K> = Api::namespaced(client.clone(), &ns_of(i));
        async move {
            let mut tries = 0;
            loop {
                match api.create(&PostParams::default(), &object).await {
                    Ok(_) => break,
                    // a retry of a create that went through
                    Err(kube::Error::Api(status)) if tries > 0 && status.code == 409 => break,
                    Err(error) if tries < 5 => {
                        tries += 1;
                        eprintln!("create failed ({error}); retrying");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    Err(error) => panic!("cannot create: {error}"),
                }
            }
            tries
        }
    }))
    .buffer_unordered(parallel)
    .collect::<Vec<usize>>()
    .await
    .into_iter()
    .sum()
}

fn token_secret(i: usize) -> Secret {
    use base64::Engine as _;
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": format!("pat-{i}"), "namespace": ns_of(i)},
        "type": "Opaque",
        "data": {"token": base64::engine::general_purpose::STANDARD.encode(TOKEN)},
    }))
    .unwrap()
}

fn connection(i: usize, hosts: &[SocketAddr], interval: &str) -> GitProviderConnection {
    serde_json::from_value(json!({
        "apiVersion": "gitprovider.dev/v1alpha1", "kind": "GitProviderConnection",
        "metadata": {"name": format!("conn-{i}"), "namespace": ns_of(i)},
        "spec": {
            "provider": "GitHub",
            "instanceName": format!("inst-{i}"),
            "url": format!("http://{}", hosts[i % hosts.len()]),
            "tokenSecretRef": {"name": format!("pat-{i}")},
            "verifyInterval": interval,
        },
    }))
    .unwrap()
}

/// An unrelated Secret of `blob` bytes (base64 in the API, like any Secret data).
fn blob_secret(i: usize, blob: &str) -> Secret {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": format!("unrelated-{i}"), "namespace": ns_of(i)},
        "type": "Opaque",
        "data": {"blob": blob},
    }))
    .unwrap()
}

/// The token Secrets, then the connections, 64 creates at a time: time taken, creates retried.
async fn seed(cluster: &Cluster, n: usize, hosts: &[SocketAddr], interval: &str) -> (Duration, usize) {
    let started = Instant::now();
    let client = cluster.client().await;
    let retried = create_all(&client, n, 64, token_secret).await
        + create_all(&client, n, 64, |i| connection(i, hosts, interval)).await;
    (started.elapsed(), retried)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ApiKind {
    Emulator,
    Real,
}

/// The API the operator runs against, fresh for each scenario run: the emulator in this
/// process, or a control plane of its own (`benches/support/real_api.rs`). Either keeps a record
/// of the requests the operator sent (the emulator: every request; real: the operator's, from
/// the audit log), indexed from 0 in the order they were recorded.
enum Cluster {
    Emulator(Emulator),
    Real(RealApi),
}

impl Cluster {
    async fn start(api: ApiKind, n: usize) -> Cluster {
        match api {
            ApiKind::Emulator => Cluster::Emulator(start_emulator(n).await),
            ApiKind::Real => {
                let namespaces: Vec<String> = (0..NAMESPACES).map(ns_of).collect();
                match RealApi::start(&namespaces).await {
                    Ok(real) => Cluster::Real(real),
                    Err(e) => panic!("the control plane did not start: {e}"),
                }
            }
        }
    }

    /// An admin client.
    async fn client(&self) -> kube::Client {
        match self {
            Cluster::Emulator(emulator) => emulator.client().await,
            Cluster::Real(real) => real.client(),
        }
    }

    fn operator_kubeconfig(&self) -> PathBuf {
        match self {
            Cluster::Emulator(emulator) => emulator.kubeconfig_path().to_owned(),
            Cluster::Real(real) => real.operator_kubeconfig().to_owned(),
        }
    }

    /// The length of the record: what is recorded from now on is "since" it.
    fn mark(&self) -> usize {
        self.count_since(usize::MAX, |_| false).1
    }

    /// How many records from index `from` on satisfy `pred`, and the length of the record.
    fn count_since(&self, from: usize, pred: impl Fn(&ApiCall) -> bool) -> (usize, usize) {
        match self {
            Cluster::Emulator(emulator) => emulator.count_since(from, |r| pred(&call_of(r))),
            Cluster::Real(real) => real.count_from(from, pred),
        }
    }

    /// The records from index `from` on.
    fn calls_since(&self, from: usize) -> Vec<ApiCall> {
        match self {
            Cluster::Emulator(emulator) => emulator
                .requests()
                .get(from..)
                .unwrap_or_default()
                .iter()
                .map(call_of)
                .collect(),
            Cluster::Real(real) => real.calls_from(from),
        }
    }

    /// Connections whose Ready condition is True.
    async fn ready_count(&self, n: usize) -> usize {
        match self {
            Cluster::Emulator(emulator) => (0..n)
                .filter(|&i| {
                    emulator
                        .object(
                            "gitprovider.dev",
                            "gitproviderconnections",
                            &ns_of(i),
                            &format!("conn-{i}"),
                        )
                        .is_some_and(|o| {
                            o["status"]["conditions"]
                                .as_array()
                                .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
                        })
                })
                .count(),
            Cluster::Real(real) => real.ready_count().await,
        }
    }

    /// kube-apiserver's and etcd's CPU and peak RSS so far (real only).
    fn usage(&self) -> Option<Usage> {
        match self {
            Cluster::Emulator(_) => None,
            Cluster::Real(real) => Some(real.usage()),
        }
    }
}

/// An emulator record in the shape of the real one.
fn call_of(r: &RecordedRequest) -> ApiCall {
    let target = r.target.as_ref();
    ApiCall {
        at: r.time,
        latency: None,
        verb: r.verb().to_owned(),
        resource: target.map(|t| t.resource.clone()).unwrap_or_default(),
        subresource: target.and_then(|t| t.subresource.clone()),
        namespace: target.and_then(|t| t.namespace.clone()),
        name: target.and_then(|t| t.name.clone()),
        code: r.status,
        apf_wait: None,
    }
}

// ---- the operator process -------------------------------------------------------------

struct Pki {
    ca_pem: String,
    cert: PathBuf,
    key: PathBuf,
    cert_pem: String,
    key_pem: String,
    _dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let pki = common::TestPki::new("bench-webhook-ca");
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&cert, &pki.cert_pem).unwrap();
        std::fs::write(&key, &pki.key_pem).unwrap();
        Pki {
            ca_pem: pki.ca_pem,
            cert,
            key,
            cert_pem: pki.cert_pem,
            key_pem: pki.key_pem,
            _dir: dir,
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Operator {
    child: Child,
    metrics_port: u16,
    webhook_port: u16,
    spawned: Instant,
    /// When `/readyz` first answered 200 (wall clock, to compare with the emulator's record).
    ready_at: Option<SystemTime>,
    ready_after: Option<Duration>,
}

impl Operator {
    fn start(kubeconfig: &Path, pki: &Pki, flags: &[String], log: &Path) -> Operator {
        let metrics_port = free_port();
        let webhook_port = free_port();
        let log = std::fs::File::create(log).unwrap();
        // SCALE_OPERATOR_WRAPPER="valgrind --tool=massif ..." runs the operator under a profiler.
        let wrapper: Vec<String> = std::env::var("SCALE_OPERATOR_WRAPPER")
            .map(|w| w.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default();
        let binary = operator_binary();
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(binary);
                command
            }
            None => Command::new(binary),
        };
        let child = command
            .arg("run")
            .args(["--bind-address", "127.0.0.1"])
            .args(["--metrics-port", &metrics_port.to_string()])
            .args(["--webhook-port", &webhook_port.to_string()])
            .arg("--tls-cert-file")
            .arg(&pki.cert)
            .arg("--tls-key-file")
            .arg(&pki.key)
            .args(flags)
            .env("KUBECONFIG", kubeconfig)
            .env_remove("RUST_LOG")
            .envs(std::env::var("SCALE_OPERATOR_RUST_LOG").map(|v| ("RUST_LOG", v)))
            // SCALE_OPERATOR_ENV="TOKIO_WORKER_THREADS=1 MALLOC_ARENA_MAX=1": the operator's only
            .envs(
                std::env::var("SCALE_OPERATOR_ENV")
                    .unwrap_or_default()
                    .split_whitespace()
                    .filter_map(|kv| kv.split_once('='))
                    .map(|(k, v)| (k.to_owned(), v.to_owned())),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("operator starts");
        Operator {
            child,
            metrics_port,
            webhook_port,
            spawned: Instant::now(),
            ready_at: None,
            ready_after: None,
        }
    }

    async fn wait_ready(&mut self, http: &reqwest::Client) -> Duration {
        let url = format!("http://127.0.0.1:{}/readyz", self.metrics_port);
        loop {
            if let Ok(response) = http.get(&url).send().await
                && response.status() == 200
            {
                let after = self.spawned.elapsed();
                self.ready_at = Some(SystemTime::now());
                self.ready_after = Some(after);
                return after;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the operator exited: {status}");
            }
            assert!(
                self.spawned.elapsed() < Duration::from_secs(300),
                "the operator is not ready after 300 s"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// A field of /proc/PID/status in KiB (VmHWM: peak RSS; VmRSS: current).
    fn proc_kib(&self, field: &str) -> u64 {
        proc_kib(self.child.id(), field)
    }

    /// CPU time (user + system) used so far.
    fn cpu(&self) -> Duration {
        cpu_of(&self.child.id().to_string())
    }

    /// SIGTERM (a profiler wrapping the operator writes its output then), SIGKILL after 30 s.
    fn stop(mut self) {
        process::stop(&mut self.child);
    }
}

/// The operator binary: this build's, or `SCALE_OPERATOR_BINARY` (e.g. one built from an older
/// commit, to compare before and after a change on the same harness).
fn operator_binary() -> String {
    std::env::var("SCALE_OPERATOR_BINARY").unwrap_or_else(|_| env!("CARGO_BIN_EXE_gitprovider-operator").to_owned())
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Waits until `count()` reaches `target`; false on time-out.
async fn wait_until(mut count: impl FnMut() -> usize, target: usize, timeout: Duration) -> bool {
    let started = Instant::now();
    while count() < target {
        if started.elapsed() > timeout {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    true
}

// ---- results --------------------------------------------------------------------------

#[derive(Debug, Clone, Default)]
struct Verify {
    /// `/readyz` 200 to the last status write.
    from_ready: f64,
    /// Process start to the last status write.
    from_start: f64,
    ideal: f64,
    requests_per_verification: f64,
    writes_min: usize,
    writes_max: usize,
    ready: usize,
    converged: bool,
    startup: f64,
    peak_rss_mib: f64,
    cpu_secs: f64,
    /// CPU of this process (API emulator, provider stand-ins; real: the stand-ins, the watch and
    /// the audit log reader) from start to convergence.
    harness_cpu_secs: f64,
    /// The operator's API requests from its start to convergence.
    api_requests: usize,
    /// Of which answered 429 Too Many Requests.
    throttled: usize,
    /// Real only: of which queued by priority and fairness (the server noted a queue wait),
    /// and the longest wait.
    apf_queued: usize,
    apf_wait_max_ms: f64,
    /// Real only: the server's time for a status write (received to response), p50 and p99.
    status_latency_ms: Option<(f64, f64)>,
    /// Real only: `/readyz` to the last change the benchmark's own watch saw, and the changes
    /// per connection it saw (min, max).
    watch_from_ready: Option<f64>,
    watch_per_connection: Option<(usize, usize)>,
    /// Real only: kube-apiserver's and etcd's CPU from start to convergence and their peak RSS.
    server: Option<Usage>,
    /// Real only: the operator's requests by kind (`verb resource`), how many, and the server's
    /// time for them (p50, p99, ms).
    kinds: Vec<(String, usize, f64, f64)>,
    /// Where the cluster's record stood when the operator started.
    mark: usize,
}

#[derive(Debug, Clone, Default)]
struct RunResult {
    n: usize,
    /// Seeding time of each scenario's cluster, and creates retried.
    seed_secs: Vec<f64>,
    seed_retries: usize,
    verify: Vec<(usize, Verify)>,
    steady_writes: Option<usize>,
    steady_requests: Option<usize>,
    /// One entry per admission round: operator sequential, operator concurrent, floor
    /// sequential, floor concurrent.
    admission: Vec<[Measured; 4]>,
    /// With `--webhook-alone`, per round: the webhook alone sequential and concurrent.
    alone: Vec<[Measured; 2]>,
    rss_restart_mib: Option<f64>,
    rss_restart_blobs_mib: Option<f64>,
    startup_restart: Option<f64>,
    startup_restart_blobs: Option<f64>,
    interval: Option<IntervalCheck>,
}

#[derive(Debug, Clone, Default)]
struct IntervalCheck {
    window: u64,
    writes: usize,
    writes_per_connection_per_interval: f64,
    min_gap_secs: f64,
    mean_gap_secs: f64,
    other_writes: usize,
}

/// One admission series and the server's CPU time per review during it (all its threads).
#[derive(Debug, Clone, Copy, Default)]
struct Measured {
    stats: Stats,
    cpu_per_review: Duration,
}

// ---- phases ---------------------------------------------------------------------------

fn operator_flags(scenario: &Scenario) -> Vec<String> {
    let mut flags = vec![
        "--max-concurrent-verifications".to_owned(),
        scenario.concurrency.to_string(),
    ];
    if let Some(per_host) = scenario.per_host {
        flags.push("--max-in-flight-per-host".to_owned());
        flags.push(per_host.to_string());
    }
    flags
}

/// Starts the operator on `cluster` and waits until it made `n` successful status writes (and,
/// real, until the benchmark's watch saw as many changes); returns the figures and the running
/// operator.
async fn converge(
    cluster: &Cluster,
    providers: &dyn RequestCount,
    pki: &Pki,
    flags: &[String],
    n: usize,
    ideal: f64,
    log: &Path,
) -> (Verify, Operator) {
    let http = reqwest::Client::new();
    let mark = cluster.mark();
    let requests_before = providers.requests();
    // Real: a watch of the benchmark's own, listed before the operator starts.
    let clock = match cluster {
        Cluster::Real(real) => Some(real.watch_clock().await),
        Cluster::Emulator(_) => None,
    };
    let started_wall = SystemTime::now();
    let harness_cpu = cpu_of("self");
    let server_before = cluster.usage();
    let mut operator = Operator::start(&cluster.operator_kubeconfig(), pki, flags, log);
    let startup = operator.wait_ready(&http).await;
    let timeout = Duration::from_secs_f64(ideal * 20.0 + 120.0);
    // Counted as the record grows: a count over the whole record every 25 ms would be the
    // benchmark's own CPU (quadratic in N), charged to the harness CPU below.
    let mut seen = (mark, 0); // (records looked at, successful status writes among them)
    let converged = wait_until(
        || {
            let (writes, len) = cluster.count_since(seen.0, |c| c.is_status_write() && c.succeeded());
            seen = (len, seen.1 + writes);
            seen.1
        },
        n,
        timeout,
    )
    .await;
    let harness_cpu = cpu_of("self").saturating_sub(harness_cpu);
    let operator_cpu = operator.cpu();
    let server = cluster.usage().zip(server_before).map(|(after, before)| Usage {
        apiserver_cpu: after.apiserver_cpu.saturating_sub(before.apiserver_cpu),
        etcd_cpu: after.etcd_cpu.saturating_sub(before.etcd_cpu),
        ..after
    });
    let watched = match &clock {
        None => {
            // Let anything still in flight land before counting.
            tokio::time::sleep(Duration::from_millis(300)).await;
            None
        }
        Some(clock) => {
            if !clock.wait_changes(seen.1, Duration::from_secs(30)).await {
                eprintln!("the benchmark's watch saw fewer than {} changes within 30 s", seen.1);
            }
            Some(clock.seen(n))
        }
    };
    let calls = cluster.calls_since(mark);
    let mut per_connection: HashMap<(String, String), usize> = HashMap::new();
    let mut last = started_wall;
    let mut latencies = Vec::new();
    for c in calls.iter().filter(|c| c.is_status_write() && c.succeeded()) {
        *per_connection
            .entry((
                c.namespace.clone().unwrap_or_default(),
                c.name.clone().unwrap_or_default(),
            ))
            .or_default() += 1;
        last = last.max(c.at);
        latencies.extend(c.latency);
    }
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let percentile = |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1)];
    let queued: Vec<Duration> = calls.iter().filter_map(|c| c.apf_wait).collect();
    let mut kinds: HashMap<String, Vec<Duration>> = HashMap::new();
    for c in &calls {
        if let Some(latency) = c.latency {
            let resource = match &c.subresource {
                Some(sub) => format!("{}/{sub}", c.resource),
                None => c.resource.clone(),
            };
            kinds.entry(format!("{} {resource}", c.verb)).or_default().push(latency);
        }
    }
    let mut kinds: Vec<(String, usize, f64, f64)> = kinds
        .into_iter()
        .map(|(kind, mut l)| {
            l.sort();
            let at = |p: f64| ms(l[((l.len() as f64 * p).ceil() as usize).saturating_sub(1)]);
            (kind, l.len(), at(0.5), at(0.99))
        })
        .collect();
    kinds.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let ready_at = operator.ready_at.unwrap_or(started_wall);
    let since = |t: SystemTime| t.duration_since(ready_at).unwrap_or_default().as_secs_f64();
    let verify = Verify {
        from_ready: since(last),
        from_start: last.duration_since(started_wall).unwrap_or_default().as_secs_f64(),
        ideal,
        requests_per_verification: (providers.requests() - requests_before) as f64 / n as f64,
        writes_min: if per_connection.len() < n {
            0
        } else {
            per_connection.values().copied().min().unwrap_or(0)
        },
        writes_max: per_connection.values().copied().max().unwrap_or(0),
        ready: cluster.ready_count(n).await,
        converged,
        startup: startup.as_secs_f64(),
        peak_rss_mib: mib(operator.proc_kib("VmHWM")),
        cpu_secs: operator_cpu.as_secs_f64(),
        harness_cpu_secs: harness_cpu.as_secs_f64(),
        api_requests: calls.len(),
        throttled: calls.iter().filter(|c| c.code == 429).count(),
        apf_queued: queued.len(),
        apf_wait_max_ms: queued.iter().copied().max().map_or(0.0, ms),
        status_latency_ms: (!latencies.is_empty()).then(|| (ms(percentile(0.50)), ms(percentile(0.99)))),
        watch_from_ready: watched.and_then(|w| w.last).map(since),
        watch_per_connection: watched.map(|w| (w.min_per_connection, w.max_per_connection)),
        server,
        kinds,
        mark,
    };
    if let Some(w) = watched
        && (w.relists > 0 || w.errors > 0)
    {
        println!(
            "  (the benchmark's watch listed again {} times, {} errors)",
            w.relists, w.errors
        );
    }
    (verify, operator)
}

fn admission_shots(n: usize, run: &str, range: std::ops::Range<usize>, check: bool) -> Vec<Shot> {
    let per_namespace = (n / NAMESPACES).max(1);
    range
        .map(|i| {
            let ns = ns_of(i);
            let duplicate = i.is_multiple_of(2);
            let instance = if duplicate {
                // the name an indexed connection of this namespace holds (any case)
                let held = (i / 2 % per_namespace) * NAMESPACES + i % NAMESPACES;
                format!("INST-{held}")
            } else {
                format!("new-{run}-{i}")
            };
            let body = common::review(
                &format!("{run}-{i}"),
                "CREATE",
                &ns,
                &format!("review-{run}-{i}"),
                Some(common::spec("GitHub", &instance, "https://github.example.com")),
                None,
                false,
            );
            Shot {
                body: serde_json::to_vec(&body).unwrap(),
                expect_allowed: check.then_some(!duplicate),
            }
        })
        .collect()
}

/// CPU time a process spent running so far, all its threads (ns resolution, from
/// /proc/PID/task/*/schedstat; threads that ended are not counted).
fn run_time_of(pid: u32) -> Duration {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Duration::ZERO;
    };
    let nanos: u64 = tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|stat| stat.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    Duration::from_nanos(nanos)
}

/// Sequential and concurrent series against `url`, served by process `pid`. `label` makes the
/// names of the reviews unique (so every allowed create takes a new name).
async fn admission_series(
    n: usize,
    label: &str,
    url: &str,
    pid: u32,
    ca_pem: &str,
    check: bool,
) -> (Measured, Measured) {
    let measured = |stats: Stats, cpu: Duration| Measured {
        stats,
        cpu_per_review: cpu / stats.n as u32,
    };
    let client = common::client(ca_pem);
    let warm = admission_shots(n, &format!("w{label}"), 0..200, check);
    let shots = admission_shots(n, &format!("s{label}"), 0..ADMISSION_SEQUENTIAL, check);
    let (seq, cpu) = load::sequential_with(&client, url, &warm, &shots, || run_time_of(pid)).await;
    let seq = measured(seq, cpu);
    let client = common::client(ca_pem);
    let warm = admission_shots(n, &format!("pw{label}"), 0..ADMISSION_PARALLELISM * 10, check);
    let shots = admission_shots(n, &format!("p{label}"), 0..ADMISSION_CONCURRENT, check);
    let (par, cpu) =
        load::concurrent_with(&client, url, &warm, &shots, ADMISSION_PARALLELISM, || run_time_of(pid)).await;
    (seq, measured(par, cpu))
}

/// Starts the floor server in a child process (this benchmark's own binary) and waits for it.
fn start_floor(pki: &Pki) -> (Child, u16) {
    start_server(pki, "--floor-server", &[])
}

/// Starts the webhook alone (index of `n` connections) in a child process and waits for it.
fn start_webhook_alone(pki: &Pki, n: usize) -> (Child, u16) {
    start_server(pki, "--webhook-server", &[n.to_string()])
}

fn start_server(pki: &Pki, mode: &str, extra: &[String]) -> (Child, u16) {
    let port = free_port();
    let child = Command::new(std::env::current_exe().unwrap())
        .args([mode, &port.to_string()])
        .arg(&pki.cert)
        .arg(&pki.key)
        .args(extra)
        .stdin(Stdio::null())
        .spawn()
        .expect("floor server starts");
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "floor server not listening"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    (child, port)
}

fn floor_server_main(port: &str, cert: &str, key: &str) {
    let cert_pem = std::fs::read_to_string(cert).unwrap();
    let key_pem = std::fs::read_to_string(key).unwrap();
    serve_on_port(port, |listener| {
        floor::serve(listener, floor::server_config(&cert_pem, &key_pem))
    });
}

/// Runs `serve` on a fresh multi-thread runtime, listening on 127.0.0.1:`port`.
fn serve_on_port<F, Fut>(port: &str, serve: F)
where
    F: FnOnce(tokio::net::TcpListener) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port.parse::<u16>().unwrap()))
            .await
            .unwrap();
        serve(listener).await;
    });
}

/// The product's webhook server with an index of the `n` connections the operator would hold,
/// in a process of its own: what the operator's webhook costs without the rest of the operator.
fn webhook_server_main(port: &str, cert: &str, key: &str, n: &str) {
    use gitprovider_operator::admission::{CertStore, Webhook};
    use gitprovider_operator::index::{ConnectionIndex, UniquenessScope};
    let n: usize = n.parse().unwrap();
    let certs = CertStore::from_pem(&std::fs::read(cert).unwrap(), &std::fs::read(key).unwrap()).unwrap();
    let index = Arc::new(ConnectionIndex::new(UniquenessScope::Namespace));
    let host: SocketAddr = "127.0.0.1:1".parse().unwrap();
    for i in 0..n {
        let mut c = connection(i, &[host], "1h");
        c.metadata.uid = Some(format!("uid-{i}"));
        c.metadata.generation = Some(1);
        c.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
            jiff::Timestamp::from_second(1_000_000 + i as i64).unwrap(),
        ));
        index.apply(&c);
    }
    index.partition_synced(None);
    let webhook = Webhook::new(index, Arc::new(gitprovider_operator::metrics::Metrics::new()), certs);
    serve_on_port(port, |listener| async move {
        let _ = gitprovider_operator::admission::serve(listener, webhook, std::future::pending()).await;
    });
}

/// Writes and requests in a window of `seconds` after convergence (the first verification of the
/// `n` connections, whose requests the record holds from index `since` on).
async fn steady_window(cluster: &Cluster, since: usize, n: usize, seconds: u64) -> (usize, usize) {
    match cluster {
        // events and the last writes settle first
        Cluster::Emulator(_) => tokio::time::sleep(Duration::from_secs(2)).await,
        // the Event of every connection's Ready transition is written (at most 60 s)
        Cluster::Real(_) => {
            let events = || cluster.count_since(since, |c| c.is_event_write() && c.succeeded()).0;
            if !wait_until(events, n, Duration::from_secs(60)).await {
                eprintln!("fewer than {n} Events written within 60 s of convergence");
            }
        }
    }
    let from = cluster.mark();
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let calls = cluster.calls_since(from);
    let writes = calls.iter().filter(|c| c.is_write()).count();
    (writes, calls.len())
}

async fn interval_check(api: ApiKind, n: usize, window: u64, pki: &Pki, dir: &Path) -> IntervalCheck {
    let scenario = &SCENARIOS[DEFAULTS];
    let providers = Providers::start(scenario.hosts, PROVIDER_DELAY).await;
    let cluster = Cluster::start(api, n).await;
    seed(&cluster, n, &providers.addrs, "1m").await;
    let ideal = n as f64 * PROVIDER_DELAY.as_secs_f64() / f64::from(scenario.concurrency);
    let (_, operator) = converge(
        &cluster,
        &providers,
        pki,
        &operator_flags(scenario),
        n,
        ideal,
        &dir.join("operator-interval.log"),
    )
    .await;
    let from = cluster.mark();
    tokio::time::sleep(Duration::from_secs(window)).await;
    let records: Vec<_> = cluster.calls_since(from).into_iter().filter(|c| c.is_write()).collect();
    operator.stop();
    let mut times: HashMap<String, Vec<SystemTime>> = HashMap::new();
    for c in cluster
        .calls_since(0)
        .into_iter()
        .filter(|c| c.is_status_write() && c.succeeded())
    {
        times
            .entry(format!("{:?}/{:?}", c.namespace, c.name))
            .or_default()
            .push(c.at);
    }
    let gaps: Vec<f64> = times
        .values()
        .flat_map(|ts| {
            ts.windows(2)
                .map(|w| w[1].duration_since(w[0]).unwrap_or_default().as_secs_f64())
                .collect::<Vec<_>>()
        })
        .collect();
    let min_gap = gaps.iter().copied().fold(f64::INFINITY, f64::min);
    let mean_gap = gaps.iter().sum::<f64>() / gaps.len().max(1) as f64;
    let status = records.iter().filter(|r| r.is_status_write()).count();
    IntervalCheck {
        window,
        writes: status,
        // one write per connection per interval means a mean gap of one interval (60 s)
        writes_per_connection_per_interval: 60.0 / mean_gap,
        min_gap_secs: min_gap,
        mean_gap_secs: mean_gap,
        other_writes: records.len() - status,
    }
}

async fn one_run(n: usize, run: usize, options: &Options, pki: &Pki, dir: &Path) -> RunResult {
    let mut result = RunResult {
        n,
        ..RunResult::default()
    };
    for &s in &options.scenarios {
        let scenario = &SCENARIOS[s];
        let providers = Providers::start(scenario.hosts, PROVIDER_DELAY).await;
        let cluster = Cluster::start(options.api, n).await;
        let (seeded, retried) = seed(&cluster, n, &providers.addrs, "1h").await;
        result.seed_secs.push(seeded.as_secs_f64());
        result.seed_retries += retried;
        let ideal = n as f64 * PROVIDER_DELAY.as_secs_f64() / f64::from(scenario.concurrency);
        let flags = operator_flags(scenario);
        let log = dir.join(format!("operator-{n}-{run}-{s}.log"));
        let (verify, operator) = converge(&cluster, &providers, pki, &flags, n, ideal, &log).await;
        println!(
            "  N={n} run {run} [{}] ready in {:.2}s from /readyz ({:.2}s from start; ideal {:.2}s, {:.2}x), \
             {:.2} provider requests/verification, status writes/connection {}..{}, {}/{n} Ready, \
             start-up {:.0} ms, peak RSS {:.1} MiB, CPU {:.1}s (harness {:.1}s; seeded in {:.1}s, \
             {retried} creates retried), {} API requests ({} answered 429){}{}",
            scenario.label,
            verify.from_ready,
            verify.from_start,
            verify.ideal,
            verify.from_ready / verify.ideal,
            verify.requests_per_verification,
            verify.writes_min,
            verify.writes_max,
            verify.ready,
            verify.startup * 1000.0,
            verify.peak_rss_mib,
            verify.cpu_secs,
            verify.harness_cpu_secs,
            seeded.as_secs_f64(),
            verify.api_requests,
            verify.throttled,
            server_line(&verify),
            if verify.converged { "" } else { " (TIMED OUT)" }
        );
        let mark = verify.mark;
        result.verify.push((s, verify));
        if s != DEFAULTS {
            operator.stop();
            continue;
        }

        if options.steady_window > 0 {
            let (writes, requests) = steady_window(&cluster, mark, n, options.steady_window).await;
            println!(
                "  N={n} run {run} steady state: {writes} writes, {requests} requests in {} s after convergence",
                options.steady_window
            );
            result.steady_writes = Some(writes);
            result.steady_requests = Some(requests);
        }

        if options.admission {
            // Both servers run (idle) during every series; the rounds alternate which one goes
            // first, so that neither always meets the other's after-effects (or the operator's
            // last work after convergence).
            let url = format!("https://localhost:{}/validate", operator.webhook_port);
            let (mut floor, floor_port) = start_floor(pki);
            let floor_url = format!("https://localhost:{floor_port}/validate");
            let (operator_pid, floor_pid) = (operator.child.id(), floor.id());
            let mut alone = options.webhook_alone.then(|| start_webhook_alone(pki, n));
            let alone_url = alone
                .as_ref()
                .map(|(_, port)| format!("https://localhost:{port}/validate"));
            let alone_pid = alone.as_ref().map(|(child, _)| child.id());
            for round in 1..=options.admission_rounds {
                let op = |label: String| {
                    let url = url.clone();
                    async move { admission_series(n, &label, &url, operator_pid, &pki.ca_pem, true).await }
                };
                let fl = |label: String| {
                    let url = floor_url.clone();
                    async move { admission_series(n, &label, &url, floor_pid, &pki.ca_pem, false).await }
                };
                let al = |label: String| {
                    let url = alone_url.clone().unwrap_or_default();
                    async move { admission_series(n, &label, &url, alone_pid.unwrap(), &pki.ca_pem, true).await }
                };
                // the webhook alone, when measured, goes between the other two
                let ((seq, par), (fseq, fpar), a) = if round % 2 == 1 {
                    let o = op(format!("op{round}")).await;
                    let a = if alone_pid.is_some() {
                        Some(al(format!("al{round}")).await)
                    } else {
                        None
                    };
                    (o, fl(format!("fl{round}")).await, a)
                } else {
                    let f = fl(format!("fl{round}")).await;
                    let a = if alone_pid.is_some() {
                        Some(al(format!("al{round}")).await)
                    } else {
                        None
                    };
                    (op(format!("op{round}")).await, f, a)
                };
                let line = |m: &Measured, label: &str| {
                    format!(
                        "  N={n} run {run} round {round} {} cpu/review={:>6.1?}",
                        m.stats.line(label),
                        m.cpu_per_review
                    )
                };
                println!("{}", line(&seq, "admission operator sequential"));
                println!("{}", line(&par, "admission operator 32 concurrent"));
                println!("{}", line(&fseq, "admission floor sequential"));
                println!("{}", line(&fpar, "admission floor 32 concurrent"));
                if let Some((aseq, apar)) = a {
                    println!("{}", line(&aseq, "admission webhook alone sequential"));
                    println!("{}", line(&apar, "admission webhook alone 32 concurrent"));
                    result.alone.push([aseq, apar]);
                }
                result.admission.push([seq, par, fseq, fpar]);
            }
            let _ = floor.kill();
            let _ = floor.wait();
            if let Some((child, _)) = alone.as_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        operator.stop();

        if options.memory {
            // A restart with the same objects, then with N unrelated 50 KiB Secrets more.
            let (again, operator) = converge(
                &cluster,
                &providers,
                pki,
                &flags,
                n,
                ideal,
                &dir.join(format!("operator-{n}-{run}-restart.log")),
            )
            .await;
            operator.stop();
            use base64::Engine as _;
            let raw: Vec<u8> = (0..options.blob_kib * 1024).map(|_| fastrand::u8(..)).collect();
            let blob = base64::engine::general_purpose::STANDARD.encode(raw);
            let client = cluster.client().await;
            let started = Instant::now();
            create_all(&client, n, 16, |i| blob_secret(i, &blob)).await;
            let blobs_secs = started.elapsed().as_secs_f64();
            let (with_blobs, operator) = converge(
                &cluster,
                &providers,
                pki,
                &flags,
                n,
                ideal,
                &dir.join(format!("operator-{n}-{run}-blobs.log")),
            )
            .await;
            operator.stop();
            println!(
                "  N={n} run {run} memory: peak RSS after restart {:.1} MiB (start-up {:.0} ms, all verified again \
                 in {:.2}s), with {n} unrelated {} KiB Secrets (created in {blobs_secs:.1}s) {:.1} MiB (start-up \
                 {:.0} ms, {:.2}s): {:+.1}%",
                again.peak_rss_mib,
                again.startup * 1000.0,
                again.from_ready,
                options.blob_kib,
                with_blobs.peak_rss_mib,
                with_blobs.startup * 1000.0,
                with_blobs.from_ready,
                (with_blobs.peak_rss_mib / again.peak_rss_mib - 1.0) * 100.0
            );
            result.rss_restart_mib = Some(again.peak_rss_mib);
            result.rss_restart_blobs_mib = Some(with_blobs.peak_rss_mib);
            result.startup_restart = Some(again.startup);
            result.startup_restart_blobs = Some(with_blobs.startup);
        }
    }
    result
}

/// The real API's part of a run's line: the watch, the server's latency, its CPU and RSS.
fn server_line(v: &Verify) -> String {
    let mut line = String::new();
    if let Some(w) = v.watch_from_ready {
        let (min, max) = v.watch_per_connection.unwrap_or_default();
        let _ = write!(
            line,
            "; seen through a watch {w:.2}s from /readyz (changes/connection {min}..{max})"
        );
    }
    if let Some((p50, p99)) = v.status_latency_ms {
        let _ = write!(line, "; status write in the server p50 {p50:.1} ms, p99 {p99:.1} ms");
    }
    if v.apf_queued > 0 {
        let _ = write!(
            line,
            "; {} requests queued by priority and fairness (longest {:.1} ms)",
            v.apf_queued, v.apf_wait_max_ms
        );
    }
    if !v.kinds.is_empty() {
        let kinds: Vec<String> = v
            .kinds
            .iter()
            .map(|(kind, count, p50, p99)| format!("{count} {kind} (p50 {p50:.1} ms, p99 {p99:.1} ms)"))
            .collect();
        let _ = write!(line, "; requests: {}", kinds.join(", "));
    }
    if let Some(u) = v.server {
        let _ = write!(
            line,
            "; kube-apiserver CPU {:.1}s, peak RSS {:.0} MiB; etcd CPU {:.1}s, peak RSS {:.0} MiB",
            u.apiserver_cpu.as_secs_f64(),
            mib(u.apiserver_peak_kib),
            u.etcd_cpu.as_secs_f64(),
            mib(u.etcd_peak_kib)
        );
    }
    line
}

// ---- aggregation and report -----------------------------------------------------------

/// Median and spread (min–max) of a series.
#[derive(Clone, Copy, Debug)]
struct Agg {
    median: f64,
    min: f64,
    max: f64,
    n: usize,
}

fn agg(values: impl IntoIterator<Item = f64>) -> Option<Agg> {
    let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    Some(Agg {
        median,
        min: v[0],
        max: v[v.len() - 1],
        n: v.len(),
    })
}

fn fmt_agg(a: Option<Agg>, digits: usize, unit: &str) -> String {
    match a {
        None => "–".to_owned(),
        Some(a) if a.n == 1 => format!("{:.*}{unit}", digits, a.median),
        Some(a) => format!(
            "{:.*}{unit} ({:.*}–{:.*})",
            digits, a.median, digits, a.min, digits, a.max
        ),
    }
}

/// A series: its label and (N, median) points.
type Series = (String, Vec<(usize, f64)>);
/// A plot panel: title, unit, series.
type Panel = (String, String, Vec<Series>);

struct Report {
    markdown: String,
    /// (series label, points (N, median)) per panel.
    panels: Vec<Panel>,
}

fn report(results: &[RunResult], options: &Options) -> Report {
    let mut md = String::new();
    let mut sizes: Vec<usize> = results.iter().map(|r| r.n).collect();
    sizes.dedup();
    let runs_of = |n: usize| results.iter().filter(move |r| r.n == n);
    let verify_of = |n: usize, s: usize| {
        runs_of(n)
            .flat_map(move |r| r.verify.iter().filter(move |(i, _)| *i == s).map(|(_, v)| v.clone()))
            .collect::<Vec<_>>()
    };
    let mut verify_series: Vec<(String, Vec<(usize, f64)>)> = Vec::new();
    let real = options.api == ApiKind::Real;
    if real {
        let _ = writeln!(
            md,
            "### Verification on a real kube-apiserver (fixed 50 ms per provider answer; time from `/readyz` to \
             the last status write, as the audit log's `stageTimestamp` has it)\n"
        );
        let _ = writeln!(
            md,
            "Status writes per connection and API requests: the operator's requests in kube-apiserver's audit log \
             (level Metadata), from its start to convergence. \"seen through a watch\": `/readyz` to the last change a \
             metadata watch in the benchmark process received. Status write in the server: its audit event's \
             `requestReceivedTimestamp` to `stageTimestamp`. kube-apiserver and etcd CPU: from the operator's start \
             to convergence; their RSS: peak since they started (seeding included).\n"
        );
    } else {
        let _ = writeln!(
            md,
            "### Verification (fixed 50 ms per provider answer; time from `/readyz` to the last status write)\n"
        );
    }
    let real_header = if real {
        " 429s | seen through a watch | status write in the server p50 / p99 | kube-apiserver CPU | etcd CPU | kube-apiserver peak RSS | etcd peak RSS |"
    } else {
        ""
    };
    let _ = writeln!(
        md,
        "| N | scenario | runs | ideal | all Ready after (median, min–max) | ÷ ideal | from process start | requests/verification | status writes/connection | Ready | peak RSS | operator CPU | harness CPU ({}) | API requests |{real_header}",
        if real {
            "providers, watch, audit log reader"
        } else {
            "API emulator, providers"
        }
    );
    let _ = writeln!(
        md,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|{}",
        if real { "---|---|---|---|---|---|---|" } else { "" }
    );
    for &s in &options.scenarios {
        let mut points = Vec::new();
        for &n in &sizes {
            let v = verify_of(n, s);
            if v.is_empty() {
                continue;
            }
            let ratio = agg(v.iter().map(|v| v.from_ready / v.ideal));
            if let Some(r) = ratio {
                points.push((n, r.median));
            }
            let _ = write!(
                md,
                "| {n} | {} | {} | {:.2} s | {} | {} | {} | {} | {}–{} | {}/{n} | {} | {} | {} | {} |",
                SCENARIOS[s].label,
                v.len(),
                v[0].ideal,
                fmt_agg(agg(v.iter().map(|v| v.from_ready)), 2, " s"),
                fmt_agg(ratio, 2, "×"),
                fmt_agg(agg(v.iter().map(|v| v.from_start)), 2, " s"),
                fmt_agg(agg(v.iter().map(|v| v.requests_per_verification)), 2, ""),
                v.iter().map(|v| v.writes_min).min().unwrap_or(0),
                v.iter().map(|v| v.writes_max).max().unwrap_or(0),
                v.iter().map(|v| v.ready).min().unwrap_or(0),
                fmt_agg(agg(v.iter().map(|v| v.peak_rss_mib)), 1, " MiB"),
                fmt_agg(agg(v.iter().map(|v| v.cpu_secs)), 1, " s"),
                fmt_agg(agg(v.iter().map(|v| v.harness_cpu_secs)), 1, " s"),
                fmt_agg(agg(v.iter().map(|v| v.api_requests as f64)), 0, ""),
            );
            if real {
                let server = |f: fn(&Usage) -> f64| agg(v.iter().filter_map(|v| v.server.as_ref().map(f)));
                let _ = write!(
                    md,
                    " {} | {} | {} / {} | {} | {} | {} | {} |",
                    v.iter().map(|v| v.throttled).sum::<usize>(),
                    fmt_agg(agg(v.iter().filter_map(|v| v.watch_from_ready)), 2, " s"),
                    fmt_agg(agg(v.iter().filter_map(|v| v.status_latency_ms.map(|l| l.0))), 1, " ms"),
                    fmt_agg(agg(v.iter().filter_map(|v| v.status_latency_ms.map(|l| l.1))), 1, " ms"),
                    fmt_agg(server(|u| u.apiserver_cpu.as_secs_f64()), 1, " s"),
                    fmt_agg(server(|u| u.etcd_cpu.as_secs_f64()), 1, " s"),
                    fmt_agg(server(|u| mib(u.apiserver_peak_kib)), 0, " MiB"),
                    fmt_agg(server(|u| mib(u.etcd_peak_kib)), 0, " MiB"),
                );
            }
            let _ = writeln!(md);
        }
        verify_series.push((SCENARIOS[s].label.to_owned(), points));
    }
    let _ = writeln!(
        md,
        "\nSeeding (N token Secrets, then N connections, 64 creates at a time through the API, before the operator \
         starts; one cluster per scenario):\n"
    );
    for &n in &sizes {
        let seeds: Vec<f64> = runs_of(n).flat_map(|r| r.seed_secs.iter().copied()).collect();
        let _ = writeln!(
            md,
            "- N={n}: {} per cluster ({} clusters; {:.0} creates/s at the median), {} creates retried",
            fmt_agg(agg(seeds.iter().copied()), 1, " s"),
            seeds.len(),
            agg(seeds.iter().copied()).map_or(0.0, |a| 2.0 * n as f64 / a.median),
            runs_of(n).map(|r| r.seed_retries).sum::<usize>(),
        );
    }

    let mut admission_series: Vec<(String, Vec<(usize, f64)>)> = vec![
        ("operator p99, sequential".into(), Vec::new()),
        ("operator p99, 32 concurrent".into(), Vec::new()),
        ("floor p99, sequential".into(), Vec::new()),
        ("floor p99, 32 concurrent".into(), Vec::new()),
    ];
    if options.admission {
        let _ = writeln!(
            md,
            "\n### Admission (operator binary vs floor: rustls + hyper + serde_json answering a fixed review)\n"
        );
        let _ = writeln!(
            md,
            "Rounds: {} per run, alternating which server is measured first; both servers run during every \
             round. Ratios are per round (operator ÷ floor of the same round), then aggregated. CPU/review: \
             the server process's CPU time (all threads) during the series ÷ reviews.\n",
            options.admission_rounds
        );
        let _ = writeln!(
            md,
            "| N | series | runs × rounds | operator p50 | operator p99 | operator reviews/s | operator CPU/review | floor p50 | floor p99 | floor reviews/s | floor CPU/review | p50 ÷ floor | p99 ÷ floor | throughput ÷ floor |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
        for &n in &sizes {
            let a: Vec<[Stats; 4]> = runs_of(n)
                .flat_map(|r| r.admission.iter().map(|m| m.map(|m| m.stats)))
                .collect();
            let cpu: Vec<[f64; 4]> = runs_of(n)
                .flat_map(|r| {
                    r.admission
                        .iter()
                        .map(|m| m.map(|m| m.cpu_per_review.as_secs_f64() * 1e6))
                })
                .collect();
            if a.is_empty() {
                continue;
            }
            for (k, label) in [(0usize, "sequential (1 connection)"), (1, "32 concurrent clients")] {
                let us = |d: Duration| d.as_secs_f64() * 1e6;
                let op = k;
                let fl = k + 2;
                admission_series[op]
                    .1
                    .push((n, agg(a.iter().map(|x| us(x[op].p99))).unwrap().median));
                admission_series[fl]
                    .1
                    .push((n, agg(a.iter().map(|x| us(x[fl].p99))).unwrap().median));
                let _ = writeln!(
                    md,
                    "| {n} | {label} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                    a.len(),
                    fmt_agg(agg(a.iter().map(|x| us(x[op].p50))), 0, " µs"),
                    fmt_agg(agg(a.iter().map(|x| us(x[op].p99))), 0, " µs"),
                    fmt_agg(agg(a.iter().map(|x| x[op].per_second)), 0, ""),
                    fmt_agg(agg(cpu.iter().map(|x| x[op])), 1, " µs"),
                    fmt_agg(agg(a.iter().map(|x| us(x[fl].p50))), 0, " µs"),
                    fmt_agg(agg(a.iter().map(|x| us(x[fl].p99))), 0, " µs"),
                    fmt_agg(agg(a.iter().map(|x| x[fl].per_second)), 0, ""),
                    fmt_agg(agg(cpu.iter().map(|x| x[fl])), 1, " µs"),
                    fmt_agg(
                        agg(a.iter().map(|x| x[op].p50.as_secs_f64() / x[fl].p50.as_secs_f64())),
                        2,
                        "×"
                    ),
                    fmt_agg(
                        agg(a.iter().map(|x| x[op].p99.as_secs_f64() / x[fl].p99.as_secs_f64())),
                        2,
                        "×"
                    ),
                    fmt_agg(agg(a.iter().map(|x| x[op].per_second / x[fl].per_second)), 2, "×"),
                );
            }
        }
        if options.webhook_alone {
            let _ = writeln!(
                md,
                "\nThe webhook alone (the product's server and an index of the same N connections, in a process of its \
                 own without the controller), per round against the operator and the floor of the same round:\n"
            );
            let _ = writeln!(
                md,
                "| N | series | runs × rounds | alone p50 | alone p99 | alone reviews/s | alone CPU/review | operator p99 ÷ alone | alone p99 ÷ floor | alone p50 ÷ floor |"
            );
            let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
            for &n in &sizes {
                let rounds: Vec<([Measured; 4], [Measured; 2])> = runs_of(n)
                    .flat_map(|r| r.admission.iter().copied().zip(r.alone.iter().copied()))
                    .collect();
                if rounds.is_empty() {
                    continue;
                }
                for (k, label) in [(0usize, "sequential (1 connection)"), (1, "32 concurrent clients")] {
                    let us = |d: Duration| d.as_secs_f64() * 1e6;
                    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
                    let _ = writeln!(
                        md,
                        "| {n} | {label} | {} | {} | {} | {} | {} | {} | {} | {} |",
                        rounds.len(),
                        fmt_agg(agg(rounds.iter().map(|(_, a)| us(a[k].stats.p50))), 0, " µs"),
                        fmt_agg(agg(rounds.iter().map(|(_, a)| us(a[k].stats.p99))), 0, " µs"),
                        fmt_agg(agg(rounds.iter().map(|(_, a)| a[k].stats.per_second)), 0, ""),
                        fmt_agg(agg(rounds.iter().map(|(_, a)| us(a[k].cpu_per_review))), 1, " µs"),
                        fmt_agg(
                            agg(rounds.iter().map(|(o, a)| ratio(o[k].stats.p99, a[k].stats.p99))),
                            2,
                            "×"
                        ),
                        fmt_agg(
                            agg(rounds.iter().map(|(o, a)| ratio(a[k].stats.p99, o[k + 2].stats.p99))),
                            2,
                            "×"
                        ),
                        fmt_agg(
                            agg(rounds.iter().map(|(o, a)| ratio(a[k].stats.p50, o[k + 2].stats.p50))),
                            2,
                            "×"
                        ),
                    );
                }
            }
        }
    }

    let mut memory_series: Vec<(String, Vec<(usize, f64)>)> = vec![
        ("first verification".into(), Vec::new()),
        ("restart".into(), Vec::new()),
        ("restart + unrelated Secrets".into(), Vec::new()),
    ];
    let _ = writeln!(
        md,
        "\n### Memory, start-up and steady state (64 instances, default flags)\n"
    );
    let _ = writeln!(
        md,
        "| N | runs | peak RSS, first verification | peak RSS after restart | … with N unrelated {} KiB Secrets | growth | start-up to /readyz (first) | (restart) | (with Secrets) | writes in {} s after convergence | requests in that window |",
        options.blob_kib, options.steady_window
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|---|");
    for &n in &sizes {
        let runs: Vec<&RunResult> = runs_of(n).collect();
        let first = verify_of(n, DEFAULTS);
        if first.is_empty() {
            continue;
        }
        let first_rss = agg(first.iter().map(|v| v.peak_rss_mib));
        let restart = agg(runs.iter().filter_map(|r| r.rss_restart_mib));
        let blobs = agg(runs.iter().filter_map(|r| r.rss_restart_blobs_mib));
        if let Some(a) = first_rss {
            memory_series[0].1.push((n, a.median));
        }
        if let Some(a) = restart {
            memory_series[1].1.push((n, a.median));
        }
        if let Some(a) = blobs {
            memory_series[2].1.push((n, a.median));
        }
        let growth = agg(runs
            .iter()
            .filter_map(|r| Some((r.rss_restart_blobs_mib? / r.rss_restart_mib? - 1.0) * 100.0)));
        let _ = writeln!(
            md,
            "| {n} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            runs.len(),
            fmt_agg(first_rss, 1, " MiB"),
            fmt_agg(restart, 1, " MiB"),
            fmt_agg(blobs, 1, " MiB"),
            fmt_agg(growth, 1, " %"),
            fmt_agg(agg(first.iter().map(|v| v.startup * 1000.0)), 0, " ms"),
            fmt_agg(
                agg(runs.iter().filter_map(|r| r.startup_restart.map(|s| s * 1000.0))),
                0,
                " ms"
            ),
            fmt_agg(
                agg(runs.iter().filter_map(|r| r.startup_restart_blobs.map(|s| s * 1000.0))),
                0,
                " ms"
            ),
            fmt_agg(
                agg(runs.iter().filter_map(|r| r.steady_writes.map(|w| w as f64))),
                0,
                ""
            ),
            fmt_agg(
                agg(runs.iter().filter_map(|r| r.steady_requests.map(|w| w as f64))),
                0,
                ""
            ),
        );
    }
    for r in results {
        if let Some(c) = &r.interval {
            let _ = writeln!(
                md,
                "\nAt `verifyInterval: 1m`, N={}: {} status writes in the {} s after convergence; mean gap between two \
                 status writes of one connection {:.1} s = {:.3} writes per connection per interval (→ {:.3} per \
                 connection per hour at the default 1h); shortest gap {:.1} s (the interval −10% jitter is 54 s); \
                 other writes in the window: {}.",
                r.n,
                c.writes,
                c.window,
                c.mean_gap_secs,
                c.writes_per_connection_per_interval,
                c.writes_per_connection_per_interval,
                c.min_gap_secs,
                c.other_writes
            );
        }
    }
    Report {
        markdown: md,
        panels: vec![
            ("Verification: time ÷ ideal".into(), "×".into(), verify_series),
            ("Admission p99 (µs)".into(), "µs".into(), admission_series),
            ("Peak RSS (MiB)".into(), "MiB".into(), memory_series),
        ],
    }
}

fn xml(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Three panels, N on a log axis, one polyline per series (medians).
fn svg(panels: &[Panel], sizes: &[usize]) -> String {
    const W: f64 = 330.0;
    const H: f64 = 230.0;
    const LEFT: f64 = 50.0;
    const TOP: f64 = 28.0;
    const PW: f64 = 250.0;
    const PH: f64 = 130.0;
    const COLORS: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
    let mut out = String::new();
    let width = W * panels.len() as f64;
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{}" font-family="sans-serif" font-size="10">"#,
        H + 70.0
    );
    let _ = writeln!(out, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let (lo, hi) = (
        (*sizes.iter().min().unwrap_or(&1) as f64).log10(),
        (*sizes.iter().max().unwrap_or(&10) as f64).log10(),
    );
    let span = if hi > lo { hi - lo } else { 1.0 };
    for (p, (title, _unit, series)) in panels.iter().enumerate() {
        let x0 = p as f64 * W + LEFT;
        let ymax = series
            .iter()
            .flat_map(|(_, pts)| pts.iter().map(|(_, y)| *y))
            .fold(0.0f64, f64::max)
            .max(1e-9)
            * 1.15;
        let _ = writeln!(
            out,
            r#"<text x="{}" y="16" font-size="12" font-weight="bold">{}</text>"#,
            x0,
            xml(title)
        );
        let _ = writeln!(
            out,
            r##"<rect x="{x0}" y="{TOP}" width="{PW}" height="{PH}" fill="none" stroke="#999"/>"##
        );
        for k in 0..=4 {
            let v = ymax * k as f64 / 4.0;
            let y = TOP + PH - PH * k as f64 / 4.0;
            let _ = writeln!(
                out,
                r##"<line x1="{x0}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                x0 + PW,
                x0 - 4.0,
                y + 3.0,
                if ymax < 10.0 {
                    format!("{v:.2}")
                } else {
                    format!("{v:.0}")
                }
            );
        }
        for &n in sizes {
            let x = x0 + 10.0 + (PW - 20.0) * ((n as f64).log10() - lo) / span;
            let _ = writeln!(
                out,
                r#"<text x="{x:.1}" y="{}" text-anchor="middle">{n}</text>"#,
                TOP + PH + 12.0
            );
        }
        let _ = writeln!(
            out,
            r#"<text x="{}" y="{}" text-anchor="middle">connections (log scale)</text>"#,
            x0 + PW / 2.0,
            TOP + PH + 24.0
        );
        for (s, (label, points)) in series.iter().enumerate() {
            let color = COLORS[s % COLORS.len()];
            let coords: Vec<(f64, f64)> = points
                .iter()
                .map(|(n, y)| {
                    (
                        x0 + 10.0 + (PW - 20.0) * ((*n as f64).log10() - lo) / span,
                        TOP + PH - PH * y / ymax,
                    )
                })
                .collect();
            let path: Vec<String> = coords.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            let _ = writeln!(
                out,
                r#"<polyline points="{}" fill="none" stroke="{color}" stroke-width="1.5"/>"#,
                path.join(" ")
            );
            for (x, y) in &coords {
                let _ = writeln!(out, r#"<circle cx="{x:.1}" cy="{y:.1}" r="2.5" fill="{color}"/>"#);
            }
            let ly = TOP + PH + 38.0 + 11.0 * s as f64;
            let _ = writeln!(
                out,
                r#"<rect x="{x0}" y="{}" width="10" height="3" fill="{color}"/><text x="{}" y="{ly}">{}</text>"#,
                ly - 4.0,
                x0 + 14.0,
                xml(label)
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

// ---- main -----------------------------------------------------------------------------

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--webhook-server") {
        if args.len() != 5 {
            usage();
        }
        webhook_server_main(&args[1], &args[2], &args[3], &args[4]);
        return;
    }
    if args.first().map(String::as_str) == Some("--floor-server") {
        if args.len() != 4 {
            usage();
        }
        floor_server_main(&args[1], &args[2], &args[3]);
        return;
    }
    let options = parse_options(&args);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::Builder::new().prefix("scale-bench-").tempdir().unwrap();
    println!(
        "scale benchmark: API {:?}, sizes {:?}, {} run(s), scenarios {:?}; operator logs in {}",
        options.api,
        options.sizes,
        options.runs,
        options.scenarios,
        dir.path().display()
    );
    let pki = Pki::new();
    let _ = (&pki.cert_pem, &pki.key_pem);
    if let Some(concurrency) = options.first_verification {
        let mut lines = Vec::new();
        runtime.block_on(async {
            for &n in &options.sizes {
                for _ in 0..options.runs_for.get(&n).copied().unwrap_or(options.runs) {
                    lines.push(first_verification::run(n, concurrency, options.api, &pki, dir.path()).await);
                }
            }
        });
        if let Some(out) = &options.report {
            std::fs::create_dir_all(out).unwrap();
            std::fs::write(out.join("first-verification.md"), lines.join("\n") + "\n").unwrap();
        }
        return;
    }
    if options.provider_mix {
        let mut rows = Vec::new();
        runtime.block_on(async {
            for &n in &options.sizes {
                for run in 1..=options.runs_for.get(&n).copied().unwrap_or(options.runs) {
                    rows.extend(provider_mix::run(n, run, options.api, &pki, dir.path()).await);
                }
            }
        });
        let table = provider_mix::table(&rows);
        println!("\n{table}");
        if let Some(out) = &options.report {
            std::fs::create_dir_all(out).unwrap();
            std::fs::write(out.join("provider-mix.md"), &table).unwrap();
        }
        return;
    }
    let mut results = Vec::new();
    runtime.block_on(async {
        for &n in &options.sizes {
            for run in 1..=options.runs_for.get(&n).copied().unwrap_or(options.runs) {
                let mut result = one_run(n, run, &options, &pki, dir.path()).await;
                if run == 1 && options.interval_window > 0 && n == *options.sizes.iter().min().unwrap() {
                    let check = interval_check(options.api, n, options.interval_window, &pki, dir.path()).await;
                    println!("  N={n} interval check: {check:?}");
                    result.interval = Some(check);
                }
                results.push(result);
            }
        }
    });
    let report = report(&results, &options);
    println!("\n{}", report.markdown);
    if let Some(out) = &options.report {
        std::fs::create_dir_all(out).unwrap();
        std::fs::write(out.join("scale-results.md"), &report.markdown).unwrap();
        let mut sizes = options.sizes.clone();
        sizes.sort();
        std::fs::write(out.join("scale.svg"), svg(&report.panels, &sizes)).unwrap();
        println!(
            "wrote {} and {}",
            out.join("scale-results.md").display(),
            out.join("scale.svg").display()
        );
    }
    // keep the logs when asked to look at them
    if std::env::var_os("SCALE_KEEP_LOGS").is_some() {
        let kept = dir.keep();
        println!("operator logs kept in {}", kept.display());
    }
}
