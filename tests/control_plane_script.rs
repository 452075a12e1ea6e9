//! `scripts/control-plane` as people use it: a usage error, binaries that cannot be found or
//! built, a binary that exits at start, `up` on a folder already running, the envtest
//! conventions for binaries one already has, and `--reuse`.

mod support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use support::control_plane::{ControlPlane, ROOT, assets};

fn control_plane(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(Path::new(ROOT).join("scripts/control-plane"));
    command.args(args).stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("scripts/control-plane runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn usage_errors_exit_two() {
    for args in [
        &[][..],
        &["launch"],
        &["up"],
        &["down", "--dir"],
        // Options of `up` only.
        &["down", "--dir", "x", "--no-watch-cache"],
        &["assets", "--aggregator-routing"],
        &["up", "--dir", "x", "--audit", "loud"],
    ] {
        let output = control_plane(args, &[]);
        let code = output.status.code();
        if args.len() == 5 {
            assert_eq!(code, Some(1), "{args:?}: {}", stderr(&output));
            assert!(
                stderr(&output).contains("expected none, metadata or request"),
                "{}",
                stderr(&output)
            );
        } else {
            assert_eq!(code, Some(2), "{args:?}: {}", stderr(&output));
            assert!(
                stderr(&output).contains("usage: scripts/control-plane"),
                "{}",
                stderr(&output)
            );
        }
    }
}

/// No binaries anywhere and no Go to build them: one line that says what to do.
#[test]
fn no_go_and_no_assets() {
    let empty = tempfile::tempdir().expect("temp dir");
    let output = control_plane(
        &["assets"],
        &[
            ("XDG_CACHE_HOME", &empty.path().display().to_string()),
            ("PATH", "/usr/bin:/bin"),
        ],
    );
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(
        text.contains("not found in") && text.contains("go is not installed") && text.contains("KUBEBUILDER_ASSETS"),
        "{text}"
    );
    assert_eq!(text.trim().lines().count(), 1, "one line: {text}");
}

/// Binaries one already has win: a KUBEBUILDER_ASSETS folder is printed as it is; a single
/// TEST_ASSET_* file is combined with the rest in a folder of links.
#[test]
fn envtest_conventions() {
    let folder = assets();
    let output = control_plane(&["assets"], &[("KUBEBUILDER_ASSETS", &folder.display().to_string())]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        folder.display().to_string()
    );

    let etcd = folder.join("etcd").canonicalize().expect("etcd");
    let output = control_plane(&["assets"], &[("TEST_ASSET_ETCD", &etcd.display().to_string())]);
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let linked = Path::new(&printed).join("etcd").canonicalize().expect("a link to etcd");
    assert_eq!(linked, etcd);
    for binary in ["kube-apiserver", "kubectl"] {
        assert!(Path::new(&printed).join(binary).exists(), "{printed} holds {binary}");
    }

    let output = control_plane(&["assets"], &[("KUBEBUILDER_ASSETS", "/nonexistent")]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("KUBEBUILDER_ASSETS=/nonexistent is not a folder"),
        "{}",
        stderr(&output)
    );
}

/// A binary that exits at start: its last log lines are shown, nothing is left running.
#[test]
fn a_binary_that_exits_at_start() {
    let parent = tempfile::tempdir().expect("temp dir");
    let dir = parent.path().join("cp");
    let dir_text = dir.display().to_string();
    let output = control_plane(&["up", "--dir", &dir_text], &[("TEST_ASSET_ETCD", "/bin/false")]);
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(text.contains("etcd exited at start (status 1)"), "{text}");
    assert!(text.contains("last lines of"), "{text}");
    let down = control_plane(&["down", "--dir", &dir_text], &[]);
    assert!(down.status.success(), "{}", stderr(&down));
    assert!(!dir.exists());
}

/// `up` on a folder that runs already refuses and names the process; with `--reuse` it keeps it.
#[test]
fn up_on_a_running_folder() {
    let plane = ControlPlane::shared();
    let dir = plane.dir().display().to_string();
    let output = control_plane(&["up", "--dir", &dir], &[]);
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(
        text.contains("a control plane is already running in") && text.contains("kube-apiserver pid"),
        "{text}"
    );
    assert!(text.contains("scripts/control-plane down --dir"), "{text}");

    let reused = control_plane(&["up", "--dir", &dir, "--reuse"], &[]);
    assert!(reused.status.success(), "{}", stderr(&reused));
    assert_eq!(
        String::from_utf8_lossy(&reused.stdout).trim(),
        format!("export KUBECONFIG={}", plane.kubeconfig().display())
    );
    // Still the same, healthy server.
    let version = plane.kubectl_ok(&["version", "-o", "json"]);
    assert!(version.contains("\"gitVersion\": \"v1.37.2\""), "{version}");
}
