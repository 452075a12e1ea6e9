//! The provider mix of `--provider-mix`: one stand-in per provider variant, each answering
//! every request after the same fixed latency with what the operator's verification of that
//! provider reads (shapes as in `tests/support/fake_providers`), requests counted per variant.
//!
//! Variants: GitLab self-managed, GitHub Enterprise Server, Gitea, Bitbucket Data Center, Azure
//! DevOps Server (`deploymentType: onPremises`) and Azure DevOps Services (`hosted`: the cloud
//! path of that provider, whose requests are the same). The cloud variants of GitHub, GitLab and
//! Bitbucket are told apart by their real host names (github.com, gitlab.com, bitbucket.org), which
//! a release binary cannot be pointed away from; their request plans are the self-hosted ones
//! (GitLab) or proven in `tests/round_trips.rs` (github.com, Bitbucket Cloud).

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    GitLab,
    GitHubServer,
    Gitea,
    BitbucketServer,
    AzureServer,
    AzureServices,
}

pub const VARIANTS: [Variant; 6] = [
    Variant::GitLab,
    Variant::GitHubServer,
    Variant::Gitea,
    Variant::BitbucketServer,
    Variant::AzureServer,
    Variant::AzureServices,
];

impl Variant {
    pub fn label(self) -> &'static str {
        match self {
            Variant::GitLab => "GitLab self-managed",
            Variant::GitHubServer => "GitHub Enterprise Server",
            Variant::Gitea => "Gitea",
            Variant::BitbucketServer => "Bitbucket Data Center",
            Variant::AzureServer => "Azure DevOps Server",
            Variant::AzureServices => "Azure DevOps Services (hosted)",
        }
    }

    fn provider(self) -> &'static str {
        match self {
            Variant::GitLab => "GitLab",
            Variant::GitHubServer => "GitHub",
            Variant::Gitea => "Gitea",
            Variant::BitbucketServer => "Bitbucket",
            Variant::AzureServer | Variant::AzureServices => "AzureDevOps",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Variant::AzureServer => "/tfs/DefaultCollection",
            Variant::AzureServices => "/fabrikam",
            _ => "",
        }
    }

    /// Status, extra headers and body for `path` (the query left out).
    fn answer(self, path: &str) -> (u16, Vec<(&'static str, &'static str)>, Value) {
        let user = || json!({"id": 1, "username": USER, "login": USER, "name": "Bench User", "full_name": "Bench User", "email": "bench@example.com"});
        let found = match self {
            Variant::GitLab => match path {
                "/api/v4/personal_access_tokens/self" => Some(json!({
                    "id": 1, "name": "bench", "revoked": false, "active": true,
                    "scopes": ["read_api"], "expires_at": "2099-01-01", "user_id": 1
                })),
                "/api/v4/user" => Some(user()),
                "/api/v4/version" => Some(json!({"version": "17.5.1", "revision": "0"})),
                _ => None,
            },
            Variant::GitHubServer => match path {
                "/api/v3/user" => Some(user()),
                "/api/v3/user/emails" => Some(json!([
                    {"email": "bench@example.com", "primary": true, "verified": true, "visibility": "public"}
                ])),
                _ => None,
            },
            Variant::Gitea => match path {
                "/api/v1/user" => Some(user()),
                "/api/v1/user/repos" => Some(json!([])),
                "/api/v1/version" => Some(json!({"version": "1.22.3"})),
                _ => None,
            },
            Variant::BitbucketServer => match path {
                "/rest/api/1.0/repos" => {
                    Some(json!({"size": 0, "limit": 1, "isLastPage": true, "values": [], "start": 0}))
                }
                "/rest/api/1.0/users/bench" => Some(json!({
                    "name": USER, "slug": USER, "displayName": "Bench User", "emailAddress": "bench@example.com"
                })),
                "/rest/api/1.0/application-properties" => Some(json!({"version": "8.19.5", "buildNumber": "8019005"})),
                _ => None,
            },
            Variant::AzureServer | Variant::AzureServices => {
                let collection = self.path();
                if path == format!("{collection}/_apis/connectionData") {
                    let deployment = if self == Variant::AzureServices {
                        "hosted"
                    } else {
                        "onPremises"
                    };
                    Some(json!({
                        "authenticatedUser": {
                            "id": "6b0d5d4e-0000-0000-0000-000000000001",
                            "providerDisplayName": "Bench User",
                            "properties": {"Account": {"$type": "System.String", "$value": "bench@example.com"}}
                        },
                        "instanceId": "00000000-0000-0000-0000-000000000002",
                        "deploymentType": deployment
                    }))
                } else if path == format!("{collection}/_apis/projects") {
                    Some(json!({"count": 1, "value": [{"id": "p", "name": "project"}]}))
                } else {
                    None
                }
            }
        };
        let headers = match self {
            Variant::GitHubServer => vec![
                ("x-oauth-scopes", "repo, user"),
                ("x-github-enterprise-version", "3.14.0"),
            ],
            Variant::BitbucketServer => vec![("x-ausername", USER)],
            _ => Vec::new(),
        };
        match found {
            Some(body) => (200, headers, body),
            None => (404, headers, json!({"message": "Not Found"})),
        }
    }
}

