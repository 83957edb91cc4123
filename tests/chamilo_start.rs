//! `Backend::start` / `is_ready` against the stand-in: the capability check refuses with a
//! message saying what is missing, the extra fields are created (or their absence explained),
//! and readiness follows the first index listing.

use std::time::Duration;

use chamilo_scim_proxy::chamilo::{Backend, ChamiloError};
use chamilo_scim_proxy::config::Config;
use chamilo_scim_proxy::directory::Directory;
use chamilo_scim_proxy::standin::{NewUser, Standin, StandinConfig, StandinHandle};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn backend(chamilo: &StandinHandle, extra: &str) -> Backend {
    let text = format!(
        "[chamilo]\nurl = \"{}\"\nusername = \"admin\"\napi_key = \"{}\"\nsecurity_key = \"{}\"\n{extra}",
        chamilo.base_url, chamilo.admin_api_key, chamilo.security_key
    );
    let config: Config = toml::from_str(&text).unwrap();
    Backend::from_config(&config.chamilo, "http://127.0.0.1:9").unwrap()
}

async fn wait_ready(b: &Backend) -> bool {
    for _ in 0..200 {
        if b.is_ready() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn start_creates_missing_extra_fields_and_becomes_ready() {
    let chamilo = Standin::start(StandinConfig {
        seed_users: 5,
        ..StandinConfig::default()
    })
    .await
    .unwrap();
    assert!(chamilo.state().extra_field("scim_user_name").is_none());
    let users_before = chamilo.state().user_count();
    let b = backend(&chamilo, "");
    assert!(!b.is_ready());
    let stop = CancellationToken::new();
    let refresh = b.start(stop.clone()).await.unwrap();
    assert!(chamilo.state().extra_field("scim_user_name").is_some());
    assert!(chamilo.state().extra_field("scim_external_id").is_some());
    assert!(chamilo.state().extra_field("scim_attributes").is_some());
    // The placeholder account used to create them is gone.
    assert_eq!(chamilo.state().user_count(), users_before);
    assert!(wait_ready(&b).await);

    // Adoption can now write the field on an account made outside SCIM.
    let id = chamilo.state().user_by_username("user000002").unwrap().id;
    let user = chamilo_scim_proxy::directory::User::from_json(
        json!({
            "userName": "user000002",
            "externalId": "hr-2",
            "emails": [{"value": "user000002@example.org", "primary": true}],
            "active": true
        })
        .as_object()
        .unwrap()
        .clone(),
    );
    b.directory
        .replace(&id.to_string(), user, None)
        .await
        .unwrap();
    assert_eq!(
        chamilo
            .state()
            .user(id)
            .unwrap()
            .extra
            .get("scim_external_id")
            .cloned()
            .flatten()
            .as_deref(),
        Some("hr-2")
    );

    // A second start finds the fields and creates nothing.
    chamilo.reset_calls();
    let again = backend(&chamilo, "");
    let refresh2 = again.start(stop.clone()).await.unwrap();
    assert_eq!(chamilo.calls("save_user"), 0);
    stop.cancel();
    refresh.await.unwrap();
    refresh2.await.unwrap();
}

#[tokio::test]
async fn start_explains_missing_fields_when_told_not_to_create_them() {
    let chamilo = Standin::start(StandinConfig::default()).await.unwrap();
    let b = backend(&chamilo, "create_extra_fields = false\n");
    match b.start(CancellationToken::new()).await.unwrap_err() {
        ChamiloError::Incompatible { detail } => {
            assert!(detail.contains("scim_user_name"), "{detail}");
            assert!(detail.contains("scim_external_id"), "{detail}");
            assert!(detail.contains("scim_attributes"), "{detail}");
        }
        other => panic!("{other}"),
    }
    assert_eq!(chamilo.calls("save_user"), 0);
    assert!(!b.is_ready());
}

#[tokio::test]
async fn start_refuses_a_service_account_that_is_not_an_administrator() {
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
    let text = format!(
        "[chamilo]\nurl = \"{}\"\nusername = \"teacher1\"\npassword = \"Secret123\"\n",
        chamilo.base_url
    );
    let config: Config = toml::from_str(&text).unwrap();
    let b = Backend::from_config(&config.chamilo, "http://127.0.0.1:9").unwrap();
    match b.start(CancellationToken::new()).await.unwrap_err() {
        ChamiloError::Incompatible { detail } => {
            assert!(detail.contains("platform administrator"), "{detail}")
        }
        other => panic!("{other}"),
    }
    assert!(!b.is_ready());
}

/// The SOAP secret is checked once at start-up (issue 9): a wrong `security_key` stops the
/// start with a message naming both settings it depends on, and changes nothing; the right
/// one costs one `WSEditUserCredentials` that renames no one.
#[tokio::test]
async fn start_checks_the_soap_secret_once() {
    let chamilo = Standin::start(StandinConfig {
        seed_users: 3,
        ..StandinConfig::default()
    })
    .await
    .unwrap();
    let wrong = format!(
        "[chamilo]\nurl = \"{}\"\nusername = \"admin\"\napi_key = \"{}\"\nsecurity_key = \"not-the-key\"\n",
        chamilo.base_url, chamilo.admin_api_key
    );
    let config: Config = toml::from_str(&wrong).unwrap();
    let b = Backend::from_config(&config.chamilo, "http://127.0.0.1:9").unwrap();
    match b.start(CancellationToken::new()).await.unwrap_err() {
        ChamiloError::Unauthorized { detail, .. } => {
            assert!(
                detail.contains("security_key") && detail.contains("soap_ip"),
                "{detail}"
            );
        }
        other => panic!("{other}"),
    }
    assert!(!b.is_ready());
    assert_eq!(chamilo.calls("WSEditUserCredentials"), 1);

    let logins = |c: &StandinHandle| {
        let mut l: Vec<String> = c.state().users().map(|u| u.username.clone()).collect();
        l.sort();
        l
    };
    let before = logins(&chamilo);
    let b = backend(&chamilo, "");
    let stop = CancellationToken::new();
    b.start(stop.clone()).await.unwrap();
    assert_eq!(chamilo.calls("WSEditUserCredentials"), 2);
    assert_eq!(logins(&chamilo), before, "the check renamed no one");
    assert!(wait_ready(&b).await);
    stop.cancel();

    // Without a security_key there is nothing to check (and changePassword is not offered).
    let text = format!(
        "[chamilo]\nurl = \"{}\"\nusername = \"admin\"\napi_key = \"{}\"\n",
        chamilo.base_url, chamilo.admin_api_key
    );
    let config: Config = toml::from_str(&text).unwrap();
    let b = Backend::from_config(&config.chamilo, "http://127.0.0.1:9").unwrap();
    b.start(CancellationToken::new()).await.unwrap();
    assert_eq!(chamilo.calls("WSEditUserCredentials"), 2);
}

/// Issue 15 §3: before the index holds its first listing (which takes minutes at 100k
/// accounts on a real Chamilo), lookups by userName and externalId and creates answer from
/// fresh calls, while what needs the index — lists, other filters, requests by id, an
/// existing login that may be adopted — answers 503 with `Retry-After`.
#[tokio::test]
async fn before_the_first_listing_keyed_lookups_and_creates_answer() {
    use chamilo_scim_proxy::directory::query::{AttrPath, CompValue, CompareOp, Filter};
    use chamilo_scim_proxy::directory::{DirectoryError, ListQuery, User};

    let chamilo = Standin::start(StandinConfig {
        seed_users: 5,
        ..StandinConfig::default()
    })
    .await
    .unwrap();
    for field in ["scim_user_name", "scim_external_id", "scim_attributes"] {
        chamilo.state().ensure_extra_field(field);
    }
    // Not started: nothing lists, as in the minutes before the first listing is in.
    let b = backend(&chamilo, "");
    assert!(!b.lookup.index.is_ready());
    let dir = b.directory.clone();
    let query = |attr: &str, value: &str| ListQuery {
        filter: Some(Filter::Compare {
            path: AttrPath::new(attr, None),
            op: CompareOp::Eq,
            value: CompValue::Str(value.into()),
        }),
        sort: None,
        start_index: 1,
        count: 10,
    };
    let user = |v: serde_json::Value| User::from_json(v.as_object().unwrap().clone());
    fn waits<T>(r: Result<T, DirectoryError>) -> bool {
        matches!(
            r,
            Err(DirectoryError::Unavailable {
                retry_after: Some(_)
            })
        )
    }

    let created = dir
        .create(user(json!({
            "userName": "new.hire@example.org",
            "externalId": "hr-77",
            "name": {"givenName": "New", "familyName": "Hire"},
            "emails": [{"value": "new.hire@example.org", "primary": true}]
        })))
        .await
        .unwrap();
    let id = created.id().unwrap().to_owned();
    let by_name = dir
        .find(&query("userName", "new.hire@example.org"))
        .await
        .unwrap();
    assert_eq!(by_name.total, 1);
    assert_eq!(by_name.resources[0].id(), Some(id.as_str()));
    let by_ext = dir.find(&query("externalId", "hr-77")).await.unwrap();
    assert_eq!(by_ext.total, 1);
    assert_eq!(
        dir.find(&query("userName", "nobody")).await.unwrap().total,
        0
    );
    // A second create of the same userName is refused, from Chamilo's fresh answer.
    let again = dir
        .create(user(json!({
            "userName": "new.hire@example.org",
            "emails": [{"value": "x@example.org"}]
        })))
        .await;
    assert!(
        matches!(again, Err(DirectoryError::Conflict { .. })),
        "{again:?}"
    );

    // An account managed through SCIM (by another replica, before this one started) is found
    // fresh by its userName, with what Chamilo's answer gives until the listing is in.
    let four = chamilo.state().user_by_username("user000004").unwrap().id;
    chamilo
        .state()
        .set_extra(four, "scim_user_name", Some("four@example.org"));
    let found = dir
        .find(&query("userName", "four@example.org"))
        .await
        .unwrap();
    assert_eq!(found.total, 1);
    let four_json = found.resources[0].as_json();
    assert_eq!(four_json["id"], four.to_string());
    assert_eq!(four_json["userName"], "four@example.org");
    assert_eq!(four_json["active"], true);

    // An account made in Chamilo may be adopted: only the listing tells whether it is
    // managed under another userName.
    assert!(waits(dir.find(&query("userName", "user000002")).await));
    assert!(waits(
        dir.create(user(json!({
            "userName": "user000002",
            "emails": [{"value": "u2@example.org"}]
        })))
        .await
    ));
    assert!(waits(dir.find(&query("displayName", "x")).await));
    assert!(waits(
        dir.find(&ListQuery {
            filter: None,
            sort: None,
            start_index: 1,
            count: 10
        })
        .await
    ));
    assert!(waits(dir.get(&id).await));

    // The listing comes in: everything answers.
    b.lookup.rebuild().await.unwrap();
    assert!(b.lookup.index.is_ready());
    assert!(dir.get(&id).await.unwrap().is_some());
    assert_eq!(
        dir.find(&query("userName", "user000002"))
            .await
            .unwrap()
            .total,
        1
    );
}
