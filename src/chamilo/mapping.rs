//! The mapping between SCIM users and Chamilo accounts, and its validation.
//!
//! | SCIM | Chamilo |
//! |---|---|
//! | `id` | user id |
//! | `userName` | extra field `scim_user_name` (verbatim); the login is derived from it (see `username`). Accounts made outside SCIM answer to their login until the first SCIM write sets the field (adoption) |
//! | `name.givenName` / `name.familyName` | `firstname` / `lastname` (60 characters) |
//! | primary (else first) `emails` | `email` (100 characters; required) |
//! | work (else first) `phoneNumbers` | `phone` (30 characters) |
//! | `active` | `active` |
//! | `preferredLanguage` (else `locale`) | `language`, through a table (`en` → `english`…); both tags verbatim in the extra field `scim_attributes` |
//! | `externalId` | extra field `scim_external_id` |
//! | enterprise `employeeNumber` | `official_code` (40 characters) |
//! | `roles[].value` (primary or first) | `status`, through a table (default student, 5); the value verbatim in `scim_attributes` |
//! | `password` | password (never returned; a long random one when none is given) |
//!
//! Values Chamilo would truncate or mangle (too long, outside the Basic Multilingual Plane)
//! and an unknown role are refused with 400 `invalidValue` naming the attribute, before any
//! call. A language tag the table does not map (nor its base language) never blocks an
//! account: it is kept as sent and Chamilo gets the default language, with a WARN line
//! ([`LanguagePolicy`]; the strict 400 on request). Accounts named in `protected_logins` (the service account, administrators)
//! cannot be changed or deleted through SCIM.
//!
//! `DELETE` under the default policy is a soft delete (`super::deprovisioned`): the account is
//! deactivated and hidden from SCIM on every replica; a later create with its userName or
//! externalId revives it under its old id.
//!
//! `/Schemas` advertises only what comes back as it was sent (see [`ChamiloDirectory`]'s
//! capabilities): one work e-mail and one work phone number, one role. `primary` is accepted
//! (it picks the value kept) but not returned. `password` is never returned.

use rand::Rng;
use serde_json::{json, Map, Value};

use super::deprovisioned;
use super::error::ChamiloError;
use super::index::{Account, IndexFields};
use super::kept::KeptAttributes;
use super::username::{LoginRules, LoginTransform};
use crate::directory::{Capabilities, DirectoryError, User, ENTERPRISE_SCHEMA, USER_SCHEMA};

/// What SCIM `DELETE` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Deprovision {
    /// A soft delete: `active=0` and the SCIM identity tombstoned (see `deprovisioned`); the
    /// account and its history stay in Chamilo, SCIM answers 404 until a create revives it.
    #[default]
    Deactivate,
    /// A hard delete; refused (409) for the only teacher of a course.
    Delete,
    /// A hard delete, falling back to the soft delete for the only teacher of a course.
    DeleteOrDeactivate,
}

/// Which accounts `GET /Users` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ListScope {
    /// Every account except reserved ones (so that Okta imports can link existing accounts).
    #[default]
    All,
    /// Only accounts whose userName field is set (made or adopted through SCIM).
    Managed,
}

/// Which Chamilo classes `/Groups` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupScope {
    /// Every class, also those made in Chamilo's UI (adoption).
    #[default]
    All,
    /// Only classes made through SCIM (their description carries the proxy's line).
    Managed,
}

/// What a `preferredLanguage`/`locale` tag with no entry in the language table leads to
/// (`chamilo.refuse_unmapped_languages`, `chamilo.default_language`; both follow reloads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LanguagePolicy {
    /// Refuse it (400 `invalidValue`), as before issue 10.
    pub refuse_unmapped: bool,
    /// Otherwise the tag is kept verbatim and Chamilo gets this folder.
    pub default_folder: String,
}

impl Default for LanguagePolicy {
    fn default() -> Self {
        Self {
            refuse_unmapped: false,
            default_folder: "english".to_owned(),
        }
    }
}

