#![no_main]
//! See `harness::url_guard`.

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::url_guard(data);
});
