//! The stand-in's database: users, extra fields, api keys, classes and courses.
//!
//! The rules here are Chamilo's storage rules as observed (see `chamilo-api.md`): case- and
//! accent-insensitive comparisons (`utf8mb3_unicode_ci`), silent truncation, non-BMP characters
//! stored as `????`. Tests use the public methods to change accounts behind the proxy's back.
//!
//! Every extra-field value row carries `updated_at` (whole UNIX seconds, like the real
//! `extra_field_values.updated_at`). The request handlers pass the second explicitly (`*_at`
//! methods, `now` arguments); the direct-edit helpers meant for tests ([`ChamiloState::set_extra`],
//! [`ChamiloState::edit_user`], [`ChamiloState::user_mut`], [`ChamiloState::insert_user`]) stamp
//! with the state's [`Clock`], which the stand-in shares with its server.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::{Deref, DerefMut};

use rand::Rng;

use super::clock::Clock;

mod classes;
mod mysql;

pub use self::classes::{Course, Group};
pub use self::mysql::{fold, php_int, sql_eq, store_text};

/// Column widths Chamilo truncates to (characters).
pub const FIRSTNAME_MAX: usize = 60;
/// See [`FIRSTNAME_MAX`].
pub const LASTNAME_MAX: usize = 60;
/// See [`FIRSTNAME_MAX`].
pub const EMAIL_MAX: usize = 100;
/// See [`FIRSTNAME_MAX`].
pub const PHONE_MAX: usize = 30;
/// See [`FIRSTNAME_MAX`].
pub const OFFICIAL_CODE_MAX: usize = 40;

/// Chamilo's status codes that matter to the stand-in.
pub const STATUS_TEACHER: i64 = 1;
/// Student status.
pub const STATUS_STUDENT: i64 = 5;
/// The anonymous user's status.
pub const STATUS_ANONYMOUS: i64 = 6;

/// Language folders installed in the stand-in (a fresh 1.11 ships these and more).
pub const INSTALLED_LANGUAGES: &[&str] = &[
    "english",
    "french",
    "spanish",
    "german",
    "brazilian",
    "portuguese",
    "italian",
    "dutch",
    "catalan",
    "polish",
    "russian",
    "simpl_chinese",
    "japanese",
    "arabic",
];

/// One row of Chamilo's `user` table (only the columns the web services touch).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: u64,
    pub username: String,
    /// `None` when created without a firstname (SQL NULL).
    pub firstname: Option<String>,
    pub lastname: String,
    pub email: String,
    /// Clear text: this is a test double, and `authenticate` compares it.
    pub password: String,
    pub status: i64,
    pub active: i64,
    pub enabled: i64,
    pub official_code: String,
    pub phone: String,
    pub language: String,
    pub auth_source: String,
    pub expiration_date: Option<String>,
    /// Extra-field values by field variable; `None` is a value row holding NULL.
    pub extra: BTreeMap<String, Option<String>>,
    /// `updated_at` of each row of `extra` (UNIX seconds), by field variable. Kept in step by
    /// every write path; a row without a stamp counts as written at no particular second.
    pub extra_updated_at: BTreeMap<String, u64>,
}

impl User {
    /// `firstname lastname` as Chamilo's `fullName`.
    pub fn full_name(&self) -> String {
        match &self.firstname {
            Some(f) if !f.is_empty() => format!("{f} {}", self.lastname),
            _ => self.lastname.clone(),
        }
    }
}

/// Everything the stand-in stores.
#[derive(Debug, Clone)]
pub struct ChamiloState {
    users: BTreeMap<u64, User>,
    by_username: HashMap<String, u64>,
    next_user_id: u64,
    /// User extra-field variables, in creation order.
    extra_fields: Vec<String>,
    /// (folded field, folded value) → users, so that `users_profiles_by_extra_field` costs
    /// what the cost model says rather than a scan; `None` after an untracked edit
    /// ([`ChamiloState::user_mut`]), rebuilt on the next lookup.
    extra_index: RefCell<Option<ExtraIndex>>,
    admins: BTreeSet<u64>,
    api_keys: HashMap<u64, String>,
    key_owner: HashMap<String, u64>,
    groups: BTreeMap<u64, Group>,
    next_group_id: u64,
    courses: BTreeMap<u64, Course>,
    next_course_id: u64,
    /// Students created by [`ChamiloState::seed_users`] so far (numbering continues).
    seeded: usize,
    /// Default language for users created without a valid one.
    pub platform_language: String,
    /// The second the direct-edit helpers stamp extra values with.
    clock: Clock,
}

