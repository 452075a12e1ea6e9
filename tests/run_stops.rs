//! `gitprovider-operator run`, the built binary, stops within seconds of SIGTERM or SIGINT
//! whatever the API server does: unreachable (connections refused) or stalling (accepts
//! connections and never answers).

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Bounded wait for the process to exit after the signal.
const EXIT_WAIT: Duration = Duration::from_secs(20);

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn kubeconfig(dir: &std::path::Path, server: &str) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    let mut file = std::fs::File::create(&path).unwrap();
    write!(
        file,
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: true\n\
         users:\n- name: u\n  user:\n    token: not-a-real-token\ncontexts:\n- name: x\n  context:\n    cluster: c\n    user: u\n\
         current-context: x\n"
    )
    .unwrap();
    path
}

fn start(server: &str) -> (Child, u16, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let metrics_port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_gitprovider-operator"))
        .args(["run", "--bind-address", "127.0.0.1"])
        .args(["--metrics-port", &metrics_port.to_string()])
        .args(["--webhook-port", &free_port().to_string()])
        .env("KUBECONFIG", kubeconfig(dir.path(), server))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    (child, metrics_port, dir)
}

/// Waits until the metrics port accepts connections: the operator is up and retrying.
fn wait_listening(port: u16, child: &mut Child) {
    let started = Instant::now();
    while std::net::TcpStream::connect(SocketAddr::from(([127, 0, 0, 1], port))).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "the operator exited early");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the metrics port never opened"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // a moment in the retrying state
    std::thread::sleep(Duration::from_secs(2));
}

fn signal_and_wait(child: &mut Child, signal: &str) -> Duration {
    let status = Command::new("kill")
        .args([signal, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let sent = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            eprintln!("exited with {status} {:?} after {signal}", sent.elapsed());
            return sent.elapsed();
        }
        if sent.elapsed() > EXIT_WAIT {
            let _ = child.kill();
            panic!("still running {EXIT_WAIT:?} after {signal}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn stops_on_sigterm_and_sigint_with_an_unreachable_api_server() {
    for signal in ["-TERM", "-INT"] {
        // nothing listens on port 1
        let (mut child, port, _dir) = start("https://127.0.0.1:1");
        wait_listening(port, &mut child);
        signal_and_wait(&mut child, signal);
    }
}

#[test]
fn stops_on_sigterm_and_sigint_with_a_stalling_api_server() {
    // accepts connections and never says a word
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let server = format!("https://{}", listener.local_addr().unwrap());
    let held = std::thread::spawn(move || {
        let mut open = Vec::new();
        for stream in listener.incoming().take(64) {
            open.push(stream);
        }
    });
    for signal in ["-TERM", "-INT"] {
        let (mut child, port, _dir) = start(&server);
        wait_listening(port, &mut child);
        signal_and_wait(&mut child, signal);
    }
    drop(held);
}
