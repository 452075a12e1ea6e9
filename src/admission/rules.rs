//! The admission rules, as pure functions shared by the webhook and by `check`:
//!
//! - [`parse_spec`] turns the raw `spec` of an object into a [`GitProviderConnectionSpec`], or a
//!   message naming the field that does not fit;
//! - [`validate_spec`] repeats every CEL rule of the CRD (defence in depth: a CRD installed by
//!   hand or an older API server may not enforce them) and adds what CEL cannot check: that the
//!   URL really parses, that it does not point at a link-local address, the provider's own rules,
//!   and that the referenced Secret/ConfigMap names could exist at all;
//! - [`check_unique`] applies the uniqueness rule of `API.md` against any [`Holders`] view: the
//!   webhook's live index (plus its reservations), or `check`'s set of files.
//!
//! Messages name the field and say what to fix. They never echo a URL that could carry a
//! credential (user info or a query).

use crate::api::{GitProviderConnectionSpec, ProviderKind};
use crate::duration::{DurationError, MIN_VERIFY_INTERVAL, is_go_duration_syntax, parse_duration};
use crate::index::{ConnectionIndex, InstanceKey, ObjectKey, UniquenessScope};
use crate::providers::address_guard::{LINK_LOCAL, always_refused};
use crate::providers::{parse_base_url, provider};
use std::net::IpAddr;

/// Maximum length of `spec.instanceName`, in characters.
pub const MAX_INSTANCE_NAME: usize = 63;
/// Maximum length of `spec.url`, in characters.
pub const MAX_URL: usize = 2048;
/// Maximum length of `spec.username`, in characters.
pub const MAX_USERNAME: usize = 256;
/// Maximum length of `spec.verifyInterval`, in characters.
pub const MAX_VERIFY_INTERVAL: usize = 32;
/// Maximum length of an object name or key referenced by the spec.
pub const MAX_REF: usize = 253;

/// What the rules found in one spec: `problems` deny it, `warnings` are legal but risky.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Review {
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

impl Review {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, message: impl Into<String>) {
        self.problems.push(message.into());
    }

    fn warning(&mut self, message: impl Into<String>) {
        self.warnings.push(message.into());
    }

    /// Whether `value` of `field` is longer than `max` characters, the CRD's `maxLength`
    /// (a problem, then).
    fn too_long(&mut self, field: &str, value: &str, max: usize) -> bool {
        let length = value.chars().count();
        if length > max {
            self.problem(format!("{field} is {length} characters long; the maximum is {max}"));
        }
        length > max
    }
}

/// Deserializes a `spec` (as JSON, whatever it was written in) into the typed spec. The error
/// names the offending field, e.g. ``spec.provider: unknown variant `Gitlab`, expected one of ...``.
pub fn parse_spec(spec: Option<&serde_json::Value>) -> Result<GitProviderConnectionSpec, String> {
    let Some(spec) = spec else {
        return Err("spec is missing".to_owned());
    };
    serde_path_to_error::deserialize(spec).map_err(|e: serde_path_to_error::Error<serde_json::Error>| {
        let path = e.path().to_string();
        let field = if path == "." {
            "spec".to_owned()
        } else {
            format!("spec.{path}")
        };
        format!("{field}: {}", e.inner())
    })
}

/// Checks one spec: everything the CRD's CEL and schema rules check, plus what they cannot.
pub fn validate_spec(spec: &GitProviderConnectionSpec) -> Review {
    let mut review = Review::default();
    check_instance_name(&spec.instance_name, &mut review);
    check_url(spec, &mut review);
    if let Some(username) = &spec.username {
        review.too_long("spec.username", username, MAX_USERNAME);
    }
    check_verify_interval(&spec.verify_interval, &mut review);
    for problem in crate::repositories::paths::problems(spec.provider, &spec.repositories) {
        review.problem(problem);
    }
    check_ref(
        "spec.tokenSecretRef",
        "Secret",
        &spec.token_secret_ref.name,
        &spec.token_secret_ref.key,
        &mut review,
    );
    if let Some(tls) = &spec.tls {
        if let Some(ca) = &tls.ca_bundle_ref {
            let kind = match ca.kind {
                crate::api::CaBundleKind::ConfigMap => "ConfigMap",
                crate::api::CaBundleKind::Secret => "Secret",
            };
            check_ref("spec.tls.caBundleRef", kind, &ca.name, &ca.key, &mut review);
        }
        if tls.insecure_skip_verify {
            review.warning(
                "spec.tls.insecureSkipVerify is true: the server's certificate is not checked, so anyone on the path \
                 can read the token; prefer spec.tls.caBundleRef",
            );
        }
    }
    review
}

