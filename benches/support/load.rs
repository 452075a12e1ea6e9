//! Sends prepared AdmissionReviews over HTTPS keep-alive and measures each round trip.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// One review to send: the serialized body and, when known, whether it must be allowed.
#[derive(Clone)]
pub struct Shot {
    pub body: Vec<u8>,
    pub expect_allowed: Option<bool>,
}

/// Latency percentiles and throughput of one series.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub n: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub per_second: f64,
}

impl Stats {
    pub fn of(mut samples: Vec<Duration>, wall: Duration) -> Stats {
        samples.sort();
        let pct = |p: f64| samples[((samples.len() as f64 * p).ceil() as usize).saturating_sub(1)];
        Stats {
            n: samples.len(),
            p50: pct(0.50),
            p99: pct(0.99),
            max: *samples.last().unwrap(),
            per_second: samples.len() as f64 / wall.as_secs_f64(),
        }
    }

    pub fn line(&self, label: &str) -> String {
        format!(
            "{label:<34} n={:<5} p50={:>8.3?} p99={:>8.3?} max={:>8.3?} {:>8.0} reviews/s",
            self.n, self.p50, self.p99, self.max, self.per_second
        )
    }
}

async fn one(client: &reqwest::Client, url: &str, shot: &Shot) -> Duration {
    let started = Instant::now();
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(shot.body.clone())
        .send()
        .await
        .expect("review sent");
    let status = response.status();
    let bytes = response.bytes().await.expect("review answered");
    let took = started.elapsed();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    // Every answer is parsed, checked or not, so that the client does the same work for every
    // server (in the concurrent series its work delays the other clients' measurements).
    let answer: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON answer");
    assert!(answer["response"]["uid"].is_string(), "{answer}");
    if let Some(expected) = shot.expect_allowed {
        assert_eq!(answer["response"]["allowed"].as_bool(), Some(expected), "{answer}");
    }
    took
}

/// Sends `shots` one after the other on one keep-alive connection (after `warm` unmeasured).
#[allow(dead_code)] // each bench uses one of the two forms
pub async fn sequential(client: &reqwest::Client, url: &str, warm: &[Shot], shots: &[Shot]) -> Stats {
    sequential_with(client, url, warm, shots, || Duration::ZERO).await.0
}

/// [`sequential`], also returning how much `clock` (say, the server's CPU time) advanced during
/// the measured part.
#[allow(dead_code)]
pub async fn sequential_with(
    client: &reqwest::Client,
    url: &str,
    warm: &[Shot],
    shots: &[Shot],
    clock: impl Fn() -> Duration,
) -> (Stats, Duration) {
    for shot in warm {
        one(client, url, shot).await;
    }
    let clock_before = clock();
    let started = Instant::now();
    let mut samples = Vec::with_capacity(shots.len());
    for shot in shots {
        samples.push(one(client, url, shot).await);
    }
    let wall = started.elapsed();
    (Stats::of(samples, wall), clock().saturating_sub(clock_before))
}

/// Sends `shots` from `parallelism` clients at once, each on its own keep-alive connection
/// (opened by `warm_each` unmeasured reviews per client first).
#[allow(dead_code)] // each bench uses one of the two forms
pub async fn concurrent(
    client: &reqwest::Client,
    url: &str,
    warm: &[Shot],
    shots: &[Shot],
    parallelism: usize,
) -> Stats {
    concurrent_with(client, url, warm, shots, parallelism, || Duration::ZERO)
        .await
        .0
}

/// [`concurrent`], also returning how much `clock` advanced during the measured part.
#[allow(dead_code)]
pub async fn concurrent_with(
    client: &reqwest::Client,
    url: &str,
    warm: &[Shot],
    shots: &[Shot],
    parallelism: usize,
    clock: impl Fn() -> Duration,
) -> (Stats, Duration) {
    let client = Arc::new(client.clone());
    let url: Arc<str> = url.into();
    let spread = |shots: &[Shot]| -> Vec<Vec<Shot>> {
        let mut parts = vec![Vec::new(); parallelism];
        for (i, shot) in shots.iter().enumerate() {
            parts[i % parallelism].push(shot.clone());
        }
        parts
    };
    let run = |parts: Vec<Vec<Shot>>| {
        parts
            .into_iter()
            .map(|part| {
                let (client, url) = (client.clone(), url.clone());
                tokio::spawn(async move {
                    let mut samples = Vec::with_capacity(part.len());
                    for shot in &part {
                        samples.push(one(&client, &url, shot).await);
                    }
                    samples
                })
            })
            .collect::<Vec<_>>()
    };
    for task in run(spread(warm)) {
        task.await.expect("warm-up task");
    }
    let clock_before = clock();
    let started = Instant::now();
    let mut samples = Vec::with_capacity(shots.len());
    for task in run(spread(shots)) {
        samples.extend(task.await.expect("load task"));
    }
    let wall = started.elapsed();
    (Stats::of(samples, wall), clock().saturating_sub(clock_before))
}
