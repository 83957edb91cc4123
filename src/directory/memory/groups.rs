//! The in-memory [`GroupStore`]: groups beside the users of the same [`MemoryDirectory`], so
//! members are checked against real users and a deleted user leaves its groups.

use serde_json::{json, Value};

use super::{new_id, MemoryDirectory, State};
use crate::directory::query::CompValue;
use crate::directory::{
    DirFuture, DirectoryError, Group, GroupPage, GroupRef, GroupStore, ListQuery,
};

impl State {
    /// Refuses a `displayName` (case-insensitive) or `externalId` another group holds.
    fn check_group_unique(
        &self,
        group: &Group,
        except: Option<&str>,
    ) -> Result<(), DirectoryError> {
        let others = self
            .groups
            .iter()
            .filter(|(id, _)| Some(id.as_str()) != except)
            .map(|(_, g)| g);
        for other in others {
            let same = |key: &str, ci: bool| {
                let a = other.get(key).and_then(Value::as_str);
                let b = group.as_json().get(key).and_then(Value::as_str);
                match (a, b) {
                    (Some(a), Some(b)) if ci => a.to_lowercase() == b.to_lowercase(),
                    (Some(a), Some(b)) => a == b,
                    _ => false,
                }
            };
            if same("displayName", true) {
                return Err(DirectoryError::Conflict {
                    detail: "displayName is already taken by another group".to_owned(),
                });
            }
            if same("externalId", false) {
                return Err(DirectoryError::Conflict {
                    detail: "externalId is already taken by another group".to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Keeps only `value` and `type` of each member, once each; a member that is no user is
    /// refused. (No `display`: the store would invent a value the client did not write, and
    /// clients compare what they wrote with what they read back.)
    fn canonical_members(&self, group: &mut Group) -> Result<(), DirectoryError> {
        let Some(Value::Array(members)) = group.as_json_mut().remove("members") else {
            return Ok(());
        };
        let mut out: Vec<Value> = Vec::with_capacity(members.len());
        // Linear: a group may have 20,000 members.
        let mut seen: std::collections::HashSet<String> =
            std::collections::HashSet::with_capacity(members.len());
        for member in members {
            let Value::Object(mut m) = member else {
                continue;
            };
            let Some(id) = m.get("value").and_then(Value::as_str) else {
                continue;
            };
            if !self.users.contains_key(id) {
                return Err(DirectoryError::InvalidValue {
                    attr: "members".to_owned(),
                    detail: format!("no user has the id {id}"),
                });
            }
            if !seen.insert(id.to_owned()) {
                continue;
            }
            // The member's own map, trimmed: no copy per member.
            m.retain(|k, _| k == "value");
            m.insert("type".to_owned(), json!("User"));
            out.push(Value::Object(m));
        }
        if !out.is_empty() {
            group
                .as_json_mut()
                .insert("members".to_owned(), Value::Array(out));
        }
        Ok(())
    }

    /// Sets `id` and a new `meta` (keeping `created` when given).
    fn stamp_group(&mut self, group: &mut Group, id: &str, created: Option<Value>) {
        self.next_version += 1;
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let json = group.as_json_mut();
        json.insert("id".to_owned(), json!(id));
        json.insert(
            "meta".to_owned(),
            json!({
                "created": created.unwrap_or_else(|| json!(now)),
                "lastModified": now,
                "version": self.next_version.to_string(),
            }),
        );
    }

    /// Removes user `id` from every group it is in (a new version for each such group).
    pub(super) fn drop_member(&mut self, id: &str) {
        let touched: Vec<String> = self
            .groups
            .iter()
            .filter(|(_, g)| group_has_member(g, id))
            .map(|(gid, _)| gid.clone())
            .collect();
        for gid in touched {
            let Some(mut group) = self.groups.remove(&gid).map(group_of) else {
                continue;
            };
            if let Some(Value::Array(members)) = group.as_json_mut().get_mut("members") {
                members.retain(|m| m.get("value").and_then(Value::as_str) != Some(id));
                if members.is_empty() {
                    group.as_json_mut().remove("members");
                }
            }
            let created = group
                .as_json()
                .get("meta")
                .and_then(|m| m.get("created"))
                .cloned();
            self.stamp_group(&mut group, &gid, created);
            self.groups.insert(gid, Value::Object(group.into_json()));
        }
    }
}

fn group_has_member(group: &Value, user_id: &str) -> bool {
    group
        .get("members")
        .and_then(Value::as_array)
        .is_some_and(|ms| {
            ms.iter()
                .any(|m| m.get("value").and_then(Value::as_str) == Some(user_id))
        })
}

fn group_of(value: Value) -> Group {
    match value {
        Value::Object(map) => Group::from_json(map),
        _ => Group::default(),
    }
}

/// The group as a read returns it: without `members` unless asked for.
fn as_read(value: &Value, with_members: bool) -> Group {
    if with_members {
        return group_of(value.clone());
    }
    // Without copying the members only to drop them.
    let Value::Object(map) = value else {
        return Group::default();
    };
    let json = map
        .iter()
        .filter(|(k, _)| k.as_str() != "members")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Group::from_json(json)
}

impl GroupStore for MemoryDirectory {
    fn create_group(&self, mut group: Group) -> DirFuture<'_, Group> {
        Box::pin(async move {
            let mut state = self.lock();
            state.check_group_unique(&group, None)?;
            state.canonical_members(&mut group)?;
            let id = new_id();
            state.stamp_group(&mut group, &id, None);
            state
                .groups
                .insert(id, Value::Object(group.as_json().clone()));
            Ok(group)
        })
    }

    fn get_group<'a>(&'a self, id: &'a str, with_members: bool) -> DirFuture<'a, Option<Group>> {
        Box::pin(async move {
            let state = self.lock();
            Ok(state.groups.get(id).map(|g| as_read(g, with_members)))
        })
    }

    fn find_groups<'a>(
        &'a self,
        query: &'a ListQuery,
        with_members: bool,
    ) -> DirFuture<'a, GroupPage> {
        Box::pin(async move {
            let state = self.lock();
            // As for users: narrow by an indexed equality, then `select` applies the whole
            // filter (a filter on `members` too, before they are dropped), sort and page.
            let by_id = match query.filter.as_ref().and_then(|f| f.equality_on("id")) {
                Some(CompValue::Str(id)) => Some(id.clone()),
                _ => None,
            };
            let candidates: Vec<&Value> = match &by_id {
                Some(id) => state.groups.get(id).into_iter().collect(),
                None => state.groups.values().collect(),
            };
            let mut page = query.select_group_json(candidates);
            if !with_members {
                for group in &mut page.resources {
                    group.as_json_mut().remove("members");
                }
            }
            Ok(page)
        })
    }

    fn modify_group<'a>(
        &'a self,
        id: &'a str,
        base: &'a Group,
        mut group: Group,
        expected_version: Option<&'a str>,
    ) -> DirFuture<'a, Group> {
        // A store of whole objects has no difference to apply: the new state is written.
        let _ = base;
        Box::pin(async move {
            let mut state = self.lock();
            let Some(current) = state.groups.get(id).map(|g| as_read(g, false)) else {
                return Err(DirectoryError::NotFound);
            };
            if expected_version.is_some_and(|v| current.version() != Some(v)) {
                return Err(DirectoryError::PreconditionFailed);
            }
            state.check_group_unique(&group, Some(id))?;
            state.canonical_members(&mut group)?;
            let created = current
                .as_json()
                .get("meta")
                .and_then(|m| m.get("created"))
                .cloned();
            state.stamp_group(&mut group, id, created);
            state
                .groups
                .insert(id.to_owned(), Value::Object(group.as_json().clone()));
            Ok(group)
        })
    }

