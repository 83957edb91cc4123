//! The stand-in's SOAP service at the HTTP level, as `soap-1.11.16.txt` shows the real one:
//! the secret keyed on the first `X-Forwarded-For` entry (any token) or the socket address,
//! faults, the empty-body fatal, and the debug dump that echoes the secret after the envelope.

use std::time::Duration;

use chamilo_scim_proxy::standin::{Fault, FaultKind, NewUser, Standin, StandinConfig};

const KEY: &str = "9853011f058585cfe32643ee3d2c83ed";

fn edit_credentials(secret: &str, username: &str, handle: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:ns1=\"urn:WSRegistration\">\n<SOAP-ENV:Body>\n<ns1:WSEditUserCredentials>\n<editUserCredentials><username>{username}</username><secret_key>{secret}</secret_key><original_user_id_name>scim_id</original_user_id_name><original_user_id_value>{handle}</original_user_id_value></editUserCredentials>\n</ns1:WSEditUserCredentials>\n</SOAP-ENV:Body>\n</SOAP-ENV:Envelope>\n"
    )
}

#[tokio::test]
async fn secret_forwarded_for_faults_and_debug_dump() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let chamilo = Standin::start(StandinConfig {
        security_key: KEY.into(),
        ..StandinConfig::default()
    })
    .await
    .unwrap();
    let dan = chamilo
        .state()
        .insert_user(NewUser {
            username: "dan".into(),
            lastname: "D".into(),
            email: "dan@example.org".into(),
            password: "x".into(),
            status: 5,
            extra: vec![("scim_id".into(), Some("u-dan".into()))],
            ..NewUser::default()
        })
        .unwrap();
    let http = reqwest::Client::new();
    let post = |body: String, xff: Option<&'static str>| {
        let mut req = http
            .post(chamilo.soap_url())
            .header("content-type", "text/xml; charset=utf-8")
            .body(body);
        if let Some(x) = xff {
            req = req.header("x-forwarded-for", x);
        }
        req.send()
    };

    // Loopback secret (values from the transcript), no X-Forwarded-For.
    let loopback = "d659c82b6376362e92dd7ad1e1c23b3fd3372a16";
    let r = post(edit_credentials(loopback, "daniel.s", "u-dan"), None)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body = r.text().await.unwrap();
    let end = body.find("</SOAP-ENV:Envelope>").unwrap() + "</SOAP-ENV:Envelope>".len();
    assert!(body[..end].contains("<return xsi:type=\"xsd:string\">1</return>"));
    assert!(body[end..].starts_with("<!--"));
    assert!(body[end..].contains(loopback), "the dump echoes the secret");
    assert!(body.len() > 15_000);
    assert_eq!(chamilo.state().user(dan).unwrap().username, "daniel.s");

    // The first X-Forwarded-For entry is the ip, even a token that is not an address.
    let token = "7f7ffde3cb4f8d94e24d0013d9bb687e8349af99"; // sha1('scim-sidecar' . KEY)
    let r = post(
        edit_credentials(token, "dan", "u-dan"),
        Some("scim-sidecar, 127.0.0.1"),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    // The loopback secret no longer matches once a forwarded entry is present.
    let r = post(
        edit_credentials(loopback, "dan2", "u-dan"),
        Some("10.9.8.7"),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 500);
    let body = r.text().await.unwrap();
    assert!(body.starts_with("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>"));
    assert!(body.contains("Secret key is not correct or params are not correctly set"));
    assert_eq!(chamilo.state().user(dan).unwrap().username, "dan");

    // Unknown operation: a Client fault. No parameters at all: HTTP 500, empty body.
    let r = post(
        "<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"x\"><SOAP-ENV:Body><ns1:WSNoSuch><x/></ns1:WSNoSuch></SOAP-ENV:Body></SOAP-ENV:Envelope>".into(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 500);
    assert!(r
        .text()
        .await
        .unwrap()
        .contains("Operation &apos;WSNoSuch&apos; is not defined"));
    let r = post(
        "<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"x\"><SOAP-ENV:Body><ns1:WSEditUserCredentials></ns1:WSEditUserCredentials></SOAP-ENV:Body></SOAP-ENV:Envelope>".into(),
        None,
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 500);
    assert!(r.text().await.unwrap().is_empty());

    // An apostrophe in the new login: Chamilo's SQL error page, HTTP 200.
    let r = post(edit_credentials(loopback, "o&apos;dan", "u-dan"), None)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("An error has occured"));
    assert_eq!(chamilo.calls("WSEditUserCredentials"), 5);
}

