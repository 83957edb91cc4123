//! Members of a class: the difference a write applies, and which users SCIM may put in a
//! class.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::chamilo::client::GroupMember;
use crate::chamilo::deprovisioned;
use crate::chamilo::directory::ChamiloDirectory;
use crate::directory::{DirectoryError, Group};

/// The membership changes of one write, in user-id order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberDiff {
    pub added: Vec<u64>,
    pub removed: Vec<u64>,
}

impl MemberDiff {
    /// What turns `base` into `new` (duplicates count once).
    pub fn between(base: &[u64], new: &[u64]) -> Self {
        let base: BTreeSet<u64> = base.iter().copied().collect();
        let new: BTreeSet<u64> = new.iter().copied().collect();
        Self {
            added: new.difference(&base).copied().collect(),
            removed: base.difference(&new).copied().collect(),
        }
    }

    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty()
    }
}

/// The `members` of a group as user ids; a value that is no Chamilo id is refused.
pub fn member_ids(group: &Group) -> Result<Vec<u64>, DirectoryError> {
    group
        .member_ids()
        .into_iter()
        .map(|v| {
            v.parse::<u64>()
                .ok()
                .filter(|id| *id > 0)
                .ok_or_else(|| not_manageable(v))
        })
        .collect()
}

/// The refusal of a member SCIM may not put in a group (nothing was changed).
pub fn not_manageable(value: &str) -> DirectoryError {
    DirectoryError::InvalidValue {
        attr: "members".into(),
        detail: format!("\"{value}\" is not a user that can be managed through SCIM"),
    }
}

/// `members` as returned: `[{value, display, type}]`, in id order (Chamilo's order is not
/// stable, and a stable one keeps the identity provider from seeing changes that are not).
pub fn members_json(members: &[(u64, Option<String>)]) -> Value {
    let mut sorted: Vec<&(u64, Option<String>)> = members.iter().collect();
    sorted.sort_by_key(|(id, _)| *id);
    Value::Array(
        sorted
            .into_iter()
            .map(|(id, display)| match display {
                Some(d) => json!({"value": id.to_string(), "display": d, "type": "User"}),
                None => json!({"value": id.to_string(), "type": "User"}),
            })
            .collect(),
    )
}

impl ChamiloDirectory {
    /// Whether SCIM shows this member of a class: not a reserved account (service account,
    /// protected logins, anonymous users) and not one SCIM deleted. Ids the index does not
    /// know (made since its last listing) are shown.
    pub(crate) fn shows_member(&self, id: u64) -> bool {
        match self.lookup.index.by_id(id) {
            Some(a) => {
                !self.mapping.is_protected(&a.login)
                    && !self.lookup.is_reserved(&a)
                    && !deprovisioned::is_deprovisioned(&a)
            }
            None => true,
        }
    }

    /// The members SCIM shows, with their names as `display`.
    pub(crate) fn shown_members(&self, members: &[GroupMember]) -> Vec<(u64, Option<String>)> {
        members
            .iter()
            .filter(|m| self.shows_member(m.user_id))
            .map(|m| {
                let name = format!("{} {}", m.firstname.as_deref().unwrap_or(""), m.lastname);
                let name = name.trim();
                (m.user_id, (!name.is_empty()).then(|| name.to_owned()))
            })
            .collect()
    }

    /// Checks that every id is a user SCIM may manage, before anything is written: known to
    /// the index and not reserved, protected or deleted through SCIM (no call). An id newer
    /// than the index is confirmed fresh (one call; a listing may be needed first: 503).
    pub(crate) async fn check_members(&self, ids: &[u64]) -> Result<(), DirectoryError> {
        self.require_index()?;
        for id in ids {
            let manageable = match self.lookup.index.by_id(*id) {
                Some(a) => {
                    !self.mapping.is_protected(&a.login)
                        && !self.lookup.is_reserved(&a)
                        && !deprovisioned::is_deprovisioned(&a)
                }
                None if *id > self.lookup.index.max_id() => {
                    match self.account(&id.to_string()).await {
                        Ok(Some(a)) => {
                            !self.mapping.is_protected(&a.login) && !self.lookup.is_reserved(&a)
                        }
                        Ok(None) => false,
                        Err(e) => return Err(e),
                    }
                }
                None => false,
            };
            if !manageable {
                return Err(not_manageable(&id.to_string()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_difference_is_what_changed() {
        let d = MemberDiff::between(&[3, 4, 5], &[5, 6, 3, 6]);
        assert_eq!(d.added, vec![6]);
        assert_eq!(d.removed, vec![4]);
        assert!(MemberDiff::between(&[1, 2], &[2, 1]).is_empty());
        let d = MemberDiff::between(&[], &[9, 8]);
        assert_eq!((d.added, d.removed), (vec![8, 9], vec![]));
        let d = MemberDiff::between(&[9, 8], &[]);
        assert_eq!((d.added, d.removed), (vec![], vec![8, 9]));
    }

    #[test]
    fn member_values_must_be_user_ids() {
        let g = |v: Value| Group::from_json(v.as_object().cloned().unwrap_or_default());
        assert_eq!(
            member_ids(&g(json!({"members": [{"value": "3"}, {"value": "12"}]}))).unwrap(),
            vec![3, 12]
        );
        for bad in ["abc", "0", "-1", "3.0", ""] {
            let e = member_ids(&g(json!({"members": [{"value": bad}]}))).unwrap_err();
            assert!(
                matches!(&e, DirectoryError::InvalidValue { attr, .. } if attr == "members"),
                "{bad}: {e:?}"
            );
        }
        assert!(member_ids(&g(json!({}))).unwrap().is_empty());
    }

    #[test]
    fn members_come_back_in_id_order() {
        let m = members_json(&[(10, Some("Ann Lee".into())), (9, None)]);
        assert_eq!(
            m,
            json!([{"value": "9", "type": "User"},
                   {"value": "10", "display": "Ann Lee", "type": "User"}])
        );
    }
}
