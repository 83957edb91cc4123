//! Feeds arbitrary bytes, as JSON, to the SCIM User normalisation and validation (what every
//! POST and PUT body goes through): nothing may panic; what normalises is canonical (normalising
//! it again changes nothing) and carries a `userName` string when it validates.
//!
//! Shared by the cargo-fuzz target and `tests/fuzz_corpus.rs` (the corpus replayed on stable).

use chamilo_scim_proxy::directory::schema::ResourceSchema;
use chamilo_scim_proxy::directory::Capabilities;
use chamilo_scim_proxy::scim::normalize::{normalize_user, validate};
use serde_json::Value;

/// One input: panics (or fails an assertion) on a bug.
pub fn check(data: &[u8]) {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let caps = Capabilities::default();
    let schema = ResourceSchema::new(&caps);
    let Ok(user) = normalize_user(&schema, &body) else {
        return;
    };
    let again = normalize_user(&schema, &Value::Object(user.clone()))
        .unwrap_or_else(|e| panic!("canonical output refused: {e:?}\n{user:?}"));
    assert_eq!(again, user, "normalising twice changed it");
    if validate(&schema, &caps, &user).is_ok() {
        assert!(user.get("userName").and_then(Value::as_str).is_some());
    }
}
