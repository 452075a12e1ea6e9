#![no_main]
//! See `harness::client_cert_names`.

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    harness::client_cert_names(data);
});
