//! cargo-fuzz target: see `../checks/scim_json.rs`.
#![no_main]

#[path = "../checks/scim_json.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
