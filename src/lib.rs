//! gitprovider-operator: Git provider connections as Kubernetes resources, verified against
//! each provider's real API.

pub mod admission;
pub mod api;
pub mod api_server;
pub mod certs;
pub mod check;
pub mod cli;
pub mod controller;
pub mod doctor;
pub mod duration;
pub mod feed;
pub mod health;
pub mod index;
pub mod kubeconfig;
pub mod leader;
pub mod metrics;
pub mod operator;
pub mod pki;
pub mod politeness;
pub mod priority;
pub mod providers;
pub mod repositories;
pub mod status;
pub mod throttle;
pub mod token;
pub mod triggers;
