//! `gitprovider-operator check`, run as the real binary on fixture folders and the examples.

use std::path::Path;
use std::process::Command;

struct Outcome {
    code: i32,
    stdout: Vec<String>,
    stderr: String,
}

fn check(args: &[&str]) -> Outcome {
    let output = Command::new(env!("CARGO_BIN_EXE_gitprovider-operator"))
        .arg("check")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    Outcome {
        code: output.status.code().unwrap(),
        stdout: String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

const F: &str = "tests/fixtures/check";

const DUPLICATE_HINT: &str = "choose another instanceName (names are compared ignoring case and surrounding spaces)";

#[test]
fn valid_manifests_pass() {
    let outcome = check(&[&format!("{F}/valid")]);
    assert_eq!(outcome.stdout, Vec::<String>::new());
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    // non-YAML files in the folder are not read; a List's items are
    assert_eq!(
        outcome.stderr,
        "checked 3 GitProviderConnections in 2 files: no problems\n"
    );
}

#[test]
fn cluster_scope_spans_namespaces() {
    let outcome = check(&["--uniqueness-scope", "cluster", &format!("{F}/valid")]);
    assert_eq!(
        outcome.stdout,
        vec![format!(
            "{F}/valid/nested/list.yml: ns-2/gl: instanceName \"main\" is already used by GitLab connection ns-1/gl \
             (in {F}/valid/connections.yaml); {DUPLICATE_HINT} (line 9)"
        )]
    );
    assert_eq!(outcome.code, 1);
}

#[test]
fn duplicates_across_files_name_the_first_holder_and_its_file() {
    let outcome = check(&[&format!("{F}/duplicates")]);
    assert_eq!(
        outcome.stdout,
        vec![
            format!(
                "{F}/duplicates/a.yaml: team-a/azure-dev1-copy: instanceName \"DEV1\" is already used by AzureDevOps \
                 connection team-a/azure-dev1 (in {F}/duplicates/a.yaml); {DUPLICATE_HINT} (line 15)"
            ),
            format!(
                "{F}/duplicates/b/c.yaml: team-a/azure-dev1-copy: is defined again (first in {F}/duplicates/a.yaml); \
                 applying both keeps only one of them (line 11)"
            ),
        ]
    );
    assert_eq!(outcome.code, 1);
    assert_eq!(
        outcome.stderr,
        "checked 4 GitProviderConnections in 2 files: 2 problems\n"
    );
}

#[test]
fn namespace_flag_applies_to_documents_without_one() {
    let outcome = check(&["--namespace", "team-a", &format!("{F}/duplicates")]);
    assert_eq!(outcome.stdout.len(), 3, "{:?}", outcome.stdout);
    assert_eq!(
        outcome.stdout[1],
        format!(
            "{F}/duplicates/b/c.yaml: team-a/azure-dev1-b: instanceName \"Dev1\" is already used by AzureDevOps \
             connection team-a/azure-dev1 (in {F}/duplicates/a.yaml); {DUPLICATE_HINT} (line 7)"
        )
    );
    assert_eq!(outcome.code, 1);
}

#[test]
fn files_are_taken_in_sorted_order_whatever_the_argument_order() {
    let a = format!("{F}/duplicates/a.yaml");
    let c = format!("{F}/duplicates/b/c.yaml");
    let forward = check(&["-n", "team-a", &a, &c]);
    let backward = check(&["-n", "team-a", &c, &a]);
    assert_eq!(forward.stdout, backward.stdout);
    // the same file twice is read once
    let twice = check(&[&a, &a]);
    assert_eq!(twice.stdout.len(), 1, "{:?}", twice.stdout);
}

#[test]
fn every_spec_problem_is_reported() {
    let outcome = check(&[&format!("{F}/invalid")]);
    let file = format!("{F}/invalid/spec.yaml");
    let expected: Vec<String> = [
        "ns/everything-wrong: spec.instanceName must not be blank; give the instance a name such as \"dev1\" (line 6)",
        "ns/everything-wrong: spec.url \"ftp://gitlab.example.com\" must be an absolute http:// or https:// URL with \
         a host, such as https://gitlab.example.com (line 7)",
        "ns/everything-wrong: spec.verifyInterval \"30s\" is shorter than the minimum of 1m (line 11)",
        "ns/everything-wrong: spec.tokenSecretRef.name \"My_Secret\" cannot be the name of a Secret (lower-case \
         letters, digits, '-' and '.', at most 253 characters) (line 8)",
        "ns/everything-wrong: spec.tokenSecretRef.key must not be empty: name the key of the Secret's data (line 8)",
        "ns/everything-wrong: spec.tls.caBundleRef.name must not be empty: name the ConfigMap that holds it (line 10)",
        "ns/metadata-endpoint: spec.url points at the link-local address 169.254.169.254 (where cloud metadata \
         endpoints live), which the operator never contacts; use the instance's real address (line 19)",
        "ns/wrong-provider: spec.provider: unsupported value \"Gitlab\"; supported values: \"GitLab\", \
         \"Bitbucket\", \"AzureDevOps\", \"GitHub\", \"Gitea\" (line 26)",
        "ns/<no name, document 4>: metadata.name is missing (line 33)",
        "ns/<no name, document 4>: spec.url must not contain a query (?...); give the instance's base URL only (line 37)",
        "document 5: kind \"GitProviderConection\" is not a kind of gitprovider.dev; did you mean \
         GitProviderConnection? (line 41)",
    ]
    .iter()
    .map(|line| format!("{file}: {line}"))
    .collect();
    assert_eq!(outcome.stdout, expected);
    assert_eq!(outcome.code, 1);
    // warnings go to stderr and do not fail the check
    assert!(
        outcome.stderr.contains(&format!(
            "{file}: ns/risky-but-legal: warning: spec.url uses http://: the token travels unencrypted"
        )),
        "{}",
        outcome.stderr
    );
    assert!(
        outcome
            .stderr
            .contains("ns/risky-but-legal: warning: spec.tls.insecureSkipVerify is true")
    );
    assert!(
        outcome
            .stderr
            .ends_with("checked 5 GitProviderConnections in 1 file: 11 problems\n")
    );
    // a token in a URL is never echoed
    assert!(!outcome.stdout.iter().any(|l| l.contains("REPLACE-ME")));
}

#[test]
fn unparseable_yaml_names_the_file_document_and_line_and_the_rest_is_still_checked() {
    let outcome = check(&[&format!("{F}/badyaml")]);
    let file = format!("{F}/badyaml/broken.yaml");
    assert_eq!(
        outcome.stdout,
        vec![
            format!(
                "{file}: document 2: invalid YAML at line 14, column 13: mapping values are not allowed in this context"
            ),
            format!(
                "{file}: ns/after-the-break: instanceName \"X\" is already used by GitLab connection ns/fine (in \
                 {file}); {DUPLICATE_HINT} (line 21)"
            ),
        ]
    );
    assert_eq!(outcome.code, 1);
}

#[test]
fn usage_errors_exit_2() {
    let outcome = check(&[&format!("{F}/does-not-exist")]);
    assert_eq!(outcome.code, 2);
    assert!(outcome.stdout.is_empty());
    assert_eq!(
        outcome.stderr,
        format!("error: {F}/does-not-exist: no such file or directory\n")
    );
    let outcome = check(&[]);
    assert_eq!(outcome.code, 2, "no PATH at all");
}

#[test]
fn the_examples_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut files: Vec<String> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| format!("examples/{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    let args: Vec<&str> = files.iter().map(String::as_str).collect();
    let outcome = check(&args);
    assert_eq!(outcome.stdout, Vec::<String>::new());
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    assert!(
        outcome.stderr.contains("checked 12 GitProviderConnections"),
        "{}",
        outcome.stderr
    );
    // names reused across providers are fine even when unique in the whole cluster
    let mut cluster = vec!["--uniqueness-scope", "cluster"];
    cluster.extend(&args);
    assert_eq!(check(&cluster).code, 0);
}

#[test]
fn the_invalid_examples_fail() {
    let outcome = check(&["examples-invalid"]);
    assert_eq!(
        outcome.stdout,
        vec![
            "examples-invalid/bad-url.yaml: team-b/azure-legacy: spec.url must not contain user info \
             (user:password@); put the token in the Secret named by spec.tokenSecretRef and any login in spec.username (line 10)"
                .to_owned(),
            format!(
                "examples-invalid/duplicate.yaml: team-b/gitlab-staging-copy: instanceName \"Staging\" is already \
                 used by GitLab connection team-b/gitlab-staging (in examples-invalid/duplicate.yaml); \
                 {DUPLICATE_HINT} (line 31)"
            ),
        ]
    );
    assert_eq!(outcome.code, 1);
    // the README's claim as written: the examples folder, recursively, passes
    let examples = check(&["examples"]);
    assert_eq!(
        (examples.code, examples.stdout),
        (0, Vec::<String>::new()),
        "{}",
        examples.stderr
    );
}

#[test]
fn repository_paths_are_checked_per_provider() {
    let outcome = check(&[&format!("{F}/repositories")]);
    let file = format!("{F}/repositories/connections.yaml");
    assert_eq!(
        outcome.stdout,
        vec![
            format!(
                r#"{file}: team-a/gh: spec.repositories[1] "octo-org/web/extra": expected owner/repo (two segments), got 3 (line 11)"#
            ),
            format!(
                r#"{file}: team-a/gh: spec.repositories[2] "Octo-Org/Web" duplicates spec.repositories[0] "octo-org/web" (line 12)"#
            ),
            format!(
                r#"{file}: team-a/gl: spec.repositories[1] "app-team/web.git": the project must not end in .git or .atom (give the path, not the clone URL) (line 24)"#
            ),
        ]
    );
    assert_eq!(outcome.code, 1);
}

/// Runs `check ARGS` with `stdin` on its standard input: (exit code, stdout, stderr).
fn check_with_stdin(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_gitprovider-operator"))
        .arg("check")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // a child that stops reading early (the size cap) closes the pipe: not an error here
    let _ = input.write_all(stdin);
    drop(input);
    let output = child.wait_with_output().unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// Two documents: one with an unknown field (line 10) and a CEL failure, one of an unknown
/// version of the group.
const PIPED: &str = "apiVersion: gitprovider.dev/v1alpha1
kind: GitProviderConnection
metadata:
  name: piped
  namespace: ns-1
spec:
  provider: GitLab
  instanceName: main
  url: https://gitlab.example.com
  verifyinterval: 10s
  tokenSecretRef:
    name: pat
    key: \"\"
---
apiVersion: gitprovider.dev/v2
kind: GitProviderConnection
metadata: {name: later}
";

#[test]
fn standard_input_is_read_with_the_files() {
    let (code, stdout, stderr) = check_with_stdin(&[&format!("{F}/valid"), "-"], PIPED.as_bytes());
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        [
            "<stdin>: ns-1/piped: unknown field \"spec.verifyinterval\" (line 10)",
            "<stdin>: ns-1/piped: spec.tokenSecretRef.key must not be empty: name the key of the Secret's data (line 13)",
            "<stdin>: document 2: apiVersion \"gitprovider.dev/v2\" is not served by the CRD; use gitprovider.dev/v1alpha1 (line 15)",
            // standard input is read first: its connection holds the name
            &format!(
                "{F}/valid/connections.yaml: ns-1/gl: instanceName \"main\" is already used by GitLab connection \
                 ns-1/piped (in <stdin>); {DUPLICATE_HINT} (line 14)"
            ),
        ]
    );
    assert_eq!(stderr, "checked 4 GitProviderConnections in 3 files: 4 problems\n");
    // alone, and the same size cap as files
    let (code, stdout, _) = check_with_stdin(&["-"], b"");
    assert_eq!((code, stdout.as_str()), (0, ""));
    let big = format!("# {}\n", "x".repeat(4 * 1024 * 1024));
    let (code, stdout, _) = check_with_stdin(&["-"], big.as_bytes());
    assert_eq!(code, 1);
    assert_eq!(
        stdout,
        "<stdin>: file: is larger than 4194304 bytes: not read (a manifest is far smaller)\n"
    );
}

#[test]
fn schema_problems_are_the_api_servers() {
    let manifest = "apiVersion: gitprovider.dev/v1alpha1
kind: GitProviderConnection
metadata: {name: typed, namespace: ns, labels: {ok: yes}, nmespace: x}
spec:
  provider: Gitea
  instanceName: 7
  url: https://git.example.com
  suspend: \"no\"
  tokenSecretRef: {name: pat}
  tls: {caBundleRef: {kind: Configmap, name: ca}}
  repositories: [a/b, a/b, c]
status: {ready: true, observedGeneration: later}
";
    let (code, stdout, _) = check_with_stdin(&["-"], manifest.as_bytes());
    assert_eq!(code, 1);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "<stdin>: ns/typed: metadata.labels.ok: must be of type string, not boolean (line 3)",
            "<stdin>: ns/typed: unknown field \"metadata.nmespace\" (line 3)",
            "<stdin>: ns/typed: spec.instanceName: must be of type string, not integer (line 6)",
            "<stdin>: ns/typed: spec.repositories[2]: has 1 character; at least 3 required (line 11)",
            "<stdin>: ns/typed: spec.repositories[2]: a repository path has at least two segments separated by /, and \
             no leading or trailing / (line 11)",
            "<stdin>: ns/typed: spec.repositories[1]: duplicate value \"a/b\" (line 11)",
            "<stdin>: ns/typed: spec.suspend: must be of type boolean, not string (line 8)",
            "<stdin>: ns/typed: spec.tls.caBundleRef.kind: unsupported value \"Configmap\"; supported values: \
             \"ConfigMap\", \"Secret\" (line 10)",
            "<stdin>: ns/typed: unknown field \"status.ready\" (line 12)",
        ]
    );
}