    fn delete_group<'a>(&'a self, id: &'a str) -> DirFuture<'a, ()> {
        Box::pin(async move {
            match self.lock().groups.remove(id) {
                Some(_) => Ok(()),
                None => Err(DirectoryError::NotFound),
            }
        })
    }

    fn groups_of<'a>(&'a self, user_id: &'a str) -> DirFuture<'a, Vec<GroupRef>> {
        Box::pin(async move {
            let state = self.lock();
            Ok(state
                .groups
                .iter()
                .filter(|(_, g)| group_has_member(g, user_id))
                .map(|(id, g)| GroupRef {
                    value: id.clone(),
                    display: g
                        .get("displayName")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                })
                .collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::query::{AttrPath, CompareOp, Filter};
    use crate::directory::{Directory, User};

    fn block<T>(f: impl std::future::Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn group(v: Value) -> Group {
        Group::from_json(v.as_object().cloned().unwrap())
    }

    fn user(d: &MemoryDirectory, name: &str) -> String {
        let u = User::from_json(json!({"userName": name}).as_object().cloned().unwrap());
        block(d.create(u)).unwrap().id().unwrap().to_owned()
    }

    #[test]
    fn names_and_external_ids_are_unique() {
        let d = MemoryDirectory::new();
        let a = block(d.create_group(group(json!({"displayName": "Staff", "externalId": "x"}))))
            .unwrap();
        for clash in [
            json!({"displayName": "STAFF"}),
            json!({"displayName": "Other", "externalId": "x"}),
        ] {
            assert!(matches!(
                block(d.create_group(group(clash))),
                Err(DirectoryError::Conflict { .. })
            ));
        }
        // Renaming a group to its own name in another case is fine.
        let id = a.id().unwrap();
        let renamed =
            block(d.modify_group(id, &a, group(json!({"displayName": "staff"})), None)).unwrap();
        assert_eq!(renamed.display_name(), Some("staff"));
        assert_ne!(renamed.version(), a.version());
        assert_eq!(
            block(d.modify_group(id, &a, group(json!({"displayName": "s"})), a.version())),
            Err(DirectoryError::PreconditionFailed)
        );
    }

    #[test]
    fn members_must_be_users_and_leave_with_them() {
        let d = MemoryDirectory::new();
        let ann = user(&d, "ann");
        let bob = user(&d, "bob");
        assert!(matches!(
            block(d.create_group(group(json!({"displayName": "G", "members": [{"value": "nobody"}]})))),
            Err(DirectoryError::InvalidValue { ref attr, .. }) if attr == "members"
        ));
        let g = block(d.create_group(group(json!({"displayName": "G",
            "members": [{"value": ann}, {"value": bob}, {"value": ann}]}))))
        .unwrap();
        let id = g.id().unwrap().to_owned();
        assert_eq!(g.member_ids(), vec![ann.as_str(), bob.as_str()]);
        assert_eq!(
            g.as_json()["members"][0],
            json!({"value": ann, "type": "User"})
        );
        let refs = block(d.groups_of(&ann)).unwrap();
        assert_eq!(
            refs,
            vec![GroupRef {
                value: id.clone(),
                display: Some("G".into())
            }]
        );
        assert!(!block(d.get_group(&id, false))
            .unwrap()
            .unwrap()
            .has_members());
        block(d.delete(&ann)).unwrap();
        let after = block(d.get_group(&id, true)).unwrap().unwrap();
        assert_eq!(after.member_ids(), vec![bob.as_str()]);
        assert_ne!(after.version(), g.version());
        assert!(block(d.groups_of(&ann)).unwrap().is_empty());
        block(d.delete_group(&id)).unwrap();
        assert_eq!(block(d.delete_group(&id)), Err(DirectoryError::NotFound));
    }

    #[test]
    fn find_filters_on_members_without_returning_them() {
        let d = MemoryDirectory::new();
        let ann = user(&d, "ann");
        block(d.create_group(group(
            json!({"displayName": "A", "members": [{"value": ann}]}),
        )))
        .unwrap();
        block(d.create_group(group(json!({"displayName": "B"})))).unwrap();
        let query = ListQuery {
            filter: Some(Filter::ValuePath {
                attr: AttrPath::new("members", None),
                filter: Box::new(Filter::Compare {
                    path: AttrPath::new("value", None),
                    op: CompareOp::Eq,
                    value: CompValue::Str(ann.clone()),
                }),
            }),
            sort: None,
            start_index: 1,
            count: 10,
        };
        let page = block(d.find_groups(&query, false)).unwrap();
        assert_eq!(page.total, 1);
        assert_eq!(page.resources[0].display_name(), Some("A"));
        assert!(!page.resources[0].has_members());
        let all = ListQuery {
            filter: None,
            ..query
        };
        assert_eq!(block(d.find_groups(&all, true)).unwrap().total, 2);
        assert!(MemoryDirectory::new().without_groups().groups().is_none());
    }
}
