//! What each fuzz target does with its input: the product's own pub functions, called the way
//! the operator calls them, plus the properties that must hold whatever the input. Shared by the
//! fuzz targets (`fuzz/fuzz_targets/*.rs`) and by the replay test of the main crate
//! (`tests/fuzz_corpora.rs`), which runs every stored corpus and crash input through it.

#![allow(dead_code)]

use gitprovider_operator::admission::{CertStore, Rejection, Webhook, client_auth};
use gitprovider_operator::api::ProviderKind;
use gitprovider_operator::check::schema::Schema;
use gitprovider_operator::check::yaml;
use gitprovider_operator::index::{ConnectionIndex, UniquenessScope};
use gitprovider_operator::metrics::Metrics;
use gitprovider_operator::providers::address_guard::{AddressPolicy, Cidr, always_refused, embedded_ipv4};
use gitprovider_operator::providers::http::{HttpClient, HttpConfig};
use gitprovider_operator::providers::tls::TlsOptions;
use gitprovider_operator::providers::{Target, parse_base_url, provider, verify_within};
use gitprovider_operator::repositories::{self, Apis};
use gitprovider_operator::token::Token;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// What a target does with one input; its outcome in a few words.
pub type Harness = fn(&[u8]) -> String;

/// Every target, by the name of its fuzz target and corpus folder.
/// Each returns a short outcome, which the replay test compares with `fuzz/expected.txt` for the
/// inputs listed there.
pub const TARGETS: [(&str, Harness); 5] = [
    ("admission_review", admission_review),
    ("url_guard", url_guard),
    ("provider_answers", provider_answers),
    ("check_yaml", check_yaml),
    ("client_cert_names", client_cert_names),
];

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime")
    })
}

// ---- the admission review decoder -------------------------------------------------------------

/// A body posted to the webhook: decoded, decided (against an empty, listed index) and answered
/// by [`Webhook::review_body`], as `POST /validate` does. Never a panic; an answer echoes the
/// request's uid.
pub fn admission_review(data: &[u8]) -> String {
    // A webhook per input: a name one input reserves must not decide another's answer.
    let index = Arc::new(ConnectionIndex::new(UniquenessScope::Namespace));
    index.partition_synced(None);
    let webhook = Webhook::new(index, Arc::new(Metrics::new()), CertStore::new());
    match runtime().block_on(webhook.review_body(data)) {
        Ok(review) => {
            let answer = serde_json::to_value(&review).expect("an answer encodes");
            assert!(answer["response"]["uid"].is_string(), "{answer}");
            match answer["response"]["allowed"].as_bool() {
                Some(true) => "allowed".to_owned(),
                _ => "denied".to_owned(),
            }
        }
        Err(Rejection::BadRequest(_)) => "bad request".to_owned(),
        Err(Rejection::NotReady(_)) => "not ready".to_owned(),
    }
}

// ---- the URL parser and the address guard -----------------------------------------------------

/// A `spec.url` (first line) and a CIDR (second line): parsed as admission and the controller
/// parse them, then judged. Whatever the notation, a literal host whose address — or the IPv4
/// address embedded in it — is always refused must be refused.
pub fn url_guard(data: &[u8]) -> String {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.splitn(2, '\n');
    let url_text = lines.next().unwrap_or_default();
    let cidr_text = lines.next().unwrap_or_default();
    let cidr = cidr_text.parse::<Cidr>().ok();
    if let Some(cidr) = &cidr {
        // Display then parse again gives the same range
        assert_eq!(cidr.to_string().parse::<Cidr>().ok().as_ref(), Some(cidr));
    }
    let Ok(url) = parse_base_url(url_text) else {
        return "invalid URL".to_owned();
    };
    let policies = [
        AddressPolicy::default(),
        AddressPolicy {
            deny: cidr.iter().cloned().collect(),
            allow: Vec::new(),
        },
        AddressPolicy {
            deny: Vec::new(),
            allow: cidr.iter().cloned().collect(),
        },
    ];
    let literal: Option<IpAddr> = match url.host() {
        Some(url::Host::Ipv4(v4)) => Some(IpAddr::V4(v4)),
        Some(url::Host::Ipv6(v6)) => Some(IpAddr::V6(v6)),
        _ => None,
    };
    for policy in &policies {
        let judged = policy.judge_literal(&url);
        if let Some(ip) = literal {
            let embedded = match ip {
                IpAddr::V6(v6) => embedded_ipv4(v6).map(IpAddr::V4),
                IpAddr::V4(_) => None,
            };
            let refused = always_refused(ip).is_some() || embedded.is_some_and(|v4| always_refused(v4).is_some());
            if refused {
                assert!(judged.is_err(), "{url} was not refused");
            }
            assert_eq!(judged.is_ok(), policy.judge(ip).is_ok(), "{url}");
        }
    }
    let outcome = |policy: &AddressPolicy| {
        if policy.judge_literal(&url).is_ok() {
            "passes"
        } else {
            "refused"
        }
    };
    format!(
        "{}; deny {}; allow only {}",
        outcome(&policies[0]),
        outcome(&policies[1]),
        outcome(&policies[2])
    )
}

