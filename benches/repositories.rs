//! What `spec.repositories` costs per verification: `cargo bench --bench repositories`
//! (release mode, in process, `harness = false`).
//!
//! For every provider's stand-in (`tests/support/fake_providers`, plain HTTP on loopback), a
//! connection is verified the way the controller does it — the token check, then the look-ups —
//! with 0 and with 10 listed repositories, with the look-ups 8 at a time (free host slots) and
//! 1 at a time (a busy host), on an instant instance and on one that takes 20 ms per answer (a
//! stand-in for a real instance's latency). Prints requests per verification (counted by the
//! stand-in) and p50/p95 wall time over the runs.

#[path = "../tests/support/mod.rs"]
mod support;

use gitprovider_operator::api::{ProviderKind, ReadyReason};
use gitprovider_operator::providers::http::{HttpClient, HttpConfig, TlsOptions};
use gitprovider_operator::providers::{Target, parse_base_url, provider, verify_within};
use gitprovider_operator::repositories::{self, Apis, Concurrency};
use gitprovider_operator::token::Token;
use std::time::{Duration, Instant};
use support::fake_providers::*;

const RUNS: usize = 40;
const TOKEN: &str = "bench-SECRET-token-aaaaaaaaaaaaaaaa";

struct Instance {
    kind: ProviderKind,
    label: &'static str,
    server: Box<dyn std::ops::Deref<Target = FakeServer>>,
    url: reqwest::Url,
    paths: Vec<String>,
}

async fn instances() -> Vec<Instance> {
    let mut out = Vec::new();
    let gitlab = FakeGitLab::start().await;
    gitlab.add_token(TOKEN, TokenSpec::jane_doe());
    let url = gitlab.url();
    out.push((
        ProviderKind::GitLab,
        "GitLab",
        Box::new(gitlab) as Box<dyn std::ops::Deref<Target = FakeServer>>,
        url,
        "group/sub/project",
    ));
    let github = FakeGitHub::start_enterprise("3.14.2").await;
    github.add_token(TOKEN, TokenSpec::user("octocat").scopes(["repo"]));
    let url = github.url();
    out.push((
        ProviderKind::GitHub,
        "GitHub Enterprise Server",
        Box::new(github),
        url,
        "octo/repo",
    ));
    let bitbucket = FakeBitbucketServer::start().await;
    bitbucket.add_token(TOKEN, TokenSpec::user("jdoe"));
    let url = bitbucket.url();
    out.push((
        ProviderKind::Bitbucket,
        "Bitbucket Data Center",
        Box::new(bitbucket),
        url,
        "PRJ/repo",
    ));
    let azure = FakeAzureDevOps::start_server().await;
    azure.add_token(TOKEN, TokenSpec::user("CONTOSO\\jdoe"));
    let url = azure.collection_url("/tfs/DefaultCollection");
    out.push((
        ProviderKind::AzureDevOps,
        "Azure DevOps Server",
        Box::new(azure),
        url,
        "Project/repo",
    ));
    let gitea = FakeGitea::start().await;
    gitea.add_token(TOKEN, TokenSpec::user("jdoe"));
    let url = gitea.url();
    out.push((ProviderKind::Gitea, "Gitea", Box::new(gitea), url, "org/repo"));
    out.into_iter()
        .map(|(kind, label, server, url, stem)| {
            let paths: Vec<String> = (0..10).map(|i| format!("{stem}-{i}")).collect();
            for path in &paths {
                server.add_repository(path);
            }
            Instance {
                kind,
                label,
                server,
                url,
                paths,
            }
        })
        .collect()
}

async fn verify_once(http: &HttpClient, instance: &Instance, listed: usize, concurrency: usize) -> Duration {
    let target = Target {
        base_url: parse_base_url(instance.url.as_str()).expect("url"),
        token: Token::new(TOKEN).expect("token"),
        username: None,
        last_user: None,
        tls: TlsOptions::default(),
    };
    let started = Instant::now();
    let verification = verify_within(provider(instance.kind), http, &target).await;
    assert_eq!(
        verification.reason,
        ReadyReason::Verified,
        "{}: {}",
        instance.label,
        verification.message
    );
    if listed > 0 {
        let found = repositories::check_all(
            instance.kind,
            Apis::deployed(),
            http,
            &target,
            &instance.paths[..listed],
            Concurrency::new(concurrency),
        )
        .await;
        let verification = found.readiness(verification);
        assert_eq!(verification.reason, ReadyReason::Verified, "{}", verification.message);
    }
    started.elapsed()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let http = HttpClient::new(HttpConfig::default());
    let instances = instances().await;
    println!(
        "| provider (stand-in) | answer delay | repositories | look-ups at once | requests / verification | p50 ms | p95 ms |"
    );
    println!("|---|---|---|---|---|---|---|");
    for delay in [Duration::ZERO, Duration::from_millis(20)] {
        for instance in &instances {
            instance.server.clear_faults();
            if !delay.is_zero() {
                instance.server.fault(None, Fault::Delay(delay), None);
            }
            for (listed, concurrency) in [(0, 1), (10, 8), (10, 1)] {
                // warm the connection pool
                verify_once(&http, instance, listed, concurrency).await;
                instance.server.clear_requests();
                let mut times = Vec::with_capacity(RUNS);
                for _ in 0..RUNS {
                    times.push(verify_once(&http, instance, listed, concurrency).await);
                }
                let requests = instance.server.requests().len() as f64 / RUNS as f64;
                times.sort();
                println!(
                    "| {} | {} ms | {listed} | {} | {requests:.0} | {} | {} |",
                    instance.label,
                    delay.as_millis(),
                    if listed == 0 {
                        "-".to_owned()
                    } else {
                        concurrency.to_string()
                    },
                    ms(percentile(&times, 0.5)),
                    ms(percentile(&times, 0.95)),
                );
            }
        }
    }
}
