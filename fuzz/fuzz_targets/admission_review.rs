#![no_main]
//! See `harness::admission_review`.

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::admission_review(data);
});
