//! examples/curl-walkthrough.md stays true: every `sh` block in it is run, in order, in one
//! bash script, against the `demo` subcommand (the proxy in front of the stand-in), exactly as
//! a reader would paste them; then the `sh` blocks of examples/entra-id.md and okta.md (what
//! each identity provider's connection test asks). Then the metric names the Grafana dashboard and the alert rules
//! use (deploy/grafana, deploy/prometheus) are checked against the demo's /metrics, which the
//! walkthrough has filled with every kind of sample (writes, Chamilo calls, SCIM statuses).
//!
//! Needs `curl` and `jq` (`.ci/run` installs them); without them the test says so and passes,
//! except under `CI=true`.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn repo(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// The fenced blocks of `markdown` whose info string is exactly `lang`.
pub fn fenced_blocks(markdown: &str, lang: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start().strip_prefix("```")) {
            (None, Some(info)) if info.trim() == lang => current = Some(String::new()),
            (None, Some(_)) => current = Some(String::from("\u{0}")),
            (Some(block), Some("")) => {
                if !block.starts_with('\u{0}') {
                    blocks.push(std::mem::take(block));
                }
                current = None;
            }
            (Some(block), _) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, None) => {}
        }
    }
    blocks
}

fn tools_present() -> bool {
    let present = ["curl", "jq", "bash"].iter().all(|tool| {
        Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok()
    });
    if !present {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "curl and jq are needed: .ci/run installs them"
        );
        eprintln!("SKIPPED: curl or jq is not installed; the walkthrough is not run");
    }
    present
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The `demo` process, killed on drop; its output collected line by line.
struct Demo {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Demo {
    fn start(listen: u16, admin: u16) -> Self {
        let mut child = Command::new(common::BIN)
            .args(["demo", "--users", "5", "--listen"])
            .arg(format!("127.0.0.1:{listen}"))
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{admin}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    lines.lock().unwrap().push(line);
                }
            });
        }
        Self { child, lines }
    }

    fn output(&self) -> String {
        self.lines.lock().unwrap().join("\n")
    }

    /// The token the demo printed (`  Bearer token       <hex>`).
    fn token(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let found = self.lines.lock().unwrap().iter().find_map(|l| {
                l.trim()
                    .strip_prefix("Bearer token")
                    .map(|t| t.trim().to_owned())
            });
            if let Some(token) = found {
                return token;
            }
            assert!(
                Instant::now() < deadline,
                "the demo printed no token:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Metric names in a PromQL expression: identifiers followed by `{`, `[` or `)`/space that
/// look like ours (the families the proxy registers, with their suffixes).
fn metric_names(text: &str) -> BTreeSet<String> {
    const FAMILIES: &[&str] = &["http_", "chamilo_", "proxy_", "config_", "tls_"];
    let mut names = BTreeSet::new();
    let mut word = String::new();
    for c in text.chars().chain([' ']) {
        if c.is_ascii_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if FAMILIES.iter().any(|f| word.starts_with(f)) && word.len() > 8 {
            names.insert(std::mem::take(&mut word));
        }
        word.clear();
    }
    names
}

#[test]
fn the_curl_walkthrough_runs_against_the_demo_and_the_dashboards_use_real_metrics() {
    if !tools_present() {
        return;
    }
    let (listen, admin) = (free_port(), free_port());
    let demo = Demo::start(listen, admin);
    let token = demo.token();
    let scim = format!("http://127.0.0.1:{listen}/scim/v2");

    let mut blocks = fenced_blocks(&repo("examples/curl-walkthrough.md"), "sh");
    assert!(blocks.len() >= 10, "{} sh blocks", blocks.len());
    // The identity-provider guides' checks run after it, against the same demo.
    for guide in ["examples/entra-id.md", "examples/okta.md"] {
        let checks = fenced_blocks(&repo(guide), "sh");
        assert!(!checks.is_empty(), "{guide} has no sh block");
        blocks.extend(checks);
    }
    // Wait until SCIM answers (the backend checks Chamilo and loads its index first).
    let ready = (0..400).any(|_| {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
            .arg(format!("Authorization: Bearer {token}"))
            .arg(format!("{scim}/Users?count=1"))
            .output()
            .unwrap();
        if out.stdout == b"200" {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
        false
    });
    assert!(ready, "SCIM never became ready:\n{}", demo.output());

    let mut script = String::from("set -euo pipefail\n");
    for (i, block) in blocks.iter().enumerate() {
        script.push_str(&format!("echo '--- block {}' >&2\n{block}", i + 1));
    }
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .env("SCIM", &scim)
        .env("TOKEN", &token)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the walkthrough failed at the last block named:\n{stderr}\nstdout:\n{}\ndemo:\n{}",
        String::from_utf8_lossy(&out.stdout),
        demo.output()
    );
    assert!(stderr.contains(&format!("--- block {}", blocks.len())));

    // Every metric the dashboard and the alerts use is one the proxy exports.
    let metrics = Command::new("curl")
        .arg("-fsS")
        .arg(format!("http://127.0.0.1:{admin}/metrics"))
        .output()
        .unwrap();
    let exported = String::from_utf8_lossy(&metrics.stdout).into_owned();
    let mut used = metric_names(&repo("deploy/prometheus/alerts.yaml"));
    let dashboard = repo("deploy/grafana/chamilo-scim-proxy.json");
    serde_json::from_str::<serde_json::Value>(&dashboard).expect("the dashboard is JSON");
    used.extend(metric_names(&dashboard));
    assert!(used.len() >= 8, "{used:?}");
    for name in &used {
        // Histograms are used through their _bucket/_sum/_count series.
        assert!(
            exported.lines().any(|l| l.starts_with(name.as_str())),
            "{name} is used in deploy/ but not exported:\n{exported}"
        );
    }
}
