//! Every SCIM endpoint and status code, over HTTP on loopback, against the in-memory directory.

mod scim_support;

use http::{Method, StatusCode};
use scim_support::{config, q, start, TOKEN};
use serde_json::{json, Value};

const ERROR_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn user(name: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": name,
        "name": {"givenName": "Given", "familyName": name},
        "emails": [{"value": format!("{name}@example.org"), "type": "work", "primary": true}],
        "active": true
    })
}

fn assert_error(r: &scim_support::Reply, status: u16, scim_type: Option<&str>) {
    assert_eq!(r.status.as_u16(), status, "{}", r.body);
    assert_eq!(r.header("content-type"), Some("application/scim+json"));
    assert_eq!(r.body["schemas"][0], ERROR_SCHEMA);
    assert_eq!(r.body["status"], status.to_string());
    assert_eq!(r.body["scimType"].as_str(), scim_type, "{}", r.body);
}

#[tokio::test]
async fn discovery_documents_and_their_write_methods() {
    let s = start(config()).await;
    let spc = s.call(Method::GET, "/ServiceProviderConfig", None).await;
    assert_eq!(spc.status, StatusCode::OK);
    assert_eq!(spc.header("content-type"), Some("application/scim+json"));
    assert_eq!(spc.body["patch"]["supported"], true);
    assert_eq!(spc.body["filter"]["maxResults"], 1000);
    assert_eq!(
        spc.body["authenticationSchemes"][0]["type"],
        "oauthbearertoken"
    );

    // The in-memory directory has groups (without them: tests/scim_groups_reads.rs).
    let rts = s.call(Method::GET, "/ResourceTypes", None).await;
    assert_eq!(rts.body["totalResults"], 2);
    assert_eq!(rts.body["Resources"][0]["endpoint"], "/Users");
    assert_eq!(rts.body["Resources"][1]["endpoint"], "/Groups");
    let rt = s.call(Method::GET, "/ResourceTypes/User", None).await;
    assert_eq!(
        rt.body["schema"],
        "urn:ietf:params:scim:schemas:core:2.0:User"
    );
    assert_error(
        &s.call(Method::GET, "/ResourceTypes/Role", None).await,
        404,
        None,
    );

    let schemas = s.call(Method::GET, "/Schemas", None).await;
    assert_eq!(schemas.body["totalResults"], 3);
    let core = s
        .call(
            Method::GET,
            "/Schemas/urn:ietf:params:scim:schemas:core:2.0:User",
            None,
        )
        .await;
    assert_eq!(core.status, StatusCode::OK);
    let names: Vec<&str> = core.body["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert!(names.contains(&"userName") && names.contains(&"emails"));
    assert_error(
        &s.call(Method::GET, "/Schemas/urn:nope", None).await,
        404,
        None,
    );

    for path in ["/ServiceProviderConfig", "/ResourceTypes", "/Schemas"] {
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert_error(&s.call(m, path, Some(json!({}))).await, 405, None);
        }
    }
}

#[tokio::test]
async fn authentication() {
    let s = start(config()).await;
    let none = s.send(Method::GET, "/Users", None, None, &[]).await;
    assert_error(&none, 401, None);
    assert!(none
        .header("www-authenticate")
        .unwrap()
        .starts_with("Bearer"));
    assert_error(
        &s.send(Method::GET, "/Users", Some("wrong"), None, &[])
            .await,
        401,
        None,
    );
    // Both configured tokens work (rotation).
    for t in [TOKEN, "test-token-2"] {
        assert_eq!(
            s.send(Method::GET, "/Users", Some(t), None, &[])
                .await
                .status,
            StatusCode::OK
        );
    }
    // Discovery needs the token by default…
    assert_error(
        &s.send(Method::GET, "/Schemas", None, None, &[]).await,
        401,
        None,
    );
    // …unless configured otherwise.
    let open = start(chamilo_scim_proxy::config::ScimConfig {
        discovery_requires_auth: false,
        ..config()
    })
    .await;
    assert_eq!(
        open.send(Method::GET, "/Schemas", None, None, &[])
            .await
            .status,
        StatusCode::OK
    );
    assert_error(
        &open.send(Method::GET, "/Users", None, None, &[]).await,
        401,
        None,
    );
    // No token configured: everything is refused.
    let locked = start(chamilo_scim_proxy::config::ScimConfig::default()).await;
    assert_error(
        &locked
            .send(Method::GET, "/Users", Some(""), None, &[])
            .await,
        401,
        None,
    );
}