/// What [`ChamiloState::save_extra_value`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtraWrite {
    /// The user had no row for the field: one was inserted.
    Inserted,
    /// The row was updated (value and `updated_at`).
    Updated,
}

/// Why [`ChamiloState::save_extra_value`] failed; Chamilo reports all of them the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtraWriteError {
    /// No extra field has this variable.
    UnknownField,
    /// No user has this id.
    UnknownUser,
    /// The row already holds this value and was written in this same second: the `UPDATE`
    /// changed no row, which Chamilo's model reports as a failure.
    NotUpdated,
}

/// Fields for [`ChamiloState::insert_user`]; values are stored after Chamilo's mangling.
#[derive(Debug, Clone, Default)]
pub struct NewUser {
    pub username: String,
    pub firstname: Option<String>,
    pub lastname: String,
    pub email: String,
    pub password: String,
    pub status: i64,
    pub official_code: String,
    pub phone: String,
    pub language: String,
    pub auth_source: String,
    pub expiration_date: Option<String>,
    pub extra: Vec<(String, Option<String>)>,
}

impl ChamiloState {
    /// A fresh install: `admin` (id 1, platform admin) and the anonymous user (id 2), with the
    /// real clock.
    pub fn fresh(admin_password: &str) -> Self {
        Self::fresh_with_clock(admin_password, Clock::Real)
    }

    /// A fresh install whose direct-edit helpers stamp with `clock`.
    pub fn fresh_with_clock(admin_password: &str, clock: Clock) -> Self {
        let now = clock.now();
        let mut state = Self {
            users: BTreeMap::new(),
            by_username: HashMap::new(),
            extra_index: RefCell::new(Some(ExtraIndex::new())),
            next_user_id: 1,
            extra_fields: ["already_logged_in", "gcm_registration_id"]
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            admins: BTreeSet::new(),
            api_keys: HashMap::new(),
            key_owner: HashMap::new(),
            groups: BTreeMap::new(),
            next_group_id: 1,
            courses: BTreeMap::new(),
            next_course_id: 1,
            seeded: 0,
            platform_language: "english".to_owned(),
            clock,
        };
        let admin = state.insert_raw(
            NewUser {
                username: "admin".into(),
                firstname: Some("Chamilo".into()),
                lastname: "Admin".into(),
                email: "admin@example.com".into(),
                password: admin_password.into(),
                status: STATUS_TEACHER,
                official_code: "ADMIN".into(),
                phone: "(000) 001 02 03".into(),
                language: "english".into(),
                auth_source: "platform".into(),
                ..NewUser::default()
            },
            now,
        );
        state.admins.insert(admin);
        state.insert_raw(
            NewUser {
                username: "anon".into(),
                firstname: Some("Joe".into()),
                lastname: "Anonymous".into(),
                email: "anonymous@example.com".into(),
                password: random_hex(16),
                status: STATUS_ANONYMOUS,
                language: "english".into(),
                auth_source: "platform".into(),
                ..NewUser::default()
            },
            now,
        );
        state
    }