impl LanguagePolicy {
    /// The policy the `[chamilo]` section describes.
    pub fn from_config(c: &crate::config::ChamiloConfig) -> Self {
        Self {
            refuse_unmapped: c.refuse_unmapped_languages,
            default_folder: c.default_language.clone(),
        }
    }
}

/// The language policy in force, shared by every clone of a mapping so that a reload reaches
/// the directory without rebuilding it.
pub type SharedLanguagePolicy = std::sync::Arc<arc_swap::ArcSwap<LanguagePolicy>>;

/// The configurable part of the mapping.
#[derive(Debug, Clone)]
pub struct ChamiloMapping {
    pub fields: IndexFields,
    pub login_rules: LoginRules,
    pub login_transform: LoginTransform,
    /// Status for users without a mapped role.
    pub default_status: i64,
    /// `roles[].value` (case-insensitive) → Chamilo status.
    pub role_status: Vec<(String, i64)>,
    /// Language tag (lower case; `en-us` falls back to `en`) → Chamilo language folder.
    pub languages: Vec<(String, String)>,
    /// What a tag without an entry in `languages` leads to (follows reloads).
    pub language_policy: SharedLanguagePolicy,
    /// `auth_source` of created users (`platform`, or an SSO source name).
    pub auth_source: String,
    pub deprovision: Deprovision,
    /// Logins that SCIM may never see, modify or delete (case-insensitive).
    pub protected_logins: Vec<String>,
    pub list_scope: ListScope,
    pub group_scope: GroupScope,
}

impl Default for ChamiloMapping {
    fn default() -> Self {
        let langs = [
            ("en", "english"),
            ("fr", "french"),
            ("es", "spanish"),
            ("de", "german"),
            ("pt-br", "brazilian"),
            ("pt", "portuguese"),
            ("it", "italian"),
            ("nl", "dutch"),
        ];
        Self {
            fields: IndexFields::default(),
            login_rules: LoginRules {
                login_is_email: false,
            },
            login_transform: LoginTransform::default(),
            default_status: 5,
            role_status: vec![
                ("student".into(), 5),
                ("teacher".into(), 1),
                ("session_admin".into(), 3),
                ("hr_manager".into(), 4),
                ("student_boss".into(), 17),
                ("invitee".into(), 20),
            ],
            languages: langs
                .iter()
                .map(|(t, f)| ((*t).to_owned(), (*f).to_owned()))
                .collect(),
            language_policy: Default::default(),
            auth_source: "platform".into(),
            deprovision: Deprovision::default(),
            protected_logins: vec!["admin".into()],
            list_scope: ListScope::default(),
            group_scope: GroupScope::default(),
        }
    }
}

