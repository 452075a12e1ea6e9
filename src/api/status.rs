//! The status of a `GitProviderConnection`: what the operator learned, each listed repository's
//! readability, and the closed sets of reasons.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What the operator learned when it last verified the token.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitProviderConnectionStatus {
    /// The metadata.generation the status was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When the token was last checked against the instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_verified_time: Option<Time>,
    /// The account the token authenticates as.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authenticated_user: Option<AuthenticatedUser>,
    /// Version of the provider's server, when it reveals it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    /// Whether the instance is the provider's cloud service or a self-hosted server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "deployment_schema")]
    pub deployment: Option<Deployment>,
    /// Scopes granted to the token, when the provider reveals them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_scopes: Option<Vec<String>>,
    /// When the token expires, when the provider reveals it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_expires_at: Option<Time>,
    /// One entry per spec.repositories path, in the same order: whether the token can read it.
    /// Left out when spec.repositories is empty or the token itself failed verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repositories: Option<Vec<RepositoryStatus>>,
    /// How many of spec.repositories are readable, as READABLE/LISTED (e.g. 3/4).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository_summary: Option<String>,
    /// Ready and TokenExpiringSoon, in the metav1.Condition shape.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}

// schemars renders `Option<enum>` with a `null` enum member, which a structural CRD schema
// should not carry; the field is simply optional.
fn deployment_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Whether the instance is the provider's cloud service or a self-hosted server.",
        "type": "string",
        "enum": ["Cloud", "SelfHosted"]
    })
}

/// Whether the token can read one repository of spec.repositories.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RepositoryStatus {
    /// The path as listed in spec.repositories.
    pub path: String,
    /// Whether the token can read the repository.
    pub readable: bool,
    /// The default branch, when the provider reveals it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_branch: Option<String>,
    /// The HTTPS clone URL, when the provider reveals it.
    #[serde(default, rename = "cloneURL", skip_serializing_if = "Option::is_none")]
    pub clone_url: Option<String>,
    /// Why the repository cannot be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "repository_reason_schema")]
    pub reason: Option<RepositoryReason>,
    /// What to do about it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

fn repository_reason_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "description": "Why the repository cannot be read.",
        "type": "string",
        "enum": ["NotFound", "Forbidden", "SSORequired", "ProviderError", "Unreachable"]
    })
}

/// Why a listed repository cannot be read: a closed set.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum RepositoryReason {
    /// The token cannot see it, or it does not exist.
    NotFound,
    /// The token sees it but may not read it.
    Forbidden,
    /// An organisation's SAML single sign-on requires the token to be authorised first.
    #[serde(rename = "SSORequired")]
    SsoRequired,
    /// The instance failed (5xx, rate limited, an answer that is not its API).
    ProviderError,
    /// No answer (DNS, refused connection, time-out, TLS).
    Unreachable,
}

impl RepositoryReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RepositoryReason::NotFound => "NotFound",
            RepositoryReason::Forbidden => "Forbidden",
            RepositoryReason::SsoRequired => "SSORequired",
            RepositoryReason::ProviderError => "ProviderError",
            RepositoryReason::Unreachable => "Unreachable",
        }
    }

    /// Failures that may heal by themselves: the connection is looked at again with backoff.
    pub fn is_transient(self) -> bool {
        matches!(self, RepositoryReason::ProviderError | RepositoryReason::Unreachable)
    }
}

impl fmt::Display for RepositoryReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The account a token authenticates as.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, Default, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthenticatedUser {
    /// Login name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// Display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// E-mail address, when the provider reveals it to this token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// Cloud service or self-hosted server.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum Deployment {
    Cloud,
    SelfHosted,
}

impl Deployment {
    /// `Cloud` for a provider's cloud service, else `SelfHosted`.
    pub fn cloud_if(cloud: bool) -> Deployment {
        if cloud {
            Deployment::Cloud
        } else {
            Deployment::SelfHosted
        }
    }
}

/// The closed set of reasons of the `Ready` condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ReadyReason {
    Progressing,
    Verified,
    Suspended,
    SecretNotFound,
    SecretKeyNotFound,
    InvalidSpec,
    Unauthorized,
    TokenExpired,
    InsufficientScope,
    EndpointNotFound,
    Unreachable,
    TlsError,
    ProviderError,
    RepositoryUnreadable,
    DuplicateInstanceName,
}

impl ReadyReason {
    pub const ALL: [ReadyReason; 15] = [
        ReadyReason::Progressing,
        ReadyReason::Verified,
        ReadyReason::Suspended,
        ReadyReason::SecretNotFound,
        ReadyReason::SecretKeyNotFound,
        ReadyReason::InvalidSpec,
        ReadyReason::Unauthorized,
        ReadyReason::TokenExpired,
        ReadyReason::InsufficientScope,
        ReadyReason::EndpointNotFound,
        ReadyReason::Unreachable,
        ReadyReason::TlsError,
        ReadyReason::ProviderError,
        ReadyReason::RepositoryUnreadable,
        ReadyReason::DuplicateInstanceName,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReadyReason::Progressing => "Progressing",
            ReadyReason::Verified => "Verified",
            ReadyReason::Suspended => "Suspended",
            ReadyReason::SecretNotFound => "SecretNotFound",
            ReadyReason::SecretKeyNotFound => "SecretKeyNotFound",
            ReadyReason::InvalidSpec => "InvalidSpec",
            ReadyReason::Unauthorized => "Unauthorized",
            ReadyReason::TokenExpired => "TokenExpired",
            ReadyReason::InsufficientScope => "InsufficientScope",
            ReadyReason::EndpointNotFound => "EndpointNotFound",
            ReadyReason::Unreachable => "Unreachable",
            ReadyReason::TlsError => "TLSError",
            ReadyReason::ProviderError => "ProviderError",
            ReadyReason::RepositoryUnreadable => "RepositoryUnreadable",
            ReadyReason::DuplicateInstanceName => "DuplicateInstanceName",
        }
    }

    pub fn parse(reason: &str) -> Option<ReadyReason> {
        Self::ALL.into_iter().find(|r| r.as_str() == reason)
    }

    /// The `status` of the Ready condition this reason goes with.
    pub fn condition_status(self) -> &'static str {
        match self {
            ReadyReason::Verified => "True",
            ReadyReason::Progressing | ReadyReason::Suspended => "Unknown",
            _ => "False",
        }
    }

    /// Failures that may heal by themselves and are retried with backoff.
    pub fn is_transient(self) -> bool {
        matches!(self, ReadyReason::Unreachable | ReadyReason::ProviderError)
    }
}

impl fmt::Display for ReadyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
