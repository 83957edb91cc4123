//! SCIM Groups (RFC 7643 §4.2) as the engine and backends exchange them.
//!
//! Division of work, as for users: the engine owns normalisation, validation, PATCH and the
//! wire format; a [`GroupStore`] stores and finds groups. A backend that offers groups returns
//! its store from [`super::Directory::groups`]; without one `/Groups` is 404 and discovery does
//! not advertise the Group resource type.
//!
//! Membership is where the cost is (a Chamilo class of 10,000 members is one listing of them):
//! every read says whether it needs `members`, and every write goes through
//! [`GroupStore::modify_group`] with the state it started from, so a backend applies the
//! difference (members added and removed, a rename) and never rewrites the whole group.

use serde_json::{Map, Value};

use super::{DirFuture, ListQuery};

/// The URN of the core Group schema.
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

/// A group in canonical SCIM JSON: `displayName`, `externalId`, `members` as
/// `[{value, display?, type?}]` where `value` is a User `id` (the engine drops `$ref` on input
/// and adds it on output), and `id`/`meta` assigned by the backend as for [`super::User`].
/// `members` is absent when the read did not ask for it (see [`GroupStore::get_group`]).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Group {
    json: Map<String, Value>,
}

impl Group {
    /// Wraps a JSON object that is already canonical.
    pub fn from_json(json: Map<String, Value>) -> Self {
        Self { json }
    }

    /// The canonical JSON object.
    pub fn as_json(&self) -> &Map<String, Value> {
        &self.json
    }

    /// The canonical JSON object, for the engine and backends to fill.
    pub fn as_json_mut(&mut self) -> &mut Map<String, Value> {
        &mut self.json
    }

    /// Unwraps the JSON object.
    pub fn into_json(self) -> Map<String, Value> {
        self.json
    }

    fn str_at(&self, key: &str) -> Option<&str> {
        self.json.get(key).and_then(Value::as_str)
    }

    /// The backend's id.
    pub fn id(&self) -> Option<&str> {
        self.str_at("id")
    }

    /// `displayName`.
    pub fn display_name(&self) -> Option<&str> {
        self.str_at("displayName")
    }

    /// `externalId`, the identity provider's key, stored verbatim.
    pub fn external_id(&self) -> Option<&str> {
        self.str_at("externalId")
    }

    /// `meta.version`.
    pub fn version(&self) -> Option<&str> {
        self.json
            .get("meta")
            .and_then(|m| m.get("version"))
            .and_then(Value::as_str)
    }

    /// Whether `members` was read (absent when the read did not ask for it).
    pub fn has_members(&self) -> bool {
        self.json.contains_key("members")
    }

    /// The members' User ids, in stored order.
    pub fn member_ids(&self) -> Vec<&str> {
        self.json
            .get("members")
            .and_then(Value::as_array)
            .map(|members| {
                members
                    .iter()
                    .filter_map(|m| m.get("value").and_then(Value::as_str))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// One page of a group list.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GroupPage {
    /// Number of groups matching the filter, across all pages.
    pub total: usize,
    /// The groups of the requested page, in order.
    pub resources: Vec<Group>,
}

/// A group a user belongs to, as the read-only `groups` attribute of a User shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupRef {
    /// The group's id.
    pub value: String,
    /// Its `displayName`.
    pub display: Option<String>,
}

/// A store of groups. Called only after the engine authenticated and validated the request;
/// every group crossing it is canonical (see [`Group`]). Dyn-compatible.
pub trait GroupStore: Send + Sync {
    /// Stores a new group and returns it as stored, with `id` and `meta` set (and `members`
    /// as stored). A taken `displayName` (case-insensitive) or `externalId` → `Conflict`; a
    /// member that is no user the backend may manage → `InvalidValue` on `members`.
    fn create_group(&self, group: Group) -> DirFuture<'_, Group>;

    /// The group `id`, or `None`; `members` only when `with_members`.
    fn get_group<'a>(&'a self, id: &'a str, with_members: bool) -> DirFuture<'a, Option<Group>>;

    /// The groups matching `query.filter`, sorted and paged; `members` only when
    /// `with_members` (a filter on `members` is still applied when it is false).
    fn find_groups<'a>(
        &'a self,
        query: &'a ListQuery,
        with_members: bool,
    ) -> DirFuture<'a, GroupPage>;

    /// Writes `group` (the full new state) over `base` (the state [`GroupStore::get_group`]
    /// returned with members, which the engine replaced or patched): the backend applies only
    /// the difference — `displayName`/`externalId` when they changed, members added and
    /// removed — and returns the group as stored. A change it could apply only in part is an
    /// error that says so (never a success). `expected_version` as for users.
    fn modify_group<'a>(
        &'a self,
        id: &'a str,
        base: &'a Group,
        group: Group,
        expected_version: Option<&'a str>,
    ) -> DirFuture<'a, Group>;

    /// Deletes the group `id` (`NotFound` when there is none); its members stay.
    fn delete_group<'a>(&'a self, id: &'a str) -> DirFuture<'a, ()>;

    /// The groups the user `user_id` belongs to (the User's read-only `groups`).
    fn groups_of<'a>(&'a self, user_id: &'a str) -> DirFuture<'a, Vec<GroupRef>>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accessors_read_the_canonical_json() {
        let Value::Object(map) = json!({
            "id": "7", "displayName": "Staff", "externalId": "g-1",
            "members": [{"value": "3"}, {"value": "9", "display": "Ann"}],
            "meta": {"version": "4"}
        }) else {
            unreachable!()
        };
        let g = Group::from_json(map);
        assert_eq!(g.id(), Some("7"));
        assert_eq!(g.display_name(), Some("Staff"));
        assert_eq!(g.external_id(), Some("g-1"));
        assert_eq!(g.version(), Some("4"));
        assert!(g.has_members());
        assert_eq!(g.member_ids(), vec!["3", "9"]);
        assert!(!Group::default().has_members());
    }
}