impl ChamiloMapping {
    /// The mapping described by the `[chamilo]` section; the service account is always
    /// protected. Unknown `login_transform` / `deprovision` names are configuration errors.
    pub fn from_config(c: &crate::config::ChamiloConfig) -> Result<Self, ChamiloError> {
        let d = Self::default();
        let config_error = |detail: String| ChamiloError::Config { detail };
        let login_transform = match c.login_transform.as_str() {
            "strict" => LoginTransform::Strict,
            "sanitize" => LoginTransform::Sanitize,
            "local-part" => LoginTransform::LocalPart,
            other => {
                return Err(config_error(format!(
                    "chamilo.login_transform: unknown '{other}' (strict, sanitize, local-part)"
                )))
            }
        };
        let deprovision = match c.deprovision.as_str() {
            "deactivate" => Deprovision::Deactivate,
            "delete" => Deprovision::Delete,
            "delete-or-deactivate" => Deprovision::DeleteOrDeactivate,
            other => {
                return Err(config_error(format!(
                "chamilo.deprovision: unknown '{other}' (deactivate, delete, delete-or-deactivate)"
            )))
            }
        };
        let list_scope = match c.list_scope.as_str() {
            "all" => ListScope::All,
            "managed" => ListScope::Managed,
            other => {
                return Err(config_error(format!(
                    "chamilo.list_scope: unknown '{other}' (all, managed)"
                )))
            }
        };
        let group_scope = match c.group_scope.as_str() {
            "all" => GroupScope::All,
            "managed" => GroupScope::Managed,
            other => {
                return Err(config_error(format!(
                    "chamilo.group_scope: unknown '{other}' (all, managed)"
                )))
            }
        };
        let mut protected_logins = c.protected_logins.clone();
        protected_logins.push(c.username.clone());
        Ok(Self {
            fields: IndexFields {
                user_name: c.user_name_field.clone(),
                external_id: c.external_id_field.clone(),
                attributes: c.attributes_field.clone(),
            },
            login_rules: LoginRules {
                login_is_email: c.login_is_email,
            },
            login_transform,
            default_status: c.default_status,
            role_status: if c.roles.is_empty() {
                d.role_status
            } else {
                c.roles.iter().map(|(k, v)| (k.clone(), *v)).collect()
            },
            languages: if c.languages.is_empty() {
                d.languages
            } else {
                c.languages
                    .iter()
                    .map(|(k, v)| (k.to_lowercase(), v.clone()))
                    .collect()
            },
            language_policy: std::sync::Arc::new(arc_swap::ArcSwap::from_pointee(
                LanguagePolicy::from_config(c),
            )),
            auth_source: c.auth_source.clone(),
            deprovision,
            protected_logins,
            list_scope,
            group_scope,
        })
    }
}

/// A language tag the table does not map, and the folder Chamilo got instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnmappedLanguage {
    /// `preferredLanguage` or `locale`.
    pub attr: &'static str,
    pub tag: String,
    pub folder: String,
}

impl UnmappedLanguage {
    /// The WARN line a write that gives Chamilo the default language logs.
    pub(crate) fn warn(&self, user_id: u64) {
        tracing::warn!(
            chamilo.user_id = user_id,
            scim.attribute = self.attr,
            scim.language = %self.tag,
            chamilo.language = %self.folder,
            "no Chamilo language is configured for this tag: the account gets the default language (the tag is kept as sent)"
        );
    }
}

/// The Chamilo fields a SCIM user maps to, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    pub user_name: String,
    /// `None` when the user has no `name.givenName` (and likewise below): on create Chamilo
    /// gets an empty value, on replace the stored value is kept if the proxy never knew it.
    pub firstname: Option<String>,
    pub lastname: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub active: bool,
    pub external_id: Option<String>,
    pub official_code: Option<String>,
    pub language: Option<String>,
    /// Set when `language` is the default one given for a tag the table does not map.
    pub unmapped_language: Option<UnmappedLanguage>,
    /// `preferredLanguage`, `locale` and the role as sent, for the attributes extra field.
    pub kept: KeptAttributes,
    /// `None` when the user has no `roles`: keep Chamilo's status on updates (a PATCH round
    /// trip cannot carry it, Chamilo's status is not readable), the default on create.
    pub status: Option<i64>,
    pub password: Option<String>,
}

pub(crate) fn invalid(attr: &str, detail: impl Into<String>) -> DirectoryError {
    DirectoryError::InvalidValue {
        attr: attr.to_owned(),
        detail: detail.into(),
    }
}

/// Refuses what Chamilo would silently alter: too long, or outside the BMP (stored as `????`).
fn storable(attr: &str, value: &str, max: Option<usize>) -> Result<(), DirectoryError> {
    if value.chars().any(|c| (c as u32) > 0xFFFF) {
        return Err(invalid(
            attr,
            "Chamilo cannot store characters outside the Basic Multilingual Plane (such as emoji)",
        ));
    }
    if let Some(max) = max {
        let n = value.chars().count();
        if n > max {
            return Err(invalid(
                attr,
                format!("{n} characters; Chamilo stores at most {max}"),
            ));
        }
    }
    Ok(())
}

/// A value that would read as a deprovisioned account's tombstone.
fn reserved_prefix(attr: &str) -> DirectoryError {
    invalid(
        attr,
        format!(
            "values beginning with '{}' are reserved for accounts deleted through SCIM",
            deprovisioned::PREFIX
        ),
    )
}