#[test]
fn json_output() {
    let (code, stdout, stderr) = check_with_stdin(&["-o", "json", "-"], PIPED.as_bytes());
    assert_eq!(code, 1);
    assert_eq!(stderr, "", "nothing but the document is printed");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["version"], 1);
    assert_eq!(report["files"], serde_json::json!(["<stdin>"]));
    assert_eq!(
        report["documents"],
        serde_json::json!([{"path": "<stdin>", "document": 1, "line": 1, "object": "ns-1/piped"}])
    );
    assert_eq!(
        report["problems"][0],
        serde_json::json!({
            "path": "<stdin>", "document": 1, "line": 10, "object": "ns-1/piped", "field": "spec.verifyinterval",
            "rule": "unknown-field", "severity": "error", "message": "unknown field \"spec.verifyinterval\""
        })
    );
    // the webhook's message, under the rule that refuses it first (the CRD's minLength)
    assert_eq!(report["problems"][1]["rule"], "schema");
    assert_eq!(report["problems"][1]["field"], "spec.tokenSecretRef.key");
    assert_eq!(report["problems"][1]["line"], 13);
    assert_eq!(report["problems"][2]["rule"], "unknown-api-version");
    assert_eq!(report["problems"][2]["object"], "document 2");
    assert_eq!(report["problems"][2]["document"], 2);
    assert_eq!(report["problems"][2]["line"], 15);
    assert_eq!(
        report["summary"],
        serde_json::json!({"files": 1, "connections": 1, "errors": 3, "warnings": 0})
    );
    // warnings carry their severity; a clean run exits 0
    let http = PIPED
        .split("---")
        .next()
        .unwrap()
        .replace("https:", "http:")
        .replace("  verifyinterval: 10s\n", "");
    let http = http.replace("    key: \"\"\n", "");
    let (code, stdout, _) = check_with_stdin(&["-o", "json", "-"], http.as_bytes());
    assert_eq!(code, 0, "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["problems"][0]["severity"], "warning");
    assert_eq!(report["problems"][0]["field"], "spec.url");
    assert_eq!(report["summary"]["errors"], 0);
}

