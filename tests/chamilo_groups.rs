//! SCIM Groups as Chamilo classes (issue 12), against the stand-in on loopback: every
//! `GroupStore` operation and its Chamilo calls, names and externalIds unique, reserved
//! members, adoption of classes made in Chamilo and `group_scope = "managed"`, the SCIM values
//! surviving a second replica, renames without the SOAP secret. The multi-call writes under
//! failure are in `chamilo_group_writes.rs`.
//!
//! `cargo test --test chamilo_groups -- --nocapture` prints the call counts.

mod chamilo_support;

use std::sync::Arc;
use std::time::Duration;

use chamilo_scim_proxy::chamilo::lookup::MIN_REBUILD_INTERVAL;
use chamilo_scim_proxy::chamilo::mapping::{ChamiloMapping, GroupScope};
use chamilo_scim_proxy::chamilo::write::WriteOutcome;
use chamilo_scim_proxy::chamilo::ChamiloClient;
use chamilo_scim_proxy::directory::{Directory, DirectoryError, Group};
use chamilo_support::groups::*;
use chamilo_support::{admin_settings, replica_on};
use serde_json::{json, Value};

#[tokio::test]
async fn every_group_operation_and_its_calls() {
    let s = stack().await;
    let (chamilo, g) = (&s.chamilo, s.groups());
    chamilo.reset_calls();

    // Create with three members.
    let created = g.create_group(staff(&[5, 3, 4])).await.unwrap();
    assert_eq!(calls(chamilo, "create with 3 members"), 5);
    let id = created.id().unwrap().to_owned();
    assert_eq!(created.display_name(), Some("Staff A"));
    assert_eq!(created.external_id(), Some("grp-staff-a"));
    assert_eq!(sorted_ids(&created), vec![3, 4, 5]);
    let stored = class_named(chamilo, "Staff A").unwrap();
    assert_eq!(stored.members, vec![3, 4, 5]);
    assert_eq!(
        stored.description,
        "[scim-proxy:v1 displayName=Staff%20A externalId=grp-staff-a]"
    );
    assert_eq!(
        s.writes.take(),
        vec![("group_create".to_owned(), WriteOutcome::Applied)]
    );

    // Reads.
    let got = g.get_group(&id, false).await.unwrap().unwrap();
    assert_eq!(calls(chamilo, "get without members"), 1);
    assert!(!got.has_members());
    assert_eq!(got.external_id(), Some("grp-staff-a"));
    let got = g.get_group(&id, true).await.unwrap().unwrap();
    assert_eq!(calls(chamilo, "get with members"), 2);
    assert_eq!(sorted_ids(&got), vec![3, 4, 5]);
    let first = got.as_json()["members"][0].clone();
    assert_eq!(first["value"], "3");
    assert_eq!(first["type"], "User");
    assert!(first["display"]
        .as_str()
        .is_some_and(|d| d.ends_with("Seed")));
    assert!(g.get_group("999", false).await.unwrap().is_none());
    assert!(g.get_group("abc", true).await.unwrap().is_none());
    chamilo.reset_calls();

    // A list of N classes without members is one call.
    for n in 0..9 {
        g.create_group(group(json!({"displayName": format!("Class {n}")})))
            .await
            .unwrap();
    }
    chamilo.reset_calls();
    let page = g.find_groups(&list(None), false).await.unwrap();
    assert_eq!(page.total, 10);
    assert!(page.resources.iter().all(|r| !r.has_members()));
    assert_eq!(calls(chamilo, "list of 10 classes without members"), 1);
    let page = g.find_groups(&list(None), true).await.unwrap();
    assert_eq!(page.resources.len(), 10);
    assert_eq!(calls(chamilo, "list of 10 classes with members"), 11);
    let page = g
        .find_groups(&list(Some(eq("displayName", None, "staff a"))), false)
        .await
        .unwrap();
    assert_eq!(page.total, 1);
    assert_eq!(calls(chamilo, "filter displayName eq"), 1);
    let page = g
        .find_groups(&list(Some(eq("externalId", None, "grp-staff-a"))), false)
        .await
        .unwrap();
    assert_eq!(page.resources[0].id(), Some(id.as_str()));
    calls(chamilo, "filter externalId eq");
    let page = g
        .find_groups(&list(Some(member_filter("4"))), false)
        .await
        .unwrap();
    assert_eq!(page.total, 1);
    assert!(!page.resources[0].has_members());
    assert_eq!(calls(chamilo, "filter members[value eq x]"), 2);
    let page = g
        .find_groups(&list(Some(eq("members", Some("value"), "6"))), false)
        .await
        .unwrap();
    assert_eq!(page.total, 0);
    chamilo.reset_calls();

    // PATCH: rename, add 6 and 7, remove 4.
    let base = g.get_group(&id, true).await.unwrap().unwrap();
    chamilo.reset_calls();
    let mut new = staff(&[3, 5, 6, 7]);
    new.as_json_mut()
        .insert("displayName".into(), json!("Staff B"));
    let stored = g.modify_group(&id, &base, new, None).await.unwrap();
    assert_eq!(calls(chamilo, "modify: rename + 2 added + 1 removed"), 6);
    assert_eq!(stored.display_name(), Some("Staff B"));
    assert_eq!(sorted_ids(&stored), vec![3, 5, 6, 7]);
    let snap = class_named(chamilo, "Staff B").unwrap();
    assert_eq!(snap.members, vec![3, 5, 6, 7]);
    assert!(snap.description.contains("displayName=Staff%20B"));
    assert_eq!(
        s.writes.take().last(),
        Some(&("group_update".to_owned(), WriteOutcome::Applied))
    );
    // Members only: no SOAP call.
    let base = g.get_group(&id, true).await.unwrap().unwrap();
    chamilo.reset_calls();
    let mut new = base.clone();
    new.as_json_mut()
        .insert("members".into(), json!([{"value": "3"}]));
    g.modify_group(&id, &base, new, None).await.unwrap();
    assert_eq!(calls(chamilo, "modify: 3 removed"), 4);
    assert_eq!(class_named(chamilo, "Staff B").unwrap().members, vec![3]);
    // Nothing changed: one read.
    let base = g.get_group(&id, true).await.unwrap().unwrap();
    chamilo.reset_calls();
    g.modify_group(&id, &base, base.clone(), None)
        .await
        .unwrap();
    assert_eq!(calls(chamilo, "modify: no change"), 1);

    // groups_of.
    let refs = g.groups_of("3").await.unwrap();
    assert_eq!(calls(chamilo, "groups_of"), 2);
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].value, id);
    assert_eq!(refs[0].display.as_deref(), Some("Staff B"));
    assert!(g.groups_of("4").await.unwrap().is_empty());
    assert_eq!(calls(chamilo, "groups_of a user in no class"), 1);

    // Delete: the members stay.
    g.delete_group(&id).await.unwrap();
    assert_eq!(calls(chamilo, "delete"), 2);
    assert!(class_named(chamilo, "Staff B").is_none());
    assert!(chamilo.state().user(3).is_some());
    assert_eq!(
        g.delete_group(&id).await.unwrap_err(),
        DirectoryError::NotFound
    );
    assert!(g.get_group(&id, false).await.unwrap().is_none());
}

