//! The `GitProviderConnection` resource: spec and status types, exactly as `API.md` fixes them.
//!
//! The generated CRD (see [`crd_yaml`]) carries printer columns, defaults and CEL rules so that the
//! API server itself rejects what it can; the admission webhook repeats those checks and adds what
//! CEL cannot express (see `admission::rules`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, CustomResourceExt};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

mod status;

pub use status::{
    AuthenticatedUser, Deployment, GitProviderConnectionStatus, ReadyReason, RepositoryReason, RepositoryStatus,
};

/// Kubernetes API group of the resource.
pub const GROUP: &str = "gitprovider.dev";
/// Condition type that says whether the connection works.
pub const READY: &str = "Ready";
/// Condition type present whenever the token's expiry is known.
pub const TOKEN_EXPIRING_SOON: &str = "TokenExpiringSoon";

/// A connection to one instance of a Git provider, authenticated by a personal access token.
// Each printcolumn repeats `type_`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Deserialize, Serialize, Clone, Debug, PartialEq, JsonSchema)]
#[kube(
    group = "gitprovider.dev",
    version = "v1alpha1",
    kind = "GitProviderConnection",
    plural = "gitproviderconnections",
    singular = "gitproviderconnection",
    shortname = "gpc",
    shortname = "gitconn",
    namespaced,
    status = "GitProviderConnectionStatus",
    doc = "A connection to one Git provider instance, authenticated by a personal access token held in a Secret and verified by gitprovider-operator.",
    printcolumn(name = "Provider", type_ = "string", json_path = ".spec.provider"),
    printcolumn(name = "Instance", type_ = "string", json_path = ".spec.instanceName"),
    printcolumn(name = "URL", type_ = "string", json_path = ".spec.url"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(name = "User", type_ = "string", json_path = ".status.authenticatedUser.username"),
    printcolumn(name = "Expires", type_ = "string", json_path = ".status.tokenExpiresAt"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    printcolumn(
        name = "Repositories",
        type_ = "string",
        json_path = ".status.repositorySummary",
        priority = 1
    )
)]
#[serde(rename_all = "camelCase")]
pub struct GitProviderConnectionSpec {
    /// The Git provider product. Self-hosted and cloud instances use the same value.
    pub provider: ProviderKind,

    /// The name a person gave this instance. Unique per provider within the uniqueness scope,
    /// compared after trimming surrounding white space and ignoring ASCII case.
    #[schemars(length(min = 1, max = 63))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "!self.matches('^\\\\s*$')", "message": "instanceName must not be blank"}
    ]))]
    pub instance_name: String,

    /// Base URL of the instance, e.g. https://gitlab.example.com, https://dev.azure.com/ORG or
    /// https://tfs.example.com/tfs/DefaultCollection. Absolute http(s), no user info, query or
    /// fragment; a trailing slash is insignificant.
    #[schemars(length(min = 1, max = 2048))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self.matches('^https?://[^/?#]+')", "message": "url must be an absolute http:// or https:// URL with a host"},
        {"rule": "!self.matches('^https?://[^/?#]*@')", "message": "url must not contain user info; put the token in the Secret"},
        {"rule": "!self.contains('?')", "message": "url must not contain a query"},
        {"rule": "!self.contains('#')", "message": "url must not contain a fragment"}
    ]))]
    pub url: String,

    /// The Secret, in the connection's namespace, that holds the personal access token.
    pub token_secret_ref: TokenSecretRef,

    /// The login some providers need beside the token (Bitbucket Cloud: the Atlassian account email).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub username: Option<String>,

    /// TLS settings for talking to the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,

    /// How often the token is verified again, as a duration such as 30m or 1h (minimum 1m).
    #[serde(default = "default_verify_interval")]
    #[schemars(length(max = 32))]
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self.matches('^([0-9]+(\\\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$') && duration(self) >= duration('1m')",
         "message": "verifyInterval must be a duration such as 30m or 1h, at least 1m"}
    ]))]
    pub verify_interval: String,

    /// When true, the token is not verified and the status says Suspended.
    #[serde(default)]
    pub suspend: bool,

    /// Repositories this connection must reach (at most 100), in the provider's path form:
    /// GitLab group/subgroup/project; GitHub and Gitea owner/repo; Bitbucket Server
    /// PROJECTKEY/repo-slug; Bitbucket Cloud workspace/repo-slug; Azure DevOps project/repo.
    /// Each is looked up with the token on every verification (see status.repositories).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "repositories_schema")]
    pub repositories: Vec<String>,
}

