//! End to end: the real `chamilo-scim-proxy` binary in front of the Chamilo stand-in, driven
//! over HTTP the way Entra ID and Okta drive it (issue 4 §5).
//!
//! Each test starts its own stand-in and its own binary on port 0, and bounds every wait.

mod common;
mod scim_support;

use std::time::{Duration, Instant};

use chamilo_scim_proxy::standin::{NewUser, Standin, StandinConfig, StandinHandle};
use common::{config_text, ProxyProcess};
use http::{Method, StatusCode};
use scim_support::{q, Reply, TestServer, TOKEN};
use serde_json::{json, Value};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A stand-in, a binary in front of it, and a SCIM client for the binary.
struct Stack {
    chamilo: StandinHandle,
    proxy: ProxyProcess,
    scim: TestServer,
    _dir: tempfile::TempDir,
}

/// The configuration of a binary in front of `chamilo`; `chamilo_keys` go into `[chamilo]`.
fn proxy_config(chamilo: &StandinHandle, chamilo_keys: &str) -> String {
    config_text(
        "",
        &format!(
            "[upstream]\nurl = \"{url}\"\n\n[scim]\ntokens = [\"{TOKEN}\"]\n\n[chamilo]\nusername = \"{user}\"\napi_key = \"{key}\"\nsecurity_key = \"{security}\"\nindex_refresh = \"1h\"\n{chamilo_keys}\n",
            url = chamilo.base_url,
            user = chamilo.admin_username,
            key = chamilo.admin_api_key,
            security = chamilo.security_key,
        ),
    )
}

/// Starts the binary in front of `chamilo` and waits until SCIM stops answering 503.
async fn start_proxy(
    chamilo: &StandinHandle,
    chamilo_keys: &str,
) -> (ProxyProcess, TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
    std::fs::write(&file, proxy_config(chamilo, chamilo_keys)).unwrap();
    let proxy = tokio::task::spawn_blocking(move || ProxyProcess::start(&file, &[]))
        .await
        .unwrap();
    let scim = TestServer::at(proxy.url("/scim/v2"));
    scim.wait_until_ready(Duration::from_secs(20), || proxy.logs().join("\n"))
        .await;
    (proxy, scim, dir)
}

