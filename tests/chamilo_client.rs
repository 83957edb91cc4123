//! The Chamilo web-service client against the stand-in on a loopback port: every action the
//! proxy uses, each error class, re-authentication, the SOAP secret and call counting.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chamilo_scim_proxy::chamilo::client::{
    CallObserver, ClientSettings, Credentials, DeleteOutcome, NewAccount,
};
use chamilo_scim_proxy::chamilo::{CallOutcome, ChamiloClient, ChamiloError};
use chamilo_scim_proxy::config::Secret;
use chamilo_scim_proxy::standin::state::STATUS_TEACHER;
use chamilo_scim_proxy::standin::{Injected, NewUser, Standin, StandinConfig, StandinHandle};

fn creds(chamilo: &StandinHandle) -> Credentials {
    Credentials {
        username: "admin".into(),
        api_key: Some(Secret::new(chamilo.admin_api_key.clone())),
        password: None,
        security_key: Some(Secret::new(chamilo.security_key.clone())),
    }
}

fn client(chamilo: &StandinHandle, credentials: Credentials) -> ChamiloClient {
    ChamiloClient::new(ClientSettings::new(chamilo.base_url.clone(), credentials)).unwrap()
}

fn account(login: &str, handle: &str) -> NewAccount {
    NewAccount {
        username: login.into(),
        password: Secret::new("A-long-random-password-1"),
        firstname: "Ann".into(),
        lastname: "Lee".into(),
        email: format!("{login}@example.org"),
        status: 5,
        language: Some("french".into()),
        phone: None,
        auth_source: None,
        expiration_date: None,
        handle: Some(("scim_handle".into(), handle.into())),
        extra: vec![("scim_external_id".into(), format!("ext-{login}"))],
    }
}

#[tokio::test]
async fn user_lifecycle_through_rest() {
    let chamilo = Standin::start(StandinConfig::default()).await.unwrap();
    let c = client(&chamilo, creds(&chamilo));

    c.check_capabilities().await.unwrap();
    assert_eq!(
        chamilo.calls("get_users"),
        1,
        "the check lists only the anonymous user"
    );

    let id = c.save_user(&account("ann.lee", "h-1")).await.unwrap();
    assert!(c.username_exists("ANN.LEE").await.unwrap());
    assert!(!c.username_exists("nobody").await.unwrap());

    let found = c
        .users_by_extra_field("scim_external_id", "EXT-ANN.LEE", false)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, id);
    assert_eq!(found[0].username, "ann.lee");
    assert_eq!(found[0].status, 5);

    c.update_user(
        "ann.lee",
        &[
            ("active", "0".into()),
            ("official_code", "EMP-1".into()),
            ("firstname", "Anna".into()),
        ],
        &[("scim_external_id".into(), "ext-2".into())],
    )
    .await
    .unwrap();
    {
        let state = chamilo.state();
        let u = state.user(id).unwrap();
        assert_eq!(u.active, 0);
        assert_eq!(u.official_code, "EMP-1");
        assert_eq!(u.firstname.as_deref(), Some("Anna"));
        assert_eq!(u.lastname, "Lee", "partial update keeps other fields");
        assert_eq!(u.language, "french");
    }
    assert!(c
        .users_by_extra_field("scim_external_id", "ext-2", true)
        .await
        .unwrap()
        .is_empty());

    let listed = c.get_users(None, &["scim_external_id"]).await.unwrap();
    let ann = listed.iter().find(|u| u.id == id).unwrap();
    assert!(!ann.active);
    assert_eq!(ann.extra_value("scim_external_id"), Some("ext-2"));
    assert!(listed.iter().any(|u| u.username == "admin"));

    assert_eq!(c.delete_user(id).await.unwrap(), DeleteOutcome::Deleted);
    assert!(!c.username_exists("ann.lee").await.unwrap());
    // Chamilo reports success for an id that does not exist.
    assert_eq!(c.delete_user(id).await.unwrap(), DeleteOutcome::Deleted);
}

