//! Issue 11 §9: SCIM input that used to be accepted and must not be. Each test answers one
//! finding: the request is refused with 400 and the right `scimType`, and nothing changes.

mod scim_support;

use http::{Method, StatusCode};
use scim_support::{config, q, start, Reply, TestServer};
use serde_json::{json, Value};

fn assert_400(r: &Reply, scim_type: &str, detail_mentions: &str) {
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r}");
    assert_eq!(r.body["scimType"], scim_type, "{r}");
    let detail = r.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(detail_mentions),
        "{detail:?} should name {detail_mentions:?}{r}"
    );
}

async fn total(s: &TestServer) -> u64 {
    let r = s.call(Method::GET, "/Users", None).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    r.body["totalResults"].as_u64().unwrap_or(u64::MAX)
}

async fn create(s: &TestServer, body: Value) -> Reply {
    s.call(Method::POST, "/Users", Some(body)).await
}

#[tokio::test]
async fn user_name_must_be_a_string_not_a_boolean_or_number() {
    let s = start(config()).await;
    for bad in [json!(true), json!(false), json!(42)] {
        let r = create(&s, json!({"userName": bad})).await;
        assert_400(&r, "invalidValue", "userName");
    }
    // Booleans for other string attributes are refused too; Entra's string booleans for
    // boolean attributes stay accepted.
    let r = create(&s, json!({"userName": "b", "displayName": true})).await;
    assert_400(&r, "invalidValue", "displayName");
    assert_eq!(total(&s).await, 0);
    let ok = create(&s, json!({"userName": "entra", "active": "False"})).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{ok}");
    assert_eq!(ok.body["active"], false);
    let id = ok.body["id"].as_str().unwrap_or_default().to_owned();
    let r = s
        .call(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(json!({"Operations": [{"op": "replace", "path": "userName", "value": true}]})),
        )
        .await;
    assert_400(&r, "invalidValue", "userName");
    let r = s.call(Method::GET, &format!("/Users/{id}"), None).await;
    assert_eq!(r.body["userName"], "entra");
}

#[tokio::test]
async fn control_characters_are_refused_in_user_name_and_profile_strings() {
    let s = start(config()).await;
    for name in [
        "nul\u{0}x",
        "cr\rx",
        "lf\nx",
        "tab\tx",
        "del\u{7f}x",
        "esc\u{1b}x",
    ] {
        let r = create(&s, json!({"userName": name})).await;
        assert_400(&r, "invalidValue", "userName");
    }
    for body in [
        json!({"userName": "a", "name": {"givenName": "A\nB"}}),
        json!({"userName": "a", "emails": [{"value": "a@x.org\r\nBcc: b@x.org"}]}),
        json!({"userName": "a", "externalId": "e\u{0}1"}),
        json!({"userName": "a", "displayName": "A\tB"}),
    ] {
        let r = create(&s, body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r}");
        assert_eq!(r.body["scimType"], "invalidValue", "{r}");
    }
    assert_eq!(total(&s).await, 0);
}

#[tokio::test]
async fn user_names_equal_after_nfc_and_trimming_are_one_account() {
    let s = start(config()).await;
    // "José" precomposed (U+00E9) and decomposed (e + U+0301).
    let first = create(&s, json!({"userName": "jos\u{e9}"})).await;
    assert_eq!(first.status, StatusCode::CREATED, "{first}");
    let decomposed = create(&s, json!({"userName": "jose\u{301}"})).await;
    assert_eq!(decomposed.status, StatusCode::CONFLICT, "{decomposed}");
    assert_eq!(decomposed.body["scimType"], "uniqueness");
    let spaced = create(&s, json!({"userName": "jos\u{e9} "})).await;
    assert_eq!(spaced.status, StatusCode::CONFLICT, "{spaced}");
    let cased = create(&s, json!({"userName": " JOS\u{c9}"})).await;
    assert_eq!(cased.status, StatusCode::CONFLICT, "{cased}");
    assert_eq!(total(&s).await, 1);
    // Stored as NFC, trimmed; the filter compares the same way.
    let stored = create(&s, json!({"userName": "  ren\u{65}\u{301}e  "})).await;
    assert_eq!(stored.status, StatusCode::CREATED, "{stored}");
    assert_eq!(stored.body["userName"], "ren\u{e9}e");
    let found = s
        .call(
            Method::GET,
            &format!("/Users?filter={}", q("userName eq \"rene\u{301}e \"")),
            None,
        )
        .await;
    assert_eq!(found.body["totalResults"], 1, "{found}");
    // A PATCH renaming to another spelling of a taken name is refused, and changes nothing.
    let id = stored.body["id"].as_str().unwrap_or_default().to_owned();
    let renamed = s
        .call(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(json!({"Operations": [{"op": "replace", "path": "userName", "value": "jose\u{301}\t"}]})),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::BAD_REQUEST, "{renamed}");
    let renamed = s
        .call(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(json!({"Operations": [{"op": "replace", "path": "userName", "value": "jose\u{301} "}]})),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::CONFLICT, "{renamed}");
    let r = s.call(Method::GET, &format!("/Users/{id}"), None).await;
    assert_eq!(r.body["userName"], "ren\u{e9}e");
}

