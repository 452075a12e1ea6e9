//! Asking the API server whether a reserved object exists.
//!
//! A reservation is made on the word of whoever posted the review. Anyone who can reach the
//! webhook port can post one, so a reservation alone never denies a create for longer than
//! [`CONFIRM_AFTER`]: a review that would be denied only by a reservation the index does not
//! show waits until that reservation is [`CONFIRM_AFTER`] old (time enough for the API server to
//! store an object it admitted and for the watch to deliver it), then reads the reserved object
//! from the API server. Absent, or holding another name, the reservation is released and the
//! review decided again; present, the denial stands.

use super::rules::Claim;
use crate::api::GitProviderConnection;
use crate::index::{InstanceKey, ObjectKey, UniquenessScope};
use futures::future::BoxFuture;
use kube::Api;
use std::time::Duration;

/// How old a reservation must be before the API server is asked about it.
pub const CONFIRM_AFTER: Duration = Duration::from_secs(2);

/// Reads what a connection claims, from the source of truth.
pub trait Confirm: Send + Sync {
    /// The instance `key` claims now, `None` when it does not exist.
    fn current_claim(&self, key: &ObjectKey) -> BoxFuture<'_, Result<Option<InstanceKey>, kube::Error>>;
}

/// [`Confirm`] through the API server (a GET of the object: a quorum read).
pub struct ApiConfirm {
    client: kube::Client,
    scope: UniquenessScope,
}

impl ApiConfirm {
    pub fn new(client: kube::Client, scope: UniquenessScope) -> ApiConfirm {
        ApiConfirm { client, scope }
    }
}

impl Confirm for ApiConfirm {
    fn current_claim(&self, key: &ObjectKey) -> BoxFuture<'_, Result<Option<InstanceKey>, kube::Error>> {
        let key = key.clone();
        Box::pin(async move {
            let api: Api<GitProviderConnection> = Api::namespaced(self.client.clone(), &key.namespace);
            let Some(object) = api.get_opt(&key.name).await? else {
                return Ok(None);
            };
            Ok(Some(Claim::of(&object.spec).instance_key(self.scope, &key.namespace)))
        })
    }
}