#[tokio::test]
async fn names_and_external_ids_are_unique_and_missing_classes_are_404() {
    let s = stack().await;
    let g = s.groups();
    let a = g.create_group(staff(&[])).await.unwrap();
    let id = a.id().unwrap().to_owned();
    for dup in [
        json!({"displayName": "STAFF a"}),
        json!({"displayName": "Other", "externalId": "grp-staff-a"}),
    ] {
        let e = g.create_group(group(dup)).await.unwrap_err();
        assert!(matches!(e, DirectoryError::Conflict { .. }), "{e:?}");
    }
    // A social group's name is taken too (Chamilo checks every usergroup).
    s.chamilo.state().insert_group("Social", "", "1", 1);
    let e = g
        .create_group(group(json!({"displayName": "social"})))
        .await
        .unwrap_err();
    assert!(matches!(e, DirectoryError::Conflict { .. }), "{e:?}");
    let b = g
        .create_group(group(
            json!({"displayName": "Second", "externalId": "grp-2"}),
        ))
        .await
        .unwrap();
    let b_id = b.id().unwrap().to_owned();
    let base = g.get_group(&b_id, true).await.unwrap().unwrap();
    for change in [
        json!({"displayName": "staff A", "externalId": "grp-2"}),
        json!({"displayName": "Second", "externalId": "grp-staff-a"}),
    ] {
        let e = g
            .modify_group(&b_id, &base, group(change), None)
            .await
            .unwrap_err();
        assert!(matches!(e, DirectoryError::Conflict { .. }), "{e:?}");
    }
    // Another case of its own name is a rename, not a conflict.
    let renamed = g
        .modify_group(
            &b_id,
            &base,
            group(json!({"displayName": "SECOND", "externalId": "grp-2"})),
            None,
        )
        .await
        .unwrap();
    assert_eq!(renamed.display_name(), Some("SECOND"));
    let e = g
        .modify_group("999", &base, base.clone(), None)
        .await
        .unwrap_err();
    assert_eq!(e, DirectoryError::NotFound);
    assert_eq!(
        g.delete_group("999").await.unwrap_err(),
        DirectoryError::NotFound
    );
    // The social group is never a SCIM group.
    let social = s.chamilo.state().group_by_name("Social").unwrap().id;
    let social = scim_id(social);
    assert!(g.get_group(&social, false).await.unwrap().is_none());
    assert_eq!(
        g.delete_group(&social).await.unwrap_err(),
        DirectoryError::NotFound
    );
    assert!(s.chamilo.state().group_by_name("Social").is_some());
    let all = g.find_groups(&list(None), false).await.unwrap();
    assert_eq!(all.total, 2);
    assert_eq!(
        g.get_group(&id, false)
            .await
            .unwrap()
            .unwrap()
            .display_name(),
        Some("Staff A")
    );
}