fn plausible_email(email: &str) -> bool {
    match email.rsplit_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.chars().any(char::is_whitespace)
        }
        None => false,
    }
}

fn pick_typed<'a>(user: &'a User, attr: &str, wanted_type: &str) -> Option<&'a str> {
    let items = user.get(attr)?.as_array()?;
    items
        .iter()
        .find(|e| e.get("primary").and_then(Value::as_bool) == Some(true))
        .or_else(|| {
            items
                .iter()
                .find(|e| e.get("type").and_then(Value::as_str) == Some(wanted_type))
        })
        .or_else(|| items.first())?
        .get("value")?
        .as_str()
}

impl ChamiloMapping {
    /// Maps and validates a canonical SCIM user.
    pub fn map(&self, user: &User) -> Result<Mapped, DirectoryError> {
        let user_name = user
            .user_name()
            .ok_or_else(|| invalid("userName", "required"))?
            .to_owned();
        storable("userName", &user_name, None)?;
        if deprovisioned::is_tombstone(&user_name) {
            return Err(reserved_prefix("userName"));
        }
        let firstname = user.get_str("name.givenName").map(str::to_owned);
        if let Some(f) = &firstname {
            storable("name.givenName", f, Some(60))?;
        }
        let lastname = user.get_str("name.familyName").map(str::to_owned);
        if let Some(l) = &lastname {
            storable("name.familyName", l, Some(60))?;
        }
        let email = user.primary_email().map(str::to_owned);
        if let Some(e) = &email {
            storable("emails", e, Some(100))?;
            if !plausible_email(e) {
                return Err(invalid("emails", "not an e-mail address Chamilo accepts"));
            }
        }
        let phone = pick_typed(user, "phoneNumbers", "work").map(str::to_owned);
        if let Some(p) = &phone {
            storable("phoneNumbers", p, Some(30))?;
        }
        let external_id = user.external_id().map(str::to_owned);
        if let Some(e) = &external_id {
            storable("externalId", e, None)?;
            if deprovisioned::is_tombstone(e) {
                return Err(reserved_prefix("externalId"));
            }
        }
        let employee = format!("{ENTERPRISE_SCHEMA}:employeeNumber");
        let official_code = user.get_str(&employee).map(str::to_owned);
        if let Some(o) = &official_code {
            storable(&employee, o, Some(40))?;
        }
        // A tag with no entry in the table (itself or its base language) never blocks an
        // account: it is kept verbatim and Chamilo gets the default language, as Chamilo
        // itself does with an unknown language (unless the site asks for the strict 400).
        // Both tags are checked alike, whichever sets Chamilo's: a client gets the same answer
        // for a tag wherever it puts it. `locale` is a separate attribute (RFC 7643 §4.1.1)
        // and sets the language only without `preferredLanguage`.
        let policy = self.language_policy.load();
        let mut languages = Vec::new();
        let mut unmapped_language = None;
        for attr in ["preferredLanguage", "locale"] {
            if let Some(tag) = user.get_str(attr) {
                let folder = match self.language(tag) {
                    Some(folder) => folder,
                    None if policy.refuse_unmapped => {
                        return Err(invalid(
                            attr,
                            format!("no Chamilo language is configured for '{tag}'"),
                        ))
                    }
                    None => {
                        unmapped_language.get_or_insert_with(|| (attr, tag.to_owned()));
                        policy.default_folder.clone()
                    }
                };
                languages.push((attr, folder));
            }
        }
        let (language_from, language) = languages.into_iter().next().unzip();
        // Worth a WARN only when the tag that sets Chamilo's language is the unmapped one.
        let unmapped_language = unmapped_language
            .filter(|(attr, _)| Some(*attr) == language_from)
            .map(|(attr, tag)| UnmappedLanguage {
                attr,
                tag,
                folder: policy.default_folder.clone(),
            });
        let role = pick_typed(user, "roles", "").map(str::to_owned);
        let status = match &role {
            Some(role) => Some(self.status_of_role(role).ok_or_else(|| {
                invalid(
                    "roles",
                    format!("no Chamilo status is configured for role '{role}'"),
                )
            })?),
            None => None,
        };
        let kept = KeptAttributes {
            preferred_language: user.get_str("preferredLanguage").map(str::to_owned),
            locale: user.get_str("locale").map(str::to_owned),
            role,
            // Set by `replace_user`: a create without `active` gets Chamilo's default, active,
            // and returns it like any value the service provider assigns.
            active_unassigned: false,
        };
        Ok(Mapped {
            user_name,
            firstname,
            lastname,
            email,
            phone,
            active: user.active().unwrap_or(true),
            external_id,
            official_code,
            language,
            unmapped_language,
            kept,
            status,
            password: user.password().map(str::to_owned),
        })
    }

