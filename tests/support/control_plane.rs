//! A real Kubernetes control plane for tests: kube-apiserver and etcd as local processes,
//! started by `scripts/control-plane` (the same command people use), as controller-runtime's
//! envtest does.
//!
//! - [`ControlPlane::shared`] is the one control plane of a test run: `scripts/test` starts it
//!   and names its folder in `GPO_CONTROL_PLANE_DIR`; a test run without it (a developer's
//!   `cargo nextest run --test e2e`) starts one under `target/control-plane` and leaves it
//!   running for the next run (`scripts/control-plane down --dir target/control-plane` stops
//!   it). Every test works in namespaces of its own ([`ControlPlane::namespace`]); there is no
//!   controller-manager, so deleted namespaces never finish terminating.
//! - [`ControlPlane::private`] is a control plane of one test's own, for what would disturb
//!   the others (restarting kube-apiserver, installing a chart); stopped when dropped.
//!
//! Once per control plane the project's CRD is applied (and Established), and the chart's
//! ServiceAccount and RBAC (`deploy/`) are applied, so operators run with the chart's
//! identity through a TokenRequest token ([`ControlPlane::operator_kubeconfig`]), never as
//! admin. kube-apiserver writes an audit log of every request; [`AuditLog`] reads it as the
//! tests' record of API traffic.

use super::record::{RecordedRequest, Target};
use serde::Deserialize;
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// The project's root (where `scripts/` and `crds/` are).
pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// The namespace the chart installs into; the operator's Leases and certificate Secret live here.
pub const SYSTEM_NAMESPACE: &str = "gitprovider-system";
/// What would send a child's requests to loopback through a proxy.
pub const PROXY_VARIABLES: [&str; 8] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];
/// The chart's ServiceAccount (release `gitprovider-operator`).
pub const OPERATOR_SERVICE_ACCOUNT: &str = "gitprovider-operator";

/// A running control plane.
pub struct ControlPlane {
    dir: PathBuf,
    env: HashMap<String, String>,
    /// Stopped (and its folder removed) when dropped.
    owned: bool,
    operator_kubeconfig: OnceLock<PathBuf>,
}

