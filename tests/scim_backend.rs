//! How backend failures and backend capabilities show at the HTTP level.

mod scim_support;

use std::sync::Arc;
use std::time::Duration;

use chamilo_scim_proxy::directory::memory::MemoryDirectory;
use chamilo_scim_proxy::directory::{
    Capabilities, DirFuture, Directory, DirectoryError, ListQuery, Page, User,
};
use http::{Method, StatusCode};
use scim_support::{config, start_with};
use serde_json::json;

/// A directory whose every operation fails with one error.
struct Failing(DirectoryError);

impl Directory for Failing {
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
    fn create(&self, _user: User) -> DirFuture<'_, User> {
        let e = self.0.clone();
        Box::pin(async move { Err(e) })
    }
    fn get<'a>(&'a self, _id: &'a str) -> DirFuture<'a, Option<User>> {
        let e = self.0.clone();
        Box::pin(async move { Err(e) })
    }
    fn find<'a>(&'a self, _query: &'a ListQuery) -> DirFuture<'a, Page> {
        let e = self.0.clone();
        Box::pin(async move { Err(e) })
    }
    fn replace<'a>(
        &'a self,
        _id: &'a str,
        _user: User,
        _v: Option<&'a str>,
    ) -> DirFuture<'a, User> {
        let e = self.0.clone();
        Box::pin(async move { Err(e) })
    }
    fn delete<'a>(&'a self, _id: &'a str) -> DirFuture<'a, ()> {
        let e = self.0.clone();
        Box::pin(async move { Err(e) })
    }
}

#[tokio::test]
async fn backend_errors_map_to_statuses_without_leaking_details() {
    let cases = [
        (
            DirectoryError::Unavailable {
                retry_after: Some(Duration::from_secs(7)),
            },
            503,
            None,
        ),
        (DirectoryError::Timeout, 504, None),
        (
            DirectoryError::TooMany {
                detail: "narrow the filter".into(),
            },
            400,
            Some("tooMany"),
        ),
        (
            DirectoryError::Backend {
                detail: "api_key=SECRET123".into(),
            },
            502,
            None,
        ),
        (
            DirectoryError::Forbidden {
                detail: "platform administrator".into(),
            },
            403,
            None,
        ),
        (
            DirectoryError::Conflict {
                detail: "e-mail taken".into(),
            },
            409,
            Some("uniqueness"),
        ),
        (
            DirectoryError::InvalidValue {
                attr: "preferredLanguage".into(),
                detail: "unknown".into(),
            },
            400,
            Some("invalidValue"),
        ),
    ];
    for (err, status, scim_type) in cases {
        let s = start_with(config(), Arc::new(Failing(err.clone()))).await;
        let r = s
            .call(Method::POST, "/Users", Some(json!({"userName": "x"})))
            .await;
        assert_eq!(r.status.as_u16(), status, "{err:?}");
        assert_eq!(r.body["scimType"].as_str(), scim_type);
        assert!(!r.body.to_string().contains("SECRET123"));
        if status == 503 {
            assert_eq!(r.header("retry-after"), Some("7"));
        }
        let list = s.call(Method::GET, "/Users", None).await;
        assert_eq!(list.status.as_u16(), status);
    }
}