    /// The clock the direct-edit helpers stamp with.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    fn insert_raw(&mut self, new: NewUser, now: u64) -> u64 {
        let id = self.next_user_id;
        self.next_user_id += 1;
        let mut extra = BTreeMap::new();
        let mut extra_updated_at = BTreeMap::new();
        for (name, value) in new.extra {
            let field = self.ensure_extra_field(&name);
            extra_updated_at.insert(field.clone(), now);
            extra.insert(field, value.map(|v| store_text(&v, usize::MAX)));
        }
        self.by_username.insert(fold(&new.username), id);
        index_extra(&mut self.extra_index.borrow_mut(), id, &extra, true);
        self.users.insert(
            id,
            User {
                id,
                username: new.username,
                firstname: new.firstname,
                lastname: new.lastname,
                email: new.email,
                password: new.password,
                status: new.status,
                active: 1,
                enabled: 1,
                official_code: new.official_code,
                phone: new.phone,
                language: new.language,
                auth_source: new.auth_source,
                expiration_date: new.expiration_date,
                extra,
                extra_updated_at,
            },
        );
        id
    }

    /// Creates a user as `save_user` stores it (names, email, phone mangled; active; the
    /// `already_logged_in` extra value set), its extra values stamped with the state's clock.
    /// Returns `None` when the login is taken. No validation beyond uniqueness: callers
    /// validate first.
    pub fn insert_user(&mut self, new: NewUser) -> Option<u64> {
        let now = self.clock.now();
        self.insert_user_at(new, now)
    }

    /// [`ChamiloState::insert_user`] at the second `now` (every extra value written, including
    /// `already_logged_in` and the original-id value, gets `updated_at = now`).
    pub fn insert_user_at(&mut self, mut new: NewUser, now: u64) -> Option<u64> {
        if self.user_by_username(&new.username).is_some() {
            return None;
        }
        new.firstname = new.firstname.map(|f| store_text(&f, FIRSTNAME_MAX));
        new.lastname = store_text(&new.lastname, LASTNAME_MAX);
        new.email = store_text(&new.email, EMAIL_MAX);
        new.phone = store_text(&new.phone, PHONE_MAX);
        new.official_code = store_text(&new.official_code, OFFICIAL_CODE_MAX);
        new.extra
            .insert(0, ("already_logged_in".into(), Some("false".into())));
        Some(self.insert_raw(new, now))
    }

    /// Seeds `n` students `user000001`… with external ids `EXT-000001`… in the `ext_id`
    /// extra field; first names are scrambled so that name order differs from id order.
    pub fn seed_users(&mut self, n: usize) -> Vec<u64> {
        let start = self.seeded;
        self.seeded += n;
        (0..n)
            .filter_map(|i| {
                let k = start + i + 1;
                self.insert_user(NewUser {
                    username: format!("user{k:06}"),
                    firstname: Some(format!("U{:06}", (k * 7919) % 1_000_000)),
                    lastname: "Seed".into(),
                    email: format!("user{k:06}@example.org"),
                    password: random_hex(12),
                    status: STATUS_STUDENT,
                    language: "english".into(),
                    auth_source: "platform".into(),
                    extra: vec![("ext_id".into(), Some(format!("EXT-{k:06}")))],
                    ..NewUser::default()
                })
            })
            .collect()
    }

    /// A user by id.
    pub fn user(&self, id: u64) -> Option<&User> {
        self.users.get(&id)
    }

    /// A user by id, for direct edits in tests (bypasses every rule). When the returned guard
    /// goes away, extra values that were added or changed are stamped with the state's clock,
    /// and the login and extra-value lookups are brought in step.
    pub fn user_mut(&mut self, id: u64) -> Option<UserMut<'_>> {
        let user = self.users.get_mut(&id)?;
        Some(UserMut {
            before_extra: user.extra.clone(),
            before_username: user.username.clone(),
            user,
            index: &self.extra_index,
            by_username: &mut self.by_username,
            clock: &self.clock,
        })
    }

    /// Edits a user and keeps the extra-value index in step; extra values the edit adds or
    /// changes are stamped with the state's clock. Returns false for an unknown id.
    pub fn edit_user(&mut self, id: u64, edit: impl FnOnce(&mut User)) -> bool {
        let now = self.clock.now();
        self.edit_user_at(id, now, edit)
    }

    /// [`ChamiloState::edit_user`] at the second `now`.
    pub fn edit_user_at(&mut self, id: u64, now: u64, edit: impl FnOnce(&mut User)) -> bool {
        let Some(user) = self.users.get_mut(&id) else {
            return false;
        };
        let before = user.extra.clone();
        let mut index = self.extra_index.borrow_mut();
        index_extra(&mut index, id, &user.extra, false);
        edit(user);
        restamp(user, &before, now);
        index_extra(&mut index, id, &user.extra, true);
        true
    }

    /// Chamilo's `UserManager::update_extra_field_value` at the second `now`: the field (matched
    /// case-insensitively) must exist; without a row for the user one is inserted; otherwise
    /// the row's value and `updated_at` are updated, and an update that changes nothing (same
    /// value, already written in this second) fails. The value is stored like a `utf8` column
    /// stores it (non-BMP characters as `????`).
    pub fn save_extra_value(
        &mut self,
        id: u64,
        field: &str,
        value: &str,
        now: u64,
    ) -> Result<ExtraWrite, ExtraWriteError> {
        let field = self
            .extra_field(field)
            .map(str::to_owned)
            .ok_or(ExtraWriteError::UnknownField)?;
        let user = self.users.get(&id).ok_or(ExtraWriteError::UnknownUser)?;
        let value = store_text(value, usize::MAX);
        let outcome = match user.extra.get(&field) {
            None => ExtraWrite::Inserted,
            Some(stored) => {
                let unchanged = stored.as_deref() == Some(value.as_str())
                    && user.extra_updated_at.get(&field) == Some(&now);
                if unchanged {
                    return Err(ExtraWriteError::NotUpdated);
                }
                ExtraWrite::Updated
            }
        };
        self.edit_user_at(id, now, |u| {
            u.extra.insert(field.clone(), Some(value));
            u.extra_updated_at.insert(field, now);
        });
        Ok(outcome)
    }

    /// A user by login, case-insensitively, ignoring trailing spaces.
    pub fn user_by_username(&self, username: &str) -> Option<&User> {
        self.by_username
            .get(&fold(username.trim()))
            .and_then(|id| self.users.get(id))
    }

    /// Every user in id order.
    pub fn users(&self) -> impl Iterator<Item = &User> {
        self.users.values()
    }

    /// Number of users (including admin and anonymous).
    pub fn user_count(&self) -> usize {
        self.users.len()
    }

    /// Renames a user behind the proxy's back. Returns false when the new login is taken by
    /// another user or the id is unknown.
    pub fn rename_user(&mut self, id: u64, new_username: &str) -> bool {
        let key = fold(new_username.trim());
        if self.by_username.get(&key).is_some_and(|owner| *owner != id) {
            return false;
        }
        let Some(user) = self.users.get_mut(&id) else {
            return false;
        };
        self.by_username.remove(&fold(&user.username));
        user.username = new_username.to_owned();
        self.by_username.insert(key, id);
        true
    }

    /// Sets `active` (1 or 0) behind the proxy's back.
    pub fn set_active(&mut self, id: u64, active: bool) -> bool {
        match self.users.get_mut(&id) {
            Some(u) => {
                u.active = i64::from(active);
                true
            }
            None => false,
        }
    }

    /// Hard-deletes a user with its memberships and api key; no only-teacher check.
    pub fn remove_user(&mut self, id: u64) -> bool {
        let Some(user) = self.users.remove(&id) else {
            return false;
        };
        self.by_username.remove(&fold(&user.username));
        index_extra(&mut self.extra_index.borrow_mut(), id, &user.extra, false);
        if let Some(key) = self.api_keys.remove(&id) {
            self.key_owner.remove(&key);
        }
        self.admins.remove(&id);
        for group in self.groups.values_mut() {
            group.members.retain(|(uid, _)| *uid != id);
        }
        for course in self.courses.values_mut() {
            course.users.retain(|(uid, _)| *uid != id);
        }
        true
    }

    /// Whether Chamilo's `canDeleteUser` refuses: the user is the only teacher of a course.
    pub fn is_only_teacher(&self, id: u64) -> bool {
        self.courses.values().any(|c| {
            let teachers: Vec<u64> = c
                .users
                .iter()
                .filter(|(_, s)| *s == STATUS_TEACHER)
                .map(|(u, _)| *u)
                .collect();
            teachers == [id]
        })
    }

    /// Whether the user is a platform administrator.
    pub fn is_admin(&self, id: u64) -> bool {
        self.admins.contains(&id)
    }

    /// Grants or revokes platform-administrator rights.
    pub fn set_admin(&mut self, id: u64, admin: bool) {
        if admin {
            self.admins.insert(id);
        } else {
            self.admins.remove(&id);
        }
    }

    /// The user's REST key, if one was ever created.
    pub fn api_key(&self, id: u64) -> Option<&str> {
        self.api_keys.get(&id).map(String::as_str)
    }

    /// The user's REST key, created on first use (as `authenticate` does).
    pub fn ensure_api_key(&mut self, id: u64) -> String {
        if let Some(key) = self.api_keys.get(&id) {
            return key.clone();
        }
        self.new_api_key(id)
    }

    /// Replaces the user's REST key with a new random one.
    pub fn new_api_key(&mut self, id: u64) -> String {
        let key = random_hex(16);
        if let Some(old) = self.api_keys.insert(id, key.clone()) {
            self.key_owner.remove(&old);
        }
        self.key_owner.insert(key.clone(), id);
        key
    }

    /// The owner of a REST key.
    pub fn key_owner(&self, key: &str) -> Option<u64> {
        self.key_owner.get(key).copied()
    }

    /// The stored variable of an extra field, matched case-insensitively.
    pub fn extra_field(&self, name: &str) -> Option<&str> {
        let wanted = fold(name);
        self.extra_fields
            .iter()
            .find(|f| fold(f) == wanted)
            .map(String::as_str)
    }

    /// Creates the extra field if missing and returns its stored variable.
    pub fn ensure_extra_field(&mut self, name: &str) -> String {
        if let Some(existing) = self.extra_field(name) {
            return existing.to_owned();
        }
        self.extra_fields.push(name.to_owned());
        name.to_owned()
    }

    /// Deletes an extra field and its values (as an administrator can in Chamilo's profiling
    /// screen). Returns false when there was no such field.
    pub fn remove_extra_field(&mut self, name: &str) -> bool {
        let Some(field) = self.extra_field(name).map(str::to_owned) else {
            return false;
        };
        self.extra_fields.retain(|f| *f != field);
        let ids: Vec<u64> = self.users().map(|u| u.id).collect();
        for id in ids {
            if let Some(mut u) = self.user_mut(id) {
                u.extra.remove(&field);
                u.extra_updated_at.remove(&field);
            }
        }
        true
    }

    /// Users whose value of `field` equals `value` under the SQL collation, in id order.
    pub fn users_by_extra_value(&self, field: &str, value: &str) -> Vec<&User> {
        let Some(field) = self.extra_field(field) else {
            return Vec::new();
        };
        let mut index = self.extra_index.borrow_mut();
        let index = index.get_or_insert_with(|| {
            let mut fresh = Some(ExtraIndex::new());
            for u in self.users.values() {
                index_extra(&mut fresh, u.id, &u.extra, true);
            }
            fresh.unwrap_or_default()
        });
        let key = (fold(field), fold(value.trim_end_matches(' ')));
        index
            .get(&key)
            .into_iter()
            .flatten()
            .filter_map(|id| self.users.get(id))
            // Defensive: the index only narrows; the collation rule decides.
            .filter(|u| {
                u.extra
                    .get(field)
                    .and_then(|v| v.as_deref())
                    .is_some_and(|v| sql_eq(v, value))
            })
            .collect()
    }

    /// Sets an extra-field value directly (creating the field), stamped with the state's
    /// clock whether or not it changed. No same-second rule: this is a write behind
    /// Chamilo's back.
    pub fn set_extra(&mut self, id: u64, field: &str, value: Option<&str>) -> bool {
        let field = self.ensure_extra_field(field);
        let now = self.clock.now();
        self.edit_user_at(id, now, |u| {
            u.extra_updated_at.insert(field.clone(), now);
            u.extra.insert(field, value.map(str::to_owned));
        })
    }

    /// Consumes the next user id without creating a user, as a failed concurrent insert does.
    pub fn burn_user_id(&mut self) {
        self.next_user_id += 1;
    }
}

