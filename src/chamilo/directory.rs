//! The `directory` implementation for Chamilo: SCIM users ⇄ Chamilo accounts (issue 4 §2).
//!
//! | SCIM | Chamilo |
//! |---|---|
//! | `id` | user id |
//! | `userName` | extra field `scim_user_name` (verbatim); the login is derived from it (see `username`). Accounts made outside SCIM answer to their login until the first SCIM write sets the field (adoption) |
//! | `name.givenName` / `name.familyName` | `firstname` / `lastname` (60 characters) |
//! | primary (else first) `emails` | `email` (100 characters; required) |
//! | work (else first) `phoneNumbers` | `phone` (30 characters) |
//! | `active` | `active` |
//! | `preferredLanguage` (else `locale`) | `language`, through a table (`en` → `english`…) |
//! | `externalId` | extra field `scim_external_id` |
//! | enterprise `employeeNumber` | `official_code` (40 characters) |
//! | `roles[].value` (primary or first) | `status`, through a table (default student, 5) |
//! | `password` | password (never returned; a long random one when none is given) |
//!
//! Values Chamilo would truncate or mangle (too long, outside the Basic Multilingual Plane),
//! an unknown language or role are refused with 400 `invalidValue` naming the attribute,
//! before any call. Accounts named in `protected_logins` (the service account, administrators)
//! cannot be changed or deleted through SCIM.
//!
//! Not readable back from Chamilo's web services, hence not returned: `preferredLanguage`,
//! `roles` (status is returned only after a fresh lookup), `password`.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde_json::{json, Map, Value};

use super::client::{ChamiloClient, DeleteOutcome, NewAccount};
use super::error::ChamiloError;
use super::index::{Account, AccountLookup, AccountRef, IndexFields};
use super::username::{login_candidates, LoginRules, LoginTransform};
use crate::config::Secret;
use crate::directory::{
    Capabilities, DirFuture, Directory, DirectoryError, ListQuery, Page, User, ENTERPRISE_SCHEMA,
    USER_SCHEMA,
};
use crate::scim::filter::CompValue;

/// What SCIM `DELETE` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Deprovision {
    /// `active=0` (the account and its history stay).
    #[default]
    Deactivate,
    /// A hard delete; refused (409) for the only teacher of a course.
    Delete,
    /// A hard delete, falling back to deactivation for the only teacher of a course.
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
    /// `auth_source` of created users (`platform`, or an SSO source name).
    pub auth_source: String,
    pub deprovision: Deprovision,
    /// Logins that SCIM may never see, modify or delete (case-insensitive).
    pub protected_logins: Vec<String>,
    pub list_scope: ListScope,
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
            auth_source: "platform".into(),
            deprovision: Deprovision::default(),
            protected_logins: vec!["admin".into()],
            list_scope: ListScope::default(),
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
        let mut protected_logins = c.protected_logins.clone();
        protected_logins.push(c.username.clone());
        Ok(Self {
            fields: IndexFields {
                user_name: c.user_name_field.clone(),
                external_id: c.external_id_field.clone(),
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
            auth_source: c.auth_source.clone(),
            deprovision,
            protected_logins,
            list_scope,
        })
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
    /// `None` when the user has no `roles`: keep Chamilo's status on updates (a PATCH round
    /// trip cannot carry it, Chamilo's status is not readable), the default on create.
    pub status: Option<i64>,
    pub password: Option<String>,
}