/// The user every stand-in's token belongs to.
const USER: &str = "bench";

/// One stand-in per variant, each answering after `delay`.
pub struct MixProviders {
    pub addrs: Vec<(Variant, SocketAddr)>,
    counts: Vec<Arc<AtomicU64>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// `SCALE_MIX_USERNAMES` is set: Bitbucket Data Center connections state their user.
    usernames: bool,
}

impl MixProviders {
    pub async fn start(delay: Duration) -> MixProviders {
        let mut addrs = Vec::new();
        let mut counts = Vec::new();
        let mut tasks = Vec::new();
        for variant in VARIANTS {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            addrs.push((variant, listener.local_addr().unwrap()));
            let count = Arc::new(AtomicU64::new(0));
            counts.push(count.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let _ = tcp.set_nodelay(true);
                    let count = count.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                            let count = count.clone();
                            async move {
                                count.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(delay).await;
                                let (status, headers, body) = variant.answer(request.uri().path());
                                let mut response = Response::builder()
                                    .status(status)
                                    .header("content-type", "application/json; charset=utf-8");
                                for (name, value) in headers {
                                    response = response.header(name, value);
                                }
                                Ok::<_, std::convert::Infallible>(
                                    response.body(axum::body::Body::from(body.to_string())).unwrap(),
                                )
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tcp), service)
                            .await;
                    });
                }
            }));
        }
        MixProviders {
            addrs,
            counts,
            tasks,
            usernames: std::env::var_os("SCALE_MIX_USERNAMES").is_some(),
        }
    }

    /// All requests so far.
    pub fn requests(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Requests so far per variant, in [`VARIANTS`] order.
    pub fn per_variant(&self) -> Vec<u64> {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect()
    }

    /// Connection `i`'s spec: its variant's provider and stand-in. With `SCALE_MIX_USERNAMES` set, Bitbucket Data Center connections
    /// state the token's user name (`spec.username`), as the README suggests for that provider.
    pub fn spec(&self, i: usize, secret: &str, interval: &str) -> Value {
        let (variant, addr) = self.addrs[i % self.addrs.len()];
        let mut spec = json!({
            "provider": variant.provider(),
            "instanceName": format!("inst-{i}"),
            "url": format!("http://{addr}{}", variant.path()),
            "tokenSecretRef": {"name": secret},
            "verifyInterval": interval,
        });
        if variant == Variant::BitbucketServer && self.usernames {
            spec["username"] = json!(USER);
        }
        spec
    }
}

impl Drop for MixProviders {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

// ---- the runs -------------------------------------------------------------------------

impl crate::RequestCount for MixProviders {
    fn requests(&self) -> u64 {
        MixProviders::requests(self)
    }
}

/// One row of the provider-mix table.
pub struct MixRow {
    pub n: usize,
    pub run: usize,
    pub setting: &'static str,
    pub from_ready: f64,
    pub ideal: f64,
    /// Provider requests per verification, in [`VARIANTS`] order, and over all.
    pub per_variant: Vec<f64>,
    pub overall: f64,
    pub ready: usize,
    pub writes: (usize, usize),
    pub cpu_secs: f64,
    /// This process's CPU meanwhile: the API emulator (or the audit-log reader) and the stand-ins.
    pub harness_cpu_secs: f64,
    pub load: (String, String),
}

/// The settings compared: the defaults, and the per-host cap off.
const SETTINGS: [(&str, &[&str]); 2] = [
    ("defaults (c=32, per-host 8)", &["--max-concurrent-verifications", "32"]),
    (
        "per-host cap off (c=32)",
        &["--max-concurrent-verifications", "32", "--max-in-flight-per-host", "0"],
    ),
];

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The token of connection `i`: its own, unless `SCALE_MIX_SHARED_TOKEN` is set (then one
/// token for all, as the GitHub-only table has it: token hints help after its first verification).
fn token_secret(i: usize) -> k8s_openapi::api::core::v1::Secret {
    use base64::Engine as _;
    let token = match std::env::var_os("SCALE_MIX_SHARED_TOKEN") {
        Some(_) => "tok-bench-shared".to_owned(),
        None => format!("tok-bench-{i}"),
    };
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": format!("pat-{i}"), "namespace": crate::ns_of(i)},
        "type": "Opaque",
        "data": {"token": base64::engine::general_purpose::STANDARD.encode(token)},
    }))
    .unwrap()
}

