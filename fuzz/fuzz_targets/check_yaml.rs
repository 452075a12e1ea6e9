#![no_main]
//! See `harness::check_yaml`.

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::check_yaml(data);
});