    /// The SCIM attribute a Chamilo column or extra field holds, per the table above: the
    /// name an error shows the identity provider's administrator when Chamilo refuses it.
    pub(crate) fn scim_attribute_of(&self, field: &str) -> String {
        let fields = &self.fields;
        let attr = match field {
            "firstname" => "name.givenName",
            "lastname" => "name.familyName",
            "email" => "emails",
            "phone" => "phoneNumbers",
            "active" => "active",
            "language" => "preferredLanguage",
            "status" => "roles",
            "username" => "userName",
            "password" => "password",
            "official_code" => return format!("{ENTERPRISE_SCHEMA}:employeeNumber"),
            f if f == fields.user_name => "userName",
            f if f == fields.external_id => "externalId",
            // The attributes kept verbatim: which one is not known here.
            other => other,
        };
        attr.to_owned()
    }

    /// The Chamilo status a role value (case-insensitive) maps to.
    pub(crate) fn status_of_role(&self, role: &str) -> Option<i64> {
        self.role_status
            .iter()
            .find(|(r, _)| r.eq_ignore_ascii_case(role))
            .map(|(_, s)| *s)
    }

    /// The role value a Chamilo status is returned as: the first in the table that maps to it.
    pub(crate) fn role_of_status(&self, status: i64) -> Option<&str> {
        self.role_status
            .iter()
            .find(|(_, s)| *s == status)
            .map(|(r, _)| r.as_str())
    }

    /// The roles to return: the one the identity provider assigned, as it spelt it, unless
    /// Chamilo's status (known after a fresh lookup) says another role applies now (changed
    /// in Chamilo's own UI): then that one. None when no role was assigned through SCIM.
    pub(crate) fn returned_role(&self, kept: Option<&str>, status: Option<i64>) -> Option<String> {
        let kept = kept?;
        match status {
            Some(s) if self.status_of_role(kept) != Some(s) => {
                self.role_of_status(s).map(str::to_owned)
            }
            _ => Some(kept.to_owned()),
        }
    }

    /// What `/Schemas` may promise for Chamilo, and the values that make a round trip.
    pub(crate) fn capabilities(&self) -> Capabilities {
        let tags: Vec<String> = self.languages.iter().map(|(t, _)| t.clone()).collect();
        let roles: Vec<String> = self.role_status.iter().map(|(r, _)| r.clone()).collect();
        Capabilities {
            attributes: Some(
                STORED_ATTRIBUTES
                    .iter()
                    .map(|s| (*s).to_owned())
                    .chain(std::iter::once(format!(
                        "{ENTERPRISE_SCHEMA}:employeeNumber"
                    )))
                    .collect(),
            ),
            max_user_name_length: None,
            change_password: true,
            versions: false,
            // Chamilo refuses an account without a valid e-mail address.
            required: vec!["emails".to_owned(), "emails.value".to_owned()],
            canonical_values: vec![
                // Only the one address and number Chamilo keeps; they come back as work ones.
                ("emails.type".to_owned(), vec!["work".to_owned()]),
                ("phoneNumbers.type".to_owned(), vec!["work".to_owned()]),
                ("preferredLanguage".to_owned(), tags.clone()),
                ("locale".to_owned(), tags),
                ("roles.value".to_owned(), roles),
            ],
            accepted: ACCEPTED_ATTRIBUTES
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
        }
    }

