//! `gitprovider-operator verify`: one token checked from a shell, the status the operator would
//! write printed as JSON; its messages name flags, not spec fields.

use super::flags::{self, in_flags};
use super::{AddressArgs, LogFormat, LogLevel, logging, read_ca_file, runtime, usage_error};
use crate::api::{ProviderKind, ReadyReason};
use crate::duration::parse_flag_duration;
use crate::providers::address_guard::GuardError;
use crate::providers::http::{HttpClient, HttpConfig, TlsOptions};
use crate::providers::{Target, parse_base_url, provider};
use crate::repositories::{self, Apis, Concurrency};
use crate::status::{StatusContext, next_status};
use crate::token::Token;
use clap::Args;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("token_source").required(true).args(["token_file", "token_env", "connection"])))]
pub struct VerifyArgs {
    /// GitLab, Bitbucket, AzureDevOps, GitHub or Gitea (any case).
    #[arg(long, value_parser = parse_provider, required_unless_present = "connection", conflicts_with = "connection")]
    pub provider: Option<ProviderKind>,
    /// Base URL of the instance.
    #[arg(long, required_unless_present = "connection", conflicts_with = "connection")]
    pub url: Option<String>,
    /// Verify the GitProviderConnection NAMESPACE/NAME of a cluster as the operator would: its
    /// spec, Secret and CA bundle are read with your kubeconfig (--kubeconfig, --context).
    #[arg(long, value_name = "NS/NAME")]
    pub connection: Option<String>,
    #[command(flatten)]
    pub cluster: crate::kubeconfig::ClusterArgs,
    /// File holding the token.
    #[arg(long)]
    pub token_file: Option<PathBuf>,
    /// Environment variable holding the token.
    #[arg(long)]
    pub token_env: Option<String>,
    /// Login beside the token (Bitbucket Cloud: the Atlassian account email).
    #[arg(long, conflicts_with = "connection")]
    pub username: Option<String>,
    /// PEM CA bundle trusted in addition to the system roots.
    #[arg(long, conflicts_with = "connection")]
    pub ca_file: Option<PathBuf>,
    /// Skip TLS certificate verification (insecure).
    #[arg(long, conflicts_with = "connection")]
    pub insecure_skip_tls_verify: bool,
    /// Deadline of the verification (all its requests, retries and Retry-After waits included);
    /// also the longest rate-limit reset waited out before verifying again (a later one is a
    /// ProviderError at once, its reset time in the message).
    #[arg(long, default_value = "10s", value_parser = parse_positive_duration)]
    pub timeout: Duration,
    /// TokenExpiringSoon turns True this long before the token expires.
    #[arg(long, default_value = "14d", value_parser = parse_flag_duration)]
    pub token_expiry_warning: Duration,
    #[command(flatten)]
    pub addresses: AddressArgs,
    /// A repository the token must be able to read, in the provider's path form (repeatable,
    /// at most 100), e.g. group/project or owner/repo.
    #[arg(long = "repository", value_name = "PATH", conflicts_with = "connection")]
    pub repositories: Vec<String>,
}

fn parse_provider(text: &str) -> Result<ProviderKind, String> {
    ProviderKind::parse_loose(text).ok_or_else(|| {
        let names: Vec<&str> = ProviderKind::ALL.iter().map(|p| p.as_str()).collect();
        format!("unknown provider {text:?}; use one of {}", names.join(", "))
    })
}

/// A duration flag that must be more than zero (a zero deadline could never be met).
fn parse_positive_duration(text: &str) -> Result<Duration, String> {
    let duration = parse_flag_duration(text)?;
    if duration.is_zero() {
        return Err("must be more than 0s".to_owned());
    }
    Ok(duration)
}

/// Verifies; a rate limit whose reset falls within `timeout` is waited out (said on stderr)
/// and the token verified again, a later one is the answer at once, its reset time in the
/// message.
async fn verify_waiting_out_rate_limits(
    provider: &dyn crate::providers::Provider,
    http: &HttpClient,
    target: &Target,
    timeout: std::time::Duration,
) -> crate::providers::Verification {
    let deadline = jiff::Timestamp::now() + timeout;
    loop {
        let mut verification = crate::providers::verify_within(provider, http, target).await;
        let Some(until) = verification.retry_at else {
            return verification;
        };
        if until > deadline {
            verification.message = format!(
                "{}; the reset is later than --timeout {timeout:?} allows to wait",
                verification.message
            );
            return verification;
        }
        let wait = std::time::Duration::try_from(until.duration_since(jiff::Timestamp::now())).unwrap_or_default();
        eprintln!(
            "rate-limited until {until}: waiting {}s, then verifying again",
            wait.as_secs()
        );
        tokio::time::sleep(wait).await;
    }
}

