//! The emulator's certificates come from the shared test PKI.

#[allow(unused_imports)] // part of the emulator's test API even where a binary uses less
pub use super::super::pki::{IssuedCert, TestCa, client_config_trusting};
