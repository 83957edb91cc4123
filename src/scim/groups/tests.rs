//! The pure parts of Groups: every PATCH shape Entra ID and Okta send, normalisation of a
//! Group body, a filter on members, projection and rendering.

use serde_json::{json, Map, Value};

use super::{drop_member_refs, group_from_body, render_group_json, schema, wants_members};
use crate::directory::query::matches;
use crate::directory::Group;
use crate::scim::error::{ScimError, ScimType};
use crate::scim::filter::{parse_attr_path, parse_filter, FilterLimits};
use crate::scim::patch::{apply_patch, parse_patch_request, PATCH_OP_SCHEMA};
use crate::scim::projection::Projection;
use crate::scim::{normalize, MOUNT_PATH};

fn base() -> Map<String, Value> {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "id": "g1",
        "displayName": "Staff",
        "externalId": "ext-1",
        "members": [{"value": "u1", "type": "User"}, {"value": "u2", "type": "User"}],
        "meta": {"version": "3"}
    })
    .as_object()
    .cloned()
    .unwrap()
}

/// Applies a PATCH body's operations to [`base`] as the engine does.
fn patch(ops: Value) -> Result<Map<String, Value>, ScimError> {
    let body = json!({"schemas": [PATCH_OP_SCHEMA], "Operations": ops});
    let ops = parse_patch_request(&body)?;
    let mut new = apply_patch(schema(), &base(), &ops)?;
    drop_member_refs(&mut new);
    normalize::validate_group(&new)?;
    Ok(new)
}

fn ok(ops: Value) -> Value {
    Value::Object(patch(ops).unwrap_or_else(|e| panic!("{e:?}")))
}

fn member_ids(group: &Value) -> Vec<&str> {
    group["members"]
        .as_array()
        .map(|ms| ms.iter().filter_map(|m| m["value"].as_str()).collect())
        .unwrap_or_default()
}

#[test]
fn entra_adds_members_once() {
    let g = ok(json!([{"op": "Add", "path": "members",
        "value": [{"value": "u3"}, {"value": "u1"}]}]));
    assert_eq!(member_ids(&g), ["u1", "u2", "u3"]);
    assert_eq!(g["displayName"], "Staff");
    assert_eq!(g["id"], "g1");
}

#[test]
fn entra_removes_the_members_its_value_lists() {
    let g = ok(json!([{"op": "Remove", "path": "members", "value": [{"value": "u1"}]}]));
    assert_eq!(member_ids(&g), ["u2"]);
    // A member that is not there is no error in this form: nothing to remove.
    let g = ok(json!([{"op": "Remove", "path": "members", "value": [{"value": "u9"}]}]));
    assert_eq!(member_ids(&g), ["u1", "u2"]);
}

#[test]
fn a_filtered_member_path_removes_that_member() {
    let g = ok(json!([{"op": "remove", "path": "members[value eq \"u2\"]"}]));
    assert_eq!(member_ids(&g), ["u1"]);
    let e = patch(json!([{"op": "remove", "path": "members[value eq \"u9\"]"}])).unwrap_err();
    assert_eq!(e.scim_type, Some(ScimType::NoTarget));
}

#[test]
fn remove_without_value_removes_every_member() {
    let g = ok(json!([{"op": "Remove", "path": "members"}]));
    assert!(g.get("members").is_none());
    assert_eq!(g["displayName"], "Staff");
}

#[test]
fn okta_renames_with_a_pathless_replace_carrying_the_id() {
    let g = ok(json!([{"op": "replace", "value": {"id": "g1", "displayName": "Teachers"}}]));
    assert_eq!(g["displayName"], "Teachers");
    assert_eq!(g["id"], "g1");
    assert_eq!(member_ids(&g), ["u1", "u2"]);
    // Even with another id: `id` is read-only and ignored, not an error.
    let g = ok(json!([{"op": "replace", "value": {"id": "other", "displayName": "T2"}}]));
    assert_eq!(
        (g["id"].as_str(), g["displayName"].as_str()),
        (Some("g1"), Some("T2"))
    );
}

#[test]
fn replace_with_path_renames_and_replaces_the_member_list() {
    let g = ok(json!([
        {"op": "Replace", "path": "displayName", "value": "New"},
        {"op": "replace", "path": "members", "value": [{"value": "u3"}, {"value": "u4"}]}
    ]));
    assert_eq!(g["displayName"], "New");
    assert_eq!(member_ids(&g), ["u3", "u4"]);
    let g = ok(json!([{"op": "replace", "path": "members", "value": []}]));
    assert!(g.get("members").is_none());
}