async fn stack(seed_users: usize, chamilo_keys: &str) -> Stack {
    let chamilo = Standin::start(StandinConfig {
        seed_users,
        ..StandinConfig::default()
    })
    .await
    .unwrap();
    let (proxy, scim, dir) = start_proxy(&chamilo, chamilo_keys).await;
    Stack {
        chamilo,
        proxy,
        scim,
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

async fn create(scim: &TestServer, body: Value) -> (String, Reply) {
    let r = scim.call(Method::POST, "/Users", Some(body)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    (r.body["id"].as_str().unwrap().to_owned(), r)
}

async fn filter(scim: &TestServer, expr: &str) -> Reply {
    let r = scim
        .call(Method::GET, &format!("/Users?filter={}", q(expr)), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{expr}: {}", r.body);
    r
}

fn patch(ops: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": ops})
}

fn assert_scim_error(r: &Reply, status: StatusCode, scim_type: Option<&str>) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(
        r.body["schemas"][0], "urn:ietf:params:scim:api:messages:2.0:Error",
        "{}",
        r.body
    );
    assert_eq!(r.body["status"], status.as_str(), "{}", r.body);
    if let Some(t) = scim_type {
        assert_eq!(r.body["scimType"], t, "{}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_operation_through_the_binary() {
    let s = stack(5, "").await;
    let (id, created) = create(
        &s.scim,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "bob@example.org",
            "externalId": "ext-bob-1",
            "name": {"givenName": "Bob", "familyName": "Stone"},
            "emails": [{"value": "bob@example.org", "type": "work", "primary": true}],
            "active": true
        }),
    )
    .await;
    assert_eq!(created.body["userName"], "bob@example.org");
    assert_eq!(created.body["externalId"], "ext-bob-1");
    assert_eq!(created.body["name"]["familyName"], "Stone");
    assert!(
        created
            .header("location")
            .is_some_and(|l| l.ends_with(&format!("/Users/{id}"))),
        "{:?}",
        created.headers
    );
    assert!(created
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/scim+json")));
    let uid: u64 = id.parse().unwrap();
    {
        let state = s.chamilo.state();
        let u = state.user(uid).unwrap();
        assert_eq!(u.lastname, "Stone");
        assert_eq!(u.firstname.as_deref(), Some("Bob"));
        assert_eq!(u.email, "bob@example.org");
        assert_eq!(u.active, 1);
    }

    let got = s
        .scim
        .call(Method::GET, &format!("/Users/{id}"), None)
        .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert_eq!(got.body["id"], id.as_str());
    assert_eq!(got.body["userName"], "bob@example.org");

    for expr in [
        "userName eq \"bob@example.org\"".to_owned(),
        "externalId eq \"ext-bob-1\"".to_owned(),
        format!("id eq \"{id}\""),
    ] {
        let r = filter(&s.scim, &expr).await;
        assert_eq!(r.body["totalResults"], 1, "{expr}: {}", r.body);
        assert_eq!(r.body["Resources"][0]["id"], id.as_str(), "{expr}");
    }
    let none = filter(&s.scim, "externalId eq \"no-such-ext\"").await;
    assert_eq!(none.body["totalResults"], 0);
    assert_eq!(none.body["Resources"].as_array().map_or(0, Vec::len), 0);

    let mut replacement = got.body.clone();
    replacement["name"] = json!({"givenName": "Robert", "familyName": "Stone"});
    let put = s
        .scim
        .call(Method::PUT, &format!("/Users/{id}"), Some(replacement))
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    assert_eq!(put.body["name"]["givenName"], "Robert");
    assert_eq!(
        s.chamilo.state().user(uid).unwrap().firstname.as_deref(),
        Some("Robert")
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
    assert_eq!(patched.status, StatusCode::OK, "{}", patched.body);
    assert_eq!(patched.body["name"]["familyName"], "Rock");
    assert_eq!(patched.body["name"]["givenName"], "Robert");
    assert_eq!(s.chamilo.state().user(uid).unwrap().lastname, "Rock");

    // Paging: 5 seeded + bob = 6 accounts (admin and anonymous are reserved).
    let mut seen = Vec::new();
    for start in [1, 3, 5] {
        let page = s
            .scim
            .call(
                Method::GET,
                &format!("/Users?startIndex={start}&count=2"),
                None,
            )
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert_eq!(page.body["totalResults"], 6, "{}", page.body);
        assert_eq!(page.body["startIndex"], start);
        assert_eq!(page.body["itemsPerPage"], 2);
        for r in page.body["Resources"].as_array().unwrap() {
            seen.push(r["id"].as_str().unwrap().to_owned());
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 6, "pages overlap: {seen:?}");
    assert!(seen.contains(&id));

    let missing = s.scim.call(Method::GET, "/Users/999999", None).await;
    assert_scim_error(&missing, StatusCode::NOT_FOUND, None);
    let missing_del = s.scim.call(Method::DELETE, "/Users/999999", None).await;
    assert_scim_error(&missing_del, StatusCode::NOT_FOUND, None);

    let del = s
        .scim
        .call(Method::DELETE, &format!("/Users/{id}"), None)
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT, "{}", del.body);
    // docs/chamilo.md: the default deprovisioning deactivates; the account stays in Chamilo
    // but answers 404 from now on (RFC 7644 §3.6).
    assert_eq!(s.chamilo.state().user(uid).unwrap().active, 0);
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
    assert_eq!(s.chamilo.state().user(uid).unwrap().active, 0);
    let gone = filter(&s.scim, "userName eq \"bob@example.org\"").await;
    assert_eq!(gone.body["totalResults"], 0, "{}", gone.body);
    // A create with the same userName brings it back, with its Chamilo id.
    let (again, _) = create(&s.scim, user_body("bob@example.org", "Bob", "Stone")).await;
    assert_eq!(again, id);
    assert_eq!(s.chamilo.state().user(uid).unwrap().active, 1);

    let not_allowed = s
        .scim
        .call(Method::POST, "/ServiceProviderConfig", Some(json!({})))
        .await;
    assert_eq!(not_allowed.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_sequence() {
    let s = stack(3, "").await;
    let probe = s
        .scim
        .call(
            Method::GET,
            &format!(
                "/Users?aadOptscim062020&filter={}",
                q("userName eq \"1f0e6c2d-7b0a-4a51-9c1e-0d9b3a6f2e11\"")
            ),
            None,
        )
        .await;
    assert_eq!(probe.status, StatusCode::OK, "{}", probe.body);
    assert_eq!(probe.body["totalResults"], 0);

    let upn = "Test_User_5b1c0a7e-2d4f-4e8a-9b3c-1a2b3c4d5e6f@contoso.onmicrosoft.com";
    let (id, created) = create(
        &s.scim,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE],
            "externalId": "0a1b2c3d-aaaa-bbbb-cccc-ddddeeeeffff",
            "UserName": upn,
            "Active": "True",
            "displayName": "Test User",
            "emails": [{"primary": true, "type": "work", "value": "test.user@contoso.com"}],
            "meta": {"resourceType": "User"},
            "name": {"formatted": "Test User", "familyName": "User", "givenName": "Test"},
            "roles": [],
            ENTERPRISE: {"employeeNumber": "1234"}
        }),
    )
    .await;
    assert_eq!(created.body["userName"], upn);
    assert_eq!(created.body["active"], true);
    let uid: u64 = id.parse().unwrap();

    let found = filter(&s.scim, &format!("userName eq \"{}\"", upn.to_lowercase())).await;
    assert_eq!(found.body["totalResults"], 1, "{}", found.body);
    assert_eq!(found.body["Resources"][0]["userName"], upn);

    let p = s
        .scim
        .call(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(patch(json!([
                {"op": "Replace", "path": "name.givenName", "value": "Tessa"},
                {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "tessa@contoso.com"}
            ]))),
        )
        .await;
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert_eq!(p.body["name"]["givenName"], "Tessa");
    {
        let state = s.chamilo.state();
        let u = state.user(uid).unwrap();
        assert_eq!(u.firstname.as_deref(), Some("Tessa"));
        assert_eq!(u.email, "tessa@contoso.com");
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
    assert_eq!(off.status, StatusCode::OK, "{}", off.body);
    assert_eq!(off.body["active"], false);
    assert_eq!(s.chamilo.state().user(uid).unwrap().active, 0);

    let still = s
        .scim
        .call(Method::GET, &format!("/Users/{id}"), None)
        .await;
    assert_eq!(still.status, StatusCode::OK, "{}", still.body);
    assert_eq!(still.body["active"], false);
    assert_eq!(still.body["userName"], upn);
    let by_filter = filter(&s.scim, &format!("userName eq \"{upn}\"")).await;
    assert_eq!(by_filter.body["totalResults"], 1);
    assert_eq!(by_filter.body["Resources"][0]["active"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_sequence() {
    let s = stack(3, "").await;
    let login = "okta.user@example.com";
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
    assert_eq!(check.status, StatusCode::OK, "{}", check.body);
    assert_eq!(check.body["totalResults"], 0);

    let (id, created) = create(
        &s.scim,
        json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": login,
            "name": {"givenName": "Okta", "familyName": "User"},
            "emails": [{"primary": true, "value": login, "type": "work"}],
            "displayName": "Okta User",
            "locale": "fr-FR",
            "externalId": "00u1abcdEFGH",
            "groups": [],
            "password": "Secr3t-Passw0rd!",
            "active": true
        }),
    )
    .await;
    assert_eq!(created.body["userName"], login);
    assert_eq!(created.body["externalId"], "00u1abcdEFGH");
    assert!(created.body.get("password").is_none(), "{}", created.body);
    let uid: u64 = id.parse().unwrap();
    assert_eq!(s.chamilo.state().user(uid).unwrap().language, "french");

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
    assert_eq!(found.body["totalResults"], 1, "{}", found.body);

    let mut full = created.body.clone();
    full["name"]["familyName"] = json!("Updated");
    full["groups"] = json!([]);
    full["meta"]["created"] = json!("2020-01-01T00:00:00Z");
    let put = s
        .scim
        .call(Method::PUT, &format!("/Users/{id}"), Some(full))
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    assert_eq!(put.body["name"]["familyName"], "Updated");
    assert_eq!(put.body["id"], id.as_str());
    assert_eq!(s.chamilo.state().user(uid).unwrap().lastname, "Updated");

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
    assert_eq!(off.status, StatusCode::OK, "{}", off.body);
    assert_eq!(off.body["active"], false);
    assert_eq!(s.chamilo.state().user(uid).unwrap().active, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_name_round_trips_and_login_is_valid() {
    let s = stack(0, "").await;
    let (id, _) = create(&s.scim, user_body("ann@example.org", "Ann", "Lee")).await;
    let got = s
        .scim
        .call(Method::GET, &format!("/Users/{id}"), None)
        .await;
    assert_eq!(got.body["userName"], "ann@example.org");
    let found = filter(&s.scim, "userName eq \"ANN@EXAMPLE.ORG\"").await;
    assert_eq!(found.body["totalResults"], 1, "{}", found.body);
    assert_eq!(found.body["Resources"][0]["id"], id.as_str());
    assert_eq!(found.body["Resources"][0]["userName"], "ann@example.org");
    let login = s
        .chamilo
        .state()
        .user(id.parse().unwrap())
        .unwrap()
        .username
        .clone();
    // Chamilo's login rule without login_is_email: letters, digits, `_`, `.`, `-`; ≤ 50.
    assert!(
        !login.is_empty()
            && login.len() <= 50
            && login
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c)),
        "not a valid Chamilo login: {login:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deprovision_delete_hard_deletes() {
    let s = stack(0, "deprovision = \"delete\"").await;
    let (id, _) = create(&s.scim, user_body("gone@example.org", "Gone", "Soon")).await;
    let uid: u64 = id.parse().unwrap();
    assert!(s.chamilo.state().user(uid).is_some());
    let del = s
        .scim
        .call(Method::DELETE, &format!("/Users/{id}"), None)
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT, "{}", del.body);
    assert!(s.chamilo.state().user(uid).is_none(), "hard-deleted");
    let after = s
        .scim
        .call(Method::GET, &format!("/Users/{id}"), None)
        .await;
    assert_scim_error(&after, StatusCode::NOT_FOUND, None);
    let by_name = filter(&s.scim, "userName eq \"gone@example.org\"").await;
    assert_eq!(by_name.body["totalResults"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_are_4xx_never_5xx() {
    let s = stack(0, "").await;
    create(&s.scim, user_body("taken@example.org", "Taken", "One")).await;
    let before = s.chamilo.state().user_count();

    let dup = s
        .scim
        .call(
            Method::POST,
            "/Users",
            Some(user_body("TAKEN@example.org", "Other", "Two")),
        )
        .await;
    assert_scim_error(&dup, StatusCode::CONFLICT, Some("uniqueness"));

    let emoji = s
        .scim
        .call(
            Method::POST,
            "/Users",
            Some(user_body("emoji@example.org", "Zoé 😀", "X")),
        )
        .await;
    assert_scim_error(&emoji, StatusCode::BAD_REQUEST, Some("invalidValue"));

    let long = "L".repeat(61);
    let too_long = s
        .scim
        .call(
            Method::POST,
            "/Users",
            Some(user_body("long@example.org", "Ann", &long)),
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
    assert!(no_token
        .header("www-authenticate")
        .is_some_and(|v| v.starts_with("Bearer")));
    let wrong = s
        .scim
        .send(Method::GET, "/Users", Some("not-the-token"), None, &[])
        .await;
    assert_scim_error(&wrong, StatusCode::UNAUTHORIZED, None);

    assert_eq!(
        s.chamilo.state().user_count(),
        before,
        "no account made by a refused request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_chamilo_is_503_with_retry_after() {
    let s = stack(0, "connect_timeout = \"1s\"\nrequest_timeout = \"3s\"").await;
    let (id, _) = create(&s.scim, user_body("kept@example.org", "Kept", "User")).await;
    s.chamilo.stop().await;
    let r = s
        .scim
        .call(Method::GET, &format!("/Users/{id}"), None)
        .await;
    assert_scim_error(&r, StatusCode::SERVICE_UNAVAILABLE, None);
    assert!(
        r.header("retry-after")
            .is_some_and(|v| v.parse::<u64>().is_ok_and(|n| n > 0)),
        "{:?}",
        r.headers
    );
    let w = s
        .scim
        .call(
            Method::POST,
            "/Users",
            Some(user_body("new@example.org", "New", "User")),
        )
        .await;
    assert_scim_error(&w, StatusCode::SERVICE_UNAVAILABLE, None);
    // Bad client data is still 400, not a 5xx, while Chamilo is away.
    let bad = s
        .scim
        .call(Method::POST, "/Users", Some(json!({"userName": 42})))
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    drop(s.proxy);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_chamilo_is_504() {
    let s = stack(0, "request_timeout = \"500ms\"").await;
    let (id, _) = create(&s.scim, user_body("slow@example.org", "Slow", "User")).await;
    s.chamilo.set_latency(Duration::from_secs(2));
    let started = Instant::now();
    let r = s
        .scim
        .call(Method::GET, &format!("/Users/{id}"), None)
        .await;
    assert_scim_error(&r, StatusCode::GATEWAY_TIMEOUT, None);
    assert!(started.elapsed() < Duration::from_secs(5));
    s.chamilo.set_latency(Duration::ZERO);
    let ok = s
        .scim
        .call(Method::GET, &format!("/Users/{id}"), None)
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
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
    let s = stack(3, "").await;
    let (id, _) = create(&s.scim, user_body("count@example.org", "Count", "Er")).await;
    filter(&s.scim, "userName eq \"count@example.org\"").await;
    let r = s
        .scim
        .call(Method::GET, &format!("/Users/{id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let taken = s
        .scim
        .call(
            Method::POST,
            "/Users",
            Some(user_body("count@example.org", "Count", "Er")),
        )
        .await;
    assert_eq!(taken.status, StatusCode::CONFLICT, "{}", taken.body);

    let mut checked = 0;
    for (action, received) in s.chamilo.all_calls() {
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
    assert!(checked >= 3, "{:?}", s.chamilo.all_calls());
    let (_, text) = common::get(&s.proxy.admin_url("/metrics")).await.unwrap();
    assert!(
        text.contains("chamilo_call_duration_seconds_count{action=\"get_users\"}"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_behind_the_proxys_back_are_seen() {
    let s = stack(2, "").await;

    // Deactivated directly: never reported active.
    let (id, _) = create(&s.scim, user_body("carol@example.org", "Carol", "Ray")).await;
    let uid: u64 = id.parse().unwrap();
    assert!(s.chamilo.state().set_active(uid, false));
    let got = s
        .scim
        .call(Method::GET, &format!("/Users/{id}"), None)
        .await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.body);
    assert_eq!(got.body["active"], false, "hidden deactivation");
    let by_name = filter(&s.scim, "userName eq \"carol@example.org\"").await;
    assert_eq!(
        by_name.body["Resources"][0]["active"], false,
        "{}",
        by_name.body
    );

    // Login renamed directly: the SCIM userName (an extra field) stays, writes still land.
    assert!(s.chamilo.state().rename_user(uid, "carol.renamed"));
    let still = filter(&s.scim, "userName eq \"carol@example.org\"").await;
    assert_eq!(still.body["totalResults"], 1, "{}", still.body);
    assert_eq!(still.body["Resources"][0]["id"], id.as_str());
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
    assert_eq!(p.status, StatusCode::OK, "{}", p.body);
    assert_eq!(s.chamilo.state().user(uid).unwrap().lastname, "Moved");

    // An existing (unmanaged) account renamed directly: the old login no longer answers.
    let seed_id = s.chamilo.state().user_by_username("user000001").unwrap().id;
    let adopted = filter(&s.scim, "userName eq \"USER000001\"").await;
    assert_eq!(adopted.body["totalResults"], 1, "{}", adopted.body);
    assert_eq!(adopted.body["Resources"][0]["id"], seed_id.to_string());
    assert!(s.chamilo.state().rename_user(seed_id, "user000001.renamed"));
    let old = filter(&s.scim, "userName eq \"user000001\"").await;
    assert_eq!(old.body["totalResults"], 0, "stale: {}", old.body);

    // Deleted directly: not found anywhere, and the userName can be created again.
    assert!(s.chamilo.state().remove_user(uid));
    let gone = s
        .scim
        .call(Method::GET, &format!("/Users/{id}"), None)
        .await;
    assert_scim_error(&gone, StatusCode::NOT_FOUND, None);
    let none = filter(&s.scim, "userName eq \"carol@example.org\"").await;
    assert_eq!(none.body["totalResults"], 0, "stale: {}", none.body);
    let (again, _) = create(&s.scim, user_body("carol@example.org", "Carol", "Ray")).await;
    assert_ne!(again, id);
}

/// docs/chamilo.md: a login created in Chamilo after the last index listing is never
/// duplicated (a create is 409 at once) and is learned by one listing, at most once per 30 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_created_directly_in_chamilo_is_found() {
    let s = stack(2, "").await;
    let direct = s
        .chamilo
        .state()
        .insert_user(NewUser {
            username: "direct.user".into(),
            firstname: Some("Direct".into()),
            lastname: "User".into(),
            email: "direct.user@example.org".into(),
            password: "x".into(),
            status: 5,
            language: "english".into(),
            auth_source: "platform".into(),
            ..NewUser::default()
        })
        .unwrap();
    let count = s.chamilo.state().user_count();
    let dup = s
        .scim
        .call(
            Method::POST,
            "/Users",
            Some(json!({"userName": "Direct.User", "name": {"givenName": "Other", "familyName": "Person"},
                "emails": [{"value": "other.person@example.org", "primary": true}]})),
        )
        .await;
    assert_scim_error(&dup, StatusCode::CONFLICT, Some("uniqueness"));
    assert_eq!(s.chamilo.state().user_count(), count, "never a duplicate");
    let started = Instant::now();
    // Unknown to the index until its next listing: answered 503 (the listing runs in the
    // background, never inside a request), then found.
    let found = common::eventually(Duration::from_secs(40), || async {
        let r = s
            .scim
            .call(
                Method::GET,
                &format!("/Users?filter={}", q("userName eq \"Direct.User\"")),
                None,
            )
            .await;
        assert!(
            matches!(r.status, StatusCode::OK | StatusCode::SERVICE_UNAVAILABLE),
            "{}: {}",
            r.status,
            r.body
        );
        r.status == StatusCode::OK
            && r.body["totalResults"] == 1
            && r.body["Resources"][0]["id"].as_str() == Some(direct.to_string().as_str())
    })
    .await;
    assert!(found, "a login created directly was not found within 40 s");
    println!("direct login found after {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_binaries_share_one_chamilo() {
    let chamilo = Standin::start(StandinConfig::default()).await.unwrap();
    let (_a, scim_a, _da) = start_proxy(&chamilo, "").await;
    let (_b, scim_b, _db) = start_proxy(&chamilo, "").await;
    let (id, _) = create(&scim_a, user_body("shared@example.org", "Sha", "Red")).await;
    let seen = filter(&scim_b, "userName eq \"shared@example.org\"").await;
    assert_eq!(seen.body["totalResults"], 1, "{}", seen.body);
    assert_eq!(seen.body["Resources"][0]["id"], id.as_str());
    let dup = scim_b
        .call(
            Method::POST,
            "/Users",
            Some(user_body("shared@example.org", "Sha", "Red")),
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
    assert_eq!(off.status, StatusCode::OK, "{}", off.body);
    let via_b = scim_b
        .call(Method::GET, &format!("/Users/{id}"), None)
        .await;
    assert_eq!(via_b.status, StatusCode::OK, "{}", via_b.body);
    assert_eq!(via_b.body["active"], false);

    // A deletes (default policy: a soft delete); B, whose index still holds the account,
    // answers 404 to every operation and finds it by no filter.
    let del = scim_a
        .call(Method::DELETE, &format!("/Users/{id}"), None)
        .await;
    assert_eq!(del.status, StatusCode::NO_CONTENT, "{}", del.body);
    let body = user_body("shared@example.org", "Sha", "Red");
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
            assert_eq!(
                r.status,
                StatusCode::NOT_FOUND,
                "{name} {method}: {}",
                r.body
            );
        }
    }
    for scim in [&scim_a, &scim_b] {
        let r = filter(scim, "userName eq \"shared@example.org\"").await;
        assert_eq!(r.body["totalResults"], 0, "{}", r.body);
        let listed = scim.call(Method::GET, "/Users?count=100", None).await;
        assert!(
            listed.body["Resources"]
                .as_array()
                .is_some_and(|rs| rs.iter().all(|r| r["id"] != id.as_str())),
            "{}",
            listed.body
        );
    }

    // B's create with the same userName revives it: 201, the old id, one account.
    let users = chamilo.state().user_count();
    let (back, reply) = create(&scim_b, body).await;
    assert_eq!(back, id);
    assert_eq!(reply.body["active"], true);
    assert_eq!(chamilo.state().user_count(), users);
    let via_a = scim_a
        .call(Method::GET, &format!("/Users/{id}"), None)
        .await;
    assert_eq!(via_a.status, StatusCode::OK, "{}", via_a.body);
    let dup = scim_a
        .call(
            Method::POST,
            "/Users",
            Some(user_body("shared@example.org", "Sha", "Red")),
        )
        .await;
    assert_scim_error(&dup, StatusCode::CONFLICT, Some("uniqueness"));
}

/// Kubernetes rotates a Secret by swapping its `..data` symlink: a service-account api key
/// given as `chamilo.api_key_file` is re-read and used without a restart. The binary starts
/// with a wrong key (SCIM 503, start-up retried), then the right key appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_api_key_file_is_used_without_restart() {
    let chamilo = Standin::start(StandinConfig::default()).await.unwrap();
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
                "[upstream]\nurl = \"{url}\"\n\n[scim]\ntokens = [\"{TOKEN}\"]\n\n[chamilo]\nusername = \"{user}\"\napi_key_file = \"{key_file}\"\nsecurity_key = \"{security}\"\nindex_refresh = \"1h\"\n",
                url = chamilo.base_url,
                user = chamilo.admin_username,
                key_file = secrets.join("api-key").display(),
                security = chamilo.security_key,
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
    std::fs::write(
        data_v2.join("api-key"),
        format!("{}\n", chamilo.admin_api_key),
    )
    .unwrap();
    std::os::unix::fs::symlink("..v2", secrets.join("..data_tmp")).unwrap();
    std::fs::rename(secrets.join("..data_tmp"), secrets.join("..data")).unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = scim.call(Method::GET, "/Users?count=1", None).await;
        if r.status == StatusCode::OK {
            break;
        }
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
        assert!(
            Instant::now() < deadline,
            "the rotated key was not used within 30 s:\n{}",
            proxy.logs().join("\n")
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let logs = proxy.logs().join("\n");
    assert!(logs.contains("credentials changed"), "{logs}");
    assert!(
        !logs.contains(&chamilo.admin_api_key),
        "a secret reached the logs"
    );
}
