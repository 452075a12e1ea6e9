//! The peer benchmark's report: one table of both contenders per size, with ratios and the
//! issue's goals (≥ 3× faster to all Ready, ≤ ¼ of the peer's peak RSS, flat in unrelated
//! Secrets), and what each sent to the API server.

use crate::contender::{Converged, Steady};
use crate::{Measured, Options, SizeResult};
use std::fmt::Write as _;

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "–".to_owned()
    }
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "not met" }
}

/// Per object per interval, over a window.
fn per_interval(count: usize, n: usize, steady: &Steady, interval_secs: u64) -> f64 {
    count as f64 / n as f64 / (steady.window_secs / interval_secs as f64)
}

fn kinds_line(kinds: &[(String, usize)], n: usize) -> String {
    kinds
        .iter()
        .take(6)
        .map(|(kind, count)| format!("{kind} {:.2}", *count as f64 / n as f64))
        .collect::<Vec<_>>()
        .join(", ")
}

fn row(out: &mut String, what: &str, ours: f64, peer: f64, digits: usize, goal: &str) {
    let _ = writeln!(
        out,
        "| {what} | {ours:.digits$} | {peer:.digits$} | {} | {goal} |",
        ratio(ours, peer)
    );
}

fn converged_rows(out: &mut String, n: usize, ours: &Converged, peer: &Converged) {
    let speedup = if ours.all_ready_secs > 0.0 {
        peer.all_ready_secs / ours.all_ready_secs
    } else {
        0.0
    };
    let _ = writeln!(
        out,
        "| start → all {n} Ready (s) | {:.1} | {:.1} | {} (peer ÷ ours: {speedup:.2}× faster) | ≥ 3× faster: {} |",
        ours.all_ready_secs,
        peer.all_ready_secs,
        ratio(ours.all_ready_secs, peer.all_ready_secs),
        verdict(speedup >= 3.0 && ours.converged && peer.converged)
    );
    let rss_met = ours.peak_rss_mib * 4.0 <= peer.peak_rss_mib;
    row(
        out,
        "peak RSS (MiB)",
        ours.peak_rss_mib,
        peer.peak_rss_mib,
        1,
        &format!("≤ ¼: {}", verdict(rss_met)),
    );
    let per_object = |count: usize| count as f64 / n as f64;
    for (what, o, p) in [
        (
            "start → first status write (s)",
            ours.first_write_secs,
            peer.first_write_secs,
        ),
        ("CPU, start → all Ready (s)", ours.cpu_secs, peer.cpu_secs),
        (
            "kube-apiserver CPU meanwhile (s)",
            ours.apiserver_cpu_secs,
            peer.apiserver_cpu_secs,
        ),
        (
            "API requests per object",
            per_object(ours.api_requests),
            per_object(peer.api_requests),
        ),
        (
            "API writes per object",
            per_object(ours.api_writes),
            per_object(peer.api_writes),
        ),
        (
            "provider requests per object",
            per_object(ours.provider_requests),
            per_object(peer.provider_requests),
        ),
    ] {
        row(out, what, o, p, 2, "");
    }
}

fn steady_rows(out: &mut String, n: usize, ours: &Steady, peer: &Steady, interval_secs: u64) {
    let per = |s: &Steady, count: usize| per_interval(count, n, s, interval_secs);
    let intervals = |s: &Steady| s.window_secs / interval_secs as f64;
    for (what, o, p) in [
        (
            "API requests per object per interval",
            per(ours, ours.api_requests),
            per(peer, peer.api_requests),
        ),
        (
            "API writes per object per interval",
            per(ours, ours.api_writes),
            per(peer, peer.api_writes),
        ),
        (
            "provider requests per object per interval",
            per(ours, ours.provider_requests),
            per(peer, peer.provider_requests),
        ),
        (
            "CPU per interval (s)",
            ours.cpu_secs / intervals(ours),
            peer.cpu_secs / intervals(peer),
        ),
        (
            "kube-apiserver CPU per interval (s)",
            ours.apiserver_cpu_secs / intervals(ours),
            peer.apiserver_cpu_secs / intervals(peer),
        ),
    ] {
        row(out, &format!("after convergence: {what}"), o, p, 2, "");
    }
    row(out, "after convergence: RSS (MiB)", ours.rss_mib, peer.rss_mib, 1, "");
}

