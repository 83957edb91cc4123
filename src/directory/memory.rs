//! An in-memory [`Directory`]: the backend of the engine's tests and of `examples/scim_memory.rs`.
//! It keeps groups too ([`super::GroupStore`], in `groups`), unless built
//! [`MemoryDirectory::without_groups`].

mod groups;

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde_json::Value;

use crate::directory::query::CompValue;

use super::{
    user_name_key, Capabilities, DirFuture, Directory, DirectoryError, GroupStore, ListQuery, Page,
    User,
};

/// Users kept in a map; `userName` unique by [`user_name_key`] (NFC, trimmed, any case);
/// versions are counters.
#[derive(Debug, Default)]
pub struct MemoryDirectory {
    state: Mutex<State>,
    capabilities: Capabilities,
    /// Whether [`Directory::groups`] answers `None` (a backend without groups, for tests).
    no_groups: bool,
}

#[derive(Debug, Default)]
struct State {
    /// Users as canonical JSON objects, so lists can match them by reference.
    users: BTreeMap<String, Value>,
    /// Groups as canonical JSON objects, `members` included.
    groups: BTreeMap<String, Value>,
    /// Lower-cased `userName` → id: uniqueness checks and lookups without a scan.
    by_user_name: HashMap<String, String>,
    next_version: u64,
}

impl MemoryDirectory {
    /// An empty directory storing every schema attribute.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty directory declaring `capabilities`.
    pub fn with_capabilities(capabilities: Capabilities) -> Self {
        Self {
            state: Mutex::default(),
            capabilities,
            no_groups: false,
        }
    }

    /// The same directory offering no groups: `/Groups` is 404 and not advertised.
    pub fn without_groups(self) -> Self {
        Self {
            no_groups: true,
            ..self
        }
    }

    /// Number of stored users.
    pub fn len(&self) -> usize {
        self.lock().users.len()
    }

    /// Whether no user is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-written map (every write is one
        // insert), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn new_id() -> String {
    let b: [u8; 16] = rand::random();
    let h = hex::encode(b);
    // UUID v4 layout.
    format!(
        "{}-{}-4{}-{:x}{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        (b[8] & 0x3) | 0x8,
        &h[17..20],
        &h[20..32]
    )
}

impl State {
    fn user_name_taken(&self, user_name: Option<&str>, except: Option<&str>) -> bool {
        let Some(name) = user_name else { return false };
        self.by_user_name
            .get(&user_name_key(name))
            .is_some_and(|owner| Some(owner.as_str()) != except)
    }

    /// Stores `user` under `id`, keeping the userName index in step.
    fn put(&mut self, id: &str, mut user: User) {
        // Nothing here checks passwords: none is kept.
        user.set("password", Value::Null);
        self.unindex(id);
        if let Some(name) = user.user_name() {
            self.by_user_name.insert(user_name_key(name), id.to_owned());
        }
        self.users
            .insert(id.to_owned(), Value::Object(user.into_json()));
    }

    fn unindex(&mut self, id: &str) {
        if let Some(name) = self
            .users
            .get(id)
            .and_then(|u| u.get("userName"))
            .and_then(Value::as_str)
        {
            self.by_user_name.remove(&user_name_key(name));
        }
    }

    fn stamp(&mut self, user: &mut User, created: Option<chrono::DateTime<chrono::Utc>>) {
        self.next_version += 1;
        user.set_meta(created, chrono::Utc::now(), self.next_version.to_string());
    }
}

fn user_of(value: &Value) -> User {
    User::from_json(value.as_object().cloned().unwrap_or_default())
}

fn stored(mut user: User) -> User {
    // Keep the password out of what `get`/`find` return, as a real backend would.
    user.set("password", Value::Null);
    user
}

impl Directory for MemoryDirectory {
    fn capabilities(&self) -> Capabilities {
        self.capabilities.clone()
    }

