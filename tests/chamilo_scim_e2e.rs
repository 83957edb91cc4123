//! The SCIM engine over HTTP with the Chamilo directory and the stand-in behind it: what
//! Entra ID sends, and what ends up in Chamilo.

mod chamilo_support;
mod scim_support;

use std::sync::Arc;

use chamilo_scim_proxy::chamilo::client::{ClientSettings, Credentials};
use chamilo_scim_proxy::chamilo::directory::ChamiloDirectory;
use chamilo_scim_proxy::chamilo::index::UserIndex;
use chamilo_scim_proxy::chamilo::lookup::AccountLookup;
use chamilo_scim_proxy::chamilo::mapping::ChamiloMapping;
use chamilo_scim_proxy::chamilo::ChamiloClient;
use chamilo_scim_proxy::config::Secret;
use chamilo_scim_proxy::standin::{Standin, StandinConfig};
use http::{Method, StatusCode};
use scim_support::{config, q, start_with};
use serde_json::json;

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

#[tokio::test]
async fn entra_sequence_against_the_chamilo_stand_in() {
    let chamilo = Standin::start(StandinConfig {
        seed_users: 100,
        ..StandinConfig::default()
    })
    .await
    .unwrap();
    let client = Arc::new(
        ChamiloClient::new(ClientSettings::new(
            chamilo.base_url.clone(),
            Credentials {
                username: "admin".into(),
                api_key: None,
                password: Some(Secret::new(chamilo.admin_password.clone())),
                security_key: Some(Secret::new(chamilo.security_key.clone())),
            },
        ))
        .unwrap(),
    );
    let mapping = ChamiloMapping::default();
    let lookup = Arc::new(AccountLookup::new(
        Arc::new(UserIndex::new()),
        client.clone(),
        mapping.fields.clone(),
    ));
    // What `Backend::start` does before SCIM is ready: a first listing.
    lookup.rebuild().await.unwrap();
    let s = start_with(
        config(),
        Arc::new(ChamiloDirectory::new(client, lookup, mapping)),
    )
    .await;

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
    assert_eq!(probe.status, StatusCode::OK, "{}", probe.body);
    assert_eq!(probe.body["totalResults"], 0);

    let upn = "Test_User_dfeef4c5-5681-4387-b016-bdf221e82081@contoso.com";
    let create = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
        "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
        "UserName": upn,
        "Active": "True",
        "emails": [{"primary": true, "type": "work", "value": "Test_User_fd0ea19b@testuser.com"}],
        "meta": {"resourceType": "User"},
        "name": {"formatted": "givenName familyName", "familyName": "familyName", "givenName": "givenName"},
        "roles": [],
        ENTERPRISE: {"employeeNumber": "42"}
    });
    let created = s.call(Method::POST, "/Users", Some(create.clone())).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["userName"], upn);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let uid: u64 = id.parse().unwrap();
    {
        let state = chamilo.state();
        let u = state.user(uid).unwrap();
        assert_eq!(u.official_code, "42", "set by the follow-up update");
        assert_eq!(u.status, 5);
        assert!(u.username.len() <= 50);
    }

    // The same create again: 409 uniqueness, no second account.
    let again = s.call(Method::POST, "/Users", Some(create.clone())).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "{}", again.body);

    let found = s
        .call(
            Method::GET,
            &format!(
                "/Users?filter={}",
                q(&format!("userName eq \"{}\"", upn.to_uppercase()))
            ),
            None,
        )
        .await;
    assert_eq!(found.body["totalResults"], 1, "{}", found.body);
    assert_eq!(found.body["Resources"][0]["userName"], upn);

    let off = s
        .call(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "Replace", "path": "active", "value": "False"}]}),
            ),
        )
        .await;
    assert_eq!(off.status, StatusCode::OK, "{}", off.body);
    assert_eq!(off.body["active"], false);
    assert_eq!(chamilo.state().user(uid).unwrap().active, 0);
    assert_eq!(chamilo.state().user(uid).unwrap().official_code, "42");

    // Values Chamilo would mangle: 400 before any call.
    let save_calls = chamilo.calls("save_user");
    let bad = s
        .call(
            Method::POST,
            "/Users",
            Some(json!({"userName": "emoji@contoso.com",
                "name": {"givenName": "Zoé 😀", "familyName": "X"},
                "emails": [{"value": "emoji@contoso.com", "primary": true}]})),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    assert_eq!(chamilo.calls("save_user"), save_calls);

    let gone = s.call(Method::DELETE, &format!("/Users/{id}"), None).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT, "{}", gone.body);
    assert_eq!(
        chamilo.state().user(uid).unwrap().active,
        0,
        "deactivated, kept"
    );
    // Gone for SCIM (RFC 7644 §3.6); Entra's rehire sequence brings the account back.
    let after = s.call(Method::GET, &format!("/Users/{id}"), None).await;
    assert_eq!(after.status, StatusCode::NOT_FOUND, "{}", after.body);
    let probe = s
        .call(
            Method::GET,
            &format!("/Users?filter={}", q(&format!("userName eq \"{upn}\""))),
            None,
        )
        .await;
    assert_eq!(probe.body["totalResults"], 0, "{}", probe.body);
    let rehired = s.call(Method::POST, "/Users", Some(create)).await;
    assert_eq!(rehired.status, StatusCode::CREATED, "{}", rehired.body);
    assert_eq!(rehired.body["id"], id.as_str(), "the old Chamilo id");
    assert_eq!(chamilo.state().user(uid).unwrap().active, 1);
    assert_eq!(
        chamilo.calls("get_users"),
        1,
        "one background listing, never per request"
    );
}

