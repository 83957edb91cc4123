//! The mapping between SCIM users and Chamilo accounts, and its validation.
//!
//! | SCIM | Chamilo |
//! |---|---|
//! | `id` | user id |
//! | `userName` | extra field `scim_user_name` (verbatim); the login is derived from it (see `username`). Accounts made outside SCIM answer to their login until the first SCIM write sets the field (adoption) |
//! | `name.givenName` / `name.familyName` | `firstname` / `lastname` (60 characters) |
//! | primary (else first) `emails` | `email` (100 characters; required); all of them as sent in `scim_attributes` |
//! | primary, else work, else first `phoneNumbers` | `phone` (30 characters); all of them as sent in `scim_attributes` |
//! | `active` | `active` |
//! | `preferredLanguage` (else `locale`) | `language`, through a table (`en` → `english`…); both tags verbatim in `scim_attributes` |
//! | `externalId` | extra field `scim_external_id` |
//! | enterprise `employeeNumber` | `official_code` (40 characters); as sent in `scim_attributes` |
//! | `roles[].value` (primary or first) | `status`, through a table (default student, 5); all roles as sent in `scim_attributes` |
//! | every other attribute of the User schema and the enterprise extension | `scim_attributes`, as sent (see `super::kept`) |
//! | `meta.created` / `meta.lastModified` | `scim_attributes`: the proxy's create and last write (none for accounts made outside SCIM until then) |
//! | `password` | password (never returned; a long random one when none is given) |
//!
//! Values Chamilo would truncate or mangle (too long, outside the Basic Multilingual Plane)
//! and an unknown role are refused with 400 `invalidValue` naming the attribute, before any
//! call. A language tag the table does not map (nor its base language) never blocks an
//! account: it is kept as sent and Chamilo gets the default language, with a WARN line
//! ([`LanguagePolicy`]; the strict 400 on request). The attributes kept in `scim_attributes`
//! are bounded (`super::kept::MAX_FIELD_BYTES`, 400 above it). Accounts named in
//! `protected_logins` (the service account, administrators) cannot be changed or deleted
//! through SCIM.
//!
//! `DELETE` under the default policy is a soft delete (`super::deprovisioned`): the account is
//! deactivated and hidden from SCIM on every replica; a later create with its userName or
//! externalId revives it under its old id.
//!
//! `/Schemas` advertises the whole User schema and enterprise extension: every attribute comes
//! back as it was sent, a column's current value in the place it was taken from (a change made
//! in Chamilo wins). `password` is never returned.

use rand::Rng;
use serde_json::{json, Map, Value};

use super::deprovisioned;
use super::error::ChamiloError;
use super::index::{Account, IndexFields};
use super::kept::{KeptAttributes, KeyNames};
use super::username::{LoginRules, LoginTransform};
use crate::directory::query::{is_core_urn, AttrPath, Filter};
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
#[derive(Debug, Clone, PartialEq)]
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

/// Which of the values of a multi-valued attribute Chamilo's one column holds: the primary,
/// else the first of `wanted_type`, else the first.
fn chosen(items: &[Value], wanted_type: &str) -> Option<usize> {
    items
        .iter()
        .position(|e| e.get("primary").and_then(Value::as_bool) == Some(true))
        .or_else(|| {
            items
                .iter()
                .position(|e| e.get("type").and_then(Value::as_str) == Some(wanted_type))
        })
        .or_else(|| (!items.is_empty()).then_some(0))
}

fn pick_typed<'a>(user: &'a User, attr: &str, wanted_type: &str) -> Option<&'a str> {
    let items = user.get(attr)?.as_array()?;
    items
        .get(chosen(items, wanted_type)?)?
        .get("value")?
        .as_str()
}

/// The type whose first value Chamilo's column holds when none is primary (`roles`: none).
const EMAIL_TYPE: &str = "";
const PHONE_TYPE: &str = "work";
const ROLE_TYPE: &str = "";

/// Top-level attributes with a place of their own in Chamilo, or never kept (see `kept`).
const NOT_KEPT: &[&str] = &[
    "id",
    "meta",
    "schemas",
    "userName",
    "externalId",
    "password",
    "groups",
    "active",
];

