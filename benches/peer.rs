//! Side by side with a public peer: `benches/peer/run` (see `BENCHMARKS.md`), which builds
//! External Secrets Operator from `tools/external-secrets` and runs
//! `cargo bench --bench peer -- --eso BIN --eso-crds DIR [--sizes 1000,10000] ...`.
//!
//! For each size N, one real control plane (`benches/support/real_api.rs`) holds N token
//! Secrets, N GitProviderConnections and N ESO GitLab SecretStores reading the same Secrets,
//! all pointing at one GitLab stand-in (`tests/support/fake_providers/gitlab.rs`) that answers
//! every request after a fixed latency. Our operator, then ESO, each alone, as ServiceAccounts
//! of their own (`benches/support/contender.rs`):
//!
//! 1. start to all Ready (each object's first status write, then a list showing all Ready),
//!    peak RSS, CPU, API requests and provider requests;
//! 2. a window after convergence at the same interval (1m by default): API requests and writes per object
//!    per interval, CPU;
//! 3. at the largest size, N unrelated Secrets of 50 KiB more, and each restarted until every
//!    object was validated again: peak RSS.

#[path = "support/contender.rs"]
mod contender;
#[path = "support/peer_eso.rs"]
mod eso;
#[path = "support/peer_report.rs"]
mod peer_report;
#[path = "support/process.rs"]
mod process;
#[path = "support/profile.rs"]
mod profile;
#[path = "support/real_api.rs"]
mod real_api;
#[path = "../tests/support/mod.rs"]
mod support;

use contender::{Converged, Running, Spec, Steady};
use futures::StreamExt;
use gitprovider_operator::api::GitProviderConnection;
use kube::Api;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
use real_api::RealApi;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};
use support::fake_providers::{FakeGitLab, Fault, TokenSpec};

const NAMESPACES: usize = 100;
const TOKEN: &str = "glpat-peerbenchmark0123456789";

#[derive(Debug, Clone)]
pub struct Options {
    pub sizes: Vec<usize>,
    /// ESO `--concurrent`, ours `--max-concurrent-verifications` (per-host cap off).
    pub concurrency: u16,
    pub latency: Duration,
    /// Both validate every M minutes: ours `verifyInterval: Mm`, ESO `--store-requeue-interval`.
    pub interval_secs: u64,
    pub window: Duration,
    /// Unrelated Secrets added at the largest size (0: skip) and their size.
    pub blobs: usize,
    pub blob_kib: usize,
    pub eso: PathBuf,
    pub eso_crds: PathBuf,
    pub eso_version: String,
    /// The ESO runs, one after the other: its client-side rate limit as shipped, and/or off.
    pub eso_client_limits: Vec<eso::ClientLimits>,
    /// CPU profiles for the first S seconds of each contender's convergence at the largest
    /// size (0: none).
    pub profile_secs: u64,
    pub report: PathBuf,
}

fn usage() -> ! {
    eprintln!(
        "usage: cargo bench --bench peer -- --eso BIN --eso-crds DIR [--eso-version v0.16.2]\n\
         \x20      [--sizes 1000,10000] [--concurrency 32] [--latency-ms 50] [--window SECS]\n\
         \x20      [--blobs 10000] [--blob-kib 50] [--eso-client-limits shipped,off]\n\
         \x20      [--profile-secs S]\n\
         \x20      [--report DIR]"
    );
    std::process::exit(2)
}

