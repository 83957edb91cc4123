//! Decoding Chamilo's answers: the `{"error":…,"data":…}` envelope, listed users, profiles.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use super::unexpected;
use crate::chamilo::error::{classify_refusal, ChamiloError};

/// Decodes Chamilo's `{"error":…,"data":…}` envelope: the data on success, the refusal
/// classified, or `Unexpected` naming what came instead (an HTML error page, another shape).
pub(super) fn decode_envelope<T: serde::de::DeserializeOwned>(
    action: &str,
    body: &[u8],
    is_html: bool,
) -> Result<T, ChamiloError> {
    let envelope: Envelope<T> = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) if is_html || body.trim_ascii_start().starts_with(b"<") => {
            return Err(unexpected(
                action,
                "an HTML page instead of JSON (usually a Chamilo database error)",
            ))
        }
        Err(e) => {
            return Err(unexpected(
                action,
                format!("an answer of an unknown shape: {e}"),
            ))
        }
    };
    match (envelope.error, envelope.data) {
        (Some(false), Some(data)) => Ok(data),
        (Some(false), None) => Err(unexpected(action, "no data in the answer")),
        (Some(true), _) => Err(classify_refusal(
            action,
            envelope.message.as_deref().unwrap_or(""),
        )),
        (None, _) => Err(unexpected(action, "no error flag in the answer")),
    }
}

/// A user as `get_users` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedUser {
    pub id: u64,
    pub username: String,
    pub firstname: Option<String>,
    pub lastname: String,
    pub email: String,
    pub active: bool,
    /// The requested extra fields Chamilo knows, in request order: `None` for a NULL value,
    /// `Some("")` when the user has no value.
    pub extra: Vec<(String, Option<String>)>,
}

impl ListedUser {
    /// The value of a requested extra field (`None` when absent, NULL or empty).
    pub fn extra_value(&self, field: &str) -> Option<&str> {
        self.extra
            .iter()
            .find(|(n, _)| n == field)
            .and_then(|(_, v)| v.as_deref())
            .filter(|v| !v.is_empty())
    }
}

/// A user as `users_profiles_by_extra_field` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub id: u64,
    pub status: i64,
    pub full_name: String,
    pub username: String,
    pub official_code: String,
    pub phone: String,
}