    pub(crate) fn language(&self, tag: &str) -> Option<String> {
        let tag = tag.trim().to_lowercase().replace('_', "-");
        let primary = tag.split('-').next().unwrap_or("").to_owned();
        [tag, primary].iter().find_map(|t| {
            self.languages
                .iter()
                .find(|(k, _)| k == t)
                .map(|(_, f)| f.clone())
        })
    }

    pub(crate) fn is_protected(&self, login: &str) -> bool {
        self.protected_logins
            .iter()
            .any(|p| p.eq_ignore_ascii_case(login))
    }
}

/// A long random password for accounts created without one (Chamilo would otherwise use the
/// auth source's name as the password).
pub(crate) fn random_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789-_";
    let mut rng = rand::rng();
    (0..40)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

impl ChamiloMapping {
    /// The SCIM representation of an account.
    pub fn to_user(&self, a: &Account) -> User {
        let mut m = Map::new();
        let mut schemas = vec![json!(USER_SCHEMA)];
        m.insert("id".into(), json!(a.id.to_string()));
        m.insert(
            "userName".into(),
            json!(a.user_name.clone().unwrap_or_else(|| a.login.clone())),
        );
        if let Some(ext) = &a.external_id {
            m.insert("externalId".into(), json!(ext));
        }
        let mut name = Map::new();
        if let Some(f) = a.firstname.as_ref().filter(|f| !f.is_empty()) {
            name.insert("givenName".into(), json!(f));
        }
        if !a.lastname.is_empty() {
            let key = if a.partial { "formatted" } else { "familyName" };
            name.insert(key.into(), json!(a.lastname));
        }
        if !name.is_empty() {
            m.insert("name".into(), Value::Object(name));
        }
        if !a.email.is_empty() {
            m.insert("emails".into(), json!([{"value": a.email, "type": "work"}]));
        }
        if let Some(p) = a.phone.as_ref().filter(|p| !p.is_empty()) {
            m.insert("phoneNumbers".into(), json!([{"value": p, "type": "work"}]));
        }
        if let Some(o) = a.official_code.as_ref().filter(|o| !o.is_empty()) {
            schemas.push(json!(ENTERPRISE_SCHEMA));
            m.insert(ENTERPRISE_SCHEMA.into(), json!({"employeeNumber": o}));
        }
        let kept = a
            .attributes
            .as_deref()
            .map(KeptAttributes::decode)
            .unwrap_or_default();
        if let Some(tag) = kept.preferred_language {
            m.insert("preferredLanguage".into(), json!(tag));
        }
        if let Some(tag) = kept.locale {
            m.insert("locale".into(), json!(tag));
        }
        if let Some(role) = self.returned_role(kept.role.as_deref(), a.status) {
            m.insert("roles".into(), json!([{ "value": role }]));
        }
        // Unassigned by the identity provider and still active: Chamilo's default, not a value
        // the IdP set. A deactivation is always returned.
        if !(kept.active_unassigned && a.active) {
            m.insert("active".into(), json!(a.active));
        }
        m.insert("schemas".into(), Value::Array(schemas));
        User::from_json(m)
    }
}

/// The core attributes `ChamiloMapping::map` reads and `ChamiloDirectory::to_user` returns:
/// the engine drops every other one before the directory sees it, so each source of the
/// mapping table above must be listed. Sub-attributes Chamilo does not keep (`display`, the
/// type of a role) are left out, so `/Schemas` promises only what comes back.
const STORED_ATTRIBUTES: &[&str] = &[
    "userName",
    "externalId",
    "name.givenName",
    "name.familyName",
    "emails.value",
    "emails.type",
    "phoneNumbers.value",
    "phoneNumbers.type",
    "active",
    "preferredLanguage",
    "locale",
    "roles.value",
    "password",
    // Read-only: the classes the account belongs to (`GroupStore::groups_of`).
    "groups",
];

