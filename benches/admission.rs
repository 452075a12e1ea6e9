//! Admission latency: `cargo bench --bench admission` (release mode), in process.
//!
//! Builds an index of 10,000 connections across 100 namespaces, then sends reviews over HTTPS
//! keep-alive to the real server, half of them duplicates of indexed names (denied) and half new
//! names (allowed), first one at a time, then 32 at a time. Prints p50/p99 and reviews/s, the
//! same for the floor (a minimal rustls server answering a fixed AdmissionReview: TLS + HTTP +
//! JSON) on the same runtime, the ratio of the two, and the in-process decision time for
//! reference. `cargo bench --bench scale` measures the operator binary itself.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/floor.rs"]
mod floor;
#[path = "support/load.rs"]
mod load;

use common::{Server, TestPki, client, review, spec, stored};
use gitprovider_operator::api::ProviderKind;
use gitprovider_operator::index::{ObjectKey, UniquenessScope};
use load::{Shot, Stats};
use serde_json::Value;
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
        let shots = |run: &str, range: std::ops::Range<usize>, check: bool| -> Vec<Shot> {
            range
                .map(|i| {
                    let (body, allowed) = body(i, run);
                    Shot {
                        body: serde_json::to_vec(&body).unwrap(),
                        expect_allowed: check.then_some(allowed),
                    }
                })
                .collect()
        };

        let floor_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let floor_url = format!(
            "https://localhost:{}/validate",
            floor_listener.local_addr().unwrap().port()
        );
        let floor_task = tokio::spawn(floor::serve(
            floor_listener,
            floor::server_config(&pki.cert_pem, &pki.key_pem),
        ));

        let mut results: Vec<(String, Stats, Stats)> = Vec::new();
        for (label, target, check) in [("webhook", &url, true), ("floor", &floor_url, false)] {
            let client = client.clone();
            let seq = load::sequential(
                &client,
                target,
                &shots(&format!("warm-{label}"), 0..200, check),
                &shots(&format!("seq-{label}"), 0..SEQUENTIAL, check),
            )
            .await;
            println!("{}", seq.line(&format!("{label} HTTPS sequential (1 conn)")));
            // a fresh client: its own 32 keep-alive connections, opened by the warm-up
            let client = common::client(&pki.ca_pem);
            let par = load::concurrent(
                &client,
                target,
                &shots(
                    &format!("pwarm-{label}"),
                    1_000_000..1_000_000 + PARALLELISM * 10,
                    check,
                ),
                &shots(&format!("par-{label}"), 0..CONCURRENT, check),
                PARALLELISM,
            )
            .await;
            println!("{}", par.line(&format!("{label} HTTPS {PARALLELISM} concurrent")));
            results.push((label.to_owned(), seq, par));
        }
        let (webhook, floor) = (&results[0], &results[1]);
        let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
        println!(
            "webhook / floor: sequential p50 {:.2}x p99 {:.2}x; concurrent p50 {:.2}x p99 {:.2}x, throughput {:.2}x",
            ratio(webhook.1.p50, floor.1.p50),
            ratio(webhook.1.p99, floor.1.p99),
            ratio(webhook.2.p50, floor.2.p50),
            ratio(webhook.2.p99, floor.2.p99),
            webhook.2.per_second / floor.2.per_second,
        );
        floor_task.abort();

        // the decision alone, without HTTP and TLS
        let started = Instant::now();
        let mut samples = Vec::with_capacity(SEQUENTIAL);
        for i in 0..SEQUENTIAL {
            let (body, allowed) = body(i, "mem");
            let bytes = serde_json::to_vec(&body).unwrap();
            let t = Instant::now();
            let answer = server.webhook.review_body(&bytes).await.unwrap();
            samples.push(t.elapsed());
            assert_eq!(answer.response.unwrap().allowed, allowed);
        }
        println!(
            "{}",
            Stats::of(samples, started.elapsed()).line("in-process review_body")
        );
        println!(
            "index: {CONNECTIONS} connections in {NAMESPACES} namespaces; live reservations at the end: {}",
            server.webhook.live_reservations()
        );

        // The first review after a pause of more than a second starts a sweep of the
        // reservations; a sweep done at once (before the change) asked the index about every live
        // reservation while holding the reservation lock, stalling every review in flight.
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        let bytes = serde_json::to_vec(&body(1, "sweep").0).unwrap();
        let started = Instant::now();
        server.webhook.review_body(&bytes).await.unwrap();
        let first = started.elapsed();
        let live = server.webhook.live_reservations();
        let keys: Vec<ObjectKey> = (0..live)
            .map(|i| ObjectKey::new(format!("ns-{}", i % NAMESPACES), format!("conn-x-{i}")))
            .collect();
        let started = Instant::now();
        for key in &keys {
            std::hint::black_box(server.index.claim_of(key));
        }
        println!(
            "review that starts a sweep: {first:.1?}; one index look-up per live reservation ({live}), as a sweep \
             done at once made under the lock: {:.1?}",
            started.elapsed()
        );
        server.stop().await;
    });
}
