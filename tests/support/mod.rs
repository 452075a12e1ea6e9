//! Shared test support. Each integration test binary includes this with `mod support;`;
//! not every binary uses every helper, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod control_plane;
pub mod controller;
pub mod emulator;
pub mod fake_providers;
pub mod pki;
pub mod record;
pub mod relay;
pub mod verifying;
