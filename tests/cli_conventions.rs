//! The command line's conventions, through the built binary: shell completion (loaded in real
//! bash, zsh and fish), `version` and `--version`, `run --kubeconfig/--context` on the real
//! control plane, `--log-level` over RUST_LOG, plain (colourless) logs on a pipe, and an
//! unreachable API server named once per failure.

mod support;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::control_plane::{ControlPlane, PROXY_VARIABLES};

const BIN: &str = env!("CARGO_BIN_EXE_gitprovider-operator");
const WAIT: Duration = Duration::from_secs(30);

fn command(args: &[&str]) -> Command {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("KUBECONFIG")
        .env_remove("NO_COLOR")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env_remove("POD_NAMESPACE");
    for proxy in PROXY_VARIABLES {
        command.env_remove(proxy);
    }
    command
}

fn output(args: &[&str]) -> Output {
    command(args).stdin(Stdio::null()).output().expect("run the binary")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A `run` whose stderr is collected line by line; killed when dropped.
struct Running {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    raw: Arc<Mutex<Vec<u8>>>,
}

impl Running {
    fn start(mut command: Command) -> Running {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("start the binary");
        let stderr = child.stderr.take().expect("stderr");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let (sink, raw_sink) = (lines.clone(), raw.clone());
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stderr);
            let mut line = Vec::new();
            while reader.read_until(b'\n', &mut line).map(|n| n > 0).unwrap_or(false) {
                raw_sink.lock().unwrap().extend_from_slice(&line);
                sink.lock().unwrap().push(text(&line).trim_end().to_owned());
                line.clear();
            }
        });
        Running { child, lines, raw }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Waits (bounded) until the collected lines satisfy `done`.
    fn wait_until(&mut self, what: &str, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let lines = self.lines();
            if done(&lines) {
                return lines;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("the operator exited ({status}) before {what}:\n{}", lines.join("\n"));
            }
            assert!(
                Instant::now() < deadline,
                "no {what} within {WAIT:?}:\n{}",
                lines.join("\n")
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn assert_no_escape(bytes: &[u8]) {
    assert!(
        !bytes.contains(&0x1b),
        "ANSI escape in output written to a pipe:\n{}",
        text(bytes)
    );
}

/// A loopback address nothing listens on (bound, then released).
fn refused_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("https://{addr}")
}

/// `kubeconfig` (the control plane's admin one) with a second cluster and context `broken`
/// pointing at `server`, which becomes the current context.
fn kubeconfig_with_broken_context(admin: &Path, server: &str, dir: &Path) -> std::path::PathBuf {
    let yaml = std::fs::read_to_string(admin).unwrap();
    let mut config: Value = serde_saphyr::from_str(&yaml).unwrap();
    let user = config["contexts"][0]["context"]["user"].clone();
    config["clusters"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "broken", "cluster": {"server": server, "insecure-skip-tls-verify": true}}));
    config["contexts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "broken", "context": {"cluster": "broken", "user": user}}));
    config["current-context"] = json!("broken");
    let path = dir.join("kubeconfig");
    // JSON is YAML.
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

#[test]
fn completion_scripts_for_bash_zsh_and_fish() {
    let bash = output(&["completion", "bash"]);
    assert_eq!(bash.status.code(), Some(0), "{}", text(&bash.stderr));
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("completion.bash");
    std::fs::write(&file, &bash.stdout).unwrap();
    let syntax = Command::new("bash").arg("-n").arg(&file).output().expect("bash");
    assert!(syntax.status.success(), "bash -n: {}", text(&syntax.stderr));
    // What bash offers after TAB, the script sourced as a user would.
    let complete = |words: &[&str]| -> Vec<String> {
        let line = words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" ");
        let script = format!(
            "source '{}'; COMP_WORDS=({line}); COMP_CWORD={}; _gitprovider__operator gitprovider-operator '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            file.display(),
            words.len() - 1,
            words[words.len() - 1],
            words[words.len() - 2],
        );
        let out = Command::new("bash").arg("-c").arg(script).output().expect("bash");
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout).lines().map(str::to_owned).collect()
    };
    assert_eq!(complete(&["gitprovider-operator", "ver"]), ["verify", "version"]);
    assert!(complete(&["gitprovider-operator", "run", "--kube"]).contains(&"--kubeconfig".to_owned()));
    let shells = complete(&["gitprovider-operator", "completion", ""]);
    for shell in ["bash", "zsh", "fish"] {
        assert!(shells.contains(&shell.to_owned()), "{shells:?}");
    }
    assert_eq!(
        complete(&["gitprovider-operator", "run", "--log-level", ""]),
        ["off", "error", "warn", "info", "debug", "trace"]
    );

    // zsh and fish: the shell on PATH, else Debian's packages unpacked by scripts/shells.
    let shell = |name: &str| -> String {
        let out = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/shells"))
            .args(["path", name])
            .output()
            .expect("scripts/shells runs");
        assert!(
            out.status.success(),
            "scripts/shells path {name}: {}",
            text(&out.stderr)
        );
        text(&out.stdout).trim().to_owned()
    };

    let zsh = output(&["completion", "zsh"]);
    assert_eq!(zsh.status.code(), Some(0));
    let file = tmp.path().join("_gitprovider-operator");
    std::fs::write(&file, &zsh.stdout).unwrap();
    let zsh_bin = shell("zsh");
    let syntax = Command::new(&zsh_bin).arg("-n").arg(&file).output().expect("zsh");
    assert!(syntax.status.success(), "zsh -n: {}", text(&syntax.stderr));
    // Loaded as a user's zsh loads it (compinit, then the script): the command is registered
    // with the script's completion function, without a word on stderr.
    let script = format!(
        "[[ -n $GPO_ZSH_MODULE_PATH ]] && module_path=($GPO_ZSH_MODULE_PATH); autoload -U compinit; compinit -u -D; \
         source '{}'; print -r -- ${{_comps[gitprovider-operator]}}",
        file.display()
    );
    let loaded = Command::new(&zsh_bin)
        .args(["-f", "-c", &script])
        .output()
        .expect("zsh");
    assert!(loaded.status.success(), "{}", text(&loaded.stderr));
    assert_eq!(
        text(&loaded.stdout).trim(),
        "_gitprovider-operator",
        "{}",
        text(&loaded.stderr)
    );
    assert_eq!(text(&loaded.stderr), "");

    let fish = output(&["completion", "fish"]);
    assert_eq!(fish.status.code(), Some(0));
    let file = tmp.path().join("gitprovider-operator.fish");
    std::fs::write(&file, &fish.stdout).unwrap();
    let fish_bin = shell("fish");
    let syntax = Command::new(&fish_bin)
        .arg("--no-config")
        .arg("-n")
        .arg(&file)
        .output()
        .expect("fish");
    assert!(syntax.status.success(), "fish -n: {}", text(&syntax.stderr));
    // What fish offers after TAB (`complete -C`), the script sourced as a user would.
    let complete = |line: &str| -> Vec<String> {
        let script = format!("source '{}'; complete -C '{line}'", file.display());
        let out = Command::new(&fish_bin)
            .args(["--no-config", "-c", &script])
            .output()
            .expect("fish");
        assert!(out.status.success() && out.stderr.is_empty(), "{}", text(&out.stderr));
        text(&out.stdout)
            .lines()
            .map(|l| l.split('\t').next().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(complete("gitprovider-operator ver"), ["verify", "version"]);
    assert!(complete("gitprovider-operator run --kube").contains(&"--kubeconfig".to_owned()));
    assert_eq!(
        complete("gitprovider-operator doctor --webhook-c"),
        ["--webhook-certs", "--webhook-cert-secret", "--webhook-configuration"]
    );
    assert_eq!(
        complete("gitprovider-operator doctor --webhook-certs "),
        ["external", "self-managed"]
    );

    let unknown = output(&["completion", "tcsh"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown.stderr).contains("bash"), "{}", text(&unknown.stderr));
}

#[test]
fn version_names_the_crate_version_commit_and_build_date() {
    let flag = output(&["--version"]);
    assert_eq!(flag.status.code(), Some(0));
    let line = text(&flag.stdout);
    let json = output(&["version", "-o", "json"]);
    assert_eq!(json.status.code(), Some(0));
    let info: Value = serde_json::from_slice(&json.stdout).unwrap();
    let (version, commit, built) = (
        info["version"].as_str().unwrap(),
        info["commit"].as_str().unwrap(),
        info["buildDate"].as_str().unwrap(),
    );
    assert_eq!(version, env!("CARGO_PKG_VERSION"));
    assert!(
        commit == "unknown" || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{commit}"
    );
    // Built from a git checkout: the commit is HEAD's (build.rs runs again when HEAD moves).
    if let Ok(head) = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        && head.status.success()
    {
        assert_eq!(commit, text(&head.stdout).trim());
    }
    built.parse::<jiff::Timestamp>().expect("an RFC 3339 build date");
    assert_eq!(
        line.trim(),
        format!("gitprovider-operator {version} (commit {commit}, built {built})")
    );

    let plain = output(&["version"]);
    assert_eq!(
        text(&plain.stdout),
        format!("gitprovider-operator {version}\ncommit:     {commit}\nbuild date: {built}\n")
    );
}

#[test]
fn run_uses_the_kubeconfig_and_context_given() {
    let plane = ControlPlane::shared();
    let namespace = plane.namespace("cli-kubeconfig");
    let tmp = tempfile::tempdir().unwrap();
    // The file's current context and KUBECONFIG both point where nothing answers: only the flags
    // lead to the control plane.
    let kubeconfig = kubeconfig_with_broken_context(&plane.kubeconfig(), &refused_address(), tmp.path());
    let mut cmd = command(&[
        "run",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--context",
        "gitprovider-control-plane",
        "--namespace",
        &namespace,
        "--bind-address",
        "127.0.0.1",
        "--metrics-port",
        "0",
        "--log-level",
        "debug",
    ]);
    // --log-level wins over RUST_LOG.
    cmd.env("RUST_LOG", "error")
        .env("KUBECONFIG", tmp.path().join("absent"));
    let mut run = Running::start(cmd);
    let lines = run.wait_until("the first list", |lines| {
        lines.iter().any(|l| l.contains("connections listed"))
    });
    let server = plane.server_url().trim_end_matches('/');
    assert!(
        lines
            .iter()
            .any(|l| l.contains("connecting to the Kubernetes API") && l.contains(server)),
        "{}",
        lines.join("\n")
    );
    assert!(
        !lines.iter().any(|l| l.contains("cannot reach")),
        "{}",
        lines.join("\n")
    );
    assert_no_escape(&run.raw.lock().unwrap());
}

#[test]
fn an_unknown_context_is_a_usage_error_naming_the_known_ones() {
    let plane = ControlPlane::shared();
    let out = output(&[
        "run",
        "--kubeconfig",
        plane.kubeconfig().to_str().unwrap(),
        "--context",
        "staging",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--context \"staging\" is not in")
            && stderr.contains("its contexts: gitprovider-control-plane"),
        "{stderr}"
    );

    let missing = output(&["run", "--kubeconfig", "/nonexistent/kubeconfig"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(
        text(&missing.stderr).contains("cannot read --kubeconfig /nonexistent/kubeconfig"),
        "{}",
        text(&missing.stderr)
    );
}

#[test]
fn an_unreachable_api_server_is_named_once_per_failure_without_colour() {
    let server = refused_address();
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = tmp.path().join("kubeconfig");
    let config = json!({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": true}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "not-a-real-token"}}],
    });
    std::fs::write(&kubeconfig, config.to_string()).unwrap();
    let cmd = command(&[
        "run",
        "--kubeconfig",
        kubeconfig.to_str().unwrap(),
        "--namespace",
        "default",
        "--bind-address",
        "127.0.0.1",
        "--metrics-port",
        "0",
    ]);
    let mut run = Running::start(cmd);
    let lines = run.wait_until("three failed watches", |lines| {
        lines.iter().filter(|l| l.contains("failed; retrying")).count() >= 3
    });
    let _ = run.child.kill();
    let failures: Vec<&String> = lines.iter().filter(|l| l.contains("failed; retrying")).collect();
    let all = lines.join("\n");
    for failure in &failures {
        assert!(
            failure.contains(&format!("cannot reach the API server {server}:"))
                && failure.contains("Connection refused"),
            "{failure}"
        );
    }
    // One line per failure: kube's own "failed with error" line is not repeated beside ours.
    let connection_lines = lines.iter().filter(|l| l.contains("Connect")).count();
    assert_eq!(connection_lines, failures.len(), "{all}");
    assert!(!all.contains("failed with error"), "{all}");
    assert_no_escape(&run.raw.lock().unwrap());
}