#[tokio::test]
async fn capabilities_prune_discovery_and_input() {
    let caps = Capabilities {
        attributes: Some(vec![
            "name.givenName".into(),
            "name.familyName".into(),
            "emails".into(),
            "active".into(),
            "externalId".into(),
        ]),
        max_user_name_length: Some(20),
        change_password: false,
        versions: true,
        required: vec!["emails".into()],
        ..Capabilities::default()
    };
    let s = start_with(config(), Arc::new(MemoryDirectory::with_capabilities(caps))).await;
    let schema = s
        .call(
            Method::GET,
            "/Schemas/urn:ietf:params:scim:schemas:core:2.0:User",
            None,
        )
        .await;
    let names: Vec<&str> = schema.body["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(names, ["userName", "name", "active", "emails"]);
    let required: Vec<&str> = schema.body["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["required"] == true)
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(required, ["userName", "emails"]);
    let without_email = s
        .call(Method::POST, "/Users", Some(json!({"userName": "u0"})))
        .await;
    assert_eq!(without_email.status, StatusCode::BAD_REQUEST);
    assert_eq!(without_email.body["scimType"], "invalidValue");
    assert!(without_email.body["detail"]
        .as_str()
        .unwrap()
        .contains("emails"));
    let spc = s.call(Method::GET, "/ServiceProviderConfig", None).await;
    assert_eq!(spc.body["changePassword"]["supported"], false);

    let created = s
        .call(
            Method::POST,
            "/Users",
            Some(json!({"userName": "u1", "title": "t", "password": "p", "name": {"givenName": "g", "middleName": "m"}, "emails": [{"value": "u1@example.org"}]})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    assert!(created.body.get("title").is_none());
    assert_eq!(created.body["name"], json!({"givenName": "g"}));
    let too_long = s
        .call(
            Method::POST,
            "/Users",
            Some(json!({"userName": "x".repeat(21), "emails": [{"value": "x@example.org"}]})),
        )
        .await;
    assert_eq!(too_long.status, StatusCode::BAD_REQUEST);
    assert_eq!(too_long.body["scimType"], "invalidValue");
}

#[tokio::test]
async fn a_service_without_backend_fails_closed() {
    use chamilo_scim_proxy::scim::ScimService;
    let svc = ScimService::default();
    let req = http::Request::builder()
        .uri("/scim/v2/Users")
        .header("authorization", format!("Bearer {}", scim_support::TOKEN))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = svc.handle(req, "/Users", &config()).await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn write_responses_honour_attributes() {
    let s = scim_support::start(config()).await;
    let r = s
        .call(
            Method::POST,
            "/Users?attributes=userName",
            Some(json!({"userName": "p", "displayName": "P"})),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(r.body["userName"], "p");
    assert!(r.body.get("displayName").is_none());
    let id = r.body["id"].as_str().unwrap();
    let r = s
        .call(
            Method::PATCH,
            &format!("/Users/{id}?excludedAttributes=displayName"),
            Some(json!({"Operations": [{"op": "add", "path": "title", "value": "T"}]})),
        )
        .await;
    assert_eq!(r.body["title"], "T");
    assert!(r.body.get("displayName").is_none());
}

/// The in-memory directory, except that the first `n` replaces lose a race.
struct Racy {
    inner: MemoryDirectory,
    races: std::sync::atomic::AtomicUsize,
}

impl Directory for Racy {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn create(&self, user: User) -> DirFuture<'_, User> {
        self.inner.create(user)
    }
    fn get<'a>(&'a self, id: &'a str) -> DirFuture<'a, Option<User>> {
        self.inner.get(id)
    }
    fn find<'a>(&'a self, query: &'a ListQuery) -> DirFuture<'a, Page> {
        self.inner.find(query)
    }
    fn replace<'a>(&'a self, id: &'a str, user: User, v: Option<&'a str>) -> DirFuture<'a, User> {
        use std::sync::atomic::Ordering;
        let lost = self
            .races
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if lost {
            return Box::pin(async { Err(DirectoryError::PreconditionFailed) });
        }
        self.inner.replace(id, user, v)
    }
    fn delete<'a>(&'a self, id: &'a str) -> DirFuture<'a, ()> {
        self.inner.delete(id)
    }
}

#[tokio::test]
async fn patch_retries_a_lost_race_unless_the_client_sent_if_match() {
    let racy = Arc::new(Racy {
        inner: MemoryDirectory::new(),
        races: std::sync::atomic::AtomicUsize::new(0),
    });
    let s = start_with(config(), racy.clone()).await;
    let created = s
        .call(Method::POST, "/Users", Some(json!({"userName": "r"})))
        .await;
    let id = created.body["id"].as_str().unwrap().to_owned();
    let etag = created.header("etag").unwrap().to_owned();
    let ops = json!({"Operations": [{"op": "replace", "path": "title", "value": "T"}]});

    racy.races.store(2, std::sync::atomic::Ordering::SeqCst);
    let r = s
        .call(Method::PATCH, &format!("/Users/{id}"), Some(ops.clone()))
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "two lost races, third attempt wins"
    );

    racy.races.store(3, std::sync::atomic::Ordering::SeqCst);
    let r = s
        .call(Method::PATCH, &format!("/Users/{id}"), Some(ops.clone()))
        .await;
    assert_eq!(
        r.status,
        StatusCode::PRECONDITION_FAILED,
        "gives up after three attempts"
    );

    racy.races.store(1, std::sync::atomic::Ordering::SeqCst);
    let current = s.call(Method::GET, &format!("/Users/{id}"), None).await;
    let etag_now = current.header("etag").unwrap().to_owned();
    assert_ne!(etag_now, etag);
    let r = s
        .send(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(scim_support::TOKEN),
            Some(ops.to_string()),
            &[("if-match", &etag_now)],
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::PRECONDITION_FAILED,
        "no retry under If-Match"
    );
}
