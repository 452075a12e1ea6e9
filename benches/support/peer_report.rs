//! The peer benchmark's report: one table of every contender per size (ours and each ESO run),
//! with ratios and the goals (≥ 3× faster to all Ready, ≤ ¼ of the peer's peak RSS,
//! flat in unrelated Secrets), and what each sent to the API server.

use crate::contender::{Converged, Steady};
use crate::eso::ClientLimits;
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

/// The name of each ESO run in the tables.
fn peer_name(limits: ClientLimits) -> String {
    format!("ESO, client limits {}", limits.name())
}

/// `| what | ours | peer₁ | ratio₁ | peer₂ | ratio₂ | … | goal |`
fn row(out: &mut String, what: &str, ours: f64, peers: &[f64], digits: usize, goal: &str) {
    let mut line = format!("| {what} | {ours:.digits$} |");
    for &peer in peers {
        let _ = write!(line, " {peer:.digits$} | {} |", ratio(ours, peer));
    }
    let _ = writeln!(out, "{line} {goal} |");
}

/// One verdict per ESO run: "met (shipped), not met (off)".
fn verdicts(limits: &[ClientLimits], met: impl Fn(usize) -> bool) -> String {
    limits
        .iter()
        .enumerate()
        .map(|(i, l)| format!("{} ({})", verdict(met(i)), l.name()))
        .collect::<Vec<_>>()
        .join(", ")
}

fn converged_rows(out: &mut String, n: usize, limits: &[ClientLimits], ours: &Converged, peers: &[&Converged]) {
    let speedup = |p: &Converged| {
        if ours.all_ready_secs > 0.0 {
            p.all_ready_secs / ours.all_ready_secs
        } else {
            0.0
        }
    };
    let mut line = format!("| start → all {n} Ready (s) | {:.1} |", ours.all_ready_secs);
    for p in peers {
        let _ = write!(
            line,
            " {:.1} | {} ({:.2}× faster) |",
            p.all_ready_secs,
            ratio(ours.all_ready_secs, p.all_ready_secs),
            speedup(p)
        );
    }
    let goal = verdicts(limits, |i| {
        speedup(peers[i]) >= 3.0 && ours.converged && peers[i].converged
    });
    let _ = writeln!(out, "{line} ≥ 3× faster: {goal} |");
    let values = |f: fn(&Converged) -> f64| peers.iter().map(|p| f(p)).collect::<Vec<_>>();
    let rss = verdicts(limits, |i| ours.peak_rss_mib * 4.0 <= peers[i].peak_rss_mib);
    row(
        out,
        "peak RSS (MiB)",
        ours.peak_rss_mib,
        &values(|c| c.peak_rss_mib),
        1,
        &format!("≤ ¼: {rss}"),
    );
    let figures = |c: &Converged| {
        let per_object = |count: usize| count as f64 / n as f64;
        [
            ("start → first status write (s)", c.first_write_secs),
            ("CPU, start → all Ready (s)", c.cpu_secs),
            ("kube-apiserver CPU meanwhile (s)", c.apiserver_cpu_secs),
            ("API requests per object", per_object(c.api_requests)),
            ("API writes per object", per_object(c.api_writes)),
            ("provider requests per object", per_object(c.provider_requests)),
        ]
    };
    table(out, figures(ours), peers.iter().map(|p| figures(p)).collect(), "");
}

/// Rows of figures measured alike for ours and each peer.
fn table<const R: usize>(out: &mut String, ours: [(&str, f64); R], peers: Vec<[(&str, f64); R]>, prefix: &str) {
    for (row_index, (what, value)) in ours.into_iter().enumerate() {
        let peer_values: Vec<f64> = peers.iter().map(|p| p[row_index].1).collect();
        row(out, &format!("{prefix}{what}"), value, &peer_values, 2, "");
    }
}

fn steady_rows(out: &mut String, n: usize, ours: &Steady, peers: &[&Steady], interval_secs: u64) {
    let figures = |s: &Steady| {
        let per = |count: usize| per_interval(count, n, s, interval_secs);
        let intervals = s.window_secs / interval_secs as f64;
        [
            ("API requests per object per interval", per(s.api_requests)),
            ("API writes per object per interval", per(s.api_writes)),
            ("provider requests per object per interval", per(s.provider_requests)),
            ("CPU per interval (s)", s.cpu_secs / intervals),
            ("kube-apiserver CPU per interval (s)", s.apiserver_cpu_secs / intervals),
        ]
    };
    table(
        out,
        figures(ours),
        peers.iter().map(|p| figures(p)).collect(),
        "after convergence: ",
    );
    let rss: Vec<f64> = peers.iter().map(|p| p.rss_mib).collect();
    row(out, "after convergence: RSS (MiB)", ours.rss_mib, &rss, 1, "");
}