/// Read to choose the one value Chamilo keeps (the primary e-mail, phone number or role),
/// not kept themselves: accepted, also in PATCH paths and filters such as Entra's
/// `emails[primary eq true].value`, but neither advertised nor returned.
const ACCEPTED_ATTRIBUTES: &[&str] = &["emails.primary", "phoneNumbers.primary", "roles.primary"];

#[cfg(test)]
mod tests {
    use super::*;

    fn user(v: Value) -> User {
        match v {
            Value::Object(m) => User::from_json(m),
            _ => unreachable!(),
        }
    }

    #[test]
    fn every_mapped_source_attribute_is_stored() {
        // `locale` was missing: Okta's create sends only `locale`, and its language was lost.
        for attr in [
            "preferredLanguage",
            "locale",
            "phoneNumbers.value",
            "roles.value",
            "password",
        ] {
            assert!(STORED_ATTRIBUTES.contains(&attr), "{attr}");
        }
        let m = ChamiloMapping::default()
            .map(&user(
                json!({"userName": "a", "emails": [{"value": "a@b.org"}], "locale": "fr-FR"}),
            ))
            .unwrap();
        assert_eq!(m.language.as_deref(), Some("french"));
    }

    #[test]
    fn maps_and_validates() {
        let mapping = ChamiloMapping::default();
        let m = mapping
            .map(&user(json!({
                "userName": "ann@example.org",
                "name": {"givenName": "Ann", "familyName": "Lee"},
                "emails": [{"value": "ann@example.org", "primary": true}],
                "preferredLanguage": "fr-CA",
                "roles": [{"value": "Teacher"}],
                "active": false,
                ENTERPRISE_SCHEMA: {"employeeNumber": "E-7"}
            })))
            .unwrap();
        assert_eq!(m.language.as_deref(), Some("french"));
        assert_eq!(m.status, Some(1));
        assert!(!m.active);
        assert_eq!(m.official_code.as_deref(), Some("E-7"));

        let long = "F".repeat(61);
        let err = mapping
            .map(&user(json!({"userName": "a", "name": {"givenName": long}, "emails": [{"value": "a@b.org"}]})))
            .unwrap_err();
        assert!(
            matches!(&err, DirectoryError::InvalidValue { attr, .. } if attr == "name.givenName"),
            "{err}"
        );
        let err = mapping
            .map(&user(json!({"userName": "a", "name": {"familyName": "Zoé 😀"}, "emails": [{"value": "a@b.org"}]})))
            .unwrap_err();
        assert!(
            matches!(&err, DirectoryError::InvalidValue { attr, .. } if attr == "name.familyName")
        );
        let strict = ChamiloMapping::default();
        strict
            .language_policy
            .store(std::sync::Arc::new(LanguagePolicy {
                refuse_unmapped: true,
                ..LanguagePolicy::default()
            }));
        let err = strict
            .map(&user(json!({"userName": "a", "emails": [{"value": "a@b.org"}], "preferredLanguage": "xx"})))
            .unwrap_err();
        assert!(
            matches!(&err, DirectoryError::InvalidValue { attr, .. } if attr == "preferredLanguage")
        );
        let err = mapping
            .map(&user(
                json!({"userName": "a", "emails": [{"value": "not an address"}]}),
            ))
            .unwrap_err();
        assert!(matches!(&err, DirectoryError::InvalidValue { attr, .. } if attr == "emails"));
    }

