//! The account operations the SCIM engine needs, as a trait that backends implement.
//!
//! Division of work: the SCIM engine (`crate::scim`) owns normalisation, validation, PATCH,
//! projection and the wire format; a backend only stores and finds accounts. Everything that
//! crosses this trait is already canonical (see [`User`]), so a backend never sees IdP quirks.
//!
//! Implementations: [`memory::MemoryDirectory`] (tests, examples) and the Chamilo backend.

pub mod group;
pub mod json;
pub mod memory;
pub mod query;
pub mod schema;

pub use group::{Group, GroupPage, GroupRef, GroupStore, GROUP_SCHEMA};
pub use query::{ListQuery, Page, SortKey};

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::secret::Secret;

/// The URN of the core User schema.
pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
/// The URN of the enterprise User extension; its attributes live under this key in [`User`].
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

/// The future every directory operation returns (boxed so the trait stays dyn-compatible).
pub type DirFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, DirectoryError>> + Send + 'a>>;

/// A user in canonical SCIM JSON, exactly as the engine would return it minus presentation.
///
/// Canonical means:
/// - keys use the schema's spelling (`userName`, `name` → `{givenName, familyName, …}`,
///   `emails` → `[{value, type, primary}]`); attributes absent or `null` are simply missing;
/// - booleans are JSON booleans, multi-valued attributes are arrays (never a lone object);
/// - enterprise-extension attributes live under the key [`ENTERPRISE_SCHEMA`] (`{employeeNumber,
///   department, manager: {value, displayName}}`) and `schemas` lists the URNs in use;
/// - `id` and `meta` (`created`, `lastModified` as RFC 3339 strings, `version` as an opaque
///   string) are assigned by the backend: the engine ignores what clients send for them;
/// - `password` is present only on input to `create`/`replace`, and only when the client sent
///   one; a backend must never return it (the engine strips it anyway, it is `returned: never`);
/// - `externalId` is the identity provider's key and must be stored and returned verbatim.
///
/// The engine adds `meta.resourceType` and `meta.location` on output; backends need not.
///
/// The `password` is held apart from the JSON, as a [`Secret`]: `Debug` never prints it, and
/// [`User::as_json`] never holds it. Read it with [`User::password`].
#[derive(Debug, Clone, PartialEq, Default)]
pub struct User {
    json: Map<String, Value>,
    password: Option<Secret>,
}

impl User {
    /// Wraps a JSON object that is already canonical; a string `password` in it is taken out
    /// into a [`Secret`].
    pub fn from_json(mut map: Map<String, Value>) -> Self {
        let password = match map.remove("password") {
            Some(Value::String(p)) => Some(Secret::new(p)),
            Some(other) => {
                // Not a password the engine would have let through; keep it as it came.
                map.insert("password".to_owned(), other);
                None
            }
            None => None,
        };
        Self {
            json: map,
            password,
        }
    }

    /// The canonical JSON object, without `password`.
    pub fn as_json(&self) -> &Map<String, Value> {
        &self.json
    }

