//! Course enrolment driven by SCIM groups (`[[chamilo.enrolment]]`), against the stand-in:
//! rules by displayName pattern and by externalId, two groups granting one course, the
//! teacher role, dry run, a reload of the mapping, a failed subscription reported and
//! completed by a later write, a subscription Chamilo already holds read back, and the
//! reconciliation of mapped groups with their courses.

mod chamilo_support;
mod log_capture;

use chamilo_scim_proxy::chamilo::enrolment::EnrolmentRules;
use chamilo_scim_proxy::chamilo::mapping::ChamiloMapping;
use chamilo_scim_proxy::chamilo::write::WriteOutcome;
use chamilo_scim_proxy::config::{ChamiloConfig, EnrolmentConfig};
use chamilo_scim_proxy::directory::GROUP_SCHEMA;
use chamilo_scim_proxy::standin::{Fault, FaultKind, StandinHandle};
use chamilo_support::groups::{class_of, group, patch, scim_id, stack_of, Stack};
use serde_json::{json, Value};

fn rule(display: Option<&str>, ext: Option<&str>, courses: &[&str], role: &str) -> EnrolmentConfig {
    EnrolmentConfig {
        display_name: display.map(str::to_owned),
        external_id: ext.map(str::to_owned),
        courses: courses.iter().map(|c| (*c).to_owned()).collect(),
        role: role.to_owned(),
    }
}

fn rules(entries: Vec<EnrolmentConfig>, dry_run: bool) -> EnrolmentRules {
    EnrolmentRules::from_config(&ChamiloConfig {
        enrolment: entries,
        enrolment_dry_run: dry_run,
        ..ChamiloConfig::default()
    })
    .unwrap()
}

/// A stand-in with 20 users and the courses MATH and TEACH (no one subscribed).
async fn with_courses(r: EnrolmentRules) -> Stack {
    let s = stack_of(20, ChamiloMapping::default()).await;
    {
        let mut state = s.chamilo.state();
        state.insert_course("MATH", "Maths").unwrap();
        state.insert_course("TEACH", "Teaching").unwrap();
    }
    s.dir.enrolment().set_rules(r);
    s
}

/// `(user, status)` of a course, by user id.
fn enrolled(chamilo: &StandinHandle, code: &str) -> Vec<(u64, i64)> {
    let state = chamilo.state();
    let Some(id) = state.course_by_code(code) else {
        return Vec::new();
    };
    let mut users = state
        .course(id)
        .map(|c| c.users.clone())
        .unwrap_or_default();
    users.sort_unstable();
    users
}

fn members(ids: &[u64]) -> Value {
    Value::Array(
        ids.iter()
            .map(|m| json!({"value": m.to_string()}))
            .collect(),
    )
}

async fn create(s: &Stack, name: &str, ext: Option<&str>, ids: &[u64]) -> u64 {
    let mut g = json!({"schemas": [GROUP_SCHEMA], "displayName": name, "members": members(ids)});
    if let Some(ext) = ext {
        g["externalId"] = json!(ext);
    }
    let created = s.groups().create_group(group(g)).await.unwrap();
    class_of(created.id().unwrap())
}

#[tokio::test]
async fn pattern_and_external_id_rules_subscribe_joiners_and_unsubscribe_leavers() {
    let s = with_courses(rules(
        vec![
            rule(Some("course *"), None, &["math"], "student"),
            rule(None, Some("grp-teachers"), &["TEACH"], "teacher"),
        ],
        false,
    ))
    .await;
    let maths = create(&s, "Course Maths", None, &[3, 4]).await;
    assert_eq!(enrolled(&s.chamilo, "MATH"), vec![(3, 5), (4, 5)]);
    create(&s, "Teachers", Some("grp-teachers"), &[5]).await;
    assert_eq!(enrolled(&s.chamilo, "TEACH"), vec![(5, 1)], "teacher role");
    // A group no rule matches enrols nobody.
    create(&s, "Staff", Some("grp-staff"), &[6]).await;
    assert_eq!(enrolled(&s.chamilo, "MATH").len(), 2);
    s.writes.take();
    patch(&s, maths, json!({"members": members(&[3, 7])}))
        .await
        .unwrap();
    assert_eq!(enrolled(&s.chamilo, "MATH"), vec![(3, 5), (7, 5)]);
    assert!(s
        .writes
        .take()
        .contains(&("enrolment".to_owned(), WriteOutcome::Applied)));
    // A rename that stops matching the pattern unsubscribes everyone; one that starts, back.
    patch(&s, maths, json!({"displayName": "Maths club"}))
        .await
        .unwrap();
    assert_eq!(enrolled(&s.chamilo, "MATH"), vec![]);
    patch(&s, maths, json!({"displayName": "Course Maths"}))
        .await
        .unwrap();
    assert_eq!(enrolled(&s.chamilo, "MATH"), vec![(3, 5), (7, 5)]);
    // Deleting the group unsubscribes its members; the users stay.
    s.groups().delete_group(&scim_id(maths)).await.unwrap();
    assert_eq!(enrolled(&s.chamilo, "MATH"), vec![]);
    assert!(s.chamilo.state().user(3).is_some());
}

