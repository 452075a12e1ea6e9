//! The end-to-end harness: the real `gitprovider-operator` binary as a child process, against
//! a real kube-apiserver and etcd (`tests/support/control_plane.rs`) and local provider servers.
//!
//! - [`Operator`] runs `gitprovider-operator run` with `KUBECONFIG` pointing at the API server,
//!   free ports for metrics and the webhook on 127.0.0.1 and `RUST_LOG=debug`; it captures
//!   stdout and stderr in buffers (one reader thread per pipe), prints them when the test
//!   fails, and kills the process when dropped.
//! - [`Cluster`] is one test's world: two namespaces of its own on the run's shared control
//!   plane (or a control plane of its own), an admin kube client, the
//!   operator's kubeconfig (the chart's ServiceAccount), a fake GitLab with known tokens, a
//!   throw-away CA and a webhook certificate for 127.0.0.1, the API request record (the audit
//!   log), and helpers for Secrets, connections, the webhook configuration and bounded waits.
//!   [`Cluster::relay`] puts a fault-injecting relay between an operator and kube-apiserver.
//!
//! Every wait polls against a deadline; nothing relies on a bare sleep for synchronisation.

// Each test binary that includes the harness uses a part of it.
#![allow(dead_code)]

use crate::support::control_plane::{AuditLog, ControlPlane, PROXY_VARIABLES, SYSTEM_NAMESPACE, random_suffix};
use crate::support::fake_providers::{FakeGitLab, TokenSpec};
use crate::support::pki::TestCa;
use crate::support::record::RecordedRequest;
use crate::support::relay::Relay;
use base64::Engine as _;
use gitprovider_operator::api::GitProviderConnection;
use k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::events::v1::Event;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_gitprovider-operator");
/// A token the fake GitLab accepts (user jdoe).
pub const TOKEN: &str = "glpat-e2e-valid-5f0c2a7d91";
/// A token the fake GitLab knows as revoked.
pub const REVOKED: &str = "glpat-e2e-revoked-83b1e4";
/// "Within seconds": how long a reaction may take before a test fails. Reactions normally
/// take well under a second; the margin is for a loaded 2-core machine running tests in
/// parallel.
pub const WAIT: Duration = Duration::from_secs(20);

pub use crate::support::eventually;

/// An IPv4 address of this machine that is not loopback (`hostname -I`): where kube-apiserver
/// may be sent through a Service's endpoints, which must not be loopback addresses.
pub fn non_loopback_address() -> IpAddr {
    let output = Command::new("hostname").arg("-I").output().expect("hostname -I runs");
    String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .filter_map(|a| a.parse::<IpAddr>().ok())
        .find(|a| a.is_ipv4() && !a.is_loopback() && !a.is_unspecified())
        .unwrap_or_else(|| {
            panic!(
                "this machine has no IPv4 address besides loopback (`hostname -I` printed {:?})",
                String::from_utf8_lossy(&output.stdout)
            )
        })
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

// ---- the operator process -------------------------------------------------------------

/// Everything a child wrote, per stream.
#[derive(Clone, Default)]
pub struct Output {
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

impl Output {
    fn pump(reader: impl Read + Send + 'static, sink: Arc<Mutex<Vec<u8>>>) -> std::thread::JoinHandle<()> {
        std::thread::spawn(move || {
            let mut reader = BufReader::new(reader);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => sink.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(&line),
                }
            }
        })
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.stdout.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }

    /// Both streams, stdout first.
    pub fn all(&self) -> String {
        format!("{}{}", self.stdout(), self.stderr())
    }
}

