//! The write protocol against a stand-in that behaves like a real Chamilo 1.11 for writes
//! (issue 9): the same-second rule, extra fields saved one by one before the columns, unknown
//! fields, and every multi-call write with each of its calls failing in turn.
//!
//! The fault matrix checks, for every call of every multi-call write and every kind of
//! failure, that an answer of success means the whole change is in Chamilo, a 4xx means none
//! of it is, and a 5xx is one an identity provider can retry: the same request sent again
//! (without faults) succeeds and leaves the whole change in Chamilo.

mod chamilo_support;

use std::sync::Arc;
use std::time::Duration;

use chamilo_scim_proxy::chamilo::directory::ChamiloDirectory;
use chamilo_scim_proxy::chamilo::lookup::MIN_REBUILD_INTERVAL as MIN_REBUILD;
use chamilo_scim_proxy::chamilo::mapping::ChamiloMapping;
use chamilo_scim_proxy::chamilo::ChamiloClient;
use chamilo_scim_proxy::directory::{Directory, DirectoryError, User};
use chamilo_scim_proxy::standin::{Clock, Fault, FaultKind, Standin, StandinConfig, StandinHandle};
use chamilo_support::{admin_settings, replica_on};
use serde_json::{json, Value};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn user(v: Value) -> User {
    match v {
        Value::Object(m) => User::from_json(m),
        _ => unreachable!(),
    }
}

/// A stand-in and a replica whose client gives up on a call after 400 ms (so that a held
/// answer is a timeout quickly).
async fn stack_with(clock: Clock) -> (StandinHandle, ChamiloDirectory) {
    let chamilo = Standin::start(StandinConfig {
        clock,
        ..StandinConfig::default()
    })
    .await
    .unwrap();
    let mut settings = admin_settings(&chamilo);
    settings.request_timeout = Duration::from_millis(400);
    let client = Arc::new(ChamiloClient::new(settings).unwrap());
    let r = replica_on(&chamilo, ChamiloMapping::default(), MIN_REBUILD, client).await;
    (chamilo, r.directory)
}

async fn stack() -> (StandinHandle, ChamiloDirectory) {
    stack_with(Clock::Real).await
}

/// What the stand-in holds for one account, as the assertions compare it.
#[derive(Debug, Clone, PartialEq)]
struct Snap {
    login: String,
    firstname: Option<String>,
    lastname: String,
    active: i64,
    official_code: String,
    password: String,
    user_name: Option<String>,
    external_id: Option<String>,
}

fn snap(chamilo: &StandinHandle, id: u64) -> Option<Snap> {
    let state = chamilo.state();
    let u = state.user(id)?;
    let extra = |f: &str| u.extra.get(f).cloned().flatten();
    Some(Snap {
        login: u.username.clone(),
        firstname: u.firstname.clone(),
        lastname: u.lastname.clone(),
        active: u.active,
        official_code: u.official_code.clone(),
        password: u.password.clone(),
        user_name: extra("scim_user_name"),
        external_id: extra("scim_external_id"),
    })
}

/// Accounts whose userName field is `user_name`.
fn ids_with_user_name(chamilo: &StandinHandle, user_name: &str) -> Vec<u64> {
    chamilo
        .state()
        .users()
        .filter(|u| u.extra.get("scim_user_name").cloned().flatten().as_deref() == Some(user_name))
        .map(|u| u.id)
        .collect()
}

fn ann(active: bool) -> User {
    user(json!({
        "userName": "ann.lee@example.org",
        "externalId": "ext-ann",
        "name": {"givenName": "Ann", "familyName": "Lee"},
        "emails": [{"value": "ann.lee@example.org", "type": "work"}],
        "active": active
    }))
}

fn is_client_error(e: &DirectoryError) -> bool {
    !matches!(
        e,
        DirectoryError::Unavailable { .. }
            | DirectoryError::Timeout
            | DirectoryError::Backend { .. }
    )
}

/// The kinds of failure each call is made to suffer in turn.
fn kinds() -> Vec<FaultKind> {
    vec![
        FaultKind::Refuse {
            message: "injected refusal".into(),
        },
        FaultKind::Fatal,
        FaultKind::HtmlPage,
        FaultKind::Drop { applied: false },
        FaultKind::Drop { applied: true },
        FaultKind::Timeout { applied: true },
    ]
}

/// One multi-call write under the fault matrix.
struct Case<P, O, N> {
    name: &'static str,
    /// Makes the state the write starts from; returns the account id (0 when none).
    prepare: P,
    /// The SCIM write, as the engine makes it (PATCH reads first, then modifies).
    op: O,
    /// Whether the account (found by userName) holds the whole change.
    is_new: N,
}

