//! Feeds arbitrary bytes, as a PATCH request body, to the PATCH parser and applies what parses
//! to a full user: nothing may panic, and a patched user is still canonical (normalising it
//! changes nothing).
//!
//! Shared by the cargo-fuzz target and `tests/fuzz_corpus.rs` (the corpus replayed on stable).

use chamilo_scim_proxy::directory::schema::ResourceSchema;
use chamilo_scim_proxy::directory::Capabilities;
use chamilo_scim_proxy::scim::normalize::normalize_user;
use chamilo_scim_proxy::scim::patch::{apply_patch, parse_patch_request};
use serde_json::{json, Value};

/// One input: panics (or fails an assertion) on a bug.
pub fn check(data: &[u8]) {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(ops) = parse_patch_request(&body) else {
        return;
    };
    let schema = ResourceSchema::new(&Capabilities::default());
    let base = json!({
        "userName": "bjensen",
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "emails": [
            {"value": "b@example.com", "type": "work", "primary": true},
            {"value": "bj@example.org", "type": "home"}
        ],
        "phoneNumbers": [{"value": "+1 555", "type": "work"}],
        "active": true,
        "externalId": "e-1",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "7"}
    });
    let Ok(base) = normalize_user(&schema, &base) else {
        panic!("the base user does not normalise");
    };
    let Ok(patched) = apply_patch(&schema, &base, &ops) else {
        return;
    };
    let again = normalize_user(&schema, &Value::Object(patched.clone()))
        .unwrap_or_else(|e| panic!("a patched user is refused: {e:?}\n{patched:?}"));
    assert_eq!(again, patched, "a patched user is not canonical");
}
