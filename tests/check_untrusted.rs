//! `gitprovider-operator check` on an untrusted tree (CI runs it on pull requests), through the
//! binary: links are not followed out of the given folders, what is not a regular file is
//! skipped and said so, big files are not read, content outside manifests is never echoed,
//! the walk is linear in depth, and an unreadable folder is reported while the rest is checked.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// Bound for one run of `check` (it must never hang, whatever the tree holds).
const RUN_WAIT: Duration = Duration::from_secs(60);

const GOOD: &str = "apiVersion: gitprovider.dev/v1alpha1\nkind: GitProviderConnection\nmetadata: {name: a, namespace: ns}\n\
                    spec: {provider: GitLab, instanceName: main, url: https://gitlab.example.com, tokenSecretRef: {name: pat}}\n";
const BAD: &str = "apiVersion: gitprovider.dev/v1alpha1\nkind: GitProviderConnection\nmetadata: {name: b, namespace: ns}\n\
                   spec: {provider: GitLab, instanceName: main, url: https://gitlab.example.com, tokenSecretRef: {name: pat}}\n";

fn check(root: &Path) -> (Option<i32>, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gitprovider-operator"))
        .arg("check")
        .arg(root)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > RUN_WAIT {
            let _ = child.kill();
            panic!("check did not finish within {RUN_WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let Output { status, stdout, stderr } = child.wait_with_output().unwrap();
    (
        status.code(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

#[test]
fn links_pipes_and_devices_are_not_followed_nor_read() {
    let outside = tempfile::tempdir().unwrap();
    let secret = outside.path().join("secret.txt");
    std::fs::write(&secret, "password: hunter2-outside-the-tree\n: : not yaml [").unwrap();
    std::fs::write(outside.path().join("dup.yaml"), BAD).unwrap();

    let tree = tempfile::tempdir().unwrap();
    std::fs::write(tree.path().join("good.yaml"), GOOD).unwrap();
    std::os::unix::fs::symlink(&secret, tree.path().join("secret.yaml")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", tree.path().join("zero.yaml")).unwrap();
    std::os::unix::fs::symlink(outside.path(), tree.path().join("elsewhere")).unwrap();
    let fifo = tree.path().join("pipe.yaml");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());

    let (code, stdout, stderr) = check(tree.path());
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    for what in ["secret.yaml", "zero.yaml", "elsewhere"] {
        assert!(
            stderr.contains(&format!("{what}: file: warning: is a symbolic link: not followed")),
            "{stderr}"
        );
    }
    assert!(
        stderr.contains("pipe.yaml: file: warning: is not a regular file: not read"),
        "{stderr}"
    );
    assert!(
        !stdout.contains("hunter2") && !stderr.contains("hunter2"),
        "content outside the tree echoed"
    );
    assert!(!stdout.contains("dup.yaml"), "the linked folder was walked: {stdout}");
    assert!(stderr.contains("checked 1 GitProviderConnection in 1 file"), "{stderr}");
}

#[test]
fn a_huge_file_is_reported_not_read() {
    let tree = tempfile::tempdir().unwrap();
    let big = tree.path().join("big.yaml");
    let file = std::fs::File::create(&big).unwrap();
    file.set_len(64 * 1024 * 1024).unwrap();
    std::fs::write(tree.path().join("good.yaml"), GOOD).unwrap();
    let (code, stdout, stderr) = check(tree.path());
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("big.yaml: file: is larger than"), "{stdout}");
}

#[test]
fn a_deep_tree_is_walked_once_and_an_unreadable_folder_does_not_stop_the_rest() {
    let tree = tempfile::tempdir().unwrap();
    std::fs::write(tree.path().join("good.yaml"), GOOD).unwrap();
    std::fs::create_dir(tree.path().join("deep")).unwrap();
    // 2,100 levels: past PATH_MAX (4096) at the bottom, where folders can no longer be read by
    // their path, even as root
    // relative steps: a path that long cannot be named at once (this test binary's other tests
    // use absolute paths, so moving the working folder meanwhile does not disturb them)
    let back = std::env::current_dir().unwrap();
    std::env::set_current_dir(tree.path().join("deep")).unwrap();
    for _ in 0..2100 {
        std::fs::create_dir("d").unwrap();
        std::env::set_current_dir("d").unwrap();
    }
    std::fs::write("dup.yaml", BAD).unwrap();
    std::env::set_current_dir(back).unwrap();
    std::fs::create_dir(tree.path().join("shallow")).unwrap();
    std::fs::write(tree.path().join("shallow").join("dup.yaml"), BAD).unwrap();

    let (code, stdout, stderr) = check(tree.path());
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("folder: cannot be read"), "{stdout}");
    // the rest was checked: the duplicate in a readable folder is found
    assert!(stdout.contains("shallow/dup.yaml: ns/b: instanceName"), "{stdout}");
}

/// YAML also ends a line at a lone carriage return (old Mac files); kubectl applies such a file.
/// Read as one comment line, it would pass `check` unseen. Found by fuzzing (`check_yaml`).
#[test]
fn a_file_with_carriage_return_line_breaks_is_checked_not_skipped() {
    let tree = tempfile::tempdir().unwrap();
    let text = format!(
        "# a comment\r{}---\r{}",
        BAD.replace('\n', "\r"),
        GOOD.replace('\n', "\r")
    );
    std::fs::write(tree.path().join("mac.yaml"), text).unwrap();
    let (code, stdout, stderr) = check(tree.path());
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("checked 2 GitProviderConnections"), "{stderr}");
    // the second connection's spec is on line 10, counting lone CRs as the parser does
    assert!(stdout.contains("is already used by GitLab connection ns/b"), "{stdout}");
    assert!(stdout.contains("(line 10)"), "{stdout}");
}
