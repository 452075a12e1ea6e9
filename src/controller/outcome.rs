//! The typed outcomes of a reconcile's steps: an [`Evaluation`] when the instance was asked (or
//! held back by a rate limit), else the [`Stop`] that ended the steps early.

use super::Error;
use crate::api::{ReadyReason, RepositoryStatus};
use crate::politeness::Busy;
use crate::providers::Verification;

/// The outcome of looking at a connection: the verification, whether the instance was asked,
/// and what the look-ups of spec.repositories found (when the token verified and some are listed).
pub struct Evaluation {
    pub verification: Verification,
    pub contacted_provider: bool,
    pub repositories: Option<Vec<RepositoryStatus>>,
}

impl Evaluation {
    pub fn refused(refusal: Refusal) -> Evaluation {
        Evaluation {
            verification: Verification::failed(refusal.reason, refusal.message),
            contacted_provider: false,
            repositories: None,
        }
    }
}

/// A Ready reason decided without asking the instance (the spec, the Secret, the CA bundle).
#[derive(Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reason: ReadyReason,
    pub message: String,
}

impl Refusal {
    pub fn new(reason: ReadyReason, message: impl Into<String>) -> Refusal {
        Refusal {
            reason,
            message: message.into(),
        }
    }
}

/// Why an evaluation stopped before the instance was asked.
#[derive(Debug)]
pub enum Stop {
    /// A Ready reason decided locally: it becomes the status.
    Refused(Refusal),
    /// The instance already has its share of verifications in flight (the connection is queued
    /// for a slot of it).
    HostBusy(Busy),
    /// An API error of our own (reading a Secret or ConfigMap): retried.
    Failed(Error),
}

impl From<Refusal> for Stop {
    fn from(refusal: Refusal) -> Stop {
        Stop::Refused(refusal)
    }
}

impl From<Error> for Stop {
    fn from(error: Error) -> Stop {
        Stop::Failed(error)
    }
}

impl From<Busy> for Stop {
    fn from(busy: Busy) -> Stop {
        Stop::HostBusy(busy)
    }
}
