//! Shared test support. Each integration test binary includes this with `mod support;`;
//! not every binary uses every helper, hence the `dead_code` allowance. The API emulator
//! (`emulator/`) is not part of it: the two binaries that use it (`tests/emulator.rs` and
//! `benches/scale.rs`) include it themselves, so no other test binary compiles it.
#![allow(dead_code)]

pub mod control_plane;
pub mod controller;
pub mod fake_providers;
pub mod pki;
pub mod record;
pub mod relay;
pub mod verifying;
