//! External Secrets Operator as the peer of `benches/peer.rs`: its CRDs (the `config/crds/bases`
//! folder of the Go module it was built from), a ServiceAccount of its own, and one GitLab
//! SecretStore per connection, reading the same token Secret.
//!
//! What it does per SecretStore (v0.16.2, `pkg/controllers/secretstore/common.go` and
//! `pkg/provider/gitlab`): read the token Secret from the API server (Secrets are not cached
//! unless `--enable-secrets-caching`), `GET /api/v4/projects/:id/variables` once, patch the
//! status (Ready), record an Event, and requeue after `--store-requeue-interval`.

use crate::support::control_plane::ControlPlane;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

/// The namespace and ServiceAccount ESO runs as.
pub const NAMESPACE: &str = "external-secrets";
pub const SERVICE_ACCOUNT: &str = "external-secrets";
/// What the objects are: listed to count Ready, matched in the audit log.
pub const GROUP: &str = "external-secrets.io";
pub const VERSION: &str = "v1";
pub const KIND: &str = "SecretStore";
pub const RESOURCE: &str = "secretstores";

/// Applies ESO's CRDs (server-side: some exceed the client-side annotation limit), waits until
/// every CRD is Established, and creates ESO's ServiceAccount bound to `cluster-admin` (a
/// workload to priority and fairness, like ours; its chart's narrower roles cost the
/// authorizer no more). Returns the ServiceAccount's kubeconfig.
pub fn prepare(plane: &ControlPlane, crds: &Path) -> PathBuf {
    let crds = crds.display().to_string();
    plane.kubectl_ok(&["apply", "--server-side", "--field-manager", "peer-bench", "-k", &crds]);
    plane.kubectl_ok(&["wait", "--for=condition=Established", "--timeout=120s", "crd", "--all"]);
    plane.kubectl_ok(&["create", "namespace", NAMESPACE]);
    plane.kubectl_ok(&["create", "serviceaccount", SERVICE_ACCOUNT, "-n", NAMESPACE]);
    plane.kubectl_ok(&[
        "create",
        "clusterrolebinding",
        "external-secrets-peer",
        "--clusterrole=cluster-admin",
        &format!("--serviceaccount={NAMESPACE}:{SERVICE_ACCOUNT}"),
    ]);
    plane.service_account_kubeconfig(NAMESPACE, SERVICE_ACCOUNT)
}

/// The user ESO's requests carry in the audit log.
pub fn user() -> String {
    format!("system:serviceaccount:{NAMESPACE}:{SERVICE_ACCOUNT}")
}

/// ESO's client-side rate limit towards the API server (client-go's token bucket per REST
/// client, i.e. per resource it reads or writes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientLimits {
    /// As ESO ships it: `--client-qps` 50, `--client-burst` 100 (its flags' defaults).
    Shipped,
    /// Off (a negative QPS: client-go then builds no limiter), as our operator has none, so
    /// both meet only the server's priority and fairness.
    Off,
}

impl ClientLimits {
    /// The setting [`ClientLimits::name`] names `text`.
    pub fn parse(text: &str) -> Option<ClientLimits> {
        [ClientLimits::Shipped, ClientLimits::Off]
            .into_iter()
            .find(|limits| limits.name() == text)
    }

    /// Names the run in the report and its files.
    pub fn name(self) -> &'static str {
        match self {
            ClientLimits::Shipped => "shipped",
            ClientLimits::Off => "off",
        }
    }
}

/// ESO's command line: `concurrency` reconciles at once; its client-side rate limit as `limits`
/// says; validated every `interval`; no metrics server; logs at its default level.
pub fn args(concurrency: u16, interval: &str, limits: ClientLimits) -> Vec<String> {
    let mut args = vec![format!("--concurrent={concurrency}")];
    if limits == ClientLimits::Off {
        args.extend(["--client-qps=-1".to_owned(), "--client-burst=1000".to_owned()]);
    }
    args.extend([
        format!("--store-requeue-interval={interval}"),
        "--metrics-addr=0".to_owned(),
    ]);
    args
}

pub fn store_name(i: usize) -> String {
    format!("store-{i}")
}

/// SecretStore `store-I` in `namespace`: GitLab at `url`, project I, the token in Secret
/// `secret` under `token`.
pub fn store(i: usize, namespace: &str, url: &str, secret: &str) -> Value {
    json!({
        "apiVersion": format!("{GROUP}/{VERSION}"), "kind": KIND,
        "metadata": {"name": store_name(i), "namespace": namespace},
        "spec": {"provider": {"gitlab": {
            "url": url,
            "projectID": i.to_string(),
            "auth": {"SecretRef": {"accessToken": {"name": secret, "key": "token"}}},
        }}},
    })
}