fn blob_rows(out: &mut String, options: &Options, ours: &Measured, peers: &[Measured]) {
    let Some(ours_blobs) = &ours.with_blobs else {
        return;
    };
    let Some(peers_blobs) = peers.iter().map(|p| p.with_blobs.as_ref()).collect::<Option<Vec<_>>>() else {
        return;
    };
    let growth = |m: &Measured, b: &Converged| b.peak_rss_mib - m.first.peak_rss_mib;
    let flat = |m: &Measured, b: &Converged| growth(m, b) <= m.first.peak_rss_mib * 0.10;
    let yes = |f: bool| if f { "yes" } else { "no" };
    let mut line = format!(
        "| peak RSS with {} unrelated {} KiB Secrets (MiB) | {:.1} ({:+.1}) |",
        thousands(options.blobs),
        options.blob_kib,
        ours_blobs.peak_rss_mib,
        growth(ours, ours_blobs),
    );
    let mut flats = format!("flat: ours {}", yes(flat(ours, ours_blobs)));
    for ((peer, blobs), limits) in peers.iter().zip(&peers_blobs).zip(&options.eso_client_limits) {
        let _ = write!(
            line,
            " {:.1} ({:+.1}) | {} |",
            blobs.peak_rss_mib,
            growth(peer, blobs),
            ratio(ours_blobs.peak_rss_mib, blobs.peak_rss_mib)
        );
        let _ = write!(flats, ", ESO ({}) {}", limits.name(), yes(flat(peer, blobs)));
    }
    let _ = writeln!(out, "{line} {flats} |");
    let times: Vec<f64> = peers_blobs.iter().map(|b| b.all_ready_secs).collect();
    row(
        out,
        "restart with them → all validated again (s)",
        ours_blobs.all_ready_secs,
        &times,
        1,
        "",
    );
}

pub fn markdown(results: &[SizeResult], options: &Options) -> String {
    let mut out = String::new();
    let limits = &options.eso_client_limits;
    let _ = writeln!(
        out,
        "Peer: External Secrets Operator {}; ours: `--max-concurrent-verifications {c} --max-in-flight-per-host 0`, \
         `verifyInterval: {i}s`; one GitLab stand-in answering after {} ms; ratio = ours ÷ peer.\n",
        options.eso_version,
        options.latency.as_millis(),
        c = options.concurrency,
        i = options.interval_secs,
    );
    for &l in limits {
        let _ = writeln!(
            out,
            "- {}: `{}`",
            peer_name(l),
            crate::eso::args(options.concurrency, &format!("{}s", options.interval_secs), l).join(" ")
        );
    }
    let _ = writeln!(out);
    let mut header = "| | ours |".to_owned();
    let mut rule = "|---|---|".to_owned();
    for &l in limits {
        let _ = write!(header, " {} | ratio |", peer_name(l));
        rule.push_str("---|---|");
    }
    header.push_str(" goal |");
    rule.push_str("---|");
    for r in results {
        let _ = writeln!(
            out,
            "**N = {}** (seeded in {:.0} s; load average {} at the start, {} at the end)\n",
            thousands(r.n),
            r.seed_secs,
            r.load.0,
            r.load.1
        );
        if options.profile_secs > 0 && Some(&r.n) == options.sizes.iter().max() {
            let _ = writeln!(
                out,
                "(The first {} s of each convergence at this size ran under the CPU profilers: \
                 `perf record` of the contender, kube-apiserver's pprof.)\n",
                options.profile_secs
            );
        }
        let _ = writeln!(out, "{header}\n{rule}");
        let firsts: Vec<&Converged> = r.peers.iter().map(|p| &p.first).collect();
        converged_rows(&mut out, r.n, limits, &r.ours.first, &firsts);
        if let (Some(o), Some(p)) = (
            &r.ours.steady,
            r.peers.iter().map(|p| p.steady.as_ref()).collect::<Option<Vec<_>>>(),
        ) {
            steady_rows(&mut out, r.n, o, &p, options.interval_secs);
        }
        blob_rows(&mut out, options, &r.ours, &r.peers);
        let _ = writeln!(out);
        let names = std::iter::once("ours".to_owned()).chain(limits.iter().map(|&l| peer_name(l)));
        for (who, m) in names.zip(std::iter::once(&r.ours).chain(&r.peers)) {
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