#[tokio::test]
async fn refusals_are_classified() {
    let chamilo = Standin::start(StandinConfig::default()).await.unwrap();
    let c = client(&chamilo, creds(&chamilo));

    c.save_user(&account("bob", "h-b")).await.unwrap();
    let taken = c.save_user(&account("BOB", "h-b2")).await.unwrap_err();
    assert!(matches!(taken, ChamiloError::LoginTaken { .. }), "{taken}");

    let mut bad = account("carl", "h-c");
    bad.email = "not-an-email".into();
    match c.save_user(&bad).await.unwrap_err() {
        ChamiloError::Rejected { message, .. } => assert_eq!(message, "User not registered."),
        other => panic!("{other}"),
    }

    let missing = c
        .update_user("nobody", &[("firstname", "X".into())], &[])
        .await
        .unwrap_err();
    assert!(
        matches!(missing, ChamiloError::NotFound { .. }),
        "{missing}"
    );

    // Refused before any call: Chamilo would abort the whole update.
    let before = chamilo.calls("update_user_from_username");
    let unsupported = c
        .update_user("bob", &[("password", "x".into())], &[])
        .await
        .unwrap_err();
    assert!(matches!(unsupported, ChamiloError::Rejected { .. }));
    assert_eq!(chamilo.calls("update_user_from_username"), before);

    let lang = c
        .update_user("bob", &[("language", "fr".into())], &[])
        .await
        .unwrap_err();
    assert!(
        matches!(&lang, ChamiloError::Rejected { message, .. } if message == "Language unavailable."),
        "{lang}"
    );

    // Only teacher of a course: Chamilo keeps the user.
    let teacher = c.save_user(&account("teach", "h-t")).await.unwrap();
    {
        let mut state = chamilo.state();
        let course = state.insert_course("C1", "Course").unwrap();
        state
            .course_mut(course)
            .unwrap()
            .users
            .push((teacher, STATUS_TEACHER));
    }
    assert_eq!(
        c.delete_user(teacher).await.unwrap(),
        DeleteOutcome::Refused
    );
    assert!(chamilo.state().user(teacher).is_some());
}

#[tokio::test]
async fn password_login_and_reauthentication() {
    let chamilo = Standin::start(StandinConfig::default()).await.unwrap();
    // A stale key plus the password: the first call fails with Invalid API key, the client
    // authenticates and retries.
    let c = client(
        &chamilo,
        Credentials {
            username: "admin".into(),
            api_key: Some(Secret::new("0123456789abcdef0123456789abcdef")),
            password: Some(Secret::new(chamilo.admin_password.clone())),
            security_key: None,
        },
    );
    assert!(!c.username_exists("ghost").await.unwrap());
    assert_eq!(chamilo.calls("authenticate"), 1);
    assert_eq!(chamilo.calls("username_exist"), 2);
    assert!(!c.username_exists("ghost").await.unwrap());
    assert_eq!(chamilo.calls("authenticate"), 1, "the new key is kept");

    // Password only: authenticate on first use.
    let c = client(
        &chamilo,
        Credentials {
            username: "admin".into(),
            api_key: None,
            password: Some(Secret::new(chamilo.admin_password.clone())),
            security_key: None,
        },
    );
    c.check_capabilities().await.unwrap();
    assert_eq!(chamilo.calls("authenticate"), 2);

    // A wrong key and no password: Unauthorized, no secret in the message.
    let c = client(
        &chamilo,
        Credentials {
            username: "admin".into(),
            api_key: Some(Secret::new("0123456789abcdef0123456789abcdef")),
            password: None,
            security_key: None,
        },
    );
    let e = c.username_exists("x").await.unwrap_err();
    assert!(matches!(e, ChamiloError::Unauthorized { .. }), "{e}");
    assert!(!e.to_string().contains("0123456789abcdef"));

    // A wrong password.
    let c = client(
        &chamilo,
        Credentials {
            username: "admin".into(),
            api_key: None,
            password: Some(Secret::new("wrong")),
            security_key: None,
        },
    );
    assert!(matches!(
        c.username_exists("x").await.unwrap_err(),
        ChamiloError::Unauthorized { .. }
    ));
}

