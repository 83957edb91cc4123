//! The Chamilo `directory` against the stand-in: the SCIM operations the engine calls, the
//! userName round trip, validation before any call, deprovisioning and protected accounts.

mod chamilo_bench_support;
mod chamilo_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chamilo_scim_proxy::chamilo::directory::ChamiloDirectory;
use chamilo_scim_proxy::chamilo::kept::KeptAttributes;
use chamilo_scim_proxy::chamilo::mapping::{ChamiloMapping, Deprovision, ListScope};
use chamilo_scim_proxy::directory::{Directory, DirectoryError, ListQuery, User};
use chamilo_scim_proxy::scim::filter::{AttrPath, CompValue, CompareOp, Filter};
use chamilo_scim_proxy::standin::state::STATUS_TEACHER;
use chamilo_scim_proxy::standin::{Standin, StandinConfig, StandinHandle};
use chamilo_support::{replica, replica_with, settled};
use serde_json::{json, Value};

async fn setup(mapping: ChamiloMapping) -> (StandinHandle, ChamiloDirectory) {
    let chamilo = Standin::start(StandinConfig {
        seed_users: 50,
        ..StandinConfig::default()
    })
    .await
    .unwrap();
    let r = replica(&chamilo, mapping).await;
    // What `Backend::start` does too: learn the anonymous users.
    let caps = r.client.check_capabilities().await.unwrap();
    r.lookup.set_anonymous_ids(caps.anonymous_ids);
    (chamilo, r.directory)
}

fn user(v: Value) -> User {
    match v {
        Value::Object(m) => User::from_json(m),
        _ => unreachable!(),
    }
}

fn ann() -> User {
    user(json!({
        "userName": "Ann.Lee@Example.org",
        "externalId": "0f1e-ann",
        "name": {"givenName": "Ann", "familyName": "Lee"},
        "emails": [{"value": "ann.lee@example.org", "type": "work", "primary": true}],
        "active": true
    }))
}

fn eq(attr: &str, value: &str) -> ListQuery {
    ListQuery {
        filter: Some(Filter::Compare {
            path: AttrPath {
                urn: None,
                name: attr.into(),
                sub_attr: None,
            },
            op: CompareOp::Eq,
            value: CompValue::Str(value.into()),
        }),
        sort: None,
        start_index: 1,
        count: 100,
    }
}

#[tokio::test]
async fn entra_style_lifecycle() {
    let (chamilo, dir) = setup(ChamiloMapping::default()).await;

    // Entra's first step: is the user there? One fresh call confirms the miss.
    let page = dir
        .find(&eq("userName", "ann.lee@example.org"))
        .await
        .unwrap();
    assert_eq!(page.total, 0);

    let created = dir.create(ann()).await.unwrap();
    let id = created.id().unwrap().to_owned();
    // The identity provider gets back exactly the userName it sent.
    assert_eq!(created.user_name(), Some("Ann.Lee@Example.org"));
    {
        let state = chamilo.state();
        let u = state.user(id.parse().unwrap()).unwrap();
        assert_eq!(
            u.username, "Ann.Lee_Example.org",
            "a valid Chamilo login was derived"
        );
        assert_eq!(u.password.len(), 40, "a long random password was sent");
        assert_eq!(
            u.extra.get("scim_external_id"),
            Some(&Some("0f1e-ann".to_owned()))
        );
    }

    // Found by userName (case-insensitively) and by externalId; one Chamilo call each.
    chamilo.reset_calls();
    let page = dir
        .find(&eq("userName", "ANN.LEE@example.org"))
        .await
        .unwrap();
    assert_eq!(page.total, 1);
    assert_eq!(page.resources[0].id(), Some(id.as_str()));
    assert_eq!(page.resources[0].user_name(), Some("Ann.Lee@Example.org"));
    assert_eq!(chamilo.total_calls(), 1);
    let page = dir.find(&eq("externalId", "0f1e-ann")).await.unwrap();
    assert_eq!(page.total, 1);
    let got = dir.get(&id).await.unwrap().unwrap();
    assert_eq!(got.get_str("name.familyName"), Some("Lee"));
    assert_eq!(chamilo.total_calls(), 3);

    // A second create with the same userName is a conflict, not a duplicate.
    assert!(matches!(
        dir.create(ann()).await.unwrap_err(),
        DirectoryError::Conflict { .. }
    ));

    // Replace: rename (SOAP) and deactivate.
    let mut renamed = ann();
    renamed
        .as_json_mut()
        .insert("userName".into(), json!("ann.smith@example.org"));
    renamed.as_json_mut().insert("active".into(), json!(false));
    let after = dir.replace(&id, renamed, None).await.unwrap();
    assert_eq!(after.user_name(), Some("ann.smith@example.org"));
    assert_eq!(after.active(), Some(false));
    {
        let state = chamilo.state();
        let u = state.user(id.parse().unwrap()).unwrap();
        assert_eq!(u.username, "ann.smith_example.org");
        assert_eq!(u.active, 0);
    }
    assert_eq!(chamilo.calls("WSEditUserCredentials"), 1);
    let page = dir
        .find(&eq("userName", "ann.smith@example.org"))
        .await
        .unwrap();
    assert_eq!(page.total, 1);
    assert!(dir
        .find(&eq("userName", "ann.lee@example.org"))
        .await
        .unwrap()
        .resources
        .is_empty());

    // DELETE deactivates by default; the account stays in Chamilo but is gone for SCIM.
    dir.delete(&id).await.unwrap();
    assert_eq!(
        chamilo.state().user(id.parse().unwrap()).map(|u| u.active),
        Some(0)
    );
    assert!(dir.get(&id).await.unwrap().is_none());

    // The listing (scope "all") holds the 50 existing accounts, not the deleted one, and
    // never the admin (protected) or the anonymous user.
    let all = dir
        .find(&ListQuery {
            filter: None,
            sort: None,
            start_index: 1,
            count: 100,
        })
        .await
        .unwrap();
    assert_eq!(all.total, 50);
    let names: Vec<&str> = all.resources.iter().filter_map(|u| u.user_name()).collect();
    assert!(names.contains(&"user000001"), "{names:?}");
    assert!(!names.iter().any(|n| *n == "admin" || *n == "anon"));
}

#[tokio::test]
async fn validation_happens_before_any_call() {
    let (chamilo, dir) = setup(ChamiloMapping::default()).await;
    chamilo.reset_calls();
    let mut bad = ann();
    bad.as_json_mut().insert(
        "name".into(),
        json!({"givenName": "Zoé 😀", "familyName": "Lee"}),
    );
    match dir.create(bad).await.unwrap_err() {
        DirectoryError::InvalidValue { attr, .. } => assert_eq!(attr, "name.givenName"),
        other => panic!("{other}"),
    }
    // With the strict switch (`chamilo.refuse_unmapped_languages`), an unmapped tag too.
    dir.mapping().language_policy.store(std::sync::Arc::new(
        chamilo_scim_proxy::chamilo::mapping::LanguagePolicy {
            refuse_unmapped: true,
            ..Default::default()
        },
    ));
    let mut bad = ann();
    bad.as_json_mut()
        .insert("preferredLanguage".into(), json!("tlh"));
    assert!(matches!(
        dir.create(bad).await.unwrap_err(),
        DirectoryError::InvalidValue { .. }
    ));
    assert_eq!(chamilo.calls("save_user"), 0);
}

