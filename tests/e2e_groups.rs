//! End to end, Groups (issue 12): the real binary in front of Chamilo (the stand-in, or a real
//! Chamilo named by `CHAMILO_E2E_URL`, see the README's Testing section), driven the way Entra
//! ID and Okta drive groups, without delays. Each step is checked in Chamilo itself: the class,
//! its name and its members.

mod common;
mod e2e_support;
mod scim_support;

use e2e_support::{proxy_config, skip_without_soap, start_proxy, toml_str, ChamiloSide};
use http::{Method, StatusCode};
use scim_support::{q, Reply, TestServer};
use serde_json::{json, Value};

const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";

fn patch(ops: Value) -> Value {
    json!({"schemas": [PATCH_OP], "Operations": ops})
}

async fn user(chamilo: &ChamiloSide, scim: &TestServer, local: &str) -> String {
    let user_name = chamilo.name(&format!("{local}@example.org"));
    let r = scim
        .call(
            Method::POST,
            "/Users",
            Some(
                json!({"userName": user_name, "name": {"givenName": local, "familyName": "Member"},
                "emails": [{"value": user_name, "primary": true}]}),
            ),
        )
        .await;
    if let Some(id) = r.body["id"].as_str().and_then(|id| id.parse().ok()) {
        chamilo.track(id);
    }
    assert_eq!(r.status, StatusCode::CREATED, "{r}");
    r.body["id"].as_str().unwrap_or_default().to_owned()
}

fn ok(r: &Reply) {
    assert!(
        matches!(r.status, StatusCode::OK | StatusCode::NO_CONTENT),
        "{r}"
    );
}

/// The Chamilo class behind a SCIM group id (`class-<id>`: SCIM ids are unique across
/// resource types, Chamilo's user and class ids are not).
fn class_of(gid: &str) -> u64 {
    gid.strip_prefix("class-")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a class id: {gid}"))
}

fn ids(v: &[&str]) -> Vec<u64> {
    let mut out: Vec<u64> = v.iter().map(|s| s.parse().unwrap()).collect();
    out.sort_unstable();
    out
}

/// Entra's sequence: an empty group, members added, one removed, all removed, a rename, the
/// deletion — each answer checked against the class in Chamilo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entra_group_sequence_reaches_the_chamilo_class() {
    let chamilo = ChamiloSide::new("grpentra").await;
    let (_proxy, scim, _dir) = start_proxy(&chamilo.creds(), "index_refresh = \"1h\"\n").await;
    let (ann, bob) = (
        user(&chamilo, &scim, "ann").await,
        user(&chamilo, &scim, "bob").await,
    );
    let name = chamilo.name("Staff");
    let created = scim
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"schemas": [GROUP], "displayName": name, "externalId": chamilo.name("g-1"), "members": []})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created}");
    let gid = created.body["id"].as_str().unwrap_or_default().to_owned();
    let class_id = class_of(&gid);
    assert_eq!(chamilo.class(class_id).await, Some((name.clone(), vec![])));

    let path = format!("/Groups/{gid}");
    let add = scim
        .call(
            Method::PATCH,
            &path,
            Some(patch(json!([{"op": "Add", "path": "members",
                "value": [{"value": ann}, {"value": bob}]}]))),
        )
        .await;
    ok(&add);
    assert_eq!(
        chamilo.class(class_id).await,
        Some((name.clone(), ids(&[&ann, &bob])))
    );

    let remove_one = scim
        .call(
            Method::PATCH,
            &path,
            Some(patch(
                json!([{"op": "Remove", "path": "members", "value": [{"value": ann}]}]),
            )),
        )
        .await;
    ok(&remove_one);
    assert_eq!(
        chamilo.class(class_id).await,
        Some((name.clone(), ids(&[&bob])))
    );

    let remove_all = scim
        .call(
            Method::PATCH,
            &path,
            Some(patch(json!([{"op": "Remove", "path": "members"}]))),
        )
        .await;
    ok(&remove_all);
    assert_eq!(chamilo.class(class_id).await, Some((name.clone(), vec![])));

    let mut current = name.clone();
    if !skip_without_soap(
        "entra_group_sequence (rename)",
        "a class is renamed through SOAP",
    ) {
        current = chamilo.name("Staff renamed");
        let rename = scim
            .call(
                Method::PATCH,
                &path,
                Some(patch(
                    json!([{"op": "Replace", "path": "displayName", "value": current}]),
                )),
            )
            .await;
        ok(&rename);
        assert_eq!(
            chamilo.class(class_id).await.map(|c| c.0),
            Some(current.clone())
        );
    }
    let found = scim
        .call(
            Method::GET,
            &format!(
                "/Groups?excludedAttributes=members&filter={}",
                q(&format!("displayName eq \"{current}\""))
            ),
            None,
        )
        .await;
    assert_eq!(found.status, StatusCode::OK, "{found}");
    assert_eq!(found.body["totalResults"], 1, "{found}");
    assert_eq!(found.body["Resources"][0]["id"], gid.as_str(), "{found}");

    let gone = scim.call(Method::DELETE, &path, None).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT, "{gone}");
    assert_eq!(chamilo.class(class_id).await, None);
    // The members stay.
    let still = scim.call(Method::GET, &format!("/Users/{bob}"), None).await;
    assert_eq!(still.status, StatusCode::OK, "{still}");
    let again = scim.call(Method::GET, &path, None).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND, "{again}");
}

