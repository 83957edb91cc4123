//! Every command in the README's `sh` blocks is run by a test or by CI. The table below says
//! which for each; a README command with no entry fails `every_readme_command_is_exercised`, so
//! a new command comes with its test. The commands this file runs itself are the ones no other
//! test runs as written (the quick starts and `check-chamilo` on the README's path).

mod common;

use std::path::Path;
use std::process::Command;

use chamilo_scim_proxy::standin::{Standin, StandinConfig};
use common::{ProxyProcess, BIN};

/// Where a README command is exercised.
enum Exercised {
    /// By a test in this file.
    Here,
    /// By `file`, which contains `needle` (the same invocation, or what it stands for).
    In(&'static str, &'static str),
}

/// README command (its beginning) → where it runs.
const COVERAGE: &[(&str, Exercised)] = &[
    (
        "cargo run --release -- demo",
        Exercised::In("tests/walkthrough.rs", ".args([\"demo\""),
    ),
    (".ci/run", Exercised::In(".ci/run", "cargo test --all-targets --locked")),
    (
        "SCIM_TOKEN=change-me cargo run --release -- --config examples/config.toml --upstream",
        Exercised::Here,
    ),
    (
        "chamilo-scim-proxy check-chamilo --config",
        Exercised::Here,
    ),
    (
        "UPSTREAM_URL=http://127.0.0.1:80 LISTEN_ADDR=0.0.0.0:8080 SCIM_TOKEN=change-me chamilo-scim-proxy",
        Exercised::Here,
    ),
    // The real-Chamilo mode: CI runs the same tests with CHAMILO_E2E_* from the stand-in
    // server (the next three lines, verbatim in spirit).
    (
        "CHAMILO_E2E_URL=",
        Exercised::In(
            ".ci/run",
            "cargo test --locked --test e2e_chamilo --test e2e_chamilo_tools --test e2e_groups",
        ),
    ),
    (
        "chamilo-scim-proxy standin --env-file",
        Exercised::In(".ci/run", "\"$bin\" standin --env-file"),
    ),
    ("set -a; .", Exercised::In(".ci/run", "set -a")),
    (
        "cargo test --test e2e_chamilo --test e2e_groups --test e2e_chamilo_tools",
        Exercised::In(
            ".ci/run",
            "cargo test --locked --test e2e_chamilo --test e2e_chamilo_tools --test e2e_groups",
        ),
    ),
];

