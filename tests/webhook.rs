//! The validating webhook over real HTTPS, with a real client.

mod common;

use common::{Server, TestPki, client, client_h2, client_tls, post, review, spec, stored};
use gitprovider_operator::admission::CertStore;
use gitprovider_operator::api::ProviderKind;
use gitprovider_operator::index::{ConnectionIndex, UniquenessScope};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

fn response(review: &Value) -> &Value {
    &review["response"]
}

fn allowed(review: &Value) -> bool {
    response(review)["allowed"].as_bool().unwrap()
}

fn message(review: &Value) -> &str {
    response(review)["status"]["message"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn allows_a_good_connection() {
    let pki = TestPki::new("ca-1");
    let server = Server::synced(UniquenessScope::Namespace, &pki).await;
    let body = review(
        "uid-ok",
        "CREATE",
        "team-a",
        "azure-dev1",
        Some(spec(
            "AzureDevOps",
            "dev1",
            "https://dev1.azure.example.com/DefaultCollection",
        )),
        None,
        false,
    );
    let answer = post(&client(&pki.ca_pem), &server.url(), &body).await;
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(response(&answer)["uid"], "uid-ok");
    assert!(allowed(&answer), "{answer}");
    assert!(response(&answer).get("warnings").is_none(), "{answer}");
    let metrics = server.metrics.encode();
    assert!(
        metrics.contains(r#"gitprovider_webhook_reviews_total{operation="CREATE",allowed="true"} 1"#),
        "{metrics}"
    );
    server.stop().await;
}

/// What a row's answer must say in its message.
enum Said {
    Is(&'static str),
    StartsWith(&'static str),
    Contains(&'static str),
    /// Never in the message (a credential, a word of another verdict).
    Lacks(&'static str),
}

/// One review a table sends, and the answer it must get.
struct Case {
    row: &'static str,
    body: Value,
    allowed: bool,
    said: Vec<Said>,
}

impl Case {
    /// A CREATE of `ns/name` with `spec`, to be allowed unless [`Case::denied`].
    fn create(row: &'static str, ns: &str, name: &str, spec: Value) -> Case {
        Case::of(
            row,
            review(&format!("uid-{row}"), "CREATE", ns, name, Some(spec), None, false),
        )
    }

    /// An UPDATE of `ns/name` from `old` to `spec`.
    fn update(row: &'static str, ns: &str, name: &str, spec: Value, old: Value) -> Case {
        Case::of(
            row,
            review(&format!("uid-{row}"), "UPDATE", ns, name, Some(spec), Some(old), false),
        )
    }

    fn of(row: &'static str, body: Value) -> Case {
        Case {
            row,
            body,
            allowed: true,
            said: Vec::new(),
        }
    }

    fn dry_run(mut self) -> Case {
        self.body["request"]["dryRun"] = json!(true);
        self
    }

    fn denied(mut self, said: impl IntoIterator<Item = Said>) -> Case {
        self.allowed = false;
        self.said.extend(said);
        self
    }
}

/// Sends the rows in order and checks each answer; a failure names its row. The answers, for
/// what a row checks beyond its verdict and message.
async fn send_all(server: &Server, client: &reqwest::Client, cases: Vec<Case>) -> Vec<Value> {
    let mut answers = Vec::new();
    for case in cases {
        let answer = post(client, &server.url(), &case.body).await;
        let row = case.row;
        assert_eq!(allowed(&answer), case.allowed, "row {row}: {answer}");
        assert_eq!(
            response(&answer)["uid"],
            case.body["request"]["uid"],
            "row {row}: the uid comes back"
        );
        let text = message(&answer);
        for said in &case.said {
            match said {
                Said::Is(expected) => assert_eq!(text, *expected, "row {row}"),
                Said::StartsWith(start) => assert!(text.starts_with(start), "row {row}: {text}"),
                Said::Contains(part) => assert!(text.contains(part), "row {row}: {part:?} not in {text}"),
                Said::Lacks(part) => assert!(!text.contains(part), "row {row}: {part:?} in {text}"),
            }
        }
        answers.push(answer);
    }
    answers
}

#[tokio::test]
async fn denies_a_duplicate_naming_the_holder() {
    let pki = TestPki::new("ca-1");
    let server = Server::synced(UniquenessScope::Namespace, &pki).await;
    server
        .index
        .apply(&stored("team-a", "azure-dev1", ProviderKind::AzureDevOps, "dev1", 100));
    server
        .index
        .apply(&stored("team-a", "azure-dev2", ProviderKind::AzureDevOps, "dev2", 200));
    let azure = |instance: &str, url: &str| spec("AzureDevOps", instance, url);
    send_all(
        &server,
        &client(&pki.ca_pem),
        vec![
            Case::create(
                "the same name, case and spaces aside",
                "team-a",
                "azure-dev1-again",
                azure(" Dev1 ", "https://dev1.azure.example.com/Other"),
            )
            .denied([Said::Is(
                "instanceName \"Dev1\" is already used by AzureDevOps connection team-a/azure-dev1; choose another \
                 instanceName (names are compared ignoring case and surrounding spaces)",
            )]),
            Case::create(
                "the same name under another provider",
                "team-a",
                "gitlab-dev1",
                spec("GitLab", "dev1", "https://gitlab.example.com"),
            ),
            Case::create(
                "the same name in another namespace",
                "team-b",
                "azure-dev1",
                azure("dev1", "https://dev1.azure.example.com/DefaultCollection"),
            ),
            Case::update(
                "an update keeping its own name",
                "team-a",
                "azure-dev2",
                azure("dev2", "https://dev2.azure.example.com/New"),
                azure("dev2", "https://dev2.azure.example.com/Old"),
            ),
            Case::update(
                "an update taking a held name",
                "team-a",
                "azure-dev2",
                azure("DEV1", "https://dev2.azure.example.com"),
                azure("dev2", "https://dev2.azure.example.com"),
            )
            .denied([Said::Contains("team-a/azure-dev1")]),
        ],
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn cluster_scope_denies_across_namespaces() {
    let pki = TestPki::new("ca-1");
    let server = Server::synced(UniquenessScope::Cluster, &pki).await;
    server
        .index
        .apply(&stored("team-a", "gl", ProviderKind::GitLab, "main", 100));
    let across = Case::create(
        "a name held in another namespace",
        "team-b",
        "gl",
        spec("GitLab", "main", "https://gitlab.example.com"),
    )
    .denied([Said::Contains("GitLab connection team-a/gl")]);
    send_all(&server, &client(&pki.ca_pem), vec![across]).await;
    server.stop().await;
}

#[tokio::test]
async fn invalid_specs_are_denied_with_every_problem() {
    let pki = TestPki::new("ca-1");
    let server = Server::synced(UniquenessScope::Namespace, &pki).await;
    let mut bad = spec("GitLab", "  ", "https://user:hunter2@gitlab.example.com");
    bad["verifyInterval"] = json!("10s");
    // a spec that does not deserialize: the denial names the field
    let wrong = spec("Gitlab", "x", "https://gitlab.example.com");
    send_all(
        &server,
        &client(&pki.ca_pem),
        vec![
            Case::create("three problems", "a", "x", bad).denied([
                Said::Contains("spec.instanceName must not be blank"),
                Said::Contains("spec.url must not contain user info"),
                Said::Contains("spec.verifyInterval \"10s\" is shorter than the minimum of 1m"),
                Said::Lacks("hunter2"),
            ]),
            Case::create("an unknown provider", "a", "x", wrong)
                .denied([Said::StartsWith("spec.provider: unknown variant `Gitlab`")]),
            Case::create(
                "a link-local address",
                "a",
                "x",
                spec("GitLab", "x", "http://169.254.169.254/"),
            )
            .denied([Said::Contains("link-local")]),
        ],
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn repository_paths_are_checked_per_provider() {
    let pki = TestPki::new("ca-1");
    let server = Server::synced(UniquenessScope::Namespace, &pki).await;
    let listing = |row: &'static str, provider: &str, repositories: Value| {
        let mut s = spec(provider, "x", "https://git.example.com");
        s["repositories"] = repositories;
        Case::create(row, "a", "x", s)
    };
    let many: Vec<String> = (0..101).map(|i| format!("g/p{i}")).collect();
    send_all(
        &server,
        &client(&pki.ca_pem),
        vec![
            // GitHub: owner/repo only; a duplicate ignoring case; each message names the entry.
            listing("GitHub paths", "GitHub", json!(["octo/web", "a/b/c", "Octo/Web"])).denied([
                Said::Contains(r#"spec.repositories[1] "a/b/c": expected owner/repo (two segments), got 3"#),
                Said::Contains(r#"spec.repositories[2] "Octo/Web" duplicates spec.repositories[0] "octo/web""#),
            ]),
            // GitLab takes subgroups, Azure DevOps names with spaces: both allowed.
            listing("GitLab subgroups", "GitLab", json!(["group/sub/project"])),
            listing("Azure DevOps spaces", "AzureDevOps", json!(["Fabrikam Fiber/web app"])),
            listing("Bitbucket personal", "Bitbucket", json!(["PRJ/app", "~jdoe/personal"])),
            listing("Azure DevOps colon", "AzureDevOps", json!(["proj/re:po"])).denied([Said::Contains(
                r#"spec.repositories[0] "proj/re:po": repository "re:po" must not contain ':'"#,
            )]),
            listing("too many", "GitLab", json!(many)).denied([Said::Contains(
                "spec.repositories has 101 entries; at most 100 are allowed",
            )]),
        ],
    )
    .await;
    server.stop().await;
}

#[tokio::test]
async fn warnings_come_back_with_an_allowed_review() {
    let pki = TestPki::new("ca-1");
    let server = Server::synced(UniquenessScope::Namespace, &pki).await;
    let mut risky = spec("Gitea", "forge", "http://gitea.internal:3000");
    risky["tls"] = json!({"insecureSkipVerify": true});
    let answer = post(
        &client(&pki.ca_pem),
        &server.url(),
        &review("u", "CREATE", "a", "forge", Some(risky), None, false),
    )
    .await;
    assert!(allowed(&answer), "{answer}");
    let warnings: Vec<&str> = response(&answer)["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert_eq!(warnings.len(), 2, "{warnings:?}");
    assert!(warnings.iter().any(|w| w.contains("the token travels unencrypted")));
    assert!(warnings.iter().any(|w| w.contains("insecureSkipVerify")));
    server.stop().await;
}

#[tokio::test]
async fn dry_run_is_answered_the_same_and_reserves_nothing() {
    let pki = TestPki::new("ca-1");
    let server = Server::synced(UniquenessScope::Namespace, &pki).await;
    server
        .index
        .apply(&stored("a", "holder", ProviderKind::GitHub, "gh", 100));
    let client = client(&pki.ca_pem);
    let github = |instance: &str| spec("GitHub", instance, "https://github.com");
    // the same verdicts as without dry run
    send_all(
        &server,
        &client,
        vec![
            Case::create("a held name, dry run", "a", "x", github("gh"))
                .dry_run()
                .denied([Said::Contains("a/holder")]),
            Case::create("a free name, dry run", "a", "first", github("free")).dry_run(),
        ],
    )
    .await;
    // and no side effect: the name is not reserved
    assert_eq!(server.webhook.live_reservations(), 0);
    send_all(
        &server,
        &client,
        vec![Case::create("the free name", "a", "second", github("free"))],
    )
    .await;
    assert_eq!(server.webhook.live_reservations(), 1);
    // whereas a real create reserves it for the racing one
    let racing = Case::create("racing for the reserved name", "a", "third", github("FREE"))
        .denied([Said::Contains("GitHub connection a/second")]);
    send_all(&server, &client, vec![racing]).await;
    server.stop().await;
}

#[tokio::test]
async fn malformed_bodies_get_400() {
    let pki = TestPki::new("ca-1");
    let server = Server::synced(UniquenessScope::Namespace, &pki).await;
    let client = client(&pki.ca_pem);
    for (body, expected) in [
        (&b"{not json"[..], "the body is not an AdmissionReview"),
        (&b""[..], "the body is not an AdmissionReview"),
        (
            &br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#[..],
            "the AdmissionReview has no request",
        ),
        (
            &br#"{"apiVersion":"v1","kind":"Pod","metadata":{"name":"x"}}"#[..],
            "expected kind AdmissionReview",
        ),
    ] {
        let response = client.post(server.url()).body(body.to_vec()).send().await.unwrap();
        assert_eq!(response.status(), 400, "{}", String::from_utf8_lossy(body));
        let text = response.text().await.unwrap();
        assert!(text.contains(expected), "{text}");
    }
    // wrong method and path
    let response = client.get(server.url()).send().await.unwrap();
    assert_eq!(response.status(), 405);
    let other = server.url().replace("/validate", "/mutate");
    let response = client.post(other).body("{}").send().await.unwrap();
    assert_eq!(response.status(), 404);
    // a body over the limit
    let huge = vec![b' '; 9 * 1024 * 1024];
    let response = client.post(server.url()).body(huge).send().await.unwrap();
    assert_eq!(response.status(), 413);
    // the server is still fine
    let body = review(
        "u",
        "CREATE",
        "a",
        "x",
        Some(spec("GitLab", "x", "https://gitlab.example.com")),
        None,
        false,
    );
    assert!(allowed(&post(&client, &server.url(), &body).await));
    server.stop().await;
}

#[tokio::test]
async fn another_kind_is_denied_and_delete_is_allowed() {
    let pki = TestPki::new("ca-1");
    let server = Server::synced(UniquenessScope::Namespace, &pki).await;
    let client = client(&pki.ca_pem);
    let mut pod = review(
        "u-pod",
        "CREATE",
        "a",
        "p",
        Some(json!({"containers": []})),
        None,
        false,
    );
    pod["request"]["kind"] = json!({"group": "", "version": "v1", "kind": "Pod"});
    pod["request"]["resource"] = json!({"group": "", "version": "v1", "resource": "pods"});
    pod["request"]["object"]["apiVersion"] = json!("v1");
    pod["request"]["object"]["kind"] = json!("Pod");
    let answer = post(&client, &server.url(), &pod).await;
    assert!(!allowed(&answer));
    assert_eq!(
        message(&answer),
        "this webhook only validates gitprovider.dev GitProviderConnections, not Pod (v1); check the rules of the \
         ValidatingWebhookConfiguration that sent this review"
    );

    let mut delete = review("u-del", "DELETE", "a", "x", None, None, false);
    delete["request"]["oldObject"] = json!({
        "apiVersion": "gitprovider.dev/v1alpha1", "kind": "GitProviderConnection",
        "metadata": {"name": "x", "namespace": "a"}, "spec": {"provider": "broken"}
    });
    let answer = post(&client, &server.url(), &delete).await;
    assert!(allowed(&answer), "{answer}");
    assert_eq!(response(&answer)["uid"], "u-del");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_200_concurrent_reviews_is_answered_correctly() {
    let pki = TestPki::new("ca-1");
    let server = Server::synced(UniquenessScope::Namespace, &pki).await;
    for i in 0..50 {
        server.index.apply(&stored(
            &format!("ns-{}", i % 5),
            &format!("held-{i}"),
            ProviderKind::GitLab,
            &format!("name-{i}"),
            100,
        ));
    }
    let clients = [client(&pki.ca_pem), client_h2(&pki.ca_pem)];
    let url = server.url();
    let mut tasks = Vec::new();
    for i in 0..200usize {
        let client = clients[i % 2].clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let ns = format!("ns-{}", i % 5);
            // 0..100 new names (allowed), 100..150 duplicates of indexed ones, 150..200 invalid
            let (instance, url_field, expect) = match i {
                0..100 => (format!("new-{i}"), "https://gitlab.example.com", None),
                100..150 => {
                    let held = i - 100;
                    (
                        format!("NAME-{held}"),
                        "https://gitlab.example.com",
                        Some(format!("ns-{}/held-{held}", held % 5)),
                    )
                }
                _ => (
                    format!("bad-{i}"),
                    "ftp://gitlab.example.com",
                    Some("must be an absolute".to_owned()),
                ),
            };
            // duplicates live in the holder's namespace
            let ns = if (100..150).contains(&i) {
                format!("ns-{}", (i - 100) % 5)
            } else {
                ns
            };
            let body = review(
                &format!("uid-{i}"),
                "CREATE",
                &ns,
                &format!("new-{i}"),
                Some(spec("GitLab", &instance, url_field)),
                None,
                false,
            );
            let answer = post(&client, &url, &body).await;
            assert_eq!(answer["response"]["uid"], format!("uid-{i}"));
            let allowed = answer["response"]["allowed"].as_bool().unwrap();
            match expect {
                None => assert!(allowed, "{i}: {answer}"),
                Some(text) => {
                    assert!(!allowed, "{i}: {answer}");
                    let message = answer["response"]["status"]["message"].as_str().unwrap();
                    assert!(message.contains(&text), "{i}: {message}");
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    assert_eq!(server.webhook.live_reservations(), 100);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_of_one_name_over_https_admit_one() {
    let pki = TestPki::new("ca-1");
    let server = Server::synced(UniquenessScope::Namespace, &pki).await;
    let client = client_h2(&pki.ca_pem);
    let url = server.url();
    let tasks: Vec<_> = (0..40)
        .map(|i| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let body = review(
                    &format!("u{i}"),
                    "CREATE",
                    "team-a",
                    &format!("bb-{i}"),
                    Some(spec("Bitbucket", "prod", "https://bitbucket.example.com")),
                    None,
                    false,
                );
                post(&client, &url, &body).await["response"]["allowed"]
                    .as_bool()
                    .unwrap()
            })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        admitted += usize::from(task.await.unwrap());
    }
    assert_eq!(admitted, 1);
    server.stop().await;
}

/// Which certificate a fresh TLS connection is served.
async fn served_subject(addr: std::net::SocketAddr, ca_pem: &str) -> Result<Vec<u8>, std::io::Error> {
    let config = Arc::new(client_tls(ca_pem, &[b"http/1.1"]));
    let connector = tokio_rustls::TlsConnector::from(config);
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let tls = connector.connect(name, tcp).await?;
    let (_, session) = tls.get_ref();
    Ok(session.peer_certificates().unwrap()[0].to_vec())
}

#[tokio::test]
async fn rotated_certificate_files_are_served_without_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    let first = TestPki::new("first-ca");
    std::fs::write(&cert_path, &first.cert_pem).unwrap();
    std::fs::write(&key_path, &first.key_pem).unwrap();
    let certs = CertStore::new();
    certs.load_files(&cert_path, &key_path).unwrap();
    let watcher = tokio::spawn(certs.clone().watch_files(
        cert_path.clone(),
        key_path.clone(),
        Duration::from_millis(50),
    ));
    let index = Arc::new(ConnectionIndex::new(UniquenessScope::Namespace));
    index.partition_synced(None);
    let server = Server::start(index, certs).await;
    let body = review(
        "u",
        "CREATE",
        "a",
        "x",
        Some(spec("GitLab", "x", "https://gitlab.example.com")),
        None,
        false,
    );
    let old_client = client(&first.ca_pem);
    assert!(allowed(&post(&old_client, &server.url(), &body).await));
    assert!(served_subject(server.addr, &first.ca_pem).await.is_ok());

    // rotate: a certificate from another CA, written over the same files
    let second = TestPki::new("second-ca");
    std::fs::write(&key_path, &second.key_pem).unwrap();
    std::fs::write(&cert_path, &second.cert_pem).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        if served_subject(server.addr, &second.ca_pem).await.is_ok() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the rotated certificate is never served"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    // a new connection trusting only the old CA now fails; one trusting the new CA works
    assert!(served_subject(server.addr, &first.ca_pem).await.is_err());
    assert!(allowed(&post(&client(&second.ca_pem), &server.url(), &body).await));
    watcher.abort();
    server.stop().await;
}

#[tokio::test]
async fn in_memory_certificates_can_be_set_later() {
    let index = Arc::new(ConnectionIndex::new(UniquenessScope::Namespace));
    index.partition_synced(None);
    let certs = CertStore::new();
    let server = Server::start(index, certs.clone()).await;
    assert!(!server.webhook.is_ready(), "no certificate yet");
    let pki = TestPki::new("bootstrap-ca");
    assert!(served_subject(server.addr, &pki.ca_pem).await.is_err());
    certs.set(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes()).unwrap();
    assert!(server.webhook.is_ready());
    assert!(served_subject(server.addr, &pki.ca_pem).await.is_ok());
    server.stop().await;
}

#[tokio::test]
async fn not_ready_before_the_index_synced() {
    let pki = TestPki::new("ca-1");
    let index = Arc::new(ConnectionIndex::new(UniquenessScope::Namespace));
    index.expect_partitions(2);
    let certs = CertStore::from_pem(pki.cert_pem.as_bytes(), pki.key_pem.as_bytes()).unwrap();
    let server = Server::start(index.clone(), certs).await;
    let client = client(&pki.ca_pem);
    assert!(!server.webhook.is_ready());
    let readyz = server.url().replace("/validate", "/readyz");
    assert_eq!(client.get(&readyz).send().await.unwrap().status(), 503);
    let body = review(
        "u",
        "CREATE",
        "a",
        "x",
        Some(spec("GitLab", "x", "https://gitlab.example.com")),
        None,
        false,
    );
    let response = client
        .post(server.url())
        .body(serde_json::to_vec(&body).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert!(response.text().await.unwrap().contains("retry in a few seconds"));

    index.partition_synced(Some("a"));
    assert!(!server.webhook.is_ready());
    index.partition_synced(Some("b"));
    assert!(server.webhook.is_ready());
    assert_eq!(client.get(&readyz).send().await.unwrap().status(), 200);
    assert!(allowed(&post(&client, &server.url(), &body).await));
    server.stop().await;
}

#[tokio::test]
async fn shutdown_stops_serving() {
    let pki = TestPki::new("ca-1");
    let server = Server::synced(UniquenessScope::Namespace, &pki).await;
    let addr = server.addr;
    let client = client(&pki.ca_pem);
    let body = review(
        "u",
        "CREATE",
        "a",
        "x",
        Some(spec("GitLab", "x", "https://gitlab.example.com")),
        None,
        false,
    );
    assert!(allowed(&post(&client, &server.url(), &body).await));
    tokio::time::timeout(Duration::from_secs(10), server.stop())
        .await
        .expect("serve returns after the shutdown signal, even with a keep-alive connection open");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err());
}