/// Most entries `spec.repositories` may hold.
pub const MAX_REPOSITORIES: usize = 100;
/// Longest repository path accepted.
pub const MAX_REPOSITORY_PATH: usize = 512;

// A set (the API server refuses duplicates, naming the entry), bounded, and each entry without
// a leading or trailing slash; the per-provider path forms are checked by the webhook.
fn repositories_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Repositories this connection must reach (at most 100), in the provider's path form: GitLab group/subgroup/project; GitHub and Gitea owner/repo; Bitbucket Server PROJECTKEY/repo-slug; Bitbucket Cloud workspace/repo-slug; Azure DevOps project/repo. Each is looked up with the token on every verification (see status.repositories).",
        "type": "array",
        "maxItems": MAX_REPOSITORIES,
        "x-kubernetes-list-type": "set",
        "items": {
            "type": "string",
            "minLength": 3,
            "maxLength": MAX_REPOSITORY_PATH,
            "x-kubernetes-validations": [
                {"rule": "!self.startsWith('/') && !self.endsWith('/') && self.contains('/')",
                 "message": "a repository path has at least two segments separated by /, and no leading or trailing /"}
            ]
        }
    })
}

impl GitProviderConnectionSpec {
    /// A spec with the defaults the CRD applies: Secret key `token`, interval 1h, not
    /// suspended, no username or TLS settings.
    pub fn new(
        provider: ProviderKind,
        instance_name: impl Into<String>,
        url: impl Into<String>,
        token_secret: impl Into<String>,
    ) -> GitProviderConnectionSpec {
        GitProviderConnectionSpec {
            provider,
            instance_name: instance_name.into(),
            url: url.into(),
            token_secret_ref: TokenSecretRef {
                name: token_secret.into(),
                key: default_token_key(),
            },
            username: None,
            tls: None,
            verify_interval: default_verify_interval(),
            suspend: false,
            repositories: Vec::new(),
        }
    }
}

fn default_verify_interval() -> String {
    "1h".to_owned()
}

fn default_token_key() -> String {
    "token".to_owned()
}

/// A key of a Secret in the connection's namespace.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenSecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key in the Secret whose value is the token.
    #[serde(default = "default_token_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// TLS settings for talking to the instance.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    /// PEM CA certificates trusted in addition to the system roots (for a corporate CA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle_ref: Option<CaBundleRef>,
    /// Skip certificate verification. Insecure: anyone on the path can read the token.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// A key of a ConfigMap or Secret, in the connection's namespace, holding PEM certificates.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CaBundleRef {
    /// ConfigMap or Secret.
    pub kind: CaBundleKind,
    /// Name of the ConfigMap or Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key holding the PEM bundle.
    #[serde(default = "default_ca_key")]
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

fn default_ca_key() -> String {
    "ca.crt".to_owned()
}

/// Kind of object that holds a CA bundle.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum CaBundleKind {
    ConfigMap,
    Secret,
}

/// The Git provider products the operator can verify.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, JsonSchema)]
pub enum ProviderKind {
    GitLab,
    Bitbucket,
    AzureDevOps,
    GitHub,
    Gitea,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 5] = [
        ProviderKind::GitLab,
        ProviderKind::Bitbucket,
        ProviderKind::AzureDevOps,
        ProviderKind::GitHub,
        ProviderKind::Gitea,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::GitLab => "GitLab",
            ProviderKind::Bitbucket => "Bitbucket",
            ProviderKind::AzureDevOps => "AzureDevOps",
            ProviderKind::GitHub => "GitHub",
            ProviderKind::Gitea => "Gitea",
        }
    }

    /// Parses a provider name case-insensitively (for the command line).
    pub fn parse_loose(name: &str) -> Option<ProviderKind> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(name.trim()))
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl GitProviderConnection {
    /// The Ready condition, if any.
    pub fn ready_condition(&self) -> Option<&Condition> {
        self.status.as_ref()?.conditions.iter().find(|c| c.type_ == READY)
    }
}

/// The CustomResourceDefinition as YAML: what `gitprovider-operator crd` prints and
/// `crds/gitproviderconnections.yaml` holds.
pub fn crd_yaml() -> Result<String, serde_saphyr::SerializeError> {
    let crd = GitProviderConnection::crd();
    let mut out = String::from("# Generated by `gitprovider-operator crd`; do not edit by hand.\n");
    out.push_str(&serde_saphyr::to_string(&crd)?);
    Ok(out)
}