#[tokio::test]
async fn a_course_two_groups_grant_stays_until_the_user_leaves_both() {
    let s = with_courses(rules(
        vec![rule(Some("course *"), None, &["MATH"], "student")],
        false,
    ))
    .await;
    let a = create(&s, "Course A", None, &[3, 4]).await;
    let b = create(&s, "Course B", None, &[3]).await;
    assert_eq!(enrolled(&s.chamilo, "MATH"), vec![(3, 5), (4, 5)]);
    s.chamilo.reset_calls();
    patch(&s, a, json!({"members": members(&[4])}))
        .await
        .unwrap();
    assert_eq!(
        enrolled(&s.chamilo, "MATH"),
        vec![(3, 5), (4, 5)],
        "user 3 keeps MATH through Course B"
    );
    assert_eq!(s.chamilo.calls("unsubscribe_user_from_course"), 0);
    patch(&s, b, json!({"members": members(&[])}))
        .await
        .unwrap();
    assert_eq!(enrolled(&s.chamilo, "MATH"), vec![(4, 5)]);
    // Joining a second group granting a course one has: no call.
    s.chamilo.reset_calls();
    patch(&s, b, json!({"members": members(&[4])}))
        .await
        .unwrap();
    assert_eq!(s.chamilo.calls("subscribe_user_to_course"), 0);
    assert_eq!(enrolled(&s.chamilo, "MATH"), vec![(4, 5)]);
}