// ---- each provider's answers ------------------------------------------------------------------

/// One canned answer of the stand-in: status, headers, body.
#[derive(Clone, Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

const STATUSES: [u16; 12] = [200, 201, 203, 204, 301, 302, 400, 401, 403, 404, 429, 500];

/// The answers in an input: parts separated by `\0\0`; a part's first byte picks the status,
/// then header lines up to an empty line (`Name: value`, when the part has `\r\n\r\n`), then the
/// body.
fn answers(data: &[u8]) -> Vec<Answer> {
    let mut parts = Vec::new();
    let mut rest = data;
    loop {
        let (part, next) = match rest.windows(2).position(|w| w == b"\0\0") {
            Some(at) => (&rest[..at], Some(&rest[at + 2..])),
            None => (rest, None),
        };
        if parts.len() < 8 {
            parts.push(part);
        }
        match next {
            Some(next) => rest = next,
            None => break,
        }
    }
    parts
        .into_iter()
        .map(|part| {
            let (status, part) = match part.split_first() {
                Some((byte, rest)) => (STATUSES[usize::from(*byte) % STATUSES.len()], rest),
                None => (200, part),
            };
            let (head, body) = match part.windows(4).position(|w| w == b"\r\n\r\n") {
                Some(at) => (&part[..at], &part[at + 4..]),
                None => (&b""[..], part),
            };
            let headers = String::from_utf8_lossy(head)
                .split("\r\n")
                .filter_map(|line| line.split_once(':'))
                .map(|(name, value)| (name.trim().to_owned(), value.trim().to_owned()))
                .collect();
            Answer {
                status,
                headers,
                body: body.to_vec(),
            }
        })
        .collect()
}

/// A plain-HTTP stand-in on loopback answering each request with the current input's answer for
/// its path (chosen by a hash of the path, so the same input always gives the same answers).
fn stand_in() -> SocketAddr {
    static ADDR: OnceLock<SocketAddr> = OnceLock::new();
    *ADDR.get_or_init(|| {
        let listener = runtime()
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("a loopback port");
        let addr = listener.local_addr().expect("its address");
        let app = axum::Router::new().fallback(|uri: axum::http::Uri| async move {
            let answers = CURRENT.lock().unwrap_or_else(|p| p.into_inner()).clone();
            let hash = uri.path().bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
            });
            let answer = answers
                .get((hash % answers.len().max(1) as u64) as usize)
                .cloned()
                .unwrap_or(Answer {
                    status: 404,
                    headers: Vec::new(),
                    body: Vec::new(),
                });
            let mut response = axum::response::Response::builder()
                .status(answer.status)
                .header("content-type", "application/json");
            for (name, value) in &answer.headers {
                if let (Ok(name), Ok(value)) = (
                    axum::http::HeaderName::from_bytes(name.as_bytes()),
                    axum::http::HeaderValue::from_str(value),
                ) {
                    response = response.header(name, value);
                }
            }
            response.body(axum::body::Body::from(answer.body)).unwrap_or_default()
        });
        runtime().spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        addr
    })
}

static CURRENT: Mutex<Vec<Answer>> = Mutex::new(Vec::new());