#[tokio::test]
async fn crud_with_etags() {
    let s = start(config()).await;
    let created = s.call(Method::POST, "/Users", Some(user("alice"))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let id = created.body["id"].as_str().unwrap().to_owned();
    let location = created.header("location").unwrap().to_owned();
    assert_eq!(location, format!("{}/Users/{id}", s.base));
    assert_eq!(created.body["meta"]["location"], location);
    assert_eq!(created.body["meta"]["resourceType"], "User");
    let etag = created.header("etag").unwrap().to_owned();
    assert!(etag.starts_with("W/\""));
    assert_eq!(created.body["meta"]["version"], etag);

    // userName is unique case-insensitively.
    assert_error(
        &s.call(Method::POST, "/Users", Some(user("ALICE"))).await,
        409,
        Some("uniqueness"),
    );
    assert_error(
        &s.call(Method::POST, "/Users", Some(json!({"displayName": "x"})))
            .await,
        400,
        Some("invalidValue"),
    );

    let got = s.call(Method::GET, &format!("/Users/{id}"), None).await;
    assert_eq!(got.status, StatusCode::OK);
    assert_eq!(got.body["userName"], "alice");
    let not_modified = s
        .send(
            Method::GET,
            &format!("/Users/{id}"),
            Some(TOKEN),
            None,
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);

    let mut replacement = user("alice");
    replacement["displayName"] = json!("Alice A");
    let put = s
        .call(
            Method::PUT,
            &format!("/Users/{id}"),
            Some(replacement.clone()),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK);
    assert_eq!(put.body["displayName"], "Alice A");
    assert_ne!(put.header("etag").unwrap(), etag);
    // The old ETag no longer matches.
    let stale = s
        .send(
            Method::PUT,
            &format!("/Users/{id}"),
            Some(TOKEN),
            Some(replacement.to_string()),
            &[("if-match", &etag)],
        )
        .await;
    assert_error(&stale, 412, None);
    let stale_patch = s
        .send(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(TOKEN),
            Some(
                json!({"Operations": [{"op": "replace", "path": "title", "value": "x"}]})
                    .to_string(),
            ),
            &[("if-match", &etag)],
        )
        .await;
    assert_error(&stale_patch, 412, None);

    let patched = s
        .call(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "replace", "path": "title", "value": "Boss"}]}),
            ),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK);
    assert_eq!(patched.body["title"], "Boss");
    assert_error(
        &s.call(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(json!({"Operations": [{"op": "replace", "path": "bogus", "value": 1}]})),
        )
        .await,
        400,
        Some("invalidPath"),
    );
    assert_error(
        &s.call(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(json!({"Operations": [{"op": "replace", "path": "id", "value": "1"}]})),
        )
        .await,
        400,
        Some("mutability"),
    );
    assert_error(
        &s.call(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(json!({"Operations": [{"op": "remove", "path": "userName"}]})),
        )
        .await,
        400,
        Some("invalidValue"),
    );

    // A second user cannot take alice's name by PUT or PATCH.
    let bob = s.call(Method::POST, "/Users", Some(user("bob"))).await;
    let bob_id = bob.body["id"].as_str().unwrap();
    assert_error(
        &s.call(
            Method::PATCH,
            &format!("/Users/{bob_id}"),
            Some(json!({"Operations": [{"op": "replace", "path": "userName", "value": "Alice"}]})),
        )
        .await,
        409,
        Some("uniqueness"),
    );

    assert_eq!(
        s.call(Method::DELETE, &format!("/Users/{id}"), None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_error(
        &s.call(Method::GET, &format!("/Users/{id}"), None).await,
        404,
        None,
    );
    assert_error(
        &s.call(Method::DELETE, &format!("/Users/{id}"), None).await,
        404,
        None,
    );
    assert_error(
        &s.call(Method::PUT, &format!("/Users/{id}"), Some(user("alice")))
            .await,
        404,
        None,
    );
    assert_error(
        &s.call(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(json!({"Operations": [{"op": "replace", "path": "title", "value": "x"}]})),
        )
        .await,
        404,
        None,
    );
    assert_error(
        &s.call(Method::POST, &format!("/Users/{bob_id}"), Some(user("x")))
            .await,
        405,
        None,
    );
}

#[tokio::test]
async fn lists_filter_sort_page_and_project() {
    let s = start(config()).await;
    for (i, name) in ["carol", "alice", "bob", "dave", "eve"].iter().enumerate() {
        let mut u = user(name);
        u["externalId"] = json!(format!("ext-{i}"));
        u["urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"] =
            json!({"department": if i % 2 == 0 { "A" } else { "B" }});
        assert_eq!(
            s.call(Method::POST, "/Users", Some(u)).await.status,
            StatusCode::CREATED
        );
    }
    let all = s.call(Method::GET, "/Users?sortBy=userName", None).await;
    assert_eq!(all.body["totalResults"], 5);
    assert_eq!(all.body["itemsPerPage"], 5);
    assert_eq!(all.body["startIndex"], 1);
    let names: Vec<&str> = all.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["userName"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alice", "bob", "carol", "dave", "eve"]);
    let desc = s
        .call(
            Method::GET,
            "/Users?sortBy=userName&sortOrder=descending&count=2",
            None,
        )
        .await;
    assert_eq!(desc.body["Resources"][0]["userName"], "eve");
    assert_eq!(desc.body["itemsPerPage"], 2);
    assert_eq!(desc.body["totalResults"], 5);
    assert_error(
        &s.call(
            Method::GET,
            "/Users?sortBy=userName&sortOrder=sideways",
            None,
        )
        .await,
        400,
        Some("invalidValue"),
    );

    // Pages are consistent: startIndex 1, 3, 5 with count 2 cover everything once.
    let mut seen = Vec::new();
    for start in [1, 3, 5] {
        let page = s
            .call(
                Method::GET,
                &format!("/Users?startIndex={start}&count=2"),
                None,
            )
            .await;
        assert_eq!(page.body["totalResults"], 5);
        assert_eq!(page.body["startIndex"], start);
        for r in page.body["Resources"].as_array().unwrap() {
            seen.push(r["id"].as_str().unwrap().to_owned());
        }
    }
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5);
    let beyond = s.call(Method::GET, "/Users?startIndex=99", None).await;
    assert_eq!(beyond.body["itemsPerPage"], 0);
    assert_eq!(beyond.body["Resources"], json!([]));
    let count0 = s.call(Method::GET, "/Users?count=0", None).await;
    assert_eq!(count0.body["totalResults"], 5);
    assert_eq!(count0.body["itemsPerPage"], 0);
    assert_error(
        &s.call(Method::GET, "/Users?count=many", None).await,
        400,
        Some("invalidValue"),
    );

    let f = s
        .call(
            Method::GET,
            &format!("/Users?filter={}", q("userName eq \"BOB\"")),
            None,
        )
        .await;
    assert_eq!(f.body["totalResults"], 1);
    assert_eq!(f.body["Resources"][0]["userName"], "bob");
    let f = s
        .call(
            Method::GET,
            &format!("/Users?filter={}", q("externalId eq \"ext-3\"")),
            None,
        )
        .await;
    assert_eq!(f.body["Resources"][0]["userName"], "dave");
    let f = s
        .call(Method::GET, &format!("/Users?filter={}", q("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq \"B\"")), None)
        .await;
    assert_eq!(f.body["totalResults"], 2);
    assert_error(
        &s.call(
            Method::GET,
            &format!("/Users?filter={}", q("userName eq")),
            None,
        )
        .await,
        400,
        Some("invalidFilter"),
    );
    let long = "userName eq \"".to_owned() + &"x".repeat(5000) + "\"";
    assert_error(
        &s.call(Method::GET, &format!("/Users?filter={}", q(&long)), None)
            .await,
        400,
        Some("invalidFilter"),
    );

    // Projection.
    let p = s
        .call(
            Method::GET,
            "/Users?attributes=userName,name.givenName&count=1",
            None,
        )
        .await;
    let r = &p.body["Resources"][0];
    assert!(r["id"].is_string(), "id is always returned");
    assert!(r["userName"].is_string());
    assert_eq!(r["name"].as_object().unwrap().len(), 1);
    assert!(r.get("emails").is_none() && r.get("meta").is_none());
    let p = s
        .call(
            Method::GET,
            "/Users?excludedAttributes=emails,name.familyName&count=1",
            None,
        )
        .await;
    let r = &p.body["Resources"][0];
    assert!(r.get("emails").is_none());
    assert!(r["name"].get("familyName").is_none());
    assert!(r["name"]["givenName"].is_string());
    assert!(r.get(ENTERPRISE).is_some());
    let id = r["id"].as_str().unwrap().to_owned();
    let one = s
        .call(Method::GET, &format!("/Users/{id}?attributes=emails"), None)
        .await;
    assert!(one.body.get("emails").is_some() && one.body.get("userName").is_none());

    // POST /.search, also at the root.
    for path in ["/Users/.search", "/.search"] {
        let r = s
            .call(
                Method::POST,
                path,
                Some(json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                "filter": "userName sw \"a\" or userName sw \"b\"",
                "sortBy": "userName", "attributes": ["userName"], "startIndex": 1, "count": 10})),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["totalResults"], 2);
        assert_eq!(r.body["Resources"][1]["userName"], "bob");
        assert!(r.body["Resources"][0].get("emails").is_none());
    }
    assert_error(
        &s.call(Method::GET, "/Users/.search", None).await,
        405,
        None,
    );
}