#[tokio::test]
async fn dry_run_changes_no_enrolment_but_logs_each_change_and_applies_the_membership() {
    let captured = log_capture::capture_json(tracing::Level::INFO);

    let s = with_courses(rules(
        vec![rule(Some("Course *"), None, &["MATH", "TEACH"], "student")],
        true,
    ))
    .await;
    s.chamilo.reset_calls();
    let id = create(&s, "Course Test", None, &[3, 4]).await;
    assert_eq!(enrolled(&s.chamilo, "MATH"), vec![]);
    assert_eq!(s.chamilo.calls("subscribe_user_to_course"), 0);
    let class = chamilo_support::groups::classes(&s.chamilo)
        .into_iter()
        .find(|c| c.id == id)
        .unwrap();
    assert_eq!(class.members, vec![3, 4], "the membership is applied");
    let dry: Vec<Value> = captured
        .lines()
        .into_iter()
        .filter(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("enrolment dry run"))
        })
        .collect();
    assert_eq!(dry.len(), 4, "two users, two courses");
    let mut seen: Vec<(u64, String, String)> = dry
        .iter()
        .map(|l| {
            assert_eq!(l["level"], "INFO");
            assert_eq!(l["fields"]["scim.group"], "Course Test");
            assert_eq!(l["fields"]["chamilo.group_id"], id);
            (
                l["fields"]["chamilo.user_id"].as_u64().unwrap(),
                l["fields"]["chamilo.course"].as_str().unwrap().to_owned(),
                l["fields"]["enrolment.action"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    seen.sort();
    assert_eq!(seen[0], (3, "MATH".into(), "subscribe".into()));
    assert_eq!(seen[3], (4, "TEACH".into(), "subscribe".into()));
}

#[tokio::test]
async fn the_mapping_reloads_for_the_next_operation() {
    let s = with_courses(rules(Vec::new(), false)).await;
    let id = create(&s, "Course Reloaded", None, &[3]).await;
    assert_eq!(enrolled(&s.chamilo, "MATH"), vec![]);
    s.dir.enrolment().set_rules(rules(
        vec![rule(Some("Course R*"), None, &["MATH"], "teacher")],
        false,
    ));
    patch(&s, id, json!({"members": members(&[3, 8])}))
        .await
        .unwrap();
    // The rules apply to the change this write makes (user 8 joins); user 3 joined before
    // the rule existed and is not enrolled retroactively.
    assert_eq!(enrolled(&s.chamilo, "MATH"), vec![(8, 1)]);
}

#[tokio::test]
async fn a_failed_subscription_is_reported_and_owed_until_a_later_write_of_the_group() {
    let s = with_courses(rules(
        vec![rule(Some("Course *"), None, &["MATH"], "student")],
        false,
    ))
    .await;
    let id = create(&s, "Course F", None, &[3]).await;
    s.writes.take();
    s.chamilo.inject_fault(Fault::nth_of(
        "subscribe_user_to_course",
        1,
        FaultKind::Refuse {
            message: "Database error".into(),
        },
    ));
    let g = patch(&s, id, json!({"members": members(&[3, 4])})).await;
    assert!(g.is_ok(), "the membership is applied and answered: {g:?}");
    assert_eq!(enrolled(&s.chamilo, "MATH"), vec![(3, 5)]);
    assert!(s
        .writes
        .take()
        .contains(&("enrolment".to_owned(), WriteOutcome::Incomplete)));
    assert_eq!(s.dir.enrolment().owed_to(id).len(), 1);
    // The identity provider's next write of this group (here the same PATCH again, which
    // changes no membership) makes the owed subscription.
    patch(&s, id, json!({"members": members(&[3, 4])}))
        .await
        .unwrap();
    assert_eq!(enrolled(&s.chamilo, "MATH"), vec![(3, 5), (4, 5)]);
    assert!(s.dir.enrolment().owed_to(id).is_empty());
    assert!(s
        .writes
        .take()
        .contains(&("enrolment".to_owned(), WriteOutcome::Repaired)));
    // A lost answer is sent again (a Drop before applying).
    s.chamilo.inject_fault(Fault::nth_of(
        "subscribe_user_to_course",
        1,
        FaultKind::Drop { applied: false },
    ));
    patch(&s, id, json!({"members": members(&[3, 4, 5])}))
        .await
        .unwrap();
    assert_eq!(enrolled(&s.chamilo, "MATH"), vec![(3, 5), (4, 5), (5, 5)]);
}

#[tokio::test]
async fn members_added_before_a_membership_failure_are_enrolled_and_the_retry_does_the_rest() {
    let s = with_courses(rules(
        vec![rule(Some("Course *"), None, &["MATH"], "student")],
        false,
    ))
    .await;
    let id = create(&s, "Course P", None, &[3]).await;
    s.chamilo.inject_fault(Fault::nth_of(
        "add_group_sub_user",
        2,
        FaultKind::Refuse {
            message: "Database error".into(),
        },
    ));
    let g = patch(&s, id, json!({"members": members(&[3, 4, 5])})).await;
    assert!(g.is_err(), "an incomplete membership write is a 503: {g:?}");
    let class = chamilo_support::groups::classes(&s.chamilo)
        .into_iter()
        .find(|c| c.id == id)
        .unwrap();
    assert_eq!(class.members.len(), 2, "one of the two was added");
    let enrolled_now: Vec<u64> = enrolled(&s.chamilo, "MATH")
        .iter()
        .map(|(u, _)| *u)
        .collect();
    assert_eq!(enrolled_now, class.members, "the added one is enrolled");
    patch(&s, id, json!({"members": members(&[3, 4, 5])}))
        .await
        .unwrap();
    assert_eq!(enrolled(&s.chamilo, "MATH"), vec![(3, 5), (4, 5), (5, 5)]);
}

/// A class made in Chamilo's UI (no SCIM line in its description) with `ids` as members.
fn ui_class(chamilo: &StandinHandle, name: &str, ids: &[u64]) -> u64 {
    let mut state = chamilo.state();
    let id = state.insert_group(name, "", "1", 0);
    if let Some(g) = state.group_mut(id) {
        g.members.extend(ids.iter().map(|u| (*u, 0)));
    }
    id
}

/// Subscribes `user` to course `code` behind the proxy's back (a teacher's own doing).
fn subscribe_by_hand(chamilo: &StandinHandle, code: &str, user: u64, status: i64) {
    let mut state = chamilo.state();
    let id = state.course_by_code(code).unwrap();
    state.course_mut(id).unwrap().users.push((user, status));
}

#[tokio::test]
async fn a_member_already_subscribed_is_read_back_not_reported_as_failed() {
    let s = with_courses(rules(
        vec![rule(Some("Course *"), None, &["MATH"], "student")],
        false,
    ))
    .await;
    // A teacher enrolled user 3 by hand: Chamilo answers the proxy's subscription `[false]`.
    subscribe_by_hand(&s.chamilo, "MATH", 3, 5);
    s.writes.take();
    let id = create(&s, "Course R", None, &[3, 4]).await;
    assert_eq!(enrolled(&s.chamilo, "MATH"), vec![(3, 5), (4, 5)]);
    assert!(s.dir.enrolment().owed_to(id).is_empty(), "nothing owed");
    let enrolment: Vec<WriteOutcome> = s
        .writes
        .take()
        .into_iter()
        .filter(|(op, _)| op == "enrolment")
        .map(|(_, o)| o)
        .collect();
    assert_eq!(enrolment, vec![WriteOutcome::Applied]);
    assert_eq!(
        s.chamilo.calls("user_courses"),
        1,
        "one read-back, for user 3"
    );
}

#[tokio::test]
async fn reconciliation_subscribes_the_members_of_groups_a_rule_starts_to_match() {
    // Classes made in Chamilo's UI, before any rule: nobody is enrolled.
    let s = with_courses(rules(Vec::new(), false)).await;
    ui_class(&s.chamilo, "Course Maths", &[3, 4, 5]);
    ui_class(&s.chamilo, "Maths teachers", &[5, 6]);
    ui_class(&s.chamilo, "Staff", &[7]);
    // A teacher enrolled 4 as a student and 9 (in no group) by hand.
    subscribe_by_hand(&s.chamilo, "MATH", 4, 5);
    subscribe_by_hand(&s.chamilo, "MATH", 9, 5);
    s.chamilo.reset_calls();
    let nothing = s.dir.reconcile_enrolment().await.unwrap();
    assert_eq!(nothing.classes, 0, "no rule, no call: {nothing:?}");
    assert_eq!(s.chamilo.total_calls(), 0);

    s.dir.enrolment().set_rules(rules(
        vec![
            rule(Some("course *"), None, &["MATH"], "student"),
            rule(Some("maths teachers"), None, &["MATH"], "teacher"),
        ],
        false,
    ));
    s.chamilo.reset_calls();
    s.writes.take();
    let r = s.dir.reconcile_enrolment().await.unwrap();
    assert_eq!(
        (r.classes, r.courses, r.missing, r.made),
        (2, 1, 3, 3),
        "{r:?}"
    );
    assert_eq!((r.failed, r.withdrawn, r.unread_courses), (0, 0, 0));
    // 3 student; 5 in both groups: teacher; 6 teacher; 4 keeps the role it has; 9, in no
    // group, is left alone; 7's group grants nothing.
    assert_eq!(
        enrolled(&s.chamilo, "MATH"),
        vec![(3, 5), (4, 5), (5, 1), (6, 1), (9, 5)]
    );
    assert_eq!(
        s.writes.take(),
        vec![("enrolment".to_owned(), WriteOutcome::Repaired)]
    );
    // The course id was learnt from the first entitled member holding the course.
    assert!(s.chamilo.calls("user_courses") <= 3);
    assert_eq!(s.chamilo.calls("get_users_subscribed_to_course"), 1);

    // The next pass finds nothing to do: one listing per class and per course, and no
    // user's courses (the id is known).
    s.chamilo.reset_calls();
    let again = s.dir.reconcile_enrolment().await.unwrap();
    assert_eq!((again.missing, again.made), (0, 0));
    assert_eq!(s.chamilo.calls("user_courses"), 0);
    assert_eq!(s.chamilo.calls("subscribe_user_to_course"), 0);
    assert_eq!(
        s.chamilo.total_calls(),
        1 + 2 + 1,
        "get_groups, two get_group_sub_users, one course listing: {:?}",
        s.chamilo.all_calls()
    );
    assert!(s.writes.take().is_empty());
}

#[tokio::test]
async fn reconciliation_in_dry_run_logs_and_makes_nothing() {
    let logs = log_capture::capture_json(tracing::Level::INFO);
    let s = with_courses(rules(
        vec![rule(Some("Course *"), None, &["MATH"], "student")],
        true,
    ))
    .await;
    ui_class(&s.chamilo, "Course Dry", &[3, 4]);
    let r = s.dir.reconcile_enrolment().await.unwrap();
    assert!(r.dry_run);
    assert_eq!((r.missing, r.made), (2, 0));
    assert!(enrolled(&s.chamilo, "MATH").is_empty());
    assert_eq!(s.chamilo.calls("subscribe_user_to_course"), 0);
    assert!(
        logs.lines().iter().any(|l| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("enrolment reconciliation dry run"))
                && l["fields"]["missing_count"] == 2
                && l["fields"]["chamilo.course"] == "MATH"
        }),
        "{}",
        logs.text()
    );
}

#[tokio::test]
async fn reconciliation_reports_a_course_that_does_not_exist() {
    let logs = log_capture::capture_json(tracing::Level::INFO);
    let s = with_courses(rules(
        vec![rule(Some("Course *"), None, &["MATH", "NOPE"], "student")],
        false,
    ))
    .await;
    ui_class(&s.chamilo, "Course Typo", &[3, 4, 5]);
    s.writes.take();
    s.chamilo.reset_calls();
    let r = s.dir.reconcile_enrolment().await.unwrap();
    // MATH: nobody holds it, so its id is unknown: the first subscription is read back to
    // learn it, then the course's listing gives the rest. NOPE: the first subscription fails
    // and the other two are not tried.
    assert_eq!(
        (r.courses, r.missing, r.made, r.failed),
        (2, 6, 3, 3),
        "{r:?}"
    );
    assert_eq!(enrolled(&s.chamilo, "MATH"), vec![(3, 5), (4, 5), (5, 5)]);
    assert_eq!(s.chamilo.calls("subscribe_user_to_course"), 3 + 1);
    assert_eq!(s.chamilo.calls("get_users_subscribed_to_course"), 1);
    assert_eq!(
        s.writes.take(),
        vec![("enrolment".to_owned(), WriteOutcome::Incomplete)]
    );
    let text = logs.text();
    assert!(
        text.contains("subscribe user 3 course NOPE")
            && text.contains("not subscribed")
            && text.contains("2 other missing subscriptions were not tried"),
        "{text}"
    );
}

#[tokio::test]
async fn reconciliation_takes_back_a_subscription_of_a_member_who_left_meanwhile() {
    let s = with_courses(rules(
        vec![rule(Some("Course *"), None, &["MATH"], "student")],
        false,
    ))
    .await;
    let class = ui_class(&s.chamilo, "Course Race", &[3]);
    // The subscription is made, then its answer is held past the client's timeout; while it
    // is held, user 3 leaves the class (the membership write's unsubscription came first).
    s.chamilo.inject_fault(Fault::nth_of(
        "subscribe_user_to_course",
        1,
        FaultKind::Timeout { applied: true },
    ));
    let chamilo = &s.chamilo;
    let leave = async {
        while chamilo.calls("subscribe_user_to_course") == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        if let Some(g) = chamilo.state().group_mut(class) {
            g.members.clear();
        }
    };
    let (r, ()) = tokio::join!(s.dir.reconcile_enrolment(), leave);
    let r = r.unwrap();
    assert_eq!((r.made, r.withdrawn), (1, 1), "{r:?}");
    assert!(enrolled(&s.chamilo, "MATH").is_empty());
}