#[test]
fn members_ref_and_display_are_not_taken_on_input() {
    let g = ok(json!([{"op": "add", "path": "members",
        "value": [{"value": "u3", "$ref": "https://elsewhere/Users/u3", "display": "X"}]}]));
    assert_eq!(g["members"][2], json!({"value": "u3"}));
    let body = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "id": "client", "meta": {"version": "9"}, "DisplayName": "Staff", "externalId": null,
        "members": [{"value": "u1", "$ref": "x", "display": "Ann", "type": "User"}]
    });
    let g = group_from_body(&body).unwrap();
    assert_eq!(
        Value::Object(g),
        json!({
            "displayName": "Staff",
            "members": [{"value": "u1", "type": "User"}],
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"]
        })
    );
}

#[test]
fn bad_group_patches_and_bodies_are_refused() {
    let kind = |ops: Value| patch(ops).unwrap_err().scim_type;
    assert_eq!(
        kind(json!([{"op": "replace", "path": "id", "value": "x"}])),
        Some(ScimType::Mutability)
    );
    // A User attribute is no Group attribute: not silently ignored as an unmapped one.
    assert_eq!(
        kind(json!([{"op": "replace", "path": "userName", "value": "x"}])),
        Some(ScimType::InvalidPath)
    );
    assert_eq!(
        kind(json!([{"op": "remove", "path": "displayName"}])),
        Some(ScimType::InvalidValue)
    );
    for body in [
        json!({"members": []}),
        json!({"displayName": "  "}),
        json!([]),
    ] {
        assert!(group_from_body(&body).is_err(), "{body}");
    }
}

#[test]
fn filters_on_members_and_names_use_the_group_schema() {
    let group = Value::Object(base());
    let limits = FilterLimits::default();
    let yes = |f: &str| {
        let f = parse_filter(f, &limits).unwrap();
        matches(&f, &group, schema())
    };
    assert!(yes("members[value eq \"u2\"]"));
    assert!(yes("members.value eq \"u1\""));
    assert!(
        !yes("members[value eq \"U1\"]"),
        "member ids are case-exact"
    );
    assert!(
        yes("displayName eq \"STAFF\""),
        "displayName is case-insensitive"
    );
    assert!(yes("externalId eq \"ext-1\" and id eq \"g1\""));
    assert!(!yes("members[value eq \"u9\"]"));
}

fn projection(attrs: &[&str], excluded: &[&str]) -> Projection {
    Projection {
        attributes: attrs.iter().map(|a| parse_attr_path(a).unwrap()).collect(),
        excluded: excluded
            .iter()
            .map(|a| parse_attr_path(a).unwrap())
            .collect(),
    }
}

#[test]
fn members_are_read_only_when_the_response_carries_them() {
    assert!(wants_members(&projection(&[], &[])));
    assert!(!wants_members(&projection(&[], &["members"])));
    assert!(!wants_members(&projection(&[], &["MEMBERS"])));
    assert!(wants_members(&projection(&[], &["members.display"])));
    assert!(!wants_members(&projection(&["displayName"], &[])));
    assert!(wants_members(&projection(&["members.value"], &[])));
    assert!(wants_members(&projection(
        &["urn:ietf:params:scim:schemas:core:2.0:Group:members"],
        &[]
    )));
}

#[test]
fn rendering_generates_member_refs_and_meta() {
    let base_url = format!("https://lms.example{MOUNT_PATH}");
    let group = Group::from_json(base());
    let out = Value::Object(render_group_json(
        group.clone(),
        &base_url,
        &projection(&[], &[]),
    ));
    assert_eq!(
        out["members"][0],
        json!({"value": "u1", "type": "User", "$ref": format!("{base_url}/Users/u1")})
    );
    assert_eq!(out["meta"]["resourceType"], "Group");
    assert_eq!(out["meta"]["location"], format!("{base_url}/Groups/g1"));
    assert_eq!(out["meta"]["version"], "W/\"3\"");
    assert_eq!(
        out["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:Group"])
    );
    let slim = Value::Object(render_group_json(
        group.clone(),
        &base_url,
        &projection(&[], &["members"]),
    ));
    assert!(slim.get("members").is_none());
    assert_eq!(slim["displayName"], "Staff");
    let only_name = Value::Object(render_group_json(
        group.clone(),
        &base_url,
        &projection(&["displayName"], &[]),
    ));
    let keys: Vec<&str> = only_name
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["schemas", "id", "displayName"]);
}