#[tokio::test]
async fn filters_on_unknown_attributes_are_invalid_filters() {
    let s = start(config()).await;
    create(&s, json!({"userName": "known"})).await;
    for (filter, names) in [
        ("nosuchattr eq \"x\"", "nosuchattr"),
        ("userName eq \"known\" or name.nickname pr", "name.nickname"),
        ("emails[kind eq \"work\"]", "kind"),
        (
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:shoeSize gt 3",
            "shoeSize",
        ),
    ] {
        let r = s
            .call(Method::GET, &format!("/Users?filter={}", q(filter)), None)
            .await;
        assert_400(&r, "invalidFilter", names);
    }
    let r = s
        .call(
            Method::GET,
            &format!("/Groups?filter={}", q("userName eq \"x\"")),
            None,
        )
        .await;
    assert_400(&r, "invalidFilter", "userName");
    // What identity providers rely on keeps working.
    for filter in [
        "userName eq \"5f1c39a4-0f0a-4f47-8a59-3d1c6fbd2b0e\"",
        "emails[type eq \"work\"].value eq \"a@x.org\"",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq \"7\"",
        "externalId eq \"e\" or meta.lastModified lt \"2020-01-01T00:00:00Z\"",
    ] {
        let r = s
            .call(Method::GET, &format!("/Users?filter={}", q(filter)), None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{filter}{r}");
        assert_eq!(r.body["totalResults"], 0, "{filter}{r}");
    }
    let r = s
        .call(
            Method::GET,
            &format!("/Groups?filter={}", q("members[value eq \"x\"]")),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
}

#[tokio::test]
async fn date_attributes_compare_only_with_dates() {
    let s = start(config()).await;
    create(&s, json!({"userName": "dated"})).await;
    for filter in [
        "meta.lastModified gt \"yesterday\"",
        "meta.created lt 2020",
        "meta.lastModified eq true",
    ] {
        let r = s
            .call(Method::GET, &format!("/Users?filter={}", q(filter)), None)
            .await;
        assert_400(&r, "invalidFilter", "meta.");
    }
    let r = s
        .call(
            Method::GET,
            &format!(
                "/Users?filter={}",
                q("meta.created gt \"2000-01-01T00:00:00Z\"")
            ),
            None,
        )
        .await;
    assert_eq!(r.body["totalResults"], 1, "{r}");
}

#[tokio::test]
async fn a_blank_filter_is_an_invalid_filter_not_everyone() {
    let s = start(config()).await;
    create(&s, json!({"userName": "someone"})).await;
    for blank in ["", "%20%20", "%09"] {
        let r = s
            .call(Method::GET, &format!("/Users?filter={blank}"), None)
            .await;
        assert_400(&r, "invalidFilter", "filter");
    }
    let r = s
        .call(
            Method::POST,
            "/Users/.search",
            Some(json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"], "filter": " "})),
        )
        .await;
    assert_400(&r, "invalidFilter", "filter");
    let r = s.call(Method::GET, "/Groups?filter=", None).await;
    assert_400(&r, "invalidFilter", "filter");
}
