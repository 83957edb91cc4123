//! `/Groups` over HTTP against the in-memory directory: every operation, the sequences
//! Microsoft Entra ID and Okta send (no delays between steps), ETags, and users' read-only
//! `groups`. Reads, root search and discovery: `tests/scim_groups_reads.rs`.

mod scim_support;

use http::{Method, StatusCode};
use scim_support::{
    assert_scim_error, config, create_user as user, q, start, Reply, TestServer, GROUP, TOKEN,
};
use serde_json::{json, Value};

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

fn member_ids(group: &Value) -> Vec<String> {
    group["members"]
        .as_array()
        .map(|ms| {
            ms.iter()
                .map(|m| m["value"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn patch(s: &TestServer, id: &str, ops: Value) -> Reply {
    s.call(
        Method::PATCH,
        &format!("/Groups/{id}"),
        Some(json!({"schemas": [PATCH_OP], "Operations": ops})),
    )
    .await
}

async fn members_of(s: &TestServer, id: &str) -> Vec<String> {
    let r = s.call(Method::GET, &format!("/Groups/{id}"), None).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    member_ids(&r.body)
}

async fn find(s: &TestServer, filter: &str) -> Reply {
    let r = s
        .call(Method::GET, &format!("/Groups?filter={}", q(filter)), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    r
}

#[tokio::test]
async fn every_group_operation() {
    let s = start(config()).await;
    let ann = user(&s, "ann").await;
    let bob = user(&s, "bob").await;

    let created = s
        .call(
            Method::POST,
            "/Groups",
            Some(
                json!({"schemas": [GROUP], "displayName": "Staff", "externalId": "ext-staff",
                "members": [{"value": ann, "display": "Ann"}]}),
            ),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created}");
    let id = created.body["id"].as_str().unwrap().to_owned();
    let location = format!("{}/Groups/{id}", s.base);
    assert_eq!(created.header("location"), Some(location.as_str()));
    assert_eq!(created.body["meta"]["location"], location);
    assert_eq!(created.body["meta"]["resourceType"], "Group");
    assert_eq!(created.body["schemas"], json!([GROUP]));
    let etag = created.header("etag").unwrap().to_owned();
    assert_eq!(created.body["meta"]["version"], etag.as_str());
    assert_eq!(
        created.body["members"],
        json!([{"value": ann, "type": "User", "$ref": format!("{}/Users/{ann}", s.base)}])
    );

    let got = s.call(Method::GET, &format!("/Groups/{id}"), None).await;
    assert_eq!(got.status, StatusCode::OK, "{got}");
    assert_eq!(got.body, created.body);

    // Filters: displayName (case-insensitive), externalId, id, members, and the generic rest.
    let second = s
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"displayName": "Teachers", "members": [{"value": bob}]})),
        )
        .await;
    assert_eq!(second.status, StatusCode::CREATED, "{second}");
    let teachers = second.body["id"].as_str().unwrap().to_owned();
    for (filter, want) in [
        ("displayName eq \"STAFF\"".to_owned(), vec![id.clone()]),
        ("externalId eq \"ext-staff\"".to_owned(), vec![id.clone()]),
        (format!("id eq \"{teachers}\""), vec![teachers.clone()]),
        (
            format!("members[value eq \"{bob}\"]"),
            vec![teachers.clone()],
        ),
        (format!("members.value eq \"{ann}\""), vec![id.clone()]),
        ("displayName sw \"T\"".to_owned(), vec![teachers.clone()]),
        ("displayName eq \"nobody\"".to_owned(), vec![]),
    ] {
        let r = find(&s, &filter).await;
        let ids: Vec<&str> = r.body["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, want, "{filter}: {r}");
        assert_eq!(r.body["totalResults"], want.len(), "{filter}");
    }
    let sorted = s
        .call(
            Method::GET,
            "/Groups?sortBy=displayName&sortOrder=descending&count=1",
            None,
        )
        .await;
    assert_eq!(sorted.body["totalResults"], 2);
    assert_eq!(sorted.body["Resources"][0]["displayName"], "Teachers");
    let bad = s
        .call(
            Method::GET,
            &format!("/Groups?filter={}", q("displayName eq")),
            None,
        )
        .await;
    assert_scim_error(&bad, StatusCode::BAD_REQUEST, Some("invalidFilter"));

    // Uniqueness and validation.
    let clash = s
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"displayName": "staff"})),
        )
        .await;
    assert_scim_error(&clash, StatusCode::CONFLICT, Some("uniqueness"));
    let unknown = s
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"displayName": "X", "members": [{"value": "no-such-user"}]})),
        )
        .await;
    assert_scim_error(&unknown, StatusCode::BAD_REQUEST, Some("invalidValue"));
    let nameless = s
        .call(Method::POST, "/Groups", Some(json!({"externalId": "e"})))
        .await;
    assert_scim_error(&nameless, StatusCode::BAD_REQUEST, Some("invalidValue"));

    // PUT replaces the whole group: name and members.
    let put = s
        .call(
            Method::PUT,
            &format!("/Groups/{id}"),
            Some(
                json!({"schemas": [GROUP], "id": id, "displayName": "Staff 2",
                "members": [{"value": bob}]}),
            ),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{put}");
    assert_eq!(put.body["displayName"], "Staff 2");
    assert!(put.body.get("externalId").is_none(), "PUT replaces: {put}");
    assert_eq!(member_ids(&put.body), [bob.as_str()]);
    assert_ne!(put.header("etag"), Some(etag.as_str()));

    // The members' read-only `groups`.
    let bob_user = s.call(Method::GET, &format!("/Users/{bob}"), None).await;
    let mut groups: Vec<(String, String)> = bob_user.body["groups"]
        .as_array()
        .unwrap_or_else(|| panic!("{bob_user}"))
        .iter()
        .map(|g| {
            assert_eq!(g["type"], "direct");
            let gid = g["value"].as_str().unwrap().to_owned();
            assert_eq!(g["$ref"], format!("{}/Groups/{gid}", s.base));
            (gid, g["display"].as_str().unwrap().to_owned())
        })
        .collect();
    groups.sort();
    let mut want = vec![
        (id.clone(), "Staff 2".to_owned()),
        (teachers.clone(), "Teachers".to_owned()),
    ];
    want.sort();
    assert_eq!(groups, want);
    let ann_user = s.call(Method::GET, &format!("/Users/{ann}"), None).await;
    assert!(ann_user.body.get("groups").is_none(), "{ann_user}");

    // DELETE, then 404 with an error body.
    let del = s.call(Method::DELETE, &format!("/Groups/{id}"), None).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT, "{del}");
    let gone = s.call(Method::GET, &format!("/Groups/{id}"), None).await;
    assert_scim_error(&gone, StatusCode::NOT_FOUND, None);
    let again = s.call(Method::DELETE, &format!("/Groups/{id}"), None).await;
    assert_scim_error(&again, StatusCode::NOT_FOUND, None);
    let put_gone = s
        .call(
            Method::PUT,
            &format!("/Groups/{id}"),
            Some(json!({"displayName": "x"})),
        )
        .await;
    assert_scim_error(&put_gone, StatusCode::NOT_FOUND, None);
    let method = s
        .call(Method::POST, &format!("/Groups/{teachers}"), None)
        .await;
    assert_scim_error(&method, StatusCode::METHOD_NOT_ALLOWED, None);

    // Without a token: 401, as for users.
    let anon = s.send(Method::GET, "/Groups", None, None, &[]).await;
    assert_eq!(anon.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn entra_group_sequence() {
    let s = start(config()).await;
    let u1 = user(&s, "u1@contoso.com").await;
    let u2 = user(&s, "u2@contoso.com").await;
    let u3 = user(&s, "u3@contoso.com").await;

    // Existence check, then create an empty group (Entra adds members afterwards).
    let probe = find(&s, "displayName eq \"Sales\"").await;
    assert_eq!(probe.body["totalResults"], 0);
    let created = s
        .call(
            Method::POST,
            "/Groups?aadOptscim062020",
            Some(json!({"schemas": [GROUP], "externalId": "8aa1a0c0-aaaa",
                "displayName": "Sales", "members": [],
                "meta": {"resourceType": "Group"}})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created}");
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert!(created.body.get("members").is_none(), "{created}");
    let by_ext = find(&s, "externalId eq \"8aa1a0c0-aaaa\"").await;
    assert_eq!(by_ext.body["Resources"][0]["id"], id.as_str());
    // Entra's own check reads the group without members.
    let slim = s
        .call(
            Method::GET,
            &format!(
                "/Groups?excludedAttributes=members&filter={}",
                q(&format!("id eq \"{id}\""))
            ),
            None,
        )
        .await;
    assert_eq!(slim.body["totalResults"], 1);

    let add = patch(
        &s,
        &id,
        json!([{"op": "Add", "path": "members",
            "value": [{"value": u1}, {"value": u2}, {"value": u3}]}]),
    )
    .await;
    assert_eq!(add.status, StatusCode::OK, "{add}");
    assert_eq!(
        members_of(&s, &id).await,
        [u1.clone(), u2.clone(), u3.clone()]
    );

    let remove_one = patch(
        &s,
        &id,
        json!([{"op": "Remove", "path": "members", "value": [{"value": u2}]}]),
    )
    .await;
    assert_eq!(remove_one.status, StatusCode::OK, "{remove_one}");
    assert_eq!(members_of(&s, &id).await, [u1.clone(), u3.clone()]);

    let by_path = patch(
        &s,
        &id,
        json!([{"op": "Remove", "path": format!("members[value eq \"{u3}\"]")}]),
    )
    .await;
    assert_eq!(by_path.status, StatusCode::OK, "{by_path}");
    assert_eq!(members_of(&s, &id).await, [u1.as_str()]);

    let remove_all = patch(&s, &id, json!([{"op": "Remove", "path": "members"}])).await;
    assert_eq!(remove_all.status, StatusCode::OK, "{remove_all}");
    assert!(members_of(&s, &id).await.is_empty());

    let rename = patch(
        &s,
        &id,
        json!([{"op": "Replace", "path": "displayName", "value": "Sales EMEA"}]),
    )
    .await;
    assert_eq!(rename.status, StatusCode::OK, "{rename}");
    assert_eq!(rename.body["displayName"], "Sales EMEA");
    assert_eq!(
        find(&s, "displayName eq \"Sales EMEA\"").await.body["totalResults"],
        1
    );

    let del = s.call(Method::DELETE, &format!("/Groups/{id}"), None).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT, "{del}");
    assert_eq!(
        find(&s, "displayName eq \"Sales EMEA\"").await.body["totalResults"],
        0
    );
}

#[tokio::test]
async fn okta_push_groups_sequence() {
    let s = start(config()).await;
    let ann = user(&s, "ann@example.com").await;
    let bob = user(&s, "bob@example.com").await;
    let cy = user(&s, "cy@example.com").await;

    let probe = find(&s, "displayName eq \"Okta Push\"").await;
    assert_eq!(probe.body["totalResults"], 0);
    let created = s
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"schemas": [GROUP], "displayName": "Okta Push",
                "members": [{"value": ann, "display": "ann@example.com"},
                            {"value": bob, "display": "bob@example.com"}]})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created}");
    let id = created.body["id"].as_str().unwrap().to_owned();
    assert_eq!(member_ids(&created.body), [ann.clone(), bob.clone()]);

    // Full-member PUT: the whole resource as Okta read it, with one member swapped.
    let mut full = created.body.clone();
    full["members"] = json!([{"value": bob, "display": "bob@example.com"},
                             {"value": cy, "display": "cy@example.com"}]);
    let put = s
        .call(Method::PUT, &format!("/Groups/{id}"), Some(full))
        .await;
    assert_eq!(put.status, StatusCode::OK, "{put}");
    assert_eq!(member_ids(&put.body), [bob.clone(), cy.clone()]);

    // Path-less rename whose value also carries the id.
    let rename = patch(
        &s,
        &id,
        json!([{"op": "replace", "value": {"id": id, "displayName": "Okta Push 2"}}]),
    )
    .await;
    assert_eq!(rename.status, StatusCode::OK, "{rename}");
    assert_eq!(rename.body["displayName"], "Okta Push 2");
    assert_eq!(rename.body["id"], id.as_str());
    assert_eq!(member_ids(&rename.body), [bob.clone(), cy.clone()]);

    // Membership pushes as PATCH: add, then remove by a filtered path.
    let add = patch(
        &s,
        &id,
        json!([{"op": "add", "path": "members", "value": [{"value": ann, "display": "ann"}]}]),
    )
    .await;
    assert_eq!(
        member_ids(&add.body),
        [bob.clone(), cy.clone(), ann.clone()]
    );
    let remove = patch(
        &s,
        &id,
        json!([{"op": "remove", "path": format!("members[value eq \"{bob}\"]")}]),
    )
    .await;
    assert_eq!(member_ids(&remove.body), [cy.clone(), ann.clone()]);
    // Replace members with a full list.
    let replace = patch(
        &s,
        &id,
        json!([{"op": "replace", "path": "members", "value": [{"value": bob}]}]),
    )
    .await;
    assert_eq!(member_ids(&replace.body), [bob.as_str()]);

    // Okta's user PUT carries `groups`: ignored, membership unchanged.
    let okta_user_put = s
        .call(
            Method::PUT,
            &format!("/Users/{cy}"),
            Some(json!({"userName": "cy@example.com", "groups": [{"value": id}]})),
        )
        .await;
    assert_eq!(okta_user_put.status, StatusCode::OK, "{okta_user_put}");
    assert_eq!(members_of(&s, &id).await, [bob.as_str()]);
}