#[tokio::test]
async fn reserved_and_unknown_members_are_refused_and_nothing_changes() {
    let s = stack_of(
        20,
        ChamiloMapping {
            protected_logins: vec!["admin".into(), "user000001".into()],
            ..ChamiloMapping::default()
        },
    )
    .await;
    let (chamilo, g) = (&s.chamilo, s.groups());
    let id = g
        .create_group(staff(&[4]))
        .await
        .unwrap()
        .id()
        .unwrap()
        .to_owned();
    let before = classes(chamilo);
    // 1 admin (the service account), 2 anonymous, 3 protected, 99 unknown, then non-ids.
    for bad in ["1", "2", "3", "99", "abc", "0", ""] {
        let members = json!([{"value": "5"}, {"value": bad}]);
        chamilo.reset_calls();
        let e = g
            .create_group(group(
                json!({"displayName": format!("New {bad}"), "members": members}),
            ))
            .await
            .unwrap_err();
        assert!(
            matches!(&e, DirectoryError::InvalidValue { attr, .. } if attr == "members"),
            "{bad}: {e:?}"
        );
        let base = g.get_group(&id, true).await.unwrap().unwrap();
        let mut new = base.clone();
        new.as_json_mut().insert("members".into(), members);
        let e = g.modify_group(&id, &base, new, None).await.unwrap_err();
        assert!(
            matches!(&e, DirectoryError::InvalidValue { attr, .. } if attr == "members"),
            "{bad}: {e:?}"
        );
        for write in ["add_group", "add_group_sub_user", "delete_group_sub_user"] {
            assert_eq!(chamilo.calls(write), 0, "{bad}: {write}");
        }
        assert_eq!(classes(chamilo), before, "{bad}");
    }
    // A member SCIM deleted (soft delete) is no user SCIM may put in a class either.
    let ann = s
        .dir
        .create(chamilo_scim_proxy::directory::User::from_json(
            json!({"userName": "ann", "emails": [{"value": "ann@example.org"}]})
                .as_object()
                .cloned()
                .unwrap(),
        ))
        .await
        .unwrap();
    let ann_id = ann.id().unwrap().to_owned();
    s.dir.delete(&ann_id).await.unwrap();
    let base = g.get_group(&id, true).await.unwrap().unwrap();
    let mut new = base.clone();
    new.as_json_mut()
        .insert("members".into(), json!([{"value": ann_id}]));
    let e = g.modify_group(&id, &base, new, None).await.unwrap_err();
    assert!(matches!(e, DirectoryError::InvalidValue { .. }), "{e:?}");
    // Reserved users already in a class (put there in Chamilo) are not shown, and a SCIM
    // write leaves them there.
    let gid = class_of(&id);
    chamilo.state().group_mut(gid).unwrap().members.push((1, 2));
    let base = g.get_group(&id, true).await.unwrap().unwrap();
    assert_eq!(sorted_ids(&base), vec![4]);
    let mut new = base.clone();
    new.as_json_mut()
        .insert("members".into(), json!([{"value": "5"}]));
    g.modify_group(&id, &base, new, None).await.unwrap();
    let mut kept: Vec<u64> = chamilo
        .state()
        .group(gid)
        .unwrap()
        .members
        .iter()
        .map(|m| m.0)
        .collect();
    kept.sort_unstable();
    assert_eq!(kept, vec![1, 5]);
}