/// Runs `scripts/control-plane ARGS`; its stdout, or its stderr as the error.
pub fn script(args: &[&str]) -> Result<String, String> {
    let output = Command::new(Path::new(ROOT).join("scripts/control-plane"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("scripts/control-plane cannot run: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    if output.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "scripts/control-plane {} failed ({}):\n{}{}",
            args.join(" "),
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// The folder of kube-apiserver, etcd and kubectl (`scripts/control-plane assets`).
pub fn assets() -> PathBuf {
    static ASSETS: OnceLock<PathBuf> = OnceLock::new();
    ASSETS
        .get_or_init(|| match script(&["assets"]) {
            Ok(out) => PathBuf::from(out.trim()),
            Err(e) => panic!("{e}"),
        })
        .clone()
}

/// The helm v4 binary (`scripts/control-plane helm`).
pub fn helm() -> PathBuf {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| match script(&["helm"]) {
        Ok(out) => PathBuf::from(out.trim()),
        Err(e) => panic!("{e}"),
    })
    .clone()
}

impl ControlPlane {
    /// The test run's control plane (see the module documentation).
    pub fn shared() -> &'static ControlPlane {
        static SHARED: OnceLock<ControlPlane> = OnceLock::new();
        SHARED.get_or_init(|| {
            let dir = match std::env::var_os("GPO_CONTROL_PLANE_DIR") {
                // Started by scripts/test, which stops it when the run ends.
                Some(dir) => PathBuf::from(dir),
                None => {
                    let dir = Path::new(ROOT).join("target/control-plane");
                    // Test processes start in parallel: `--reuse` starts it at most once.
                    if let Err(e) = script(&["up", "--dir", &dir.display().to_string(), "--reuse"]) {
                        panic!("the shared control plane did not start: {e}");
                    }
                    dir
                }
            };
            let plane = ControlPlane::open(dir, false);
            plane.prepare();
            plane
        })
    }

    /// A control plane of the caller's own with the CRD and the chart's identity, stopped when
    /// dropped.
    pub fn private() -> ControlPlane {
        let plane = ControlPlane::private_bare();
        plane.prepare();
        plane
    }

    /// A control plane of the caller's own with nothing applied (for installing the chart).
    pub fn private_bare() -> ControlPlane {
        ControlPlane::private_bare_with(&[])
    }

    /// [`ControlPlane::private`] started with extra `scripts/control-plane up` options (e.g.
    /// `--webhook-client-cert`).
    pub fn private_with(options: &[&str]) -> ControlPlane {
        let plane = ControlPlane::private_bare_with(options);
        plane.prepare();
        plane
    }

    fn private_bare_with(options: &[&str]) -> ControlPlane {
        let parent = Path::new(ROOT).join("target/control-planes");
        std::fs::create_dir_all(&parent).expect("target/control-planes");
        let dir = parent.join(format!("cp-{}-{}", std::process::id(), fastrand::u32(..)));
        let dir_arg = dir.display().to_string();
        let args: Vec<&str> = ["up", "--dir", &dir_arg]
            .into_iter()
            .chain(options.iter().copied())
            .collect();
        if let Err(e) = script(&args) {
            panic!("a private control plane did not start: {e}");
        }
        ControlPlane::open(dir, true)
    }

    /// A control plane someone else started in `dir` (e.g. `scripts/quickstart`); not stopped
    /// when dropped, nothing applied.
    pub fn open_existing(dir: &Path) -> ControlPlane {
        ControlPlane::open(dir.to_owned(), false)
    }

    fn open(dir: PathBuf, owned: bool) -> ControlPlane {
        let text = std::fs::read_to_string(dir.join("env")).unwrap_or_else(|e| panic!("{}/env: {e}", dir.display()));
        let env = text
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().trim_matches('"').to_owned()))
            .collect();
        ControlPlane {
            dir,
            env,
            owned,
            operator_kubeconfig: OnceLock::new(),
        }
    }

    fn var(&self, key: &str) -> &str {
        self.env
            .get(key)
            .unwrap_or_else(|| panic!("{} has no {key}", self.dir.join("env").display()))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The admin kubeconfig (`system:masters`).
    pub fn kubeconfig(&self) -> PathBuf {
        PathBuf::from(self.var("KUBECONFIG"))
    }

    /// With `up --webhook-client-cert`: the CA of the client certificate kube-apiserver presents
    /// to webhooks, and the name it carries.
    pub fn webhook_client(&self) -> Option<(PathBuf, String)> {
        let ca = self.env.get("WEBHOOK_CLIENT_CA")?;
        let name = self.env.get("WEBHOOK_CLIENT_NAME")?;
        Some((PathBuf::from(ca), name.clone()))
    }

    /// `https://127.0.0.1:PORT`
    pub fn server_url(&self) -> &str {
        self.var("KUBE_APISERVER_URL")
    }

    /// `http://127.0.0.1:PORT`
    pub fn etcd_url(&self) -> &str {
        self.var("ETCD_URL")
    }

    pub fn audit_log_path(&self) -> PathBuf {
        PathBuf::from(self.var("AUDIT_LOG"))
    }

    /// The kubectl that matches the server's version.
    pub fn kubectl_path(&self) -> PathBuf {
        PathBuf::from(self.var("KUBECTL"))
    }

    /// A `kubectl` command with the admin kubeconfig and no proxy.
    pub fn kubectl(&self) -> Command {
        let mut command = Command::new(self.kubectl_path());
        // A discovery cache of its own: ports are reused by later control planes, and a cache
        // from one without the CRD made `kubectl explain gpc` fail.
        command
            .env("KUBECONFIG", self.kubeconfig())
            .env("KUBECACHEDIR", self.dir.join("kube-cache"))
            .stdin(Stdio::null());
        for proxy in PROXY_VARIABLES {
            command.env_remove(proxy);
        }
        command
    }

    /// Runs kubectl with `args`: its stdout, or a panic with its output.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let output = self.kubectl().args(args).output().expect("kubectl runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        assert!(
            output.status.success(),
            "kubectl {}: {}\n{stdout}{}",
            args.join(" "),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        stdout
    }

    /// An admin kube client.
    pub async fn client(&self) -> kube::Client {
        client_from(&self.kubeconfig()).await
    }

    /// Applies the CRD and the chart's identity once per control plane (a marker file says it
    /// was done; applying twice is harmless, so racing test processes need no lock).
    fn prepare(&self) {
        let marker = self.dir.join("prepared");
        if marker.exists() {
            return;
        }
        let root = Path::new(ROOT);
        let files = [
            "deploy/namespace.yaml",
            "crds/gitproviderconnections.yaml",
            "deploy/serviceaccount.yaml",
            "deploy/rbac.yaml",
        ];
        for file in files.map(|f| root.join(f)) {
            self.kubectl_ok(&[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager",
                "gpo-tests",
                "-f",
                &file.display().to_string(),
            ]);
        }
        self.kubectl_ok(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd/gitproviderconnections.gitprovider.dev",
        ]);
        // Established comes a moment before discovery serves the kind (what kubectl resolves
        // `gpc` through): wait for that too, bounded.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let listed = self.kubectl_ok(&["api-resources", "--api-group=gitprovider.dev", "-o", "name"]);
            if listed.lines().any(|l| l.starts_with("gitproviderconnections.")) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "discovery did not list gitproviderconnections within 30 s"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = std::fs::write(marker, "");
    }

    /// A kubeconfig for the chart's ServiceAccount (a TokenRequest token): what the operator
    /// runs with in a cluster, so its RBAC is proven by every scenario.
    pub fn operator_kubeconfig(&self) -> PathBuf {
        self.operator_kubeconfig
            .get_or_init(|| self.service_account_kubeconfig(SYSTEM_NAMESPACE, OPERATOR_SERVICE_ACCOUNT))
            .clone()
    }

    /// A kubeconfig (written into the control plane's folder) that authenticates as the
    /// ServiceAccount `namespace/name` with a TokenRequest token of 4 hours.
    pub fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> PathBuf {
        let token = self.kubectl_ok(&["create", "token", name, "-n", namespace, "--duration", "4h"]);
        let ca = std::fs::read(self.dir.join("ca.crt")).expect("ca.crt");
        let path = self
            .dir
            .join(format!("{namespace}-{name}-{}.kubeconfig", std::process::id()));
        let contents = format!(
            "apiVersion: v1
kind: Config
clusters:
- name: control-plane
  cluster:
    server: {server}
    certificate-authority-data: {ca}
contexts:
- name: {name}
  context:
    cluster: control-plane
    user: {name}
current-context: {name}
users:
- name: {name}
  user:
    token: {token}
",
            server = self.server_url(),
            ca = b64(&ca),
            token = token.trim(),
        );
        std::fs::write(&path, contents).expect("write the ServiceAccount kubeconfig");
        path
    }

    /// `kubectl apply -f -` of a manifest (an object or a List); panics with kubectl's words.
    pub fn apply(&self, manifest: &serde_json::Value) {
        let (ok, output) = run_with_stdin(self.kubectl().args(["apply", "-f", "-"]), &manifest.to_string());
        assert!(ok, "{output}");
    }

    /// The full user name the operator authenticates as.
    pub fn operator_user(&self) -> String {
        format!("system:serviceaccount:{SYSTEM_NAMESPACE}:{OPERATOR_SERVICE_ACCOUNT}")
    }

    /// Creates a namespace `PREFIX-XXXXXX` (random) and returns its name.
    pub fn namespace(&self, prefix: &str) -> String {
        let name = format!("{prefix}-{}", random_suffix());
        self.kubectl_ok(&["create", "namespace", &name]);
        name
    }

    /// The audit log, read from its current end: what other tests did before is skipped.
    pub fn audit(&self) -> AuditLog {
        AuditLog::from_end(self.audit_log_path())
    }

    /// `scripts/control-plane compact`: compacts etcd at its current revision.
    pub fn compact(&self) -> u64 {
        let out = script(&["compact", "--dir", &self.dir.display().to_string()]).unwrap_or_else(|e| panic!("{e}"));
        out.trim().parse().unwrap_or_else(|_| panic!("compact printed {out:?}"))
    }

    /// `scripts/control-plane restart-apiserver`: every watch breaks; the watch cache of the
    /// new kube-apiserver starts at etcd's current revision.
    pub fn restart_apiserver(&self) {
        assert!(self.owned, "only a private control plane may be restarted");
        script(&["restart-apiserver", "--dir", &self.dir.display().to_string()]).unwrap_or_else(|e| panic!("{e}"));
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        if self.owned
            && let Err(e) = script(&["down", "--dir", &self.dir.display().to_string()])
        {
            eprintln!("{e}");
        }
    }
}

