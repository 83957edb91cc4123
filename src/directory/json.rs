//! Lookups in canonical JSON, where attribute names compare ASCII case-insensitively
//! (RFC 7643 §2.1).

use serde_json::{Map, Value};

/// The member `name` of a JSON object: the exact spelling first, else any spelling.
pub fn get_ci<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn exact_spelling_wins_then_any_case() {
        let v = json!({"Value": 1, "value": 2, "Type": 3});
        let obj = v.as_object().unwrap();
        assert_eq!(get_ci(obj, "value"), Some(&json!(2)));
        assert_eq!(get_ci(obj, "TYPE"), Some(&json!(3)));
        assert_eq!(get_ci(obj, "display"), None);
    }
}