#[tokio::test]
async fn deprovisioning_policies_and_protected_accounts() {
    let (chamilo, dir) = setup(ChamiloMapping {
        deprovision: Deprovision::Delete,
        ..ChamiloMapping::default()
    })
    .await;
    let id = dir.create(ann()).await.unwrap().id().unwrap().to_owned();
    let uid: u64 = id.parse().unwrap();
    {
        let mut state = chamilo.state();
        let course = state.insert_course("C1", "Course").unwrap();
        state
            .course_mut(course)
            .unwrap()
            .users
            .push((uid, STATUS_TEACHER));
    }
    assert!(matches!(
        dir.delete(&id).await.unwrap_err(),
        DirectoryError::Conflict { .. }
    ));
    chamilo.state().course_mut(1).unwrap().users.clear();
    dir.delete(&id).await.unwrap();
    assert!(chamilo.state().user(uid).is_none());
    assert!(dir.get(&id).await.unwrap().is_none());

    // The admin account cannot be deleted or changed through SCIM.
    assert!(matches!(
        dir.delete("1").await.unwrap_err(),
        DirectoryError::Forbidden { .. }
    ));
    assert!(chamilo.state().user(1).is_some());

    let (chamilo, dir) = setup(ChamiloMapping {
        deprovision: Deprovision::DeleteOrDeactivate,
        ..ChamiloMapping::default()
    })
    .await;
    let id = dir.create(ann()).await.unwrap().id().unwrap().to_owned();
    let uid: u64 = id.parse().unwrap();
    {
        let mut state = chamilo.state();
        let course = state.insert_course("C1", "Course").unwrap();
        state
            .course_mut(course)
            .unwrap()
            .users
            .push((uid, STATUS_TEACHER));
    }
    dir.delete(&id).await.unwrap();
    assert_eq!(chamilo.state().user(uid).map(|u| u.active), Some(0));
    // The fallback is the soft delete of the default policy: gone for SCIM.
    assert!(dir.get(&id).await.unwrap().is_none());
}

#[tokio::test]
async fn a_round_trip_without_unreadable_attributes_keeps_them() {
    let (chamilo, dir) = setup(ChamiloMapping::default()).await;
    let mut teacher = ann();
    teacher
        .as_json_mut()
        .insert("roles".into(), json!([{"value": "teacher"}]));
    teacher
        .as_json_mut()
        .insert("preferredLanguage".into(), json!("fr"));
    let id = dir.create(teacher).await.unwrap().id().unwrap().to_owned();
    let uid: u64 = id.parse().unwrap();
    chamilo.state().user_mut(uid).unwrap().phone = "555-0100".into();

    // What a PATCH active=false does: get, change, replace with what get returned.
    let mut current = dir.get(&id).await.unwrap().unwrap();
    assert_eq!(
        current.get("phoneNumbers"),
        Some(&json!([{"value": "555-0100", "type": "work"}]))
    );
    current.as_json_mut().insert("active".into(), json!(false));
    dir.replace(&id, current, None).await.unwrap();
    let state = chamilo.state();
    let u = state.user(uid).unwrap();
    assert_eq!(u.active, 0);
    assert_eq!(u.status, STATUS_TEACHER, "status not reset to student");
    assert_eq!(
        u.language, "french",
        "language not readable, so not touched"
    );
    assert_eq!(u.phone, "555-0100");
}

async fn directory_on(chamilo: &StandinHandle, mapping: ChamiloMapping) -> ChamiloDirectory {
    replica(chamilo, mapping).await.directory
}

#[tokio::test]
async fn two_replicas_sharing_one_chamilo_stay_correct() {
    let (chamilo, a) = setup(ChamiloMapping {
        deprovision: Deprovision::Delete,
        ..ChamiloMapping::default()
    })
    .await;
    let b = directory_on(
        &chamilo,
        ChamiloMapping {
            deprovision: Deprovision::Delete,
            ..ChamiloMapping::default()
        },
    )
    .await;
    // Both indexes are built before the user exists.
    assert_eq!(a.find(&eq("userName", "x")).await.unwrap().total, 0);
    assert_eq!(b.find(&eq("userName", "x")).await.unwrap().total, 0);

    let id = a.create(ann()).await.unwrap().id().unwrap().to_owned();
    // Replica B has never seen it: found by userName, by externalId and by id.
    let page = b
        .find(&eq("userName", "ann.lee@example.org"))
        .await
        .unwrap();
    assert_eq!(page.resources[0].id(), Some(id.as_str()));
    assert_eq!(
        b.find(&eq("externalId", "0f1e-ann")).await.unwrap().total,
        1
    );
    assert!(b.get(&id).await.unwrap().is_some());
    // B cannot create it a second time.
    assert!(matches!(
        b.create(ann()).await.unwrap_err(),
        DirectoryError::Conflict { .. }
    ));

    // B deactivates; A (whose index says active) does not hide it.
    let mut off = b.get(&id).await.unwrap().unwrap();
    off.as_json_mut().insert("active".into(), json!(false));
    b.replace(&id, off, None).await.unwrap();
    {
        // B never knew the names or e-mail (Chamilo gives no lookup by id): they are kept.
        let state = chamilo.state();
        let u = state.user(id.parse().unwrap()).unwrap();
        assert_eq!(u.firstname.as_deref(), Some("Ann"));
        assert_eq!(u.lastname, "Lee");
        assert_eq!(u.email, "ann.lee@example.org");
        assert_eq!(u.active, 0);
    }
    assert_eq!(a.get(&id).await.unwrap().unwrap().active(), Some(false));
    let page = a
        .find(&eq("userName", "ann.lee@example.org"))
        .await
        .unwrap();
    assert_eq!(page.resources[0].active(), Some(false));

    // A deletes; B does not return it any more.
    a.delete(&id).await.unwrap();
    assert!(b.get(&id).await.unwrap().is_none());
    assert_eq!(
        b.find(&eq("userName", "ann.lee@example.org"))
            .await
            .unwrap()
            .total,
        0
    );
}

/// A rename through replica A: replica B, whose index still holds the old userName, must find
/// the account by its new one (a miss there would make the identity provider create a second
/// account) and by its id, and must not find it by the old one.
#[tokio::test]
async fn a_rename_through_another_replica_is_found_by_the_new_name() {
    let (chamilo, a) = setup(ChamiloMapping::default()).await;
    let b = directory_on(&chamilo, ChamiloMapping::default()).await;
    let id = a.create(ann()).await.unwrap().id().unwrap().to_owned();
    // B lists the account under its first userName.
    assert_eq!(
        b.find(&eq("userName", "ann.lee@example.org"))
            .await
            .unwrap()
            .total,
        1
    );

    let mut renamed = a.get(&id).await.unwrap().unwrap();
    renamed
        .as_json_mut()
        .insert("userName".into(), json!("ann.smith@example.org"));
    a.replace(&id, renamed, None).await.unwrap();

    let page = b
        .find(&eq("userName", "ann.smith@example.org"))
        .await
        .unwrap();
    assert_eq!(page.total, 1, "the new userName must be found on B");
    assert_eq!(page.resources[0].id(), Some(id.as_str()));
    assert_eq!(
        b.find(&eq("userName", "ann.lee@example.org"))
            .await
            .unwrap()
            .total,
        0
    );
    let got = b.get(&id).await.unwrap().expect("found by id on B");
    assert_eq!(got.user_name(), Some("ann.smith@example.org"));
}