    fn create(&self, mut user: User) -> DirFuture<'_, User> {
        Box::pin(async move {
            let mut state = self.lock();
            if state.user_name_taken(user.user_name(), None) {
                return Err(DirectoryError::Conflict {
                    detail: "userName is already taken".to_owned(),
                });
            }
            let id = new_id();
            user.set_id(id.clone());
            user.as_json_mut().remove("meta");
            let now = chrono::Utc::now();
            state.stamp(&mut user, Some(now));
            let user = stored(user);
            state.put(&id, user.clone());
            Ok(user)
        })
    }

    fn get<'a>(&'a self, id: &'a str) -> DirFuture<'a, Option<User>> {
        Box::pin(async move { Ok(self.lock().users.get(id).map(user_of)) })
    }

    fn find<'a>(&'a self, query: &'a ListQuery) -> DirFuture<'a, Page> {
        Box::pin(async move {
            let state = self.lock();
            // The pattern a real backend follows: narrow by an equality on a key it indexes,
            // then let `select` apply the whole filter, sort and page.
            let equality = |attr: &str| match query.filter.as_ref()?.equality_on(attr)? {
                CompValue::Str(s) => Some(s.clone()),
                _ => None,
            };
            let candidates: Vec<&Value> = if let Some(id) = equality("id") {
                state.users.get(&id).into_iter().collect()
            } else if let Some(name) = equality("userName") {
                state
                    .by_user_name
                    .get(&user_name_key(&name))
                    .and_then(|id| state.users.get(id))
                    .into_iter()
                    .collect()
            } else {
                state.users.values().collect()
            };
            Ok(query.select_json(candidates))
        })
    }

    fn replace<'a>(
        &'a self,
        id: &'a str,
        mut user: User,
        expected_version: Option<&'a str>,
    ) -> DirFuture<'a, User> {
        Box::pin(async move {
            let mut state = self.lock();
            let Some(current) = state.users.get(id).map(user_of) else {
                return Err(DirectoryError::NotFound);
            };
            if expected_version.is_some_and(|v| current.version() != Some(v)) {
                return Err(DirectoryError::PreconditionFailed);
            }
            let created = current.get("meta.created").cloned();
            if state.user_name_taken(user.user_name(), Some(id)) {
                return Err(DirectoryError::Conflict {
                    detail: "userName is already taken".to_owned(),
                });
            }
            user.set_id(id);
            user.as_json_mut().remove("meta");
            state.stamp(&mut user, None);
            if let (Some(created), Some(serde_json::Value::Object(meta))) =
                (created, user.as_json_mut().get_mut("meta"))
            {
                meta.insert("created".to_owned(), created);
            }
            let user = stored(user);
            state.put(id, user.clone());
            Ok(user)
        })
    }

    fn delete<'a>(&'a self, id: &'a str) -> DirFuture<'a, ()> {
        Box::pin(async move {
            let mut state = self.lock();
            state.unindex(id);
            match state.users.remove(id) {
                Some(_) => {
                    // A deleted user is no member of anything any more.
                    state.drop_member(id);
                    Ok(())
                }
                None => Err(DirectoryError::NotFound),
            }
        })
    }

    fn groups(&self) -> Option<&dyn GroupStore> {
        if self.no_groups {
            None
        } else {
            Some(self)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(name: &str) -> User {
        User::from_json(
            json!({"userName": name, "password": "pw"})
                .as_object()
                .cloned()
                .unwrap(),
        )
    }

    fn block<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn create_assigns_id_meta_and_versions() {
        let d = MemoryDirectory::new();
        let a = block(d.create(user("a"))).unwrap();
        let b = block(d.create(user("b"))).unwrap();
        assert_ne!(a.id(), b.id());
        assert_eq!(a.id().unwrap().len(), 36);
        assert!(a.get("meta.created").is_some() && a.get("meta.lastModified").is_some());
        assert_ne!(a.version(), b.version());
        assert!(a.password().is_none(), "passwords are not returned");
        assert_eq!(d.len(), 2);
    }

    #[test]
    fn user_names_are_unique_case_insensitively() {
        let d = MemoryDirectory::new();
        let a = block(d.create(user("Anna"))).unwrap();
        assert!(matches!(
            block(d.create(user("aNNA"))),
            Err(DirectoryError::Conflict { .. })
        ));
        let b = block(d.create(user("b"))).unwrap();
        let id = b.id().unwrap();
        assert!(matches!(
            block(d.replace(id, user("ANNA"), None)),
            Err(DirectoryError::Conflict { .. })
        ));
        // Renaming a user to its own name in another case is fine.
        let a_id = a.id().unwrap();
        assert!(block(d.replace(a_id, user("ANNA"), None)).is_ok());
    }

    #[test]
    fn replace_checks_the_expected_version_and_keeps_created() {
        let d = MemoryDirectory::new();
        let a = block(d.create(user("a"))).unwrap();
        let id = a.id().unwrap();
        let v1 = a.version().unwrap();
        let a2 = block(d.replace(id, user("a2"), Some(v1))).unwrap();
        assert_ne!(a2.version(), Some(v1));
        assert_eq!(a2.get("meta.created"), a.get("meta.created"));
        assert_eq!(
            block(d.replace(id, user("a3"), Some(v1))),
            Err(DirectoryError::PreconditionFailed)
        );
        assert_eq!(
            block(d.replace("nope", user("x"), None)),
            Err(DirectoryError::NotFound)
        );
        assert_eq!(block(d.delete(id)), Ok(()));
        assert_eq!(block(d.delete(id)), Err(DirectoryError::NotFound));
        assert_eq!(block(d.get(id)), Ok(None));
    }
}