#[tokio::test]
async fn deleting_a_user_removes_it_from_its_groups() {
    let s = start(config()).await;
    let ann = user(&s, "ann").await;
    let bob = user(&s, "bob").await;
    let g = s
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"displayName": "G", "members": [{"value": ann}, {"value": bob}]})),
        )
        .await;
    let id = g.body["id"].as_str().unwrap().to_owned();
    let del = s.call(Method::DELETE, &format!("/Users/{ann}"), None).await;
    assert_eq!(del.status, StatusCode::NO_CONTENT);
    assert_eq!(members_of(&s, &id).await, [bob]);
}

#[tokio::test]
async fn etags_and_preconditions() {
    let s = start(config()).await;
    let created = s
        .call(Method::POST, "/Groups", Some(json!({"displayName": "E"})))
        .await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let v1 = created.header("etag").unwrap().to_owned();
    let path = format!("/Groups/{id}");

    let not_modified = s
        .send(
            Method::GET,
            &path,
            Some(TOKEN),
            None,
            &[("if-none-match", &v1)],
        )
        .await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);

    let body = json!({"schemas": [PATCH_OP],
        "Operations": [{"op": "replace", "path": "displayName", "value": "E2"}]})
    .to_string();
    let ok = s
        .send(
            Method::PATCH,
            &path,
            Some(TOKEN),
            Some(body.clone()),
            &[("if-match", &v1)],
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{ok}");
    let v2 = ok.header("etag").unwrap().to_owned();
    assert_ne!(v1, v2);

    let stale = s
        .send(
            Method::PATCH,
            &path,
            Some(TOKEN),
            Some(body),
            &[("if-match", &v1)],
        )
        .await;
    assert_scim_error(&stale, StatusCode::PRECONDITION_FAILED, None);
    let stale_put = s
        .send(
            Method::PUT,
            &path,
            Some(TOKEN),
            Some(json!({"displayName": "E3"}).to_string()),
            &[("if-match", &v1)],
        )
        .await;
    assert_scim_error(&stale_put, StatusCode::PRECONDITION_FAILED, None);
    let stale_delete = s
        .send(
            Method::DELETE,
            &path,
            Some(TOKEN),
            None,
            &[("if-match", &v1)],
        )
        .await;
    assert_scim_error(&stale_delete, StatusCode::PRECONDITION_FAILED, None);
    let unchanged = s.call(Method::GET, &path, None).await;
    assert_eq!(unchanged.body["displayName"], "E2");
    let delete = s
        .send(
            Method::DELETE,
            &path,
            Some(TOKEN),
            None,
            &[("if-match", &v2)],
        )
        .await;
    assert_eq!(delete.status, StatusCode::NO_CONTENT, "{delete}");
}
