//! One structured log line per SCIM operation, and never a password or token in it.

mod log_capture;
mod scim_support;

use http::{Method, StatusCode};
use serde_json::json;

#[tokio::test]
async fn operations_are_logged_without_secrets() {
    let captured = log_capture::capture_json(tracing::Level::DEBUG);

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

    let text = captured.text();
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