/// Every setting on a fresh cluster with `n` connections spread round robin over the variants.
pub async fn run(n: usize, run: usize, api: crate::ApiKind, pki: &crate::Pki, dir: &std::path::Path) -> Vec<MixRow> {
    let mut rows = Vec::new();
    for (s, (setting, flags)) in SETTINGS.iter().enumerate() {
        let load_before = loadavg();
        let providers = MixProviders::start(crate::PROVIDER_DELAY).await;
        let cluster = crate::Cluster::start(api, n).await;
        let client = cluster.client().await;
        crate::create_all(&client, n, 64, token_secret).await;
        crate::create_all(&client, n, 64, |i| {
            serde_json::from_value::<gitprovider_operator::api::GitProviderConnection>(json!({
                "apiVersion": "gitprovider.dev/v1alpha1", "kind": "GitProviderConnection",
                "metadata": {"name": format!("conn-{i}"), "namespace": crate::ns_of(i)},
                "spec": providers.spec(i, &format!("pat-{i}"), "1h"),
            }))
            .unwrap()
        })
        .await;
        let ideal = n as f64 * crate::PROVIDER_DELAY.as_secs_f64() / 32.0;
        let flags: Vec<String> = flags.iter().map(|f| (*f).to_owned()).collect();
        let log = dir.join(format!("operator-mix-{n}-{run}-{s}.log"));
        let (verify, operator) = crate::converge(&cluster, &providers, pki, &flags, n, ideal, &log).await;
        operator.stop();
        let counts = providers.per_variant();
        let per_variant: Vec<f64> = VARIANTS
            .iter()
            .enumerate()
            .map(|(v, _)| {
                let connections = (0..n).filter(|i| i % VARIANTS.len() == v).count().max(1);
                counts[v] as f64 / connections as f64
            })
            .collect();
        let row = MixRow {
            n,
            run,
            setting,
            from_ready: verify.from_ready,
            ideal,
            per_variant,
            overall: verify.requests_per_verification,
            ready: verify.ready,
            writes: (verify.writes_min, verify.writes_max),
            cpu_secs: verify.cpu_secs,
            harness_cpu_secs: verify.harness_cpu_secs,
            load: (load_before, loadavg()),
        };
        println!("  {}", row_line(&row));
        rows.push(row);
    }
    rows
}

fn row_line(r: &MixRow) -> String {
    let per_variant: Vec<String> = r.per_variant.iter().map(|x| format!("{x:.2}")).collect();
    format!(
        "| {} | {} | {} | {:.2} s | {:.2} s | {:.2}× | {} | {:.2} | {}/{} | {}..{} | {:.1} s | {:.1} s | {} → {} |",
        r.n,
        r.run,
        r.setting,
        r.from_ready,
        r.ideal,
        r.from_ready / r.ideal,
        per_variant.join(" / "),
        r.overall,
        r.ready,
        r.n,
        r.writes.0,
        r.writes.1,
        r.cpu_secs,
        r.harness_cpu_secs,
        r.load.0,
        r.load.1
    )
}

/// The table, one line per run.
pub fn table(rows: &[MixRow]) -> String {
    let variants: Vec<&str> = VARIANTS.iter().map(|v| v.label()).collect();
    let mut md = format!(
        "| N | run | setting | all Ready (from /readyz) | ideal N·RTT/c | ratio | requests/verification ({}) | overall | Ready | status writes/connection | operator CPU | harness CPU (API emulator, stand-ins) | load (1/5/15 min) before → after |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        variants.join(" / ")
    );
    for row in rows {
        md.push_str(&row_line(row));
        md.push('\n');
    }
    md
}
