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
             (in {F}/valid/connections.yaml); {DUPLICATE_HINT}"
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
                 connection team-a/azure-dev1 (in {F}/duplicates/a.yaml); {DUPLICATE_HINT}"
            ),
            format!(
                "{F}/duplicates/b/c.yaml: team-a/azure-dev1-copy: is defined again (first in {F}/duplicates/a.yaml); \
                 applying both keeps only one of them"
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
             connection team-a/azure-dev1 (in {F}/duplicates/a.yaml); {DUPLICATE_HINT}"
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
        "ns/everything-wrong: spec.instanceName must not be blank; give the instance a name such as \"dev1\"",
        "ns/everything-wrong: spec.url \"ftp://gitlab.example.com\" must be an absolute http:// or https:// URL with \
         a host, such as https://gitlab.example.com",
        "ns/everything-wrong: spec.verifyInterval \"30s\" is shorter than the minimum of 1m",
        "ns/everything-wrong: spec.tokenSecretRef.name \"My_Secret\" cannot be the name of a Secret (lower-case \
         letters, digits, '-' and '.', at most 253 characters)",
        "ns/everything-wrong: spec.tokenSecretRef.key must not be empty: name the key of the Secret's data",
        "ns/everything-wrong: spec.tls.caBundleRef.name must not be empty: name the ConfigMap that holds it",
        "ns/metadata-endpoint: spec.url points at the link-local address 169.254.169.254 (where cloud metadata \
         endpoints live), which the operator never contacts; use the instance's real address",
        "ns/wrong-provider: spec.provider: unknown variant `Gitlab`, expected one of `GitLab`, `Bitbucket`, \
         `AzureDevOps`, `GitHub`, `Gitea`",
        "ns/<no name, document 4>: metadata.name is missing",
        "ns/<no name, document 4>: spec.url must not contain a query (?...); give the instance's base URL only",
        "document 5: kind \"GitProviderConection\" is not a kind of gitprovider.dev; did you mean \
         GitProviderConnection?",
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
                 {file}); {DUPLICATE_HINT}"
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
             (user:password@); put the token in the Secret named by spec.tokenSecretRef and any login in spec.username"
                .to_owned(),
            format!(
                "examples-invalid/duplicate.yaml: team-b/gitlab-staging-copy: instanceName \"Staging\" is already \
                 used by GitLab connection team-b/gitlab-staging (in examples-invalid/duplicate.yaml); \
                 {DUPLICATE_HINT}"
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
                r#"{file}: team-a/gh: spec.repositories[1] "octo-org/web/extra": expected owner/repo (two segments), got 3"#
            ),
            format!(
                r#"{file}: team-a/gh: spec.repositories[2] "Octo-Org/Web" duplicates spec.repositories[0] "octo-org/web""#
            ),
            format!(
                r#"{file}: team-a/gl: spec.repositories[1] "app-team/web.git": the project must not end in .git or .atom (give the path, not the clone URL)"#
            ),
        ]
    );
    assert_eq!(outcome.code, 1);
}