pub(super) fn as_id(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

pub(super) fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

pub(super) fn str_field(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

pub(super) fn single_bool(action: &str, data: &Value) -> Result<bool, ChamiloError> {
    data.get(0)
        .and_then(Value::as_bool)
        .ok_or_else(|| unexpected(action, "data is not [bool]"))
}

pub(super) fn expect_true(action: &str, data: &Value) -> Result<(), ChamiloError> {
    if single_bool(action, data)? {
        Ok(())
    } else {
        Err(unexpected(action, "Chamilo answered [false]"))
    }
}

pub(super) fn single_id(action: &str, data: &Value) -> Result<u64, ChamiloError> {
    as_id(data.get(0)).ok_or_else(|| unexpected(action, "data is not [id]"))
}

/// `{"error":…,"message":…,"data":…}`.
#[derive(Deserialize)]
struct Envelope<T> {
    error: Option<bool>,
    message: Option<String>,
    data: Option<T>,
}

/// One `get_users` entry, decoded without an intermediate JSON tree.
#[derive(Deserialize)]
pub(super) struct ListedRow {
    id: Value,
    firstname: Option<String>,
    lastname: Option<String>,
    email: Option<String>,
    username: Option<String>,
    active: Option<Value>,
    /// The requested extra fields.
    #[serde(flatten)]
    extra: HashMap<String, Value>,
}

impl ListedRow {
    pub(super) fn into_user(mut self, extra_fields: &[&str]) -> Result<ListedUser, ChamiloError> {
        let id =
            as_id(Some(&self.id)).ok_or_else(|| unexpected("get_users", "an entry has no id"))?;
        let username = self.username.ok_or_else(|| {
            unexpected(
                "get_users",
                "an entry has no username (Chamilo older than the current 1.11.x?)",
            )
        })?;
        let active = match &self.active {
            Some(v) => as_i64(v).is_some_and(|a| a == 1),
            None => return Err(unexpected("get_users", "an entry has no active flag")),
        };
        let extra = extra_fields
            .iter()
            .filter_map(|f| {
                let name = f.trim();
                self.extra.remove(name).map(|v| {
                    let value = match v {
                        Value::Null => None,
                        Value::String(s) => Some(s),
                        other => Some(other.to_string()),
                    };
                    (name.to_owned(), value)
                })
            })
            .collect();
        Ok(ListedUser {
            id,
            username,
            firstname: self.firstname,
            lastname: self.lastname.unwrap_or_default(),
            email: self.email.unwrap_or_default(),
            active,
            extra,
        })
    }
}

/// Decodes `get_users` data given as a JSON value (the client itself decodes from bytes).
pub fn decode_listed_users(
    data: &Value,
    extra_fields: &[&str],
) -> Result<Vec<ListedUser>, ChamiloError> {
    let rows: Vec<ListedRow> = serde_json::from_value(data.clone())
        .map_err(|e| unexpected("get_users", format!("an answer of an unknown shape: {e}")))?;
    rows.into_iter()
        .map(|row| row.into_user(extra_fields))
        .collect()
}

/// Decodes `users_profiles_by_extra_field` data (an object keyed by id, or `[]`).
pub fn decode_profiles(data: &Value) -> Result<Vec<Profile>, ChamiloError> {
    const ACTION: &str = "users_profiles_by_extra_field";
    let entries: Vec<&Value> = match data {
        Value::Object(m) => m.values().collect(),
        Value::Array(a) if a.is_empty() => Vec::new(),
        _ => return Err(unexpected(ACTION, "data is neither an object nor []")),
    };
    let mut out: Vec<Profile> = entries
        .into_iter()
        .map(|p| {
            Ok(Profile {
                id: as_id(p.get("id")).ok_or_else(|| unexpected(ACTION, "a profile has no id"))?,
                status: p.get("status").and_then(as_i64).unwrap_or(0),
                full_name: str_field(p, "fullName"),
                username: p
                    .get("username")
                    .and_then(Value::as_str)
                    .ok_or_else(|| unexpected(ACTION, "a profile has no username"))?
                    .to_owned(),
                official_code: str_field(p, "officialCode"),
                phone: str_field(p, "phone"),
            })
        })
        .collect::<Result<_, ChamiloError>>()?;
    out.sort_by_key(|p| p.id);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn listed_users_decode_nulls_and_missing_fields() {
        let data = json!([
            {"id":24,"firstname":null,"lastname":"NoFirst","email":"n@x.org","username":"nofirst","active":1,"ext_id":"V-1O1"},
            {"id":28,"firstname":"No","lastname":"ExtValue","email":"n@x.org","username":"noextvalue","active":0,"ext_id":null}
        ]);
        let users = decode_listed_users(&data, &["ext_id", "nope"]).unwrap();
        assert_eq!(users[0].firstname, None);
        assert_eq!(users[0].extra_value("ext_id"), Some("V-1O1"));
        assert!(users[0].active);
        assert!(!users[1].active);
        assert_eq!(users[1].extra, vec![("ext_id".to_owned(), None)]);
        assert_eq!(users[1].extra_value("ext_id"), None);
    }

    #[test]
    fn old_release_listing_is_refused() {
        let data = json!([{"id":1,"firstname":"Chamilo","lastname":"Admin","email":"a@x.org"}]);
        assert!(matches!(
            decode_listed_users(&data, &[]),
            Err(ChamiloError::Unexpected { .. })
        ));
    }

    #[test]
    fn profiles_object_or_empty_list() {
        assert!(decode_profiles(&json!([])).unwrap().is_empty());
        let p = decode_profiles(&json!({"4":{"id":4,"status":5,"fullName":"Sam Alpha","username":"sama","officialCode":"","phone":""},"3":{"id":3,"status":1,"fullName":"Sam Zulu","username":"samz","officialCode":"","phone":""}})).unwrap();
        assert_eq!(p.iter().map(|p| p.id).collect::<Vec<_>>(), vec![3, 4]);
        assert!(decode_profiles(&json!({"error": 1})).is_err());
    }
}
