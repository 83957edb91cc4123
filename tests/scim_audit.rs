//! The provisioning audit trail: one line at target `audit` per SCIM write, naming the token
//! by its configured name, with attribute names and never a value of a secret.

mod log_capture;
mod scim_support;

use http::{Method, StatusCode};
use serde_json::{json, Value};

#[tokio::test]
async fn every_write_is_audited_by_token_name_without_secrets() {
    let captured = log_capture::capture_json(tracing::Level::DEBUG);

    let cfg = chamilo_scim_proxy::config::ScimConfig {
        token_names: vec!["entra".to_owned(), "okta".to_owned()],
        ..scim_support::config()
    };
    let s = scim_support::start(cfg).await;
    let created = s
        .call(
            Method::POST,
            "/Users",
            Some(
                json!({"userName": "audited", "password": "Sup3rSecretPassw0rd",
                "name": {"givenName": "Au"}}),
            ),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{created}");
    let id = created.body["id"].as_str().unwrap().to_owned();
    let deactivated = s
        .call(
            Method::PATCH,
            &format!("/Users/{id}"),
            Some(
                json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                "Operations": [{"op": "Replace", "path": "active", "value": "False"}]}),
            ),
        )
        .await;
    assert_eq!(deactivated.status, StatusCode::OK, "{deactivated}");
    let failed = s
        .call(
            Method::PUT,
            "/Users/no-such-user",
            Some(json!({"userName": "ghost", "password": "An0therSecret"})),
        )
        .await;
    assert_eq!(failed.status, StatusCode::NOT_FOUND, "{failed}");
    // A 401 is not a write: the operation log has it, the audit trail does not.
    s.send(
        Method::DELETE,
        &format!("/Users/{id}"),
        Some("WrongTokenValue"),
        None,
        &[],
    )
    .await;
    let deleted = s
        .send(
            Method::DELETE,
            &format!("/Users/{id}"),
            Some("test-token-2"),
            None,
            &[],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT, "{deleted}");
    // Reads are not audited.
    s.call(Method::GET, "/Users", None).await;

    let text = captured.text();
    let audit: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["target"] == "audit")
        .map(|l| l["fields"].clone())
        .collect();
    let summary: Vec<(&str, &str, &str, u64, &str)> = audit
        .iter()
        .map(|f| {
            (
                f["token"].as_str().unwrap_or("-"),
                f["operation"].as_str().unwrap_or("-"),
                f["resource_type"].as_str().unwrap_or("-"),
                f["status"].as_u64().unwrap_or(0),
                f["outcome"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("entra", "create", "User", 201, "success"),
            ("entra", "patch", "User", 200, "success"),
            ("entra", "replace", "User", 404, "failure"),
            ("okta", "delete", "User", 204, "success"),
        ],
        "{text}"
    );
    assert_eq!(audit[0]["id"], id.as_str());
    assert_eq!(audit[0]["attributes"], "userName,password,name");
    assert_eq!(audit[1]["id"], id.as_str());
    assert_eq!(audit[1]["attributes"], "replace:active");
    assert_eq!(audit[2]["id"], "no-such-user");
    assert_eq!(audit[3]["id"], id.as_str());
    assert_eq!(audit[3]["attributes"], "");
    for secret in [
        "Sup3rSecretPassw0rd",
        "An0therSecret",
        "WrongTokenValue",
        scim_support::TOKEN,
        "test-token-2",
    ] {
        assert!(
            !text.contains(secret),
            "{secret} leaked into the log:\n{text}"
        );
    }
}