    #[test]
    fn an_unmapped_language_gets_the_best_match_and_is_kept() {
        let mapping = ChamiloMapping::default();
        let map = |v: Value| mapping.map(&user(v)).unwrap();
        let base = json!({"userName": "a", "emails": [{"value": "a@b.org"}]});
        let with = |k: &str, tag: &str| {
            let mut v = base.clone();
            v[k] = json!(tag);
            v
        };
        // The language, then its base language: mapped, nothing to warn about.
        let m = map(with("preferredLanguage", "fr-CA"));
        assert_eq!(m.language.as_deref(), Some("french"));
        assert_eq!(m.unmapped_language, None);
        // Then the default language; the tag is kept as sent.
        let m = map(with("preferredLanguage", "xh"));
        assert_eq!(m.language.as_deref(), Some("english"));
        assert_eq!(m.kept.preferred_language.as_deref(), Some("xh"));
        let u = m.unmapped_language.unwrap();
        assert_eq!((u.attr, u.tag.as_str()), ("preferredLanguage", "xh"));
        let m = map(with("locale", "en-ZA"));
        assert_eq!(m.language.as_deref(), Some("english"));
        assert_eq!(m.unmapped_language, None, "en-ZA falls back to en");
        // An unmapped locale beside a mapped preferredLanguage sets nothing: no warning.
        let mut both = with("preferredLanguage", "de");
        both["locale"] = json!("zu_ZA");
        let m = map(both);
        assert_eq!(m.language.as_deref(), Some("german"));
        assert_eq!(m.kept.locale.as_deref(), Some("zu_ZA"));
        assert_eq!(m.unmapped_language, None);
        // The configured default, and the strict switch, follow the shared policy.
        let clone = mapping.clone();
        clone
            .language_policy
            .store(std::sync::Arc::new(LanguagePolicy {
                refuse_unmapped: false,
                default_folder: "dutch".into(),
            }));
        assert_eq!(
            map(with("locale", "xh")).language.as_deref(),
            Some("dutch"),
            "a reload reaches every clone"
        );
        clone
            .language_policy
            .store(std::sync::Arc::new(LanguagePolicy {
                refuse_unmapped: true,
                default_folder: "dutch".into(),
            }));
        let err = mapping.map(&user(with("locale", "xh"))).unwrap_err();
        assert!(matches!(&err, DirectoryError::InvalidValue { attr, .. } if attr == "locale"));
    }

    #[test]
    fn mapping_from_config() {
        let c: crate::config::Config = toml::from_str(
            "[chamilo]\nusername = \"scim-bot\"\ndeprovision = \"delete\"\nroles = { faculty = 1 }\n",
        )
        .unwrap();
        let m = ChamiloMapping::from_config(&c.chamilo).unwrap();
        assert_eq!(m.deprovision, Deprovision::Delete);
        assert_eq!(m.role_status, vec![("faculty".to_owned(), 1)]);
        assert!(m.is_protected("SCIM-BOT"));
        assert!(m.is_protected("admin"));
        assert_eq!(m.list_scope, ListScope::All);
        let c: crate::config::Config =
            toml::from_str("[chamilo]\nlogin_transform = \"magic\"\n").unwrap();
        assert!(ChamiloMapping::from_config(&c.chamilo).is_err());
        let c: crate::config::Config =
            toml::from_str("[chamilo]\nlist_scope = \"managed\"\n").unwrap();
        assert_eq!(
            ChamiloMapping::from_config(&c.chamilo).unwrap().list_scope,
            ListScope::Managed
        );
        let c: crate::config::Config =
            toml::from_str("[chamilo]\nlist_scope = \"some\"\n").unwrap();
        assert!(ChamiloMapping::from_config(&c.chamilo).is_err());
        assert_eq!(m.group_scope, GroupScope::All);
        let c: crate::config::Config =
            toml::from_str("[chamilo]\ngroup_scope = \"managed\"\n").unwrap();
        assert_eq!(
            ChamiloMapping::from_config(&c.chamilo).unwrap().group_scope,
            GroupScope::Managed
        );
        let c: crate::config::Config =
            toml::from_str("[chamilo]\ngroup_scope = \"scim\"\n").unwrap();
        assert!(ChamiloMapping::from_config(&c.chamilo).is_err());
    }

    #[test]
    fn random_passwords_are_long_and_differ() {
        let a = random_password();
        assert_eq!(a.len(), 40);
        assert_ne!(a, random_password());
    }
}
