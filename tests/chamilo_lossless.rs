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