fn check_instance_name(name: &str, review: &mut Review) {
    if name.trim().is_empty() {
        review.problem("spec.instanceName must not be blank; give the instance a name such as \"dev1\"");
        return;
    }
    review.too_long("spec.instanceName", name, MAX_INSTANCE_NAME);
}

/// The CEL rules on `spec.url`, on the raw string exactly as the CRD applies them, then
/// [`parse_base_url`], the link-local guard and the provider's own rules.
fn check_url(spec: &GitProviderConnectionSpec, review: &mut Review) {
    let raw = spec.url.as_str();
    if raw.trim().is_empty() {
        review.problem("spec.url is required: the instance's base URL, such as https://gitlab.example.com");
        return;
    }
    if review.too_long("spec.url", raw, MAX_URL) {
        return;
    }
    let before = review.problems.len();
    // `^https?://[^/?#]+`
    let after_scheme = raw.strip_prefix("https://").or_else(|| raw.strip_prefix("http://"));
    let authority = after_scheme.map(|rest| rest.split(['/', '?', '#']).next().unwrap_or_default());
    let has_credential_like_parts = raw.contains('@') || raw.contains('?');
    match authority {
        None => {
            if has_credential_like_parts {
                review.problem(
                    "spec.url must be an absolute http:// or https:// URL with a host, such as https://gitlab.example.com",
                );
            } else {
                review.problem(format!(
                    "spec.url {raw:?} must be an absolute http:// or https:// URL with a host, such as https://gitlab.example.com"
                ));
            }
        }
        Some("") => review.problem("spec.url has no host after the scheme; write it as https://HOST[/PATH]"),
        Some(authority) => {
            // `!^https?://[^/?#]*@`
            if authority.contains('@') {
                review.problem(
                    "spec.url must not contain user info (user:password@); put the token in the Secret named by \
                     spec.tokenSecretRef and any login in spec.username",
                );
            }
        }
    }
    if raw.contains('?') {
        review.problem("spec.url must not contain a query (?...); give the instance's base URL only");
    }
    if raw.contains('#') {
        review.problem("spec.url must not contain a fragment (#...); give the instance's base URL only");
    }
    if review.problems.len() > before {
        return;
    }
    let url = match parse_base_url(raw) {
        Ok(url) => url,
        Err(bad) => {
            review.problem(format!("spec.{bad}"));
            return;
        }
    };
    let literal: Option<IpAddr> = match url.host() {
        Some(url::Host::Ipv4(v4)) => Some(v4.into()),
        Some(url::Host::Ipv6(v6)) => Some(v6.into()),
        _ => None,
    };
    if let Some(ip) = literal
        && let Some(kind) = always_refused(ip)
    {
        let note = if kind == LINK_LOCAL {
            " (where cloud metadata endpoints live)"
        } else {
            ""
        };
        review.problem(format!(
            "spec.url points at the {kind} {ip}{note}, which the operator never contacts; use the instance's real \
             address"
        ));
        return;
    }
    if let Err(message) = provider(spec.provider).check_spec(&url, spec.username.as_deref()) {
        review.problem(message);
    }
    if url.scheme() == "http" {
        review.warning("spec.url uses http://: the token travels unencrypted; use https:// if the instance offers it");
    }
}

