//! The stand-in's write model and per-call fault injection over HTTP (REST). The SOAP side of
//! fault injection is in `standin_soap.rs`; the recorded write behaviour is replayed in
//! `standin_fidelity.rs`.

use std::time::{Duration, Instant};

use chamilo_scim_proxy::standin::{
    Clock, Fault, FaultKind, FaultTarget, Injected, NewUser, Standin, StandinConfig, StandinHandle,
};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const T: u64 = 1_796_234_755;

async fn start() -> StandinHandle {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let chamilo = Standin::start(StandinConfig {
        clock: Clock::manual(T),
        ..StandinConfig::default()
    })
    .await
    .expect("start");
    chamilo
        .state()
        .insert_user(NewUser {
            username: "ann1".into(),
            firstname: Some("Ann".into()),
            lastname: "Lee".into(),
            email: "ann@example.com".into(),
            password: "Secret123".into(),
            status: 5,
            extra: vec![("ext".into(), Some("EXT-1".into()))],
            ..NewUser::default()
        })
        .expect("ann1");
    chamilo
}

fn client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .expect("client")
}

fn form(chamilo: &StandinHandle, action: &str, fields: &str) -> String {
    format!(
        "action={action}&username=admin&api_key={}&{fields}",
        chamilo.admin_api_key
    )
}

