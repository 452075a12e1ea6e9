//! `gitprovider-operator run`: wires the shared watch, the controller (leader only), the health
//! and metrics server, and leader election, and shuts them down cleanly on SIGTERM.

use crate::admission::{ApiConfirm, CertStore, ClientAuth, DEFAULT_RESERVATION_TTL, Webhook};
use crate::certs::{CertManager, CertSettings};
use crate::controller::{self, Context, Settings};
use crate::feed::Feed;
use crate::health::{self, ReadinessCheck};
use crate::index::{ConnectionIndex, UniquenessScope};
use crate::leader::{LeaderElector, LeaseSettings};
use crate::metrics::Metrics;
use crate::providers::http::{HttpClient, HttpConfig};
use crate::triggers;
use kube::Client;
use kube::runtime::events::Reporter;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Everything `run` needs, from the command line.
#[derive(Debug, Clone)]
pub struct OperatorConfig {
    /// Namespaces to watch; empty means all.
    pub namespaces: Vec<String>,
    pub uniqueness_scope: UniquenessScope,
    pub metrics_addr: SocketAddr,
    pub settings: Settings,
    pub http: HttpConfig,
    pub leader_election: Option<LeaseSettings>,
    pub identity: String,
    pub webhook_addr: SocketAddr,
    pub webhook_certs: WebhookCerts,
    /// Who may connect to the webhook, when not anyone.
    pub webhook_clients: Option<WebhookClients>,
}

/// `--webhook-client-ca` and `--webhook-client-name`: the webhook accepts only TLS clients with
/// a certificate issued by this CA (reloaded when the file changes), carrying `name` if given.
#[derive(Debug, Clone)]
pub struct WebhookClients {
    pub ca_file: PathBuf,
    pub name: Option<String>,
}

/// Where the webhook's serving certificate comes from.
#[derive(Debug, Clone)]
pub enum WebhookCerts {
    /// No certificate configured: the webhook is not served (the controller still heals
    /// duplicates).
    Disabled,
    /// PEM files, reloaded when they change (cert-manager or any other issuer).
    Files { cert: PathBuf, key: PathBuf },
    /// Issued and renewed by the operator itself, shared by all replicas through a Secret.
    SelfManaged(CertSettings),
}

/// What reconciles connections in a process: the one watch of connections, feeding the index
/// that the webhook reads too, and the controller's context. [`run`] builds it from the command
/// line; the tests build it with their own client and settings, so both start the same thing.
pub struct Reconciler {
    pub index: Arc<ConnectionIndex>,
    pub feed: Arc<Feed>,
    pub ctx: Arc<Context>,
    /// The namespaces watched, `None` for all.
    partitions: Vec<Option<String>>,
}

impl Reconciler {
    /// Watches `namespaces` (empty: all), verifies through a client with `http`, writes as
    /// `identity` in Events.
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        scope: UniquenessScope,
        namespaces: &[String],
        http: HttpConfig,
        settings: Settings,
        identity: &str,
    ) -> Reconciler {
        let index = Arc::new(ConnectionIndex::new(scope));
        let feed = Feed::new(index.clone(), metrics.clone());
        let partitions = if namespaces.is_empty() {
            vec![None]
        } else {
            namespaces.iter().cloned().map(Some).collect()
        };
        let reporter = Reporter {
            controller: controller::FIELD_MANAGER.to_owned(),
            instance: Some(identity.to_owned()),
        };
        let ctx = Context::new(
            client,
            HttpClient::new(http),
            index.clone(),
            metrics,
            settings,
            reporter,
        );
        Reconciler {
            index,
            feed,
            ctx: Arc::new(ctx),
            partitions,
        }
    }

    /// The watch of connections (every replica runs it, leader or not); runs until dropped.
    pub fn watch(&self) -> impl Future<Output = ()> + Send + 'static {
        self.feed.clone().run(self.ctx.client.clone(), self.partitions.clone())
    }

    /// One term of the controller, until `stop` resolves; in-flight reconciles finish first.
    pub fn term(&self, stop: impl Future<Output = ()> + Send + 'static) -> impl Future<Output = ()> + Send + 'static {
        let feed = self.feed.clone();
        triggers::run(
            self.ctx.clone(),
            feed.clone(),
            feed.store(),
            self.partitions.clone(),
            stop,
        )
    }
}