fn parse_options(args: &[String]) -> Options {
    let mut options = Options {
        sizes: vec![1_000, 10_000],
        concurrency: 32,
        latency: Duration::from_millis(50),
        interval_secs: 60,
        window: Duration::from_secs(120),
        blobs: 10_000,
        blob_kib: 50,
        eso: PathBuf::new(),
        eso_crds: PathBuf::new(),
        eso_version: "v0.16.2".to_owned(),
        eso_client_limits: vec![eso::ClientLimits::Shipped, eso::ClientLimits::Off],
        profile_secs: 0,
        report: PathBuf::from("benchmarks/peer"),
    };
    let number = |v: String| -> usize { v.replace('_', "").parse().unwrap_or_else(|_| usage()) };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().cloned().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--bench" => {}
            "--sizes" => options.sizes = value().split(',').map(|v| number(v.trim().to_owned())).collect(),
            "--concurrency" => options.concurrency = value().parse().unwrap_or_else(|_| usage()),
            "--latency-ms" => options.latency = Duration::from_millis(number(value()) as u64),
            "--interval-minutes" => options.interval_secs = 60 * number(value()).max(1) as u64,
            "--window" => options.window = Duration::from_secs(number(value()) as u64),
            "--blobs" => options.blobs = number(value()),
            "--blob-kib" => options.blob_kib = number(value()),
            "--eso" => options.eso = PathBuf::from(value()),
            "--eso-crds" => options.eso_crds = PathBuf::from(value()),
            "--eso-version" => options.eso_version = value(),
            "--eso-client-limits" => {
                options.eso_client_limits = value()
                    .split(',')
                    .map(|v| eso::ClientLimits::parse(v.trim()).unwrap_or_else(|| usage()))
                    .collect()
            }
            "--profile-secs" => options.profile_secs = number(value()) as u64,
            "--report" => options.report = PathBuf::from(value()),
            _ => usage(),
        }
    }
    if options.eso.as_os_str().is_empty()
        || options.eso_crds.as_os_str().is_empty()
        || options.concurrency == 0
        || options.eso_client_limits.is_empty()
    {
        usage();
    }
    options
}

/// What one contender did at one size.
#[derive(Clone, Debug, Default)]
pub struct Measured {
    pub first: Converged,
    pub steady: Option<Steady>,
    /// Restarted with the unrelated Secrets present.
    pub with_blobs: Option<Converged>,
}

/// Every contender at one size: ours, then each ESO run (in `Options::eso_client_limits` order).
#[derive(Clone, Debug)]
pub struct SizeResult {
    pub n: usize,
    pub seed_secs: f64,
    pub blobs_secs: Option<f64>,
    pub ours: Measured,
    pub peers: Vec<Measured>,
    /// /proc/loadavg when this size started and ended.
    pub load: (String, String),
}

fn ns_of(i: usize) -> String {
    format!("ns-{}", i % NAMESPACES)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Creates `make(0..n)` (namespaced objects of `resource`), `parallel` at a time.
async fn create_all(
    client: &kube::Client,
    resource: &ApiResource,
    n: usize,
    parallel: usize,
    make: impl Fn(usize) -> Value,
) {
    futures::stream::iter((0..n).map(|i| {
        let object: DynamicObject = serde_json::from_value(make(i)).expect("a Kubernetes object");
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns_of(i), resource);
        async move {
            for tries in 0.. {
                match api.create(&PostParams::default(), &object).await {
                    Ok(_) => return,
                    // a retry of a create that went through
                    Err(kube::Error::Api(status)) if tries > 0 && status.code == 409 => return,
                    Err(error) if tries < 5 => {
                        eprintln!("create failed ({error}); retrying");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(error) => panic!("cannot create {}: {error}", resource.plural),
                }
            }
        }
    }))
    .buffer_unordered(parallel)
    .collect::<Vec<()>>()
    .await;
}

fn secret_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", "Secret"), "secrets")
}

fn secret(name: String, namespace: String, key: &str, value: &[u8]) -> Value {
    use base64::Engine as _;
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": name, "namespace": namespace},
        "type": "Opaque",
        "data": {key: base64::engine::general_purpose::STANDARD.encode(value)},
    })
}

fn connection(i: usize, url: &str, interval: &str) -> Value {
    json!({
        "apiVersion": "gitprovider.dev/v1alpha1", "kind": "GitProviderConnection",
        "metadata": {"name": format!("conn-{i}"), "namespace": ns_of(i)},
        "spec": {
            "provider": "GitLab",
            "instanceName": format!("inst-{i}"),
            "url": url,
            "tokenSecretRef": {"name": format!("pat-{i}")},
            "verifyInterval": interval,
        },
    })
}