/// Per-call faults hit SOAP operations too (counted under the operation's name).
#[tokio::test]
async fn faults_on_soap_operations() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let chamilo = Standin::start(StandinConfig {
        security_key: KEY.into(),
        soap_debug_bytes: 100,
        ..StandinConfig::default()
    })
    .await
    .unwrap();
    let dan = chamilo
        .state()
        .insert_user(NewUser {
            username: "dan".into(),
            lastname: "D".into(),
            email: "dan@example.org".into(),
            password: "x".into(),
            status: 5,
            extra: vec![("scim_id".into(), Some("u-dan".into()))],
            ..NewUser::default()
        })
        .unwrap();
    let login = || chamilo.state().user(dan).unwrap().username.clone();
    let loopback = "d659c82b6376362e92dd7ad1e1c23b3fd3372a16";
    let http = reqwest::Client::builder()
        .timeout(Duration::from_millis(400))
        .build()
        .unwrap();
    let call = |to: &str| {
        http.post(chamilo.soap_url())
            .header("content-type", "text/xml; charset=utf-8")
            .body(edit_credentials(loopback, to, "u-dan"))
            .send()
    };
    const OP: &str = "WSEditUserCredentials";

    // Refuse: the Server fault registration.soap.php uses for its own refusals.
    chamilo.inject_fault(Fault::nth_of(
        OP,
        1,
        FaultKind::Refuse {
            message: "Service unavailable".into(),
        },
    ));
    let r = call("d1").await.unwrap();
    assert_eq!(r.status(), 500);
    let body = r.text().await.unwrap();
    assert!(body.contains("<faultcode xsi:type=\"xsd:string\">Server</faultcode>"));
    assert!(body.contains("<faultstring xsi:type=\"xsd:string\">Service unavailable</faultstring>"));
    assert_eq!(login(), "dan");

    chamilo.inject_fault(Fault::nth_of(OP, 1, FaultKind::Fatal));
    let r = call("d2").await.unwrap();
    assert_eq!(r.status(), 500);
    assert!(r.text().await.unwrap().is_empty());
    chamilo.inject_fault(Fault::nth_call(1, FaultKind::HtmlPage));
    let r = call("d3").await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("An error has occured"));
    assert_eq!(login(), "dan", "refusals apply nothing");

    for applied in [false, true] {
        chamilo.inject_fault(Fault::nth_of(OP, 1, FaultKind::Drop { applied }));
        let err = call("dropped").await.expect_err("no response");
        assert!(!err.is_timeout(), "{err:?}");
        assert_eq!(login(), if applied { "dropped" } else { "dan" });
    }
    for applied in [false, true] {
        chamilo.inject_fault(Fault::nth_of(OP, 1, FaultKind::Timeout { applied }));
        let err = call("held").await.expect_err("held");
        assert!(err.is_timeout(), "{err:?}");
        assert_eq!(login(), if applied { "held" } else { "dropped" });
    }
    let r = call("daniel").await.unwrap();
    assert!(r.text().await.unwrap().contains(">1</return>"));
    assert_eq!(login(), "daniel");
    assert_eq!(chamilo.calls(OP), 8);
    assert!(chamilo.pending_faults().is_empty());
    chamilo.stop().await;
}
