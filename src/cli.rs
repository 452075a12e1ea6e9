//! The command line: `run`, `crd`, `verify`, `check`, `doctor`, `version`, `completion`.

mod connection;
mod doctor;
mod flags;
mod logging;
mod verify;
mod version;

pub use logging::{LogFormat, LogLevel};
pub use verify::VerifyArgs;

use crate::certs::CertSettings;
use crate::controller::Settings;
use crate::duration::parse_flag_duration;
use crate::index::UniquenessScope;
use crate::kubeconfig::ClusterArgs;
use crate::leader::LeaseSettings;
use crate::operator::{OperatorConfig, WebhookCerts, WebhookClients, run};
use crate::providers::address_guard::{AddressPolicy, Cidr};
use crate::providers::http::HttpConfig;
use clap::{Args, CommandFactory, Parser, Subcommand};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "gitprovider-operator",
    version = version::VERSION_LINE,
    about = "Git provider connections as Kubernetes resources, verified against each provider's API"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log level of every module; wins over RUST_LOG (which may name modules, e.g.
    /// RUST_LOG=info,gitprovider_operator=debug). Default: info for run, warn otherwise.
    #[arg(long, global = true, value_enum)]
    pub log_level: Option<LogLevel>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the operator: controller, admission webhook, metrics and health.
    Run(RunArgs),
    /// Print the CustomResourceDefinition YAML.
    Crd,
    /// Verify one token without a cluster and print the resulting status as JSON.
    Verify(VerifyArgs),
    /// Report every GitProviderConnection in YAML files, folders or standard input (-) that the API
    /// server (the CRD's schema, strict field validation) or the admission webhook would refuse.
    Check(crate::check::CheckArgs),
    /// Check an installation with your kubeconfig: the API server, the CRD, the webhook
    /// configuration and whether the webhook answers, the operator's Lease and its RBAC. One line
    /// per check, OK or what to fix; exit 0 when all are OK, 1 when one is not, 2 for usage errors.
    Doctor(crate::doctor::DoctorArgs),
    /// Print the version, git commit and build date.
    Version(version::VersionArgs),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    ///
    /// bash: `source <(gitprovider-operator completion bash)`;
    /// zsh: `gitprovider-operator completion zsh > "${fpath[1]}/_gitprovider-operator"`;
    /// fish: `gitprovider-operator completion fish > ~/.config/fish/completions/gitprovider-operator.fish`.
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Namespace to watch (repeatable); all namespaces when absent.
    #[arg(long = "namespace", value_name = "NS")]
    pub namespaces: Vec<String>,
    /// Where instance names must be unique.
    #[arg(long, value_enum, default_value = "namespace")]
    pub uniqueness_scope: UniquenessScope,
    /// HTTPS port of the admission webhook.
    #[arg(long, default_value_t = 8443)]
    pub webhook_port: u16,
    /// PEM certificate of the webhook (reloaded when the file changes).
    #[arg(long, requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key of the webhook (reloaded when the file changes).
    #[arg(long, requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// Issue the webhook certificate itself and keep it in this Secret (in the leader-election
    /// namespace); the alternative to --tls-cert-file/--tls-key-file.
    #[arg(long, conflicts_with = "tls_cert_file", requires = "webhook_service")]
    pub webhook_cert_secret: Option<String>,
    /// ValidatingWebhookConfiguration whose caBundle receives the self-issued CA.
    #[arg(long, requires = "webhook_cert_secret")]
    pub webhook_configuration: Option<String>,
    /// Service in front of the webhook (names the self-issued certificate is valid for).
    #[arg(long, requires = "webhook_cert_secret")]
    pub webhook_service: Option<String>,
    /// Accept webhook connections only from clients presenting a certificate issued by this CA
    /// (PEM; reloaded when the file changes): the API server's, through its admission
    /// configuration. Anyone else fails the TLS handshake.
    #[arg(long, value_name = "FILE")]
    pub webhook_client_ca: Option<PathBuf>,
    /// With --webhook-client-ca: the client certificate must also carry this name (its subject's
    /// common name or a DNS subject alternative name).
    #[arg(long, value_name = "NAME", requires = "webhook_client_ca")]
    pub webhook_client_name: Option<String>,
    /// Port of /metrics, /healthz and /readyz.
    #[arg(long, default_value_t = 8080)]
    pub metrics_port: u16,
    /// Address the metrics and webhook servers listen on.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub bind_address: IpAddr,
    /// Verifications running at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..))]
    pub max_concurrent_verifications: u16,
    /// Verifications in flight against one instance host (0: no cap beyond the global one).
    #[arg(long, default_value_t = 8)]
    pub max_in_flight_per_host: usize,
    /// TokenExpiringSoon turns True this long before the token expires (e.g. 14d, 336h).
    #[arg(long, default_value = "14d", value_parser = parse_flag_duration)]
    pub token_expiry_warning: Duration,
    /// Deadline of one verification: all its requests, retries and Retry-After waits included.
    #[arg(long, default_value = "10s", value_parser = parse_flag_duration)]
    pub timeout: Duration,
    /// PEM CA certificates trusted for every provider, beside the system roots and each
    /// connection's spec.tls.caBundleRef (read once at start).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// Elect a leader through a Lease so that only one replica reconciles.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    pub leader_elect: bool,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub leader_election_namespace: String,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "gitprovider-operator")]
    pub leader_election_id: String,
    /// Log line format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    #[command(flatten)]
    pub addresses: AddressArgs,
    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Where verification requests may go, beyond the built-in refusals (link-local, site-local and
/// cloud metadata addresses).
#[derive(Args, Debug, Clone, Default)]
pub struct AddressArgs {
    /// Never contact addresses in this range (repeatable), e.g. 10.0.0.0/8 or fd00::/8.
    #[arg(long = "deny-cidr", value_name = "CIDR")]
    pub deny: Vec<Cidr>,
    /// Contact only addresses in these ranges (repeatable); any address when absent.
    #[arg(long = "allow-cidr", value_name = "CIDR")]
    pub allow: Vec<Cidr>,
}

impl AddressArgs {
    pub(crate) fn policy(&self) -> AddressPolicy {
        AddressPolicy {
            deny: self.deny.clone(),
            allow: self.allow.clone(),
        }
    }
}

pub(crate) fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build()
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_level = cli.log_level;
    match cli.command {
        Command::Check(args) => crate::check::run_check(&args),
        Command::Crd => match crate::api::crd_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot render the CRD: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Doctor(args) => {
            logging::init(LogFormat::Text, log_level, LogLevel::Warn);
            doctor::command(args)
        }
        Command::Run(args) => run_command(args, log_level),
        Command::Verify(args) => verify::command(args, log_level),
        Command::Version(args) => version::print(&args),
        Command::Completion { shell } => {
            // Into a buffer first: clap_complete panics on a write error (e.g. a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "gitprovider-operator", &mut script);
            if shell == clap_complete::Shell::Bash {
                // clap_complete 4.6 spells the hyphen of the program name two ways in the bash
                // script ("__" in the state it computes, "__subcmd__" in the case labels), so
                // nothing after the subcommand would complete: one spelling.
                script = String::from_utf8_lossy(&script)
                    .replace("gitprovider__subcmd__operator", "gitprovider__operator")
                    .into_bytes();
            }
            match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: cannot write the completion script: {e}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn run_command(args: RunArgs, log_level: Option<LogLevel>) -> ExitCode {
    logging::init(args.log_format, log_level, LogLevel::Info);
    let extra_ca_pem = match args.ca_file.as_deref().map(read_ca_file).transpose() {
        Ok(pem) => pem,
        Err(message) => return usage_error(message),
    };
    let identity =
        std::env::var("POD_NAME").unwrap_or_else(|_| format!("gitprovider-operator-{:08x}", fastrand::u32(..)));
    let config = OperatorConfig {
        namespaces: args.namespaces,
        uniqueness_scope: args.uniqueness_scope,
        metrics_addr: SocketAddr::new(args.bind_address, args.metrics_port),
        settings: Settings {
            expiry_warning: args.token_expiry_warning,
            max_concurrent_verifications: args.max_concurrent_verifications,
            max_in_flight_per_host: args.max_in_flight_per_host,
            ..Settings::default()
        },
        http: HttpConfig {
            timeout: args.timeout,
            extra_ca_pem,
            addresses: args.addresses.policy(),
            ..HttpConfig::default()
        },
        leader_election: args.leader_elect.then(|| {
            LeaseSettings::new(
                args.leader_election_namespace.clone(),
                args.leader_election_id.clone(),
                identity.clone(),
            )
        }),
        identity,
        webhook_addr: SocketAddr::new(args.bind_address, args.webhook_port),
        webhook_certs: match (args.tls_cert_file, args.tls_key_file, args.webhook_cert_secret) {
            (Some(cert), Some(key), _) => WebhookCerts::Files { cert, key },
            (_, _, Some(secret_name)) => WebhookCerts::SelfManaged(CertSettings {
                namespace: args.leader_election_namespace.clone(),
                secret_name,
                webhook_configuration: args.webhook_configuration,
                service_name: args.webhook_service.unwrap_or_default(),
                // Cheap (two GETs); short so a webhook configuration created later gets its CA soon.
                check_interval: Duration::from_secs(15),
            }),
            _ => WebhookCerts::Disabled,
        },
        webhook_clients: args.webhook_client_ca.map(|ca_file| WebhookClients {
            ca_file,
            name: args.webhook_client_name,
        }),
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let cluster = match rt.block_on(args.cluster.config()) {
        Ok(cluster) => cluster,
        Err(error) => return usage_error(error),
    };
    let result = rt.block_on(run(config, cluster));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "operator failed");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn usage_error(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::from(2)
}

/// Reads `--ca-file`: PEM certificates, at least one, or a message naming the file.
pub(crate) fn read_ca_file(path: &std::path::Path) -> Result<String, String> {
    let pem = std::fs::read_to_string(path).map_err(|e| format!("cannot read --ca-file {}: {e}", path.display()))?;
    crate::providers::tls::parse_ca_bundle(&pem).map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
    Ok(pem)
}