/// Waits until kube-apiserver and etcd are quiet (together under a tenth of a core over a
/// second, three seconds running; at most 120 s), so that neither contender starts while the
/// server still digests the seeding or the other contender's traffic. Returns the seconds waited.
async fn settle(real: &RealApi) -> f64 {
    let started = Instant::now();
    let busy = || {
        let u = real.usage();
        u.apiserver_cpu + u.etcd_cpu
    };
    let mut quiet = 0;
    let mut before = busy();
    while quiet < 3 && started.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = busy();
        quiet = if now.saturating_sub(before) < Duration::from_millis(100) {
            quiet + 1
        } else {
            0
        };
        before = now;
    }
    started.elapsed().as_secs_f64()
}

/// Removes the status of `resource`'s objects `0..n` (named as `eso::store` names them).
async fn clear_status(client: &kube::Client, resource: &ApiResource, n: usize) {
    let started = Instant::now();
    futures::stream::iter((0..n).map(|i| {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns_of(i), resource);
        async move {
            let patch = kube::api::Patch::Merge(json!({"status": null}));
            api.patch_status(&eso::store_name(i), &kube::api::PatchParams::default(), &patch)
                .await
                .unwrap_or_else(|e| panic!("cannot clear the status of {}: {e}", eso::store_name(i)));
        }
    }))
    .buffer_unordered(64)
    .collect::<Vec<()>>()
    .await;
    println!(
        "cleared the status of {n} {} in {:.1}s",
        resource.plural,
        started.elapsed().as_secs_f64()
    );
}

/// Ours: `--max-concurrent-verifications C` with the per-host cap off (one GitLab, and ESO has
/// no such cap); no webhook certificate, so no webhook (ESO runs without its webhook too).
fn ours(real: &RealApi, concurrency: u16) -> Spec {
    let args = [
        "run",
        "--bind-address",
        "127.0.0.1",
        // Ports the kernel picks at each start: a port found free once may be some connection's
        // by the time of the restart with the unrelated Secrets.
        "--metrics-port",
        "0",
        "--webhook-port",
        "0",
        "--max-concurrent-verifications",
        &concurrency.to_string(),
        "--max-in-flight-per-host",
        "0",
    ];
    Spec {
        label: "gitprovider-operator".to_owned(),
        stem: "gitprovider-operator".to_owned(),
        program: PathBuf::from(env!("CARGO_BIN_EXE_gitprovider-operator")),
        args: args.iter().map(|a| (*a).to_owned()).collect(),
        kubeconfig: real.operator_kubeconfig().to_owned(),
        user: real.plane().operator_user(),
        resource: ApiResource::erase::<GitProviderConnection>(&()),
    }
}

fn peer(options: &Options, limits: eso::ClientLimits, kubeconfig: PathBuf) -> Spec {
    Spec {
        label: format!(
            "external-secrets {} (client limits {})",
            options.eso_version,
            limits.name()
        ),
        stem: format!("external-secrets-{}", limits.name()),
        program: options.eso.clone(),
        args: eso::args(options.concurrency, &format!("{}s", options.interval_secs), limits),
        kubeconfig,
        user: eso::user(),
        resource: ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(eso::GROUP, eso::VERSION, eso::KIND),
            eso::RESOURCE,
        ),
    }
}