/// A user being edited directly (see [`ChamiloState::user_mut`]); dereferences to the
/// [`User`].
pub struct UserMut<'a> {
    user: &'a mut User,
    index: &'a RefCell<Option<ExtraIndex>>,
    by_username: &'a mut HashMap<String, u64>,
    clock: &'a Clock,
    before_extra: BTreeMap<String, Option<String>>,
    before_username: String,
}

impl Deref for UserMut<'_> {
    type Target = User;

    fn deref(&self) -> &User {
        self.user
    }
}

impl DerefMut for UserMut<'_> {
    fn deref_mut(&mut self) -> &mut User {
        self.user
    }
}

impl Drop for UserMut<'_> {
    fn drop(&mut self) {
        let id = self.user.id;
        restamp(self.user, &self.before_extra, self.clock.now());
        let mut index = self.index.borrow_mut();
        index_extra(&mut index, id, &self.before_extra, false);
        index_extra(&mut index, id, &self.user.extra, true);
        if self.user.username != self.before_username {
            let old = fold(&self.before_username);
            if self.by_username.get(&old) == Some(&id) {
                self.by_username.remove(&old);
            }
            self.by_username.insert(fold(&self.user.username), id);
        }
    }
}

/// Stamps the extra values that are new or differ from `before` with `now`, and forgets the
/// stamps of removed ones.
fn restamp(user: &mut User, before: &BTreeMap<String, Option<String>>, now: u64) {
    let User {
        extra,
        extra_updated_at,
        ..
    } = user;
    extra_updated_at.retain(|field, _| extra.contains_key(field));
    for (field, value) in extra.iter() {
        if before.get(field) != Some(value) || !extra_updated_at.contains_key(field) {
            extra_updated_at.insert(field.clone(), now);
        }
    }
}

