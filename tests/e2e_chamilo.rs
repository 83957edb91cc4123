//! End to end: the real `chamilo-scim-proxy` binary in front of Chamilo, driven over HTTP the
//! way Entra ID and Okta drive it (issue 4 §5).
//!
//! Chamilo is the in-process stand-in (one per test), or a real Chamilo named by
//! `CHAMILO_E2E_URL` and friends (issue 9; see `e2e_support` and the README's Testing
//! section). The assertions are the same in both modes; the few tests that need the
//! stand-in's internals say so and return against an external Chamilo. Every wait is bounded.

mod common;
mod e2e_support;
mod scim_support;

use std::time::{Duration, Instant};

use chamilo_scim_proxy::standin::{Fault, FaultKind};
use common::{config_text, ProxyProcess};
use e2e_support::{skip_on_external, skip_without_soap, start_proxy, ChamiloSide};
use http::{Method, StatusCode};
use scim_support::{q, Reply, TestServer, TOKEN};
use serde_json::{json, Value};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A binary in front of Chamilo, and a SCIM client for the binary. Dropped in field order:
/// the binary stops before the test's accounts are cleaned up.
struct Stack {
    proxy: ProxyProcess,
    scim: TestServer,
    chamilo: ChamiloSide,
    /// Accounts created directly in Chamilo before the binary started.
    seeds: Vec<u64>,
    _dir: tempfile::TempDir,
}

impl Stack {
    /// `value` made unique to this run and test (`e2e-<run>-<tag>-value`).
    fn name(&self, value: &str) -> String {
        self.chamilo.name(value)
    }
}

/// Chamilo for the test `tag` with `seeds` accounts made directly, and a binary in front of
/// it with `chamilo_keys` in `[chamilo]`.
async fn stack(tag: &str, seeds: usize, chamilo_keys: &str) -> Stack {
    let chamilo = ChamiloSide::new(tag).await;
    let seeds = chamilo.seed(seeds).await;
    let (proxy, scim, dir) = start_proxy(
        &chamilo.creds(),
        &format!("index_refresh = \"1h\"\n{chamilo_keys}"),
    )
    .await;
    Stack {
        proxy,
        scim,
        chamilo,
        seeds,
        _dir: dir,
    }
}

fn user_body(user_name: &str, given: &str, family: &str) -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "name": {"givenName": given, "familyName": family},
        "emails": [{"value": user_name, "type": "work", "primary": true}],
        "active": true
    })
}

/// POST /Users through `scim`; the account is remembered for the clean-up.
async fn create(chamilo: &ChamiloSide, scim: &TestServer, body: Value) -> (String, Reply) {
    let r = scim.call(Method::POST, "/Users", Some(body)).await;
    if let Some(id) = r.body["id"].as_str().and_then(|id| id.parse().ok()) {
        chamilo.track(id);
    }
    assert_eq!(r.status, StatusCode::CREATED, "{r}");
    (r.body["id"].as_str().unwrap().to_owned(), r)
}

