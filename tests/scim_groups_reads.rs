//! Group reads over HTTP: the store is asked for `members` only when the response carries
//! them (a recording store), users' `groups` only where it is cheap, root `/.search` across
//! Users and Groups, and discovery with and without a group store.

mod scim_support;

use std::sync::{Arc, Mutex};

use chamilo_scim_proxy::directory::memory::MemoryDirectory;
use chamilo_scim_proxy::directory::{
    Capabilities, DirFuture, Directory, Group, GroupPage, GroupRef, GroupStore, ListQuery, Page,
    User,
};
use http::{Method, StatusCode};
use scim_support::{assert_scim_error, config, create_user as user, q, start, start_with, GROUP};
use serde_json::json;

/// A memory directory that records the `with_members` of every group read.
struct Recording {
    inner: MemoryDirectory,
    reads: Mutex<Vec<(&'static str, bool)>>,
}

impl Recording {
    fn take(&self) -> Vec<(&'static str, bool)> {
        std::mem::take(&mut *self.reads.lock().unwrap())
    }
}

impl Directory for Recording {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn create(&self, user: User) -> DirFuture<'_, User> {
        self.inner.create(user)
    }
    fn get<'a>(&'a self, id: &'a str) -> DirFuture<'a, Option<User>> {
        self.inner.get(id)
    }
    fn find<'a>(&'a self, query: &'a ListQuery) -> DirFuture<'a, Page> {
        self.inner.find(query)
    }
    fn replace<'a>(
        &'a self,
        id: &'a str,
        user: User,
        expected_version: Option<&'a str>,
    ) -> DirFuture<'a, User> {
        self.inner.replace(id, user, expected_version)
    }
    fn delete<'a>(&'a self, id: &'a str) -> DirFuture<'a, ()> {
        self.inner.delete(id)
    }
    fn groups(&self) -> Option<&dyn GroupStore> {
        Some(self)
    }
}

impl GroupStore for Recording {
    fn create_group(&self, group: Group) -> DirFuture<'_, Group> {
        self.inner.create_group(group)
    }
    fn get_group<'a>(&'a self, id: &'a str, with_members: bool) -> DirFuture<'a, Option<Group>> {
        self.reads.lock().unwrap().push(("get", with_members));
        self.inner.get_group(id, with_members)
    }
    fn find_groups<'a>(
        &'a self,
        query: &'a ListQuery,
        with_members: bool,
    ) -> DirFuture<'a, GroupPage> {
        self.reads.lock().unwrap().push(("find", with_members));
        self.inner.find_groups(query, with_members)
    }
    fn modify_group<'a>(
        &'a self,
        id: &'a str,
        base: &'a Group,
        group: Group,
        expected_version: Option<&'a str>,
    ) -> DirFuture<'a, Group> {
        self.inner.modify_group(id, base, group, expected_version)
    }
    fn delete_group<'a>(&'a self, id: &'a str) -> DirFuture<'a, ()> {
        self.inner.delete_group(id)
    }
    fn groups_of<'a>(&'a self, user_id: &'a str) -> DirFuture<'a, Vec<GroupRef>> {
        self.reads.lock().unwrap().push(("groups_of", true));
        self.inner.groups_of(user_id)
    }
}

#[tokio::test]
async fn members_are_read_only_when_the_response_carries_them() {
    let dir = Arc::new(Recording {
        inner: MemoryDirectory::new(),
        reads: Mutex::default(),
    });
    let s = start_with(config(), dir.clone()).await;
    let ann = user(&s, "ann").await;
    let g = s
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"displayName": "G", "members": [{"value": ann}]})),
        )
        .await;
    let id = g.body["id"].as_str().unwrap().to_owned();
    dir.take();

    for (path, read, with_members, has_members) in [
        (
            "/Groups?excludedAttributes=members".to_owned(),
            "find",
            false,
            false,
        ),
        (
            "/Groups?attributes=displayName".to_owned(),
            "find",
            false,
            false,
        ),
        ("/Groups".to_owned(), "find", true, true),
        (
            format!("/Groups/{id}?excludedAttributes=members"),
            "get",
            false,
            false,
        ),
        (
            format!("/Groups/{id}?attributes=members.value"),
            "get",
            true,
            true,
        ),
        (format!("/Groups/{id}"), "get", true, true),
    ] {
        let r = s.call(Method::GET, &path, None).await;
        assert_eq!(r.status, StatusCode::OK, "{r}");
        assert_eq!(dir.take(), [(read, with_members)], "{path}");
        let group = if read == "find" {
            &r.body["Resources"][0]
        } else {
            &r.body
        };
        assert_eq!(
            group["displayName"].is_string(),
            !path.contains("members.value"),
            "{r}"
        );
        assert_eq!(group.get("members").is_some(), has_members, "{r}");
    }
    // A filter on members still applies when members are not returned.
    let r = s
        .call(
            Method::GET,
            &format!(
                "/Groups?excludedAttributes=members&filter={}",
                q(&format!("members[value eq \"{ann}\"]"))
            ),
            None,
        )
        .await;
    assert_eq!(r.body["totalResults"], 1, "{r}");
    assert!(r.body["Resources"][0].get("members").is_none());
    assert_eq!(dir.take(), [("find", false)]);

    // Users: a single read asks for `groups` unless excluded; a list only when named.
    let one = s.call(Method::GET, &format!("/Users/{ann}"), None).await;
    assert_eq!(one.body["groups"][0]["value"], id.as_str(), "{one}");
    assert_eq!(dir.take(), [("groups_of", true)]);
    let excluded = s
        .call(
            Method::GET,
            &format!("/Users/{ann}?excludedAttributes=groups"),
            None,
        )
        .await;
    assert!(excluded.body.get("groups").is_none());
    assert!(dir.take().is_empty());
    let list = s.call(Method::GET, "/Users", None).await;
    assert!(list.body["Resources"][0].get("groups").is_none(), "{list}");
    assert!(
        dir.take().is_empty(),
        "a default user list reads no memberships"
    );
    let named = s
        .call(Method::GET, "/Users?attributes=userName,groups", None)
        .await;
    assert_eq!(
        named.body["Resources"][0]["groups"][0]["display"], "G",
        "{named}"
    );
    assert_eq!(dir.take(), [("groups_of", true)]);
}