type ExtraIndex = HashMap<(String, String), BTreeSet<u64>>;

/// Adds (or removes) a user's non-NULL extra values to (from) the lookup index.
fn index_extra(
    index: &mut Option<ExtraIndex>,
    id: u64,
    extra: &BTreeMap<String, Option<String>>,
    add: bool,
) {
    let Some(index) = index.as_mut() else {
        return;
    };
    for (field, value) in extra {
        let Some(value) = value else { continue };
        let key = (fold(field), fold(value.trim_end_matches(' ')));
        if add {
            index.entry(key).or_default().insert(id);
        } else if let Some(ids) = index.get_mut(&key) {
            ids.remove(&id);
            if ids.is_empty() {
                index.remove(&key);
            }
        }
    }
}

/// `n` random bytes as lower-case hex.
pub fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rng().fill(&mut bytes[..]);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_bmp_becomes_four_question_marks_then_truncates() {
        assert_eq!(store_text("Zoé 😀 X", 60), "Zoé ???? X");
        assert_eq!(store_text(&"F".repeat(61), 60).len(), 60);
        assert_eq!(store_text("ééé", 2), "éé");
    }

    #[test]
    fn collation_rules() {
        assert!(sql_eq("SHARED", "shared "));
        assert!(!sql_eq("SHARED", " shared"));
        assert!(sql_eq("Émile", "emile"));
        assert!(!sql_eq("SHAR%", "SHARED"));
    }

    #[test]
    fn php_int_cast() {
        assert_eq!(php_int("42"), 42);
        assert_eq!(php_int("abc"), 0);
        assert_eq!(php_int("5x"), 5);
        assert_eq!(php_int("-3"), -3);
        assert_eq!(php_int(""), 0);
    }

    #[test]
    fn fresh_install_and_usernames_are_case_insensitive() {
        let mut s = ChamiloState::fresh("pw");
        assert_eq!(s.user_count(), 2);
        assert!(s.is_admin(1));
        let id = s
            .insert_user(NewUser {
                username: "MixedCase".into(),
                lastname: "L".into(),
                ..NewUser::default()
            })
            .unwrap();
        assert_eq!(id, 3);
        assert_eq!(s.user_by_username("mixedcase").map(|u| u.id), Some(3));
        assert!(s
            .insert_user(NewUser {
                username: "MIXEDCASE".into(),
                ..NewUser::default()
            })
            .is_none());
        assert!(s.rename_user(3, "other"));
        assert!(s.user_by_username("mixedcase").is_none());
        assert!(!s.rename_user(3, "ADMIN"));
    }

    #[test]
    fn save_extra_value_same_second_rule() {
        let mut s = ChamiloState::fresh("pw");
        let id = s
            .insert_user_at(
                NewUser {
                    username: "u".into(),
                    extra: vec![("ext".into(), Some("A".into()))],
                    ..NewUser::default()
                },
                100,
            )
            .unwrap();
        assert_eq!(s.user(id).unwrap().extra_updated_at.get("ext"), Some(&100));
        assert_eq!(
            s.save_extra_value(id, "ext", "A", 100),
            Err(ExtraWriteError::NotUpdated)
        );
        assert_eq!(
            s.save_extra_value(id, "EXT", "A", 101),
            Ok(ExtraWrite::Updated)
        );
        assert_eq!(s.user(id).unwrap().extra_updated_at.get("ext"), Some(&101));
        assert_eq!(
            s.save_extra_value(id, "ext", "B", 101),
            Ok(ExtraWrite::Updated)
        );
        assert_eq!(
            s.save_extra_value(id, "nope", "B", 102),
            Err(ExtraWriteError::UnknownField)
        );
        assert_eq!(
            s.save_extra_value(id, "already_logged_in", "", 101),
            Ok(ExtraWrite::Updated)
        );
        assert_eq!(
            s.save_extra_value(id, "gcm_registration_id", "", 101),
            Ok(ExtraWrite::Inserted)
        );
        assert_eq!(
            s.save_extra_value(id, "gcm_registration_id", "", 101),
            Err(ExtraWriteError::NotUpdated)
        );
        assert_eq!(
            s.save_extra_value(99, "ext", "B", 101),
            Err(ExtraWriteError::UnknownUser)
        );
        // The lookup index follows.
        assert_eq!(s.users_by_extra_value("ext", "b").len(), 1);
    }

    #[test]
    fn direct_edits_stamp_with_the_clock() {
        let clock = Clock::manual(500);
        let mut s = ChamiloState::fresh_with_clock("pw", clock.clone());
        let id = s
            .insert_user(NewUser {
                username: "u".into(),
                extra: vec![("ext".into(), Some("A".into()))],
                ..NewUser::default()
            })
            .unwrap();
        let stamp =
            |s: &ChamiloState, f: &str| s.user(id).unwrap().extra_updated_at.get(f).copied();
        assert_eq!(stamp(&s, "ext"), Some(500));
        clock.advance(1);
        assert!(s.set_extra(id, "ext", Some("A")));
        assert_eq!(stamp(&s, "ext"), Some(501), "set_extra always writes");
        clock.advance(1);
        // The guard stamps what changed, keeps the rest, and follows a rename.
        s.ensure_extra_field("other");
        s.user_mut(id)
            .unwrap()
            .extra
            .insert("other".into(), Some("O".into()));
        assert_eq!(
            (stamp(&s, "other"), stamp(&s, "ext")),
            (Some(502), Some(501))
        );
        s.user_mut(id).unwrap().username = "Renamed".into();
        assert_eq!(s.user_by_username("renamed").map(|u| u.id), Some(id));
        assert!(s.user_by_username("u").is_none());
        assert_eq!(s.users_by_extra_value("other", "o").len(), 1);
        clock.advance(1);
        s.edit_user(id, |u| {
            u.extra.remove("other");
            u.extra.insert("ext".into(), Some("B".into()));
        });
        assert_eq!((stamp(&s, "other"), stamp(&s, "ext")), (None, Some(503)));
        assert!(s.users_by_extra_value("other", "o").is_empty());
    }

    #[test]
    fn only_teacher_detection() {
        let mut s = ChamiloState::fresh("pw");
        let c = s.insert_course("C1", "t").unwrap();
        s.course_mut(c).unwrap().users.push((1, STATUS_TEACHER));
        assert!(s.is_only_teacher(1));
        s.course_mut(c).unwrap().users.push((2, STATUS_TEACHER));
        assert!(!s.is_only_teacher(1));
    }
}
