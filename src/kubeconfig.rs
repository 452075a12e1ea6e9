//! Which cluster a subcommand talks to: `--kubeconfig FILE` and `--context NAME`, as kubectl
//! reads them, else KUBECONFIG / ~/.kube/config, else the in-cluster ServiceAccount.

use clap::Args;
use kube::config::{KubeConfigOptions, Kubeconfig};
use std::path::PathBuf;

#[derive(Args, Debug, Clone, Default)]
pub struct ClusterArgs {
    /// Kubeconfig file to use instead of KUBECONFIG, ~/.kube/config or the in-cluster
    /// ServiceAccount.
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// Kubeconfig context to use instead of the file's current-context.
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum KubeconfigError {
    #[error("cannot read --kubeconfig {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("cannot read the kubeconfig (KUBECONFIG or ~/.kube/config): {0}")]
    ReadDefault(String),
    #[error("--context {name:?} is not in {file}; its contexts: {known}")]
    UnknownContext { name: String, file: String, known: String },
    #[error("cannot use the kubeconfig: {0}")]
    Load(String),
    #[error("no kubeconfig (KUBECONFIG, ~/.kube/config or --kubeconfig) and not in a cluster: {0}")]
    Infer(String),
}

impl ClusterArgs {
    /// The client configuration. Problems are described by the error's message alone (kube's
    /// errors repeat their cause as a source, so only their text is kept).
    pub async fn config(&self) -> Result<kube::Config, KubeconfigError> {
        let (kubeconfig, file) = match (&self.kubeconfig, &self.context) {
            (Some(path), _) => {
                let read = Kubeconfig::read_from(path).map_err(|e| KubeconfigError::Read {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
                (read, path.display().to_string())
            }
            (None, Some(_)) => {
                let read = Kubeconfig::read().map_err(|e| KubeconfigError::ReadDefault(e.to_string()))?;
                (read, "the kubeconfig (KUBECONFIG or ~/.kube/config)".to_owned())
            }
            (None, None) => {
                return kube::Config::infer()
                    .await
                    .map_err(|e| KubeconfigError::Infer(e.to_string()));
            }
        };
        if let Some(name) = &self.context
            && !kubeconfig.contexts.iter().any(|c| &c.name == name)
        {
            let known: Vec<&str> = kubeconfig.contexts.iter().map(|c| c.name.as_str()).collect();
            return Err(KubeconfigError::UnknownContext {
                name: name.clone(),
                file,
                known: if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                },
            });
        }
        let options = KubeConfigOptions {
            context: self.context.clone(),
            ..KubeConfigOptions::default()
        };
        kube::Config::from_custom_kubeconfig(kubeconfig, &options)
            .await
            .map_err(|e| KubeconfigError::Load(e.to_string()))
    }
}