/// How to run one operator process.
#[derive(Clone, Debug, Default)]
pub struct OperatorSpec {
    /// `POD_NAME`: the replica's identity (Lease holder, Events' reportingInstance).
    pub name: String,
    /// Arguments after `run` besides ports and the bind address.
    pub args: Vec<String>,
    /// A fixed webhook port (when a Service's endpoints must name it in advance); free
    /// otherwise.
    pub webhook_port: Option<u16>,
    /// The kubeconfig to run with instead of the cluster's (e.g. through a [`Relay`]).
    pub kubeconfig: Option<PathBuf>,
    /// Where metrics and the webhook listen; 127.0.0.1 by default.
    pub bind_address: Option<IpAddr>,
}

impl OperatorSpec {
    pub fn new(name: &str) -> OperatorSpec {
        OperatorSpec {
            name: name.to_owned(),
            ..OperatorSpec::default()
        }
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> OperatorSpec {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    pub fn webhook_port(mut self, port: u16) -> OperatorSpec {
        self.webhook_port = Some(port);
        self
    }

    pub fn kubeconfig(mut self, path: PathBuf) -> OperatorSpec {
        self.kubeconfig = Some(path);
        self
    }

    pub fn bind_address(mut self, address: IpAddr) -> OperatorSpec {
        self.bind_address = Some(address);
        self
    }
}

/// A running `gitprovider-operator run`. Killed (SIGKILL) when dropped, unless it exited.
pub struct Operator {
    pub name: String,
    child: Child,
    output: Output,
    pumps: Vec<std::thread::JoinHandle<()>>,
    pub metrics_addr: SocketAddr,
    pub webhook_addr: SocketAddr,
    exit: Option<ExitStatus>,
    http: reqwest::Client,
    /// How much of its output the `forbidden` check reads (all of it when `None`): a `forbidden`
    /// answer in its log fails the test, as the operator runs with the chart's RBAC.
    forbidden_checked_until: Option<usize>,
}

impl Operator {
    /// Starts the binary and waits until `/healthz` answers. A port taken between choosing it
    /// and binding it (other tests run in parallel) is retried with other ports.
    pub async fn start(kubeconfig: &Path, spec: &OperatorSpec) -> Operator {
        let mut last_failure = String::new();
        for _attempt in 0..4 {
            let metrics_port = free_port();
            let webhook_port = spec.webhook_port.unwrap_or_else(free_port);
            let mut operator = Operator::spawn(kubeconfig, spec, metrics_port, webhook_port);
            match operator.wait_healthy(Duration::from_secs(30)).await {
                Ok(()) => return operator,
                Err(why) => {
                    let logs = operator.output.all();
                    if logs.contains("cannot listen on") {
                        last_failure = format!("{why}\n{logs}");
                        continue;
                    }
                    panic!(
                        "operator {} did not come up: {why}\n--- its output ---\n{logs}",
                        spec.name
                    );
                }
            }
        }
        panic!("operator {} could not bind its ports: {last_failure}", spec.name);
    }

    fn spawn(kubeconfig: &Path, spec: &OperatorSpec, metrics_port: u16, webhook_port: u16) -> Operator {
        let bind = spec.bind_address.unwrap_or(IpAddr::from([127, 0, 0, 1]));
        let mut command = Command::new(BIN);
        command
            .arg("run")
            .args(["--bind-address", &bind.to_string()])
            .args(["--metrics-port", &metrics_port.to_string()])
            .args(["--webhook-port", &webhook_port.to_string()])
            .args(&spec.args)
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "debug")
            .env("POD_NAME", &spec.name)
            .env_remove("POD_NAMESPACE")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("KUBERNETES_SERVICE_PORT");
        for proxy in PROXY_VARIABLES {
            command.env_remove(proxy);
        }
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("the operator binary starts");
        let output = Output::default();
        let pumps = vec![
            Output::pump(child.stdout.take().expect("stdout"), output.stdout.clone()),
            Output::pump(child.stderr.take().expect("stderr"), output.stderr.clone()),
        ];
        Operator {
            name: spec.name.clone(),
            child,
            output,
            pumps,
            metrics_addr: SocketAddr::new(bind, metrics_port),
            webhook_addr: SocketAddr::new(bind, webhook_port),
            exit: None,
            http: plain_http_client(),
            forbidden_checked_until: None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn output(&self) -> &Output {
        &self.output
    }

    /// stdout and stderr so far.
    pub fn logs(&self) -> String {
        self.output.all()
    }

    /// `https://127.0.0.1:PORT/validate`
    pub fn webhook_url(&self) -> String {
        format!("https://{}/validate", self.webhook_addr)
    }

    /// Whether the process has exited (and records how).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().ok().flatten();
        }
        self.exit
    }

    async fn wait_healthy(&mut self, within: Duration) -> Result<(), String> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.exited() {
                // Let the reader threads drain what it wrote before it died.
                tokio::time::sleep(Duration::from_millis(100)).await;
                return Err(format!("it exited with {status}"));
            }
            if let Ok((200, _)) = self.get("/healthz").await {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("/healthz did not answer within {within:?}"));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// GET on the metrics port: status and body.
    pub async fn get(&self, path: &str) -> Result<(u16, String), String> {
        let response = self
            .http
            .get(format!("http://{}{path}", self.metrics_addr))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        let body = response.text().await.map_err(|e| e.to_string())?;
        Ok((status, body))
    }

    /// Waits until `/readyz` answers 200.
    pub async fn wait_ready(&self) {
        eventually(&format!("{} /readyz 200", self.name), WAIT, || async {
            match self.get("/readyz").await {
                Ok((200, _)) => Ok(()),
                other => Err(format!("{other:?}")),
            }
        })
        .await
    }

    /// `/metrics` text.
    pub async fn metrics(&self) -> String {
        match self.get("/metrics").await {
            Ok((200, body)) => body,
            other => panic!("{} /metrics: {other:?}", self.name),
        }
    }

    /// Sends SIGTERM with `kill -TERM PID`.
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM {} failed: {status}", self.pid());
    }

