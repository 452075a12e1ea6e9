//! Admission latency: `cargo bench --bench admission` (release mode).
//!
//! Builds an index of 10,000 connections across 100 namespaces, then sends reviews over HTTPS
//! keep-alive to the real server, half of them duplicates of indexed names (denied) and half new
//! names (allowed), first one at a time, then 32 at a time. Prints p50/p99 and reviews/s, and the
//! in-process decision time for reference.

#[path = "../tests/common/mod.rs"]
mod common;

use common::{Server, TestPki, client, review, spec, stored};
use gitprovider_operator::api::ProviderKind;
use gitprovider_operator::index::UniquenessScope;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

const NAMESPACES: usize = 100;
const CONNECTIONS: usize = 10_000;
const SEQUENTIAL: usize = 2_000;
const CONCURRENT: usize = 4_000;
const PARALLELISM: usize = 32;

fn body(i: usize, run: &str) -> (Value, bool) {
    let ns = format!("ns-{}", i % NAMESPACES);
    let duplicate = i.is_multiple_of(2);
    let instance = if duplicate {
        // the name of an indexed connection of this namespace
        let held = (i / 2 % (CONNECTIONS / NAMESPACES)) * NAMESPACES + i % NAMESPACES;
        format!("Instance-{held}")
    } else {
        format!("new-{run}-{i}")
    };
    let body = review(
        &format!("{run}-{i}"),
        "CREATE",
        &ns,
        &format!("conn-{run}-{i}"),
        Some(spec("GitLab", &instance, "https://gitlab.example.com")),
        None,
        false,
    );
    (body, !duplicate)
}

async fn one(client: &reqwest::Client, url: &str, body: &Value, expect_allowed: bool) -> Duration {
    let started = Instant::now();
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(serde_json::to_vec(body).unwrap())
        .send()
        .await
        .unwrap();
    let bytes = response.bytes().await.unwrap();
    let took = started.elapsed();
    let answer: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        answer["response"]["allowed"].as_bool(),
        Some(expect_allowed),
        "{answer}"
    );
    took
}

fn report(label: &str, mut samples: Vec<Duration>, wall: Duration) {
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p).ceil() as usize).saturating_sub(1)];
    println!(
        "{label:<28} n={:<5} p50={:>8.3?} p99={:>8.3?} max={:>8.3?} {:>8.0} reviews/s",
        samples.len(),
        pct(0.50),
        pct(0.99),
        samples.last().unwrap(),
        samples.len() as f64 / wall.as_secs_f64()
    );
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let pki = TestPki::new("bench-ca");
        let server = Server::synced(UniquenessScope::Namespace, &pki).await;
        for i in 0..CONNECTIONS {
            server.index.apply(&stored(
                &format!("ns-{}", i % NAMESPACES),
                &format!("held-{i}"),
                ProviderKind::GitLab,
                &format!("instance-{i}"),
                1_000 + i as i64,
            ));
        }
        assert_eq!(server.index.len(), CONNECTIONS);
        let url = server.url();
        let client = client(&pki.ca_pem);

        // warm-up: handshakes, allocations
        for i in 0..200 {
            let (body, allowed) = body(i, "warm");
            one(&client, &url, &body, allowed).await;
        }

        let started = Instant::now();
        let mut samples = Vec::with_capacity(SEQUENTIAL);
        for i in 0..SEQUENTIAL {
            let (body, allowed) = body(i, "seq");
            samples.push(one(&client, &url, &body, allowed).await);
        }
        report("HTTPS sequential (1 conn)", samples, started.elapsed());

        let client = Arc::new(client);
        // open the 32 keep-alive connections before measuring
        let warm: Vec<_> = (0..PARALLELISM)
            .map(|t| {
                let (client, url) = (client.clone(), url.clone());
                tokio::spawn(async move {
                    for k in 0..10 {
                        let (body, allowed) = body(1_000_000 + t * 10 + k, "warm");
                        one(&client, &url, &body, allowed).await;
                    }
                })
            })
            .collect();
        for task in warm {
            task.await.unwrap();
        }
        let started = Instant::now();
        let per_task = CONCURRENT / PARALLELISM;
        let tasks: Vec<_> = (0..PARALLELISM)
            .map(|t| {
                let (client, url) = (client.clone(), url.clone());
                tokio::spawn(async move {
                    let mut samples = Vec::with_capacity(per_task);
                    for k in 0..per_task {
                        let (body, allowed) = body(t * per_task + k, "par");
                        samples.push(one(&client, &url, &body, allowed).await);
                    }
                    samples
                })
            })
            .collect();
        let mut samples = Vec::with_capacity(CONCURRENT);
        for task in tasks {
            samples.extend(task.await.unwrap());
        }
        report(&format!("HTTPS {PARALLELISM} concurrent"), samples, started.elapsed());

        // the decision alone, without HTTP and TLS
        let started = Instant::now();
        let mut samples = Vec::with_capacity(SEQUENTIAL);
        for i in 0..SEQUENTIAL {
            let (body, allowed) = body(i, "mem");
            let bytes = serde_json::to_vec(&body).unwrap();
            let t = Instant::now();
            let answer = server.webhook.review_body(&bytes).unwrap();
            samples.push(t.elapsed());
            assert_eq!(answer.response.unwrap().allowed, allowed);
        }
        report("in-process review_body", samples, started.elapsed());
        println!(
            "index: {CONNECTIONS} connections in {NAMESPACES} namespaces; live reservations at the end: {}",
            server.webhook.live_reservations()
        );
        server.stop().await;
    });
}