#[tokio::test]
async fn capability_check_refuses_a_non_admin_account() {
    let chamilo = Standin::start(StandinConfig::default()).await.unwrap();
    chamilo
        .state()
        .insert_user(NewUser {
            username: "teacher1".into(),
            lastname: "T".into(),
            email: "t@example.org".into(),
            password: "Secret123".into(),
            status: 1,
            ..NewUser::default()
        })
        .unwrap();
    let c = client(
        &chamilo,
        Credentials {
            username: "teacher1".into(),
            api_key: None,
            password: Some(Secret::new("Secret123")),
            security_key: None,
        },
    );
    match c.check_capabilities().await.unwrap_err() {
        ChamiloError::Incompatible { detail } => {
            assert!(
                detail.contains("not a Chamilo platform administrator"),
                "{detail}"
            )
        }
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn transport_failures() {
    let chamilo = Standin::start(StandinConfig::default()).await.unwrap();
    let mut settings = ClientSettings::new(chamilo.base_url.clone(), creds(&chamilo));
    settings.request_timeout = Duration::from_millis(200);
    let c = ChamiloClient::new(settings).unwrap();

    chamilo.set_latency(Duration::from_secs(2));
    let e = c.username_exists("x").await.unwrap_err();
    assert!(matches!(e, ChamiloError::Timeout { .. }), "{e}");
    chamilo.set_latency(Duration::ZERO);

    chamilo.inject(Some(Injected::HtmlErrorPage));
    let e = c.username_exists("x").await.unwrap_err();
    assert!(
        matches!(&e, ChamiloError::Unexpected { detail, .. } if detail.contains("HTML")),
        "{e}"
    );
    chamilo.inject(Some(Injected::Fatal));
    let e = c.username_exists("x").await.unwrap_err();
    assert!(
        matches!(&e, ChamiloError::Unexpected { action, detail } if action == "username_exist" && detail.contains("HTTP 500")),
        "{e}"
    );
    chamilo.inject(None);
    assert!(!c.username_exists("x").await.unwrap());

    chamilo.stop().await;
    let e = c.username_exists("x").await.unwrap_err();
    assert!(matches!(e, ChamiloError::Unreachable { .. }), "{e}");
}

#[tokio::test]
async fn soap_rename_and_password_change() {
    let chamilo = Standin::start(StandinConfig::default()).await.unwrap();
    let c = client(&chamilo, creds(&chamilo));
    let id = c.save_user(&account("dan", "h-dan")).await.unwrap();
    c.save_user(&account("other", "h-other")).await.unwrap();

    let secret = Secret::new("DanielNew456");
    assert!(c
        .edit_user_credentials("scim_handle", "h-dan", "daniel.s", Some(&secret))
        .await
        .unwrap());
    {
        let state = chamilo.state();
        let u = state.user(id).unwrap();
        assert_eq!(u.username, "daniel.s");
        assert_eq!(u.password, "DanielNew456");
    }
    // Taken (case-insensitively), unknown handle, inactive user: 0.
    assert!(!c
        .edit_user_credentials("scim_handle", "h-dan", "OTHER", None)
        .await
        .unwrap());
    assert!(!c
        .edit_user_credentials("scim_handle", "h-nobody", "zzz", None)
        .await
        .unwrap());
    chamilo.state().set_active(id, false);
    assert!(!c
        .edit_user_credentials("scim_handle", "h-dan", "dan2", None)
        .await
        .unwrap());
    assert_eq!(chamilo.calls("WSEditUserCredentials"), 4);
    assert_eq!(c.calls("WSEditUserCredentials"), 4);

    // A wrong security key: refused, and the error carries no secret.
    let mut wrong = creds(&chamilo);
    wrong.security_key = Some(Secret::new("not-the-key"));
    let bad = client(&chamilo, wrong);
    let e = bad
        .edit_user_credentials("scim_handle", "h-dan", "x", None)
        .await
        .unwrap_err();
    assert!(matches!(e, ChamiloError::Unauthorized { .. }), "{e}");
    assert!(!e.to_string().contains("not-the-key"));

    // Without X-Forwarded-For the secret must use the socket address.
    let mut settings = ClientSettings::new(chamilo.base_url.clone(), creds(&chamilo));
    settings.soap_send_forwarded_for = false;
    settings.soap_ip = "127.0.0.1".into();
    let direct = ChamiloClient::new(settings).unwrap();
    chamilo.state().set_active(id, true);
    assert!(direct
        .edit_user_credentials("scim_handle", "h-dan", "dan3", None)
        .await
        .unwrap());

    // No security key configured: a configuration error, no call.
    let mut none = creds(&chamilo);
    none.security_key = None;
    let before = chamilo.calls("WSEditUserCredentials");
    let e = client(&chamilo, none)
        .edit_user_credentials("scim_handle", "h-dan", "x", None)
        .await
        .unwrap_err();
    assert!(matches!(e, ChamiloError::Config { .. }));
    assert_eq!(chamilo.calls("WSEditUserCredentials"), before);
}

#[tokio::test]
async fn classes() {
    let chamilo = Standin::start(StandinConfig::default()).await.unwrap();
    let c = client(&chamilo, creds(&chamilo));
    let ann = c.save_user(&account("ann", "h-a")).await.unwrap();
    let g = c.add_group("ClassA", "first").await.unwrap();
    assert!(c
        .add_group("classa", "")
        .await
        .unwrap_err()
        .is_duplicate_name());
    c.add_group_member(g, ann, 2).await.unwrap();
    c.add_group_member(g, ann, 1).await.unwrap();
    let members = c.group_members(g).await.unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!((members[0].user_id, members[0].relation_type), (ann, 2));
    assert_eq!(c.user_groups(ann).await.unwrap(), vec![g]);
    assert!(matches!(
        c.add_group_member(999, ann, 2).await.unwrap_err(),
        ChamiloError::NotFound { .. }
    ));
    c.update_group(g, "ClassA1", None).await.unwrap();
    let groups = c.get_groups(Some(0)).await.unwrap();
    assert_eq!(groups[0].name, "ClassA1");
    assert_eq!(groups[0].description, "first");
    c.remove_group_member(g, ann).await.unwrap();
    assert!(c.group_members(g).await.unwrap().is_empty());
    c.delete_group(g).await.unwrap();
    assert!(matches!(
        c.delete_group(g).await.unwrap_err(),
        ChamiloError::NotFound { .. }
    ));
}

#[derive(Default)]
struct Recorder(Mutex<Vec<(String, CallOutcome)>>);

impl CallObserver for Recorder {
    fn observe(&self, action: &str, outcome: CallOutcome, _elapsed: Duration) {
        self.0.lock().unwrap().push((action.to_owned(), outcome));
    }
}

#[tokio::test]
async fn calls_are_counted_and_observed() {
    let chamilo = Standin::start(StandinConfig {
        seed_users: 1000,
        ..StandinConfig::default()
    })
    .await
    .unwrap();
    let recorder = Arc::new(Recorder::default());
    let c = client(&chamilo, creds(&chamilo)).with_observer(recorder.clone());
    let users = c.get_users(None, &["ext_id"]).await.unwrap();
    assert_eq!(users.len(), 1002);
    assert_eq!(
        users
            .iter()
            .find(|u| u.username == "user000500")
            .and_then(|u| u.extra_value("ext_id")),
        Some("EXT-000500")
    );
    let _ = c.username_exists("user000001").await.unwrap();
    let _ = c.save_user(&account("user000001", "h")).await.unwrap_err();
    assert_eq!(c.calls("get_users"), 1);
    assert_eq!(c.calls("username_exist"), 1);
    assert_eq!(chamilo.calls("get_users"), 1);
    let seen = recorder.0.lock().unwrap().clone();
    assert_eq!(
        seen,
        vec![
            ("get_users".to_owned(), CallOutcome::Ok),
            ("username_exist".to_owned(), CallOutcome::Ok),
            ("save_user".to_owned(), CallOutcome::Refused),
        ]
    );
}

#[tokio::test]
async fn listing_cost_grows_with_users() {
    let chamilo = Standin::start(StandinConfig {
        listing_cost_per_user: Duration::from_micros(100),
        seed_users: 2000,
        ..StandinConfig::default()
    })
    .await
    .unwrap();
    let c = client(&chamilo, creds(&chamilo));
    chamilo.reset_calls();
    let started = std::time::Instant::now();
    c.get_users(None, &[]).await.unwrap();
    // 2002 users × 100 µs, charged as a wait the client really sits through.
    assert_eq!(chamilo.modelled_time(), Duration::from_micros(200_200));
    assert!(started.elapsed() >= Duration::from_micros(200_200));
    chamilo.reset_calls();
    c.username_exists("user000001").await.unwrap();
    assert!(
        chamilo.modelled_time() <= Duration::from_micros(100),
        "a keyed lookup is not charged per listed user: {:?}",
        chamilo.modelled_time()
    );
}

/// Chamilo 1.11 reads each requested extra field of each listed user with its own query: the
/// stand-in charges and counts it that way, so a bench shows what a listing with extra fields
/// costs a real Chamilo.
#[tokio::test]
async fn extra_fields_are_charged_and_counted_per_user() {
    let chamilo = Standin::start(StandinConfig {
        extra_field_cost_per_user: Duration::from_micros(100),
        seed_users: 998,
        ..StandinConfig::default()
    })
    .await
    .unwrap();
    chamilo.state().ensure_extra_field("f1");
    chamilo.state().ensure_extra_field("f2");
    let c = client(&chamilo, creds(&chamilo));
    // 1000 users (998 + admin + anonymous).
    let users = c.get_users(None, &[]).await.unwrap().len() as u64;
    chamilo.reset_calls();
    c.get_users(None, &[]).await.unwrap();
    assert_eq!(chamilo.queries(), 1, "a bare listing is one query");
    assert_eq!(chamilo.modelled_time(), Duration::ZERO);
    chamilo.reset_calls();
    let started = std::time::Instant::now();
    c.get_users(None, &["f1", "f2"]).await.unwrap();
    assert_eq!(chamilo.queries(), 1 + 2 * users);
    // users × 2 fields × 100 µs, charged as a wait the client really sits through (a floor:
    // comparing with the bare listing's time would depend on the machine's load).
    let charged = Duration::from_micros(100 * 2 * users);
    assert_eq!(chamilo.modelled_time(), charged);
    assert!(started.elapsed() >= charged);
    chamilo.reset_calls();
    c.username_exists("user000001").await.unwrap();
    assert_eq!(chamilo.queries(), 1);
}

#[tokio::test]
async fn streamed_listing_matches_the_whole_listing_and_classifies_failures() {
    let chamilo = Standin::start(StandinConfig {
        seed_users: 300,
        ..StandinConfig::default()
    })
    .await
    .unwrap();
    let c = client(&chamilo, creds(&chamilo));
    let fields = ["ext_id", "no_such_field"];
    let whole = c.get_users(None, &fields).await.unwrap();
    let mut streamed = Vec::new();
    let n = c
        .get_users_each(None, &fields, |u| streamed.push(u))
        .await
        .unwrap();
    assert_eq!(n, whole.len());
    assert_eq!(n, 302);
    assert_eq!(streamed, whole);
    assert!(streamed[5].extra_value("ext_id").is_some());

    chamilo.inject(Some(Injected::HtmlErrorPage));
    let e = c.get_users_each(None, &[], |_| {}).await.unwrap_err();
    assert!(
        matches!(&e, ChamiloError::Unexpected { detail, .. } if detail.contains("HTML")),
        "{e}"
    );
    chamilo.inject(Some(Injected::Fatal));
    let e = c.get_users_each(None, &[], |_| {}).await.unwrap_err();
    assert!(
        matches!(&e, ChamiloError::Unexpected { action, detail } if action == "get_users" && detail.contains("HTTP 500")),
        "{e}"
    );
    chamilo.inject(None);

    // A refusal in the envelope is classified as for any other call.
    let bad = client(
        &chamilo,
        Credentials {
            username: "admin".into(),
            api_key: Some(Secret::new("0123456789abcdef0123456789abcdef")),
            password: None,
            security_key: None,
        },
    );
    let e = bad.get_users_each(None, &[], |_| {}).await.unwrap_err();
    assert!(matches!(e, ChamiloError::Unauthorized { .. }), "{e}");
}