/// The attributes of `user` kept in the attributes field: all but those with a place of
/// their own (`NOT_KEPT`, and the names Chamilo has columns for).
fn kept_attributes(user: &User) -> Map<String, Value> {
    let mut kept = Map::new();
    for (k, v) in user.as_json() {
        if NOT_KEPT.contains(&k.as_str()) {
            continue;
        }
        if k == "name" {
            let mut name = v.as_object().cloned().unwrap_or_default();
            name.remove("givenName");
            name.remove("familyName");
            if !name.is_empty() {
                kept.insert(k.clone(), Value::Object(name));
            }
            continue;
        }
        kept.insert(k.clone(), v.clone());
    }
    kept
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
        let email = pick_typed(user, "emails", EMAIL_TYPE).map(str::to_owned);
        if let Some(e) = &email {
            storable("emails", e, Some(100))?;
            if !plausible_email(e) {
                return Err(invalid("emails", "not an e-mail address Chamilo accepts"));
            }
        }
        let phone = pick_typed(user, "phoneNumbers", PHONE_TYPE).map(str::to_owned);
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
        let role = pick_typed(user, "roles", ROLE_TYPE).map(str::to_owned);
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
            attributes: kept_attributes(user),
            // Set by `replace_user`: a create without `active` gets Chamilo's default, active,
            // and returns it like any value the service provider assigns.
            active_unassigned: false,
            // Set by the write, which knows whether it changes anything.
            created: None,
            last_modified: None,
        };
        if let Err((attr, size)) = kept.check_size() {
            return Err(invalid(
                &attr,
                format!(
                    "the attributes Chamilo has no column for take {size} bytes once encoded; at most {} fit its attributes field (the largest is this one)",
                    super::kept::MAX_FIELD_BYTES
                ),
            ));
        }
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

    /// What `/Schemas` may promise for Chamilo: every attribute of the User schema and the
    /// enterprise extension (what Chamilo has no column for is kept as sent, see `kept`),
    /// and the values that map to a Chamilo language or status.
    pub(crate) fn capabilities(&self) -> Capabilities {
        let tags: Vec<String> = self.languages.iter().map(|(t, _)| t.clone()).collect();
        let roles: Vec<String> = self.role_status.iter().map(|(r, _)| r.clone()).collect();
        Capabilities {
            attributes: None,
            max_user_name_length: None,
            change_password: true,
            // `meta.version` digests the resource as returned (`to_user`): it changes with any
            // returned attribute, and the engine checks preconditions against a fresh read.
            versions: true,
            // Chamilo refuses an account without a valid e-mail address.
            required: vec!["emails".to_owned(), "emails.value".to_owned()],
            canonical_values: vec![
                ("preferredLanguage".to_owned(), tags.clone()),
                ("locale".to_owned(), tags),
                ("roles.value".to_owned(), roles),
            ],
            accepted: Vec::new(),
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
    /// The SCIM representation of an account: the attributes kept as sent, with what
    /// Chamilo's columns hold now in their place (a change made in Chamilo wins), and `meta`.
    pub fn to_user(&self, a: &Account) -> User {
        let mut user = self.to_user_unversioned(a);
        set_version(&mut user);
        user
    }

    /// [`ChamiloMapping::to_user`] without `meta.version`, for scans that filter many
    /// accounts and return few: [`set_version`] completes the ones returned.
    pub(crate) fn to_user_unversioned(&self, a: &Account) -> User {
        let kept = a
            .attributes
            .as_deref()
            .map(KeptAttributes::decode)
            .unwrap_or_default();
        let mut doc = kept.attributes;
        let mut m = Map::new();
        m.insert("id".into(), json!(a.id.to_string()));
        m.insert(
            "userName".into(),
            json!(a.user_name.clone().unwrap_or_else(|| a.login.clone())),
        );
        if let Some(ext) = &a.external_id {
            m.insert("externalId".into(), json!(ext));
        }
        let mut name = match doc.shift_remove("name") {
            Some(Value::Object(n)) => n,
            _ => Map::new(),
        };
        if let Some(f) = a.firstname.as_ref().filter(|f| !f.is_empty()) {
            name.insert("givenName".into(), json!(f));
        }
        if !a.lastname.is_empty() {
            // An account learned from a fresh lookup has only Chamilo's full name.
            let key = if a.partial { "formatted" } else { "familyName" };
            name.entry(key).or_insert_with(|| json!(a.lastname));
        }
        if !name.is_empty() {
            m.insert("name".into(), Value::Object(name));
        }
        // The e-mail column is always known (listed); phone, official code and status only
        // after a fresh lookup: until then the values as sent stand.
        let email = Some(a.email.as_str());
        let columns = [
            ("emails", EMAIL_TYPE, email),
            ("phoneNumbers", PHONE_TYPE, a.phone.as_deref()),
        ];
        for (attr, wanted_type, column) in columns {
            let items = match doc.shift_remove(attr) {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            };
            let items = with_column(items, wanted_type, column);
            if !items.is_empty() {
                m.insert(attr.into(), Value::Array(items));
            }
        }
        let mut roles = match doc.shift_remove("roles") {
            Some(Value::Array(items)) => items,
            _ => Vec::new(),
        };
        if let Some(i) = chosen(&roles, ROLE_TYPE) {
            let sent = roles[i].get("value").and_then(Value::as_str);
            if let Some(now) = self.returned_role(sent, a.status) {
                if sent != Some(now.as_str()) {
                    roles[i]["value"] = json!(now);
                }
            }
        }
        let mut enterprise = match doc.shift_remove(ENTERPRISE_SCHEMA) {
            Some(Value::Object(e)) => e,
            _ => Map::new(),
        };
        match a.official_code.as_deref() {
            Some("") => {
                enterprise.shift_remove("employeeNumber");
            }
            Some(o) => {
                enterprise.insert("employeeNumber".into(), json!(o));
            }
            None => {}
        }
        // What remains was kept as sent, in the order sent (a field edited by hand cannot
        // override what has a place of its own).
        for (k, v) in doc {
            if !NOT_KEPT.contains(&k.as_str()) && !m.contains_key(&k) {
                m.insert(k, v);
            }
        }
        if !roles.is_empty() {
            m.insert("roles".into(), Value::Array(roles));
        }
        // Unassigned by the identity provider and still active: Chamilo's default, not a value
        // the IdP set. A deactivation is always returned.
        if !(kept.active_unassigned && a.active) {
            m.insert("active".into(), json!(a.active));
        }
        let mut schemas = vec![json!(USER_SCHEMA)];
        if !enterprise.is_empty() {
            schemas.push(json!(ENTERPRISE_SCHEMA));
            m.insert(ENTERPRISE_SCHEMA.into(), Value::Object(enterprise));
        }
        m.insert("schemas".into(), Value::Array(schemas));
        let mut meta = Map::new();
        if let Some(c) = kept.created {
            meta.insert("created".into(), json!(c));
        }
        if let Some(l) = kept.last_modified {
            meta.insert("lastModified".into(), json!(l));
        }
        if !meta.is_empty() {
            m.insert("meta".into(), Value::Object(meta));
        }
        User::from_json(m)
    }
}

/// The kept attribute names an account's document must lack for the account converted
/// without it ([`ChamiloMapping::to_user_unversioned`] with `attributes: None`) to answer
/// `filter` exactly as the whole account does: every attribute the filter names is then made
/// of Chamilo's columns alone, the same either way. `None` when an attribute it names comes
/// from the document whatever its keys (`meta` from its dates, `active` from its
/// "unassigned" flag, `schemas` from its enterprise part) or is not one of the names
/// [`KeyNames`] knows. Paths are walked with a stack: filters can be thousands of terms deep.
pub(crate) fn kept_names_deciding(filter: &Filter) -> Option<KeyNames> {
    let mut names = KeyNames::NONE;
    let mut pending = vec![filter];
    while let Some(f) = pending.pop() {
        let path = match f {
            Filter::And(a, b) | Filter::Or(a, b) => {
                pending.push(a);
                pending.push(b);
                continue;
            }
            Filter::Not(inner) => {
                pending.push(inner);
                continue;
            }
            Filter::Compare { path, .. } | Filter::Present(path) => path,
            // The value filter's paths are sub-attributes of `attr`: `attr` decides.
            Filter::ValuePath { attr, .. } => attr,
        };
        names = names.with(path_names(path)?);
    }
    Some(names)
}

/// The name whose absence from a document makes `path` the same with or without it.
fn path_names(path: &AttrPath) -> Option<KeyNames> {
    match path.urn.as_deref() {
        None => {}
        Some(urn) if is_core_urn(urn) || urn.eq_ignore_ascii_case(ENTERPRISE_SCHEMA) => {}
        Some(_) => return None,
    }
    // `name.givenName` and `name.familyName` come from their columns unless the document
    // holds them: the rest of `name` (`formatted`…) does not change them.
    let column_sub = path.sub_attr.as_deref().filter(|sub| {
        ["givenName", "familyName"]
            .iter()
            .any(|c| c.eq_ignore_ascii_case(sub))
    });
    match column_sub {
        Some(sub) if path.name.eq_ignore_ascii_case("name") => KeyNames::of_name(sub),
        _ => KeyNames::of_name(&path.name),
    }
}

/// Sets `meta.version` of a user `to_user_unversioned` made: a digest of everything returned
/// (attributes and dates, never the version itself), so any change of a returned attribute,
/// also one made in Chamilo's UI and seen by a read, gives another version, and the same
/// state has the same version on every replica.
pub(crate) fn set_version(user: &mut User) {
    use sha2::Digest;
    let mut resource = user.as_json().clone();
    let mut meta = match resource.shift_remove("meta") {
        Some(Value::Object(meta)) => meta,
        _ => Map::new(),
    };
    meta.shift_remove("version");
    let mut hasher = sha2::Sha256::new();
    hasher.update(serde_json::to_vec(&resource).unwrap_or_default());
    hasher.update(serde_json::to_vec(&meta).unwrap_or_default());
    let version = hex::encode(&hasher.finalize()[..12]);
    meta.insert("version".into(), json!(version));
    user.as_json_mut()
        .insert("meta".into(), Value::Object(meta));
}

/// The values of a multi-valued attribute as sent, with Chamilo's one column in the place it
/// was taken from: `None`, the column is not known (the values as sent stand); empty, Chamilo
/// holds none (the value it held is gone); another value, it was changed in Chamilo.
fn with_column(mut items: Vec<Value>, wanted_type: &str, column: Option<&str>) -> Vec<Value> {
    let Some(column) = column else {
        return items;
    };
    match chosen(&items, wanted_type) {
        Some(i) if column.is_empty() => {
            items.remove(i);
        }
        Some(i) if items[i].get("value").and_then(Value::as_str) != Some(column) => {
            if let Some(item) = items[i].as_object_mut() {
                item.insert("value".into(), json!(column));
            } else {
                items[i] = json!({"value": column, "type": "work"});
            }
        }
        Some(_) => {}
        // Nothing kept (an account made outside SCIM, or before issue 10): the column alone.
        None if !column.is_empty() => items.push(json!({"value": column, "type": "work"})),
        None => {}
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_names_what_a_document_must_lack_to_be_left_undecoded() {
        use crate::directory::query::{CompValue, CompareOp};
        let path = |urn: Option<&str>, attr: &str, sub: Option<&str>| AttrPath {
            urn: urn.map(str::to_owned),
            ..AttrPath::new(attr, sub)
        };
        let eq = |p: AttrPath| Filter::Compare {
            path: p,
            op: CompareOp::Eq,
            value: CompValue::Str("x".into()),
        };
        let on = |attr: &str, sub: Option<&str>| eq(path(None, attr, sub));
        let and = |a: Filter, b: Filter| Filter::And(Box::new(a), Box::new(b));
        let name = |n: &str| KeyNames::of_name(n).unwrap();
        // name's columns: only the sub-attribute counts, not `name` (formatted…).
        assert_eq!(
            kept_names_deciding(&on("name", Some("familyName"))),
            Some(name("familyName"))
        );
        assert_eq!(
            kept_names_deciding(&and(
                on("NAME", Some("givenname")),
                Filter::Not(Box::new(on("userName", None)))
            )),
            Some(name("givenName").with(name("userName")))
        );
        let name_pr = Filter::Present(path(None, "name", None));
        assert_eq!(kept_names_deciding(&name_pr), Some(name("name")));
        assert_eq!(
            kept_names_deciding(&on("name", Some("formatted"))),
            Some(name("name"))
        );
        let work_email = Filter::ValuePath {
            attr: path(None, "emails", None),
            filter: Box::new(on("type", None)),
        };
        assert_eq!(kept_names_deciding(&work_email), Some(name("emails")));
        let manager = eq(path(Some(ENTERPRISE_SCHEMA), "manager", Some("value")));
        assert_eq!(kept_names_deciding(&manager), Some(name("manager")));
        // Made from the document whatever its keys, or a schema it does not know: decoded.
        for f in [
            on("active", None),
            on("meta", Some("lastModified")),
            on("schemas", None),
            and(on("userName", None), on("active", None)),
            eq(path(Some("urn:example:other"), "title", None)),
        ] {
            assert_eq!(kept_names_deciding(&f), None, "{f:?}");
        }
        // Chains as long as the parser allows are walked without recursion.
        let long = (0..4_000).fold(on("title", None), |chain, _| {
            Filter::Or(Box::new(chain), Box::new(on("title", None)))
        });
        assert_eq!(kept_names_deciding(&long), Some(name("title")));
    }

    fn user(v: Value) -> User {
        match v {
            Value::Object(m) => User::from_json(m),
            _ => unreachable!(),
        }
    }

    #[test]
    fn locale_alone_sets_the_language() {
        // Okta's create sends only `locale`, and its language was once lost.
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
        assert_eq!(m.kept.get_str("preferredLanguage"), Some("xh"));
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
        assert_eq!(m.kept.get_str("locale"), Some("zu_ZA"));
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
    fn the_version_follows_every_returned_attribute() {
        let mapping = ChamiloMapping::default();
        let kept = |v: Value| {
            Some(
                KeptAttributes {
                    attributes: v.as_object().cloned().unwrap(),
                    ..KeptAttributes::default()
                }
                .encode(),
            )
        };
        let a = Account {
            id: 7,
            login: "ann".into(),
            email: "ann@example.org".into(),
            lastname: "Lee".into(),
            active: true,
            attributes: kept(json!({"title": "T", "addresses": [{"locality": "X"}]})),
            ..Account::default()
        };
        let v = |a: &Account| mapping.to_user(a).version().unwrap().to_owned();
        assert_eq!(v(&a), v(&a.clone()), "the same state, the same version");
        let mut scanned = mapping.to_user_unversioned(&a);
        assert_eq!(scanned.version(), None);
        set_version(&mut scanned);
        assert_eq!(
            scanned.version(),
            Some(v(&a).as_str()),
            "one digest, two paths"
        );
        let changes: [fn(&mut Account); 5] = [
            |a| a.active = false,
            |a| a.lastname = "Li".into(),
            |a| a.phone = Some("555".into()),
            |a| a.external_id = Some("e".into()),
            |a| {
                a.attributes = Some(
                    KeptAttributes {
                        attributes: json!({"title": "T", "addresses": [{"locality": "Y"}]})
                            .as_object()
                            .cloned()
                            .unwrap(),
                        ..KeptAttributes::default()
                    }
                    .encode(),
                )
            },
        ];
        for change in changes {
            let mut b = a.clone();
            change(&mut b);
            assert_ne!(v(&b), v(&a), "{b:?}");
        }
    }

    #[test]
    fn random_passwords_are_long_and_differ() {
        let a = random_password();
        assert_eq!(a.len(), 40);
        assert_ne!(a, random_password());
    }
}
