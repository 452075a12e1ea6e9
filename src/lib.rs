//! gitprovider-operator: Git provider connections as Kubernetes resources, verified against
//! each provider's real API.

pub mod api;
pub mod cli;
pub mod duration;
pub mod providers;
pub mod token;
