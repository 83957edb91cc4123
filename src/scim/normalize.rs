//! Input normalisation: whatever Entra ID, Okta or an RFC-exact client sends becomes the
//! canonical form of [`crate::directory::User`] before anything else looks at it.
//!
//! Tolerated: attribute names in any case, URN-qualified and dotted keys, string booleans
//! (`"False"`), numbers for strings (not for `userName`), `null` and `""` as absence, a lone
//! value for a multi-valued attribute, a one-element array (or a bare id string) for a
//! single-valued complex one (`manager`), read-only attributes (`id`, `meta`, `groups`) which
//! are ignored, and unknown attributes, which are ignored too (IdPs send attributes the
//! backend does not map).
//!
//! Refused (issue 11 §9): a boolean where a string is required, control characters in a
//! single-line string. `userName` is stored in NFC with surrounding whitespace trimmed
//! ([`crate::directory::canonical_user_name`]).

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::error::{ScimError, ScimType};
use super::filter::parse_attr_path;
use crate::directory::query::{AttrKind, AttrPath};
use crate::directory::schema::{AttrDef, Mutability, ResourceKind, ResourceSchema, Section};
use crate::directory::{
    canonical_user_name, Capabilities, User, ENTERPRISE_SCHEMA, GROUP_SCHEMA, USER_SCHEMA,
};

/// Splits an object into `(path, value)` pairs: URN containers are opened, dotted and
/// URN-qualified keys become paths. Keys that are not attribute paths are dropped.
pub fn flatten_keys<'a>(
    obj: &'a Map<String, Value>,
    urn: Option<&str>,
) -> Vec<(AttrPath, &'a Value)> {
    let mut out = Vec::new();
    for (key, value) in obj {
        if key.eq_ignore_ascii_case("schemas") {
            continue;
        }
        let container = [ENTERPRISE_SCHEMA, USER_SCHEMA, GROUP_SCHEMA]
            .into_iter()
            .find(|u| key.eq_ignore_ascii_case(u));
        if let (Some(u), Some(inner)) = (container, value.as_object()) {
            out.extend(flatten_keys(inner, Some(u)));
            continue;
        }
        if container.is_some() && value.is_null() {
            continue;
        }
        let Ok(mut path) = parse_attr_path(key) else {
            continue;
        };
        if path.urn.is_none() {
            path.urn = urn.map(str::to_owned);
        }
        out.push((path, value));
    }
    out
}

/// Coerces `value` to the shape and type `def` requires. `Ok(None)` means "absent".
pub fn coerce(def: &AttrDef, value: &Value, path: &str) -> Result<Option<Value>, ScimError> {
    if def.multi_valued {
        let items: Vec<&Value> = match value {
            Value::Null => return Ok(None),
            Value::Array(a) => a.iter().collect(),
            v => vec![v],
        };
        let max = max_values(def);
        if items.len() > max {
            return Err(ScimError::bad_request(
                ScimType::TooMany,
                format!(
                    "{path} has {} values; at most {max} are accepted",
                    items.len()
                ),
            ));
        }
        let mut out: Vec<Value> = Vec::new();
        // Duplicates dropped in linear time: 20,000 e-mails compared pairwise stalled a
        // worker for seconds (issue 11 §1).
        let mut seen: HashSet<String> = HashSet::with_capacity(items.len());
        for item in items {
            if let Some(v) = coerce_single(def, item, path)? {
                if seen.insert(identity(&v)) {
                    out.push(v);
                }
            }
        }
        keep_one_primary(&mut out, None);
        return Ok((!out.is_empty()).then_some(Value::Array(out)));
    }
    match value {
        Value::Array(a) if a.is_empty() => Ok(None),
        Value::Array(a) if a.len() == 1 => coerce_single(def, &a[0], path),
        Value::Array(_) => Err(ScimError::invalid_value(format!(
            "{path} is single-valued but got several values"
        ))),
        v => coerce_single(def, v, path),
    }
}

/// Most values one multi-valued attribute may have in a request: e-mails, phone numbers,
/// roles… (identity providers send a handful; the bound keeps the largest request cheap).
pub const MAX_VALUES: usize = 1_000;

/// Most members a group may be sent with in one request: Okta's PUT sends a 10,000-member
/// group whole.
pub const MAX_MEMBERS: usize = 20_000;