/// A lookup by id on a replica whose cached userName was changed elsewhere: one listing settles
/// it (rate-limited; the limit is lifted here), and the id is not reported gone. The listing
/// runs in the background: until it is loaded the lookup answers 503 (never a 404, never a
/// request waiting for a listing).
#[tokio::test]
async fn an_id_whose_user_name_changed_elsewhere_is_not_reported_gone() {
    let (chamilo, a) = setup(ChamiloMapping::default()).await;
    let b = replica_with(&chamilo, ChamiloMapping::default(), Duration::ZERO)
        .await
        .directory;
    let id = a.create(ann()).await.unwrap().id().unwrap().to_owned();
    // New to B's index: 503 first, then found once the background listing is in.
    assert!(matches!(
        b.get(&id).await,
        Err(DirectoryError::Unavailable { .. })
    ));
    assert!(settled(|| b.get(&id)).await.unwrap().is_some());
    let mut renamed = a.get(&id).await.unwrap().unwrap();
    renamed
        .as_json_mut()
        .insert("userName".into(), json!("ann.smith@example.org"));
    a.replace(&id, renamed, None).await.unwrap();
    let got = settled(|| b.get(&id))
        .await
        .unwrap()
        .expect("still there on B");
    assert_eq!(got.user_name(), Some("ann.smith@example.org"));
}

/// A PUT or PATCH reads the user and then writes it: the write reuses the read's fresh
/// confirmation when it follows at once (two Chamilo calls, not three), but not a stale one.
#[tokio::test]
async fn a_write_right_after_a_read_reuses_its_confirmation() {
    let (chamilo, dir) = setup(ChamiloMapping::default()).await;
    let id = dir.create(ann()).await.unwrap().id().unwrap().to_owned();

    chamilo.reset_calls();
    let mut current = dir.get(&id).await.unwrap().unwrap();
    current.as_json_mut().insert(
        "name".into(),
        json!({"givenName": "Ann", "familyName": "Smith"}),
    );
    dir.replace(&id, current.clone(), None).await.unwrap();
    assert_eq!(chamilo.calls("users_profiles_by_extra_field"), 1);
    assert_eq!(chamilo.calls("update_user_from_username"), 1);
    assert_eq!(chamilo.total_calls(), 2, "{:?}", chamilo.all_calls());

    // Taken once: a second write confirms again.
    chamilo.reset_calls();
    dir.replace(&id, current.clone(), None).await.unwrap();
    assert_eq!(chamilo.calls("users_profiles_by_extra_field"), 1);

    // Too old to reuse: confirmed again.
    dir.get(&id).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    chamilo.reset_calls();
    dir.replace(&id, current, None).await.unwrap();
    assert_eq!(chamilo.calls("users_profiles_by_extra_field"), 1);

    // A delete right after a read does not write on the read's word either.
    dir.get(&id).await.unwrap().unwrap();
    chamilo.reset_calls();
    dir.delete(&id).await.unwrap();
    assert_eq!(chamilo.calls("users_profiles_by_extra_field"), 1);
    assert!(dir.get(&id).await.unwrap().is_none());
}

#[tokio::test]
async fn okta_style_paging_is_stable() {
    let (_chamilo, dir) = setup(ChamiloMapping {
        list_scope: ListScope::Managed,
        ..ChamiloMapping::default()
    })
    .await;
    for i in 0..7 {
        let mut u = ann();
        let m = u.as_json_mut();
        m.insert("userName".into(), json!(format!("user{i}@example.org")));
        m.insert("externalId".into(), json!(format!("ext-{i}")));
        dir.create(u).await.unwrap();
    }
    let mut seen = Vec::new();
    let mut start = 1;
    loop {
        let page = dir
            .find(&ListQuery {
                filter: None,
                sort: None,
                start_index: start,
                count: 3,
            })
            .await
            .unwrap();
        assert_eq!(page.total, 7);
        if page.resources.is_empty() {
            break;
        }
        seen.extend(page.resources.iter().map(|u| u.id().unwrap().to_owned()));
        start += 3;
    }
    let mut sorted = seen.clone();
    sorted.sort_by_key(|s| s.parse::<u64>().unwrap());
    sorted.dedup();
    assert_eq!(seen, sorted, "every user once, in id order");
    assert_eq!(seen.len(), 7);
}