fn repo(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// The commands of the README's `sh` blocks: continuation lines joined, comments and blank
/// lines dropped, a trailing `# comment` cut off.
fn readme_commands() -> Vec<String> {
    let mut commands = Vec::new();
    let mut in_sh = false;
    let mut pending = String::new();
    for line in repo("README.md").lines() {
        let trimmed = line.trim();
        if let Some(info) = trimmed.strip_prefix("```") {
            in_sh = !in_sh && info == "sh";
            continue;
        }
        if !in_sh || trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        if let Some(head) = trimmed.strip_suffix('\\') {
            pending.push_str(head);
            continue;
        }
        pending.push_str(trimmed);
        let command = match pending.find("  #") {
            Some(i) => pending[..i].trim_end().to_owned(),
            None => pending.trim_end().to_owned(),
        };
        commands.push(command);
        pending.clear();
    }
    commands
}

#[test]
fn every_readme_command_is_exercised() {
    let commands = readme_commands();
    assert!(commands.len() >= 8, "{commands:#?}");
    for command in &commands {
        let Some((_, exercised)) = COVERAGE.iter().find(|(p, _)| command.starts_with(p)) else {
            panic!("README command run by no test or CI step (add it to COVERAGE with its test):\n{command}");
        };
        if let Exercised::In(file, needle) = exercised {
            assert!(
                repo(file).contains(needle),
                "{file} should run `{command}` (looked for `{needle}`)"
            );
        }
    }
    // Every entry still matches a README command: a stale table fails too.
    for (prefix, _) in COVERAGE {
        assert!(
            commands.iter().any(|c| c.starts_with(prefix)),
            "no README command starts with `{prefix}` any more"
        );
    }
}

/// The environment words before the program (`A=1 B=2 prog args…`) and the rest.
fn split_env(command: &str) -> (Vec<(String, String)>, Vec<String>) {
    let mut env = Vec::new();
    let mut words = command.split_whitespace().peekable();
    while let Some((k, v)) = words.peek().and_then(|w| w.split_once('=')) {
        if !k.chars().all(|c| c.is_ascii_uppercase() || c == '_') {
            break;
        }
        env.push((k.to_owned(), v.to_owned()));
        words.next();
    }
    (env, words.map(str::to_owned).collect())
}

fn readme_command(prefix: &str) -> String {
    readme_commands()
        .into_iter()
        .find(|c| c.starts_with(prefix))
        .unwrap_or_else(|| panic!("no README command starting with {prefix}"))
}

/// Runs a README quick start: its arguments after the program (`cargo run --release --` is the
/// built binary), its environment, with the listen addresses moved to free loopback ports; it
/// must become ready and answer the pass-through (502: nothing listens at its upstream here).
async fn run_quick_start(prefix: &str) {
    let command = readme_command(prefix);
    let (env, words) = split_env(&command);
    let args: Vec<&str> = match words.iter().position(|w| w == "--") {
        Some(i) if words[0] == "cargo" => words[i + 1..].iter().map(String::as_str).collect(),
        _ => words[1..].iter().map(String::as_str).collect(),
    };
    let mut cmd = Command::new(BIN);
    cmd.args(&args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("CHAMILO_SCIM_PROXY_CONFIG");
    let mut vars: Vec<(&str, &str)> = env
        .iter()
        .filter(|(k, _)| k != "LISTEN_ADDR")
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    vars.push(("LISTEN_ADDR", "127.0.0.1:0"));
    vars.push(("ADMIN_LISTEN_ADDR", "127.0.0.1:0"));
    let proxy = ProxyProcess::spawn(cmd, &vars);
    let (status, _) = common::get(&proxy.admin_url("/readyz")).await.unwrap();
    assert_eq!(status, 200, "{command}");
    let (status, _) = common::get(&proxy.url("/")).await.unwrap();
    assert!(status == 502 || status < 500, "{command}: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quick_start_with_the_example_configuration_runs() {
    run_quick_start("SCIM_TOKEN=change-me cargo run --release -- --config examples/config.toml")
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_quick_start_without_a_configuration_file_runs() {
    run_quick_start("UPSTREAM_URL=http://127.0.0.1:80 LISTEN_ADDR=0.0.0.0:8080").await;
}

/// `check-chamilo --config` on the README's path, holding a configuration for the stand-in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_check_chamilo_command_of_the_readme_runs() {
    let chamilo = Standin::start(StandinConfig::default()).await.unwrap();
    let command = readme_command("chamilo-scim-proxy check-chamilo --config");
    let (_, words) = split_env(&command);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.toml");
    std::fs::write(
        &file,
        format!(
            "[chamilo]\nurl = \"{}\"\nusername = \"admin\"\napi_key = \"{}\"\nsecurity_key = \"{}\"\n",
            chamilo.base_url, chamilo.admin_api_key, chamilo.security_key
        ),
    )
    .unwrap();
    let args: Vec<String> = words[1..]
        .iter()
        .map(|w| {
            if w.starts_with('/') {
                file.display().to_string()
            } else {
                w.clone()
            }
        })
        .collect();
    let out = Command::new(BIN)
        .args(&args)
        .env_remove("CHAMILO_SCIM_PROXY_CONFIG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("✓ platform administrator:"), "{text}");
    assert!(
        text.ends_with("Chamilo is ready for provisioning.\n"),
        "{text}"
    );
}