async fn one_size(n: usize, largest: bool, options: &Options) -> SizeResult {
    let load_start = load_average();
    let gitlab = FakeGitLab::start().await;
    gitlab.add_token(
        TOKEN,
        TokenSpec::user("peer-bench").email("peer@example.com").scopes(["api"]),
    );
    gitlab.fault(None, Fault::Delay(options.latency), None);
    let url = gitlab.url().to_string().trim_end_matches('/').to_owned();
    let provider = || gitlab.requests().len();
    let namespaces: Vec<String> = (0..NAMESPACES).map(ns_of).collect();
    let real = RealApi::start(&namespaces)
        .await
        .unwrap_or_else(|e| panic!("the control plane did not start: {e}"));
    let plane = real.plane();
    let eso_kubeconfig = tokio::task::block_in_place(|| eso::prepare(&plane, &options.eso_crds));
    let client = real.client();
    let started = Instant::now();
    let interval = format!("{}m", options.interval_secs / 60);
    create_all(&client, &secret_resource(), n, 64, |i| {
        secret(format!("pat-{i}"), ns_of(i), "token", TOKEN.as_bytes())
    })
    .await;
    let mut specs = vec![ours(&real, options.concurrency)];
    for &limits in &options.eso_client_limits {
        specs.push(peer(options, limits, eso_kubeconfig.clone()));
    }
    create_all(&client, &specs[0].resource, n, 64, |i| connection(i, &url, &interval)).await;
    create_all(&client, &specs[1].resource, n, 64, |i| {
        eso::store(i, &ns_of(i), &url, &format!("pat-{i}"))
    })
    .await;
    let seed_secs = started.elapsed().as_secs_f64();
    println!("N={n}: seeded {n} Secrets, connections and SecretStores in {seed_secs:.1}s");
    let timeout = Duration::from_secs(1_800);
    let mut measured = Vec::new();
    for (index, spec) in specs.iter().enumerate() {
        if index > 1 {
            // Each ESO run starts from SecretStores no ESO has validated yet, as the first did.
            clear_status(&client, &spec.resource, n).await;
        }
        let log = options.report.join(format!("{}-{n}.log", spec.stem));
        let settled = settle(&real).await;
        println!("N={n}: control plane settled in {settled:.1}s before {}", spec.label);
        let mut running = Running::start(spec, &real, &log);
        let profiles = (largest && options.profile_secs > 0).then(|| {
            let stem = format!("{}-{n}", spec.stem);
            profile::Profiles::start(&options.report, &stem, running.pid(), &plane, options.profile_secs)
        });
        let first = running.converge(&real, n, provider, timeout).await;
        println!("N={n} {}: {first:?}", spec.label);
        if let Some(profiles) = profiles {
            tokio::task::block_in_place(|| profiles.finish());
        }
        let steady = if options.window.is_zero() {
            None
        } else {
            let steady = running
                .steady(&real, Duration::from_secs(10), options.window, provider)
                .await;
            println!("N={n} {} steady: {steady:?}", spec.label);
            Some(steady)
        };
        running.stop();
        measured.push(Measured {
            first,
            steady,
            with_blobs: None,
        });
    }
    let mut blobs_secs = None;
    if largest && options.blobs > 0 {
        let started = Instant::now();
        let blob: Vec<u8> = (0..options.blob_kib * 1024).map(|_| fastrand::u8(..)).collect();
        create_all(&client, &secret_resource(), options.blobs, 16, |i| {
            secret(format!("unrelated-{i}"), ns_of(i), "blob", &blob)
        })
        .await;
        blobs_secs = Some(started.elapsed().as_secs_f64());
        println!(
            "N={n}: {} unrelated Secrets created in {:.1}s",
            options.blobs,
            started.elapsed().as_secs_f64()
        );
        for (spec, m) in specs.iter().zip(measured.iter_mut()) {
            let log = options.report.join(format!("{}-{n}-blobs.log", spec.stem));
            let settled = settle(&real).await;
            println!("N={n}: control plane settled in {settled:.1}s before {}", spec.label);
            let mut running = Running::start(spec, &real, &log);
            let again = running.converge(&real, n, provider, timeout).await;
            println!("N={n} {} with unrelated Secrets: {again:?}", spec.label);
            running.stop();
            m.with_blobs = Some(again);
        }
    }
    let mut measured = measured.into_iter();
    SizeResult {
        n,
        seed_secs,
        blobs_secs,
        ours: measured.next().unwrap_or_default(),
        peers: measured.collect(),
        load: (load_start, load_average()),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = parse_options(&args);
    std::fs::create_dir_all(&options.report).unwrap_or_else(|e| panic!("{}: {e}", options.report.display()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a Tokio runtime");
    println!("peer benchmark: {options:?}");
    let largest = options.sizes.iter().copied().max().unwrap_or(0);
    let results: Vec<SizeResult> = runtime.block_on(async {
        let mut results = Vec::new();
        for &n in &options.sizes {
            results.push(one_size(n, n == largest, &options).await);
        }
        results
    });
    let markdown = peer_report::markdown(&results, &options);
    println!("\n{markdown}");
    let path = options.report.join("report.md");
    std::fs::write(&path, &markdown).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    println!("wrote {}", path.display());
}
