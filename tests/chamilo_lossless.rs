//! Issue 10: every attribute the identity provider sends comes back as sent, through the SCIM
//! engine over HTTP with the Chamilo directory and the stand-in behind it; language
//! preferences never block an account.

mod chamilo_support;
mod log_capture;
mod scim_support;

use std::sync::Arc;

use chamilo_scim_proxy::chamilo::directory::ChamiloDirectory;
use chamilo_scim_proxy::chamilo::index::UserIndex;
use chamilo_scim_proxy::chamilo::lookup::AccountLookup;
use chamilo_scim_proxy::chamilo::mapping::{ChamiloMapping, LanguagePolicy};
use chamilo_scim_proxy::standin::{Standin, StandinConfig, StandinHandle};
use http::{Method, StatusCode};
use scim_support::{assert_scim_error, config, q, start_with, Reply, TestServer};
use serde_json::{json, Value};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// The stand-in, the SCIM engine over the Chamilo directory in front of it, and the mapping
/// (whose language policy a test may change, as a reload does).
struct Stack {
    chamilo: StandinHandle,
    scim: TestServer,
    mapping: ChamiloMapping,
}

async fn stack() -> Stack {
    let chamilo = Standin::start(StandinConfig {
        seed_users: 3,
        ..StandinConfig::default()
    })
    .await
    .unwrap();
    let client = chamilo_support::admin_client(&chamilo);
    let mapping = ChamiloMapping::default();
    chamilo_support::ensure_fields(&chamilo, &mapping);
    let lookup = Arc::new(AccountLookup::new(
        Arc::new(UserIndex::new()),
        client.clone(),
        mapping.fields.clone(),
    ));
    lookup.rebuild().await.unwrap();
    let scim = start_with(
        config(),
        Arc::new(ChamiloDirectory::new(client, lookup, mapping.clone())),
    )
    .await;
    Stack {
        chamilo,
        scim,
        mapping,
    }
}