fn check_verify_interval(interval: &str, review: &mut Review) {
    if review.too_long("spec.verifyInterval", interval, MAX_VERIFY_INTERVAL) {
        return;
    }
    if !is_go_duration_syntax(interval) {
        review.problem(format!(
            "spec.verifyInterval {:?} is not a duration such as 30m or 1h (units: h, m, s, ms)",
            interval
        ));
        return;
    }
    match parse_duration(interval) {
        Ok(d) if d < MIN_VERIFY_INTERVAL => review.problem(format!(
            "spec.verifyInterval {interval:?} is shorter than the minimum of 1m"
        )),
        Ok(_) => {}
        Err(DurationError::Malformed(_) | DurationError::TooShort(_)) => review.problem(format!(
            "spec.verifyInterval {interval:?} is not a duration such as 30m or 1h"
        )),
    }
}

/// A Kubernetes object name (RFC 1123 subdomain): what a Secret or ConfigMap can be called.
fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= MAX_REF
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// A key of a Secret's or ConfigMap's data.
fn is_data_key(key: &str) -> bool {
    key.len() <= MAX_REF
        && !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && key != "."
        && key != ".."
}

fn check_ref(field: &str, kind: &str, name: &str, key: &str, review: &mut Review) {
    if name.is_empty() {
        review.problem(format!("{field}.name must not be empty: name the {kind} that holds it"));
    } else if !is_dns_subdomain(name) {
        review.problem(format!(
            "{field}.name {name:?} cannot be the name of a {kind} (lower-case letters, digits, '-' and '.', at most \
             {MAX_REF} characters)"
        ));
    }
    if key.is_empty() {
        review.problem(format!(
            "{field}.key must not be empty: name the key of the {kind}'s data"
        ));
    } else if !is_data_key(key) {
        review.problem(format!(
            "{field}.key {key:?} cannot be a key of a {kind} (letters, digits, '-', '_' and '.', at most {MAX_REF} \
             characters)"
        ));
    }
}

/// Who already holds an instance name. Both the live index and `check`'s offline set of files
/// serve the uniqueness rule through this one view.
pub trait Holders {
    /// The connection, other than `candidate`, that keeps `instance`, if any.
    fn holder_of(&self, instance: &InstanceKey, candidate: &ObjectKey) -> Option<ObjectKey>;
}

impl Holders for ConnectionIndex {
    fn holder_of(&self, instance: &InstanceKey, candidate: &ObjectKey) -> Option<ObjectKey> {
        self.holder_other_than(instance, candidate).map(|h| h.key)
    }
}

impl<F> Holders for F
where
    F: Fn(&InstanceKey, &ObjectKey) -> Option<ObjectKey>,
{
    fn holder_of(&self, instance: &InstanceKey, candidate: &ObjectKey) -> Option<ObjectKey> {
        self(instance, candidate)
    }
}

/// The provider and instance name a connection claims.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim<'a> {
    pub provider: ProviderKind,
    pub instance_name: &'a str,
}

impl<'a> Claim<'a> {
    pub fn of(spec: &'a GitProviderConnectionSpec) -> Claim<'a> {
        Claim {
            provider: spec.provider,
            instance_name: &spec.instance_name,
        }
    }

    /// The key of this claim in `namespace` under `scope`.
    pub fn instance_key(&self, scope: UniquenessScope, namespace: &str) -> InstanceKey {
        InstanceKey::new(scope, namespace, self.provider, self.instance_name)
    }
}

/// A claim that another connection already holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Duplicate {
    pub provider: ProviderKind,
    /// The instance name as the candidate wrote it (trimmed).
    pub instance_name: String,
    pub holder: ObjectKey,
}

impl Duplicate {
    /// The denial message, naming the holder as `namespace/name`.
    pub fn message(&self) -> String {
        self.message_with_origin(None)
    }

    /// The denial message, with where the holder is defined (a file, for `check`).
    pub fn message_with_origin(&self, origin: Option<&str>) -> String {
        let origin = origin.map(|o| format!(" (in {o})")).unwrap_or_default();
        format!(
            "instanceName {:?} is already used by {} connection {}{origin}; choose another instanceName (names are \
             compared ignoring case and surrounding spaces)",
            self.instance_name, self.provider, self.holder
        )
    }
}

