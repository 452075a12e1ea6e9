//! Admission: the rules every GitProviderConnection must follow, enforced at the door by the
//! validating webhook and offline by `gitprovider-operator check` (one implementation, in
//! [`rules`]); what slips through is healed behind the door by the controller.

pub mod rules;
pub mod tls;
pub mod webhook;

pub use rules::{Claim, Duplicate, Holders, Review, check_unique, parse_spec, validate_spec};
pub use tls::{CertError, CertStore};
pub use webhook::{Decision, Rejection, Webhook, serve, serve_addr};