    /// Waits for the process to exit, at most `within`.
    pub async fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.exited() {
                for pump in self.pumps.drain(..) {
                    let _ = pump.join();
                }
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// From now on a `forbidden` answer does not fail the test: right after kube-apiserver
    /// restarts, its RBAC authorizer denies until its informers have synced the bindings.
    pub fn tolerate_forbidden_from_now(&mut self) {
        self.forbidden_checked_until = Some(self.output.all().len());
    }

    /// Waits until a log line contains `needle`.
    pub async fn wait_log(&self, needle: &str) {
        eventually(&format!("{} logs {needle:?}", self.name), WAIT, || async {
            if self.logs().contains(needle) {
                Ok(())
            } else {
                Err("not yet".to_owned())
            }
        })
        .await
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        if self.exited().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        for pump in self.pumps.drain(..) {
            let _ = pump.join();
        }
        let all = self.output.all();
        let checked = self
            .forbidden_checked_until
            .map_or(all.as_str(), |n| all.get(..n).unwrap_or(&all));
        let forbidden = checked.to_ascii_lowercase().contains("forbidden");
        if std::thread::panicking() || forbidden {
            eprintln!(
                "===== operator {} (pid {}) stdout =====\n{}\n===== operator {} stderr =====\n{}\n===== end of operator {} =====",
                self.name,
                self.child.id(),
                self.output.stdout(),
                self.name,
                self.output.stderr(),
                self.name
            );
        }
        if forbidden && !std::thread::panicking() {
            panic!(
                "operator {}: the API server answered forbidden: the chart's RBAC is not enough",
                self.name
            );
        }
    }
}

/// A client for the plain-HTTP metrics port (rustls is configured only because the project
/// builds reqwest without a default crypto provider).
fn plain_http_client() -> reqwest::Client {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("HTTP client")
}

// ---- the world of one test ------------------------------------------------------------

/// A CA and a webhook serving certificate for `127.0.0.1`/`localhost`, as PEM files.
pub struct WebhookPki {
    pub ca_pem: String,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl WebhookPki {
    pub fn new() -> WebhookPki {
        let ca = TestCa::new("gitprovider-operator e2e webhook CA").expect("CA");
        let cert = ca.issue(&["127.0.0.1", "localhost"]).expect("webhook certificate");
        let dir = tempfile::Builder::new()
            .prefix("gpo-e2e-tls-")
            .tempdir()
            .expect("temp dir");
        let cert_file = dir.path().join("tls.crt");
        let key_file = dir.path().join("tls.key");
        std::fs::write(&cert_file, &cert.cert_pem).expect("write certificate");
        std::fs::write(&key_file, &cert.key_pem).expect("write key");
        WebhookPki {
            ca_pem: ca.cert_pem().to_owned(),
            cert_file,
            key_file,
            _dir: dir,
        }
    }

    /// `--tls-cert-file F --tls-key-file F`
    pub fn args(&self) -> Vec<String> {
        vec![
            "--tls-cert-file".into(),
            self.cert_file.display().to_string(),
            "--tls-key-file".into(),
            self.key_file.display().to_string(),
        ]
    }
}

pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The run's shared control plane, or one of a test's own.
pub enum Plane {
    Shared(&'static ControlPlane),
    Private(ControlPlane),
}

impl std::ops::Deref for Plane {
    type Target = ControlPlane;
    fn deref(&self) -> &ControlPlane {
        match self {
            Plane::Shared(p) => p,
            Plane::Private(p) => p,
        }
    }
}

/// One test's API server, namespaces, client, GitLab and webhook PKI.
pub struct Cluster {
    plane: Plane,
    /// The API request record: kube-apiserver's audit log.
    audit: AuditLog,
    pub client: Client,
    pub gitlab: FakeGitLab,
    pub pki: WebhookPki,
    /// The test's two namespaces (unique on a shared control plane).
    pub ns: String,
    pub other_ns: String,
    /// Name of the Lease operators elect a leader through (in [`SYSTEM_NAMESPACE`]).
    pub lease_id: String,
    /// Name of the ValidatingWebhookConfiguration [`Cluster::install_webhook`] creates.
    pub webhook_configuration: String,
}

impl Cluster {
    /// On the run's shared control plane, in namespaces of its own.
    pub async fn start() -> Cluster {
        Cluster::on(Plane::Shared(ControlPlane::shared())).await
    }