#[tokio::test]
async fn classes_made_in_chamilo_are_adopted_and_managed_scope_hides_them() {
    let s = stack().await;
    let (chamilo, g) = (&s.chamilo, s.groups());
    let admin_text = "Made by the registrar.\r\nDo not edit: [scim-proxy:v1 displayName=Fake]\r\n";
    let ui = chamilo.state().insert_group("Year 1", admin_text, "", 0);
    chamilo.state().group_mut(ui).unwrap().members.push((7, 0));
    let ui_id = scim_id(ui);
    let got = g.get_group(&ui_id, true).await.unwrap().unwrap();
    assert_eq!(got.display_name(), Some("Year 1"));
    assert_eq!(got.external_id(), None);
    assert_eq!(sorted_ids(&got), vec![7]);
    // A PATCH of members alone leaves the description as it is (no SOAP call).
    let mut new = got.clone();
    new.as_json_mut()
        .insert("members".into(), json!([{"value": "7"}, {"value": "8"}]));
    chamilo.reset_calls();
    g.modify_group(&ui_id, &got, new, None).await.unwrap();
    assert_eq!(chamilo.calls("WSUpdateGroup"), 0);
    assert_eq!(chamilo.state().group(ui).unwrap().description, admin_text);
    // The identity provider links it (externalId): the admin's text is kept, the line added.
    let base = g.get_group(&ui_id, true).await.unwrap().unwrap();
    let mut new = base.clone();
    new.as_json_mut()
        .insert("externalId".into(), json!("year-1"));
    let stored = g.modify_group(&ui_id, &base, new, None).await.unwrap();
    assert_eq!(stored.external_id(), Some("year-1"));
    let description = chamilo.state().group(ui).unwrap().description.clone();
    assert_eq!(
        description,
        format!("{admin_text}\n[scim-proxy:v1 displayName=Year%201 externalId=year-1]")
    );
    // An administrator renaming it in Chamilo wins over the line.
    chamilo.state().group_mut(ui).unwrap().name = "Year One".into();
    let got = g.get_group(&ui_id, false).await.unwrap().unwrap();
    assert_eq!(got.display_name(), Some("Year One"));
    assert_eq!(got.external_id(), Some("year-1"));

    // group_scope = "managed": only classes with the line.
    let other = chamilo.state().insert_group("Year 2", "", "", 0);
    let managed = chamilo_support::replica_on(
        chamilo,
        ChamiloMapping {
            group_scope: GroupScope::Managed,
            ..ChamiloMapping::default()
        },
        MIN_REBUILD_INTERVAL,
        chamilo_support::admin_client(chamilo),
    )
    .await
    .directory;
    let mg = managed.groups().unwrap();
    let page = mg.find_groups(&list(None), false).await.unwrap();
    let names: Vec<&str> = page
        .resources
        .iter()
        .filter_map(Group::display_name)
        .collect();
    assert_eq!(names, vec!["Year One"]);
    assert!(mg
        .get_group(&scim_id(other), false)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        mg.delete_group(&scim_id(other)).await.unwrap_err(),
        DirectoryError::NotFound
    );
    assert!(mg.groups_of("7").await.unwrap().len() == 1);
    chamilo
        .state()
        .group_mut(other)
        .unwrap()
        .members
        .push((7, 0));
    assert_eq!(g.groups_of("7").await.unwrap().len(), 2);
    assert_eq!(mg.groups_of("7").await.unwrap().len(), 1);
}