/// Runs `case` without faults (counting its calls), then once per call and failure kind.
async fn matrix<P, O, N>(case: Case<P, O, N>)
where
    P: AsyncFn(&ChamiloDirectory, &StandinHandle) -> u64,
    O: AsyncFn(&ChamiloDirectory, u64) -> Result<User, DirectoryError>,
    N: Fn(&StandinHandle) -> bool,
{
    let (chamilo, dir) = stack().await;
    let id = (case.prepare)(&dir, &chamilo).await;
    chamilo.reset_calls();
    (case.op)(&dir, id)
        .await
        .unwrap_or_else(|e| panic!("{}: without faults: {e:?}", case.name));
    let calls = chamilo.total_calls();
    assert!((case.is_new)(&chamilo), "{}: without faults", case.name);
    let mut outcomes = Vec::new();
    for k in 1..=calls {
        for kind in kinds() {
            let (chamilo, dir) = stack().await;
            let id = (case.prepare)(&dir, &chamilo).await;
            let before = snap(&chamilo, id);
            chamilo.reset_calls();
            chamilo.inject_fault(Fault::nth_call(k, kind.clone()));
            let label = format!("{} / call {k} of {calls} / {kind:?}", case.name);
            let answer = (case.op)(&dir, id).await;
            chamilo.clear_faults();
            match &answer {
                Ok(_) => assert!(
                    (case.is_new)(&chamilo),
                    "{label}: success, but not all applied"
                ),
                Err(e) if is_client_error(e) => {
                    assert_eq!(snap(&chamilo, id), before, "{label}: {e:?}, but changed")
                }
                Err(e) => {
                    // Retryable: what an identity provider does next.
                    let again = (case.op)(&dir, id).await;
                    assert!(
                        again.is_ok() && (case.is_new)(&chamilo),
                        "{label}: {e:?}, then the retry gave {again:?} (state {:?})",
                        snap(&chamilo, id)
                    );
                }
            }
            outcomes.push(match answer {
                Ok(_) => "ok",
                Err(e) if is_client_error(&e) => "4xx",
                Err(_) => "5xx, retried",
            });
        }
    }
    let count = |o: &str| outcomes.iter().filter(|x| **x == o).count();
    println!(
        "{}: {calls} calls x {} kinds: {} ok (repaired or unaffected), {} refused (nothing applied), {} retryable (retry completed it)",
        case.name,
        kinds().len(),
        count("ok"),
        count("4xx"),
        count("5xx, retried")
    );
    assert!(calls >= 2, "{}: a multi-call write", case.name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_matrix_create_inactive_with_official_code() {
    matrix(Case {
        name: "create (inactive, employeeNumber)",
        prepare: async |_: &ChamiloDirectory, _: &StandinHandle| 0,
        op: async |dir: &ChamiloDirectory, _| {
            let mut u = ann(false);
            u.as_json_mut()
                .insert(ENTERPRISE.into(), json!({"employeeNumber": "E-7"}));
            dir.create(u).await
        },
        is_new: |chamilo: &StandinHandle| {
            let ids = ids_with_user_name(chamilo, "ann.lee@example.org");
            ids.len() == 1
                && snap(chamilo, ids[0]).is_some_and(|s| s.active == 0 && s.official_code == "E-7")
        },
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_matrix_patch_deactivation_with_other_changes() {
    matrix(Case {
        name: "PATCH (active false, givenName, externalId)",
        prepare: async |dir: &ChamiloDirectory, _: &StandinHandle| {
            dir.create(ann(true))
                .await
                .unwrap()
                .id()
                .unwrap()
                .parse()
                .unwrap()
        },
        op: async |dir: &ChamiloDirectory, id: u64| {
            let id = id.to_string();
            let base = dir.get(&id).await?.ok_or(DirectoryError::NotFound)?;
            let mut new = base.clone();
            new.as_json_mut().insert("active".into(), json!(false));
            new.as_json_mut()
                .insert("externalId".into(), json!("ext-ann-2"));
            new.set("name.givenName", json!("Annie"));
            dir.modify(&id, &base, new, None).await
        },
        is_new: |chamilo: &StandinHandle| {
            let ids = ids_with_user_name(chamilo, "ann.lee@example.org");
            ids.len() == 1
                && snap(chamilo, ids[0]).is_some_and(|s| {
                    s.active == 0
                        && s.firstname.as_deref() == Some("Annie")
                        && s.external_id.as_deref() == Some("ext-ann-2")
                })
        },
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_matrix_soft_delete() {
    matrix(Case {
        name: "DELETE (deactivate, tombstones)",
        prepare: async |dir: &ChamiloDirectory, _: &StandinHandle| {
            dir.create(ann(true))
                .await
                .unwrap()
                .id()
                .unwrap()
                .parse()
                .unwrap()
        },
        op: async |dir: &ChamiloDirectory, id: u64| {
            dir.delete(&id.to_string()).await.map(|()| User::default())
        },
        is_new: |chamilo: &StandinHandle| {
            let ids = ids_with_user_name(chamilo, "scim-deprovisioned:ann.lee@example.org");
            ids.len() == 1 && snap(chamilo, ids[0]).is_some_and(|s| s.active == 0)
        },
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_matrix_rename_and_password_of_an_inactive_account() {
    matrix(Case {
        name: "PUT (inactive: new userName and password)",
        prepare: async |dir: &ChamiloDirectory, _: &StandinHandle| {
            dir.create(ann(false))
                .await
                .unwrap()
                .id()
                .unwrap()
                .parse()
                .unwrap()
        },
        op: async |dir: &ChamiloDirectory, id: u64| {
            let mut u = ann(false);
            u.as_json_mut()
                .insert("userName".into(), json!("ann.smith@example.org"));
            u.set("password", json!("New-pass-2026!"));
            dir.replace(&id.to_string(), u, None).await
        },
        is_new: |chamilo: &StandinHandle| {
            let ids = ids_with_user_name(chamilo, "ann.smith@example.org");
            ids.len() == 1
                && snap(chamilo, ids[0]).is_some_and(|s| {
                    s.active == 0
                        && s.login == "ann.smith_example.org"
                        && s.password == "New-pass-2026!"
                })
        },
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_matrix_revival_with_a_password() {
    matrix(Case {
        name: "create reviving a deleted account (with password)",
        prepare: async |dir: &ChamiloDirectory, _: &StandinHandle| {
            let id: u64 = dir
                .create(ann(true))
                .await
                .unwrap()
                .id()
                .unwrap()
                .parse()
                .unwrap();
            dir.delete(&id.to_string()).await.unwrap();
            id
        },
        op: async |dir: &ChamiloDirectory, _| {
            let mut u = ann(true);
            u.set("password", json!("Back-again-2026!"));
            dir.create(u).await
        },
        is_new: |chamilo: &StandinHandle| {
            let ids = ids_with_user_name(chamilo, "ann.lee@example.org");
            ids.len() == 1
                && chamilo.state().user_count() == 3
                && snap(chamilo, ids[0])
                    .is_some_and(|s| s.active == 1 && s.password == "Back-again-2026!")
        },
    })
    .await;
}

/// Transcript block 1: an extra field written with the value it holds, in the second it was
/// written, is refused. An IdP's PATCH right after its POST changes one column: the proxy
/// sends that column and the attributes field with its new `meta.lastModified` (a value it
/// never held), so nothing is refused, whatever the clock. The deactivation goes first, on
/// its own, as always when an extra field comes with it.
#[tokio::test]
async fn a_patch_right_after_the_create_sends_only_what_changed() {
    let (chamilo, dir) = stack_with(Clock::manual(1_796_234_755)).await;
    let created = dir.create(ann(true)).await.unwrap();
    let id = created.id().unwrap().to_owned();
    chamilo.reset_calls();
    let base = dir.get(&id).await.unwrap().unwrap();
    let mut new = base.clone();
    new.as_json_mut().insert("active".into(), json!(false));
    let stored = dir.modify(&id, &base, new, None).await.unwrap();
    assert_eq!(stored.active(), Some(false));
    assert_eq!(chamilo.calls("update_user_from_username"), 2);
    assert_eq!(chamilo.total_calls(), 3, "{:?}", chamilo.all_calls());
    assert_ne!(
        stored.get_str("meta.lastModified"),
        created.get_str("meta.lastModified")
    );
    let s = snap(&chamilo, id.parse().unwrap()).unwrap();
    assert_eq!((s.active, s.external_id.as_deref()), (0, Some("ext-ann")));
}

/// Transcript blocks 1 and 2 through a stale index: replica B still believes the old
/// externalId when the identity provider sends (through B) the value replica A wrote in this
/// same second. B sends it, Chamilo refuses it as unchanged, and B reads it back and counts
/// it as done: the name change in the same call is then sent again and applied. Success, with
/// everything applied.
#[tokio::test]
async fn an_extra_field_refused_as_unchanged_is_read_back_and_counted_done() {
    let (chamilo, a) = stack_with(Clock::manual(1_796_234_757)).await;
    // B's client keeps the default timeout: nothing is held here, and a call that a loaded
    // machine answers in more than 400 ms would be retried and counted (CI saw 3 updates).
    let b = replica_on(
        &chamilo,
        ChamiloMapping::default(),
        Duration::ZERO,
        chamilo_support::admin_client(&chamilo),
    )
    .await
    .directory;
    let id = a.create(ann(true)).await.unwrap().id().unwrap().to_owned();
    let on_b = chamilo_support::settled(|| b.get(&id))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(on_b.external_id(), Some("ext-ann"));
    // A changes the externalId; B's index does not know.
    let base = a.get(&id).await.unwrap().unwrap();
    let mut new = base.clone();
    new.as_json_mut()
        .insert("externalId".into(), json!("EXT-2"));
    a.modify(&id, &base, new, None).await.unwrap();
    // Through B, a PUT with that externalId and a new first name, in the same second.
    chamilo.reset_calls();
    let mut put = ann(true);
    put.as_json_mut()
        .insert("externalId".into(), json!("EXT-2"));
    put.set("name.givenName", json!("Anne"));
    let stored = b.replace(&id, put, None).await.unwrap();
    assert_eq!(stored.external_id(), Some("EXT-2"));
    let s = snap(&chamilo, id.parse().unwrap()).unwrap();
    assert_eq!(
        s.firstname.as_deref(),
        Some("Anne"),
        "the column after it too"
    );
    assert_eq!(s.external_id.as_deref(), Some("EXT-2"));
    assert_eq!(
        chamilo.calls("update_user_from_username"),
        2,
        "refused once, then the rest sent again: {:?}",
        chamilo.all_calls()
    );
}

/// Transcript block 5: an extra field that does not exist is refused every time. The write
/// answers 503 (the operator must restore the field), and none of its columns is applied.
#[tokio::test]
async fn a_missing_extra_field_is_reported_and_changes_nothing() {
    let (chamilo, dir) = stack().await;
    let id = dir
        .create(ann(true))
        .await
        .unwrap()
        .id()
        .unwrap()
        .to_owned();
    chamilo.state().remove_extra_field("scim_external_id");
    let base = dir.get(&id).await.unwrap().unwrap();
    let before = snap(&chamilo, id.parse().unwrap());
    let mut new = base.clone();
    new.as_json_mut()
        .insert("externalId".into(), json!("ext-2"));
    new.set("name.givenName", json!("Anne"));
    let err = dir.modify(&id, &base, new, None).await.unwrap_err();
    assert!(
        matches!(
            err,
            DirectoryError::Unavailable {
                retry_after: Some(_)
            }
        ),
        "{err:?}"
    );
    assert_eq!(snap(&chamilo, id.parse().unwrap()), before);
}

/// Two replicas (or an identity provider's retry while the first POST still runs) creating
/// the same userName at once end with one account; the loser answers 409.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_racing_one_create_make_one_account() {
    let (chamilo, a) = stack().await;
    let b = replica_on(
        &chamilo,
        ChamiloMapping::default(),
        MIN_REBUILD,
        chamilo_support::admin_client(&chamilo),
    )
    .await
    .directory;
    for round in 0..12 {
        let name = format!("racer{round}@example.org");
        let body = || {
            user(json!({"userName": name, "emails": [{"value": name}],
                "name": {"givenName": "R", "familyName": format!("{round}")}}))
        };
        let (x, y) = tokio::join!(a.create(body()), b.create(body()));
        let ids = ids_with_user_name(&chamilo, &name);
        assert_eq!(ids.len(), 1, "round {round}: {x:?} / {y:?}");
        let oks: Vec<String> = [&x, &y]
            .iter()
            .filter_map(|r| r.as_ref().ok().and_then(|u| u.id().map(str::to_owned)))
            .collect();
        assert!(!oks.is_empty(), "round {round}: {x:?} / {y:?}");
        assert!(
            oks.iter().all(|i| *i == ids[0].to_string()),
            "round {round}"
        );
        for r in [&x, &y] {
            if let Err(e) = r {
                assert!(
                    matches!(e, DirectoryError::Conflict { .. }),
                    "round {round}: {e:?}"
                );
            }
        }
    }
}

/// The Okta sequence as Okta sends it, with no pause between calls and the real clock:
/// existence check, create, profile PUT of the same body, PUT with a change, deactivation by
/// PUT, reactivation. No call is refused by the same-second rule.
#[tokio::test]
async fn okta_sequence_without_delays() {
    let (chamilo, dir) = stack().await;
    for n in 0..5 {
        let name = format!("okta{n}@example.org");
        let body = |given: &str, active: bool| {
            user(json!({"userName": name, "externalId": format!("00u{n}"),
                "name": {"givenName": given, "familyName": "Okta"},
                "emails": [{"value": name, "primary": true}],
                "locale": "en-US", "active": active}))
        };
        let id = dir
            .create(body("Olga", true))
            .await
            .unwrap()
            .id()
            .unwrap()
            .to_owned();
        for (given, active) in [
            ("Olga", true),
            ("Olivia", true),
            ("Olga", false),
            ("Olga", true),
        ] {
            let stored = dir.replace(&id, body(given, active), None).await.unwrap();
            assert_eq!(stored.active(), Some(active));
            let s = snap(&chamilo, id.parse().unwrap()).unwrap();
            assert_eq!(
                (s.firstname.as_deref(), s.active),
                (Some(given), i64::from(active))
            );
        }
    }
}