/// `gitprovider-operator ARGS` with a kubeconfig, and without what would change what it does
/// here: RUST_LOG, KUBECONFIG, proxies (the API server is on loopback).
pub fn binary(args: &[&str], kubeconfig: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gitprovider-operator"));
    command
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env_remove("RUST_LOG")
        .env_remove("KUBECONFIG");
    for proxy in PROXY_VARIABLES {
        command.env_remove(proxy);
    }
    command
}

/// Runs `command` with `stdin`: (success, stdout + stderr).
pub fn run_with_stdin(command: &mut Command, stdin: &str) -> (bool, String) {
    use std::io::Write;
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let output = child.wait_with_output().expect("the command finishes");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// A kube client from a kubeconfig file, as the operator builds one.
pub async fn client_from(path: &Path) -> kube::Client {
    let kubeconfig = kube::config::Kubeconfig::read_from(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    kube::Client::try_from(config).expect("kube client")
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Six lowercase letters and digits.
pub fn random_suffix() -> String {
    (0..6)
        .map(|_| {
            let i = fastrand::usize(..36);
            char::from_digit(i as u32, 36).unwrap_or('x')
        })
        .collect()
}

// ---- the audit log ---------------------------------------------------------------------

/// kube-apiserver's audit log (JSON lines) as a growing request record. Reads only what was
/// appended since the last look; keeps only requests that concern the given namespaces (all,
/// if none are given) or are cluster-scoped.
pub struct AuditLog {
    path: PathBuf,
    state: Mutex<AuditState>,
}

struct AuditState {
    offset: u64,
    namespaces: Vec<String>,
    records: Vec<RecordedRequest>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuditEvent {
    stage: String,
    #[serde(default)]
    verb: String,
    #[serde(default, rename = "requestURI")]
    request_uri: String,
    #[serde(default)]
    user: AuditUser,
    #[serde(default)]
    user_agent: Option<String>,
    #[serde(default)]
    object_ref: Option<AuditObjectRef>,
    #[serde(default)]
    response_status: Option<AuditStatus>,
    #[serde(default)]
    request_object: Option<serde_json::Value>,
}

#[derive(Default, Deserialize)]
struct AuditUser {
    #[serde(default)]
    username: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuditObjectRef {
    #[serde(default)]
    resource: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    api_group: Option<String>,
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    subresource: Option<String>,
}

#[derive(Deserialize)]
struct AuditStatus {
    #[serde(default)]
    code: u16,
    #[serde(default)]
    message: Option<String>,
}

impl AuditLog {
    fn from_end(path: PathBuf) -> AuditLog {
        let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        AuditLog {
            path,
            state: Mutex::new(AuditState {
                offset,
                namespaces: Vec::new(),
                records: Vec::new(),
            }),
        }
    }

    /// Keeps only requests in these namespaces (and cluster-scoped ones).
    pub fn only_namespaces(self, namespaces: &[String]) -> AuditLog {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).namespaces = namespaces.to_vec();
        self
    }

    /// Every request recorded so far (stage ResponseComplete, or ResponseStarted for watches).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.read_new(&mut state);
        state.records.clone()
    }

    /// How many requests satisfy `pred`.
    pub fn count(&self, pred: impl Fn(&RecordedRequest) -> bool) -> usize {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.read_new(&mut state);
        state.records.iter().filter(|r| pred(r)).count()
    }

    /// Requests whose body or response message mentions `needle`.
    pub fn requests_mentioning(&self, needle: &str) -> Vec<RecordedRequest> {
        self.requests().into_iter().filter(|r| r.mentions(needle)).collect()
    }

    /// Waits until the log holds a request that satisfies `pred` (the audit event of a request
    /// is written as its response completes, so it may trail the response by a moment).
    pub async fn wait_for(&self, what: &str, within: Duration, pred: impl Fn(&RecordedRequest) -> bool) {
        let deadline = Instant::now() + within;
        while self.count(&pred) == 0 {
            assert!(Instant::now() < deadline, "audit log: no {what} within {within:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn read_new(&self, state: &mut AuditState) {
        let Ok(file) = std::fs::File::open(&self.path) else {
            return;
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len < state.offset {
            // Rotated: start over in the new file.
            state.offset = 0;
        }
        let mut reader = BufReader::new(file);
        if reader.seek(SeekFrom::Start(state.offset)).is_err() {
            return;
        }
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if !line.ends_with('\n') {
                        // A line still being written: read it whole next time.
                        break;
                    }
                    state.offset += n as u64;
                    if !state.namespaces.is_empty() && !state.namespaces.iter().any(|ns| line.contains(ns.as_str())) {
                        // Cheap pre-filter; cluster-scoped requests that concern the test
                        // mention its namespace too (e.g. a webhook configuration's selector).
                        continue;
                    }
                    if let Ok(event) = serde_json::from_str::<AuditEvent>(&line)
                        && let Some(record) = record_of(event, &state.namespaces)
                    {
                        state.records.push(record);
                    }
                }
            }
        }
    }
}

fn record_of(event: AuditEvent, namespaces: &[String]) -> Option<RecordedRequest> {
    let complete = event.stage == "ResponseComplete" || (event.stage == "ResponseStarted" && event.verb == "watch");
    if !complete {
        return None;
    }
    if let Some(ns) = event.object_ref.as_ref().and_then(|o| o.namespace.as_ref())
        && !namespaces.is_empty()
        && !namespaces.contains(ns)
    {
        return None;
    }
    let (path, query) = match event.request_uri.split_once('?') {
        Some((p, q)) => (p.to_owned(), q.to_owned()),
        None => (event.request_uri.clone(), String::new()),
    };
    let method = match event.verb.as_str() {
        "get" | "list" | "watch" => "GET",
        "create" => "POST",
        "update" => "PUT",
        "patch" => "PATCH",
        "delete" | "deletecollection" => "DELETE",
        _ => "",
    };
    let (status, message) = event
        .response_status
        .map(|s| (s.code, s.message.unwrap_or_default()))
        .unwrap_or((0, String::new()));
    let target = event.object_ref.map(|o| Target {
        verb: event.verb.clone(),
        group: o.api_group.unwrap_or_default(),
        version: o.api_version.unwrap_or_default(),
        resource: o.resource,
        namespace: o.namespace,
        name: o.name,
        subresource: o.subresource,
    });
    Some(RecordedRequest {
        method: method.to_owned(),
        path,
        query,
        content_type: None,
        accept: None,
        user_agent: event.user_agent,
        user: Some(event.user.username),
        body: event
            .request_object
            .map(|b| serde_json::to_vec(&b).unwrap_or_default())
            .unwrap_or_default(),
        status,
        response_body: message.into_bytes(),
        time: SystemTime::now(),
        target,
    })
}