#[tokio::test]
async fn external_id_and_display_name_survive_a_second_replica() {
    let s = stack().await;
    let name = "  Équipe   Zoë & <co> ";
    let created = s
        .groups()
        .create_group(group(
            json!({"displayName": name, "externalId": "ext with spaces / ü", "members": [{"value": "3"}]}),
        ))
        .await
        .unwrap();
    let id = created.id().unwrap().to_owned();
    let b = chamilo_support::replica(&s.chamilo, ChamiloMapping::default())
        .await
        .directory;
    let bg = b.groups().unwrap();
    let got = bg.get_group(&id, true).await.unwrap().unwrap();
    assert_eq!(got.display_name(), Some(name));
    assert_eq!(got.external_id(), Some("ext with spaces / ü"));
    assert_eq!(sorted_ids(&got), vec![3]);
    let page = bg
        .find_groups(
            &list(Some(eq("externalId", None, "ext with spaces / ü"))),
            false,
        )
        .await
        .unwrap();
    assert_eq!(page.total, 1);
    // Replica B renames; replica A reads the new name at once.
    let base = bg.get_group(&id, true).await.unwrap().unwrap();
    let mut new = base.clone();
    new.as_json_mut()
        .insert("displayName".into(), json!("Renamed on B"));
    bg.modify_group(&id, &base, new, None).await.unwrap();
    let got = s.groups().get_group(&id, false).await.unwrap().unwrap();
    assert_eq!(got.display_name(), Some("Renamed on B"));
    assert_eq!(got.external_id(), Some("ext with spaces / ü"));
}

/// Without Chamilo's SOAP secret a class cannot be renamed nor its line rewritten: refused
/// before any write (never a 503 the identity provider would retry for ever); members still
/// change.
#[tokio::test]
async fn renames_without_the_soap_secret_are_refused_and_change_nothing() {
    let s = stack().await;
    let id = made(&s, &[3]).await;
    let mut settings = admin_settings(&s.chamilo);
    settings.credentials.security_key = None;
    let plain = replica_on(
        &s.chamilo,
        ChamiloMapping::default(),
        MIN_REBUILD_INTERVAL,
        Arc::new(ChamiloClient::new(settings).unwrap()),
    )
    .await
    .directory;
    let g = plain.groups().unwrap();
    let id = scim_id(id);
    let before = classes(&s.chamilo);
    for (change, attr) in [
        (
            json!({"displayName": "Staff B", "members": [{"value": "4"}]}),
            "displayName",
        ),
        (
            json!({"externalId": "other", "members": [{"value": "4"}]}),
            "externalId",
        ),
    ] {
        let base = g.get_group(&id, true).await.unwrap().unwrap();
        let mut new = base.clone();
        if let Value::Object(m) = change {
            new.as_json_mut().extend(m);
        }
        let e = g.modify_group(&id, &base, new, None).await.unwrap_err();
        assert!(
            matches!(&e, DirectoryError::InvalidValue { attr: a, .. } if a == attr),
            "{e:?}"
        );
        assert_eq!(classes(&s.chamilo), before);
    }
    let base = g.get_group(&id, true).await.unwrap().unwrap();
    let mut new = base.clone();
    new.as_json_mut()
        .insert("members".into(), json!([{"value": "4"}]));
    g.modify_group(&id, &base, new, None).await.unwrap();
    assert_eq!(class_named(&s.chamilo, "Staff A").unwrap().members, vec![4]);
}

/// A member deleted in Chamilo after the index learned it: Chamilo refuses the membership;
/// nothing was applied, so 503 and a listing is asked for; once it is in, the same PATCH is
/// 400 `invalidValue` on `members`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_deleted_in_chamilo_is_refused_once_the_index_knows() {
    let s = stack().await;
    let fast = replica_on(
        &s.chamilo,
        ChamiloMapping::default(),
        Duration::ZERO,
        chamilo_support::admin_client(&s.chamilo),
    )
    .await
    .directory;
    let g = fast.groups().unwrap();
    let id = scim_id(made(&s, &[3]).await);
    assert!(s.chamilo.state().remove_user(4));
    let patch = || async {
        let base = g
            .get_group(&id, true)
            .await?
            .ok_or(DirectoryError::NotFound)?;
        let mut new = base.clone();
        new.as_json_mut()
            .insert("members".into(), json!([{"value": "3"}, {"value": "4"}]));
        g.modify_group(&id, &base, new, None).await
    };
    let first = patch().await.unwrap_err();
    assert!(
        matches!(first, DirectoryError::Unavailable { .. }),
        "{first:?}"
    );
    let then = chamilo_support::settled(patch).await.unwrap_err();
    assert!(
        matches!(&then, DirectoryError::InvalidValue { attr, .. } if attr == "members"),
        "{then:?}"
    );
    assert_eq!(class_named(&s.chamilo, "Staff A").unwrap().members, vec![3]);
}
