//! The stand-in's classes and courses over HTTP, beyond what the transcript replay
//! (`standin_fidelity.rs`) shows exchange by exchange: the documented class behaviours in one
//! place, fault injection on the group actions and `WSUpdateGroup`, and that a class
//! membership subscribes to no course (`chamilo-api.md`, "Classes and courses").

use std::time::Duration;

use chamilo_scim_proxy::chamilo::ChamiloClient;
use chamilo_scim_proxy::standin::{Fault, FaultKind, Standin, StandinConfig, StandinHandle};
use serde_json::{json, Value};

async fn start() -> StandinHandle {
    let _ = rustls::crypto::ring::default_provider().install_default();
    Standin::start(StandinConfig {
        seed_users: 5,
        ..StandinConfig::default()
    })
    .await
    .expect("start")
}

/// One REST call as admin; returns the HTTP status and the body (JSON, or `Null` when empty).
async fn call(chamilo: &StandinHandle, action: &str, fields: &[(&str, &str)]) -> (u16, Value) {
    let mut form: Vec<(&str, &str)> = vec![
        ("action", action),
        ("username", "admin"),
        ("api_key", &chamilo.admin_api_key),
    ];
    form.extend_from_slice(fields);
    let resp = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .expect("client")
        .post(chamilo.rest_url())
        .form(&form)
        .send()
        .await
        .expect("answer");
    let status = resp.status().as_u16();
    let body = resp.bytes().await.expect("body");
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn data(v: Value) -> Value {
    json!({"error": false, "data": v})
}

fn refused(message: &str) -> Value {
    json!({"error": true, "message": message})
}

#[tokio::test]
async fn documented_class_behaviours() {
    let chamilo = start().await;
    let (_, made) = call(
        &chamilo,
        "add_group",
        &[("name", "ClassA"), ("description", "d")],
    )
    .await;
    assert_eq!(made, data(json!([1])));
    // A duplicate name, whatever its case.
    let (_, dup) = call(&chamilo, "add_group", &[("name", "classa")]).await;
    assert_eq!(dup, refused("classa Already exists"));
    // Re-adding a member with another role keeps the old role.
    for (user, role) in [("3", "1"), ("4", "2"), ("3", "2")] {
        let (_, added) = call(
            &chamilo,
            "add_group_sub_user",
            &[("group_id", "1"), ("user_id", user), ("role", role)],
        )
        .await;
        assert_eq!(added, data(json!([true])));
    }
    assert_eq!(
        chamilo.state().group(1).unwrap().members,
        vec![(3, 1), (4, 2)]
    );
    // Removing a non-member answers like a real removal.
    let (_, removed) = call(
        &chamilo,
        "delete_group_sub_user",
        &[("group_id", "1"), ("user_id", "6")],
    )
    .await;
    assert_eq!(removed, data(json!([{}])));
    // A missing group id is a PHP fatal.
    let (status, body) = call(&chamilo, "get_group_sub_users", &[]).await;
    assert_eq!((status, body), (500, Value::Null));
    let (_, unknown) = call(&chamilo, "get_group_sub_users", &[("id", "99")]).await;
    assert_eq!(unknown, data(json!([])));
    // Deleting a missing group; deleting a class keeps its users.
    let (_, gone) = call(&chamilo, "delete_group", &[("id", "1")]).await;
    assert_eq!(gone, data(json!([1])));
    let (_, again) = call(&chamilo, "delete_group", &[("id", "1")]).await;
    assert_eq!(again, refused("NotDeleted"));
    assert!(chamilo.state().user(3).is_some());
    let (_, of_user) = call(&chamilo, "get_user_sub_group", &[("user_id", "3")]).await;
    assert_eq!(of_user, data(json!({"groups": []})));
}

#[tokio::test]
async fn a_class_member_is_subscribed_to_no_course() {
    let chamilo = start().await;
    call(&chamilo, "add_group", &[("name", "ClassA")]).await;
    let (_, course) = call(
        &chamilo,
        "save_course",
        &[("title", "C"), ("wanted_code", "C")],
    )
    .await;
    assert_eq!(course["data"]["id"], 1);
    call(
        &chamilo,
        "add_group_sub_user",
        &[("group_id", "1"), ("user_id", "3")],
    )
    .await;
    let (_, users) = call(
        &chamilo,
        "get_users_subscribed_to_course",
        &[("course", "1")],
    )
    .await;
    let ids: Vec<&Value> = users["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| &u["user_id"])
        .collect();
    assert_eq!(ids, vec![&json!(1)], "only the course's creator");
    // Enrolment is its own call: every failure is [false] with error:false, and removing a
    // non-member is [true].
    for (i, fields) in [
        [("course_id", "1"), ("user_id", "3")],
        [("course_id", "1"), ("user_id", "3")],
        [("course_id", "9"), ("user_id", "3")],
        [("course_id", "1"), ("user_id", "999")],
    ]
    .iter()
    .enumerate()
    {
        let (_, answer) = call(&chamilo, "subscribe_user_to_course", fields).await;
        assert_eq!(answer, data(json!([i == 0])), "{fields:?}");
    }
    let (_, answer) = call(
        &chamilo,
        "unsubscribe_user_from_course",
        &[("course_id", "1"), ("user_id", "4")],
    )
    .await;
    assert_eq!(answer, data(json!([true])));
}

/// Every group action can be made to fail like the user actions; `applied` faults apply it.
#[tokio::test]
async fn faults_hit_the_group_actions() {
    let chamilo = start().await;
    let mut settings = chamilo_scim_proxy::chamilo::client::ClientSettings::new(
        chamilo.base_url.clone(),
        chamilo_scim_proxy::chamilo::Credentials {
            username: "admin".into(),
            api_key: Some(chamilo_scim_proxy::config::Secret::new(
                chamilo.admin_api_key.clone(),
            )),
            password: None,
            security_key: Some(chamilo_scim_proxy::config::Secret::new(
                chamilo.security_key.clone(),
            )),
        },
    );
    settings.request_timeout = Duration::from_millis(300);
    let client = ChamiloClient::new(settings).unwrap();
    let gid = client.add_group("ClassA", "").await.unwrap();
    for action in [
        "get_groups",
        "add_group_sub_user",
        "delete_group_sub_user",
        "get_group_sub_users",
        "get_user_sub_group",
        "WSUpdateGroup",
        "delete_group",
    ] {
        for kind in [
            FaultKind::Refuse {
                message: "injected".into(),
            },
            FaultKind::Fatal,
            FaultKind::HtmlPage,
            FaultKind::Drop { applied: false },
        ] {
            chamilo.inject_fault(Fault::nth_of(action, 1, kind.clone()));
            let failed = match action {
                "get_groups" => client.get_groups(Some(0)).await.is_err(),
                "add_group_sub_user" => client.add_group_member(gid, 3, 2).await.is_err(),
                "delete_group_sub_user" => client.remove_group_member(gid, 3).await.is_err(),
                "get_group_sub_users" => client.group_members(gid).await.is_err(),
                "get_user_sub_group" => client.user_groups(3).await.is_err(),
                "WSUpdateGroup" => client.update_group(gid, "Renamed", Some("")).await.is_err(),
                _ => client.delete_group(gid).await.is_err(),
            };
            chamilo.clear_faults();
            assert!(failed, "{action} / {kind:?}");
            let state = chamilo.state();
            let g = state
                .group(gid)
                .expect("not applied: the class is still there");
            assert_eq!(g.name, "ClassA", "{action} / {kind:?}: not applied");
            assert!(g.members.is_empty(), "{action} / {kind:?}: not applied");
        }
    }
    // Applied, then the answer lost.
    chamilo.inject_fault(Fault::nth_of(
        "add_group_sub_user",
        1,
        FaultKind::Drop { applied: true },
    ));
    assert!(client.add_group_member(gid, 3, 2).await.is_err());
    assert_eq!(chamilo.state().group(gid).unwrap().members, vec![(3, 2)]);
    chamilo.inject_fault(Fault::nth_of(
        "WSUpdateGroup",
        1,
        FaultKind::Timeout { applied: true },
    ));
    assert!(client.update_group(gid, "Renamed", Some("")).await.is_err());
    assert_eq!(chamilo.state().group(gid).unwrap().name, "Renamed");
}