impl Stack {
    async fn create(&self, body: Value) -> Reply {
        let r = self.scim.call(Method::POST, "/Users", Some(body)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{r}");
        r
    }

    async fn get(&self, id: &str) -> Reply {
        let r = self
            .scim
            .call(Method::GET, &format!("/Users/{id}"), None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{r}");
        r
    }

    async fn patch(&self, id: &str, ops: Value) -> Reply {
        self.scim
            .call(
                Method::PATCH,
                &format!("/Users/{id}"),
                Some(json!({"schemas": [PATCH_OP], "Operations": ops})),
            )
            .await
    }

    async fn filter(&self, expr: &str) -> Reply {
        let r = self
            .scim
            .call(Method::GET, &format!("/Users?filter={}", q(expr)), None)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{r}");
        r
    }

    /// Chamilo's own record of the account.
    fn account(&self, id: &str) -> chamilo_scim_proxy::standin::User {
        let id: u64 = id.parse().unwrap();
        self.chamilo.state().user(id).cloned().unwrap()
    }
}

fn minimal(user_name: &str) -> Value {
    json!({
        "schemas": [USER],
        "userName": user_name,
        "name": {"givenName": "Ann", "familyName": "Lee"},
        "emails": [{"value": user_name, "type": "work", "primary": true}]
    })
}

// --- Stage 1: language preferences never block an account; string booleans. ---

#[tokio::test]
async fn an_unmapped_language_is_kept_as_sent_and_chamilo_gets_the_best_match() {
    let logs = log_capture::capture_json(tracing::Level::WARN);
    let s = stack().await;

    // No entry for the tag nor its base language: the default language, and a WARN.
    let mut body = minimal("xh@example.org");
    body["preferredLanguage"] = json!("xh");
    body["locale"] = json!("xh-ZA");
    let r = s.create(body).await;
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(r.body["preferredLanguage"], "xh", "{r}");
    assert_eq!(r.body["locale"], "xh-ZA", "{r}");
    assert_eq!(s.account(&id).language, "english");
    let warned: Vec<Value> = logs
        .lines()
        .into_iter()
        .filter(|l| l["level"] == "WARN" && l["fields"]["scim.language"] == "xh")
        .collect();
    assert_eq!(warned.len(), 1, "{}", logs.text());
    assert_eq!(warned[0]["fields"]["chamilo.language"], "english");
    assert_eq!(
        warned[0]["fields"]["chamilo.user_id"],
        id.parse::<u64>().unwrap()
    );
    let got = s.get(&id).await;
    assert_eq!(got.body["preferredLanguage"], "xh", "{got}");
    assert_eq!(got.body["locale"], "xh-ZA", "{got}");

    // The base language when the tag itself has no entry.
    let mut body = minimal("enza@example.org");
    body["locale"] = json!("fr-SN");
    let r = s.create(body).await;
    let id2 = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(r.body["locale"], "fr-SN", "{r}");
    assert_eq!(s.account(&id2).language, "french");

    // A PATCH to another unmapped tag keeps it; to a mapped one, Chamilo follows.
    let p = s
        .patch(
            &id2,
            json!([{"op": "replace", "path": "locale", "value": "zu"}]),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{p}");
    assert_eq!(p.body["locale"], "zu", "{p}");
    assert_eq!(s.account(&id2).language, "english");
    let p = s
        .patch(
            &id2,
            json!([{"op": "replace", "path": "locale", "value": "de-AT"}]),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{p}");
    assert_eq!(s.account(&id2).language, "german");
    let found = s.filter("preferredLanguage eq \"xh\"").await;
    assert_eq!(found.body["totalResults"], 1, "{found}");

    // The strict switch (a reload sets it on the shared policy): 400, nothing made.
    s.mapping.language_policy.store(Arc::new(LanguagePolicy {
        refuse_unmapped: true,
        ..LanguagePolicy::default()
    }));
    let before = s.chamilo.state().user_count();
    let mut body = minimal("strict@example.org");
    body["preferredLanguage"] = json!("xh");
    let r = s.scim.call(Method::POST, "/Users", Some(body)).await;
    assert_scim_error(&r, StatusCode::BAD_REQUEST, Some("invalidValue"));
    assert!(r.body["detail"].as_str().unwrap().contains("xh"), "{r}");
    assert_eq!(s.chamilo.state().user_count(), before);
    let p = s
        .patch(
            &id2,
            json!([{"op": "replace", "path": "preferredLanguage", "value": "xx"}]),
        )
        .await;
    assert_scim_error(&p, StatusCode::BAD_REQUEST, Some("invalidValue"));
    assert_eq!(s.account(&id2).language, "german");
}

#[tokio::test]
async fn string_booleans_for_active_work_everywhere() {
    let s = stack().await;
    let mut body = minimal("bool@example.org");
    body["active"] = json!("False");
    let r = s.create(body).await;
    let id = r.body["id"].as_str().unwrap().to_owned();
    assert_eq!(r.body["active"], false, "{r}");
    assert_eq!(s.account(&id).active, 0);

    // PATCH with a path, Entra's capitalised op and string value.
    let p = s
        .patch(
            &id,
            json!([{"op": "Replace", "path": "active", "value": "True"}]),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{p}");
    assert_eq!(p.body["active"], true, "{p}");
    assert_eq!(s.account(&id).active, 1);
    // Pathless.
    let p = s
        .patch(
            &id,
            json!([{"op": "replace", "value": {"active": "false"}}]),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{p}");
    assert_eq!(p.body["active"], false, "{p}");
    assert_eq!(s.account(&id).active, 0);
    // Add (Entra's deprovisioning habit).
    let p = s
        .patch(
            &id,
            json!([{"op": "Add", "path": "active", "value": "TRUE"}]),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{p}");
    assert_eq!(s.account(&id).active, 1);
    // PUT.
    let mut body = minimal("bool@example.org");
    body["active"] = json!("False");
    let r = s
        .scim
        .call(Method::PUT, &format!("/Users/{id}"), Some(body))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    assert_eq!(r.body["active"], false, "{r}");
    assert_eq!(s.account(&id).active, 0);
    // Filters.
    let found = s
        .filter("userName eq \"bool@example.org\" and active eq false")
        .await;
    assert_eq!(found.body["totalResults"], 1, "{found}");
}

// --- Stage 2: every attribute comes back as sent. ---

/// A user as Entra ID's default attribute mapping sends it, every attribute of both schemas
/// set (and a few characters Chamilo's columns could not hold).
fn entra_user(user_name: &str) -> Value {
    json!({
        "schemas": [USER, ENTERPRISE],
        "externalId": format!("ext-{user_name}"),
        "userName": user_name,
        "active": "True",
        "displayName": "Ada Lovelace 🧮 <R&D>",
        "title": "Analyst \"Engines\"",
        "nickName": "Ada",
        "userType": "Employee",
        "profileUrl": "https://contoso.example/people/ada",
        "timezone": "Europe/London",
        "preferredLanguage": "en-GB",
        "locale": "en_GB",
        "name": {
            "formatted": "Ms Ada King Lovelace III",
            "familyName": "Lovelace",
            "givenName": "Ada",
            "middleName": "King",
            "honorificPrefix": "Ms",
            "honorificSuffix": "III"
        },
        "emails": [
            {"value": user_name, "type": "work", "primary": true},
            {"value": "ada@home.example", "type": "home"}
        ],
        "phoneNumbers": [
            {"value": "+44 20 7946 0000", "type": "work"},
            {"value": "+44 7700 900000", "type": "mobile"},
            {"value": "+44 20 7946 0001", "type": "fax"}
        ],
        "addresses": [
            {"type": "work", "formatted": "1 Main St\nLondon N1 9GU", "streetAddress": "1 Main St",
             "locality": "London", "region": "Greater London", "postalCode": "N1 9GU",
             "country": "GB", "primary": true},
            {"type": "home", "locality": "Richmond", "country": "GB"}
        ],
        "ims": [{"value": "ada@xmpp.example", "type": "xmpp"}],
        "photos": [{"value": "https://contoso.example/ada.jpg", "type": "photo"}],
        "entitlements": [{"value": "lms-basic", "display": "LMS"}],
        "roles": [{"value": "teacher", "primary": true, "type": "WindowsAzureActiveDirectoryRole", "display": "Teacher"}],
        "x509Certificates": [{"value": "MIIBszCCAVmgAwIBAgIUQ2hhbWlsbw=="}],
        ENTERPRISE: {
            "employeeNumber": "E-1815",
            "costCenter": "CC-7",
            "organization": "Contoso",
            "division": "Research",
            "department": "R&D",
            "manager": {"value": "26118915-6090-4d6a-b6b2-2fe5f1e6a6d0"}
        }
    })
}

/// A user as Okta's SCIM 2.0 app sends it: with `password`, a read-only `groups: []`, `locale`
/// and the enterprise extension.
fn okta_user(user_name: &str) -> Value {
    json!({
        "schemas": [USER, ENTERPRISE],
        "userName": user_name,
        "externalId": format!("00u{}", user_name.len()),
        "password": "Okta-Pass-2026!",
        "groups": [],
        "active": true,
        "name": {"givenName": "Grace", "familyName": "Hopper", "middleName": "Brewster",
                 "honorificPrefix": "Rear Admiral", "formatted": "Grace Brewster Hopper"},
        "displayName": "Grace Hopper",
        "nickName": "Amazing Grace",
        "profileUrl": "https://okta.example/grace",
        "title": "Rear Admiral",
        "userType": "Contractor",
        "preferredLanguage": "en-US",
        "locale": "en-US",
        "timezone": "America/New_York",
        "emails": [{"primary": true, "value": user_name, "type": "work"}],
        "phoneNumbers": [{"value": "555-0100", "type": "mobile"}],
        "addresses": [{"type": "work", "streetAddress": "10 Navy Way", "locality": "Arlington",
                       "region": "VA", "postalCode": "22202", "country": "US", "primary": true}],
        ENTERPRISE: {
            "employeeNumber": "1906", "costCenter": "Navy", "organization": "USN",
            "division": "Computing", "department": "COBOL",
            "manager": {"value": "mgr-42", "$ref": "https://okta.example/Users/mgr-42"}
        }
    })
}

/// Every attribute `sent` has (but those never returned) is in `got` as sent.
fn assert_as_sent(sent: &Value, got: &Reply) {
    for (k, v) in sent.as_object().unwrap() {
        match k.as_str() {
            "schemas" | "password" | "groups" => {}
            "active" => assert_eq!(
                got.body["active"],
                json!(v.as_bool().unwrap_or(v == "True")),
                "{got}"
            ),
            _ => assert_eq!(&got.body[k], v, "{k}:{got}"),
        }
    }
    assert_eq!(got.body["schemas"], json!([USER, ENTERPRISE]), "{got}");
}

#[tokio::test]
async fn maximal_entra_and_okta_users_round_trip() {
    let s = stack().await;
    for (label, sent) in [
        ("entra", entra_user("ada@contoso.example")),
        ("okta", okta_user("grace@okta.example")),
    ] {
        let user_name = sent["userName"].as_str().unwrap().to_owned();
        let r = s.create(sent.clone()).await;
        assert_as_sent(&sent, &r);
        let id = r.body["id"].as_str().unwrap().to_owned();
        assert_as_sent(&sent, &s.get(&id).await);
        // Chamilo's columns hold what they can.
        let a = s.account(&id);
        assert_eq!(a.email, user_name, "{label}");
        assert_eq!(a.firstname.as_deref(), sent["name"]["givenName"].as_str());
        assert_eq!(a.lastname, sent["name"]["familyName"].as_str().unwrap());
        assert_eq!(
            a.official_code,
            sent[ENTERPRISE]["employeeNumber"].as_str().unwrap()
        );
        assert_eq!(a.language, "english");
        let phone = if label == "entra" {
            "+44 20 7946 0000"
        } else {
            "555-0100"
        };
        assert_eq!(a.phone, phone, "{label}: the work (else first) number");
        // The kept document holds no character an HTML filter rewrites.
        let field = a.extra["scim_attributes"].clone().unwrap();
        assert!(
            field.is_ascii() && !field.contains(['<', '>', '&', '"', '\'']),
            "{field}"
        );

        // Listed (from the index) and found by any attribute, with projection.
        for expr in [
            format!(
                "displayName eq \"{}\"",
                sent["displayName"].as_str().unwrap()
            ),
            format!("title eq {}", sent["title"]),
            format!(
                "nickName co \"{}\"",
                &sent["nickName"].as_str().unwrap()[1..]
            ),
            format!(
                "addresses[type eq \"work\"].locality eq \"{}\"",
                sent["addresses"][0]["locality"].as_str().unwrap()
            ),
            format!(
                "{ENTERPRISE}:department eq \"{}\"",
                sent[ENTERPRISE]["department"].as_str().unwrap()
            ),
            format!(
                "phoneNumbers[type eq \"mobile\"].value eq \"{}\"",
                sent["phoneNumbers"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| p["type"] == "mobile")
                    .unwrap()["value"]
                    .as_str()
                    .unwrap()
            ),
            format!(
                "userType eq \"{}\" and timezone pr",
                sent["userType"].as_str().unwrap()
            ),
            format!("emails.value eq \"{user_name}\""),
        ] {
            let found = s.filter(&expr).await;
            assert_eq!(found.body["totalResults"], 1, "{label} {expr}:{found}");
            assert_eq!(found.body["Resources"][0]["id"], id.as_str(), "{expr}");
            assert_as_sent(&sent, &{
                let mut one = found;
                one.body = one.body["Resources"][0].clone();
                one
            });
        }
        let projected = s
            .scim
            .call(
                Method::GET,
                &format!(
                    "/Users?filter={}&attributes={}",
                    q(&format!("userName eq \"{user_name}\"")),
                    q(&format!(
                        "displayName,addresses.locality,{ENTERPRISE}:department"
                    ))
                ),
                None,
            )
            .await;
        let one = &projected.body["Resources"][0];
        assert_eq!(one["displayName"], sent["displayName"], "{projected}");
        assert_eq!(
            one["addresses"][0],
            json!({"locality": sent["addresses"][0]["locality"]}),
            "{projected}"
        );
        assert_eq!(
            one[ENTERPRISE],
            json!({"department": sent[ENTERPRISE]["department"]})
        );
        assert!(
            one.get("title").is_none() && one.get("emails").is_none(),
            "{projected}"
        );
        let excluded = s
            .scim
            .call(
                Method::GET,
                &format!(
                    "/Users/{id}?excludedAttributes=addresses,phoneNumbers,{ENTERPRISE}:manager"
                ),
                None,
            )
            .await;
        assert!(excluded.body.get("addresses").is_none(), "{excluded}");
        assert!(excluded.body.get("phoneNumbers").is_none(), "{excluded}");
        assert!(
            excluded.body[ENTERPRISE].get("manager").is_none(),
            "{excluded}"
        );
        assert_eq!(excluded.body["title"], sent["title"], "{excluded}");
    }
}

#[tokio::test]
async fn every_attribute_can_be_patched_by_path_and_pathless() {
    let s = stack().await;
    let sent = entra_user("patch@contoso.example");
    let id = s.create(sent.clone()).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut want = s.get(&id).await.body;

    // (operation, path in `want` to change, the new value there: null removes)
    let ext = |a: &str| format!("{ENTERPRISE}:{a}");
    let cases: Vec<(Value, Vec<&str>, Value)> = vec![
        (
            json!({"op": "replace", "path": "displayName", "value": "Countess"}),
            vec!["displayName"],
            json!("Countess"),
        ),
        (
            json!({"op": "Replace", "path": "title", "value": "Programmer"}),
            vec!["title"],
            json!("Programmer"),
        ),
        (
            json!({"op": "add", "path": "nickName", "value": "A."}),
            vec!["nickName"],
            json!("A."),
        ),
        (
            json!({"op": "replace", "path": "userType", "value": "Guest"}),
            vec!["userType"],
            json!("Guest"),
        ),
        (
            json!({"op": "replace", "path": "profileUrl", "value": "https://x.example/a"}),
            vec!["profileUrl"],
            json!("https://x.example/a"),
        ),
        (
            json!({"op": "replace", "path": "timezone", "value": "Europe/Paris"}),
            vec!["timezone"],
            json!("Europe/Paris"),
        ),
        (
            json!({"op": "replace", "path": "name.middleName", "value": "Augusta"}),
            vec!["name", "middleName"],
            json!("Augusta"),
        ),
        (
            json!({"op": "replace", "path": "name.honorificPrefix", "value": "Lady"}),
            vec!["name", "honorificPrefix"],
            json!("Lady"),
        ),
        (
            json!({"op": "remove", "path": "name.honorificSuffix"}),
            vec!["name", "honorificSuffix"],
            Value::Null,
        ),
        (
            json!({"op": "replace", "path": "name.formatted", "value": "Lady Ada"}),
            vec!["name", "formatted"],
            json!("Lady Ada"),
        ),
        (
            json!({"op": "replace", "path": "addresses[type eq \"work\"].locality", "value": "Cambridge"}),
            vec!["addresses", "0", "locality"],
            json!("Cambridge"),
        ),
        (
            json!({"op": "replace", "path": "addresses[type eq \"work\"].postalCode", "value": "CB2 1TN"}),
            vec!["addresses", "0", "postalCode"],
            json!("CB2 1TN"),
        ),
        (
            json!({"op": "replace", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+44 7700 900999"}),
            vec!["phoneNumbers", "1", "value"],
            json!("+44 7700 900999"),
        ),
        (
            json!({"op": "replace", "path": "emails[type eq \"home\"].value", "value": "ada@elsewhere.example"}),
            vec!["emails", "1", "value"],
            json!("ada@elsewhere.example"),
        ),
        (
            json!({"op": "replace", "path": "ims[type eq \"xmpp\"].value", "value": "ada@im.example"}),
            vec!["ims", "0", "value"],
            json!("ada@im.example"),
        ),
        (
            json!({"op": "replace", "path": "photos", "value": [{"value": "https://x.example/p.png", "type": "thumbnail"}]}),
            vec!["photos"],
            json!([{"value": "https://x.example/p.png", "type": "thumbnail"}]),
        ),
        (
            json!({"op": "add", "path": "entitlements", "value": [{"value": "lms-pro"}]}),
            vec!["entitlements"],
            json!([{"value": "lms-basic", "display": "LMS"}, {"value": "lms-pro"}]),
        ),
        (
            json!({"op": "remove", "path": "x509Certificates"}),
            vec!["x509Certificates"],
            Value::Null,
        ),
        (
            json!({"op": "replace", "path": "locale", "value": "fr_FR"}),
            vec!["locale"],
            json!("fr_FR"),
        ),
        (
            json!({"op": "replace", "path": ext("department"), "value": "Mathematics"}),
            vec![ENTERPRISE, "department"],
            json!("Mathematics"),
        ),
        (
            json!({"op": "replace", "path": ext("costCenter"), "value": "CC-9"}),
            vec![ENTERPRISE, "costCenter"],
            json!("CC-9"),
        ),
        (
            json!({"op": "replace", "path": ext("organization"), "value": "Analytical"}),
            vec![ENTERPRISE, "organization"],
            json!("Analytical"),
        ),
        (
            json!({"op": "remove", "path": ext("division")}),
            vec![ENTERPRISE, "division"],
            Value::Null,
        ),
        (
            json!({"op": "replace", "path": ext("manager"), "value": {"value": "babbage"}}),
            vec![ENTERPRISE, "manager"],
            json!({"value": "babbage"}),
        ),
        (
            json!({"op": "replace", "path": ext("employeeNumber"), "value": "E-1816"}),
            vec![ENTERPRISE, "employeeNumber"],
            json!("E-1816"),
        ),
        // Pathless, Entra's dotted and URN-qualified keys.
        (
            json!({"op": "replace", "value": {"displayName": "Ada B.", "name.middleName": "Byron"}}),
            vec!["name", "middleName"],
            json!("Byron"),
        ),
        (
            json!({"op": "replace", "value": {ext("department"): "Engines"}}),
            vec![ENTERPRISE, "department"],
            json!("Engines"),
        ),
        (
            json!({"op": "remove", "path": "addresses[type eq \"home\"]"}),
            vec!["addresses", "1"],
            Value::Null,
        ),
    ];
    for (op, at, value) in cases {
        if op["value"]["displayName"].is_string() {
            want["displayName"] = op["value"]["displayName"].clone();
        }
        let parent = at[..at.len() - 1].iter().fold(&mut want, |w, k| match w {
            Value::Array(items) => &mut items[k.parse::<usize>().unwrap()],
            other => &mut other[*k],
        });
        let last = at[at.len() - 1];
        match (parent, value.is_null()) {
            (Value::Array(items), true) => {
                items.remove(last.parse::<usize>().unwrap());
            }
            (Value::Object(o), true) => {
                o.remove(last);
            }
            (Value::Array(items), false) => items[last.parse::<usize>().unwrap()] = value,
            (other, false) => other[last] = value,
            _ => unreachable!(),
        }
        let p = s.patch(&id, json!([op.clone()])).await;
        assert_eq!(p.status, StatusCode::OK, "{p}");
        let got = s.get(&id).await;
        for (k, v) in want.as_object().unwrap() {
            if k != "meta" {
                assert_eq!(&got.body[k], v, "after {op}: {k}{got}");
            }
        }
        assert_eq!(
            got.body.as_object().unwrap().len(),
            want.as_object().unwrap().len(),
            "{got}"
        );
    }
    // What Chamilo's columns hold followed.
    let a = s.account(&id);
    assert_eq!(a.official_code, "E-1816");
    assert_eq!(
        a.phone, "+44 20 7946 0000",
        "the work number did not change"
    );
    assert_eq!(a.language, "english");
}

#[tokio::test]
async fn put_replaces_every_attribute_and_columns_changed_in_chamilo_win() {
    let s = stack().await;
    let sent = okta_user("put@okta.example");
    let id = s.create(sent.clone()).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Okta's profile update: the whole resource, with id and meta, fewer attributes.
    let mut next = s.get(&id).await.body;
    next["title"] = json!("Commodore");
    next["addresses"] = json!([{"type": "home", "locality": "New York", "country": "US"}]);
    next.as_object_mut().unwrap().remove("nickName");
    next.as_object_mut().unwrap().remove("timezone");
    next[ENTERPRISE].as_object_mut().unwrap().remove("division");
    let r = s
        .scim
        .call(Method::PUT, &format!("/Users/{id}"), Some(next.clone()))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    let got = s.get(&id).await;
    for (k, v) in next.as_object().unwrap() {
        if k != "meta" {
            assert_eq!(&got.body[k], v, "{k}:{got}");
        }
    }
    assert!(
        got.body.get("nickName").is_none() && got.body.get("timezone").is_none(),
        "{got}"
    );
    assert!(got.body[ENTERPRISE].get("division").is_none(), "{got}");

    // Changed in Chamilo's own UI: the columns win on the next fresh read, in their place.
    let uid: u64 = id.parse().unwrap();
    s.chamilo.state().edit_user(uid, |u| {
        u.phone = "555-0199".into();
        u.official_code = "2026".into();
    });
    let got = s.get(&id).await;
    assert_eq!(
        got.body["phoneNumbers"],
        json!([{"value": "555-0199", "type": "mobile"}]),
        "{got}"
    );
    assert_eq!(got.body[ENTERPRISE]["employeeNumber"], "2026", "{got}");
    assert_eq!(got.body[ENTERPRISE]["department"], "COBOL", "{got}");
    s.chamilo
        .state()
        .edit_user(uid, |u| u.phone = String::new());
    let got = s.get(&id).await;
    assert!(
        got.body.get("phoneNumbers").is_none(),
        "cleared in Chamilo:{got}"
    );
}

#[tokio::test]
async fn the_kept_attributes_are_bounded() {
    let s = stack().await;
    let before = s.chamilo.state().user_count();
    let mut big = entra_user("big@contoso.example");
    big["addresses"][0]["formatted"] = json!("x".repeat(9000));
    let r = s.scim.call(Method::POST, "/Users", Some(big)).await;
    assert_scim_error(&r, StatusCode::BAD_REQUEST, Some("invalidValue"));
    let detail = r.body["detail"].as_str().unwrap();
    assert!(
        detail.contains("addresses") && detail.contains("8192"),
        "{r}"
    );
    assert_eq!(s.chamilo.state().user_count(), before, "nothing made");

    // Just under the bound is fine; a PATCH over it changes nothing.
    let id = s.create(entra_user("fits@contoso.example")).await.body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let field = |s: &Stack| s.account(&id).extra["scim_attributes"].clone();
    let kept = field(&s);
    let p = s
        .patch(
            &id,
            json!([{"op": "replace", "path": "displayName", "value": "y".repeat(4000)}]),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{p}");
    let p = s
        .patch(
            &id,
            json!([{"op": "replace", "path": "nickName", "value": "z".repeat(3000)}]),
        )
        .await;
    assert_scim_error(&p, StatusCode::BAD_REQUEST, Some("invalidValue"));
    assert_ne!(field(&s), kept, "the first PATCH was written");
    let after_first = field(&s);
    assert_eq!(
        s.get(&id).await.body["nickName"],
        "Ada",
        "the second one was not"
    );
    assert_eq!(field(&s), after_first);
}

// --- Stage 3: meta.created and meta.lastModified. ---

#[tokio::test]
async fn meta_dates_are_the_proxys_writes_and_never_invented() {
    let s = stack().await;
    let r = s.create(minimal("dates@example.org")).await;
    let id = r.body["id"].as_str().unwrap().to_owned();
    let created = r.body["meta"]["created"].as_str().unwrap().to_owned();
    assert_eq!(r.body["meta"]["lastModified"], created.as_str(), "{r}");
    assert!(
        chrono::DateTime::parse_from_rfc3339(&created).is_ok(),
        "{created}"
    );
    let got = s.get(&id).await;
    assert_eq!(got.body["meta"]["created"], created.as_str(), "{got}");

    // A change moves lastModified (never back), not created.
    let p = s
        .patch(
            &id,
            json!([{"op": "replace", "path": "name.givenName", "value": "Anne"}]),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{p}");
    assert_eq!(p.body["meta"]["created"], created.as_str(), "{p}");
    let modified = p.body["meta"]["lastModified"].as_str().unwrap().to_owned();
    assert!(modified > created, "{modified} after {created}");
    // A PATCH that changes nothing writes nothing, and the date stays.
    let field = || s.account(&id).extra["scim_attributes"].clone();
    let before = field();
    let calls = s.chamilo.calls("update_user_from_username");
    let p = s
        .patch(
            &id,
            json!([{"op": "replace", "path": "name.givenName", "value": "Anne"}]),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{p}");
    assert_eq!(p.body["meta"]["lastModified"], modified.as_str(), "{p}");
    assert_eq!(s.chamilo.calls("update_user_from_username"), calls);
    assert_eq!(field(), before);

    // An account made in Chamilo: no date until the proxy writes it, then no created.
    let seed = s.filter("userName eq \"user000001\"").await.body["Resources"][0].clone();
    assert!(
        seed.get("meta")
            .is_some_and(|m| m.get("created").is_none() && m.get("lastModified").is_none()),
        "{seed}"
    );
    let seed_id = seed["id"].as_str().unwrap();
    let p = s
        .patch(
            seed_id,
            json!([{"op": "add", "path": "title", "value": "Adopted"}]),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{p}");
    assert!(p.body["meta"].get("created").is_none(), "{p}");
    assert!(p.body["meta"]["lastModified"].is_string(), "{p}");
    assert_eq!(p.body["title"], "Adopted", "{p}");
}

// --- Stage 4: meta.version and ETags. ---

#[tokio::test]
async fn etags_follow_every_change_and_guard_writes() {
    let s = stack().await;
    let config = s
        .scim
        .call(Method::GET, "/ServiceProviderConfig", None)
        .await;
    assert_eq!(config.body["etag"]["supported"], true, "{config}");

    let r = s.create(entra_user("etag@contoso.example")).await;
    let id = r.body["id"].as_str().unwrap().to_owned();
    let path = format!("/Users/{id}");
    let v1 = r.body["meta"]["version"].as_str().unwrap().to_owned();
    let etag = |r: &Reply| r.header("etag").map(str::to_owned);
    // RFC 7644 §3.14: the version in the body is the entity tag, as in the header.
    assert!(v1.starts_with("W/\""), "{r}");
    assert_eq!(etag(&r).as_deref(), Some(v1.as_str()), "{r}");
    let got = s.get(&id).await;
    assert_eq!(
        got.body["meta"]["version"],
        v1.as_str(),
        "a read is the same version"
    );
    assert_eq!(etag(&got), etag(&r));
    // Listed from the index: the same version too.
    let listed = s.filter("displayName pr").await;
    assert_eq!(
        listed.body["Resources"][0]["meta"]["version"],
        v1.as_str(),
        "{listed}"
    );

    let send = |method: Method, headers: Vec<(&'static str, String)>, body: Option<Value>| {
        let path = path.clone();
        let scim = &s.scim;
        async move {
            let mut h: Vec<(&str, &str)> = vec![("content-type", "application/scim+json")];
            h.extend(headers.iter().map(|(k, v)| (*k, v.as_str())));
            scim.send(
                method,
                &path,
                Some(scim_support::TOKEN),
                body.map(|b| b.to_string()),
                &h,
            )
            .await
        }
    };
    let w = |v: &str| v.to_owned();

    // If-None-Match: 304 while unchanged.
    let r = send(Method::GET, vec![("if-none-match", w(&v1))], None).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED, "{r}");
    assert_eq!(etag(&r), Some(w(&v1)));
    let r = send(Method::GET, vec![("if-none-match", w("W/\"other\""))], None).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");

    // PATCH with the current version: applied, new version.
    let ops = json!({"schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "title", "value": "Director"}]});
    let r = send(Method::PATCH, vec![("if-match", w(&v1))], Some(ops.clone())).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    let v2 = r.body["meta"]["version"].as_str().unwrap().to_owned();
    assert_ne!(v2, v1);
    assert_eq!(etag(&r), Some(w(&v2)));
    // The old version no longer matches: 412 for PATCH, PUT and DELETE; nothing changes.
    let r = send(Method::PATCH, vec![("if-match", w(&v1))], Some(ops.clone())).await;
    assert_scim_error(&r, StatusCode::PRECONDITION_FAILED, None);
    let r = send(
        Method::PUT,
        vec![("if-match", w(&v1))],
        Some(entra_user("etag@contoso.example")),
    )
    .await;
    assert_scim_error(&r, StatusCode::PRECONDITION_FAILED, None);
    let r = send(Method::DELETE, vec![("if-match", w(&v1))], None).await;
    assert_scim_error(&r, StatusCode::PRECONDITION_FAILED, None);
    assert_eq!(s.get(&id).await.body["meta"]["version"], v2.as_str());
    let r = send(Method::GET, vec![("if-none-match", w(&v1))], None).await;
    assert_eq!(r.status, StatusCode::OK, "a stale version is not 304: {r}");

    // A change made directly in Chamilo between the IdP's GET and its PATCH: 412.
    let uid: u64 = id.parse().unwrap();
    s.chamilo
        .state()
        .edit_user(uid, |u| u.phone = "+44 20 0000 0000".into());
    let r = send(Method::PATCH, vec![("if-match", w(&v2))], Some(ops.clone())).await;
    assert_scim_error(&r, StatusCode::PRECONDITION_FAILED, None);
    assert_eq!(s.account(&id).phone, "+44 20 0000 0000", "untouched");
    let fresh = s.get(&id).await;
    let v3 = fresh.body["meta"]["version"].as_str().unwrap().to_owned();
    assert_ne!(v3, v2);
    assert_eq!(
        fresh.body["phoneNumbers"][0]["value"], "+44 20 0000 0000",
        "{fresh}"
    );
    // Deactivated in Chamilo: another version again.
    s.chamilo.state().set_active(uid, false);
    let r = send(Method::GET, vec![("if-none-match", w(&v3))], None).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    let v4 = r.body["meta"]["version"].as_str().unwrap().to_owned();
    assert_ne!(v4, v3);

    // PUT and DELETE with the current version.
    let mut put = entra_user("etag@contoso.example");
    put["title"] = json!("Chair");
    let r = send(Method::PUT, vec![("if-match", w(&v4))], Some(put)).await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    let v5 = r.body["meta"]["version"].as_str().unwrap().to_owned();
    assert_ne!(v5, v4);
    let r = send(Method::DELETE, vec![("if-match", w(&v5))], None).await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{r}");
}
