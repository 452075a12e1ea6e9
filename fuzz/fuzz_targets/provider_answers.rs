#![no_main]
//! See `harness::provider_answers`.

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::provider_answers(data);
});