    /// On a control plane of its own (for restarting kube-apiserver).
    pub async fn start_private() -> Cluster {
        Cluster::start_private_with(&[]).await
    }

    /// On a control plane of its own started with extra `scripts/control-plane up` options.
    pub async fn start_private_with(options: &'static [&'static str]) -> Cluster {
        let plane = tokio::task::spawn_blocking(move || ControlPlane::private_with(options))
            .await
            .expect("the control plane starts");
        Cluster::on(Plane::Private(plane)).await
    }

    async fn on(plane: Plane) -> Cluster {
        let (ns, other_ns) = (plane.namespace("team-a"), plane.namespace("team-b"));
        let suffix = random_suffix();
        let audit = plane
            .audit()
            .only_namespaces(&[ns.clone(), other_ns.clone(), SYSTEM_NAMESPACE.to_owned()]);
        let client = plane.client().await;
        let gitlab = FakeGitLab::start().await;
        gitlab.add_token(TOKEN, TokenSpec::jane_doe());
        gitlab.add_token(REVOKED, TokenSpec::user("jdoe").revoked());
        Cluster {
            plane,
            audit,
            client,
            gitlab,
            pki: WebhookPki::new(),
            ns,
            other_ns,
            lease_id: format!("gpo-e2e-{suffix}"),
            webhook_configuration: format!("gpo-e2e-{suffix}"),
        }
    }

    /// A new admin client (after kube-apiserver restarted).
    pub async fn reconnect(&mut self) {
        self.client = self.plane.client().await;
    }

    /// The control plane.
    pub fn plane(&self) -> &ControlPlane {
        &self.plane
    }

