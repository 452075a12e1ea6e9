//! Admission: the rules every GitProviderConnection must follow, enforced at the door by the
//! validating webhook and offline by `gitprovider-operator check` (one implementation, in
//! [`rules`]); what slips through is healed behind the door by the controller.

pub mod client_auth;
pub mod confirm;
mod decision;
mod pem_files;
mod reservations;
mod review;
pub mod rules;
pub mod server;
pub mod tls;
pub mod webhook;

pub use client_auth::ClientAuth;
pub use confirm::{ApiConfirm, CONFIRM_AFTER, Confirm};
pub use decision::{Decision, Rejection};
pub use pem_files::PemFileError;
pub use reservations::DEFAULT_RESERVATION_TTL;
pub use rules::{Claim, Duplicate, Holders, Review, check_unique, parse_spec, validate_spec};
pub use server::{BODY_BUDGET, BODY_READ_TIMEOUT, IDLE_TIMEOUT, MAX_BODY, MAX_CONNECTIONS, VALIDATE_PATH, serve};
pub use tls::CertStore;
pub use webhook::Webhook;