fn invalid(attr: &str, detail: impl Into<String>) -> DirectoryError {
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
        }
        let employee = format!("{ENTERPRISE_SCHEMA}:employeeNumber");
        let official_code = user.get_str(&employee).map(str::to_owned);
        if let Some(o) = &official_code {
            storable(&employee, o, Some(40))?;
        }
        let language = match user
            .get_str("preferredLanguage")
            .or_else(|| user.get_str("locale"))
        {
            Some(tag) => Some(self.language(tag).ok_or_else(|| {
                invalid(
                    "preferredLanguage",
                    format!("no Chamilo language is configured for '{tag}'"),
                )
            })?),
            None => None,
        };
        let status = match pick_typed(user, "roles", "") {
            Some(role) => Some(
                self.role_status
                    .iter()
                    .find(|(r, _)| r.eq_ignore_ascii_case(role))
                    .map(|(_, s)| *s)
                    .ok_or_else(|| {
                        invalid(
                            "roles",
                            format!("no Chamilo status is configured for role '{role}'"),
                        )
                    })?,
            ),
            None => None,
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
            status,
            password: user.password().map(str::to_owned),
        })
    }

    fn language(&self, tag: &str) -> Option<String> {
        let tag = tag.trim().to_lowercase().replace('_', "-");
        let primary = tag.split('-').next().unwrap_or("").to_owned();
        [tag, primary].iter().find_map(|t| {
            self.languages
                .iter()
                .find(|(k, _)| k == t)
                .map(|(_, f)| f.clone())
        })
    }

    fn is_protected(&self, login: &str) -> bool {
        self.protected_logins
            .iter()
            .any(|p| p.eq_ignore_ascii_case(login))
    }
}

/// A long random password for accounts created without one (Chamilo would otherwise use the
/// auth source's name as the password).
fn random_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789-_";
    let mut rng = rand::rng();
    (0..40)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn reserved_account() -> DirectoryError {
    DirectoryError::Forbidden {
        detail: "this Chamilo account cannot be managed through SCIM".into(),
    }
}

fn from_chamilo(e: ChamiloError) -> DirectoryError {
    match e {
        ChamiloError::LoginTaken { .. } => DirectoryError::Conflict {
            detail: "the login is already taken in Chamilo".into(),
        },
        ChamiloError::NotFound { .. } => DirectoryError::NotFound,
        ChamiloError::Unreachable { .. } => DirectoryError::Unavailable {
            retry_after: Some(Duration::from_secs(5)),
        },
        ChamiloError::Timeout { .. } => DirectoryError::Timeout,
        other => DirectoryError::Backend {
            detail: other.to_string(),
        },
    }
}

/// Chamilo as a SCIM directory.
pub struct ChamiloDirectory {
    client: Arc<ChamiloClient>,
    lookup: Arc<AccountLookup>,
    mapping: ChamiloMapping,
}