    /// Mutable access for code that keeps the object canonical (the engine, backends setting
    /// `id`/`meta`).
    pub fn as_json_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.json
    }

    /// Unwraps the JSON object, `password` included (the inverse of [`User::from_json`]).
    pub fn into_json(self) -> Map<String, Value> {
        let mut json = self.json;
        if let Some(password) = self.password {
            json.insert(
                "password".to_owned(),
                Value::String(password.expose().to_owned()),
            );
        }
        json
    }

    /// The value at a canonical path: `userName`, `name.givenName`, or
    /// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber`.
    pub fn get(&self, path: &str) -> Option<&Value> {
        let (container, rest) = match path.strip_prefix(ENTERPRISE_SCHEMA) {
            Some(rest) => (
                self.json.get(ENTERPRISE_SCHEMA)?.as_object()?,
                rest.trim_start_matches(':'),
            ),
            None => (
                &self.json,
                path.strip_prefix(USER_SCHEMA)
                    .map_or(path, |r| r.trim_start_matches(':')),
            ),
        };
        let mut parts = rest.splitn(2, '.');
        let first = container.get(parts.next()?)?;
        match parts.next() {
            Some(sub) => first.as_object()?.get(sub),
            None => Some(first),
        }
    }

    /// Sets the value at a canonical path (as in [`User::get`]), creating the enclosing
    /// objects; `Value::Null` removes it. Keeps `schemas` listing the extension when used.
    /// Backends use it to build canonical users from their own records.
    pub fn set(&mut self, path: &str, value: Value) {
        if path == "password" {
            self.password = value.as_str().map(Secret::new);
            return;
        }
        let (container, rest) = match path.strip_prefix(ENTERPRISE_SCHEMA) {
            Some(rest) => {
                let ext = self
                    .json
                    .entry(ENTERPRISE_SCHEMA)
                    .or_insert_with(|| Value::Object(Map::new()));
                if !ext.is_object() {
                    *ext = Value::Object(Map::new());
                }
                match ext {
                    Value::Object(m) => (m, rest.trim_start_matches(':')),
                    _ => return,
                }
            }
            None => (
                &mut self.json,
                path.strip_prefix(USER_SCHEMA)
                    .map_or(path, |r| r.trim_start_matches(':')),
            ),
        };
        match rest.split_once('.') {
            Some((name, sub)) => {
                let parent = container
                    .entry(name)
                    .or_insert_with(|| Value::Object(Map::new()));
                if !parent.is_object() {
                    *parent = Value::Object(Map::new());
                }
                if let Value::Object(p) = parent {
                    if value.is_null() {
                        p.remove(sub);
                    } else {
                        p.insert(sub.to_owned(), value);
                    }
                    if p.is_empty() {
                        container.remove(name);
                    }
                }
            }
            None if value.is_null() => {
                container.remove(rest);
            }
            None => {
                container.insert(rest.to_owned(), value);
            }
        }
        self.refresh_schemas();
    }

    /// Rewrites `schemas` from the attributes present (and drops an empty extension).
    pub fn refresh_schemas(&mut self) {
        let ext_empty = self
            .json
            .get(ENTERPRISE_SCHEMA)
            .is_some_and(|e| e.as_object().is_none_or(Map::is_empty));
        if ext_empty {
            self.json.remove(ENTERPRISE_SCHEMA);
        }
        let mut schemas = vec![Value::String(USER_SCHEMA.to_owned())];
        if self.json.contains_key(ENTERPRISE_SCHEMA) {
            schemas.push(Value::String(ENTERPRISE_SCHEMA.to_owned()));
        }
        self.json
            .insert("schemas".to_owned(), Value::Array(schemas));
    }

    /// A string at a canonical path (see [`User::get`]).
    pub fn get_str(&self, path: &str) -> Option<&str> {
        self.get(path).and_then(Value::as_str)
    }

    /// The backend-assigned identifier.
    pub fn id(&self) -> Option<&str> {
        self.get_str("id")
    }

    /// Sets `id` (backends, on create).
    pub fn set_id(&mut self, id: impl Into<String>) {
        self.json.insert("id".to_owned(), Value::String(id.into()));
    }

    /// `userName` (unique, case-insensitive).
    pub fn user_name(&self) -> Option<&str> {
        self.get_str("userName")
    }

    /// `externalId`.
    pub fn external_id(&self) -> Option<&str> {
        self.get_str("externalId")
    }

    /// `active`; `None` when absent (the engine treats absent as active on create).
    pub fn active(&self) -> Option<bool> {
        self.get("active").and_then(Value::as_bool)
    }

    /// The write-only `password`, when the client sent one.
    pub fn password(&self) -> Option<&str> {
        self.password.as_ref().map(Secret::expose)
    }

    /// The primary (else first) e-mail address.
    pub fn primary_email(&self) -> Option<&str> {
        let emails = self.get("emails")?.as_array()?;
        emails
            .iter()
            .find(|e| e.get("primary").and_then(Value::as_bool) == Some(true))
            .or_else(|| emails.first())?
            .get("value")?
            .as_str()
    }

    /// `meta.version`, the opaque version used for weak ETags and preconditions.
    pub fn version(&self) -> Option<&str> {
        self.get_str("meta.version")
    }

    /// Sets `meta.created`, `meta.lastModified` and `meta.version` (backends, on every write).
    /// `created` is left unchanged when `None`.
    pub fn set_meta(
        &mut self,
        created: Option<chrono::DateTime<chrono::Utc>>,
        last_modified: chrono::DateTime<chrono::Utc>,
        version: impl Into<String>,
    ) {
        let meta = self
            .json
            .entry("meta")
            .or_insert_with(|| Value::Object(Map::new()));
        if !meta.is_object() {
            *meta = Value::Object(Map::new());
        }
        if let Value::Object(meta) = meta {
            if let Some(created) = created {
                meta.insert("created".to_owned(), Value::String(rfc3339(created)));
            }
            meta.insert(
                "lastModified".to_owned(),
                Value::String(rfc3339(last_modified)),
            );
            meta.insert("version".to_owned(), Value::String(version.into()));
        }
    }
}