    /// The kubeconfig operators run with: the chart's ServiceAccount.
    pub fn operator_kubeconfig(&self) -> PathBuf {
        self.plane.operator_kubeconfig()
    }

    /// A [`Relay`] in front of the real kube-apiserver, and the operator's kubeconfig through it.
    pub async fn relay(&self) -> (Relay, PathBuf) {
        let plane = self.plane();
        let server = plane.server_url();
        let upstream: SocketAddr = server
            .trim_start_matches("https://")
            .parse()
            .unwrap_or_else(|e| panic!("{server}: {e}"));
        let relay = Relay::start(upstream).await;
        let direct = std::fs::read_to_string(plane.operator_kubeconfig()).expect("the operator's kubeconfig");
        let path = plane
            .dir()
            .join(format!("operator-via-relay-{}.kubeconfig", random_suffix()));
        std::fs::write(&path, direct.replace(server, &relay.url())).expect("write the relayed kubeconfig");
        (relay, path)
    }

    /// `--leader-elect` with the test's Lease.
    pub fn election_args(&self) -> Vec<String> {
        vec![
            "--leader-elect".into(),
            "--leader-election-namespace".into(),
            SYSTEM_NAMESPACE.into(),
            "--leader-election-id".into(),
            self.lease_id.clone(),
        ]
    }

    /// Starts an operator serving the webhook with the file-based certificate.
    pub async fn operator(&self, name: &str) -> Operator {
        self.operator_with(OperatorSpec::new(name).args(self.pki.args())).await
    }

    /// Starts an operator confined to the test's namespaces.
    pub async fn operator_with(&self, spec: OperatorSpec) -> Operator {
        let spec = spec.args(["--namespace", &self.ns, "--namespace", &self.other_ns]);
        let kubeconfig = spec.kubeconfig.clone().unwrap_or_else(|| self.operator_kubeconfig());
        Operator::start(&kubeconfig, &spec).await
    }

    /// Every API request of this test so far (from the audit log).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.audit.requests()
    }

    pub fn count(&self, pred: impl Fn(&RecordedRequest) -> bool) -> usize {
        self.audit.count(pred)
    }

    pub fn requests_mentioning(&self, needle: &str) -> Vec<RecordedRequest> {
        self.requests().into_iter().filter(|r| r.mentions(needle)).collect()
    }

    pub fn connections(&self, ns: &str) -> Api<GitProviderConnection> {
        Api::namespaced(self.client.clone(), ns)
    }

    pub fn secrets(&self, ns: &str) -> Api<Secret> {
        Api::namespaced(self.client.clone(), ns)
    }