/// Entra's value-path PATCHes end up in Chamilo, and every value comes back as sent (issue 10:
/// the whole of `emails`, `phoneNumbers` and `roles` is kept; Chamilo's column holds the
/// chosen one).
#[tokio::test]
async fn entra_value_paths_against_the_round_trip_schema() {
    let chamilo = Standin::start(StandinConfig::default()).await.unwrap();
    let directory = chamilo_support::replica(&chamilo, ChamiloMapping::default())
        .await
        .directory;
    let s = start_with(config(), Arc::new(directory)).await;

    let schema = s
        .call(
            Method::GET,
            "/Schemas/urn:ietf:params:scim:schemas:core:2.0:User",
            None,
        )
        .await;
    let emails = schema.body["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "emails")
        .unwrap();
    assert_eq!(
        emails["subAttributes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["value", "display", "type", "primary"]
    );

    let created = s
        .call(
            Method::POST,
            "/Users",
            Some(json!({"userName": "kim", "emails": [{"value": "kim@example.org", "type": "work", "primary": true}]})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(
        created.body["emails"],
        json!([{"value": "kim@example.org", "type": "work", "primary": true}])
    );
    let id = created.body["id"].as_str().unwrap().to_owned();
    let uid: u64 = id.parse().unwrap();
    let patch = |path: &str, value: &str| {
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "Add", "path": path, "value": value}]})
    };
    for (path, value) in [
        ("emails[type eq \"work\"].value", "kim.work@example.org"),
        ("emails[primary eq true].value", "kim.primary@example.org"),
    ] {
        let r = s
            .call(
                Method::PATCH,
                &format!("/Users/{id}"),
                Some(patch(path, value)),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.body);
        assert_eq!(
            r.body["emails"],
            json!([{"value": value, "type": "work", "primary": true}]),
            "{path}"
        );
        assert_eq!(chamilo.state().user(uid).unwrap().email, value, "{path}");
    }
    let r = s
        .call(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(patch("roles[primary eq \"True\"].value", "teacher")),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        r.body["roles"],
        json!([{"value": "teacher", "primary": true}])
    );
    assert_eq!(chamilo.state().user(uid).unwrap().status, 1);
    let r = s
        .call(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(patch("phoneNumbers[type eq \"mobile\"].value", "555-0101")),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(chamilo.state().user(uid).unwrap().phone, "555-0101");
    assert_eq!(
        r.body["phoneNumbers"],
        json!([{"value": "555-0101", "type": "mobile"}]),
        "the number comes back as sent"
    );

    let found = s
        .call(
            Method::GET,
            &format!(
                "/Users?filter={}",
                q("emails[type eq \"work\"].value eq \"kim.primary@example.org\"")
            ),
            None,
        )
        .await;
    assert_eq!(found.body["totalResults"], 1, "{}", found.body);
    assert_eq!(
        found.body["Resources"][0]["roles"],
        json!([{"value": "teacher", "primary": true}])
    );
}
