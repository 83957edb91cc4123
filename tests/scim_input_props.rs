//! Whatever a client sends, the engine answers with a SCIM status below 500 (Entra retries a
//! 5xx forever and quarantines the app), and never panics.

use std::sync::Arc;

use bytes::Bytes;
use chamilo_scim_proxy::config::{ScimConfig, Secret};
use chamilo_scim_proxy::directory::memory::MemoryDirectory;
use chamilo_scim_proxy::scim::ScimService;
use http::{Method, Request};
use http_body_util::Full;
use proptest::prelude::*;
use serde_json::{json, Value};

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,12}".prop_map(Value::String),
        Just(json!("False")),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("userName".to_owned()),
                    Just("name".to_owned()),
                    Just("givenName".to_owned()),
                    Just("emails".to_owned()),
                    Just("value".to_owned()),
                    Just("primary".to_owned()),
                    Just("active".to_owned()),
                    Just("Operations".to_owned()),
                    Just("op".to_owned()),
                    Just("path".to_owned()),
                    Just("filter".to_owned()),
                    Just("count".to_owned()),
                    Just("schemas".to_owned()),
                    Just("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".to_owned()),
                    ".{0,8}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn target() -> impl Strategy<Value = (Method, String)> {
    prop_oneof![
        Just((Method::POST, "/Users".to_owned())),
        Just((Method::PUT, "/Users/ID".to_owned())),
        Just((Method::PATCH, "/Users/ID".to_owned())),
        Just((Method::POST, "/Users/.search".to_owned())),
        "[a-zA-Z0-9=&%+._~-]{0,30}".prop_map(|q| (Method::GET, format!("/Users?{q}"))),
        "[ -~]{0,30}".prop_map(|f| (
            Method::GET,
            format!(
                "/Users?filter={}",
                percent_encoding::utf8_percent_encode(&f, percent_encoding::NON_ALPHANUMERIC)
            )
        )),
        "[ -~]{0,30}".prop_map(|f| (
            Method::GET,
            format!(
                "/Users/ID?attributes={}",
                percent_encoding::utf8_percent_encode(&f, percent_encoding::NON_ALPHANUMERIC)
            )
        )),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    #[test]
    fn no_client_input_gives_a_server_error((method, path) in target(), body in json_value(), raw in prop::option::of(".{0,40}")) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let cfg = ScimConfig { tokens: vec![Secret::new("t")], ..ScimConfig::default() };
        rt.block_on(async {
            let svc = ScimService::new(Arc::new(MemoryDirectory::new()));
            // A user to address with PUT/PATCH/GET.
            let seed = Request::builder().method(Method::POST).uri("/scim/v2/Users")
                .header("authorization", "Bearer t")
                .body(Full::new(Bytes::from(json!({"userName": "seed", "emails": [{"value": "s@x", "type": "work"}]}).to_string())))
                .unwrap();
            let created = svc.handle(seed, "/Users", &cfg).await;
            let id = created.headers().get("location").and_then(|l| l.to_str().ok())
                .and_then(|l| l.rsplit('/').next()).unwrap_or("none").to_owned();
            let path = path.replace("ID", &id);
            let payload = raw.unwrap_or_else(|| body.to_string());
            let req = Request::builder().method(method).uri(format!("/scim/v2{path}"))
                .header("authorization", "Bearer t")
                .body(Full::new(Bytes::from(payload)))
                .unwrap();
            let sub = percent_encoding::percent_decode_str(req.uri().path()).decode_utf8_lossy().trim_start_matches("/scim/v2").to_owned();
            let resp = svc.handle(req, &sub, &cfg).await;
            prop_assert!(resp.status().as_u16() < 500, "{} for {path}", resp.status());
            Ok(())
        })?;
    }
}
