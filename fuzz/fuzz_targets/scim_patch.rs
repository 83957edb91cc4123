//! cargo-fuzz target: see `../checks/scim_patch.rs`.
#![no_main]

#[path = "../checks/scim_patch.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