/// The bound for the values of `def` in one request.
pub fn max_values(def: &AttrDef) -> usize {
    if def.name == "members" {
        MAX_MEMBERS
    } else {
        MAX_VALUES
    }
}

/// A key equal for equal JSON values (object keys in any order), for de-duplication.
pub fn identity(value: &Value) -> String {
    let mut out = String::new();
    write_identity(value, &mut out);
    out
}

/// Appends [`identity`] of `value` to `out`, allocating nothing else: it runs once per value
/// of a 20,000-member group.
pub fn write_identity(value: &Value, out: &mut String) {
    use std::fmt::Write as _;
    // Strings quoted and escaped (`Debug` for keys, JSON for values): both are injective, so
    // equal keys mean equal values.
    let write_entry = |k: &String, v: &Value, out: &mut String| {
        let _ = write!(out, "{k:?}:");
        write_identity(v, out);
        out.push(',');
    };
    match value {
        Value::Object(map) => {
            out.push('{');
            if map.len() <= 1 {
                for (k, v) in map {
                    write_entry(k, v, out);
                }
            } else {
                let mut entries: Vec<(&String, &Value)> = map.iter().collect();
                entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
                for (k, v) in entries {
                    write_entry(k, v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for v in items {
                write_identity(v, out);
                out.push(',');
            }
            out.push(']');
        }
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

fn coerce_single(def: &AttrDef, value: &Value, path: &str) -> Result<Option<Value>, ScimError> {
    let wrong = || ScimError::invalid_value(format!("{path} must be of type {:?}", def.kind));
    Ok(match (def.kind, value) {
        (_, Value::Null) => None,
        (AttrKind::Complex, Value::Object(obj)) => {
            let mut out = Map::new();
            for (k, v) in obj {
                let Some(sub) = def.sub(k) else { continue };
                if sub.mutability == Mutability::ReadOnly {
                    continue;
                }
                if let Some(v) = coerce(sub, v, &format!("{path}.{}", sub.name))? {
                    out.insert(sub.name.to_owned(), v);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        // `"manager": "42"` and `"emails": ["a@example.org"]` name the `value` sub-attribute.
        (AttrKind::Complex, Value::String(_) | Value::Number(_) | Value::Bool(_)) => {
            match def.sub("value") {
                Some(sub) => coerce(sub, value, path)?.map(|v| {
                    let mut m = Map::new();
                    m.insert("value".to_owned(), v);
                    Value::Object(m)
                }),
                None => return Err(wrong()),
            }
        }
        (AttrKind::Complex, _) => return Err(wrong()),
        (AttrKind::Boolean, Value::Bool(b)) => Some(Value::Bool(*b)),
        (AttrKind::Boolean, Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Some(Value::Bool(true)),
            "false" => Some(Value::Bool(false)),
            "" => None,
            _ => return Err(wrong()),
        },
        (AttrKind::Boolean, _) => return Err(wrong()),
        (AttrKind::Integer | AttrKind::Decimal, Value::Number(n)) => {
            if def.kind == AttrKind::Integer && !(n.is_i64() || n.is_u64()) {
                return Err(wrong());
            }
            Some(Value::Number(n.clone()))
        }
        (AttrKind::Integer | AttrKind::Decimal, Value::String(s)) => {
            match serde_json::from_str::<serde_json::Number>(s.trim()) {
                Ok(n) if def.kind == AttrKind::Decimal || n.is_i64() || n.is_u64() => {
                    Some(Value::Number(n))
                }
                _ => return Err(wrong()),
            }
        }
        (AttrKind::Integer | AttrKind::Decimal, _) => return Err(wrong()),
        (AttrKind::DateTime, Value::String(s)) => {
            if s.is_empty() {
                None
            } else if chrono::DateTime::parse_from_rfc3339(s).is_ok() {
                Some(Value::String(s.clone()))
            } else {
                return Err(ScimError::invalid_value(format!(
                    "{path} must be an xsd:dateTime"
                )));
            }
        }
        (_, Value::String(s)) if s.is_empty() => None,
        (_, Value::String(s)) => checked_string(def, s, path)?.map(Value::String),
        // A userName is an identifier that IdPs send as a string: a number there is a mapping
        // mistake, and storing `"42"` would hide it (issue 11 §9).
        (_, Value::Number(_)) if def.name == "userName" => {
            return Err(ScimError::invalid_value(format!(
                "{path} must be a string, not a number"
            )))
        }
        // Entra sends employeeNumber as a number now and then.
        (_, Value::Number(n)) => Some(Value::String(n.to_string())),
        // No IdP sends a boolean for a string; `"userName": true` was stored as "true".
        (_, Value::Bool(_)) => {
            return Err(ScimError::invalid_value(format!(
                "{path} must be a string, not a boolean"
            )))
        }
        (_, _) => return Err(wrong()),
    })
}

/// Whether `c` is a C0 control character or DEL, which no single-line value may hold.
fn is_control(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}')
}

/// A string value as stored: control characters refused (they end up in Chamilo columns, log
/// lines and CSV exports), `userName` in its canonical form. `Ok(None)` means absent. A
/// formatted address may span lines, and a password is passed on untouched.
fn checked_string(def: &AttrDef, s: &str, path: &str) -> Result<Option<String>, ScimError> {
    let multi_line = def.name == "password" || path.eq_ignore_ascii_case("addresses.formatted");
    if !multi_line && s.chars().any(is_control) {
        return Err(ScimError::invalid_value(format!(
            "{path} must not contain control characters (U+0000 to U+001F, U+007F)"
        )));
    }
    if def.name == "userName" {
        let name = canonical_user_name(s);
        return Ok((!name.is_empty()).then_some(name));
    }
    Ok(Some(s.to_owned()))
}

/// Leaves at most one element with `primary: true`: the one at `prefer` when it is primary,
/// else the first.
pub fn keep_one_primary(items: &mut [Value], prefer: Option<usize>) {
    let primaries: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, v)| v.get("primary").and_then(Value::as_bool) == Some(true))
        .map(|(i, _)| i)
        .collect();
    if primaries.len() < 2 {
        return;
    }
    let keep = prefer
        .filter(|p| primaries.contains(p))
        .unwrap_or(primaries[0]);
    for i in primaries {
        if i != keep {
            if let Some(Value::Object(o)) = items.get_mut(i) {
                o.insert("primary".to_owned(), Value::Bool(false));
            }
        }
    }
}

/// Runs `f` on the JSON object holding `section`'s attributes, created on demand.
pub fn with_container<R>(
    resource: &mut Map<String, Value>,
    section: Section,
    f: impl FnOnce(&mut Map<String, Value>) -> R,
) -> R {
    if section != Section::Enterprise {
        return f(resource);
    }
    let mut ext = match resource.remove(ENTERPRISE_SCHEMA) {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    let result = f(&mut ext);
    resource.insert(ENTERPRISE_SCHEMA.to_owned(), Value::Object(ext));
    result
}

/// The JSON object holding `section`'s attributes, if any.
pub fn container(resource: &Map<String, Value>, section: Section) -> Option<&Map<String, Value>> {
    if section != Section::Enterprise {
        return Some(resource);
    }
    resource.get(ENTERPRISE_SCHEMA)?.as_object()
}

/// Drops an empty extension object and rewrites `schemas` for `schema`'s resource type.
pub fn finish(schema: &ResourceSchema, resource: &mut Map<String, Value>) {
    match schema.kind {
        ResourceKind::User => {
            let mut user = User::from_json(std::mem::take(resource));
            user.refresh_schemas();
            *resource = user.into_json();
        }
        ResourceKind::Group => {
            resource.insert(
                "schemas".to_owned(),
                Value::Array(vec![Value::String(GROUP_SCHEMA.to_owned())]),
            );
        }
    }
}

/// Normalises a client's User (POST or PUT body) to canonical form. Read-only attributes
/// are dropped; the result is not yet validated (see [`validate`]).
pub fn normalize_user(
    schema: &ResourceSchema,
    body: &Value,
) -> Result<Map<String, Value>, ScimError> {
    normalize_resource(schema, body)
}

/// Normalises a client's resource of `schema`'s type (a User, or a Group with
/// [`ResourceSchema::group`]) to canonical form, by the same rules as [`normalize_user`]:
/// a Group's read-only `members.$ref`/`members.display` and Okta's `id` are dropped.
pub fn normalize_resource(
    schema: &ResourceSchema,
    body: &Value,
) -> Result<Map<String, Value>, ScimError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("The request body must be a JSON object"))?;
    let mut out = Map::new();
    for (path, value) in flatten_keys(obj, None) {
        let Some((section, def, sub)) = schema.resolve(&path) else {
            continue;
        };
        let target = sub.unwrap_or(def);
        if def.mutability == Mutability::ReadOnly || target.mutability == Mutability::ReadOnly {
            continue;
        }
        let label = display_path(section, def, sub);
        let Some(v) = coerce(target, value, &label)? else {
            continue;
        };
        with_container(&mut out, section, |c| match sub {
            None => {
                // `name` after `name.givenName`: merge rather than lose the dotted key.
                match (c.get_mut(def.name), v) {
                    (Some(Value::Object(existing)), Value::Object(new)) if !def.multi_valued => {
                        existing.extend(new);
                    }
                    (_, v) => {
                        c.insert(def.name.to_owned(), v);
                    }
                }
            }
            Some(sub) if !def.multi_valued => {
                let parent = c
                    .entry(def.name)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(p) = parent {
                    p.insert(sub.name.to_owned(), v);
                }
            }
            // `emails.value` as a key of a resource has no sensible meaning; ignore it.
            Some(_) => {}
        });
    }
    finish(schema, &mut out);
    Ok(out)
}

/// A human-readable canonical path for error messages.
pub fn display_path(section: Section, def: &AttrDef, sub: Option<&AttrDef>) -> String {
    let base = match section {
        Section::Enterprise => format!("{ENTERPRISE_SCHEMA}:{}", def.name),
        _ => def.name.to_owned(),
    };
    match sub {
        Some(s) => format!("{base}.{}", s.name),
        None => base,
    }
}

/// Checks a canonical Group: a non-blank `displayName`, and every member naming a `value`.
pub fn validate_group(group: &Map<String, Value>) -> Result<(), ScimError> {
    let name = group
        .get("displayName")
        .and_then(Value::as_str)
        .unwrap_or("");
    if name.trim().is_empty() {
        return Err(ScimError::invalid_value("displayName is required"));
    }
    let members = group.get("members").and_then(Value::as_array);
    if members
        .into_iter()
        .flatten()
        .any(|m| m.get("value").and_then(Value::as_str).is_none())
    {
        return Err(ScimError::invalid_value(
            "members: every member needs a value (the User's id)",
        ));
    }
    Ok(())
}

/// Checks a canonical User against the schema and the backend's limits.
pub fn validate(
    schema: &ResourceSchema,
    caps: &Capabilities,
    user: &Map<String, Value>,
) -> Result<(), ScimError> {
    let user_name = user.get("userName").and_then(Value::as_str).unwrap_or("");
    if user_name.trim().is_empty() {
        return Err(ScimError::invalid_value("userName is required"));
    }
    if let Some(max) = caps.max_user_name_length {
        if user_name.chars().count() > max {
            return Err(ScimError::invalid_value(format!(
                "userName is longer than {max} characters"
            )));
        }
    }
    for (section, list) in [
        (Section::Core, &schema.core),
        (Section::Enterprise, &schema.enterprise),
    ] {
        for def in list.iter().filter(|d| d.required) {
            let present = container(user, section).is_some_and(|c| c.contains_key(def.name));
            if !present {
                return Err(ScimError::invalid_value(format!(
                    "{} is required",
                    display_path(section, def, None)
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> ResourceSchema {
        ResourceSchema::new(&Capabilities::default())
    }

    #[test]
    fn entra_body_is_canonicalised() {
        let body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "UserName": "Alice@Example.org",
            "Active": "False",
            "externalId": "e1",
            "id": "client-chosen",
            "meta": {"resourceType": "User"},
            "roles": [],
            "displayName": null,
            "name": {"givenName": "Alice", "familyName": null},
            "emails": [{"Primary": "true", "Type": "work", "Value": "alice@example.org"}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {
                "employeeNumber": 7,
                "manager": [{"value": "m1", "$ref": null, "displayName": "Boss"}]
            }
        });
        let u = normalize_user(&schema(), &body).unwrap();
        assert_eq!(
            Value::Object(u),
            json!({
                "userName": "Alice@Example.org",
                "active": false,
                "externalId": "e1",
                "name": {"givenName": "Alice"},
                "emails": [{"primary": true, "type": "work", "value": "alice@example.org"}],
                ENTERPRISE_SCHEMA: {"employeeNumber": "7", "manager": {"value": "m1"}},
                "schemas": [USER_SCHEMA, ENTERPRISE_SCHEMA]
            })
        );
    }

    #[test]
    fn okta_body_drops_read_only_and_keeps_password() {
        let body = json!({
            "userName": "bob", "password": "pw", "groups": [{"value": "g"}], "locale": "en-US",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "R&D",
            "name.familyName": "Builder", "unknownThing": 1
        });
        let u = normalize_user(&schema(), &body).unwrap();
        assert_eq!(u["password"], "pw");
        assert!(!u.contains_key("groups"));
        assert!(!u.contains_key("unknownThing"));
        assert_eq!(u["name"]["familyName"], "Builder");
        assert_eq!(u[ENTERPRISE_SCHEMA]["department"], "R&D");
    }

    #[test]
    fn bad_values_are_invalid_value_errors() {
        for body in [
            json!({"userName": "x", "active": "maybe"}),
            json!({"userName": "x", "name": "plain"}),
            json!({"userName": "x", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"manager": [{"value": "a"}, {"value": "b"}]}}),
            json!({"userName": {"a": 1}}),
        ] {
            let e = normalize_user(&schema(), &body).unwrap_err();
            assert_eq!(
                e.scim_type,
                Some(super::super::error::ScimType::InvalidValue),
                "{body}"
            );
        }
        assert!(normalize_user(&schema(), &json!([1])).is_err());
    }

    #[test]
    fn validation_requires_user_name_and_limits_it() {
        let s = schema();
        let caps = Capabilities {
            max_user_name_length: Some(5),
            ..Capabilities::default()
        };
        let missing = normalize_user(&s, &json!({"displayName": "x"})).unwrap();
        assert!(validate(&s, &caps, &missing).is_err());
        let long = normalize_user(&s, &json!({"userName": "abcdef"})).unwrap();
        assert!(validate(&s, &caps, &long).is_err());
        let ok = normalize_user(&s, &json!({"userName": "abc"})).unwrap();
        assert!(validate(&s, &caps, &ok).is_ok());
    }

    /// Issue 11 §1: 20,000 e-mails took 5.2 s of CPU (pairwise de-duplication); now linear
    /// (figures: `tests/scim_bench.rs`), and more values than [`MAX_VALUES`] are refused
    /// before any work.
    #[test]
    fn many_values_are_deduplicated_in_linear_time_and_bounded() {
        let schema = schema();
        let emails: Vec<Value> = (0..MAX_VALUES)
            .map(|i| json!({"value": format!("e{}@example.org", i % (MAX_VALUES / 2)), "type": "work"}))
            .collect();
        let u = normalize_user(&schema, &json!({"userName": "many", "emails": emails})).unwrap();
        assert_eq!(u["emails"].as_array().map(Vec::len), Some(MAX_VALUES / 2));
        let too_many: Vec<Value> = (0..=MAX_VALUES)
            .map(|i| json!(format!("e{i}@x.org")))
            .collect();
        let err =
            normalize_user(&schema, &json!({"userName": "many", "emails": too_many})).unwrap_err();
        assert_eq!(err.body()["scimType"], "tooMany", "{:?}", err.body());
    }

    #[test]
    fn identity_ignores_key_order() {
        assert_eq!(
            identity(&json!({"a": 1, "b": [1, {"x": 2, "y": 3}]})),
            identity(&json!({"b": [1, {"y": 3, "x": 2}], "a": 1}))
        );
        assert_ne!(identity(&json!([1, 2])), identity(&json!([2, 1])));
        assert_ne!(identity(&json!("1")), identity(&json!(1)));
    }

    #[test]
    fn several_primaries_keep_the_first() {
        let u = normalize_user(
            &schema(),
            &json!({"userName": "x", "emails": [
                {"value": "a@x", "primary": true}, {"value": "b@x", "primary": true}]}),
        )
        .unwrap();
        assert_eq!(u["emails"][0]["primary"], true);
        assert_eq!(u["emails"][1]["primary"], false);
    }
}