impl ChamiloDirectory {
    /// A directory over `client`, with its index lookups and mapping.
    pub fn new(
        client: Arc<ChamiloClient>,
        lookup: Arc<AccountLookup>,
        mapping: ChamiloMapping,
    ) -> Self {
        lookup.set_protected_logins(&mapping.protected_logins, mapping.login_rules);
        Self {
            client,
            lookup,
            mapping,
        }
    }

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
            m.insert(
                "emails".into(),
                json!([{"value": a.email, "type": "work", "primary": true}]),
            );
        }
        if let Some(p) = a.phone.as_ref().filter(|p| !p.is_empty()) {
            m.insert("phoneNumbers".into(), json!([{"value": p, "type": "work"}]));
        }
        if let Some(o) = a.official_code.as_ref().filter(|o| !o.is_empty()) {
            schemas.push(json!(ENTERPRISE_SCHEMA));
            m.insert(ENTERPRISE_SCHEMA.into(), json!({"employeeNumber": o}));
        }
        m.insert("active".into(), json!(a.active));
        m.insert("schemas".into(), Value::Array(schemas));
        User::from_json(m)
    }

    async fn ensure_index(&self) -> Result<(), DirectoryError> {
        if !self.lookup.index.is_ready() {
            self.lookup.rebuild().await.map_err(from_chamilo)?;
        }
        Ok(())
    }

    async fn account(&self, id: &str) -> Result<Option<Account>, DirectoryError> {
        let Ok(id) = id.parse::<u64>() else {
            return Ok(None);
        };
        self.ensure_index().await?;
        self.lookup.by_id(id).await.map_err(from_chamilo)
    }

    async fn create_user(&self, user: User) -> Result<User, DirectoryError> {
        let m = self.mapping.map(&user)?;
        let email = m
            .email
            .clone()
            .ok_or_else(|| invalid("emails", "Chamilo requires an e-mail address"))?;
        let firstname = m.firstname.clone().unwrap_or_default();
        let lastname = m.lastname.clone().unwrap_or_default();
        self.ensure_index().await?;
        if self.lookup.is_reserved_login(&m.user_name) {
            return Err(DirectoryError::Conflict {
                detail: format!(
                    "userName '{}' is a Chamilo account that SCIM may not manage (the service account, a protected login or the anonymous user)",
                    m.user_name
                ),
            });
        }
        if self
            .lookup
            .by_user_name(&m.user_name)
            .await
            .map_err(from_chamilo)?
            .is_some()
        {
            return Err(DirectoryError::Conflict {
                detail: "userName is already in use".into(),
            });
        }
        if let Some(ext) = &m.external_id {
            if self
                .lookup
                .by_external_id(ext)
                .await
                .map_err(from_chamilo)?
                .is_some()
            {
                return Err(DirectoryError::Conflict {
                    detail: "externalId is already in use".into(),
                });
            }
        }
        let candidates = login_candidates(
            &m.user_name,
            self.mapping.login_rules,
            self.mapping.login_transform,
        )
        .map_err(|e| invalid("userName", e.to_string()))?;
        let password = Secret::new(m.password.clone().unwrap_or_else(random_password));
        let mut created: Option<(u64, String)> = None;
        for login in candidates {
            let account = NewAccount {
                username: login.clone(),
                password: password.clone(),
                firstname: firstname.clone(),
                lastname: lastname.clone(),
                email: email.clone(),
                status: m.status.unwrap_or(self.mapping.default_status),
                language: m.language.clone(),
                phone: m.phone.clone(),
                auth_source: Some(self.mapping.auth_source.clone()),
                expiration_date: None,
                handle: Some((self.mapping.fields.user_name.clone(), m.user_name.clone())),
                extra: m
                    .external_id
                    .iter()
                    .map(|e| (self.mapping.fields.external_id.clone(), e.clone()))
                    .collect(),
            };
            match self.client.save_user(&account).await {
                Ok(id) => {
                    created = Some((id, login));
                    break;
                }
                Err(ChamiloError::LoginTaken { .. }) => continue,
                Err(e) => return Err(from_chamilo(e)),
            }
        }
        let Some((id, login)) = created else {
            return Err(DirectoryError::Conflict {
                detail: "every Chamilo login derived from this userName is taken".into(),
            });
        };
        // save_user ignores `active` and `official_code`: a follow-up update sets them.
        let mut follow_up: Vec<(&str, String)> = Vec::new();
        if !m.active {
            follow_up.push(("active", "0".into()));
        }
        if let Some(o) = &m.official_code {
            follow_up.push(("official_code", o.clone()));
        }
        if !follow_up.is_empty() {
            if let Err(e) = self.client.update_user(&login, &follow_up, &[]).await {
                // All or nothing (invariant 4): remove the half-made account.
                let _ = self.client.delete_user(id).await;
                return Err(from_chamilo(e));
            }
        }
        let account = Account {
            id,
            login,
            user_name: Some(m.user_name.clone()),
            external_id: m.external_id.clone(),
            active: m.active,
            firstname: Some(firstname),
            lastname,
            email,
            partial: false,
            phone: m.phone.clone(),
            official_code: m.official_code.clone(),
            status: Some(m.status.unwrap_or(self.mapping.default_status)),
        };
        self.lookup.index.upsert(account.clone());
        tracing::info!(chamilo.user_id = id, "created user");
        Ok(self.to_user(&account))
    }

    async fn replace_user(&self, id: &str, user: User) -> Result<User, DirectoryError> {
        let m = self.mapping.map(&user)?;
        let current = self.account(id).await?.ok_or(DirectoryError::NotFound)?;
        if self.mapping.is_protected(&current.login) || self.lookup.is_reserved(&current) {
            return Err(reserved_account());
        }
        // The userName the account answers to now: its field, or (not yet adopted) its login.
        let answers_to = current.user_name.as_deref().unwrap_or(&current.login);
        if !answers_to.eq_ignore_ascii_case(&m.user_name) {
            if let Some(other) = self
                .lookup
                .by_user_name(&m.user_name)
                .await
                .map_err(from_chamilo)?
            {
                if other.id != current.id {
                    return Err(DirectoryError::Conflict {
                        detail: "userName is already in use".into(),
                    });
                }
            }
        }
        let mut login = current.login.clone();
        let renamed = match current.user_name.as_deref() {
            Some(u) => u != m.user_name,
            // Adoption: the login already is the userName (Chamilo compares logins
            // case-insensitively), so only the field is set below.
            None => !current.login.eq_ignore_ascii_case(&m.user_name),
        };
        if renamed || m.password.is_some() {
            let mut current = current.clone();
            if current.user_name.is_none() {
                // SOAP addresses users by a userName-field handle: give the account one.
                self.adopt(&current).await?;
                current.user_name = Some(current.login.clone());
            }
            login = self.edit_credentials(&current, &m, renamed).await?;
        }
        // A value the proxy never knew (an account learned from a fresh lookup only) is
        // left alone when the new state lacks it; a known one is cleared.
        let keep_unknown = current.partial;
        let mut changes: Vec<(&str, String)> =
            vec![("active", if m.active { "1" } else { "0" }.into())];
        match (&m.firstname, keep_unknown) {
            (Some(f), _) => changes.push(("firstname", f.clone())),
            (None, false) => changes.push(("firstname", String::new())),
            (None, true) => {}
        }
        match (&m.lastname, keep_unknown) {
            (Some(l), _) => changes.push(("lastname", l.clone())),
            (None, false) => changes.push(("lastname", String::new())),
            (None, true) => {}
        }
        match (&m.email, keep_unknown) {
            (Some(e), _) => changes.push(("email", e.clone())),
            (None, false) => {
                return Err(invalid("emails", "Chamilo requires an e-mail address"));
            }
            (None, true) => {}
        }
        if let Some(s) = m.status {
            changes.push(("status", s.to_string()));
        }
        // Phone and official code are cleared only when they were known (and so returned to
        // the identity provider): an attribute the proxy could not read is not wiped by a
        // PATCH round trip that could not carry it.
        let known = |v: &Option<String>| v.as_ref().is_some_and(|v| !v.is_empty());
        if m.phone.is_some() || known(&current.phone) {
            changes.push(("phone", m.phone.clone().unwrap_or_default()));
        }
        if m.official_code.is_some() || known(&current.official_code) {
            changes.push(("official_code", m.official_code.clone().unwrap_or_default()));
        }
        if let Some(l) = &m.language {
            changes.push(("language", l.clone()));
        }
        let mut extra = vec![(self.mapping.fields.user_name.clone(), m.user_name.clone())];
        extra.push((
            self.mapping.fields.external_id.clone(),
            m.external_id.clone().unwrap_or_default(),
        ));
        self.client
            .update_user(&login, &changes, &extra)
            .await
            .map_err(from_chamilo)?;
        let account = Account {
            id: current.id,
            login,
            user_name: Some(m.user_name.clone()),
            external_id: m.external_id.clone(),
            active: m.active,
            firstname: m.firstname.clone().or(current.firstname.clone()),
            lastname: m.lastname.clone().unwrap_or(current.lastname.clone()),
            email: m.email.clone().unwrap_or(current.email.clone()),
            partial: current.partial && (m.firstname.is_none() || m.email.is_none()),
            phone: m.phone.clone(),
            official_code: m.official_code.clone(),
            status: m.status.or(current.status),
        };
        self.lookup.index.upsert(account.clone());
        Ok(self.to_user(&account))
    }

    /// Renames and/or sets the password through SOAP, addressed by the userName handle.
    /// `WSEditUserCredentials` refuses inactive users, so those are activated for the call and
    /// deactivated again. Returns the login in force afterwards.
    async fn edit_credentials(
        &self,
        current: &Account,
        m: &Mapped,
        renamed: bool,
    ) -> Result<String, DirectoryError> {
        let handle = current.user_name.clone().unwrap_or(current.login.clone());
        let field = self.mapping.fields.user_name.clone();
        let logins = if !renamed {
            vec![current.login.clone()]
        } else {
            login_candidates(
                &m.user_name,
                self.mapping.login_rules,
                self.mapping.login_transform,
            )
            .map_err(|e| invalid("userName", e.to_string()))?
        };
        let password = m.password.clone().map(Secret::new);
        if !current.active {
            self.client
                .update_user(&current.login, &[("active", "1".into())], &[])
                .await
                .map_err(from_chamilo)?;
        }
        let mut result = Err(DirectoryError::Conflict {
            detail: "every Chamilo login derived from this userName is taken".into(),
        });
        for login in logins {
            match self
                .client
                .edit_user_credentials(&field, &handle, &login, password.as_ref())
                .await
            {
                Ok(true) => {
                    result = Ok(login);
                    break;
                }
                Ok(false) => continue,
                Err(e) => {
                    result = Err(from_chamilo(e));
                    break;
                }
            }
        }
        if !current.active {
            let login = result.as_ref().map_or(current.login.clone(), Clone::clone);
            // Restore the state even when the edit failed (invariant 4).
            self.client
                .update_user(&login, &[("active", "0".into())], &[])
                .await
                .map_err(from_chamilo)?;
        }
        result
    }

    /// Sets the userName field of an account made outside SCIM to its login (the userName it
    /// answers to), so that it is SCIM-managed from now on.
    async fn adopt(&self, current: &Account) -> Result<(), DirectoryError> {
        self.client
            .update_user(
                &current.login,
                &[],
                &[(self.mapping.fields.user_name.clone(), current.login.clone())],
            )
            .await
            .map_err(from_chamilo)?;
        let mut a = current.clone();
        a.user_name = Some(current.login.clone());
        self.lookup.index.upsert(a);
        tracing::info!(
            chamilo.user_id = current.id,
            "adopted existing Chamilo account"
        );
        Ok(())
    }

    async fn delete_user(&self, id: &str) -> Result<(), DirectoryError> {
        let current = self.account(id).await?.ok_or(DirectoryError::NotFound)?;
        if self.mapping.is_protected(&current.login) || self.lookup.is_reserved(&current) {
            return Err(reserved_account());
        }
        let deactivate = || async {
            // The first write through SCIM adopts an account made outside it.
            let adopt: Vec<(String, String)> = if current.user_name.is_none() {
                vec![(self.mapping.fields.user_name.clone(), current.login.clone())]
            } else {
                Vec::new()
            };
            self.client
                .update_user(&current.login, &[("active", "0".into())], &adopt)
                .await
                .map_err(from_chamilo)?;
            let mut a = current.clone();
            a.active = false;
            if a.user_name.is_none() {
                a.user_name = Some(a.login.clone());
            }
            self.lookup.index.upsert(a);
            Ok(())
        };
        match self.mapping.deprovision {
            Deprovision::Deactivate => deactivate().await,
            Deprovision::Delete | Deprovision::DeleteOrDeactivate => {
                match self
                    .client
                    .delete_user(current.id)
                    .await
                    .map_err(from_chamilo)?
                {
                    DeleteOutcome::Deleted => {
                        self.lookup.index.remove(current.id);
                        Ok(())
                    }
                    DeleteOutcome::Refused
                        if self.mapping.deprovision == Deprovision::DeleteOrDeactivate =>
                    {
                        deactivate().await
                    }
                    DeleteOutcome::Refused => Err(DirectoryError::Conflict {
                        detail: "Chamilo refuses to delete the only teacher of a course".into(),
                    }),
                }
            }
        }
    }

    /// A search the index cannot answer by key (no filter, or a filter on other attributes):
    /// the accounts in the configured list scope, never protected or reserved ones. Paging
    /// without a filter or sort (Okta's imports) copies only the page, in id order; other
    /// searches look at the index a chunk at a time.
    fn search(&self, query: &ListQuery) -> Page {
        let managed_only = self.mapping.list_scope == ListScope::Managed;
        let reserved = self.lookup.reserved_check();
        let keep = |a: AccountRef<'_>| {
            (!managed_only || a.user_name().is_some())
                && !self.mapping.is_protected(a.login())
                && !reserved(a)
        };
        if query.filter.is_none() && query.sort.is_none() {
            let page = self
                .lookup
                .index
                .page(keep, query.start_index.max(1) - 1, query.count);
            let resources = page.accounts.iter().map(|a| self.to_user(a)).collect();
            return Page {
                total: page.total,
                resources,
            };
        }
        let chunks = self
            .lookup
            .index
            .chunks(keep, SEARCH_CHUNK)
            .map(|accounts| accounts.iter().map(|a| self.to_user(a)).collect());
        query.select_chunks(chunks)
    }

    async fn find_users(&self, query: &ListQuery) -> Result<Page, DirectoryError> {
        self.ensure_index().await?;
        let str_of = |v: &CompValue| match v {
            CompValue::Str(s) => Some(s.clone()),
            CompValue::Num(n) => Some(n.to_string()),
            _ => None,
        };
        let candidates: Vec<Account> = match &query.filter {
            Some(f) => {
                if let Some(v) = f.equality_on("userName").and_then(str_of) {
                    self.lookup
                        .by_user_name(&v)
                        .await
                        .map_err(from_chamilo)?
                        .into_iter()
                        .collect()
                } else if let Some(v) = f.equality_on("externalId").and_then(str_of) {
                    self.lookup
                        .by_external_id(&v)
                        .await
                        .map_err(from_chamilo)?
                        .into_iter()
                        .collect()
                } else if let Some(v) = f.equality_on("id").and_then(str_of) {
                    self.account(&v).await?.into_iter().collect()
                } else {
                    return Ok(self.search(query));
                }
            }
            None => return Ok(self.search(query)),
        };
        let candidates: Vec<Account> = candidates
            .into_iter()
            .filter(|a| !self.mapping.is_protected(&a.login) && !self.lookup.is_reserved(a))
            .collect();
        let users = candidates.iter().map(|a| self.to_user(a)).collect();
        Ok(query.select(users))
    }
}

