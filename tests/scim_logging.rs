//! One structured log line per SCIM operation, and never a password or token in it.

mod scim_support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use http::{Method, StatusCode};
use serde_json::json;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn operations_are_logged_without_secrets() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let s = scim_support::start(scim_support::config()).await;
    let created = s
        .call(
            Method::POST,
            "/Users",
            Some(json!({"userName": "logged", "password": "Sup3rSecretPassw0rd"})),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let id = created.body["id"].as_str().unwrap().to_owned();
    s.call(
        Method::PATCH,
        &format!("/Users/{id}"),
        Some(json!({"Operations": [{"op": "replace", "path": "password", "value": "An0therSecret"}]})),
    )
    .await;
    s.send(Method::GET, "/Users", Some("WrongTokenValue"), None, &[])
        .await;

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|l: &serde_json::Value| {
            l["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.starts_with("scim operation"))
        })
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert_eq!(lines[0]["fields"]["op"], "create");
    assert_eq!(lines[0]["fields"]["id"], id.as_str());
    assert_eq!(lines[0]["fields"]["status"], 201);
    assert_eq!(lines[1]["fields"]["op"], "patch");
    assert_eq!(lines[2]["fields"]["status"], 401);
    for secret in [
        "Sup3rSecretPassw0rd",
        "An0therSecret",
        "WrongTokenValue",
        scim_support::TOKEN,
    ] {
        assert!(
            !text.contains(secret),
            "{secret} leaked into the log:\n{text}"
        );
    }
}
