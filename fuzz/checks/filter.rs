//! Feeds arbitrary text to the filter and PATCH-path parsers; whatever parses must print as
//! canonical text that parses back to the same tree, and must evaluate without panicking.
//!
//! Shared by the cargo-fuzz target and `tests/fuzz_corpus.rs` (the corpus replayed on stable).
use chamilo_scim_proxy::directory::query::{matches, AttrInfo, AttrPath, AttrTypes};
use chamilo_scim_proxy::scim::filter::{parse_filter, parse_patch_path, FilterLimits};

struct NoTypes;

impl AttrTypes for NoTypes {
    fn lookup(&self, _: Option<&AttrPath>, _: &AttrPath) -> Option<AttrInfo> {
        None
    }
}

/// One input: panics (or fails an assertion) on a bug.
pub fn check(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let limits = FilterLimits::default();
    // Canonical text may be longer than the input (`1e3` prints as `1000.0`).
    let relaxed = FilterLimits {
        max_length: usize::MAX,
        ..limits
    };
    if let Ok(f) = parse_filter(text, &limits) {
        let canonical = f.to_string();
        assert_eq!(parse_filter(&canonical, &relaxed).as_ref(), Ok(&f));
        let user = serde_json::json!({
            "userName": "bjensen",
            "name": {"givenName": "Barbara"},
            "emails": [{"value": "b@example.com", "type": "work", "primary": true}],
            "meta": {"lastModified": "2011-05-13T04:42:34Z"},
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "7"}
        });
        let _ = matches(&f, &user, &NoTypes);
    }
    if let Ok(p) = parse_patch_path(text) {
        let canonical = p.to_string();
        // `parse_patch_path` applies the default length limit.
        if canonical.chars().count() <= limits.max_length {
            assert_eq!(parse_patch_path(&canonical).as_ref(), Ok(&p));
        }
    }
}