/// Okta's push groups: created with members, a full-member PUT, a path-less rename; a user's
/// read-only `groups` shows the class.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn okta_push_groups_reach_the_chamilo_class() {
    let chamilo = ChamiloSide::new("grpokta").await;
    let (_proxy, scim, _dir) = start_proxy(&chamilo.creds(), "index_refresh = \"1h\"\n").await;
    let (ann, bob, cy) = (
        user(&chamilo, &scim, "ann").await,
        user(&chamilo, &scim, "bob").await,
        user(&chamilo, &scim, "cy").await,
    );
    let name = chamilo.name("Engineering");
    let created = scim
        .call(
            Method::POST,
            "/Groups",
            Some(json!({"schemas": [GROUP], "displayName": name,
                "members": [{"value": ann, "display": "ann"}, {"value": bob}]})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created}");
    let gid = created.body["id"].as_str().unwrap_or_default().to_owned();
    let class_id = class_of(&gid);
    assert_eq!(
        chamilo.class(class_id).await,
        Some((name.clone(), ids(&[&ann, &bob])))
    );

    let put = scim
        .call(
            Method::PUT,
            &format!("/Groups/{gid}"),
            Some(json!({"schemas": [GROUP], "id": gid, "displayName": name,
                "members": [{"value": bob}, {"value": cy}]})),
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{put}");
    assert_eq!(
        chamilo.class(class_id).await,
        Some((name.clone(), ids(&[&bob, &cy])))
    );

    let of_bob = scim.call(Method::GET, &format!("/Users/{bob}"), None).await;
    assert_eq!(of_bob.status, StatusCode::OK, "{of_bob}");
    let groups: Vec<&str> = of_bob.body["groups"]
        .as_array()
        .map(|g| g.iter().filter_map(|g| g["value"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(groups, vec![gid.as_str()], "{of_bob}");

    if !skip_without_soap(
        "okta_push_groups (rename)",
        "a class is renamed through SOAP",
    ) {
        let renamed = chamilo.name("Engineering EU");
        let r = scim
            .call(
                Method::PATCH,
                &format!("/Groups/{gid}"),
                Some(patch(
                    json!([{"op": "replace", "value": {"id": gid, "displayName": renamed}}]),
                )),
            )
            .await;
        ok(&r);
        assert_eq!(
            chamilo.class(class_id).await,
            Some((renamed, ids(&[&bob, &cy])))
        );
    }
    let gone = scim
        .call(Method::DELETE, &format!("/Groups/{gid}"), None)
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT, "{gone}");
}

/// Course enrolment by group (issue 12 §3) through the binary: a group matching the
/// configured pattern subscribes its members to the course as students, a member who leaves is
/// unsubscribed, and deleting the group unsubscribes the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mapped_group_enrols_and_unenrols_its_members() {
    let chamilo = ChamiloSide::new("grpcourse").await;
    let test = "a_mapped_group_enrols_and_unenrols_its_members";
    let Some((course, code)) = chamilo.course_for_tests(test).await else {
        return;
    };
    let keys = format!(
        "index_refresh = \"1h\"\nenrolment_dry_run = false\n\n[[chamilo.enrolment]]\ndisplay_name = {}\ncourses = [{}]\nrole = \"student\"\n",
        toml_str(&chamilo.name("Course group *")),
        toml_str(&code)
    );
    let (_proxy, scim, _dir) = start_proxy(&chamilo.creds(), &keys).await;
    let (ann, bob) = (
        user(&chamilo, &scim, "ann").await,
        user(&chamilo, &scim, "bob").await,
    );
    let (ann_id, bob_id): (u64, u64) = (ann.parse().unwrap(), bob.parse().unwrap());
    let enrolled =
        |users: &[(u64, i64)], id: u64| users.iter().find(|(u, _)| *u == id).map(|u| u.1);

    let created = scim
        .call(
            Method::POST,
            "/Groups",
            Some(
                json!({"schemas": [GROUP], "displayName": chamilo.name("Course group A"),
                "members": [{"value": ann}]}),
            ),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created}");
    let gid = created.body["id"].as_str().unwrap_or_default().to_owned();
    let now = chamilo.course_users(course).await;
    assert_eq!(
        enrolled(&now, ann_id),
        Some(5),
        "ann is a student of {code}: {now:?}"
    );
    assert_eq!(enrolled(&now, bob_id), None, "{now:?}");

    let path = format!("/Groups/{gid}");
    let add = scim
        .call(
            Method::PATCH,
            &path,
            Some(patch(
                json!([{"op": "add", "path": "members", "value": [{"value": bob}]}]),
            )),
        )
        .await;
    ok(&add);
    let now = chamilo.course_users(course).await;
    assert_eq!(
        (enrolled(&now, ann_id), enrolled(&now, bob_id)),
        (Some(5), Some(5)),
        "{now:?}"
    );

    let leave = scim
        .call(
            Method::PATCH,
            &path,
            Some(patch(
                json!([{"op": "remove", "path": format!("members[value eq \"{ann}\"]")}]),
            )),
        )
        .await;
    ok(&leave);
    let now = chamilo.course_users(course).await;
    assert_eq!(
        (enrolled(&now, ann_id), enrolled(&now, bob_id)),
        (None, Some(5)),
        "{now:?}"
    );

    let gone = scim.call(Method::DELETE, &path, None).await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT, "{gone}");
    let now = chamilo.course_users(course).await;
    assert_eq!(enrolled(&now, bob_id), None, "{now:?}");
}

/// Reconciliation through the binary: a class made in Chamilo before its rule existed is
/// left alone while the mapping is in dry run (the log says what would be made), and its
/// members are subscribed once a reload turns the dry run off — no SCIM write involved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_class_mapped_after_the_fact_is_enrolled_by_reconciliation() {
    let chamilo = ChamiloSide::new("grprecon").await;
    let test = "a_class_mapped_after_the_fact_is_enrolled_by_reconciliation";
    let Some((course, code)) = chamilo.course_for_tests(test).await else {
        return;
    };
    let ann = chamilo.create_direct("ann", "Ann", "Before").await;
    chamilo
        .make_class("Course group made in Chamilo", &[ann])
        .await;
    let keys = |dry_run: bool| {
        format!(
            "index_refresh = \"1h\"\nenrolment_dry_run = {dry_run}\n\n[[chamilo.enrolment]]\ndisplay_name = {}\ncourses = [{}]\nrole = \"student\"\n",
            toml_str(&chamilo.name("Course group *")),
            toml_str(&code)
        )
    };
    let (proxy, _scim, dir) = start_proxy(&chamilo.creds(), &keys(true)).await;
    let said = proxy.wait_for_log(std::time::Duration::from_secs(20), |l| {
        l.contains("enrolment reconciliation dry run") && l.contains(&code)
    });
    assert!(said, "{}", proxy.logs().join("\n"));
    let enrolled = |users: &[(u64, i64)]| users.iter().find(|(u, _)| *u == ann).map(|u| u.1);
    assert_eq!(enrolled(&chamilo.course_users(course).await), None);

    std::fs::write(
        dir.path().join("proxy.toml"),
        proxy_config(&chamilo.creds(), &keys(false)),
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut now = chamilo.course_users(course).await;
    while enrolled(&now).is_none() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        now = chamilo.course_users(course).await;
    }
    assert_eq!(
        enrolled(&now),
        Some(5),
        "ann is a student of {code} after the reload: {now:?}\n{}",
        proxy.logs().join("\n")
    );
}