/// How often certificate files are checked for rotation.
const CERT_FILE_POLL: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot build the Kubernetes client: {0}")]
    Client(kube::Error),
    #[error("cannot load the webhook certificate: {0}")]
    Certificate(crate::admission::PemFileError),
    #[error("cannot load --webhook-client-ca: {0}")]
    ClientCa(crate::admission::PemFileError),
    #[error("cannot listen on {addr}: {cause}")]
    Listen { addr: SocketAddr, cause: std::io::Error },
}

/// How long each stage of the shutdown (the controller, then the Lease and the servers) may take.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// A listener on `addr`, or the error naming it.
async fn listen(addr: SocketAddr) -> Result<tokio::net::TcpListener, RunError> {
    tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|cause| RunError::Listen { addr, cause })
}

/// Resolves `grace` after the shutdown flag is set.
async fn after_shutdown(mut rx: watch::Receiver<bool>, grace: Duration) {
    let _ = rx.wait_for(|stop| *stop).await;
    tokio::time::sleep(grace).await;
}

/// Resolves once the shutdown flag is set.
async fn on_shutdown(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Waits for SIGTERM or Ctrl-C.
async fn termination_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Runs until SIGTERM, talking to the API server `cluster` (from --kubeconfig/--context or the
/// environment) names.
pub async fn run(config: OperatorConfig, cluster: kube::Config) -> Result<(), RunError> {
    let api_server = crate::api_server::set(&cluster.cluster_url);
    tracing::info!(api_server, "connecting to the Kubernetes API");
    let client = Client::try_from(cluster).map_err(RunError::Client)?;
    let metrics = Arc::new(Metrics::new());
    let reconciler = Reconciler::new(
        client.clone(),
        metrics.clone(),
        config.uniqueness_scope,
        &config.namespaces,
        config.http.clone(),
        config.settings.clone(),
        &config.identity,
    );
    let index = reconciler.index.clone();

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    tokio::spawn(async move {
        termination_signal().await;
        tracing::info!("termination signal received; shutting down");
        let _ = shutdown_tx.send(true);
    });

    let feed_task = tokio::spawn(reconciler.watch());

    let listener = listen(config.metrics_addr).await?;
    // The webhook answers on every replica, leader or not, from the shared index, and asks the
    // API server before a reservation alone denies a name.
    let client_auth = match &config.webhook_clients {
        Some(clients) => {
            let auth = ClientAuth::from_file(&clients.ca_file, clients.name.clone()).map_err(RunError::ClientCa)?;
            tokio::spawn(auth.clone().watch_file(clients.ca_file.clone(), CERT_FILE_POLL));
            Some(auth)
        }
        None => None,
    };
    let webhook_with = |certs: Arc<CertStore>| {
        if let Some(auth) = &client_auth {
            certs.require_client_certificates(auth.clone());
        }
        let confirm = Arc::new(ApiConfirm::new(client.clone(), config.uniqueness_scope));
        Webhook::confirmed_by(index.clone(), metrics.clone(), certs, DEFAULT_RESERVATION_TTL, confirm)
    };
    let webhook = match &config.webhook_certs {
        WebhookCerts::Disabled => {
            tracing::warn!(
                "no webhook certificate configured (--tls-cert-file or --webhook-cert-secret): admission webhook disabled"
            );
            None
        }
        WebhookCerts::Files { cert, key } => {
            let certs = CertStore::new();
            certs.load_files(cert, key).map_err(RunError::Certificate)?;
            tokio::spawn(certs.clone().watch_files(cert.clone(), key.clone(), CERT_FILE_POLL));
            Some(webhook_with(certs))
        }
        WebhookCerts::SelfManaged(settings) => {
            let certs = CertStore::new();
            let sink = certs.clone();
            let manager = CertManager::new(client.clone(), settings.clone());
            tokio::spawn(manager.run(
                move |cert| {
                    if let Err(error) = sink.set(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes()) {
                        tracing::error!(%error, "cannot install the issued webhook certificate");
                    }
                },
                shutdown_rx.clone(),
            ));
            Some(webhook_with(certs))
        }
    };
    let webhook_task = match &webhook {
        Some(webhook) => {
            let listener = listen(config.webhook_addr).await?;
            tracing::info!(addr = %config.webhook_addr, "serving the admission webhook (POST /validate)");
            Some(tokio::spawn(crate::admission::serve(
                listener,
                webhook.clone(),
                on_shutdown(shutdown_rx.clone()),
            )))
        }
        None => None,
    };

    let readiness_index = index.clone();
    let readiness_webhook = webhook.clone();
    let ready: ReadinessCheck = Arc::new(move || {
        if !readiness_index.is_synced() {
            return Err("GitProviderConnections not listed yet".to_owned());
        }
        if readiness_webhook.as_ref().is_some_and(|w| !w.is_ready()) {
            return Err("the webhook certificate is not loaded yet".to_owned());
        }
        Ok(())
    });
    let health_task = tokio::spawn(health::serve(
        listener,
        metrics.clone(),
        ready,
        on_shutdown(shutdown_rx.clone()),
    ));
    tracing::info!(addr = %config.metrics_addr, "serving /metrics, /healthz and /readyz");

    let (leading_tx, leading_rx) = watch::channel(config.leader_election.is_none());
    // Without an election this replica always leads. The sender must then live as long as the
    // loop below: once it is dropped, `wait_for(|l| !*l)` fails at once and ends every term
    // of the controller as soon as it starts.
    let mut _always_leading = None;
    let election_task = match config.leader_election.clone() {
        Some(settings) => {
            tracing::info!(lease = %settings.name, namespace = %settings.namespace, identity = %settings.identity, "campaigning for leadership");
            Some(tokio::spawn(
                LeaderElector::new(client.clone(), settings).run(leading_tx, shutdown_rx.clone()),
            ))
        }
        None => {
            _always_leading = Some(leading_tx);
            None
        }
    };

    // Run the controller for each term of leadership until shutdown.
    let mut leading = leading_rx.clone();
    let mut shutdown = shutdown_rx.clone();
    loop {
        let leads = tokio::select! {
            result = leading.wait_for(|l| *l) => result.is_ok(),
            _ = shutdown.wait_for(|s| *s) => false,
        };
        if !leads {
            // Shutting down, or the election ended without this replica leading: it cannot
            // lead any more, so wait for the end rather than spin.
            let _ = shutdown.wait_for(|s| *s).await;
            break;
        }
        if *shutdown.borrow() {
            break;
        }
        tracing::info!("starting the controller");
        let mut term_leading = leading_rx.clone();
        let mut term_shutdown = shutdown_rx.clone();
        let stop = async move {
            tokio::select! {
                _ = term_leading.wait_for(|l| !*l) => {}
                _ = term_shutdown.wait_for(|s| *s) => {}
            }
        };
        let term = reconciler.term(stop);
        tokio::select! {
            () = term => {}
            () = after_shutdown(shutdown_rx.clone(), STOP_GRACE) => {
                // e.g. still waiting for a first list from an API server that does not answer
                tracing::warn!("the controller did not stop within {STOP_GRACE:?} of the shutdown signal; leaving it");
                break;
            }
        }
    }

    // The Lease given back (so a successor starts at once), the servers closed: together, and
    // bounded, whatever the API server does.
    let election = async {
        if let Some(task) = election_task {
            let _ = task.await;
        }
    };
    let webhook = async {
        if let Some(task) = webhook_task {
            let _ = task.await;
        }
    };
    let wind_down = futures::future::join3(election, health_task, webhook);
    if tokio::time::timeout(STOP_GRACE, wind_down).await.is_err() {
        tracing::warn!("some tasks did not finish within {STOP_GRACE:?} of the shutdown signal; leaving them");
    }
    feed_task.abort();
    tracing::info!("stopped");
    Ok(())
}