fn blob_rows(out: &mut String, options: &Options, ours: &Measured, peer: &Measured) {
    let (Some(ours_blobs), Some(peer_blobs)) = (&ours.with_blobs, &peer.with_blobs) else {
        return;
    };
    let growth = |m: &Measured, b: &Converged| b.peak_rss_mib - m.first.peak_rss_mib;
    let flat = |m: &Measured, b: &Converged| growth(m, b) <= m.first.peak_rss_mib * 0.10;
    let _ = writeln!(
        out,
        "| peak RSS with {} unrelated {} KiB Secrets (MiB) | {:.1} ({:+.1}) | {:.1} ({:+.1}) | {} | flat: ours {}, peer {} |",
        thousands(options.blobs),
        options.blob_kib,
        ours_blobs.peak_rss_mib,
        growth(ours, ours_blobs),
        peer_blobs.peak_rss_mib,
        growth(peer, peer_blobs),
        ratio(ours_blobs.peak_rss_mib, peer_blobs.peak_rss_mib),
        if flat(ours, ours_blobs) { "yes" } else { "no" },
        if flat(peer, peer_blobs) { "yes" } else { "no" },
    );
    let _ = writeln!(
        out,
        "| restart with them → all validated again (s) | {:.1} | {:.1} | {} | |",
        ours_blobs.all_ready_secs,
        peer_blobs.all_ready_secs,
        ratio(ours_blobs.all_ready_secs, peer_blobs.all_ready_secs),
    );
}

pub fn markdown(results: &[SizeResult], options: &Options) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Peer: External Secrets Operator {} (`{}`), \
         ours: `--max-concurrent-verifications {c} --max-in-flight-per-host 0`, `verifyInterval: {i}s`; \
         one GitLab stand-in answering after {} ms; ratio = ours ÷ peer.\n",
        options.eso_version,
        crate::eso::args(
            options.concurrency,
            &format!("{}s", options.interval_secs),
            options.eso_default_client_limits
        )
        .join(" "),
        options.latency.as_millis(),
        c = options.concurrency,
        i = options.interval_secs,
    );
    for r in results {
        let _ = writeln!(
            out,
            "**N = {}** (seeded in {:.0} s; load average {} at the start, {} at the end)\n",
            thousands(r.n),
            r.seed_secs,
            r.load.0,
            r.load.1
        );
        let _ = writeln!(out, "| | ours | ESO | ratio | goal |\n|---|---|---|---|---|");
        converged_rows(&mut out, r.n, &r.ours.first, &r.peer.first);
        if let (Some(o), Some(p)) = (&r.ours.steady, &r.peer.steady) {
            steady_rows(&mut out, r.n, o, p, options.interval_secs);
        }
        blob_rows(&mut out, options, &r.ours, &r.peer);
        let _ = writeln!(out);
        for (who, m) in [("ours", &r.ours), ("ESO", &r.peer)] {
            let _ = writeln!(
                out,
                "- {who}, to all Ready ({}/{} Ready), API requests per object by kind: {}",
                m.first.ready,
                r.n,
                kinds_line(&m.first.kinds, r.n)
            );
            if let Some(s) = &m.steady {
                let _ = writeln!(
                    out,
                    "- {who}, in {:.0} s after convergence, per object: {}",
                    s.window_secs,
                    kinds_line(&s.kinds, r.n)
                );
            }
        }
        if let Some(secs) = r.blobs_secs {
            let _ = writeln!(out, "- the unrelated Secrets were created in {secs:.0} s");
        }
        let _ = writeln!(out);
    }
    out
}