async fn post(
    http: &reqwest::Client,
    chamilo: &StandinHandle,
    body: String,
) -> reqwest::Result<reqwest::Response> {
    http.post(chamilo.rest_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
}

async fn json(http: &reqwest::Client, chamilo: &StandinHandle, body: String) -> Value {
    let r = post(http, chamilo, body).await.expect("answer");
    assert_eq!(r.status(), 200);
    serde_json::from_str(&r.text().await.expect("body")).expect("json")
}

fn firstname(chamilo: &StandinHandle) -> String {
    chamilo
        .state()
        .user_by_username("ann1")
        .and_then(|u| u.firstname.clone())
        .unwrap_or_default()
}

fn rename(chamilo: &StandinHandle, to: &str) -> String {
    form(
        chamilo,
        "update_user_from_username",
        &format!("loginname=ann1&firstname={to}"),
    )
}

/// Whether the error is the connection closing (or being reset) before a response.
fn closed_early(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cause {
        let text = e.to_string();
        if text.contains("connection closed before message completed") || text.contains("reset") {
            return true;
        }
        cause = e.source();
    }
    false
}

#[tokio::test]
async fn the_clock_decides_whether_an_unchanged_extra_value_can_be_written() {
    let chamilo = start().await;
    let http = client(Duration::from_secs(10));
    let same = form(
        &chamilo,
        "update_user_from_username",
        "loginname=ann1&firstname=Anne&extra[ext]=EXT-1",
    );
    // ann1 was created at T: the same value in the same second changes no row.
    assert_eq!(
        json(&http, &chamilo, same.clone()).await,
        json!({"error": true, "message": "Could not update extra field value.: ext"})
    );
    assert_eq!(firstname(&chamilo), "Ann", "no column written");
    chamilo.clock().advance(1);
    assert_eq!(
        json(&http, &chamilo, same).await,
        json!({"error": false, "data": [true]})
    );
    assert_eq!(firstname(&chamilo), "Anne");
    let state = chamilo.state();
    let u = state.user_by_username("ann1").unwrap();
    assert_eq!(u.extra_updated_at.get("ext"), Some(&(T + 1)));
    assert_eq!(u.extra_updated_at.get("already_logged_in"), Some(&T));
}

#[tokio::test]
async fn refuse_fatal_and_html_page_apply_nothing() {
    let chamilo = start().await;
    let http = client(Duration::from_secs(10));
    let kinds = [
        FaultKind::Refuse {
            message: "Nope".into(),
        },
        FaultKind::Fatal,
        FaultKind::HtmlPage,
    ];
    for kind in kinds {
        chamilo.inject_fault(Fault::nth_of("update_user_from_username", 1, kind.clone()));
        let r = post(&http, &chamilo, rename(&chamilo, "Zed"))
            .await
            .unwrap();
        let status = r.status().as_u16();
        let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
        let body = r.text().await.unwrap();
        match kind {
            FaultKind::Refuse { .. } => {
                assert_eq!((status, content_type.as_str()), (200, "application/json"));
                assert_eq!(body, r#"{"error":true,"message":"Nope"}"#);
            }
            FaultKind::Fatal => {
                assert_eq!(status, 500);
                assert!(content_type.starts_with("text/html"));
                assert!(body.is_empty());
            }
            _ => {
                assert_eq!(status, 200);
                assert!(content_type.starts_with("text/html"));
                assert!(body.contains("An error has occured"));
            }
        }
        assert_eq!(firstname(&chamilo), "Ann", "{kind:?} applied nothing");
    }
    assert_eq!(
        chamilo.calls("update_user_from_username"),
        3,
        "faults count"
    );
    assert!(chamilo.pending_faults().is_empty());
    // Each fired once: the next call is answered.
    assert_eq!(
        json(&http, &chamilo, rename(&chamilo, "Zed")).await,
        json!({"error": false, "data": [true]})
    );
}

#[tokio::test]
async fn targets_count_from_injection_and_queue() {
    let chamilo = start().await;
    let http = client(Duration::from_secs(10));
    let exist = |login: &str| form(&chamilo, "username_exist", &format!("loginname={login}"));
    json(&http, &chamilo, exist("ann1")).await;
    // NthCall counts every action from the injection on: the 2nd call from now.
    chamilo.inject_fault(Fault::nth_call(2, FaultKind::Fatal));
    // NthOf counts only its action: the next username_exist (which is also the 1st call of
    // any action, not yet the NthCall's 2nd).
    chamilo.inject_fault(Fault::nth_of(
        "username_exist",
        1,
        FaultKind::Refuse {
            message: "first".into(),
        },
    ));
    assert_eq!(chamilo.pending_faults().len(), 2);
    assert_eq!(
        chamilo.pending_faults()[1].target,
        FaultTarget::NthOf {
            action: "username_exist".into(),
            n: 1
        }
    );
    let v = json(&http, &chamilo, exist("ann1")).await;
    assert_eq!(v["message"], "first");
    let r = post(&http, &chamilo, form(&chamilo, "get_users", "status=5"))
        .await
        .unwrap();
    assert_eq!(r.status(), 500, "2nd call of any action");
    assert!(chamilo.pending_faults().is_empty());
    assert_eq!(json(&http, &chamilo, exist("ann1")).await["data"][0], true);

    // Two faults due on the same call: the earlier fires, the other takes the next one.
    for message in ["a", "b"] {
        chamilo.inject_fault(Fault::nth_of(
            "username_exist",
            1,
            FaultKind::Refuse {
                message: message.into(),
            },
        ));
    }
    assert_eq!(json(&http, &chamilo, exist("x")).await["message"], "a");
    assert_eq!(json(&http, &chamilo, exist("x")).await["message"], "b");
    assert_eq!(json(&http, &chamilo, exist("x")).await["data"][0], false);

    // clear_faults forgets them; inject() (every REST call) still works.
    chamilo.inject_fault(Fault::nth_call(1, FaultKind::Fatal));
    chamilo.clear_faults();
    assert!(chamilo.pending_faults().is_empty());
    assert_eq!(json(&http, &chamilo, exist("ann1")).await["data"][0], true);
    chamilo.inject(Some(Injected::Fatal));
    let r = post(&http, &chamilo, exist("ann1")).await.unwrap();
    assert_eq!(r.status(), 500);
    chamilo.inject(None);
    assert_eq!(chamilo.calls("username_exist"), 8);
    assert_eq!(chamilo.calls("get_users"), 1);
}

#[tokio::test]
async fn drop_closes_the_connection_without_a_response() {
    let chamilo = start().await;
    let http = client(Duration::from_secs(10));
    for applied in [false, true] {
        chamilo.inject_fault(Fault::nth_of(
            "update_user_from_username",
            1,
            FaultKind::Drop { applied },
        ));
        let to = if applied { "Applied" } else { "NotApplied" };
        let err = post(&http, &chamilo, rename(&chamilo, to))
            .await
            .expect_err("no response");
        assert!(!err.is_timeout() && !err.is_status(), "{err:?}");
        assert!(closed_early(&err), "{err:?}");
        let expected = if applied { "Applied" } else { "Ann" };
        assert_eq!(firstname(&chamilo), expected);
    }
    // On the wire: the request is read, then the socket closes without a single byte.
    chamilo.inject_fault(Fault::nth_call(1, FaultKind::Drop { applied: true }));
    let body = rename(&chamilo, "Raw");
    let mut tcp = tokio::net::TcpStream::connect(chamilo.addr).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        chamilo_scim_proxy::standin::REST_PATH,
        chamilo.addr,
        body.len()
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut got))
        .await
        .expect("closed, not held");
    assert!(
        got.is_empty(),
        "no response bytes: {:?}",
        String::from_utf8_lossy(&got)
    );
    if let Err(e) = read {
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
    }
    assert_eq!(firstname(&chamilo), "Raw");
    assert_eq!(chamilo.calls("update_user_from_username"), 3);
    // Other connections are unaffected.
    assert_eq!(
        json(&http, &chamilo, rename(&chamilo, "After")).await,
        json!({"error": false, "data": [true]})
    );
}

#[tokio::test]
async fn timeout_holds_the_response_until_the_client_gives_up() {
    let chamilo = start().await;
    let http = client(Duration::from_millis(400));
    for applied in [false, true] {
        chamilo.inject_fault(Fault::nth_of(
            "update_user_from_username",
            1,
            FaultKind::Timeout { applied },
        ));
        let to = if applied { "Late" } else { "Never" };
        let err = post(&http, &chamilo, rename(&chamilo, to))
            .await
            .expect_err("held");
        assert!(err.is_timeout(), "{err:?}");
        let expected = if applied { "Late" } else { "Ann" };
        assert_eq!(firstname(&chamilo), expected);
    }
    // A held response does not keep the stand-in from stopping.
    chamilo.inject_fault(Fault::nth_call(1, FaultKind::Timeout { applied: false }));
    let patient = client(Duration::from_secs(60));
    let pending = tokio::spawn({
        let url = chamilo.rest_url();
        let body = form(&chamilo, "username_exist", "loginname=ann1");
        async move {
            patient
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
                .await
        }
    });
    while chamilo.calls("username_exist") == 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    chamilo.stop().await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let outcome = pending.await.unwrap();
    assert!(outcome.is_err(), "closed without a response: {outcome:?}");
}