    /// Creates or replaces Secret `ns/name` with `{token: <token>}` (as `data`).
    pub async fn put_secret(&self, ns: &str, name: &str, token: &str) {
        let mut secret: Secret = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": ns},
            "type": "Opaque",
            "data": {"token": b64(token)},
        }))
        .expect("secret");
        let api = self.secrets(ns);
        match api.get_opt(name).await.expect("read Secret") {
            Some(existing) => {
                secret.metadata.resource_version = existing.metadata.resource_version;
                api.replace(name, &PostParams::default(), &secret)
                    .await
                    .expect("replace Secret");
            }
            None => {
                api.create(&PostParams::default(), &secret)
                    .await
                    .expect("create Secret");
            }
        }
    }

    /// A connection to the fake GitLab; `extra` is merged into the spec.
    pub fn connection(
        &self,
        ns: &str,
        name: &str,
        instance: &str,
        secret: &str,
        extra: Value,
    ) -> GitProviderConnection {
        let mut spec = json!({
            "provider": "GitLab",
            "instanceName": instance,
            "url": self.gitlab.url().as_str(),
            "tokenSecretRef": {"name": secret},
        });
        json_patch::merge(&mut spec, &extra);
        serde_json::from_value(json!({
            "apiVersion": "gitprovider.dev/v1alpha1", "kind": "GitProviderConnection",
            "metadata": {"name": name, "namespace": ns},
            "spec": spec,
        }))
        .expect("connection")
    }

    pub async fn try_create(
        &self,
        ns: &str,
        name: &str,
        instance: &str,
        secret: &str,
        extra: Value,
    ) -> Result<GitProviderConnection, kube::Error> {
        let conn = self.connection(ns, name, instance, secret, extra);
        self.connections(ns).create(&PostParams::default(), &conn).await
    }

    pub async fn create(
        &self,
        ns: &str,
        name: &str,
        instance: &str,
        secret: &str,
        extra: Value,
    ) -> GitProviderConnection {
        match self.try_create(ns, name, instance, secret, extra).await {
            Ok(conn) => conn,
            Err(e) => panic!("create {ns}/{name}: {e}"),
        }
    }

    /// A JSON merge patch of the connection's spec.
    pub async fn patch_spec(&self, ns: &str, name: &str, spec: Value) -> GitProviderConnection {
        self.connections(ns)
            .patch(name, &PatchParams::default(), &Patch::Merge(&json!({"spec": spec})))
            .await
            .unwrap_or_else(|e| panic!("patch {ns}/{name}: {e}"))
    }

    /// Waits until the connection's Ready reason is `reason`.
    pub async fn wait_reason(&self, ns: &str, name: &str, reason: &str) -> GitProviderConnection {
        self.wait_status(ns, name, reason, |_| true).await
    }

    /// Waits until Ready has `reason` and `also` holds.
    pub async fn wait_status(
        &self,
        ns: &str,
        name: &str,
        reason: &str,
        also: impl Fn(&GitProviderConnection) -> bool,
    ) -> GitProviderConnection {
        let api = self.connections(ns);
        eventually(&format!("{ns}/{name} Ready reason {reason}"), WAIT, || async {
            let conn = api.get(name).await.map_err(|e| e.to_string())?;
            if conn.ready_condition().is_some_and(|c| c.reason == reason) && also(&conn) {
                Ok(conn)
            } else {
                Err(serde_json::to_string(&conn.status).unwrap_or_default())
            }
        })
        .await
    }

    /// Status writes (patch or update of the status subresource) of connections; `name` narrows.
    pub fn status_writes(&self, name: Option<&str>) -> usize {
        self.count(|r| {
            r.is_status_write()
                && r.target.as_ref().is_some_and(|t| {
                    t.resource == "gitproviderconnections" && name.is_none_or(|n| t.name.as_deref() == Some(n))
                })
        })
    }

    /// Writes of Events (either API).
    pub fn event_writes(&self) -> usize {
        self.count(|r| r.is_write() && r.target.as_ref().is_some_and(|t| t.resource == "events"))
    }

    /// events.k8s.io/v1 Events about connection `ns/name`.
    pub async fn events_for(&self, ns: &str, name: &str) -> Vec<Event> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), ns);
        api.list(&ListParams::default())
            .await
            .expect("list events")
            .items
            .into_iter()
            .filter(|e| {
                e.regarding.as_ref().is_some_and(|r| {
                    r.kind.as_deref() == Some("GitProviderConnection") && r.name.as_deref() == Some(name)
                })
            })
            .collect()
    }

    /// Creates the test's ValidatingWebhookConfiguration for CREATE and UPDATE of connections,
    /// calling `url` and trusting the test webhook CA. It selects only the test's namespaces.
    pub async fn install_webhook(&self, url: &str, failure_policy: &str) {
        let config = self.webhook_configuration(
            &self.webhook_configuration,
            json!({"url": url, "caBundle": b64(&self.pki.ca_pem)}),
            failure_policy,
        );
        let api: Api<ValidatingWebhookConfiguration> = Api::all(self.client.clone());
        api.create(&PostParams::default(), &config)
            .await
            .expect("create the webhook configuration");
        if failure_policy == "Fail" {
            self.wait_webhook_in_effect().await;
        }
    }

    /// kube-apiserver picks up a new webhook configuration from its informer a moment after the
    /// create returns: until then, writes are admitted without calling it. Waits (bounded) until
    /// a dry-run create comes back with the webhook's http:// warning (a dry run reserves no
    /// name).
    pub async fn wait_webhook_in_effect(&self) {
        let probe = serde_json::to_value(self.connection(&self.ns, "webhook-probe", "webhook-probe", "pat", json!({})))
            .expect("JSON");
        let path = format!(
            "/apis/gitprovider.dev/v1alpha1/namespaces/{}/gitproviderconnections?dryRun=All",
            self.ns
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, warnings, _) = self.raw("POST", &path, &probe).await;
            if warnings.iter().any(|w| w.contains("spec.url uses http://")) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the webhook configuration was not in effect within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The holder of the test's Lease ([`Cluster::election_args`]), if any.
    pub async fn lease_holder(&self) -> Option<String> {
        let api: Api<Lease> = Api::namespaced(self.client.clone(), SYSTEM_NAMESPACE);
        api.get_opt(&self.lease_id)
            .await
            .expect("read Lease")
            .and_then(|l| l.spec)
            .and_then(|s| s.holder_identity)
            .filter(|h| !h.is_empty())
    }

    /// A raw request through the test's kube client: status, `Warning` headers and body.
    pub async fn raw(&self, method: &str, path: &str, body: &Value) -> (u16, Vec<String>, Value) {
        gitprovider_operator::doctor::request_with_warnings(&self.client, method, path, body)
            .await
            .expect("request sent")
    }

    /// Requests that mention `needle` and are not Secret traffic.
    pub fn non_secret_requests_mentioning(&self, needle: &str) -> Vec<RecordedRequest> {
        self.requests_mentioning(needle)
            .into_iter()
            .filter(|r| r.target.as_ref().is_none_or(|t| t.resource != "secrets"))
            .collect()
    }

    /// [`webhook_configuration`], selecting only the test's namespaces (the control plane may be
    /// shared).
    pub fn webhook_configuration(
        &self,
        name: &str,
        client_config: Value,
        failure_policy: &str,
    ) -> ValidatingWebhookConfiguration {
        let mut config = webhook_configuration(name, client_config, failure_policy);
        let selector = json!({"matchExpressions": [{
            "key": "kubernetes.io/metadata.name",
            "operator": "In",
            "values": [self.ns, self.other_ns],
        }]});
        for webhook in config.webhooks.iter_mut().flatten() {
            webhook.namespace_selector = Some(serde_json::from_value(selector.clone()).expect("selector"));
        }
        config
    }
}

/// A ValidatingWebhookConfiguration for CREATE and UPDATE of connections.
pub fn webhook_configuration(name: &str, client_config: Value, failure_policy: &str) -> ValidatingWebhookConfiguration {
    serde_json::from_value(json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": name},
        "webhooks": [{
            "name": "validate.gitproviderconnections.gitprovider.dev",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": failure_policy,
            "timeoutSeconds": 5,
            "clientConfig": client_config,
            "rules": [{
                "apiGroups": ["gitprovider.dev"],
                "apiVersions": ["v1alpha1"],
                "operations": ["CREATE", "UPDATE"],
                "resources": ["gitproviderconnections"],
                "scope": "Namespaced",
            }],
        }],
    }))
    .expect("webhook configuration")
}

/// The message of an API error.
pub fn api_error(result: Result<GitProviderConnection, kube::Error>) -> kube::core::Status {
    match result {
        Err(kube::Error::Api(status)) => *status,
        Err(other) => panic!("expected an API error, got {other}"),
        Ok(conn) => panic!(
            "expected a denial, but {}/{} was created",
            conn.metadata.namespace.unwrap_or_default(),
            conn.metadata.name.unwrap_or_default()
        ),
    }
}