#[tokio::test]
async fn root_search_finds_users_and_groups() {
    let s = start(config()).await;
    user(&s, "alpha").await;
    s.call(
        Method::POST,
        "/Groups",
        Some(json!({"displayName": "alpha team"})),
    )
    .await;
    let search = |start: u64, count: u64| {
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": "userName sw \"alpha\" or displayName sw \"alpha\"",
            "startIndex": start, "count": count})
    };
    let all = s.call(Method::POST, "/.search", Some(search(1, 10))).await;
    assert_eq!(all.status, StatusCode::OK, "{all}");
    assert_eq!(all.body["totalResults"], 2, "{all}");
    let kinds: Vec<&str> = all.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["meta"]["resourceType"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["User", "Group"]);
    let second = s.call(Method::POST, "/.search", Some(search(2, 1))).await;
    assert_eq!(
        second.body["Resources"][0]["displayName"], "alpha team",
        "{second}"
    );
    assert_eq!(second.body["totalResults"], 2);
    // `/Groups/.search` knows only the Group schema: `userName` there is an invalid filter.
    let mixed = s
        .call(Method::POST, "/Groups/.search", Some(search(1, 10)))
        .await;
    assert_eq!(mixed.body["scimType"], "invalidFilter", "{mixed}");
    let groups_only = s
        .call(
            Method::POST,
            "/Groups/.search",
            Some(
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                "filter": "displayName sw \"alpha\""}),
            ),
        )
        .await;
    assert_eq!(groups_only.body["totalResults"], 1, "{groups_only}");
}

#[tokio::test]
async fn discovery_advertises_groups_only_when_the_directory_has_them() {
    let with = start(config()).await;
    let without = start_with(config(), Arc::new(MemoryDirectory::new().without_groups())).await;
    for (s, has) in [(&with, true), (&without, false)] {
        let types = s.call(Method::GET, "/ResourceTypes", None).await;
        let names: Vec<&str> = types.body["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        let want: &[&str] = if has { &["User", "Group"] } else { &["User"] };
        assert_eq!(names, want);
        let group_type = s.call(Method::GET, "/ResourceTypes/Group", None).await;
        let schema = s
            .call(Method::GET, &format!("/Schemas/{GROUP}"), None)
            .await;
        let schemas = s.call(Method::GET, "/Schemas", None).await;
        let ids: Vec<&str> = schemas.body["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids.contains(&GROUP), has, "{schemas}");
        let groups = s.call(Method::GET, "/Groups", None).await;
        if has {
            assert_eq!(group_type.body["endpoint"], "/Groups", "{group_type}");
            assert_eq!(group_type.body["schema"], GROUP);
            let attrs: Vec<&str> = schema.body["attributes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["name"].as_str().unwrap())
                .collect();
            assert_eq!(attrs, ["displayName", "members"]);
            assert_eq!(groups.status, StatusCode::OK, "{groups}");
        } else {
            assert_scim_error(&group_type, StatusCode::NOT_FOUND, None);
            assert_scim_error(&schema, StatusCode::NOT_FOUND, None);
            assert_scim_error(&groups, StatusCode::NOT_FOUND, None);
            let post = s
                .call(Method::POST, "/Groups", Some(json!({"displayName": "x"})))
                .await;
            assert_scim_error(&post, StatusCode::NOT_FOUND, None);
        }
    }
    // ServiceProviderConfig does not change with groups.
    let a = with.call(Method::GET, "/ServiceProviderConfig", None).await;
    let mut b = without
        .call(Method::GET, "/ServiceProviderConfig", None)
        .await;
    b.body["meta"]["location"] = a.body["meta"]["location"].clone();
    assert_eq!(a.body, b.body);
}
