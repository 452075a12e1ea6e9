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

use std::time::{Duration, Instant};

/// Polls `probe` until it returns `Ok`, or panics with `what` and the last observation.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) => {
                if Instant::now() >= deadline {
                    panic!("{what}: not within {within:?}; last seen: {last}");
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