async fn filter(scim: &TestServer, expr: &str) -> Reply {
    let r = scim
        .call(Method::GET, &format!("/Users?filter={}", q(expr)), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    r
}

fn patch(ops: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": ops})
}

fn assert_scim_error(r: &Reply, status: StatusCode, scim_type: Option<&str>) {
    assert_eq!(r.status, status, "{r}");
    assert_eq!(
        r.body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
        "{r}"
    );
    assert_eq!(r.body["status"], status.as_str(), "{r}");
    if let Some(t) = scim_type {
        assert_eq!(r.body["scimType"], t, "{r}");
    }
}

/// An id no Chamilo test instance has.
const MISSING_ID: &str = "999999999";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_through_the_binary() {
    let s = stack("every", 5, "").await;
    let bob = s.name("bob@example.org");
    let ext = s.name("ext-bob-1");
    let (id, created) = create(
        &s.chamilo,
        &s.scim,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": bob,
            "externalId": ext,
            "name": {"givenName": "Bob", "familyName": "Stone"},
            "emails": [{"value": bob, "type": "work", "primary": true}],
            "active": true
        }),
    )
    .await;
    assert_eq!(created.body["userName"], bob.as_str(), "{created}");
    assert_eq!(created.body["externalId"], ext.as_str(), "{created}");
    assert_eq!(created.body["name"]["familyName"], "Stone", "{created}");
    assert!(
        created
            .header("location")
            .is_some_and(|l| l.ends_with(&format!("/Users/{id}"))),
        "{:?}{created}",
        created.headers
    );
    assert!(
        created
            .header("content-type")
            .is_some_and(|c| c.starts_with("application/scim+json")),
        "{:?}{created}",
        created.headers
    );
    let uid: u64 = id.parse().unwrap();
    {
        let u = s.chamilo.account(uid).await;
        let msg = format!("Chamilo holds {u:?} after{created}");
        assert_eq!(u.lastname, "Stone", "{msg}");
        assert_eq!(u.firstname.as_deref(), Some("Bob"), "{msg}");
        assert_eq!(u.email, bob, "{msg}");
        assert_eq!(u.active, 1, "{msg}");
    }

    let got = s
        .scim
        .call(Method::GET, &format!("/Users/{id}"), None)
        .await;
    assert_eq!(got.status, StatusCode::OK, "{got}");
    assert_eq!(got.body["id"], id.as_str(), "{got}");
    assert_eq!(got.body["userName"], bob.as_str(), "{got}");

    for expr in [
        format!("userName eq \"{bob}\""),
        format!("externalId eq \"{ext}\""),
        format!("id eq \"{id}\""),
    ] {
        let r = filter(&s.scim, &expr).await;
        assert_eq!(r.body["totalResults"], 1, "{r}");
        assert_eq!(r.body["Resources"][0]["id"], id.as_str(), "{r}");
    }
    let none = filter(
        &s.scim,
        &format!("externalId eq \"{}\"", s.name("no-such-ext")),
    )
    .await;
    assert_eq!(none.body["totalResults"], 0, "{none}");
    assert_eq!(
        none.body["Resources"].as_array().map_or(0, Vec::len),
        0,
        "{none}"
    );

    let mut replacement = got.body.clone();
    replacement["name"] = json!({"givenName": "Robert", "familyName": "Stone"});
    let put = s
        .scim
        .call(Method::PUT, &format!("/Users/{id}"), Some(replacement))
        .await;
    assert_eq!(put.status, StatusCode::OK, "{put}");
    assert_eq!(put.body["name"]["givenName"], "Robert", "{put}");
    let u = s.chamilo.account(uid).await;
    assert_eq!(
        u.firstname.as_deref(),
        Some("Robert"),
        "in Chamilo: {u:?}{put}"
    );

    let patched = s
        .scim
        .call(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(patch(
                json!([{"op": "replace", "path": "name.familyName", "value": "Rock"}]),
            )),
        )
        .await;
    assert_eq!(patched.status, StatusCode::OK, "{patched}");
    assert_eq!(patched.body["name"]["familyName"], "Rock", "{patched}");
    assert_eq!(patched.body["name"]["givenName"], "Robert", "{patched}");
    let u = s.chamilo.account(uid).await;
    assert_eq!(u.lastname, "Rock", "in Chamilo: {u:?}{patched}");

    // Paging without a filter (Okta's imports): every account Chamilo has but the reserved
    // ones (admin, anonymous) — the 5 seeded + bob here, more in a real Chamilo.
    let mut seen = Vec::new();
    let mut total = None;
    for start in [1, 3, 5] {
        let page = s
            .scim
            .call(
                Method::GET,
                &format!("/Users?startIndex={start}&count=2"),
                None,
            )
            .await;
        assert_eq!(page.status, StatusCode::OK, "{page}");
        let t = page.body["totalResults"].as_u64().unwrap_or(0);
        assert!(t >= 6, "{page}");
        assert_eq!(
            *total.get_or_insert(t),
            t,
            "totals differ between pages{page}"
        );
        assert_eq!(page.body["startIndex"], start, "{page}");
        assert_eq!(page.body["itemsPerPage"], 2, "{page}");
        for r in page.body["Resources"].as_array().unwrap() {
            seen.push(r["id"].as_str().unwrap().to_owned());
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 6, "pages overlap: {seen:?}");
    // Paging through a filter: exactly this test's 5 seeded + bob = 6 accounts.
    let ours = q(&format!("userName sw \"{}\"", s.chamilo.names.prefix));
    let mut seen = Vec::new();
    for start in [1, 3, 5] {
        let page = s
            .scim
            .call(
                Method::GET,
                &format!("/Users?filter={ours}&startIndex={start}&count=2"),
                None,
            )
            .await;
        assert_eq!(page.status, StatusCode::OK, "{page}");
        assert_eq!(page.body["totalResults"], 6, "{page}");
        assert_eq!(page.body["startIndex"], start, "{page}");
        assert_eq!(page.body["itemsPerPage"], 2, "{page}");
        for r in page.body["Resources"].as_array().unwrap() {
            seen.push(r["id"].as_str().unwrap().to_owned());
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 6, "pages overlap: {seen:?}");
    assert!(seen.contains(&id), "{id} not in {seen:?}");
    for seed in &s.seeds {
        assert!(seen.contains(&seed.to_string()), "{seed} not in {seen:?}");
    }

    let missing = s
        .scim
        .call(Method::GET, &format!("/Users/{MISSING_ID}"), None)
        .await;
    assert_scim_error(&missing, StatusCode::NOT_FOUND, None);
    let missing_del = s
        .scim
        .call(Method::DELETE, &format!("/Users/{MISSING_ID}"), None)
        .await;
    assert_scim_error(&missing_del, StatusCode::NOT_FOUND, None);

    let del = s
        .scim
        .call(Method::DELETE, &format!("/Users/{id}"), None)
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT, "{del}");
    // docs/chamilo.md: the default deprovisioning deactivates; the account stays in Chamilo
    // but answers 404 from now on (RFC 7644 §3.6).
    let u = s.chamilo.account(uid).await;
    assert_eq!(u.active, 0, "in Chamilo: {u:?}{del}");
    for method in [Method::GET, Method::DELETE] {
        let after = s
            .scim
            .call(method.clone(), &format!("/Users/{id}"), None)
            .await;
        assert_scim_error(&after, StatusCode::NOT_FOUND, None);
    }
    let reactivate = s
        .scim
        .call(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(patch(
                json!([{"op": "replace", "path": "active", "value": true}]),
            )),
        )
        .await;
    assert_scim_error(&reactivate, StatusCode::NOT_FOUND, None);
    let u = s.chamilo.account(uid).await;
    assert_eq!(u.active, 0, "in Chamilo: {u:?}{reactivate}");
    let gone = filter(&s.scim, &format!("userName eq \"{bob}\"")).await;
    assert_eq!(gone.body["totalResults"], 0, "{gone}");
    // A create with the same userName brings it back, with its Chamilo id.
    let (again, revived) = create(&s.chamilo, &s.scim, user_body(&bob, "Bob", "Stone")).await;
    assert_eq!(again, id, "{revived}");
    let u = s.chamilo.account(uid).await;
    assert_eq!(u.active, 1, "in Chamilo: {u:?}{revived}");

    let not_allowed = s
        .scim
        .call(Method::POST, "/ServiceProviderConfig", Some(json!({})))
        .await;
    assert_eq!(
        not_allowed.status,
        StatusCode::METHOD_NOT_ALLOWED,
        "{not_allowed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_sequence() {
    let s = stack("entra", 3, "").await;
    let probe = s
        .scim
        .call(
            Method::GET,
            &format!(
                "/Users?aadOptscim062020&filter={}",
                q(&format!(
                    "userName eq \"{}\"",
                    s.name("1f0e6c2d-7b0a-4a51-9c1e-0d9b3a6f2e11")
                ))
            ),
            None,
        )
        .await;
    assert_eq!(probe.status, StatusCode::OK, "{probe}");
    assert_eq!(probe.body["totalResults"], 0, "{probe}");

    let upn = s.name("Test_User_5b1c0a7e-2d4f-4e8a-9b3c-1a2b3c4d5e6f@contoso.onmicrosoft.com");
    let (id, created) = create(
        &s.chamilo,
        &s.scim,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
            "externalId": s.name("0a1b2c3d-aaaa-bbbb-cccc-ddddeeeeffff"),
            "UserName": upn,
            "Active": "True",
            "displayName": "Test User",
            "emails": [{"primary": true, "type": "work", "value": s.name("test.user@contoso.com")}],
            "meta": {"resourceType": "User"},
            "name": {"formatted": "Test User", "familyName": "User", "givenName": "Test"},
            "roles": [],
            ENTERPRISE: {"employeeNumber": "1234"}
        }),
    )
    .await;
    assert_eq!(created.body["userName"], upn.as_str(), "{created}");
    assert_eq!(created.body["active"], true, "{created}");
    let uid: u64 = id.parse().unwrap();

    let found = filter(&s.scim, &format!("userName eq \"{}\"", upn.to_lowercase())).await;
    assert_eq!(found.body["totalResults"], 1, "{found}");
    assert_eq!(
        found.body["Resources"][0]["userName"],
        upn.as_str(),
        "{found}"
    );

    let tessa = s.name("tessa@contoso.com");
    let p = s
        .scim
        .call(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(patch(json!([
                {"op": "Replace", "path": "name.givenName", "value": "Tessa"},
                {"op": "Add", "path": "emails[type eq \"work\"].value", "value": tessa}
            ]))),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{p}");
    assert_eq!(p.body["name"]["givenName"], "Tessa", "{p}");
    {
        let u = s.chamilo.account(uid).await;
        assert_eq!(
            u.firstname.as_deref(),
            Some("Tessa"),
            "in Chamilo: {u:?}{p}"
        );
        assert_eq!(u.email, tessa, "in Chamilo: {u:?}{p}");
    }

    let off = s
        .scim
        .call(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(patch(
                json!([{"op": "Replace", "path": "active", "value": "False"}]),
            )),
        )
        .await;
    assert_eq!(off.status, StatusCode::OK, "{off}");
    assert_eq!(off.body["active"], false, "{off}");
    let u = s.chamilo.account(uid).await;
    assert_eq!(u.active, 0, "in Chamilo: {u:?}{off}");

    let still = s
        .scim
        .call(Method::GET, &format!("/Users/{id}"), None)
        .await;
    assert_eq!(still.status, StatusCode::OK, "{still}");
    assert_eq!(still.body["active"], false, "{still}");
    assert_eq!(still.body["userName"], upn.as_str(), "{still}");
    let by_filter = filter(&s.scim, &format!("userName eq \"{upn}\"")).await;
    assert_eq!(by_filter.body["totalResults"], 1, "{by_filter}");
    assert_eq!(
        by_filter.body["Resources"][0]["active"], false,
        "{by_filter}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_sequence() {
    let s = stack("okta", 3, "").await;
    let login = s.name("okta.user@example.com");
    let ext = s.name("00u1abcdEFGH");
    let check = s
        .scim
        .call(
            Method::GET,
            &format!(
                "/Users?filter={}&startIndex=1&count=100",
                q(&format!("userName eq \"{login}\""))
            ),
            None,
        )
        .await;
    assert_eq!(check.status, StatusCode::OK, "{check}");
    assert_eq!(check.body["totalResults"], 0, "{check}");

    let (id, created) = create(
        &s.chamilo,
        &s.scim,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": login,
            "name": {"givenName": "Okta", "familyName": "User"},
            "emails": [{"primary": true, "value": login, "type": "work"}],
            "displayName": "Okta User",
            "locale": "fr-FR",
            "externalId": ext,
            "groups": [],
            "password": "Secr3t-Passw0rd!",
            "active": true
        }),
    )
    .await;
    assert_eq!(created.body["userName"], login.as_str(), "{created}");
    assert_eq!(created.body["externalId"], ext.as_str(), "{created}");
    assert!(created.body.get("password").is_none(), "{created}");
    let uid: u64 = id.parse().unwrap();
    match s.chamilo.language(uid).await {
        Some(language) => assert_eq!(language, "french", "{created}"),
        None => e2e_support::say(
            "okta_sequence: the language Chamilo stored is not checked against an external Chamilo: its web services cannot read it",
        ),
    }

    let found = s
        .scim
        .call(
            Method::GET,
            &format!(
                "/Users?filter={}&startIndex=1&count=100",
                q(&format!("userName eq \"{login}\""))
            ),
            None,
        )
        .await;
    assert_eq!(found.body["totalResults"], 1, "{found}");

    let mut full = created.body.clone();
    full["name"]["familyName"] = json!("Updated");
    full["groups"] = json!([]);
    full["meta"]["created"] = json!("2020-01-01T00:00:00Z");
    let put = s
        .scim
        .call(Method::PUT, &format!("/Users/{id}"), Some(full))
        .await;
    assert_eq!(put.status, StatusCode::OK, "{put}");
    assert_eq!(put.body["name"]["familyName"], "Updated", "{put}");
    assert_eq!(put.body["id"], id.as_str(), "{put}");
    let u = s.chamilo.account(uid).await;
    assert_eq!(u.lastname, "Updated", "in Chamilo: {u:?}{put}");

    let off = s
        .scim
        .call(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(patch(
                json!([{"op": "replace", "value": {"active": false}}]),
            )),
        )
        .await;
    assert_eq!(off.status, StatusCode::OK, "{off}");
    assert_eq!(off.body["active"], false, "{off}");
    let u = s.chamilo.account(uid).await;
    assert_eq!(u.active, 0, "in Chamilo: {u:?}{off}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_name_round_trips_and_login_is_valid() {
    let s = stack("uname", 0, "").await;
    let ann = s.name("ann@example.org");
    let (id, created) = create(&s.chamilo, &s.scim, user_body(&ann, "Ann", "Lee")).await;
    let got = s
        .scim
        .call(Method::GET, &format!("/Users/{id}"), None)
        .await;
    assert_eq!(got.body["userName"], ann.as_str(), "{got}");
    let found = filter(&s.scim, &format!("userName eq \"{}\"", ann.to_uppercase())).await;
    assert_eq!(found.body["totalResults"], 1, "{found}");
    assert_eq!(found.body["Resources"][0]["id"], id.as_str(), "{found}");
    assert_eq!(
        found.body["Resources"][0]["userName"],
        ann.as_str(),
        "{found}"
    );
    let login = s.chamilo.account(id.parse().unwrap()).await.login;
    // Chamilo's login rule without login_is_email: letters, digits, `_`, `.`, `-`; ≤ 50.
    assert!(
        !login.is_empty()
            && login.len() <= 50
            && login
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)),
        "not a valid Chamilo login: {login:?}{created}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deprovision_delete_hard_deletes() {
    let s = stack("hard", 0, "deprovision = \"delete\"").await;
    let gone_name = s.name("gone@example.org");
    let (id, created) = create(&s.chamilo, &s.scim, user_body(&gone_name, "Gone", "Soon")).await;
    let uid: u64 = id.parse().unwrap();
    assert!(s.chamilo.user(uid).await.is_some(), "{created}");
    let del = s
        .scim
        .call(Method::DELETE, &format!("/Users/{id}"), None)
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT, "{del}");
    let left = s.chamilo.user(uid).await;
    assert!(left.is_none(), "not hard-deleted: {left:?}{del}");
    let after = s
        .scim
        .call(Method::GET, &format!("/Users/{id}"), None)
        .await;
    assert_scim_error(&after, StatusCode::NOT_FOUND, None);
    let by_name = filter(&s.scim, &format!("userName eq \"{gone_name}\"")).await;
    assert_eq!(by_name.body["totalResults"], 0, "{by_name}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_are_4xx_never_5xx() {
    let s = stack("errors", 0, "").await;
    create(
        &s.chamilo,
        &s.scim,
        user_body(&s.name("taken@example.org"), "Taken", "One"),
    )
    .await;
    let before = s.chamilo.own_accounts().await;

    let dup = s
        .scim
        .call(
            Method::POST,
            "/Users",
            Some(user_body(&s.name("TAKEN@example.org"), "Other", "Two")),
        )
        .await;
    assert_scim_error(&dup, StatusCode::CONFLICT, Some("uniqueness"));

    let emoji = s
        .scim
        .call(
            Method::POST,
            "/Users",
            Some(user_body(&s.name("emoji@example.org"), "Zoé 😀", "X")),
        )
        .await;
    assert_scim_error(&emoji, StatusCode::BAD_REQUEST, Some("invalidValue"));

    let long = "L".repeat(61);
    let too_long = s
        .scim
        .call(
            Method::POST,
            "/Users",
            Some(user_body(&s.name("long@example.org"), "Ann", &long)),
        )
        .await;
    assert_scim_error(&too_long, StatusCode::BAD_REQUEST, Some("invalidValue"));

    let bad_filter = s
        .scim
        .call(
            Method::GET,
            &format!("/Users?filter={}", q("userName eq")),
            None,
        )
        .await;
    assert_scim_error(&bad_filter, StatusCode::BAD_REQUEST, Some("invalidFilter"));

    let no_token = s.scim.send(Method::GET, "/Users", None, None, &[]).await;
    assert_scim_error(&no_token, StatusCode::UNAUTHORIZED, None);
    assert!(
        no_token
            .header("www-authenticate")
            .is_some_and(|v| v.starts_with("Bearer")),
        "{:?}{no_token}",
        no_token.headers
    );
    let wrong = s
        .scim
        .send(Method::GET, "/Users", Some("not-the-token"), None, &[])
        .await;
    assert_scim_error(&wrong, StatusCode::UNAUTHORIZED, None);

    assert_eq!(
        s.chamilo.own_accounts().await,
        before,
        "no account made or changed by a refused request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_chamilo_is_503_with_retry_after() {
    if skip_on_external(
        "stopped_chamilo_is_503_with_retry_after",
        "it stops Chamilo",
    ) {
        return;
    }
    let s = stack(
        "stopped",
        0,
        "connect_timeout = \"1s\"\nrequest_timeout = \"3s\"",
    )
    .await;
    let (id, _) = create(
        &s.chamilo,
        &s.scim,
        user_body(&s.name("kept@example.org"), "Kept", "User"),
    )
    .await;
    s.chamilo.standin().unwrap().stop().await;
    let r = s
        .scim
        .call(Method::GET, &format!("/Users/{id}"), None)
        .await;
    assert_scim_error(&r, StatusCode::SERVICE_UNAVAILABLE, None);
    assert!(
        r.header("retry-after")
            .is_some_and(|v| v.parse::<u64>().is_ok_and(|n| n > 0)),
        "{:?}{r}",
        r.headers
    );
    let w = s
        .scim
        .call(
            Method::POST,
            "/Users",
            Some(user_body(&s.name("new@example.org"), "New", "User")),
        )
        .await;
    assert_scim_error(&w, StatusCode::SERVICE_UNAVAILABLE, None);
    // Bad client data is still 400, not a 5xx, while Chamilo is away.
    let bad = s
        .scim
        .call(Method::POST, "/Users", Some(json!({"userName": 42})))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{bad}");
    drop(s.proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_chamilo_is_504() {
    if skip_on_external("slow_chamilo_is_504", "it slows Chamilo down") {
        return;
    }
    let s = stack("slow", 0, "request_timeout = \"500ms\"").await;
    let standin = s.chamilo.standin().unwrap();
    let (id, _) = create(
        &s.chamilo,
        &s.scim,
        user_body(&s.name("slow@example.org"), "Slow", "User"),
    )
    .await;
    standin.set_latency(Duration::from_secs(2));
    let started = Instant::now();
    let r = s
        .scim
        .call(Method::GET, &format!("/Users/{id}"), None)
        .await;
    assert_scim_error(&r, StatusCode::GATEWAY_TIMEOUT, None);
    assert!(started.elapsed() < Duration::from_secs(5));
    standin.set_latency(Duration::ZERO);
    let ok = s
        .scim
        .call(Method::GET, &format!("/Users/{id}"), None)
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{ok}");
    // The timed-out call is in the metrics, by action and outcome.
    let timeouts = common::admin_metric(
        &s.proxy,
        "chamilo_calls_total{action=\"users_profiles_by_extra_field\",outcome=\"timeout\"}",
    )
    .await;
    assert!(timeouts.is_some_and(|n| n >= 1.0), "{timeouts:?}");
}

/// Every Chamilo call is counted by action and outcome on the admin port, and the counts are
/// the calls Chamilo (the stand-in) received.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chamilo_calls_are_counted_by_action() {
    if skip_on_external(
        "chamilo_calls_are_counted_by_action",
        "it compares with the calls the stand-in counted",
    ) {
        return;
    }
    let s = stack("count", 3, "").await;
    let standin = s.chamilo.standin().unwrap();
    let name = s.name("count@example.org");
    let (id, _) = create(&s.chamilo, &s.scim, user_body(&name, "Count", "Er")).await;
    filter(&s.scim, &format!("userName eq \"{name}\"")).await;
    let r = s
        .scim
        .call(Method::GET, &format!("/Users/{id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r}");
    let taken = s
        .scim
        .call(
            Method::POST,
            "/Users",
            Some(user_body(&name, "Count", "Er")),
        )
        .await;
    assert_eq!(taken.status, StatusCode::CONFLICT, "{taken}");

    let mut checked = 0;
    for (action, received) in standin.all_calls() {
        if received == 0 {
            continue;
        }
        let counted = common::admin_metric(
            &s.proxy,
            &format!("chamilo_calls_total{{action=\"{action}\",outcome=\"ok\"}}"),
        )
        .await
        .unwrap_or(0.0);
        assert_eq!(counted, received as f64, "{action}");
        checked += 1;
    }
    assert!(checked >= 3, "{:?}", standin.all_calls());
    let (_, text) = common::get(&s.proxy.admin_url("/metrics")).await.unwrap();
    assert!(
        text.contains("chamilo_call_duration_seconds_count{action=\"get_users\"}"),
        "{text}"
    );

    // How each SCIM write ended: the create applied; an update Chamilo refuses is counted
    // as refused (400), one that dies after Chamilo applied part of it as incomplete (503).
    let writes = |operation: &'static str, outcome: &'static str| {
        let proxy = &s.proxy;
        async move {
            common::admin_metric(
                proxy,
                &format!("chamilo_writes_total{{operation=\"{operation}\",outcome=\"{outcome}\"}}"),
            )
            .await
            .unwrap_or(0.0)
        }
    };
    assert_eq!(writes("create", "applied").await, 1.0);
    let rename =
        |given: &str| patch(json!([{"op": "replace", "path": "name.givenName", "value": given}]));
    standin.inject_fault(Fault::nth_of(
        "update_user_from_username",
        1,
        FaultKind::Refuse {
            message: "Invalid firstname".into(),
        },
    ));
    let refused = s
        .scim
        .call(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(rename("Counted")),
        )
        .await;
    assert_scim_error(&refused, StatusCode::BAD_REQUEST, Some("invalidValue"));
    let detail = refused.body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("name.givenName") && detail.contains("Invalid firstname"),
        "the refusal names the attribute and Chamilo's reason{refused}"
    );
    assert_eq!(writes("update", "refused").await, 1.0);
    // Every attempt dropped: the repairs run out.
    for n in 1..=8 {
        standin.inject_fault(Fault::nth_of(
            "update_user_from_username",
            n,
            FaultKind::Drop { applied: false },
        ));
    }
    let lost = s
        .scim
        .call(Method::PATCH, &format!("/Users/{id}"), Some(rename("Lost")))
        .await;
    assert_eq!(lost.status, StatusCode::SERVICE_UNAVAILABLE, "{lost}");
    assert_eq!(writes("update", "incomplete").await, 1.0, "{lost}");
    standin.clear_faults();
    let ok = s
        .scim
        .call(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(rename("Again")),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{ok}");
    assert_eq!(writes("update", "applied").await, 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_behind_the_proxys_back_are_seen() {
    if skip_without_soap(
        "changes_behind_the_proxys_back_are_seen",
        "it renames logins directly (SOAP WSEditUserCredentials)",
    ) {
        return;
    }
    let s = stack("behind", 2, "").await;
    let carol = s.name("carol@example.org");

    // Deactivated directly: never reported active.
    let (id, _) = create(&s.chamilo, &s.scim, user_body(&carol, "Carol", "Ray")).await;
    let uid: u64 = id.parse().unwrap();
    s.chamilo.set_active(uid, false).await;
    let got = s
        .scim
        .call(Method::GET, &format!("/Users/{id}"), None)
        .await;
    assert_eq!(got.status, StatusCode::OK, "{got}");
    assert_eq!(got.body["active"], false, "hidden deactivation{got}");
    let by_name = filter(&s.scim, &format!("userName eq \"{carol}\"")).await;
    assert_eq!(by_name.body["Resources"][0]["active"], false, "{by_name}");

    // Login renamed directly: the SCIM userName (an extra field) stays, writes still land.
    s.chamilo.rename(uid, &s.name("carol.renamed")).await;
    let still = filter(&s.scim, &format!("userName eq \"{carol}\"")).await;
    assert_eq!(still.body["totalResults"], 1, "{still}");
    assert_eq!(still.body["Resources"][0]["id"], id.as_str(), "{still}");
    let p = s
        .scim
        .call(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(patch(
                json!([{"op": "replace", "path": "name.familyName", "value": "Moved"}]),
            )),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{p}");
    let u = s.chamilo.account(uid).await;
    assert_eq!(u.lastname, "Moved", "in Chamilo: {u:?}{p}");

    // An existing (unmanaged) account renamed directly: the old login no longer answers.
    let seed_id = s.seeds[0];
    let seed_login = s.chamilo.account(seed_id).await.login;
    let adopted = filter(
        &s.scim,
        &format!("userName eq \"{}\"", seed_login.to_uppercase()),
    )
    .await;
    assert_eq!(adopted.body["totalResults"], 1, "{adopted}");
    assert_eq!(
        adopted.body["Resources"][0]["id"],
        seed_id.to_string(),
        "{adopted}"
    );
    s.chamilo
        .rename(seed_id, &format!("{seed_login}.renamed"))
        .await;
    let old = filter(&s.scim, &format!("userName eq \"{seed_login}\"")).await;
    assert_eq!(old.body["totalResults"], 0, "stale:{old}");

    // Deleted directly: not found anywhere, and the userName can be created again.
    s.chamilo.delete(uid).await;
    let gone = s
        .scim
        .call(Method::GET, &format!("/Users/{id}"), None)
        .await;
    assert_scim_error(&gone, StatusCode::NOT_FOUND, None);
    let none = filter(&s.scim, &format!("userName eq \"{carol}\"")).await;
    assert_eq!(none.body["totalResults"], 0, "stale:{none}");
    let (again, reply) = create(&s.chamilo, &s.scim, user_body(&carol, "Carol", "Ray")).await;
    assert_ne!(again, id, "{reply}");
}

/// docs/chamilo.md: a login created in Chamilo after the last index listing is never
/// duplicated (a create is 409 at once) and is learned by one listing, at most once per 30 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_created_directly_in_chamilo_is_found() {
    let s = stack("direct", 2, "").await;
    let direct = s
        .chamilo
        .create_direct("direct.user", "Direct", "User")
        .await;
    let count = s.chamilo.own_accounts().await.len();
    let user_name = s.name("Direct.User");
    let dup = s
        .scim
        .call(
            Method::POST,
            "/Users",
            Some(json!({"userName": user_name, "name": {"givenName": "Other", "familyName": "Person"},
                "emails": [{"value": s.name("other.person@example.org"), "primary": true}]})),
        )
        .await;
    assert_scim_error(&dup, StatusCode::CONFLICT, Some("uniqueness"));
    assert_eq!(
        s.chamilo.own_accounts().await.len(),
        count,
        "never a duplicate{dup}"
    );
    let started = Instant::now();
    // Unknown to the index until its next listing: answered 503 (the listing runs in the
    // background, never inside a request), then found.
    let last = std::cell::RefCell::new(String::new());
    let found = common::eventually(Duration::from_secs(40), || async {
        let r = s
            .scim
            .call(
                Method::GET,
                &format!(
                    "/Users?filter={}",
                    q(&format!("userName eq \"{user_name}\""))
                ),
                None,
            )
            .await;
        assert!(
            matches!(r.status, StatusCode::OK | StatusCode::SERVICE_UNAVAILABLE),
            "{r}"
        );
        let ok = r.status == StatusCode::OK
            && r.body["totalResults"] == 1
            && r.body["Resources"][0]["id"].as_str() == Some(direct.to_string().as_str());
        *last.borrow_mut() = r.to_string();
        ok
    })
    .await;
    assert!(
        found,
        "a login created directly (id {direct}) was not found within 40 s; last answer:{}",
        last.borrow()
    );
    println!("direct login found after {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_binaries_share_one_chamilo() {
    let chamilo = ChamiloSide::new("two").await;
    let creds = chamilo.creds();
    let keys = "index_refresh = \"1h\"\n";
    let (_a, scim_a, _da) = start_proxy(&creds, keys).await;
    let (_b, scim_b, _db) = start_proxy(&creds, keys).await;
    let shared = chamilo.name("shared@example.org");
    let (id, _) = create(&chamilo, &scim_a, user_body(&shared, "Sha", "Red")).await;
    let seen = filter(&scim_b, &format!("userName eq \"{shared}\"")).await;
    assert_eq!(seen.body["totalResults"], 1, "{seen}");
    assert_eq!(seen.body["Resources"][0]["id"], id.as_str(), "{seen}");
    let dup = scim_b
        .call(
            Method::POST,
            "/Users",
            Some(user_body(&shared, "Sha", "Red")),
        )
        .await;
    assert_scim_error(&dup, StatusCode::CONFLICT, Some("uniqueness"));

    let off = scim_a
        .call(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(patch(
                json!([{"op": "replace", "path": "active", "value": false}]),
            )),
        )
        .await;
    assert_eq!(off.status, StatusCode::OK, "{off}");
    let via_b = scim_b
        .call(Method::GET, &format!("/Users/{id}"), None)
        .await;
    assert_eq!(via_b.status, StatusCode::OK, "{via_b}");
    assert_eq!(via_b.body["active"], false, "{via_b}");

    // A deletes (default policy: a soft delete); B, whose index still holds the account,
    // answers 404 to every operation and finds it by no filter.
    let del = scim_a
        .call(Method::DELETE, &format!("/Users/{id}"), None)
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT, "{del}");
    let body = user_body(&shared, "Sha", "Red");
    let active_off = patch(json!([{"op": "replace", "path": "active", "value": false}]));
    for (method, payload) in [
        (Method::GET, None),
        (Method::PUT, Some(body.clone())),
        (Method::PATCH, Some(active_off)),
        (Method::DELETE, None),
    ] {
        for (name, scim) in [("A", &scim_a), ("B", &scim_b)] {
            let r = scim
                .call(method.clone(), &format!("/Users/{id}"), payload.clone())
                .await;
            assert_eq!(r.status, StatusCode::NOT_FOUND, "via {name}:{r}");
        }
    }
    for scim in [&scim_a, &scim_b] {
        let r = filter(scim, &format!("userName eq \"{shared}\"")).await;
        assert_eq!(r.body["totalResults"], 0, "{r}");
        let listed = scim.call(Method::GET, "/Users?count=100", None).await;
        assert!(
            listed.body["Resources"]
                .as_array()
                .is_some_and(|rs| rs.iter().all(|r| r["id"] != id.as_str())),
            "{listed}"
        );
    }

    // B's create with the same userName revives it: 201, the old id, one account.
    let users = chamilo.own_accounts().await.len();
    let (back, reply) = create(&chamilo, &scim_b, body).await;
    assert_eq!(back, id, "{reply}");
    assert_eq!(reply.body["active"], true, "{reply}");
    assert_eq!(chamilo.own_accounts().await.len(), users, "{reply}");
    let via_a = scim_a
        .call(Method::GET, &format!("/Users/{id}"), None)
        .await;
    assert_eq!(via_a.status, StatusCode::OK, "{via_a}");
    let dup = scim_a
        .call(
            Method::POST,
            "/Users",
            Some(user_body(&shared, "Sha", "Red")),
        )
        .await;
    assert_scim_error(&dup, StatusCode::CONFLICT, Some("uniqueness"));
}

/// Kubernetes rotates a Secret by swapping its `..data` symlink: a service-account api key
/// given as `chamilo.api_key_file` is re-read and used without a restart. The binary starts
/// with a wrong key (SCIM 503, start-up retried), then the right key appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_api_key_file_is_used_without_restart() {
    let chamilo = ChamiloSide::new("rotate").await;
    let creds = chamilo.creds();
    let dir = tempfile::tempdir().unwrap();
    let secrets = dir.path().join("secrets");
    std::fs::create_dir(&secrets).unwrap();
    let data_v1 = secrets.join("..v1");
    std::fs::create_dir(&data_v1).unwrap();
    std::fs::write(
        data_v1.join("api-key"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("..v1", secrets.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/api-key", secrets.join("api-key")).unwrap();

    let file = dir.path().join("proxy.toml");
    std::fs::write(
        &file,
        config_text(
            "",
            &format!(
                "[upstream]\nurl = {url}\n\n[scim]\ntokens = [\"{TOKEN}\"]\n\n[chamilo]\n{lines}api_key_file = {key_file}\nindex_refresh = \"1h\"\n",
                url = e2e_support::toml_str(&creds.url),
                lines = e2e_support::chamilo_lines(&creds),
                key_file = e2e_support::toml_str(&secrets.join("api-key").display().to_string()),
            ),
        ),
    )
    .unwrap();
    let proxy = tokio::task::spawn_blocking(move || ProxyProcess::start(&file, &[]))
        .await
        .unwrap();
    let scim = TestServer::at(proxy.url("/scim/v2"));
    let r = scim.call(Method::GET, "/Users?count=1", None).await;
    assert_scim_error(&r, StatusCode::SERVICE_UNAVAILABLE, None);

    // The kubelet's swap: a new timestamped directory, then `..data` replaced atomically.
    let data_v2 = secrets.join("..v2");
    std::fs::create_dir(&data_v2).unwrap();
    std::fs::write(data_v2.join("api-key"), format!("{}\n", creds.key)).unwrap();
    std::os::unix::fs::symlink("..v2", secrets.join("..data_tmp")).unwrap();
    std::fs::rename(secrets.join("..data_tmp"), secrets.join("..data")).unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = scim.call(Method::GET, "/Users?count=1", None).await;
        if r.status == StatusCode::OK {
            break;
        }
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{r}");
        assert!(
            Instant::now() < deadline,
            "the rotated key was not used within 30 s:\n{}",
            proxy.logs().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs = proxy.logs().join("\n");
    assert!(logs.contains("credentials changed"), "{logs}");
    assert!(!logs.contains(&creds.key), "a secret reached the logs");
}
