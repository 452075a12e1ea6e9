//! CPU profiles while a contender converges (`benches/peer.rs --profile-secs S`): `perf record`
//! of the contender's process (a flat profile: the release build keeps its symbols; ESO's
//! binary is stripped, so its samples only name libraries) and kube-apiserver's own
//! `/debug/pprof/profile` over the same seconds. Each raw file gets a text summary beside it
//! (`perf report`, `go tool pprof -top -cum`) when those tools are on PATH.

use crate::support::control_plane::ControlPlane;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The profilers of one contender, running.
pub struct Profiles {
    running: Vec<(Child, Render)>,
}

enum Render {
    Perf(PathBuf),
    Pprof(PathBuf),
}

impl Profiles {
    /// Starts both profilers for `secs` seconds; files `DIR/<stem>.perf.data` and
    /// `DIR/<stem>-apiserver.pprof`.
    pub fn start(dir: &Path, stem: &str, pid: u32, plane: &ControlPlane, secs: u64) -> Profiles {
        let mut running = Vec::new();
        let perf_data = dir.join(format!("{stem}.perf.data"));
        let perf = Command::new("perf")
            .args(["record", "-q", "-F", "499", "-o"])
            .arg(&perf_data)
            .args(["-p", &pid.to_string(), "--", "sleep", &secs.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        match perf {
            Ok(child) => running.push((child, Render::Perf(perf_data))),
            Err(e) => eprintln!("perf does not start ({e}): no CPU profile of {stem}"),
        }
        let pprof = dir.join(format!("{stem}-apiserver.pprof"));
        match std::fs::File::create(&pprof) {
            Ok(out) => {
                let child = plane
                    .kubectl()
                    .args(["get", "--raw", &format!("/debug/pprof/profile?seconds={secs}")])
                    .stdout(out)
                    .stderr(Stdio::null())
                    .spawn();
                match child {
                    Ok(child) => running.push((child, Render::Pprof(pprof))),
                    Err(e) => eprintln!("kubectl does not start ({e}): no kube-apiserver profile"),
                }
            }
            Err(e) => eprintln!("{}: {e}", pprof.display()),
        }
        Profiles { running }
    }

    /// Waits for the profilers and writes each summary (`<raw>.txt`).
    pub fn finish(self) {
        for (mut child, render) in self.running {
            let _ = child.wait();
            let (raw, mut command) = match &render {
                Render::Perf(raw) => {
                    let mut c = Command::new("perf");
                    c.args([
                        "report",
                        "--stdio",
                        "--no-children",
                        "--sort",
                        "dso,symbol",
                        "--percent-limit",
                        "0.5",
                        "-i",
                    ])
                    .arg(raw);
                    (raw, c)
                }
                Render::Pprof(raw) => {
                    let mut c = Command::new("go");
                    c.args(["tool", "pprof", "-top", "-cum", "-nodecount=60"]).arg(raw);
                    (raw, c)
                }
            };
            let summary = raw.with_extension(format!(
                "{}.txt",
                raw.extension().and_then(|e| e.to_str()).unwrap_or("raw")
            ));
            match command.stdin(Stdio::null()).output() {
                Ok(out) => {
                    let mut text = out.stdout;
                    text.extend_from_slice(&out.stderr);
                    if let Err(e) = std::fs::write(&summary, text) {
                        eprintln!("{}: {e}", summary.display());
                    }
                }
                Err(e) => eprintln!("no summary of {}: {e}", raw.display()),
            }
        }
    }
}