fn rfc3339(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// What a backend can store; the engine prunes `/Schemas`, validation and PATCH targets to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Capabilities {
    /// Canonical attribute paths the backend stores. A top-level name (`emails`, `name`) means
    /// the attribute with all its sub-attributes; a dotted one (`name.givenName`) only that
    /// sub-attribute; extension attributes are URN-qualified
    /// (`urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department`).
    /// `id`, `meta`, `schemas`, `userName` are always implied; `password` is governed by
    /// `change_password` instead. `None`: the whole schema.
    pub attributes: Option<Vec<String>>,
    /// Longest `userName` accepted (characters); longer ones are rejected with 400 `invalidValue`.
    pub max_user_name_length: Option<usize>,
    /// Whether `password` can be set (drives `changePassword` in `/ServiceProviderConfig`).
    pub change_password: bool,
    /// Whether `meta.version` changes on every write (drives `etag.supported`).
    pub versions: bool,
    /// Core attributes the backend cannot do without at creation beyond `userName` (Chamilo:
    /// `emails`). `/Schemas` marks them required and the engine refuses a resource without
    /// them (400 `invalidValue`), so clients learn the rule from discovery. A dotted path
    /// (`emails.value`) marks a sub-attribute required in `/Schemas`: the part of a required
    /// complex attribute without which it is useless to the backend.
    pub required: Vec<String>,
    /// The values an attribute may take for this backend (`preferredLanguage` → the tags of
    /// its language table), advertised as `canonicalValues` in `/Schemas` in place of the
    /// RFC's examples. Paths as in `attributes`. Advisory: the backend still validates.
    pub canonical_values: Vec<(String, Vec<String>)>,
    /// Paths the engine accepts on input, in PATCH paths and in filters, and passes to the
    /// backend because they steer its mapping, although the backend does not keep them (so
    /// `/Schemas` does not advertise them and they are never returned). Chamilo:
    /// `emails.primary` picks the one address it keeps. Paths as in `attributes`.
    pub accepted: Vec<String>,
}

impl Default for Capabilities {
    fn default() -> Self {
        Self {
            attributes: None,
            max_user_name_length: None,
            change_password: true,
            versions: true,
            required: Vec::new(),
            canonical_values: Vec::new(),
            accepted: Vec::new(),
        }
    }
}

/// Why a directory operation failed. The engine maps each to one HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// No such resource → 404.
    #[error("resource not found")]
    NotFound,
    /// A uniqueness constraint (userName, externalId, e-mail…) → 409 `uniqueness`.
    #[error("conflict: {detail}")]
    Conflict { detail: String },
    /// The backend refuses a value (too long, unknown language…) → 400 `invalidValue`.
    /// `attr` is the canonical SCIM path of the offending attribute.
    #[error("invalid value for {attr}: {detail}")]
    InvalidValue { attr: String, detail: String },
    /// The filter would make the backend process more accounts than it is willing to (e.g.
    /// a full scan where it has no index) → 400 `tooMany`.
    #[error("too many results: {detail}")]
    TooMany { detail: String },
    /// The stored version differs from the expected one → 412.
    #[error("precondition failed: the resource was modified")]
    PreconditionFailed,
    /// The account may not be changed through SCIM (e.g. a platform administrator) → 403.
    #[error("forbidden: {detail}")]
    Forbidden { detail: String },
    /// The backend is temporarily unable to serve → 503 with `Retry-After` when known.
    #[error("backend unavailable")]
    Unavailable { retry_after: Option<Duration> },
    /// The backend did not answer in time → 504.
    #[error("backend timed out")]
    Timeout,
    /// The backend failed or answered nonsense → 502. `detail` must hold no secrets; it is
    /// logged, and only a generic text reaches the client.
    #[error("backend error: {detail}")]
    Backend { detail: String },
}

/// A store of user accounts. All methods take canonical data (see [`User`]) and are called
/// only after the engine authenticated and validated the request.
///
/// Dyn-compatible: the engine holds an `Arc<dyn Directory>`.
pub trait Directory: Send + Sync {
    /// What this backend can store. Called per request; keep it cheap.
    fn capabilities(&self) -> Capabilities;

    /// Stores a new user and returns it as stored, with `id` and `meta` set. `user` has no
    /// `id`/`meta`. A taken `userName` (case-insensitive) or `externalId` → `Conflict`.
    fn create(&self, user: User) -> DirFuture<'_, User>;

    /// The user with this `id`, or `None`.
    fn get<'a>(&'a self, id: &'a str) -> DirFuture<'a, Option<User>>;

    /// The users matching `query.filter`, sorted and paged as `query` says; `total` counts all
    /// matches. Only matching users may be returned.
    fn find<'a>(&'a self, query: &'a ListQuery) -> DirFuture<'a, Page>;

