//! cargo-fuzz target: see `../checks/upstream_h1.rs`.
#![no_main]

#[path = "../checks/upstream_h1.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
