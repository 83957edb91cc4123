//! cargo-fuzz target: see `../checks/express_head.rs`.
#![no_main]

#[path = "../checks/express_head.rs"]
mod check;

libfuzzer_sys::fuzz_target!(|data: &[u8]| check::check(data));