/// Accounts converted to SCIM at a time by a search the index cannot answer by key.
const SEARCH_CHUNK: usize = 1024;

/// The core attributes `ChamiloMapping::map` reads: the engine drops every other one before
/// the directory sees it, so each source of the mapping table above must be listed.
const STORED_ATTRIBUTES: &[&str] = &[
    "userName",
    "externalId",
    "name.givenName",
    "name.familyName",
    "emails",
    "phoneNumbers",
    "active",
    "preferredLanguage",
    "locale",
    "roles",
    "password",
];

impl Directory for ChamiloDirectory {
    fn capabilities(&self) -> Capabilities {
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
            required: vec!["emails".to_owned()],
        }
    }

    fn create(&self, user: User) -> DirFuture<'_, User> {
        Box::pin(self.create_user(user))
    }

    fn get<'a>(&'a self, id: &'a str) -> DirFuture<'a, Option<User>> {
        Box::pin(async move {
            Ok(self
                .account(id)
                .await?
                .filter(|a| !self.mapping.is_protected(&a.login) && !self.lookup.is_reserved(a))
                .map(|a| self.to_user(&a)))
        })
    }

    fn find<'a>(&'a self, query: &'a ListQuery) -> DirFuture<'a, Page> {
        Box::pin(self.find_users(query))
    }

    fn replace<'a>(
        &'a self,
        id: &'a str,
        user: User,
        _expected_version: Option<&'a str>,
    ) -> DirFuture<'a, User> {
        // `versions: false`: the engine sends no precondition.
        Box::pin(self.replace_user(id, user))
    }

    fn delete<'a>(&'a self, id: &'a str) -> DirFuture<'a, ()> {
        Box::pin(self.delete_user(id))
    }
}

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
            "phoneNumbers",
            "roles",
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
        let err = mapping
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
    }

    #[test]
    fn random_passwords_are_long_and_differ() {
        let a = random_password();
        assert_eq!(a.len(), 40);
        assert_ne!(a, random_password());
    }
}