const TOKEN: &str = "fuzz-token-7f3a9c";

/// First byte: the provider; the rest: the answers of its instance. The provider's real
/// verification and repository look-up run against them. Never a panic, never the token in
/// what they say.
pub fn provider_answers(data: &[u8]) -> String {
    let Some((pick, rest)) = data.split_first() else {
        return "empty".to_owned();
    };
    let kind = ProviderKind::ALL[usize::from(*pick) % ProviderKind::ALL.len()];
    *CURRENT.lock().unwrap_or_else(|p| p.into_inner()) = answers(rest);
    let addr = stand_in();
    // A client per input: what it remembers about an instance must not carry over.
    let http = HttpClient::new(HttpConfig {
        timeout: Duration::from_millis(500),
        retry_base_delay: Duration::from_millis(1),
        ..HttpConfig::default()
    });
    let target = Target {
        base_url: format!("http://{addr}").parse().expect("a URL"),
        token: Token::new(TOKEN).expect("a token"),
        username: Some("fuzz@example.com".to_owned()),
        last_user: None,
        tls: TlsOptions::default(),
    };
    let path = ["group/project", "PROJ/repo", "org/project/repo", "owner/repo"]
        .into_iter()
        .find(|p| repositories::paths::check(kind, p).is_ok())
        .unwrap_or("owner/repo");
    let (verification, repository) = runtime().block_on(async {
        let verification = verify_within(provider(kind), &http, &target).await;
        let repository = repositories::lookup(kind, Apis::deployed(), &http, &target, path).await;
        (verification, repository)
    });
    let said = format!("{verification:?} {repository:?}");
    assert!(!said.contains(TOKEN), "the token leaked: {said}");
    format!("{kind:?}: {:?}, {path} {:?}", verification.reason, repository.reason)
}

// ---- check's YAML reader ----------------------------------------------------------------------

/// A manifest file as `check` reads it: split into documents, each parsed and, when it is an
/// object, validated against the CRD's schema. Lines reported lie within the file.
pub fn check_yaml(data: &[u8]) -> String {
    static SCHEMA: OnceLock<Schema> = OnceLock::new();
    let schema = SCHEMA.get_or_init(Schema::generated);
    let Ok(text) = std::str::from_utf8(data) else {
        return "not UTF-8".to_owned();
    };
    // YAML ends a line at `\r\n`, `\n` or a lone `\r`
    let lines = text.replace("\r\n", "\n").split(['\n', '\r']).count();
    let (mut objects, mut errors, mut violations) = (0, 0, 0);
    for document in yaml::split_documents(text) {
        // as `check` does: comments and blank space are no document
        if yaml::is_blank(document.text) {
            continue;
        }
        match yaml::parse(&document) {
            Ok(Some(parsed)) => {
                objects += 1;
                assert!(parsed.first_line <= lines + 1, "line {} of {lines}", parsed.first_line);
                // as `check` does: a GitProviderConnection against its version's schema
                let value = &parsed.value;
                let version = value["apiVersion"]
                    .as_str()
                    .and_then(|v| v.strip_prefix("gitprovider.dev/"));
                if value["kind"] == "GitProviderConnection"
                    && let Some(version) = version
                    && schema.root(version).is_some()
                {
                    violations += schema.validate(version, value).len();
                }
                let _ = parsed.line_of("spec.url");
            }
            Ok(None) => {}
            Err(error) => {
                errors += 1;
                if let Some((line, _)) = error.line {
                    assert!(line <= lines + 1, "line {line} of {lines}");
                }
            }
        }
    }
    format!("{objects} documents, {errors} unreadable, {violations} schema violations")
}

// ---- the names in a webhook client's certificate ----------------------------------------------

/// A certificate (DER) and a subject, as the webhook's client verification reads them.
pub fn client_cert_names(data: &[u8]) -> String {
    let names = client_auth::certificate_names(&rustls_pki_types::CertificateDer::from(data.to_vec()));
    let common = client_auth::common_names(data);
    assert!(names.iter().chain(&common).all(|n| n.len() <= data.len()));
    format!("certificate [{}], subject [{}]", names.join(", "), common.join(", "))
}
