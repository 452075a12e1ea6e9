//! `doctor`: a pre-flight of an installation, with the user's kubeconfig, as `flux check` and
//! `cmctl check api` do. One line per check, in order — the API server, the CRD, the webhook
//! configuration, the webhook answering, the operator's Lease, the operator's RBAC — each `OK` or
//! what is wrong and what to do. Exit 0 only when every check is OK; 1 when one is not; 2 for a
//! usage error (flags, an unreadable kubeconfig).

mod certificate;
mod cluster;
mod lease;
mod permissions;
mod rbac;
mod report;
mod webhook;

pub use report::{Line, Outcome, print};
pub use webhook::request_with_warnings;

use crate::kubeconfig::ClusterArgs;
use clap::Args;
use std::time::Duration;

/// `doctor -o FORMAT`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Text,
    Json,
}

/// How the webhook's serving certificate is provided, which decides what the operator may write.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WebhookCerts {
    /// The operator issues it (`run --webhook-cert-secret`, the chart's default): it writes its
    /// Secret and the configuration's caBundle.
    #[default]
    SelfManaged,
    /// cert-manager or files (`run --tls-cert-file`): no writes. Chosen by itself when the
    /// configuration carries cert-manager's inject-ca-from annotation.
    External,
}

#[derive(Args, Debug)]
pub struct DoctorArgs {
    /// Namespace the operator runs in: its Lease, ServiceAccount, webhook Service and certificate
    /// Secret (the chart's release namespace)
    #[arg(long, short = 'n', default_value = "gitprovider-system")]
    pub namespace: String,
    /// The operator's ServiceAccount, whose permissions are checked
    #[arg(long, default_value = "gitprovider-operator")]
    pub service_account: String,
    /// Name of the operator's leader-election Lease, as `run --leader-election-id`
    #[arg(long, default_value = "gitprovider-operator")]
    pub leader_election_id: String,
    /// Whether the operator elects a leader (`run --leader-elect`); false skips the Lease check
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub leader_elect: bool,
    /// The ValidatingWebhookConfiguration the chart (or deploy/) installs
    #[arg(long, default_value = "gitprovider-operator")]
    pub webhook_configuration: String,
    /// How the webhook certificate is provided (decides the permissions checked)
    #[arg(long, value_enum, default_value_t = WebhookCerts::SelfManaged)]
    pub webhook_certs: WebhookCerts,
    /// The Secret of the self-managed webhook certificate, as `run --webhook-cert-secret`
    #[arg(long, default_value = "gitprovider-operator-webhook-tls")]
    pub webhook_cert_secret: String,
    /// Namespace of the webhook probe (a server-side dry-run create, which stores nothing)
    /// [default: the first namespace the webhook's namespaceSelector names, else default]
    #[arg(long, value_name = "NS")]
    pub probe_namespace: Option<String>,
    /// Namespace the operator watches (repeatable), as `run --namespace`: its permissions are
    /// checked there instead of cluster-wide
    #[arg(long = "watch-namespace", value_name = "NS")]
    pub watch_namespaces: Vec<String>,
    /// Deadline of each request to the API server (e.g. 10s)
    #[arg(long, default_value = "10s", value_parser = crate::duration::parse_flag_duration)]
    pub timeout: Duration,
    /// Output format: text (one line per check) or json
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Text)]
    pub output: Format,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Why the checks cannot start (exit 2).
#[derive(Debug, thiserror::Error)]
pub enum DoctorError {
    #[error(transparent)]
    Kubeconfig(#[from] crate::kubeconfig::KubeconfigError),
    #[error("cannot build the Kubernetes client: {0}")]
    Client(String),
}

/// Every check, in order; a check that needs what an earlier one found missing is skipped.
pub async fn run(args: &DoctorArgs) -> Result<Vec<Line>, DoctorError> {
    let mut config = args.cluster.config().await?;
    config.connect_timeout = Some(args.timeout);
    config.read_timeout = Some(args.timeout);
    config.write_timeout = Some(args.timeout);
    let server = crate::api_server::set(&config.cluster_url).to_owned();
    let client = kube::Client::try_from(config).map_err(|e| DoctorError::Client(e.to_string()))?;

    let mut lines = Vec::new();
    let api_server = cluster::api_server(&client, &server).await;
    let answers = api_server.outcome == Outcome::Ok;
    lines.push(api_server);
    if !answers {
        let why = "the API server does not answer";
        for check in [
            report::CRD,
            report::WEBHOOK_CONFIGURATION,
            report::WEBHOOK_ANSWERS,
            report::LEASE,
            report::RBAC,
        ] {
            lines.push(Line::skipped(check, why));
        }
        return Ok(lines);
    }
    let (crd, crd_installed) = cluster::crd(&client).await;
    lines.push(crd);
    let configuration = webhook::configuration(&client, args).await;
    lines.push(configuration.line.clone());
    lines.push(match (&configuration.found, crd_installed) {
        (None, _) => Line::skipped(report::WEBHOOK_ANSWERS, "no webhook configuration to call"),
        (Some(_), false) => Line::skipped(report::WEBHOOK_ANSWERS, "the CRD is not installed"),
        (Some(found), true) => webhook::answers(&client, args, found).await,
    });
    if args.leader_elect {
        lines.push(lease::check(&client, &args.namespace, &args.leader_election_id).await);
    }
    let certs = match &configuration.found {
        Some(found) if found.cert_manager => WebhookCerts::External,
        _ => args.webhook_certs,
    };
    lines.push(rbac::check(&client, args, certs).await);
    Ok(lines)
}
