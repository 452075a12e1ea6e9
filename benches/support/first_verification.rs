//! `--first-verification C`: more verifications due per interval than the operator can do, and
//! how long until every connection has been verified once.
//!
//! N connections at `verifyInterval: 1m` (the minimum), one instance answering after the fixed
//! latency, `--max-concurrent-verifications C` and the per-host cap off: with C slots of 50 ms
//! the operator does C × 20 verifications a second; below N ÷ 54 s (the shortest jittered
//! interval) the first connections verified are due again before the last were verified once.
//! Reported: from `/readyz`, when each tenth of the connections had its first status write, the
//! status writes of re-verifications by then, and when all had (or how many never had within the
//! time limit).

use std::collections::HashSet;
use std::time::{Duration, Instant, SystemTime};

/// The observation ends here if not every connection was verified by then.
const LIMIT: Duration = Duration::from_secs(300);

pub async fn run(n: usize, concurrency: u16, api: crate::ApiKind, pki: &crate::Pki, dir: &std::path::Path) -> String {
    let load_before = crate::provider_mix::loadavg();
    let providers = crate::Providers::start(1, crate::PROVIDER_DELAY).await;
    let cluster = crate::Cluster::start(api, n).await;
    crate::seed(&cluster, n, &providers.addrs, "1m").await;
    let flags: Vec<String> = [
        "--max-concurrent-verifications",
        &concurrency.to_string(),
        "--max-in-flight-per-host",
        "0",
    ]
    .iter()
    .map(|f| (*f).to_owned())
    .collect();
    let http = reqwest::Client::new();
    let mark = cluster.mark();
    let log = dir.join(format!("operator-first-{n}-{concurrency}.log"));
    let mut operator = crate::Operator::start(&cluster.operator_kubeconfig(), pki, &flags, &log);
    operator.wait_ready(&http).await;
    let ready_at = SystemTime::now();
    let started = Instant::now();
    let mut verified: HashSet<(String, String)> = HashSet::new();
    let mut writes = 0usize;
    let mut position = mark;
    let mut steps = Vec::new();
    let mut next_step = 1;
    while verified.len() < n && started.elapsed() < LIMIT {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let calls = cluster.calls_since(position);
        position += calls.len();
        for c in calls.iter().filter(|c| c.is_status_write() && c.succeeded()) {
            writes += 1;
            verified.insert((
                c.namespace.clone().unwrap_or_default(),
                c.name.clone().unwrap_or_default(),
            ));
            while next_step <= 10 && verified.len() * 10 >= next_step * n {
                let at = c.at.duration_since(ready_at).unwrap_or_default().as_secs_f64();
                steps.push(format!(
                    "{}%: {at:.1} s ({} re-verifications)",
                    next_step * 10,
                    writes - verified.len()
                ));
                next_step += 1;
            }
        }
    }
    operator.stop();
    let ideal = n as f64 * crate::PROVIDER_DELAY.as_secs_f64() / f64::from(concurrency);
    let outcome = if verified.len() == n {
        format!("all {n} verified once")
    } else {
        format!(
            "{} of {n} never verified after {} s",
            n - verified.len(),
            LIMIT.as_secs()
        )
    };
    let line = format!(
        "{}: N={n}, verifyInterval 1m, c={concurrency}, per-host cap off (N × 50 ms ÷ c = {ideal:.1} s): {outcome}; \
         first status writes by share of connections: {}; status writes in all {writes}; load {load_before} → {}",
        crate::operator_binary(),
        steps.join(", "),
        crate::provider_mix::loadavg()
    );
    println!("  {line}");
    line
}