/// The uniqueness rule of `API.md`: no two connections of the same provider share a
/// (normalised) instance name within the scope.
///
/// `candidate` is the connection being created or updated; `old` is the claim of the stored
/// object on UPDATE. An update that keeps its own claim (same provider, same normalised name)
/// passes even when a duplicate exists: the older holder keeps the name and the controller
/// already reports the younger one, so blocking unrelated edits would help nobody.
pub fn check_unique<H: Holders + ?Sized>(
    holders: &H,
    scope: UniquenessScope,
    candidate: &ObjectKey,
    claim: Claim<'_>,
    old: Option<Claim<'_>>,
) -> Result<(), Duplicate> {
    let instance = claim.instance_key(scope, &candidate.namespace);
    if let Some(old) = old
        && old.instance_key(scope, &candidate.namespace) == instance
    {
        return Ok(());
    }
    match holders.holder_of(&instance, candidate) {
        Some(holder) => Err(Duplicate {
            provider: claim.provider,
            instance_name: claim.instance_name.trim().to_owned(),
            holder,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{CaBundleKind, CaBundleRef, TlsSpec};
    use crate::index::test_connection as conn;
    use serde_json::json;

    fn spec(provider: ProviderKind, instance: &str, url: &str) -> GitProviderConnectionSpec {
        GitProviderConnectionSpec::new(provider, instance, url, "pat")
    }

    fn good() -> GitProviderConnectionSpec {
        spec(ProviderKind::GitLab, "gitlab-main", "https://gitlab.example.com")
    }

    fn problems_of(s: &GitProviderConnectionSpec) -> Vec<String> {
        validate_spec(s).problems
    }

    fn one_problem(s: &GitProviderConnectionSpec) -> String {
        let problems = problems_of(s);
        assert_eq!(problems.len(), 1, "{problems:?}");
        problems.into_iter().next().unwrap()
    }

    #[test]
    fn a_good_spec_has_nothing_to_say() {
        assert_eq!(validate_spec(&good()), Review::default());
        let mut s = spec(
            ProviderKind::AzureDevOps,
            "dev1",
            "https://dev1.azure.example.com/tfs/DefaultCollection/",
        );
        s.tls = Some(TlsSpec {
            ca_bundle_ref: Some(CaBundleRef {
                kind: CaBundleKind::ConfigMap,
                name: "corp-ca".into(),
                key: "ca.crt".into(),
            }),
            insecure_skip_verify: false,
        });
        s.verify_interval = "1h30m".into();
        assert_eq!(validate_spec(&s), Review::default());
        // IPv6 and IP literals that are not link-local, ports
        for url in [
            "https://[2001:db8::1]:8443",
            "https://10.0.0.5",
            "https://git.example.com:8443/gitlab",
        ] {
            assert!(problems_of(&spec(ProviderKind::GitLab, "x", url)).is_empty(), "{url}");
        }
    }

    #[test]
    fn instance_name_rules() {
        let mut s = good();
        s.instance_name = "  \t".into();
        assert!(one_problem(&s).contains("spec.instanceName must not be blank"));
        s.instance_name = String::new();
        assert!(one_problem(&s).contains("spec.instanceName must not be blank"));
        s.instance_name = "a".repeat(64);
        assert_eq!(
            one_problem(&s),
            "spec.instanceName is 64 characters long; the maximum is 63"
        );
        s.instance_name = "ä".repeat(63);
        assert!(problems_of(&s).is_empty(), "characters, not bytes");
    }

    #[test]
    fn url_rules_mirror_cel() {
        let cases = [
            ("", "spec.url is required"),
            ("   ", "spec.url is required"),
            (
                "gitlab.example.com",
                "must be an absolute http:// or https:// URL with a host",
            ),
            (
                "ftp://gitlab.example.com",
                "must be an absolute http:// or https:// URL with a host",
            ),
            (
                "HTTPS://gitlab.example.com",
                "must be an absolute http:// or https:// URL with a host",
            ),
            ("https://", "spec.url has no host"),
            ("https:///path", "spec.url has no host"),
            ("https://user:secret@gitlab.example.com", "must not contain user info"),
            ("https://user@gitlab.example.com/x", "must not contain user info"),
            (
                "https://gitlab.example.com/?private_token=abc",
                "must not contain a query",
            ),
            ("https://gitlab.example.com/#top", "must not contain a fragment"),
        ];
        for (url, expected) in cases {
            let problem = one_problem(&spec(ProviderKind::GitLab, "x", url));
            assert!(problem.contains(expected), "{url:?}: {problem}");
            assert!(
                !problem.contains("secret") && !problem.contains("private_token"),
                "{problem}"
            );
        }
        let long = format!("https://gitlab.example.com/{}", "a".repeat(2048));
        assert!(one_problem(&spec(ProviderKind::GitLab, "x", &long)).contains("the maximum is 2048"));
        // both a query and a fragment: both said
        assert_eq!(problems_of(&spec(ProviderKind::GitLab, "x", "https://h/?a#b")).len(), 2);
    }

    #[test]
    fn url_must_parse() {
        for url in ["https://bad host/", "https://h:99999", "https://[::1"] {
            let problem = one_problem(&spec(ProviderKind::GitLab, "x", url));
            assert!(problem.starts_with("spec.url"), "{url}: {problem}");
            assert!(problem.contains("not a valid URL"), "{url}: {problem}");
        }
    }

    #[test]
    fn link_local_literals_are_refused() {
        for url in [
            "http://169.254.169.254/latest",
            "https://169.254.0.1",
            "https://[fe80::1]",
            "https://[febf::1]:8443",
            "https://[::ffff:169.254.169.254]",
        ] {
            let problem = one_problem(&spec(ProviderKind::GitLab, "x", url));
            assert!(problem.contains("link-local"), "{url}: {problem}");
        }
        // a name that merely looks like one is resolved (and guarded) at verification time
        assert!(problems_of(&spec(ProviderKind::GitLab, "x", "https://169-254-169-254.example.com")).is_empty());
    }

    #[test]
    fn verify_interval_rules() {
        let mut s = good();
        for ok in ["1m", "60s", "1h30m", "1.5h", "24h", "90000ms"] {
            s.verify_interval = ok.into();
            assert!(problems_of(&s).is_empty(), "{ok}");
        }
        for (bad, expected) in [
            ("30s", "shorter than the minimum of 1m"),
            ("59999ms", "shorter than the minimum of 1m"),
            ("1", "is not a duration"),
            ("", "is not a duration"),
            ("1d", "is not a duration"),
            ("1.m", "is not a duration"),
            ("-1h", "is not a duration"),
            ("1 h", "is not a duration"),
            ("1h1h1h1h1h1h1h1h1h1h1h1h1h1h1h1h1h", "the maximum is 32"),
        ] {
            s.verify_interval = bad.into();
            let problem = one_problem(&s);
            assert!(problem.starts_with("spec.verifyInterval"), "{bad}: {problem}");
            assert!(problem.contains(expected), "{bad}: {problem}");
        }
    }

    #[test]
    fn reference_rules() {
        let mut s = good();
        s.token_secret_ref.name = String::new();
        assert!(one_problem(&s).contains("spec.tokenSecretRef.name must not be empty"));
        s.token_secret_ref.name = "My_Secret".into();
        assert!(one_problem(&s).contains("spec.tokenSecretRef.name \"My_Secret\" cannot be the name of a Secret"));
        s.token_secret_ref.name = "pat".into();
        s.token_secret_ref.key = String::new();
        assert!(one_problem(&s).contains("spec.tokenSecretRef.key must not be empty"));
        s.token_secret_ref.key = "a key".into();
        assert!(one_problem(&s).contains("spec.tokenSecretRef.key \"a key\" cannot be a key of a Secret"));
        s.token_secret_ref.key = "TOKEN_1.txt".into();
        assert!(problems_of(&s).is_empty());

        let mut s = good();
        s.tls = Some(TlsSpec {
            ca_bundle_ref: Some(CaBundleRef {
                kind: CaBundleKind::ConfigMap,
                name: String::new(),
                key: String::new(),
            }),
            insecure_skip_verify: false,
        });
        let problems = problems_of(&s);
        assert_eq!(
            problems,
            vec![
                "spec.tls.caBundleRef.name must not be empty: name the ConfigMap that holds it",
                "spec.tls.caBundleRef.key must not be empty: name the key of the ConfigMap's data",
            ]
        );
    }

    #[test]
    fn username_length() {
        let mut s = good();
        s.username = Some("u".repeat(257));
        assert_eq!(
            one_problem(&s),
            "spec.username is 257 characters long; the maximum is 256"
        );
    }

    #[test]
    fn warnings_for_risky_but_legal() {
        let s = spec(ProviderKind::Gitea, "x", "http://gitea.internal");
        let review = validate_spec(&s);
        assert!(review.is_ok());
        assert_eq!(review.warnings.len(), 1);
        assert!(review.warnings[0].contains("the token travels unencrypted"));

        let mut s = good();
        s.tls = Some(TlsSpec {
            ca_bundle_ref: None,
            insecure_skip_verify: true,
        });
        let review = validate_spec(&s);
        assert!(review.is_ok());
        assert_eq!(review.warnings.len(), 1);
        assert!(review.warnings[0].contains("insecureSkipVerify"));
        for w in &review.warnings {
            assert!(w.len() <= 256, "warnings over 256 characters may be truncated: {w}");
        }
    }

    #[test]
    fn several_problems_are_all_reported() {
        let mut s = spec(ProviderKind::GitLab, " ", "ftp://x");
        s.verify_interval = "5s".into();
        s.token_secret_ref.key = String::new();
        assert_eq!(problems_of(&s).len(), 4, "{:?}", problems_of(&s));
    }

    #[test]
    fn parse_spec_names_the_field() {
        let value =
            json!({"provider": "Gitlab", "instanceName": "x", "url": "https://h", "tokenSecretRef": {"name": "p"}});
        let error = parse_spec(Some(&value)).unwrap_err();
        assert!(error.starts_with("spec.provider: unknown variant `Gitlab`"), "{error}");
        let value = json!({"provider": "GitLab", "instanceName": "x", "tokenSecretRef": {"name": "p"}});
        assert_eq!(parse_spec(Some(&value)).unwrap_err(), "spec: missing field `url`");
        let value =
            json!({"provider": "GitLab", "instanceName": 7, "url": "https://h", "tokenSecretRef": {"name": "p"}});
        assert!(
            parse_spec(Some(&value))
                .unwrap_err()
                .starts_with("spec.instanceName: invalid type")
        );
        assert_eq!(parse_spec(None).unwrap_err(), "spec is missing");
        // defaults apply
        let value =
            json!({"provider": "GitLab", "instanceName": "x", "url": "https://h", "tokenSecretRef": {"name": "p"}});
        let parsed = parse_spec(Some(&value)).unwrap();
        assert_eq!(parsed.token_secret_ref.key, "token");
        assert_eq!(parsed.verify_interval, "1h");
    }

    fn claim(provider: ProviderKind, name: &str) -> Claim<'_> {
        Claim {
            provider,
            instance_name: name,
        }
    }

    #[test]
    fn create_is_denied_for_a_taken_name_after_normalisation() {
        let index = ConnectionIndex::new(UniquenessScope::Namespace);
        index.apply(&conn("team-a", "azure-dev1", ProviderKind::AzureDevOps, "dev1", 1));
        let candidate = ObjectKey::new("team-a", "second");
        let duplicate = check_unique(
            &index,
            UniquenessScope::Namespace,
            &candidate,
            claim(ProviderKind::AzureDevOps, "  DEV1 "),
            None,
        )
        .unwrap_err();
        assert_eq!(duplicate.holder, ObjectKey::new("team-a", "azure-dev1"));
        assert_eq!(
            duplicate.message(),
            "instanceName \"DEV1\" is already used by AzureDevOps connection team-a/azure-dev1; choose another \
             instanceName (names are compared ignoring case and surrounding spaces)"
        );
        // another provider, another namespace, another name: fine
        for (ns, provider, name) in [
            ("team-a", ProviderKind::GitLab, "dev1"),
            ("team-b", ProviderKind::AzureDevOps, "dev1"),
            ("team-a", ProviderKind::AzureDevOps, "dev2"),
        ] {
            let key = ObjectKey::new(ns, "other");
            assert_eq!(
                check_unique(&index, UniquenessScope::Namespace, &key, claim(provider, name), None),
                Ok(()),
                "{ns} {provider} {name}"
            );
        }
    }

    #[test]
    fn cluster_scope_spans_namespaces() {
        let index = ConnectionIndex::new(UniquenessScope::Cluster);
        index.apply(&conn("team-a", "gl", ProviderKind::GitLab, "main", 1));
        let duplicate = check_unique(
            &index,
            UniquenessScope::Cluster,
            &ObjectKey::new("team-b", "gl"),
            claim(ProviderKind::GitLab, "Main"),
            None,
        )
        .unwrap_err();
        assert_eq!(duplicate.holder.to_string(), "team-a/gl");
        assert_eq!(
            check_unique(
                &index,
                UniquenessScope::Cluster,
                &ObjectKey::new("team-b", "gh"),
                claim(ProviderKind::GitHub, "main"),
                None
            ),
            Ok(())
        );
    }

    #[test]
    fn updates() {
        use ProviderKind::{GitHub, GitLab};
        let index = ConnectionIndex::new(UniquenessScope::Namespace);
        index.apply(&conn("a", "old", GitLab, "x", 1));
        index.apply(&conn("a", "young", GitLab, "x", 2));
        index.apply(&conn("a", "other", GitLab, "y", 3));
        index.apply(&conn("a", "gh", GitHub, "y", 4));
        // (who updates, its claim after and before, who holds the name when it is denied)
        let cases = [
            // the holder updating itself
            ("old", (GitLab, "x"), (GitLab, "x"), None),
            // the younger duplicate keeping its (normalised) name: fine, the controller reports it
            ("young", (GitLab, " X "), (GitLab, "x"), None),
            // changing to a taken name: denied
            ("other", (GitLab, "x"), (GitLab, "y"), Some("old")),
            // changing the provider to one where the name is taken: denied
            ("other", (GitHub, "y"), (GitLab, "y"), Some("gh")),
            // the holder renaming itself away and back is its own business
            ("old", (GitLab, "z"), (GitLab, "x"), None),
        ];
        for (who, (provider, name), (was_provider, was_name), holder) in cases {
            let key = ObjectKey::new("a", who);
            let outcome = check_unique(
                &index,
                UniquenessScope::Namespace,
                &key,
                claim(provider, name),
                Some(claim(was_provider, was_name)),
            );
            let expected = holder.map_or(Ok(()), |holder| Err(ObjectKey::new("a", holder)));
            assert_eq!(
                outcome.map_err(|duplicate| duplicate.holder),
                expected,
                "{who} → {name:?}"
            );
        }
    }

    #[test]
    fn closures_serve_as_holders() {
        let holders = |instance: &InstanceKey, candidate: &ObjectKey| {
            (instance.name == "taken" && candidate.name != "owner").then(|| ObjectKey::new("ns", "owner"))
        };
        let scope = UniquenessScope::Namespace;
        let key = ObjectKey::new("ns", "new");
        assert!(check_unique(&holders, scope, &key, claim(ProviderKind::Gitea, "Taken"), None).is_err());
        assert!(check_unique(&holders, scope, &key, claim(ProviderKind::Gitea, "free"), None).is_ok());
        let message = check_unique(&holders, scope, &key, claim(ProviderKind::Gitea, "taken"), None)
            .unwrap_err()
            .message_with_origin(Some("a/b.yaml"));
        assert!(message.contains("Gitea connection ns/owner (in a/b.yaml); choose another instanceName"));
    }
}