    /// Replaces the stored user `id` with `user` (the full new state; `id`/`meta` in it are to
    /// be ignored) and returns it as stored with a new `meta.version`. When `expected_version`
    /// is `Some`, the write must happen only if the stored version still equals it, else
    /// `PreconditionFailed`: PATCH is get → apply → replace, and this detects concurrent
    /// writes. A `password` in `user` means "set this password"; none means "keep it".
    fn replace<'a>(
        &'a self,
        id: &'a str,
        user: User,
        expected_version: Option<&'a str>,
    ) -> DirFuture<'a, User>;

    /// Applies a PATCH: `user` is `base` (the state [`Directory::get`] returned, which the
    /// engine patched) after the request's operations. A backend that shares its store with
    /// other writers should write only what differs between `base` and `user`, so that an
    /// attribute the PATCH did not touch is never written back from a stale read. The default
    /// writes the whole state, like [`Directory::replace`].
    fn modify<'a>(
        &'a self,
        id: &'a str,
        base: &'a User,
        user: User,
        expected_version: Option<&'a str>,
    ) -> DirFuture<'a, User> {
        let _ = base;
        self.replace(id, user, expected_version)
    }

    /// Deletes the user `id` (`NotFound` when there is none).
    fn delete<'a>(&'a self, id: &'a str) -> DirFuture<'a, ()>;

    /// The backend's groups, when it has them (`/Groups` is 404 and not advertised
    /// otherwise).
    fn groups(&self) -> Option<&dyn GroupStore> {
        None
    }
}

/// A `userName` as it is stored and compared: Unicode NFC, surrounding whitespace trimmed.
/// Two spellings of one name (`é` precomposed or not, a trailing space) must not make two
/// accounts; Chamilo itself trims and compares case-insensitively.
pub fn canonical_user_name(name: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    name.trim().nfc().collect::<String>().trim().to_owned()
}

/// The key under which `userName` is unique: [`canonical_user_name`], lower-cased (Chamilo's
/// `username_exist` is case-insensitive).
pub fn user_name_key(name: &str) -> String {
    canonical_user_name(name).to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_and_get_canonical_paths() {
        let mut u = User::default();
        u.set("userName", json!("bjensen"));
        u.set("name.givenName", json!("Barbara"));
        u.set(&format!("{ENTERPRISE_SCHEMA}:department"), json!("R&D"));
        u.set(&format!("{ENTERPRISE_SCHEMA}:manager.value"), json!("42"));
        assert_eq!(u.user_name(), Some("bjensen"));
        assert_eq!(u.get_str("name.givenName"), Some("Barbara"));
        assert_eq!(
            u.get_str(&format!("{ENTERPRISE_SCHEMA}:manager.value")),
            Some("42")
        );
        assert_eq!(
            u.as_json()["schemas"],
            json!([USER_SCHEMA, ENTERPRISE_SCHEMA])
        );
        u.set(&format!("{ENTERPRISE_SCHEMA}:department"), Value::Null);
        u.set(&format!("{ENTERPRISE_SCHEMA}:manager.value"), Value::Null);
        assert!(u.as_json().get(ENTERPRISE_SCHEMA).is_none());
        assert_eq!(u.as_json()["schemas"], json!([USER_SCHEMA]));
        u.set("name.givenName", Value::Null);
        assert!(u.get("name").is_none());
    }

    #[test]
    fn the_password_is_kept_apart_and_never_printed() {
        let json = json!({"userName": "bjensen", "password": "hunter2"});
        let mut u = User::from_json(json.as_object().cloned().unwrap());
        assert_eq!(u.password(), Some("hunter2"));
        assert!(u.as_json().get("password").is_none());
        assert!(!format!("{u:?}").contains("hunter2"));
        assert_eq!(Value::Object(u.clone().into_json()), json);
        u.set("password", json!("other"));
        assert_eq!(u.password(), Some("other"));
        u.set("password", Value::Null);
        assert_eq!(u.password(), None);
    }

    #[test]
    fn accessors_and_meta() {
        let mut u = User::from_json(
            json!({"id": "7", "externalId": "e", "active": false,
                "emails": [{"value": "a@x"}, {"value": "b@x", "primary": true}]})
            .as_object()
            .cloned()
            .unwrap(),
        );
        assert_eq!(u.id(), Some("7"));
        assert_eq!(u.external_id(), Some("e"));
        assert_eq!(u.active(), Some(false));
        assert_eq!(u.primary_email(), Some("b@x"));
        let t = chrono::DateTime::parse_from_rfc3339("2024-01-02T03:04:05Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        u.set_meta(Some(t), t, "v1");
        assert_eq!(u.version(), Some("v1"));
        assert_eq!(u.get_str("meta.created"), Some("2024-01-02T03:04:05.000Z"));
    }
}