pub fn command(args: VerifyArgs, log_level: Option<LogLevel>) -> ExitCode {
    logging::init(LogFormat::Text, log_level, LogLevel::Warn);
    if let Some(reference) = &args.connection {
        return super::connection::command(super::connection::ConnectionArgs {
            reference,
            cluster: &args.cluster,
            timeout: args.timeout,
            expiry_warning: args.token_expiry_warning,
            addresses: args.addresses.policy(),
        });
    }
    // clap requires both without --connection.
    let (Some(kind), Some(url)) = (args.provider, args.url.as_deref()) else {
        return usage_error("give --provider and --url, or --connection");
    };
    let raw_token = match (&args.token_file, &args.token_env) {
        (Some(path), _) => match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) => return usage_error(format_args!("cannot read --token-file {}: {e}", path.display())),
        },
        (None, Some(var)) => match std::env::var_os(var) {
            Some(value) => value.into_encoded_bytes(),
            None => return usage_error(format_args!("environment variable {var} (--token-env) is not set")),
        },
        (None, None) => return usage_error("give --token-file, --token-env or --connection"),
    };
    let Some(token) = Token::from_bytes(&raw_token) else {
        return usage_error("the token is empty or not UTF-8");
    };
    let base_url = match parse_base_url(url) {
        Ok(url) => url,
        Err(message) => return usage_error(format_args!("--url: {}", in_flags(&message.to_string()))),
    };
    let implementation = provider(kind);
    if let Err(message) = implementation.check_spec(&base_url, args.username.as_deref()) {
        return usage_error(in_flags(&message));
    }
    let problems = repositories::paths::problems(kind, &args.repositories);
    if !problems.is_empty() {
        return usage_error(in_flags(&problems.join("; ")));
    }
    let extra_ca_pem = match args.ca_file.as_deref().map(read_ca_file).transpose() {
        Ok(pem) => pem,
        Err(message) => return usage_error(message),
    };
    if args.insecure_skip_tls_verify {
        eprintln!("warning: TLS certificate verification is disabled (--insecure-skip-tls-verify)");
    }
    let target = Target {
        base_url,
        token,
        username: args.username.clone(),
        last_user: None,
        tls: TlsOptions {
            extra_ca_pem,
            insecure_skip_verify: args.insecure_skip_tls_verify,
        },
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // One rule for the URL: whatever makes it unusable before any request — its form, or an
    // address verification never contacts (literal or resolved) — is a usage error (exit 2).
    // A name that does not resolve here is left to the verification (a proxy may resolve it).
    let policy = args.addresses.policy();
    if let Err(refusal) = policy.judge_literal(&target.base_url) {
        return usage_error(format_args!("--url {}: {refusal}", url.trim()));
    }
    if let Some(url::Host::Domain(host)) = target.base_url.host()
        && let Err(GuardError::Refused(refused)) = rt.block_on(policy.resolve(host))
    {
        return usage_error(format_args!("--url {}: {refused}", url.trim()));
    }
    let http = HttpClient::new(HttpConfig {
        timeout: args.timeout,
        addresses: args.addresses.policy(),
        ..HttpConfig::default()
    });
    let verification = rt.block_on(verify_waiting_out_rate_limits(
        implementation,
        &http,
        &target,
        args.timeout,
    ));
    let (verification, repositories) = if verification.reason == ReadyReason::Verified && !args.repositories.is_empty()
    {
        let found = rt.block_on(repositories::check_all(
            kind,
            Apis::deployed(),
            &http,
            &target,
            &args.repositories,
            Concurrency::new(repositories::DEFAULT_CONCURRENCY),
        ));
        (found.readiness(verification), Some(found.repositories))
    } else {
        (verification, None)
    };
    let status = next_status(
        StatusContext {
            previous: None,
            generation: None,
            now: jiff::Timestamp::now(),
            expiry_warning: args.token_expiry_warning,
            contacted_provider: true,
            repositories: repositories.as_deref(),
        },
        &verification,
    );
    let mut status = match serde_json::to_value(&status) {
        Ok(value) => value,
        Err(e) => {
            eprintln!("error: cannot encode the status: {e}");
            return ExitCode::FAILURE;
        }
    };
    flags::status_in_flags(&mut status);
    match serde_json::to_string_pretty(&status) {
        Ok(json) => println!("{json}"),
        Err(e) => {
            eprintln!("error: cannot encode the status: {e}");
            return ExitCode::FAILURE;
        }
    }
    if verification.reason == ReadyReason::Verified {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
