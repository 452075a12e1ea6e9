//! The credentials step: the token from the connection's Secret and the extra CA bundle from its
//! ConfigMap or Secret, read from the API server, into the [`Target`] a provider verifies.

use super::Error;
use super::outcome::{Refusal, Stop};
use crate::api::{CaBundleKind, GitProviderConnection, ReadyReason};
use crate::providers::Target;
use crate::providers::http::TlsOptions;
use crate::token::Token;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{Api, Client, ResourceExt};
use url::Url;

/// Reads the token and the CA bundle; a reference the user can fix is a [`Stop::Refused`], an
/// API error of our own a [`Stop::Failed`].
pub(super) async fn credentials(conn: &GitProviderConnection, client: &Client, base_url: Url) -> Result<Target, Stop> {
    let spec = &conn.spec;
    let namespace = conn.namespace().unwrap_or_default();
    let token = read_token(
        client,
        &namespace,
        &spec.token_secret_ref.name,
        &spec.token_secret_ref.key,
    )
    .await?;
    let tls = spec.tls.clone().unwrap_or_default();
    let extra_ca_pem = match &tls.ca_bundle_ref {
        None => None,
        Some(ca) => {
            let pem = read_ca_bundle(client, &namespace, ca.kind, &ca.name, &ca.key).await?;
            crate::providers::tls::parse_ca_bundle(&pem)
                .map_err(|error| Refusal::new(ReadyReason::InvalidSpec, format!("CA bundle {}: {error}", ca.name)))?;
            Some(pem)
        }
    };
    Ok(Target {
        base_url,
        token,
        username: spec.username.clone(),
        last_user: last_user(conn),
        tls: TlsOptions {
            extra_ca_pem,
            insecure_skip_verify: tls.insecure_skip_verify,
        },
    })
}

/// The user the status named, so that a restarted operator need not learn it again.
fn last_user(conn: &GitProviderConnection) -> Option<String> {
    conn.status.as_ref()?.authenticated_user.as_ref()?.username.clone()
}

async fn read_token(client: &Client, namespace: &str, secret_name: &str, key: &str) -> Result<Token, Stop> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let secret = match secrets.get_opt(secret_name).await {
        Ok(secret) => secret,
        // RBAC (e.g. a chart confined to other namespaces): the user can fix this, so say so.
        Err(kube::Error::Api(status)) if status.code == 403 => {
            return Err(Refusal::new(
                ReadyReason::SecretNotFound,
                format!(
                    "the operator is not allowed to read Secret {secret_name} in namespace {namespace}; grant it access (Helm value watchNamespaces) or move the connection"
                ),
            )
            .into());
        }
        Err(source) => {
            return Err(Error::Read {
                what: format!("Secret {namespace}/{secret_name}"),
                cause: source,
            }
            .into());
        }
    };
    let Some(secret) = secret else {
        return Err(Refusal::new(
            ReadyReason::SecretNotFound,
            format!(
                "Secret {secret_name} not found in namespace {namespace}; create it with the token under key {key:?}"
            ),
        )
        .into());
    };
    secret
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .and_then(|value| Token::from_bytes(&value.0))
        .ok_or_else(|| {
            Refusal::new(
                ReadyReason::SecretKeyNotFound,
                format!(
                    "Secret {secret_name} has no non-empty key {key:?}; put the token there or set spec.tokenSecretRef.key"
                ),
            )
            .into()
        })
}

/// Reads a PEM bundle from a ConfigMap or Secret.
async fn read_ca_bundle(
    client: &Client,
    namespace: &str,
    kind: CaBundleKind,
    name: &str,
    key: &str,
) -> Result<String, Stop> {
    let read_error = |source| Error::Read {
        what: format!("{kind:?} {namespace}/{name}"),
        cause: source,
    };
    let not_found = || {
        Refusal::new(
            ReadyReason::InvalidSpec,
            format!("CA bundle {kind:?} {name} not found in namespace {namespace}"),
        )
    };
    let value = match kind {
        CaBundleKind::ConfigMap => {
            let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
            let map = api.get_opt(name).await.map_err(read_error)?.ok_or_else(not_found)?;
            map.data.and_then(|d| d.get(key).cloned()).or_else(|| {
                map.binary_data
                    .and_then(|d| d.get(key).and_then(|b| String::from_utf8(b.0.clone()).ok()))
            })
        }
        CaBundleKind::Secret => {
            let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
            let secret = api.get_opt(name).await.map_err(read_error)?.ok_or_else(not_found)?;
            secret
                .data
                .and_then(|d| d.get(key).and_then(|b| String::from_utf8(b.0.clone()).ok()))
        }
    };
    Ok(value.filter(|v| !v.trim().is_empty()).ok_or_else(|| {
        Refusal::new(
            ReadyReason::InvalidSpec,
            format!("CA bundle {kind:?} {name} has no key {key:?}"),
        )
    })?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(status: serde_json::Value) -> GitProviderConnection {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "gitprovider.dev/v1alpha1", "kind": "GitProviderConnection",
            "metadata": {"name": "c", "namespace": "n"},
            "spec": {"provider": "Bitbucket", "instanceName": "dc", "url": "https://bitbucket.example.com", "tokenSecretRef": {"name": "s"}},
            "status": status,
        }))
        .expect("a connection")
    }

    #[test]
    fn the_last_user_is_the_one_the_status_named() {
        let named = conn(serde_json::json!({"authenticatedUser": {"username": "jdoe", "displayName": "Jane Doe"}}));
        assert_eq!(last_user(&named).as_deref(), Some("jdoe"));
        for status in [
            serde_json::json!(null),
            serde_json::json!({}),
            serde_json::json!({"authenticatedUser": {"displayName": "Jane Doe"}}),
        ] {
            assert_eq!(last_user(&conn(status.clone())), None, "{status}");
        }
    }
}
