//! Group figures (issue 12 §4): a class of 10,000 members, a PATCH adding 1,000 members to
//! it, a create with 1,000 members, `GET /Groups` without members over 500 classes — each
//! with its Chamilo calls counted by the stand-in — and the same PATCH with a course mapped
//! (enrolment on), and the reconciliation of that class with the course (the first pass, which
//! subscribes the 11,000 members it lacks, and the next, which finds nothing to do). The
//! directory is called directly (as the engine calls it) on a stand-in in
//! this process without modelled latency, so the times are loopback and the proxy's work.
//! Prints figures, asserts the call counts.
//!
//! `cargo test --release --test chamilo_groups_bench -- --ignored --nocapture`
//!
//! Figures are recorded in `bench/chamilo.md`.

mod chamilo_support;

use std::time::{Duration, Instant};

use chamilo_scim_proxy::chamilo::enrolment::EnrolmentRules;
use chamilo_scim_proxy::chamilo::mapping::ChamiloMapping;
use chamilo_scim_proxy::config::{ChamiloConfig, EnrolmentConfig};
use chamilo_scim_proxy::directory::GROUP_SCHEMA;
use chamilo_support::groups::{calls, group, list, patch, scim_id, stack_timing_out, Stack};
use serde_json::{json, Value};

const USERS: usize = 12_000;

fn members(ids: impl Iterator<Item = u64>) -> Value {
    Value::Array(ids.map(|m| json!({"value": m.to_string()})).collect())
}

/// A class made through SCIM's description line, with `members`, straight in the stand-in.
fn seeded_class(s: &Stack, name: &str, members: impl Iterator<Item = u64>) -> u64 {
    let mut state = s.chamilo.state();
    let line = format!("[scim-proxy:v1 displayName={}]", name.replace(' ', "%20"));
    let id = state.insert_group(name, &line, "1", 0);
    if let Some(g) = state.group_mut(id) {
        g.members.extend(members.map(|u| (u, 2)));
    }
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn group_operations_figures() {
    let s = stack_timing_out(USERS, ChamiloMapping::default(), Duration::from_secs(30)).await;
    // User ids start at 3.
    let big = seeded_class(&s, "Big 10k", 3..10_003);
    calls(&s.chamilo, "setup");

    let t = Instant::now();
    let g = s
        .groups()
        .get_group(&scim_id(big), true)
        .await
        .unwrap()
        .unwrap();
    println!("read a 10,000-member group with members: {:?}", t.elapsed());
    assert_eq!(g.member_ids().len(), 10_000);
    assert_eq!(calls(&s.chamilo, "GET /Groups/{id} (10,000 members)"), 2);

    let t = Instant::now();
    patch(&s, big, json!({"members": members(3..11_003)}))
        .await
        .unwrap();
    println!(
        "PATCH adding 1,000 members to the 10,000-member group: {:?}",
        t.elapsed()
    );
    // The engine's read (2) and the write: get_groups + 1,000 add_group_sub_user.
    assert_eq!(
        calls(&s.chamilo, "PATCH +1,000 members (with its read)"),
        2 + 1 + 1000
    );

    let t = Instant::now();
    let made = s
        .groups()
        .create_group(group(json!({"schemas": [GROUP_SCHEMA], "displayName": "Made 1k", "members": members(3..1_003)})))
        .await
        .unwrap();
    println!("create a group with 1,000 members: {:?}", t.elapsed());
    assert_eq!(made.member_ids().len(), 1000);
    assert_eq!(
        calls(&s.chamilo, "POST /Groups with 1,000 members"),
        2 + 1000
    );

    for i in 0..500 {
        seeded_class(&s, &format!("Class {i}"), (3 + i as u64)..(13 + i as u64));
    }
    calls(&s.chamilo, "setup");
    let t = Instant::now();
    let page = s.groups().find_groups(&list(None), false).await.unwrap();
    println!(
        "GET /Groups?excludedAttributes=members over 502 classes: {:?}",
        t.elapsed()
    );
    assert_eq!(page.total, 502);
    assert_eq!(
        calls(
            &s.chamilo,
            "GET /Groups excludedAttributes=members, 502 classes"
        ),
        1,
        "no membership is read"
    );
    let t = Instant::now();
    let with = s
        .groups()
        .find_groups(&list(None), true)
        .await
        .map(|p| p.resources.len());
    println!(
        "GET /Groups with members, first page of 100: {:?} ({with:?})",
        t.elapsed()
    );
    calls(&s.chamilo, "GET /Groups with members, page of 100");

    // Enrolment on: the same PATCH with one course mapped to the group.
    s.chamilo.state().insert_course("BIG", "Big").unwrap();
    s.dir.enrolment().set_rules(
        EnrolmentRules::from_config(&ChamiloConfig {
            enrolment: vec![EnrolmentConfig {
                display_name: Some("Big *".into()),
                external_id: None,
                courses: vec!["BIG".into()],
                role: "student".into(),
            }],
            enrolment_dry_run: false,
            ..ChamiloConfig::default()
        })
        .unwrap(),
    );
    let t = Instant::now();
    patch(&s, big, json!({"members": members(3..12_003)}))
        .await
        .unwrap();
    println!(
        "PATCH adding 1,000 members with a mapped course: {:?}",
        t.elapsed()
    );
    assert_eq!(
        calls(&s.chamilo, "PATCH +1,000 members, one mapped course"),
        2 + 1 + 1000 + 1000
    );

    // Reconciliation: the 11,000 members added before the course was mapped are missing.
    let t = Instant::now();
    let r = s.dir.reconcile_enrolment().await.unwrap();
    println!(
        "reconciliation, first pass (11,000 subscriptions missing): {:?} {r:?}",
        t.elapsed()
    );
    assert_eq!((r.missing, r.made, r.failed), (11_000, 11_000, 0));
    // get_groups + get_group_sub_users, 3 probes (no course), the first subscription read
    // back, the course's listing, the other 10,999 subscriptions, and the fresh read of the
    // groups after subscribing (get_groups + get_group_sub_users).
    assert_eq!(
        calls(&s.chamilo, "reconciliation, first pass"),
        2 + 3 + 2 + 1 + 10_999 + 2
    );
    let t = Instant::now();
    let r = s.dir.reconcile_enrolment().await.unwrap();
    println!(
        "reconciliation, next pass (nothing missing): {:?} {r:?}",
        t.elapsed()
    );
    assert_eq!(r.missing, 0);
    assert_eq!(calls(&s.chamilo, "reconciliation, next pass"), 3);
}
