//! What Microsoft Entra ID and Okta really send, in the order they send it
//! (see `shared/docs/scim-interop.md`), against the in-memory directory over HTTP.

mod scim_support;

use http::{Method, StatusCode};
use scim_support::{config, q, start, TOKEN};
use serde_json::json;

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

#[tokio::test]
async fn entra_id_sequence() {
    let s = start(config()).await;
    // Test connection: a filter on a random GUID must give 200 and an empty list.
    let probe = s
        .call(
            Method::GET,
            &format!(
                "/Users?aadOptscim062020&filter={}",
                q("userName eq \"0b0d8a8e-3c9f-4b2c-9e57-6f1a2c3d4e5f\"")
            ),
            None,
        )
        .await;
    assert_eq!(probe.status, StatusCode::OK);
    assert_eq!(probe.body["totalResults"], 0);
    assert_eq!(probe.body["Resources"], json!([]));

    // Create, with Entra's habits: PascalCase names, string booleans, nulls, meta, roles: [].
    let create = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
        "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
        "UserName": "Test_User_dfeef4c5-5681-4387-b016-bdf221e82081@contoso.com",
        "Active": "True",
        "displayName": "Test User",
        "emails": [{"primary": true, "type": "work", "value": "Test_User_fd0ea19b@testuser.com"}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
        "roles": [],
        "title": null,
        ENTERPRISE: {"employeeNumber": "42", "department": "Sales", "manager": null}
    });
    let created = s.call(Method::POST, "/Users", Some(create)).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["active"], true);
    assert!(created.body.get("title").is_none());
    let id = created.body["id"].as_str().unwrap().to_owned();

    // Filter by userName (case-insensitive) and by externalId, and the non-RFC email form.
    for filter in [
        "userName eq \"test_user_dfeef4c5-5681-4387-b016-bdf221e82081@CONTOSO.com\"".to_owned(),
        "externalId eq \"8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159\"".to_owned(),
        "emails[type eq \"work\"].value eq \"Test_User_fd0ea19b@testuser.com\"".to_owned(),
    ] {
        let found = s
            .call(Method::GET, &format!("/Users?filter={}", q(&filter)), None)
            .await;
        assert_eq!(found.status, StatusCode::OK, "{filter}");
        assert_eq!(found.body["totalResults"], 1, "{filter}");
        assert_eq!(found.body["Resources"][0]["id"], id.as_str());
    }

    // PATCH with capitalised ops, string booleans, value paths, dotted and URN keys, manager.
    let patch = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            {"op": "Replace", "path": "displayName", "value": "Updated Name"},
            {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "updated@contoso.com"},
            {"op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555 0100"},
            {"op": "Replace", "value": {"name.givenName": "Updated",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "43"}},
            {"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
                "value": [{"value": "mgr-1", "$ref": null}]},
            {"op": "Replace", "path": "active", "value": "True"}
        ]
    });
    let patched = s
        .call(Method::PATCH, &format!("/Users/{id}"), Some(patch))
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    let b = &patched.body;
    assert_eq!(b["displayName"], "Updated Name");
    assert_eq!(b["emails"][0]["value"], "updated@contoso.com");
    assert_eq!(
        b["phoneNumbers"],
        json!([{"type": "mobile", "value": "+1 555 0100"}])
    );
    assert_eq!(b["name"]["givenName"], "Updated");
    assert_eq!(b["name"]["familyName"], "familyName");
    assert_eq!(b[ENTERPRISE]["employeeNumber"], "43");
    assert_eq!(b[ENTERPRISE]["department"], "Sales");
    assert_eq!(b[ENTERPRISE]["manager"], json!({"value": "mgr-1"}));

    // Deactivate: Entra may use Add or Replace with a string boolean.
    for op in ["Add", "Replace"] {
        let off = s
            .call(
                Method::PATCH,
                &format!("/Users/{id}"),
                Some(
                    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                    "Operations": [{"op": op, "path": "active", "value": "False"}]}),
                ),
            )
            .await;
        assert_eq!(off.status, StatusCode::OK);
        assert_eq!(off.body["active"], false);
    }
    // A disabled user stays readable by GET and by filter.
    let got = s.call(Method::GET, &format!("/Users/{id}"), None).await;
    assert_eq!(got.body["active"], false);
    let found = s
        .call(
            Method::GET,
            &format!("/Users?filter={}", q("displayName eq \"Updated Name\"")),
            None,
        )
        .await;
    assert_eq!(found.body["totalResults"], 1);
}

#[tokio::test]
async fn okta_sequence() {
    let s = start(config()).await;
    let user_name = "isaac.brock@example.com";
    // Existence check before create.
    let check = s
        .call(
            Method::GET,
            &format!(
                "/Users?filter={}&startIndex=1&count=100",
                q(&format!("userName eq \"{user_name}\""))
            ),
            None,
        )
        .await;
    assert_eq!(check.status, StatusCode::OK);
    assert_eq!(check.body["totalResults"], 0);

    // Create with password, locale, externalId and a read-only groups: [], no content type.
    let create = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "name": {"givenName": "Isaac", "familyName": "Brock"},
        "emails": [{"primary": true, "value": user_name, "type": "work"}],
        "displayName": "Isaac Brock",
        "locale": "en-US",
        "externalId": "00ujl29u0le5T6Aj10h7",
        "groups": [],
        "password": "1mz050nq",
        "active": true
    });
    let created = s
        .send(
            Method::POST,
            "/Users",
            Some(TOKEN),
            Some(create.to_string()),
            &[],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert!(
        created.body.get("password").is_none(),
        "password is never returned"
    );
    assert_eq!(created.body["locale"], "en-US");
    let id = created.body["id"].as_str().unwrap().to_owned();

    // Profile update: PUT of the whole resource including id, meta and groups.
    let mut full = created.body.clone();
    full["name"]["familyName"] = json!("Brock-Smith");
    full["groups"] = json!([{"value": "g1", "display": "Everyone"}]);
    full["id"] = json!("something-else");
    let put = s
        .call(Method::PUT, &format!("/Users/{id}"), Some(full))
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    assert_eq!(put.body["id"], id.as_str());
    assert_eq!(put.body["name"]["familyName"], "Brock-Smith");
    assert!(put.body.get("groups").is_none());

    // Imports page with count=100; totals are consistent.
    let page = s
        .call(Method::GET, "/Users?startIndex=1&count=100", None)
        .await;
    assert_eq!(page.body["totalResults"], 1);
    assert_eq!(page.body["itemsPerPage"], 1);

    // Path-less deactivation, then PUT with active:false is equally accepted.
    let off = s
        .call(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "value": {"active": false}}]}),
            ),
        )
        .await;
    assert_eq!(off.status, StatusCode::OK);
    assert_eq!(off.body["active"], false);
    let mut again = put.body.clone();
    again["active"] = json!(true);
    let on = s
        .call(Method::PUT, &format!("/Users/{id}"), Some(again.clone()))
        .await;
    assert_eq!(on.body["active"], true);
    again["active"] = json!(false);
    let off = s
        .call(Method::PUT, &format!("/Users/{id}"), Some(again))
        .await;
    assert_eq!(off.body["active"], false);
    assert_eq!(
        s.call(Method::GET, &format!("/Users/{id}"), None)
            .await
            .body["active"],
        false
    );
}
