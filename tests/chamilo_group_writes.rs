//! The multi-call class writes under failure (issue 12), in the style of `chamilo_writes.rs`:
//! a PATCH of 1,000 members failing midway, and the fault matrix of create with members,
//! member difference, rename and delete — every call failing in turn with each kind of fault ends
//! all-old (4xx), all-new (success, repaired where needed), or retryable (5xx) with the
//! identity provider's retry completing it.
//!
//! `cargo test --test chamilo_group_writes -- --nocapture` prints the figures.

mod chamilo_support;
mod log_capture;

use chamilo_scim_proxy::chamilo::mapping::ChamiloMapping;
use chamilo_scim_proxy::chamilo::write::WriteOutcome;
use chamilo_scim_proxy::directory::{DirectoryError, Group};
use chamilo_scim_proxy::standin::{Fault, FaultKind, StandinHandle};
use chamilo_support::groups::*;
use serde_json::{json, Value};

/// A PATCH adding 1,000 members that fails at the 500th: 503, an `incomplete` write, exactly
/// 499 members in Chamilo; the identity provider's retry (a fresh read, then the same
/// PATCH) adds the other 501.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_patch_failing_midway_is_reported_and_the_retry_completes_it() {
    let captured = log_capture::capture_json(tracing::Level::WARN);
    let s = stack_of(1000, ChamiloMapping::default()).await;
    let (chamilo, g) = (&s.chamilo, s.groups());
    let id = g
        .create_group(group(json!({"displayName": "Everyone"})))
        .await
        .unwrap()
        .id()
        .unwrap()
        .to_owned();
    let wanted: Vec<u64> = (3..1003).collect();
    let members: Vec<Value> = wanted
        .iter()
        .map(|m| json!({"value": m.to_string()}))
        .collect();
    let patch = async |fail: bool| {
        let base = g
            .get_group(&id, true)
            .await?
            .ok_or(DirectoryError::NotFound)?;
        let mut new = base.clone();
        new.as_json_mut()
            .insert("members".into(), Value::Array(members.clone()));
        if fail {
            chamilo.inject_fault(Fault::nth_of(
                "add_group_sub_user",
                500,
                FaultKind::Refuse {
                    message: "injected refusal".into(),
                },
            ));
        }
        g.modify_group(&id, &base, new, None).await
    };
    s.writes.take();
    chamilo.reset_calls();
    let e = patch(true).await.unwrap_err();
    chamilo.clear_faults();
    assert!(
        matches!(
            e,
            DirectoryError::Unavailable {
                retry_after: Some(_)
            }
        ),
        "{e:?}"
    );
    assert_eq!(class_named(chamilo, "Everyone").unwrap().members.len(), 499);
    assert_eq!(
        s.writes.take(),
        vec![("group_update".to_owned(), WriteOutcome::Incomplete)]
    );
    // The ERROR line says exactly what was and was not applied.
    let logged = captured.text();
    let report: Value = logged
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["level"] == "ERROR")
        .unwrap_or_else(|| panic!("no ERROR line in {logged}"));
    let f = &report["fields"];
    assert_eq!(f["chamilo.group_id"].as_u64(), Some(class_of(&id)));
    assert_eq!(f["scim.operation"], "group_update");
    assert_eq!(
        (f["added_count"].as_u64(), f["not_added_count"].as_u64()),
        (Some(499), Some(501))
    );
    let listed = |key: &str| -> Vec<u64> {
        serde_json::from_str(f[key].as_str().unwrap_or("[]")).unwrap_or_default()
    };
    let (mut added, mut not_added) = (listed("added"), listed("not_added"));
    added.sort_unstable();
    not_added.sort_unstable();
    assert_eq!(added, class_named(chamilo, "Everyone").unwrap().members);
    added.extend(&not_added);
    added.sort_unstable();
    assert_eq!(
        added, wanted,
        "every member is either applied or not, none both"
    );
    calls(chamilo, "PATCH of 1000 members failing at the 500th");
    let stored = patch(false).await.unwrap();
    assert_eq!(sorted_ids(&stored), wanted);
    assert_eq!(class_named(chamilo, "Everyone").unwrap().members, wanted);
    assert_eq!(chamilo.calls("add_group_sub_user"), 501);
    calls(chamilo, "its retry (501 added)");
}

// ---- fault matrix --------------------------------------------------------------------

fn is_client_error(e: &DirectoryError) -> bool {
    !matches!(
        e,
        DirectoryError::Unavailable { .. }
            | DirectoryError::Timeout
            | DirectoryError::Backend { .. }
    )
}

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

/// Prepares the state, returns the class id (0 when none).
type Prepare = fn(&Stack) -> std::pin::Pin<Box<dyn std::future::Future<Output = u64> + '_>>;
/// The write, as the engine makes it.
type Op = for<'a> fn(
    &'a Stack,
    u64,
) -> std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<Group, DirectoryError>> + 'a>,
>;

struct Case {
    name: &'static str,
    prepare: Prepare,
    op: Op,
    /// Whether the stand-in holds the whole change.
    is_new: fn(&StandinHandle) -> bool,
}