async fn find_ids(dir: &ChamiloDirectory, attr: &str, value: &str) -> Vec<String> {
    dir.find(&eq(attr, value))
        .await
        .unwrap()
        .resources
        .iter()
        .map(|u| u.id().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn existing_accounts_are_adopted() {
    let (chamilo, dir) = setup(ChamiloMapping::default()).await;
    // A first SCIM user makes the extra fields exist (Backend::prepare does it in production).
    let ann_id = dir.create(ann()).await.unwrap().id().unwrap().to_owned();
    let seeded = chamilo.state().user_by_username("user000003").unwrap().id;

    // The IdP's matching finds the existing login, case-insensitively.
    let found = dir.find(&eq("userName", "USER000003")).await.unwrap();
    assert_eq!(found.total, 1);
    assert_eq!(found.resources[0].id(), Some(seeded.to_string().as_str()));
    assert_eq!(found.resources[0].user_name(), Some("user000003"));

    // A create with that userName is a uniqueness conflict, not a second account.
    let mut dup = ann();
    let m = dup.as_json_mut();
    m.insert("userName".into(), json!("user000003"));
    m.insert("externalId".into(), json!("ext-3"));
    assert!(matches!(
        dir.create(dup.clone()).await.unwrap_err(),
        DirectoryError::Conflict { .. }
    ));

    // The IdP links (PUT): the first write sets the extra fields; nothing else moves.
    let linked = dir.replace(&seeded.to_string(), dup, None).await.unwrap();
    assert_eq!(linked.user_name(), Some("user000003"));
    {
        let state = chamilo.state();
        let u = state.user(seeded).unwrap();
        assert_eq!(u.username, "user000003");
        assert_eq!(
            u.extra.get("scim_user_name").cloned().flatten().as_deref(),
            Some("user000003")
        );
        assert_eq!(
            u.extra
                .get("scim_external_id")
                .cloned()
                .flatten()
                .as_deref(),
            Some("ext-3")
        );
    }
    assert_eq!(
        find_ids(&dir, "externalId", "ext-3").await,
        vec![seeded.to_string()]
    );

    // Precedence: a derived login never answers to itself as a userName.
    let ann_login = chamilo
        .state()
        .user(ann_id.parse().unwrap())
        .unwrap()
        .username
        .clone();
    assert_ne!(ann_login, "Ann.Lee@Example.org");
    assert!(find_ids(&dir, "userName", &ann_login).await.is_empty());
    assert_eq!(
        find_ids(&dir, "userName", "ann.lee@example.org").await,
        vec![ann_id.clone()]
    );

    // Renaming an account made outside SCIM: it gets a handle, then the new login.
    let other = chamilo.state().user_by_username("user000004").unwrap().id;
    let mut renamed = ann();
    let m = renamed.as_json_mut();
    m.insert("userName".into(), json!("dora.new"));
    m.remove("externalId");
    let r = dir
        .replace(&other.to_string(), renamed, None)
        .await
        .unwrap();
    assert_eq!(r.user_name(), Some("dora.new"));
    assert_eq!(chamilo.state().user(other).unwrap().username, "dora.new");
    assert!(find_ids(&dir, "userName", "user000004").await.is_empty());

    // A SCIM delete adopts too, under the tombstone of the login.
    let third = chamilo.state().user_by_username("user000005").unwrap().id;
    dir.delete(&third.to_string()).await.unwrap();
    {
        let state = chamilo.state();
        let u = state.user(third).unwrap();
        assert_eq!(u.active, 0);
        assert_eq!(
            u.extra.get("scim_user_name").cloned().flatten().as_deref(),
            Some("scim-deprovisioned:user000005")
        );
    }
    assert!(find_ids(&dir, "userName", "user000005").await.is_empty());

    // An account made in Chamilo after the index was built is learned by the next listing
    // (rate-limited); until then a create with its login is a conflict, never a duplicate.
    let late = chamilo.seed_users(1)[0];
    let late_login = chamilo.state().user(late).unwrap().username.clone();
    let users_before = chamilo.state().user_count();
    let mut u = ann();
    let m = u.as_json_mut();
    m.insert("userName".into(), json!(late_login));
    m.remove("externalId");
    assert!(matches!(
        dir.create(u).await.unwrap_err(),
        DirectoryError::Conflict { .. }
    ));
    assert_eq!(chamilo.state().user_count(), users_before);
}

#[tokio::test]
async fn reserved_accounts_are_never_returned_or_changed() {
    let (chamilo, dir) = setup(ChamiloMapping::default()).await;
    dir.create(ann()).await.unwrap();
    for login in ["admin", "ANON"] {
        assert!(
            find_ids(&dir, "userName", login).await.is_empty(),
            "{login}"
        );
        let mut u = ann();
        let m = u.as_json_mut();
        m.insert("userName".into(), json!(login));
        m.remove("externalId");
        match dir.create(u).await.unwrap_err() {
            DirectoryError::Conflict { detail } => {
                assert!(detail.contains("may not manage"), "{detail}")
            }
            other => panic!("{other:?}"),
        }
    }
    // Admin is id 1, the anonymous user id 2.
    assert!(dir.get("1").await.unwrap().is_none());
    assert!(dir.get("2").await.unwrap().is_none());
    assert!(matches!(
        dir.delete("2").await.unwrap_err(),
        DirectoryError::Forbidden { .. }
    ));
    assert_eq!(chamilo.state().user(2).unwrap().active, 1);
}

#[tokio::test]
async fn managed_scope_lists_only_scim_accounts() {
    let (_chamilo, dir) = setup(ChamiloMapping {
        list_scope: ListScope::Managed,
        ..ChamiloMapping::default()
    })
    .await;
    let id = dir.create(ann()).await.unwrap().id().unwrap().to_owned();
    let all = dir
        .find(&ListQuery {
            filter: None,
            sort: None,
            start_index: 1,
            count: 100,
        })
        .await
        .unwrap();
    assert_eq!(all.total, 1);
    assert_eq!(all.resources[0].id(), Some(id.as_str()));
    // Lookups still adopt: the scope is about listings only.
    assert_eq!(find_ids(&dir, "userName", "user000007").await.len(), 1);
}

#[tokio::test]
async fn languages_and_roles_come_back_as_sent_and_chamilo_wins_on_status() {
    let (chamilo, dir) = setup(ChamiloMapping::default()).await;
    let mut u = ann();
    let j = u.as_json_mut();
    j.insert("preferredLanguage".into(), json!("fr-CA"));
    j.insert("locale".into(), json!("de_DE"));
    j.insert(
        "roles".into(),
        json!([{"value": "student"}, {"value": "Teacher", "primary": true}]),
    );
    let created = dir.create(u).await.unwrap();
    let id = created.id().unwrap().to_owned();
    let uid: u64 = id.parse().unwrap();
    for (label, got) in [
        ("create", created),
        ("get", dir.get(&id).await.unwrap().unwrap()),
        (
            "listing",
            dir.find(&ListQuery {
                filter: None,
                sort: None,
                start_index: 1,
                count: 1000,
            })
            .await
            .unwrap()
            .resources
            .into_iter()
            .find(|r| r.id() == Some(id.as_str()))
            .unwrap(),
        ),
    ] {
        assert_eq!(got.get_str("preferredLanguage"), Some("fr-CA"), "{label}");
        assert_eq!(got.get_str("locale"), Some("de_DE"), "{label}");
        // Every role as sent; the primary one sets Chamilo's status.
        assert_eq!(
            got.get("roles"),
            Some(&json!([{"value": "student"}, {"value": "Teacher", "primary": true}])),
            "{label}"
        );
    }
    {
        let state = chamilo.state();
        let u = state.user(uid).unwrap();
        assert_eq!(u.language, "french", "preferredLanguage sets the language");
        assert_eq!(u.status, STATUS_TEACHER);
        let kept = KeptAttributes::decode(u.extra["scim_attributes"].as_deref().unwrap());
        assert_eq!(kept.get_str("preferredLanguage"), Some("fr-CA"));
        assert_eq!(kept.get_str("locale"), Some("de_DE"));
    }

    // Another replica reads them from its own index listing.
    let other = directory_on(&chamilo, ChamiloMapping::default()).await;
    let listed = other
        .find(&listing(None))
        .await
        .unwrap()
        .resources
        .into_iter()
        .find(|r| r.id() == Some(id.as_str()))
        .unwrap();
    assert_eq!(listed.get_str("preferredLanguage"), Some("fr-CA"));
    assert_eq!(listed.get_str("locale"), Some("de_DE"));
    assert_eq!(
        listed.get("roles"),
        Some(&json!([{"value": "student"}, {"value": "Teacher", "primary": true}]))
    );

    // An administrator makes the teacher a student in Chamilo's UI: a fresh lookup says so.
    chamilo.state().user_mut(uid).unwrap().status = 5;
    let now = dir.get(&id).await.unwrap().unwrap();
    assert_eq!(
        now.get("roles"),
        Some(&json!([{"value": "student"}, {"value": "student", "primary": true}])),
        "the role that set the status, as Chamilo holds it now"
    );

    // Without preferredLanguage, locale sets the language; without roles the status stays
    // and no role is returned; nothing unreadable is invented.
    let mut next = now.clone();
    let j = next.as_json_mut();
    j.remove("preferredLanguage");
    j.remove("roles");
    j.insert("locale".into(), json!("es"));
    let replaced = dir.replace(&id, next, None).await.unwrap();
    assert!(replaced.get("preferredLanguage").is_none());
    assert!(replaced.get("roles").is_none());
    assert_eq!(replaced.get_str("locale"), Some("es"));
    let again = dir.get(&id).await.unwrap().unwrap();
    assert_eq!(again.get_str("locale"), Some("es"));
    assert!(again.get("roles").is_none());
    let state = chamilo.state();
    let u = state.user(uid).unwrap();
    assert_eq!(u.language, "spanish");
    assert_eq!(u.status, 5, "the status Chamilo gave stays");
}

#[tokio::test]
async fn an_unassigned_active_round_trips_and_a_deactivation_still_shows() {
    let (chamilo, dir) = setup(ChamiloMapping::default()).await;
    let created = dir.create(ann()).await.unwrap();
    let id = created.id().unwrap().to_owned();
    let uid: u64 = id.parse().unwrap();
    chamilo.state().set_active(uid, false);
    // What a PATCH remove of `active` hands the directory: the state without it.
    let mut without = dir.get(&id).await.unwrap().unwrap();
    assert_eq!(without.active(), Some(false));
    without.as_json_mut().remove("active");
    let replaced = dir.replace(&id, without, None).await.unwrap();
    assert_eq!(replaced.active(), None, "unassigned, as the client left it");
    assert_eq!(dir.get(&id).await.unwrap().unwrap().active(), None);
    assert_eq!(
        chamilo.state().user(uid).unwrap().active,
        1,
        "Chamilo's default"
    );
    // Deactivated in Chamilo: returned whatever the client last sent.
    chamilo.state().set_active(uid, false);
    assert_eq!(dir.get(&id).await.unwrap().unwrap().active(), Some(false));
    // Assigned again: returned again.
    let mut on = dir.get(&id).await.unwrap().unwrap();
    on.as_json_mut().insert("active".into(), json!(true));
    assert_eq!(
        dir.replace(&id, on, None).await.unwrap().active(),
        Some(true)
    );
    assert_eq!(dir.get(&id).await.unwrap().unwrap().active(), Some(true));
}

#[tokio::test]
async fn with_the_strict_switch_both_language_tags_must_be_configured() {
    let mapping = ChamiloMapping::default();
    mapping.language_policy.store(std::sync::Arc::new(
        chamilo_scim_proxy::chamilo::mapping::LanguagePolicy {
            refuse_unmapped: true,
            ..Default::default()
        },
    ));
    let (chamilo, dir) = setup(mapping).await;
    let mut u = ann();
    u.as_json_mut()
        .insert("preferredLanguage".into(), json!("en"));
    u.as_json_mut().insert("locale".into(), json!("tlh"));
    chamilo.reset_calls();
    let err = dir.create(u).await.unwrap_err();
    assert!(
        matches!(&err, DirectoryError::InvalidValue { attr, .. } if attr == "locale"),
        "{err}"
    );
    assert_eq!(chamilo.total_calls(), 0, "refused before any call");
}

#[tokio::test]
async fn the_schema_promises_what_chamilo_returns() {
    use chamilo_scim_proxy::scim::schema::ResourceSchema;
    let mapping = ChamiloMapping::default();
    let tags: Vec<String> = mapping.languages.iter().map(|(t, _)| t.clone()).collect();
    let roles: Vec<String> = mapping.role_status.iter().map(|(r, _)| r.clone()).collect();
    let (_chamilo, dir) = setup(mapping).await;
    let doc = ResourceSchema::new(&dir.capabilities()).user_schema_json("http://x/scim/v2");
    let attr = |name: &str| {
        doc["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} not advertised"))
    };
    let subs = |a: &Value| -> Vec<String> {
        a["subAttributes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_owned())
            .collect()
    };
    // Every attribute of the schema is kept (issue 10): the whole of the multi-valued ones.
    let emails = attr("emails");
    assert_eq!(emails["required"], true);
    assert_eq!(subs(&emails), ["value", "display", "type", "primary"]);
    assert_eq!(emails["subAttributes"][0]["required"], true);
    assert_eq!(
        subs(&attr("phoneNumbers")),
        ["value", "display", "type", "primary"]
    );
    for name in [
        "displayName",
        "nickName",
        "title",
        "userType",
        "profileUrl",
        "timezone",
        "addresses",
        "ims",
        "photos",
        "entitlements",
        "x509Certificates",
    ] {
        attr(name);
    }
    assert_eq!(
        subs(&attr("name")),
        [
            "formatted",
            "familyName",
            "givenName",
            "middleName",
            "honorificPrefix",
            "honorificSuffix"
        ]
    );
    let role = attr("roles");
    assert_eq!(subs(&role), ["value", "display", "type", "primary"]);
    assert_eq!(role["subAttributes"][0]["canonicalValues"], json!(roles));
    assert_eq!(attr("preferredLanguage")["canonicalValues"], json!(tags));
    assert_eq!(attr("locale")["canonicalValues"], json!(tags));
}

fn extra(chamilo: &StandinHandle, id: u64, field: &str) -> Option<String> {
    chamilo
        .state()
        .user(id)
        .and_then(|u| u.extra.get(field).cloned().flatten())
}

fn everyone() -> ListQuery {
    ListQuery {
        filter: None,
        sort: None,
        start_index: 1,
        count: 1000,
    }
}

/// RFC 7644 §3.6 under the default policy: after `DELETE` the account stays in Chamilo
/// (deactivated, history kept) but is gone for SCIM — 404, no filter match, not listed — on
/// the replica that deleted it and on one whose index still says active.
#[tokio::test]
async fn a_deleted_account_is_gone_on_every_replica() {
    let (chamilo, a) = setup(ChamiloMapping::default()).await;
    let id = a.create(ann()).await.unwrap().id().unwrap().to_owned();
    let uid: u64 = id.parse().unwrap();
    // B's index is built now, with Ann active.
    let b = directory_on(&chamilo, ChamiloMapping::default()).await;
    assert_eq!(
        find_ids(&b, "userName", "ann.lee@example.org").await,
        vec![id.clone()]
    );
    let listed_before = a.find(&everyone()).await.unwrap().total;

    a.delete(&id).await.unwrap();
    {
        let state = chamilo.state();
        let u = state.user(uid).unwrap();
        assert_eq!(u.active, 0, "deactivated, not deleted");
    }
    assert_eq!(
        extra(&chamilo, uid, "scim_user_name").as_deref(),
        Some("scim-deprovisioned:Ann.Lee@Example.org")
    );
    assert_eq!(
        extra(&chamilo, uid, "scim_external_id").as_deref(),
        Some("scim-deprovisioned:0f1e-ann")
    );

    for (name, dir) in [("A", &a), ("B", &b)] {
        assert!(dir.get(&id).await.unwrap().is_none(), "{name}: GET");
        assert!(
            find_ids(dir, "userName", "ann.lee@example.org")
                .await
                .is_empty(),
            "{name}: userName eq"
        );
        assert!(
            find_ids(dir, "externalId", "0f1e-ann").await.is_empty(),
            "{name}: externalId eq"
        );
        assert!(find_ids(dir, "id", &id).await.is_empty(), "{name}: id eq");
        assert!(
            matches!(
                dir.replace(&id, ann(), None).await,
                Err(DirectoryError::NotFound)
            ),
            "{name}: PUT"
        );
        assert!(
            matches!(dir.delete(&id).await, Err(DirectoryError::NotFound)),
            "{name}: DELETE again"
        );
        // The tombstone itself is not a SCIM value: no filter on it finds the account.
        assert!(
            find_ids(dir, "userName", "scim-deprovisioned:Ann.Lee@Example.org")
                .await
                .is_empty(),
            "{name}: filter on the tombstone"
        );
    }
    assert_eq!(
        chamilo.state().user(uid).unwrap().active,
        0,
        "nothing revived it"
    );
    let listed = a.find(&everyone()).await.unwrap();
    assert!(listed.resources.iter().all(|u| u.id() != Some(id.as_str())));
    assert_eq!(listed.total, listed_before - 1);

    // An administrator reactivating it in Chamilo's UI makes it usable in Chamilo, not
    // visible to SCIM: only a create revives it.
    assert!(chamilo.state().set_active(uid, true));
    assert!(a.get(&id).await.unwrap().is_none());
    assert!(b.get(&id).await.unwrap().is_none());
    assert!(find_ids(&b, "userName", "ann.lee@example.org")
        .await
        .is_empty());
    assert!(find_ids(&a, "externalId", "0f1e-ann").await.is_empty());

    // A tombstone cannot be sent as a value.
    let mut sneaky = ann();
    sneaky.as_json_mut().insert(
        "userName".into(),
        json!("SCIM-deprovisioned:Ann.Lee@Example.org"),
    );
    let calls = chamilo.total_calls();
    assert!(matches!(
        a.create(sneaky).await.unwrap_err(),
        DirectoryError::InvalidValue { attr, .. } if attr == "userName"
    ));
    assert_eq!(chamilo.total_calls(), calls, "refused before any call");

    // Deactivation through PATCH/PUT (not DELETE) stays visible as inactive.
    let bob = user(json!({"userName": "bob", "emails": [{"value": "bob@example.org"}]}));
    let bob_id = a.create(bob).await.unwrap().id().unwrap().to_owned();
    let mut off = a.get(&bob_id).await.unwrap().unwrap();
    off.as_json_mut().insert("active".into(), json!(false));
    a.replace(&bob_id, off, None).await.unwrap();
    assert_eq!(find_ids(&b, "userName", "bob").await, vec![bob_id.clone()]);
    assert_eq!(b.get(&bob_id).await.unwrap().unwrap().active(), Some(false));
}

/// An account made outside SCIM, deleted through replica A: B, whose index still holds it as
/// an unmanaged account answering to its login, does not return it either.
#[tokio::test]
async fn an_adopted_account_deleted_elsewhere_is_gone_too() {
    let (chamilo, a) = setup(ChamiloMapping::default()).await;
    let b = directory_on(&chamilo, ChamiloMapping::default()).await;
    let uid = chamilo.state().user_by_username("user000007").unwrap().id;
    let id = uid.to_string();
    assert_eq!(
        find_ids(&b, "userName", "user000007").await,
        vec![id.clone()]
    );
    assert!(a.get(&id).await.unwrap().is_some());

    a.delete(&id).await.unwrap();
    assert!(b.get(&id).await.unwrap().is_none());
    assert!(find_ids(&b, "userName", "user000007").await.is_empty());
    assert!(find_ids(&a, "userName", "user000007").await.is_empty());

    // B revives it with a create of the same userName: same id, same login.
    let users = chamilo.state().user_count();
    let back = b
        .create(user(
            json!({"userName": "user000007", "name": {"givenName": "Seven"},
            "emails": [{"value": "seven@example.org"}]}),
        ))
        .await
        .unwrap();
    assert_eq!(back.id(), Some(id.as_str()));
    assert_eq!(chamilo.state().user_count(), users);
    let u = chamilo.state().user(uid).unwrap().clone();
    assert_eq!((u.active, u.username.as_str()), (1, "user000007"));
    assert_eq!(u.firstname.as_deref(), Some("Seven"));
    assert_eq!(
        extra(&chamilo, uid, "scim_user_name").as_deref(),
        Some("user000007")
    );
}

/// A later create with the same userName (or externalId) brings the deleted account back:
/// same Chamilo id, its course history, the new attributes and password; on another replica
/// too, and the replica that deleted it sees it again.
#[tokio::test]
async fn a_create_revives_the_deleted_account() {
    let (chamilo, a) = setup(ChamiloMapping::default()).await;
    let mut first = ann();
    first
        .as_json_mut()
        .insert("phoneNumbers".into(), json!([{"value": "555-0100"}]));
    assert_eq!(a.find(&eq("userName", "x")).await.unwrap().total, 0);
    chamilo.reset_calls();
    let id = a.create(first).await.unwrap().id().unwrap().to_owned();
    // A create looks up who holds the userName (one fresh call) and saves the account; the
    // externalId and tombstones are checked against the index, which knows none of them.
    assert_eq!(chamilo.calls("users_profiles_by_extra_field"), 1);
    assert_eq!(chamilo.calls("save_user"), 1);
    assert_eq!(chamilo.total_calls(), 2, "{:?}", chamilo.all_calls());
    let uid: u64 = id.parse().unwrap();
    let course = {
        let mut state = chamilo.state();
        let course = state.insert_course("C1", "Course").unwrap();
        state.course_mut(course).unwrap().users.push((uid, 5));
        course
    };
    let b = directory_on(&chamilo, ChamiloMapping::default()).await;
    assert_eq!(
        find_ids(&b, "userName", "ann.lee@example.org").await,
        vec![id.clone()]
    );
    a.delete(&id).await.unwrap();

    let users = chamilo.state().user_count();
    let mut again = user(json!({
        "userName": "ann.lee@example.org",
        "externalId": "new-object-id",
        "name": {"givenName": "Ann", "familyName": "Lee-Smith"},
        "emails": [{"value": "ann.smith@example.org"}],
        "password": "Back-again-2026!"
    }));
    again
        .as_json_mut()
        .insert("preferredLanguage".into(), json!("fr"));
    chamilo.reset_calls();
    let back = b.create(again).await.unwrap();
    // B's index still holds the account as live: the userName lookup takes two calls (active,
    // then any) and finds nothing, which makes the tombstone lookup worth its call: it finds
    // the account to revive. Then the password through SOAP (with the activation around it)
    // and the one final update.
    assert_eq!(chamilo.calls("users_profiles_by_extra_field"), 3);
    assert_eq!(chamilo.calls("save_user"), 0);
    assert_eq!(chamilo.calls("WSEditUserCredentials"), 1);
    assert_eq!(chamilo.calls("update_user_from_username"), 3);
    assert_eq!(chamilo.total_calls(), 7, "{:?}", chamilo.all_calls());
    assert_eq!(back.id(), Some(id.as_str()), "the old Chamilo id");
    assert_eq!(back.user_name(), Some("ann.lee@example.org"));
    assert_eq!(back.get_str("name.familyName"), Some("Lee-Smith"));
    assert_eq!(back.active(), Some(true));
    assert!(
        back.get("phoneNumbers").is_none(),
        "the create's state alone"
    );
    assert_eq!(chamilo.state().user_count(), users, "no second account");
    {
        let state = chamilo.state();
        let u = state.user(uid).unwrap();
        assert_eq!(u.active, 1);
        assert_eq!(u.username, "Ann.Lee_Example.org", "the login is kept");
        assert_eq!(u.lastname, "Lee-Smith");
        assert_eq!(u.email, "ann.smith@example.org");
        assert_eq!(u.password, "Back-again-2026!");
        assert_eq!(u.phone, "");
        assert!(state.course(course).unwrap().users.contains(&(uid, 5)));
    }
    assert_eq!(
        extra(&chamilo, uid, "scim_external_id").as_deref(),
        Some("new-object-id")
    );
    let kept = KeptAttributes::decode(&extra(&chamilo, uid, "scim_attributes").unwrap());
    assert_eq!(kept.get_str("preferredLanguage"), Some("fr"));
    assert!(kept.last_modified.is_some());

    // A, whose index holds the account as deleted, finds it again by every route.
    // (Learned from fresh lookups until its next listing, so with the spelling it was
    // found by: Chamilo cannot return the stored one.)
    let got = a.get(&id).await.unwrap().unwrap();
    assert!(got
        .user_name()
        .is_some_and(|u| u.eq_ignore_ascii_case("ann.lee@example.org")));
    assert_eq!(
        find_ids(&a, "userName", "ANN.LEE@example.org").await,
        vec![id.clone()]
    );
    assert_eq!(
        find_ids(&a, "externalId", "new-object-id").await,
        vec![id.clone()]
    );
    assert!(matches!(
        a.create(ann()).await.unwrap_err(),
        DirectoryError::Conflict { .. }
    ));

    // Deleted again and revived by externalId under another userName: renamed, same id.
    b.delete(&id).await.unwrap();
    let renamed = user(json!({
        "userName": "ann.smith@example.org",
        "externalId": "new-object-id",
        "emails": [{"value": "ann.smith@example.org"}],
        "active": false
    }));
    let back = a.create(renamed).await.unwrap();
    assert_eq!(back.id(), Some(id.as_str()));
    assert_eq!(back.active(), Some(false), "revived as sent: inactive");
    let u = chamilo.state().user(uid).unwrap().clone();
    assert_eq!(
        (u.username.as_str(), u.active),
        ("ann.smith_example.org", 0)
    );
    assert_eq!(
        find_ids(&b, "userName", "ann.smith@example.org").await,
        vec![id]
    );
}

/// Two accounts are never merged by a revival: a conflict names them, and nothing changes.
#[tokio::test]
async fn a_revival_that_would_merge_two_accounts_is_a_conflict() {
    let (chamilo, dir) = setup(ChamiloMapping::default()).await;
    let mk = |name: &str, ext: &str| {
        user(json!({"userName": name, "externalId": ext,
            "emails": [{"value": format!("{name}@example.org")}]}))
    };
    let ann_id = dir
        .create(mk("ann", "E-ann"))
        .await
        .unwrap()
        .id()
        .unwrap()
        .to_owned();
    let bob_id = dir
        .create(mk("bob", "E-bob"))
        .await
        .unwrap()
        .id()
        .unwrap()
        .to_owned();
    let carl_id = dir
        .create(mk("carl", "E-carl"))
        .await
        .unwrap()
        .id()
        .unwrap()
        .to_owned();
    dir.delete(&ann_id).await.unwrap();
    dir.delete(&carl_id).await.unwrap();
    let users = chamilo.state().user_count();
    let snapshot = |id: &str| chamilo.state().user(id.parse().unwrap()).unwrap().clone();
    let (ann_before, carl_before) = (snapshot(&ann_id), snapshot(&carl_id));

    // Ann's userName is free to revive, but the externalId is a live account's (Bob).
    let err = dir.create(mk("ann", "E-bob")).await.unwrap_err();
    match &err {
        DirectoryError::Conflict { detail } => {
            assert!(
                detail.contains("externalId") && detail.contains(&ann_id),
                "{detail}"
            )
        }
        other => panic!("{other:?}"),
    }
    // Ann's userName and Carl's externalId: two deleted accounts.
    let err = dir.create(mk("ann", "E-carl")).await.unwrap_err();
    match &err {
        DirectoryError::Conflict { detail } => {
            assert!(
                detail.contains(&ann_id) && detail.contains(&carl_id),
                "{detail}"
            )
        }
        other => panic!("{other:?}"),
    }
    // The live userName wins over a deleted account's externalId.
    assert!(matches!(
        dir.create(mk("bob", "E-ann")).await.unwrap_err(),
        DirectoryError::Conflict { .. }
    ));
    assert_eq!(chamilo.state().user_count(), users);
    assert_eq!(snapshot(&ann_id), ann_before);
    assert_eq!(snapshot(&carl_id), carl_before);
    assert!(dir.get(&bob_id).await.unwrap().is_some());

    // Unambiguous: Ann comes back.
    let back = dir.create(mk("ann", "E-ann")).await.unwrap();
    assert_eq!(back.id(), Some(ann_id.as_str()));
}

/// `replace`/`modify` with an expected version: when the write reads the account again (no
/// confirmation of the engine's read to reuse), a change since that read is
/// `PreconditionFailed` and nothing is written; the same version is written.
#[tokio::test]
async fn a_write_that_reads_again_checks_the_expected_version() {
    let (chamilo, dir) = setup(ChamiloMapping::default()).await;
    let created = dir.create(ann()).await.unwrap();
    let id = created.id().unwrap().to_owned();
    let uid: u64 = id.parse().unwrap();
    let v1 = created.version().unwrap().to_owned();
    // Changed in Chamilo since the version was read.
    chamilo
        .state()
        .edit_user(uid, |u| u.phone = "555-0123".into());
    let mut next = created.clone();
    next.set("title", json!("Dr"));
    let err = dir.replace(&id, next.clone(), Some(&v1)).await.unwrap_err();
    assert_eq!(err, DirectoryError::PreconditionFailed);
    assert!(dir.get(&id).await.unwrap().unwrap().get("title").is_none());
    // With the version of a fresh read (a lookup by id, which leaves no confirmation for
    // the write to reuse: it reads again and compares), written.
    let page = dir.find(&eq("id", &id)).await.unwrap();
    let v2 = page.resources[0].version().unwrap().to_owned();
    assert_ne!(v2, v1);
    let stored = dir.replace(&id, next, Some(&v2)).await.unwrap();
    assert_eq!(stored.get_str("title"), Some("Dr"));
}

/// A filter the index cannot answer by key scans every account, which costs CPU in
/// proportion to the accounts (seconds at 100k with kept attributes): the other tasks of the
/// worker thread running it (other SCIM requests, Chamilo pages passed through) must not wait
/// for it. With one worker, a task spawned while the scan runs must run before it ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_full_scan_does_not_hold_up_its_worker() {
    let chamilo = Standin::start(StandinConfig::default()).await.unwrap();
    chamilo_bench_support::seed_managed_kept(&chamilo, 8_000);
    let dir = Arc::new(replica(&chamilo, ChamiloMapping::default()).await.directory);
    let scan = {
        let dir = dir.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let page = dir.find(&eq("title", "no such title")).await.unwrap();
            (page.total, started.elapsed(), Instant::now())
        })
    };
    // The scan is under way on the only worker (this test's own body runs on another thread).
    std::thread::sleep(Duration::from_millis(30));
    let other = tokio::spawn(async { Instant::now() }).await.unwrap();
    let (total, took, scan_ended) = scan.await.unwrap();
    assert_eq!(total, 0);
    assert!(
        took > Duration::from_millis(100),
        "the scan must outlast the wait for this test to mean anything: {took:?}"
    );
    assert!(
        other < scan_ended,
        "a task spawned 30 ms into a {took:?} scan ran only after it"
    );
}

