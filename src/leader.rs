//! Leader election on a coordination.k8s.io Lease, so only one replica reconciles while all of
//! them serve the webhook.
//!
//! The protocol is client-go's: the holder renews `renewTime` every `renew_period`; anyone may
//! take the Lease once `renewTime + leaseDurationSeconds` has passed. Every write is an update
//! with the Lease's resourceVersion, so two candidates racing for an expired Lease cannot both
//! win (one gets 409 Conflict). A leader that cannot renew within the lease duration stops
//! leading before anyone else may start, and a leader that shuts down releases the Lease so a
//! successor takes over at once.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use std::time::Duration;
use tokio::sync::watch;

/// Settings of the election.
#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// This replica's identity (the pod name).
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_period: Duration,
    pub retry_period: Duration,
}

impl LeaseSettings {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>, identity: impl Into<String>) -> LeaseSettings {
        LeaseSettings {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_period: Duration::from_secs(5),
            retry_period: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("Lease {namespace}/{name}: {cause}")]
    Api {
        namespace: String,
        name: String,
        cause: kube::Error,
    },
}

/// Outcome of one attempt.
#[derive(Debug, PartialEq, Eq)]
enum Attempt {
    Leading,
    Following { holder: String },
}

pub struct LeaderElector {
    api: Api<Lease>,
    settings: LeaseSettings,
}

impl LeaderElector {
    pub fn new(client: Client, settings: LeaseSettings) -> LeaderElector {
        LeaderElector {
            api: Api::namespaced(client, &settings.namespace),
            settings,
        }
    }

    fn error(&self, source: kube::Error) -> LeaseError {
        LeaseError::Api {
            namespace: self.settings.namespace.clone(),
            name: self.settings.name.clone(),
            cause: source,
        }
    }

    fn spec(&self, now: jiff::Timestamp, acquire: Option<MicroTime>, transitions: Option<i32>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.settings.identity.clone()),
            lease_duration_seconds: Some(self.settings.lease_duration.as_secs() as i32),
            acquire_time: Some(acquire.unwrap_or(MicroTime(now))),
            renew_time: Some(MicroTime(now)),
            lease_transitions: transitions,
            ..LeaseSpec::default()
        }
    }

    /// One round: create, renew or take over the Lease, or see who holds it.
    async fn try_acquire_or_renew(&self) -> Result<Attempt, LeaseError> {
        let now = jiff::Timestamp::now();
        let existing = self.api.get_opt(&self.settings.name).await.map_err(|e| self.error(e))?;
        let Some(mut lease) = existing else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.settings.name.clone()),
                    namespace: Some(self.settings.namespace.clone()),
                    ..ObjectMeta::default()
                },
                spec: Some(self.spec(now, None, Some(0))),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Leading),
                Err(kube::Error::Api(status)) if status.code == 409 => Ok(Attempt::Following {
                    holder: "another replica".into(),
                }),
                Err(e) => Err(self.error(e)),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let mine = holder == self.settings.identity;
        let duration = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(1) as u64);
        let expired = match &spec.renew_time {
            Some(renewed) => {
                let deadline =
                    renewed.0 + jiff::SignedDuration::try_from(duration).unwrap_or(jiff::SignedDuration::MAX);
                deadline <= now
            }
            None => true,
        };
        if !mine && !holder.is_empty() && !expired {
            return Ok(Attempt::Following { holder });
        }
        let transitions = spec.lease_transitions.unwrap_or(0);
        lease.spec = Some(if mine {
            self.spec(now, spec.acquire_time.clone(), Some(transitions))
        } else {
            self.spec(now, None, Some(transitions + 1))
        });
        // `replace` carries the resourceVersion we read: a concurrent writer makes this a 409.
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(Attempt::Leading),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Attempt::Following { holder }),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Gives the Lease up so a successor need not wait for it to expire.
    async fn release(&self) {
        let Ok(Some(mut lease)) = self.api.get_opt(&self.settings.name).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else { return };
        if spec.holder_identity.as_deref() != Some(&self.settings.identity) {
            return;
        }
        spec.holder_identity = None;
        spec.renew_time = None;
        spec.acquire_time = None;
        match self
            .api
            .replace(&self.settings.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!(lease = %self.settings.name, "released leadership"),
            Err(error) => tracing::warn!(error = crate::api_server::describe(&error), "cannot release the lease"),
        }
    }

    /// Campaigns until `shutdown` flips to true, publishing whether this replica leads.
    /// Releases the Lease on the way out if it held it.
    pub async fn run(self, leading: watch::Sender<bool>, mut shutdown: watch::Receiver<bool>) {
        let mut last_renewal = tokio::time::Instant::now();
        loop {
            let is_leader = *leading.borrow();
            match self.try_acquire_or_renew().await {
                Ok(Attempt::Leading) => {
                    last_renewal = tokio::time::Instant::now();
                    if !is_leader {
                        tracing::info!(identity = %self.settings.identity, "became the leader");
                        let _ = leading.send(true);
                    }
                }
                Ok(Attempt::Following { holder }) => {
                    if is_leader {
                        tracing::warn!(%holder, "lost leadership");
                        let _ = leading.send(false);
                    } else {
                        tracing::debug!(%holder, "following");
                    }
                }
                Err(error) => {
                    tracing::warn!(
                        error = crate::api_server::describe(&error),
                        "leader election round failed"
                    );
                    // Stop leading before the Lease can expire for others.
                    if is_leader && last_renewal.elapsed() + self.settings.retry_period >= self.settings.lease_duration
                    {
                        tracing::warn!("cannot renew the lease in time; stepping down");
                        let _ = leading.send(false);
                    }
                }
            }
            let wait = if *leading.borrow() {
                self.settings.renew_period
            } else {
                self.settings.retry_period
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait_for(|stop| *stop) => break,
            }
        }
        if *leading.borrow() {
            let _ = leading.send(false);
            self.release().await;
        }
    }
}