/// Runs the write without faults (counting its calls), then once per call and failure kind:
/// a success means the whole change is in Chamilo, a 4xx that nothing changed, and a 5xx is
/// one the identity provider's retry completes.
async fn matrix(case: Case) {
    let s = stack().await;
    let id = (case.prepare)(&s).await;
    s.chamilo.reset_calls();
    (case.op)(&s, id)
        .await
        .unwrap_or_else(|e| panic!("{}: without faults: {e:?}", case.name));
    let calls = s.chamilo.total_calls();
    assert!((case.is_new)(&s.chamilo), "{}: without faults", case.name);
    let mut outcomes: Vec<&str> = Vec::new();
    let mut reported: Vec<WriteOutcome> = Vec::new();
    for k in 1..=calls {
        for kind in kinds() {
            let s = stack().await;
            let id = (case.prepare)(&s).await;
            let before = classes(&s.chamilo);
            s.writes.take();
            s.chamilo.reset_calls();
            s.chamilo.inject_fault(Fault::nth_call(k, kind.clone()));
            let label = format!("{} / call {k} of {calls} / {kind:?}", case.name);
            let answer = (case.op)(&s, id).await;
            s.chamilo.clear_faults();
            reported.extend(s.writes.take().into_iter().map(|(_, o)| o));
            match &answer {
                Ok(_) => assert!(
                    (case.is_new)(&s.chamilo),
                    "{label}: success, but not all applied"
                ),
                Err(e) if is_client_error(e) => {
                    assert_eq!(classes(&s.chamilo), before, "{label}: {e:?}, but changed")
                }
                Err(e) => {
                    let again = (case.op)(&s, id).await;
                    assert!(
                        again.is_ok() && (case.is_new)(&s.chamilo),
                        "{label}: {e:?}, then the retry gave {again:?} (state {:?})",
                        classes(&s.chamilo)
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
    let reports = |o: WriteOutcome| reported.iter().filter(|x| **x == o).count();
    println!(
        "{}: {calls} calls x {} kinds: {} ok (repaired or unaffected), {} refused (nothing applied), {} retryable (retry completed it); reported {} applied, {} repaired, {} incomplete",
        case.name,
        kinds().len(),
        count("ok"),
        count("4xx"),
        count("5xx, retried"),
        reports(WriteOutcome::Applied),
        reports(WriteOutcome::Repaired),
        reports(WriteOutcome::Incomplete),
    );
    assert!(calls >= 2, "{}: a multi-call write", case.name);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_matrix_create_with_members() {
    matrix(Case {
        name: "create (3 members)",
        prepare: |_| Box::pin(async { 0 }),
        op: |s, _| Box::pin(s.groups().create_group(staff(&[3, 4, 5]))),
        is_new: |c| {
            classes(c).len() == 1
                && class_named(c, "Staff A").is_some_and(|k| {
                    k.members == vec![3, 4, 5] && k.description.contains("externalId=grp-staff-a")
                })
        },
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_matrix_member_difference() {
    matrix(Case {
        name: "PATCH members (+6 +7 -4)",
        prepare: |s| Box::pin(made(s, &[3, 4, 5])),
        op: |s, id| {
            Box::pin(patch(
                s,
                id,
                json!({"members": [{"value": "3"}, {"value": "5"}, {"value": "6"}, {"value": "7"}]}),
            ))
        },
        is_new: |c| class_named(c, "Staff A").is_some_and(|k| k.members == vec![3, 5, 6, 7]),
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_matrix_rename_with_a_member() {
    matrix(Case {
        name: "PATCH displayName + externalId + 1 member",
        prepare: |s| Box::pin(made(s, &[3])),
        op: |s, id| {
            Box::pin(patch(
                s,
                id,
                json!({"displayName": "Staff B", "externalId": "grp-b",
                       "members": [{"value": "3"}, {"value": "8"}]}),
            ))
        },
        is_new: |c| {
            classes(c).len() == 1
                && class_named(c, "Staff B").is_some_and(|k| {
                    k.members == vec![3, 8]
                        && k.description == "[scim-proxy:v1 displayName=Staff%20B externalId=grp-b]"
                })
        },
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_matrix_delete() {
    matrix(Case {
        name: "DELETE (members stay)",
        prepare: |s| Box::pin(made(s, &[3, 4])),
        op: |s, id| {
            Box::pin(async move {
                s.groups()
                    .delete_group(&scim_id(id))
                    .await
                    .map(|()| Group::default())
            })
        },
        is_new: |c| {
            classes(c).is_empty() && c.state().user(3).is_some() && c.state().user(4).is_some()
        },
    })
    .await;
}

/// Membership calls run a few at a time: with 20 ms per Chamilo call, adding 200 members
/// takes about a quarter of the 4 s the calls would take one after the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_calls_overlap() {
    let s = stack_of(200, ChamiloMapping::default()).await;
    let id = made(&s, &[]).await;
    s.chamilo.set_cost(chamilo_scim_proxy::standin::Cost {
        latency: std::time::Duration::from_millis(20),
        ..Default::default()
    });
    let members: Vec<Value> = (3..203).map(|m| json!({"value": m.to_string()})).collect();
    let started = std::time::Instant::now();
    patch(&s, id, json!({ "members": members })).await.unwrap();
    let took = started.elapsed();
    println!("200 members added at 20 ms per call: {took:?} (one after the other: 4 s)");
    assert_eq!(
        class_named(&s.chamilo, "Staff A").unwrap().members.len(),
        200
    );
    assert!(took < std::time::Duration::from_millis(3000), "{took:?}");
}
