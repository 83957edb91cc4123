//! Property tests of the PATCH engine: arbitrary operations never panic, never touch
//! read-only attributes, are all-or-nothing, and leave a canonical resource.

use chamilo_scim_proxy::directory::schema::ResourceSchema;
use chamilo_scim_proxy::directory::{Capabilities, ENTERPRISE_SCHEMA, USER_SCHEMA};
use chamilo_scim_proxy::scim::normalize::normalize_user;
use chamilo_scim_proxy::scim::patch::{apply_patch, parse_patch_request};
use proptest::prelude::*;
use serde_json::{json, Map, Value};

fn base() -> Map<String, Value> {
    json!({
        "schemas": [USER_SCHEMA],
        "id": "42",
        "userName": "bjensen",
        "name": {"givenName": "Barbara", "familyName": "Jensen"},
        "active": true,
        "emails": [{"value": "a@x.org", "type": "work", "primary": true}, {"value": "b@x.org", "type": "home"}],
        "meta": {"version": "7", "created": "2020-01-01T00:00:00Z"}
    })
    .as_object()
    .cloned()
    .unwrap()
}

fn path() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        Just(None),
        Just(Some("active".to_owned())),
        Just(Some("Active".to_owned())),
        Just(Some("displayName".to_owned())),
        Just(Some("name".to_owned())),
        Just(Some("name.givenName".to_owned())),
        Just(Some("emails".to_owned())),
        Just(Some("emails.value".to_owned())),
        Just(Some("emails[type eq \"work\"].value".to_owned())),
        Just(Some("emails[primary eq true]".to_owned())),
        Just(Some("phoneNumbers[type eq \"mobile\"].value".to_owned())),
        Just(Some("id".to_owned())),
        Just(Some("meta.version".to_owned())),
        Just(Some("groups".to_owned())),
        Just(Some(format!("{ENTERPRISE_SCHEMA}:manager"))),
        Just(Some(format!("{ENTERPRISE_SCHEMA}:employeeNumber"))),
        Just(Some(ENTERPRISE_SCHEMA.to_owned())),
        Just(Some("emails[".to_owned())),
        "[a-zA-Z.\\[\\] \"]{0,20}".prop_map(Some),
    ]
}

fn value() -> impl Strategy<Value = Option<Value>> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        "[a-zA-Z@.]{0,8}".prop_map(Value::String),
        Just(json!("False")),
        Just(json!("true")),
    ];
    let v = leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("value".to_owned()),
                    Just("type".to_owned()),
                    Just("primary".to_owned()),
                    Just("givenName".to_owned()),
                    Just("active".to_owned()),
                    Just("name.familyName".to_owned()),
                    Just("id".to_owned()),
                    "[a-z]{1,6}",
                ],
                inner,
                0..4
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    });
    prop_oneof![Just(None), v.prop_map(Some)]
}

fn op() -> impl Strategy<Value = Value> {
    (
        prop_oneof![
            Just("add"),
            Just("Replace"),
            Just("remove"),
            Just("REMOVE"),
            Just("bogus")
        ],
        path(),
        value(),
    )
        .prop_map(|(op, path, value)| {
            let mut o = Map::new();
            o.insert("op".into(), json!(op));
            if let Some(p) = path {
                o.insert("path".into(), json!(p));
            }
            if let Some(v) = value {
                o.insert("value".into(), v);
            }
            Value::Object(o)
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn patch_is_total_atomic_and_canonical(ops in prop::collection::vec(op(), 1..5)) {
        let schema = ResourceSchema::new(&Capabilities::default());
        let before = base();
        let body = json!({"Operations": ops});
        let Ok(parsed) = parse_patch_request(&body) else { return Ok(()); };
        match apply_patch(&schema, &before, &parsed) {
            Err(e) => {
                prop_assert_eq!(e.status.as_u16(), 400);
                prop_assert!(e.scim_type.is_some());
            }
            Ok(after) => {
                // Read-only attributes never change.
                prop_assert_eq!(&after["id"], &before["id"]);
                prop_assert_eq!(&after["meta"], &before["meta"]);
                prop_assert!(after.get("groups").is_none());
                // Canonical: normalising the result again changes nothing but the read-only
                // attributes it drops.
                let mut again = normalize_user(&schema, &Value::Object(after.clone())).unwrap();
                again.insert("id".into(), after["id"].clone());
                again.insert("meta".into(), after["meta"].clone());
                let sorted = |m: &Map<String, Value>| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<std::collections::BTreeMap<_, _>>();
                prop_assert_eq!(sorted(&again), sorted(&after));
                // At most one primary email.
                let primaries = after.get("emails").and_then(Value::as_array).map_or(0, |a| {
                    a.iter().filter(|e| e["primary"] == json!(true)).count()
                });
                prop_assert!(primaries <= 1);
            }
        }
    }
}