#[test]
fn sarif_output() {
    let (code, stdout, stderr) = check_with_stdin(&["-o", "sarif", &format!("{F}/invalid"), "-"], PIPED.as_bytes());
    assert_eq!(code, 1);
    assert_eq!(stderr, "");
    let log: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(log["version"], "2.1.0");
    assert!(log["$schema"].as_str().unwrap().contains("sarif-2.1.0"));
    let run = &log["runs"][0];
    assert_eq!(run["tool"]["driver"]["name"], "gitprovider-operator check");
    let rules: Vec<&str> = run["tool"]["driver"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(
        rules.contains(&"unknown-field") && rules.contains(&"admission"),
        "{rules:?}"
    );
    let results = run["results"].as_array().unwrap();
    assert!(results.len() >= 10, "{results:?}");
    for result in results {
        let rule = result["ruleId"].as_str().unwrap();
        assert_eq!(rules[result["ruleIndex"].as_u64().unwrap() as usize], rule);
        assert!(["error", "warning"].contains(&result["level"].as_str().unwrap()));
        assert!(!result["message"]["text"].as_str().unwrap().is_empty());
        let location = &result["locations"][0]["physicalLocation"];
        assert!(!location["artifactLocation"]["uri"].as_str().unwrap().is_empty());
        assert!(location["region"]["startLine"].as_u64().unwrap() >= 1);
    }
    let unknown = results.iter().find(|r| r["ruleId"] == "unknown-field").unwrap();
    assert_eq!(
        unknown["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        "%3Cstdin%3E"
    );
    assert_eq!(unknown["locations"][0]["physicalLocation"]["region"]["startLine"], 10);
    let provider = results
        .iter()
        .find(|r| r["message"]["text"].as_str().unwrap().contains("Gitlab"))
        .unwrap();
    assert_eq!(
        provider["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
        format!("{F}/invalid/spec.yaml")
    );
    assert_eq!(provider["ruleId"], "schema");
    let warning = results.iter().find(|r| r["level"] == "warning").unwrap();
    assert_eq!(warning["ruleId"], "admission");
}

#[test]
fn junit_output() {
    let (code, stdout, stderr) = check_with_stdin(&["-o", "junit", &format!("{F}/valid"), "-"], PIPED.as_bytes());
    assert_eq!(code, 1);
    assert_eq!(stderr, "");
    assert!(stdout.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites "));
    // 4 connections and the document of an unknown version; 2 of them fail
    assert!(
        stdout.contains("<testsuite name=\"gitprovider-operator check\" tests=\"5\" failures=\"3\" errors=\"0\">"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "<testcase classname=\"&lt;stdin&gt;\" name=\"ns-1/piped\">\n      <failure type=\"unknown-field\" \
         message=\"unknown field &quot;spec.verifyinterval&quot;\">&lt;stdin&gt;:10: unknown field \
         &quot;spec.verifyinterval&quot;</failure>"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "<testcase classname=\"{F}/valid/nested/list.yml\" name=\"ns-2/gl\"/>"
        )),
        "{stdout}"
    );
    assert_eq!(stdout.matches("<testcase ").count(), 5);
    assert_eq!(stdout.matches("<failure ").count(), 4);
    assert_eq!(stdout.matches("</testcase>").count(), 3);
    // exit codes do not depend on the format
    let (code, stdout, _) = check_with_stdin(&["-o", "junit", &format!("{F}/valid")], b"");
    assert_eq!(code, 0);
    assert!(stdout.contains("failures=\"0\""));
    let (code, stdout, stderr) = check_with_stdin(&["-o", "json", &format!("{F}/does-not-exist")], b"");
    assert_eq!((code, stdout.as_str()), (2, ""));
    assert!(stderr.starts_with("error: "));
}
