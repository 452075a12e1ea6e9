//! `verify --connection NS/NAME`: a connection that exists in a cluster, verified from a shell
//! with the user's kubeconfig exactly as the operator verifies it (the controller's own
//! evaluation), its would-be status printed. The token is read from its Secret, used, and never
//! shown.

use super::{runtime, usage_error};
use crate::api::{CaBundleKind, GitProviderConnection};
use crate::controller::{self, Context, Evaluation, Settings, Stop};
use crate::index::{ConnectionIndex, UniquenessScope};
use crate::kubeconfig::ClusterArgs;
use crate::metrics::Metrics;
use crate::providers::address_guard::AddressPolicy;
use crate::providers::http::{HttpClient, HttpConfig};
use crate::status::{StatusContext, next_status};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec};
use kube::api::PostParams;
use kube::runtime::events::Reporter;
use kube::{Api, Client};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Why the connection could not be verified from here (exit 2): what the flags name cannot be
/// read with the user's credentials.
#[derive(Debug, thiserror::Error)]
enum ConnectionError {
    #[error("--connection {0:?}: use NAMESPACE/NAME")]
    Malformed(String),
    #[error(transparent)]
    Kubeconfig(#[from] crate::kubeconfig::KubeconfigError),
    #[error("cannot build the Kubernetes client: {0}")]
    Client(String),
    #[error("GitProviderConnection {namespace}/{name} not found (kubectl get gitproviderconnections -n {namespace})")]
    NotFound { namespace: String, name: String },
    #[error("forbidden: your kubeconfig's user cannot get {what} (kubectl auth can-i get {resource} -n {namespace})")]
    Forbidden {
        what: String,
        resource: &'static str,
        namespace: String,
    },
    #[error("cannot read {what}: {message}")]
    Api { what: String, message: String },
}

/// `NS/NAME` → (namespace, name).
fn parse_reference(text: &str) -> Result<(String, String), ConnectionError> {
    match text.split_once('/') {
        Some((namespace, name)) if !namespace.is_empty() && !name.is_empty() && !name.contains('/') => {
            Ok((namespace.to_owned(), name.to_owned()))
        }
        _ => Err(ConnectionError::Malformed(text.to_owned())),
    }
}

/// What `verify --connection` takes from its flags (the rest comes from the spec).
pub struct ConnectionArgs<'a> {
    pub reference: &'a str,
    pub cluster: &'a ClusterArgs,
    pub timeout: Duration,
    pub expiry_warning: Duration,
    pub addresses: AddressPolicy,
}

pub fn command(args: ConnectionArgs<'_>) -> ExitCode {
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (status, verified) = match rt.block_on(verify(args)) {
        Ok(result) => result,
        Err(error) => return usage_error(error),
    };
    match serde_json::to_string_pretty(&status) {
        Ok(json) => println!("{json}"),
        Err(e) => {
            eprintln!("error: cannot encode the status: {e}");
            return ExitCode::FAILURE;
        }
    }
    if verified { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

/// The status the operator would write, and whether Ready would be True.
async fn verify(args: ConnectionArgs<'_>) -> Result<(serde_json::Value, bool), ConnectionError> {
    let (namespace, name) = parse_reference(args.reference)?;
    let config = args.cluster.config().await?;
    crate::api_server::set(&config.cluster_url);
    let client = Client::try_from(config).map_err(|e| ConnectionError::Client(e.to_string()))?;
    let what = format!("GitProviderConnection {namespace}/{name}");
    let conn = match Api::<GitProviderConnection>::namespaced(client.clone(), &namespace)
        .get_opt(&name)
        .await
    {
        Ok(Some(conn)) => conn,
        Ok(None) => return Err(ConnectionError::NotFound { namespace, name }),
        Err(kube::Error::Api(status)) if status.code == 403 => {
            return Err(ConnectionError::Forbidden {
                what,
                resource: "gitproviderconnections.gitprovider.dev",
                namespace,
            });
        }
        Err(error) => {
            return Err(ConnectionError::Api {
                what,
                message: crate::api_server::describe(&error),
            });
        }
    };
    // The operator's evaluation calls a Secret it may not read a status (its RBAC is the
    // user's to fix); here it is the user's own access that is missing: say so instead.
    let token_secret = &conn.spec.token_secret_ref.name;
    ensure_can_get(&client, &namespace, "secrets", token_secret).await?;
    if let Some(ca) = conn.spec.tls.as_ref().and_then(|tls| tls.ca_bundle_ref.as_ref()) {
        let resource = match ca.kind {
            CaBundleKind::ConfigMap => "configmaps",
            CaBundleKind::Secret => "secrets",
        };
        ensure_can_get(&client, &namespace, resource, &ca.name).await?;
    }

    let settings = Settings {
        expiry_warning: args.expiry_warning,
        ..Settings::default()
    };
    let http = HttpClient::new(HttpConfig {
        timeout: args.timeout,
        addresses: args.addresses,
        ..HttpConfig::default()
    });
    let ctx = Context::new(
        client,
        http,
        Arc::new(ConnectionIndex::new(UniquenessScope::Namespace)),
        Arc::new(Metrics::new()),
        settings,
        Reporter {
            controller: "gitprovider-operator-verify".to_owned(),
            instance: None,
        },
    );
    let evaluation = match controller::evaluate(&conn, &ctx).await {
        Ok(evaluation) => evaluation,
        Err(Stop::Refused(refusal)) => Evaluation::refused(refusal),
        // A fresh limiter has room for one verification.
        Err(Stop::HostBusy(_)) => {
            return Err(ConnectionError::Api {
                what: "a verification slot".to_owned(),
                message: "busy".to_owned(),
            });
        }
        Err(Stop::Failed(error)) => {
            return Err(ConnectionError::Api {
                what: format!("what {namespace}/{name} refers to"),
                message: crate::api_server::describe(&error),
            });
        }
    };
    let verified = evaluation.verification.reason == crate::api::ReadyReason::Verified;
    let status = next_status(
        StatusContext {
            previous: conn.status.as_ref(),
            generation: conn.metadata.generation,
            now: jiff::Timestamp::now(),
            expiry_warning: args.expiry_warning,
            contacted_provider: evaluation.contacted_provider,
            repositories: evaluation.repositories.as_deref(),
        },
        &evaluation.verification,
    );
    // The connection is described by its spec, so its fields are named as they are (no flags).
    let status = serde_json::to_value(&status).map_err(|e| ConnectionError::Api {
        what: "the status".to_owned(),
        message: e.to_string(),
    })?;
    Ok((status, verified))
}

/// A SelfSubjectAccessReview (`kubectl auth can-i get RESOURCE/NAME -n NS`).
async fn ensure_can_get(
    client: &Client,
    namespace: &str,
    resource: &'static str,
    name: &str,
) -> Result<(), ConnectionError> {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                namespace: Some(namespace.to_owned()),
                verb: Some("get".to_owned()),
                resource: Some(resource.to_owned()),
                name: Some(name.to_owned()),
                ..ResourceAttributes::default()
            }),
            ..SelfSubjectAccessReviewSpec::default()
        },
        ..SelfSubjectAccessReview::default()
    };
    let what = format!("{resource} {namespace}/{name}");
    let answer = Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await
        .map_err(|error| ConnectionError::Api {
            what: format!("whether you may get {what}"),
            message: crate::api_server::describe(&error),
        })?;
    if answer.status.is_some_and(|s| s.allowed) {
        Ok(())
    } else {
        Err(ConnectionError::Forbidden {
            what,
            resource,
            namespace: namespace.to_owned(),
        })
    }
}
