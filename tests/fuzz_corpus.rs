//! The fuzz targets' checks (`fuzz/checks/`) over their corpora (`fuzz/corpus/<target>/`), on
//! stable, in every test run: an input that once found a bug, or that libFuzzer kept for the
//! coverage it reached, keeps being checked without nightly.

#[path = "../fuzz/checks/express_head.rs"]
mod express_head;
#[path = "../fuzz/checks/filter.rs"]
mod filter;
#[path = "../fuzz/checks/scim_json.rs"]
mod scim_json;
#[path = "../fuzz/checks/scim_patch.rs"]
mod scim_patch;
#[path = "../fuzz/checks/upstream_h1.rs"]
mod upstream_h1;

use std::path::Path;

/// Runs `check` on every file of `fuzz/corpus/<target>`; returns how many.
fn replay(target: &str, check: fn(&[u8])) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut count = 0;
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(outcome.is_ok(), "{target}: {} fails", path.display());
        count += 1;
    }
    println!("{target}: {count} inputs");
    count
}

#[test]
fn every_corpus_input_passes_its_check() {
    for (target, check) in [
        ("express_head", express_head::check as fn(&[u8])),
        ("filter", filter::check),
        ("scim_json", scim_json::check),
        ("scim_patch", scim_patch::check),
        ("upstream_h1", upstream_h1::check),
    ] {
        assert!(replay(target, check) > 0, "{target}: empty corpus");
    }
}
