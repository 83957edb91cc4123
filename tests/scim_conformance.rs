//! The external conformance tool `scim2 test` (PyPI `scim2-cli`, which runs `scim2-tester`)
//! against the engine with the in-memory directory, served on loopback.
//!
//! The tool is found through `SCIM2_BIN` or `scim2` on `PATH` (`.ci/run` installs it). When it
//! is missing the test fails under `CI=true` and is skipped, loudly, elsewhere.

mod scim_support;

use std::process::Command;
use std::time::Duration;

fn scim2_command() -> Option<String> {
    if let Ok(bin) = std::env::var("SCIM2_BIN") {
        return Some(bin);
    }
    let found = Command::new("scim2")
        .arg("--help")
        .output()
        .is_ok_and(|o| o.status.success());
    found.then(|| "scim2".to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scim2_tester_passes_with_no_failures() {
    let Some(bin) = scim2_command() else {
        let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !in_ci,
            "scim2 (PyPI scim2-cli) is required in CI: set SCIM2_BIN or put it on PATH"
        );
        eprintln!("SKIPPED: scim2 is not installed (pip install scim2-cli)");
        return;
    };
    let server = scim_support::start(scim_support::config()).await;
    let base = server.base.clone();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(bin)
            .env(
                "SCIM_CLI_HEADERS",
                format!("Authorization: Bearer {}", scim_support::TOKEN),
            )
            .args(["--url", &base, "test"])
            .output()
    });
    let output = tokio::time::timeout(Duration::from_secs(300), output)
        .await
        .expect("scim2 finishes within 300 s")
        .unwrap()
        .expect("scim2 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let failures: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("ERROR") || l.starts_with("CRITICAL"))
        .collect();
    let successes = stdout.lines().filter(|l| l.starts_with("SUCCESS")).count();
    println!(
        "scim2 test: {successes} checks succeeded, {} failed",
        failures.len()
    );
    assert!(
        output.status.success() && failures.is_empty(),
        "scim2 test failed ({:?}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(successes > 50, "scim2 ran too few checks:\n{stdout}");
}
