//! End to end with outside tools: `scim2 test` (PyPI `scim2-cli`) against the real binary in
//! front of Chamilo — the stand-in, or a real Chamilo named by `CHAMILO_E2E_URL` (see
//! `e2e_support`) — and the `demo` subcommand (issue 4 §5, items 8 and 9; issue 9).

mod common;
mod e2e_support;
mod scim_support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::BIN;
use e2e_support::{
    skip_on_external, skip_without_soap, start_proxy, ChamiloSide, TOMBSTONE, USER_NAME_FIELD,
};
use http::{Method, StatusCode};
use scim_support::TestServer;
use serde_json::json;

/// `scim2 test` builds its payloads from our `/Schemas` and compares what it sent with what
/// comes back, so this checks that the Chamilo schema promises only what round-trips.
/// The default deprovisioning policy: the tool expects 404 after `DELETE` (RFC 7644 §3.6),
/// which the soft delete gives while Chamilo keeps the account (deactivated).
///
/// The tool picks its own userNames, without this run's prefix: its accounts are the SCIM
/// (userName field set) accounts with an id above the highest one before it ran, other than
/// this suite's; they are deleted at the end against an external Chamilo.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim2_tester_passes_against_the_binary_and_chamilo() {
    let Some(bin) = scim_support::scim2_or_skip() else {
        return;
    };
    if skip_without_soap(
        "scim2_tester_passes_against_the_binary_and_chamilo",
        "the tool changes userNames and passwords (SOAP WSEditUserCredentials)",
    ) {
        return;
    }
    let chamilo = ChamiloSide::new("scim2").await;
    chamilo.seed(5).await;
    let before = chamilo.max_id().await;
    let (proxy, scim, _dir) = start_proxy(&chamilo.creds(), "").await;

    let base = scim.base.clone();
    // Run in a task so that a failure still lets the tool's accounts be found and removed.
    let outcome = tokio::spawn(async move {
        scim_support::assert_scim2_passes(bin, base, "the binary + Chamilo").await;
    })
    .await;
    drop(proxy);
    let made: Vec<_> = chamilo
        .accounts(&[USER_NAME_FIELD])
        .await
        .into_iter()
        .filter(|a| a.id > before && a.user_name().is_some() && !e2e_support::is_e2e_account(a))
        .collect();
    for a in &made {
        chamilo.track(a.id);
    }
    if let Err(failure) = outcome {
        std::panic::resume_unwind(failure.into_panic());
    }
    // The tool's deletions were soft: Chamilo still holds those accounts, deactivated.
    let soft_deleted: Vec<&str> = made
        .iter()
        .filter(|a| a.extra[USER_NAME_FIELD].starts_with(TOMBSTONE))
        .inspect(|a| assert_eq!(a.active, 0, "soft-deleted but active in Chamilo: {a:?}"))
        .map(|a| a.login.as_str())
        .collect();
    assert!(
        !soft_deleted.is_empty(),
        "no account was deleted softly; the tool's accounts: {made:?}"
    );
    println!("accounts deleted (softly) by scim2: {}", soft_deleted.len());
}

/// Two free loopback ports (bound, then released for the binary to take).
fn free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let b = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

/// Kills the demo process however the test ends.
struct Demo(std::process::Child);

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_lists_and_creates_users() {
    if skip_on_external(
        "demo_lists_and_creates_users",
        "the demo runs its own simulated Chamilo; the stand-in run covers it",
    ) {
        return;
    }
    let (public, admin) = free_ports();
    let mut demo = Demo(
        Command::new(BIN)
            .args([
                "demo",
                "--listen",
                &format!("127.0.0.1:{public}"),
                "--admin-listen",
                &format!("127.0.0.1:{admin}"),
                "--users",
                "5",
            ])
            .env_remove("SCIM_TOKEN")
            .env_remove("CHAMILO_SCIM_PROXY_CONFIG")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the demo"),
    );
    let stdout = demo.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut base, mut token) = (None, None);
    let mut banner = Vec::new();
    while base.is_none() || token.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no banner within 20 s:\n{}", banner.join("\n")));
        if let Some(v) = line.trim().strip_prefix("SCIM base URL") {
            base = Some(v.trim().to_owned());
        }
        if let Some(v) = line.trim().strip_prefix("Bearer token") {
            token = Some(v.trim().to_owned());
        }
        banner.push(line);
    }
    let (base, token) = (base.unwrap(), token.unwrap());
    assert_eq!(base, format!("http://127.0.0.1:{public}/scim/v2"));
    assert!(token.len() >= 32, "{token}");

    // The banner comes before the listener is bound.
    let bound = common::eventually(Duration::from_secs(20), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", public))
            .await
            .is_ok()
    })
    .await;
    assert!(bound, "the demo did not listen on {public}");
    let scim = TestServer::at(base);
    let deadline = Instant::now() + Duration::from_secs(20);
    let listed = loop {
        let r = scim
            .send(Method::GET, "/Users?count=10", Some(&token), None, &[])
            .await;
        if r.status == StatusCode::OK {
            break r;
        }
        assert!(Instant::now() < deadline, "{} {}", r.status, r.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(listed.body["totalResults"], 5, "{}", listed.body);
    assert_eq!(listed.body["Resources"].as_array().unwrap().len(), 5);

    let created = scim
        .send(
            Method::POST,
            "/Users",
            Some(&token),
            Some(
                json!({"userName": "ann@example.org",
                    "name": {"givenName": "Ann", "familyName": "Lee"},
                    "emails": [{"value": "ann@example.org", "primary": true}]})
                .to_string(),
            ),
            &[("content-type", "application/scim+json")],
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["userName"], "ann@example.org");
    let after = scim
        .send(Method::GET, "/Users?count=10", Some(&token), None, &[])
        .await;
    assert_eq!(after.body["totalResults"], 6, "{}", after.body);
    let wrong = scim
        .send(Method::GET, "/Users", Some("wrong"), None, &[])
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
}
