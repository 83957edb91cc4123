//! Where SCIM answers point, and how long a body may take, through the real public listener
//! (`server` → dispatcher → SCIM engine, in-memory directory) on loopback: issue 11 §4 and §7.

mod proxy_harness;

use std::time::{Duration, Instant};

use chamilo_scim_proxy::config::{Config, DirectoryKind, Secret};
use proxy_harness::*;

const TOKEN: &str = "origin-test-token-0123456789abcdef";

fn config() -> Config {
    // Nothing listens there: SCIM requests never reach the upstream.
    let mut cfg = config_for("127.0.0.1:9".parse().unwrap());
    cfg.scim.directory = DirectoryKind::Memory;
    cfg.scim.tokens = vec![Secret::new(TOKEN.to_owned())];
    cfg
}

fn create(name: &str, extra_head: &str) -> Vec<u8> {
    let body = format!(
        r#"{{"userName":"{name}","name":{{"givenName":"A","familyName":"B"}},"emails":[{{"value":"{name}@example.org","primary":true}}]}}"#
    );
    format!(
        "POST /scim/v2/Users HTTP/1.1\r\nHost: lms.example.org\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/scim+json\r\nContent-Length: {}\r\n{extra_head}\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn location(resp: &RawResponse) -> String {
    assert_eq!(resp.status, 201, "{}", String::from_utf8_lossy(&resp.body));
    resp.header("location").unwrap_or_default()
}

#[tokio::test]
async fn an_untrusted_peer_cannot_choose_the_scheme_of_locations() {
    let server = start_server(config()).await;
    let resp = raw_one(server.addr, &create("ann", "X-Forwarded-Proto: https\r\n")).await;
    let loc = location(&resp);
    assert!(
        loc.starts_with("http://lms.example.org/scim/v2/Users/"),
        "{loc}"
    );
}

#[tokio::test]
async fn a_trusted_ingress_sets_the_scheme() {
    let mut cfg = config();
    cfg.forwarding.trusted_networks = vec!["127.0.0.1/32".parse().unwrap()];
    let server = start_server(cfg).await;
    let resp = raw_one(server.addr, &create("bob", "X-Forwarded-Proto: https\r\n")).await;
    let loc = location(&resp);
    assert!(
        loc.starts_with("https://lms.example.org/scim/v2/Users/"),
        "{loc}"
    );
}

#[tokio::test]
async fn a_configured_base_url_wins_over_host_and_forwarded_fields() {
    let mut cfg = config();
    cfg.scim.base_url = Some("https://idp-facing.example.com/scim/v2/".to_owned());
    let server = start_server(cfg).await;
    let resp = raw_one(server.addr, &create("cy", "X-Forwarded-Proto: http\r\n")).await;
    let loc = location(&resp);
    assert!(
        loc.starts_with("https://idp-facing.example.com/scim/v2/Users/"),
        "{loc}"
    );
    let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(body["meta"]["location"].as_str(), Some(loc.as_str()));
}

/// A client that sends a head and part of its body, then nothing, is answered 408 once
/// `scim.body_read_timeout` has passed, instead of holding the connection.
#[tokio::test]
async fn a_body_that_stops_arriving_is_cut_after_the_read_timeout() {
    let mut cfg = config();
    cfg.scim.body_read_timeout = Duration::from_millis(400);
    cfg.server.header_read_timeout = Duration::from_secs(30);
    cfg.upstream.body_idle_timeout = Duration::from_secs(30);
    let server = start_server(cfg).await;
    let mut conn = ClientConnection::open(server.addr).await;
    conn.send(
        format!(
            "POST /scim/v2/Users HTTP/1.1\r\nHost: lms.example.org\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: application/scim+json\r\nContent-Length: 500\r\n\r\n{{\"userName\":"
        )
        .as_bytes(),
    )
    .await;
    let started = Instant::now();
    let resp = tokio::time::timeout(Duration::from_secs(10), conn.response())
        .await
        .expect("answered, not held");
    assert_eq!(resp.status, 408, "{}", String::from_utf8_lossy(&resp.body));
    assert!(started.elapsed() >= Duration::from_millis(300));
}