/// A search the index answers by scanning decides on an account converted without its kept
/// document when the filter names no attribute the document holds. Whatever the filter, the
/// answer must be the one the whole accounts give: every filter here is checked against the
/// same filter applied to every account read whole.
#[tokio::test]
async fn scans_answer_as_the_whole_accounts_do() {
    use chamilo_scim_proxy::scim::filter::{parse_filter, FilterLimits};

    let chamilo = Standin::start(StandinConfig::default()).await.unwrap();
    let r = replica(&chamilo, ChamiloMapping::default()).await;
    let dir = &r.directory;
    let enterprise = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    let people = [
        // Entra ID's default mapping: the document holds name (formatted), emails, title…
        json!({"userName": "ann.lee@example.org", "externalId": "e-ann", "displayName": "Ann Lee",
            "title": "Dean", "name": {"givenName": "Ann", "familyName": "Lee", "formatted": "Ann Lee"},
            "emails": [{"value": "ann.lee@example.org", "type": "work", "primary": true},
                {"value": "ann@home.example", "type": "home"}],
            "addresses": [{"type": "work", "locality": "Montréal", "formatted": "1 Rue\nMontréal"}],
            enterprise: {"department": "Chemistry", "manager": {"value": "m-1"}}}),
        // Only what Chamilo has columns for: no document.
        json!({"userName": "bob.lee@example.org", "name": {"givenName": "Bob", "familyName": "Lee"},
            "emails": [{"value": "bob.lee@example.org", "type": "work"}]}),
        json!({"userName": "cy.ng@example.org", "externalId": "e-cy", "nickName": "Cy",
            "name": {"givenName": "Cy", "familyName": "Ng"},
            "emails": [{"value": "cy.ng@example.org", "type": "work"}], "title": "Lecturer"}),
        json!({"userName": "dee.override@example.org", "name": {"givenName": "Dee", "familyName": "Column"},
            "emails": [{"value": "dee@example.org", "type": "work"}]}),
        json!({"userName": "eve.legacy@example.org", "name": {"givenName": "Eve", "familyName": "Old"},
            "emails": [{"value": "eve@example.org", "type": "work"}]}),
    ];
    let mut ids = Vec::new();
    for p in people {
        ids.push(dir.create(user(p)).await.unwrap().id().unwrap().to_owned());
    }
    let created = ids.len();
    // Documents edited in Chamilo by hand: a familyName in the document (which wins over
    // the column), one in another case, and the encoding from before issue 10.
    let hand_edited =
        kept_field(json!({"user": {"name": {"familyName": "Override", "formatted": "D O"}}}));
    let other_case = kept_field(json!({"user": {"name": {"FamilyName": "Upper"}}}));
    let legacy = "preferredLanguage=fr-CA;roles=teacher;active=unassigned";
    {
        let mut state = chamilo.state();
        assert!(state.set_extra(
            ids[1].parse().unwrap(),
            "scim_attributes",
            Some(&other_case)
        ));
        assert!(state.set_extra(
            ids[3].parse().unwrap(),
            "scim_attributes",
            Some(&hand_edited)
        ));
        assert!(state.set_extra(ids[4].parse().unwrap(), "scim_attributes", Some(legacy)));
    }
    r.lookup.rebuild().await.unwrap();

    let everyone = dir.find(&listing(None)).await.unwrap().resources;
    assert!(everyone.len() >= created, "{}", everyone.len());
    let limits = FilterLimits {
        max_length: 4096,
        ..FilterLimits::default()
    };
    let filters = [
        r#"name.familyName eq "Lee""#,
        r#"name.familyName eq "Override""#,
        r#"name.familyName eq "Column""#,
        r#"name.familyName eq "Upper" or name.familyName eq "Lee""#,
        r#"name.givenName sw "a" or name.givenName eq "Eve""#,
        r#"not (name.familyName eq "Lee")"#,
        r#"userName co "example.org" and name.familyName ne "Ng""#,
        r#"externalId pr"#,
        r#"displayName eq "Ann Lee""#,
        r#"name.familyName eq "Lee" or title eq "Lecturer""#,
        r#"title pr"#,
        r#"nickName eq "Cy""#,
        r#"name pr and name.formatted pr"#,
        r#"emails.value co "home""#,
        r#"emails[type eq "work" and value co "lee"]"#,
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department eq "Chemistry""#,
        r#"department eq "Chemistry""#,
        r#"preferredLanguage eq "fr-CA""#,
        r#"roles pr"#,
        r#"active eq true"#,
        r#"meta.created pr"#,
        r#"id pr and not (userName eq "nobody@example.org")"#,
    ];
    for text in filters {
        let query = listing(Some(parse_filter(text, &limits).unwrap()));
        let got = dir.find(&query).await.unwrap();
        let want = query.select(everyone.clone());
        let ids_of = |users: &[User]| {
            let mut v: Vec<String> = users
                .iter()
                .filter_map(|u| u.id().map(str::to_owned))
                .collect();
            v.sort();
            v
        };
        assert_eq!(got.total, want.total, "{text}");
        assert_eq!(ids_of(&got.resources), ids_of(&want.resources), "{text}");
        assert_eq!(
            got.resources, want.resources,
            "{text}: the users returned are whole"
        );
    }
    // The hand-edited familyName is found although its column says otherwise.
    let q = parse_filter(r#"name.familyName eq "Override""#, &limits).unwrap();
    let found = dir.find(&listing(Some(q))).await.unwrap();
    assert_eq!(found.total, 1);
}

/// The first 1,000 users, filtered or not.
fn listing(filter: Option<Filter>) -> ListQuery {
    ListQuery {
        filter,
        sort: None,
        start_index: 1,
        count: 1000,
    }
}

/// A `scim_attributes` value holding `doc` in the current encoding.
fn kept_field(doc: Value) -> String {
    chamilo_scim_proxy::chamilo::kept::json64_encode(doc.to_string().as_bytes())
}