#[tokio::test]
async fn count_is_capped_by_max_results() {
    let s = start(chamilo_scim_proxy::config::ScimConfig {
        max_results: 2,
        default_count: 1,
        ..config()
    })
    .await;
    for name in ["a", "b", "c"] {
        s.call(Method::POST, "/Users", Some(user(name))).await;
    }
    let r = s.call(Method::GET, "/Users", None).await;
    assert_eq!(r.body["itemsPerPage"], 1, "default_count");
    let r = s.call(Method::GET, "/Users?count=50", None).await;
    assert_eq!(r.body["itemsPerPage"], 2, "max_results");
    assert_eq!(r.body["totalResults"], 3);
}

#[tokio::test]
async fn limits_syntax_and_unsupported_endpoints() {
    let s = start(chamilo_scim_proxy::config::ScimConfig {
        max_body_bytes: 256,
        ..config()
    })
    .await;
    let big = json!({"userName": "x".repeat(400)}).to_string();
    assert_error(
        &s.send(Method::POST, "/Users", Some(TOKEN), Some(big), &[])
            .await,
        413,
        None,
    );
    assert_error(
        &s.send(
            Method::POST,
            "/Users",
            Some(TOKEN),
            Some("{nope".into()),
            &[],
        )
        .await,
        400,
        Some("invalidSyntax"),
    );
    assert_error(
        &s.send(Method::POST, "/Users", Some(TOKEN), None, &[]).await,
        400,
        Some("invalidSyntax"),
    );
    for (i, ct) in [
        Some("application/json"),
        Some("text/json"),
        Some("application/scim+json; charset=utf-8"),
        None,
    ]
    .iter()
    .enumerate()
    {
        let headers: Vec<(&str, &str)> = ct.iter().map(|c| ("content-type", *c)).collect();
        let r = s
            .send(
                Method::POST,
                "/Users",
                Some(TOKEN),
                Some(user(&format!("ct{i}")).to_string()),
                &headers,
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{ct:?}");
    }
    assert_error(
        &s.call(Method::POST, "/Bulk", Some(json!({}))).await,
        501,
        None,
    );
    assert_error(&s.call(Method::GET, "/Me", None).await, 501, None);
    assert_error(&s.call(Method::GET, "/Nothing/here", None).await, 404, None);
    assert_error(&s.call(Method::GET, "", None).await, 404, None);
    // Unknown query parameters are ignored.
    assert_eq!(
        s.call(Method::GET, "/Users?aadOptscim062020", None)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn disabled_scim_answers_404() {
    let s = start(chamilo_scim_proxy::config::ScimConfig {
        enabled: false,
        ..config()
    })
    .await;
    assert_error(&s.call(Method::GET, "/Users", None).await, 404, None);
}

#[tokio::test]
async fn schema_ids_and_user_ids_are_matched_after_one_decoding() {
    let s = start(config()).await;
    // `%3A` is `:`; the router decodes once, the engine does not decode again.
    let r = s
        .call(
            Method::GET,
            "/Schemas/urn%3Aietf%3Aparams%3Ascim%3Aschemas%3Acore%3A2.0%3AUser",
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_error(&s.call(Method::GET, "/Users/%2541", None).await, 404, None);
}
