//! The REST actions about classes (Chamilo's usergroups).

use serde_json::Value;

use super::decode::{as_i64, as_id, expect_true, single_id, str_field};
use super::{unexpected, ChamiloClient};
use crate::chamilo::error::ChamiloError;

/// A class or social group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: u64,
    pub name: String,
    pub description: String,
    pub group_type: i64,
}

/// A member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub user_id: u64,
    pub firstname: Option<String>,
    pub lastname: String,
    pub relation_type: i64,
}

impl ChamiloClient {
    /// `get_groups` of one type (`None` = all; 0 classes, 1 social groups).
    pub async fn get_groups(&self, group_type: Option<i64>) -> Result<Vec<Group>, ChamiloError> {
        let t = group_type.map_or_else(|| "*".to_owned(), |t| t.to_string());
        let data = self.call("get_groups", &[("type", &t)]).await?;
        let Value::Array(items) = &data else {
            return Err(unexpected("get_groups", "data is not a list"));
        };
        items
            .iter()
            .map(|g| {
                Ok(Group {
                    id: as_id(g.get("id"))
                        .ok_or_else(|| unexpected("get_groups", "group without id"))?,
                    name: str_field(g, "name"),
                    description: str_field(g, "description"),
                    group_type: g.get("type").and_then(as_i64).unwrap_or(0),
                })
            })
            .collect()
    }

    /// `add_group`: creates a class (type 0); returns its id.
    pub async fn add_group(&self, name: &str, description: &str) -> Result<u64, ChamiloError> {
        let data = self
            .call("add_group", &[("name", name), ("description", description)])
            .await?;
        single_id("add_group", &data)
    }

    /// `delete_group`; `NotFound` when it did not exist.
    pub async fn delete_group(&self, id: u64) -> Result<(), ChamiloError> {
        let id = id.to_string();
        match self.call("delete_group", &[("id", &id)]).await {
            Ok(_) => Ok(()),
            Err(ChamiloError::Rejected { action, message }) if message == "NotDeleted" => {
                Err(ChamiloError::NotFound { action })
            }
            Err(e) => Err(e),
        }
    }

    /// `add_group_sub_user` (idempotent; an existing member keeps its role).
    pub async fn add_group_member(
        &self,
        group: u64,
        user: u64,
        role: i64,
    ) -> Result<(), ChamiloError> {
        let (g, u, r) = (group.to_string(), user.to_string(), role.to_string());
        match self
            .call(
                "add_group_sub_user",
                &[("group_id", &g), ("user_id", &u), ("role", &r)],
            )
            .await
        {
            Ok(data) => expect_true("add_group_sub_user", &data),
            Err(ChamiloError::Rejected { action, message })
                if message == "user_id or group_id does not exist" =>
            {
                Err(ChamiloError::NotFound { action })
            }
            Err(e) => Err(e),
        }
    }

    /// `delete_group_sub_user` (answers the same for non-members).
    pub async fn remove_group_member(&self, group: u64, user: u64) -> Result<(), ChamiloError> {
        let (g, u) = (group.to_string(), user.to_string());
        self.call(
            "delete_group_sub_user",
            &[("group_id", &g), ("user_id", &u)],
        )
        .await
        .map(|_| ())
    }

    /// `get_group_sub_users`: members of a group (empty for an unknown group).
    pub async fn group_members(&self, group: u64) -> Result<Vec<GroupMember>, ChamiloError> {
        let g = group.to_string();
        let data = self.call("get_group_sub_users", &[("id", &g)]).await?;
        let entries: Vec<&Value> = match &data {
            Value::Object(m) => m.values().collect(),
            Value::Array(a) if a.is_empty() => Vec::new(),
            _ => {
                return Err(unexpected(
                    "get_group_sub_users",
                    "data is neither an object nor []",
                ))
            }
        };
        entries
            .into_iter()
            .map(|m| {
                Ok(GroupMember {
                    user_id: as_id(m.get("id"))
                        .ok_or_else(|| unexpected("get_group_sub_users", "member without id"))?,
                    firstname: m
                        .get("firstname")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    lastname: str_field(m, "lastname"),
                    relation_type: m.get("relation_type").and_then(as_i64).unwrap_or(0),
                })
            })
            .collect()
    }

    /// `get_user_sub_group`: ids of the groups a user belongs to.
    pub async fn user_groups(&self, user: u64) -> Result<Vec<u64>, ChamiloError> {
        let u = user.to_string();
        let data = self.call("get_user_sub_group", &[("user_id", &u)]).await?;
        match data.get("groups") {
            Some(Value::Array(ids)) => Ok(ids.iter().filter_map(|v| as_id(Some(v))).collect()),
            _ => Err(unexpected("get_user_sub_group", "no groups list")),
        }
    }
}
