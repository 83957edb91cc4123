//! The command line: `check-config` explains errors with key and line; running without a
//! configuration file works from defaults plus environment.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

fn check(text: &str, env: &[(&str, &str)]) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.toml");
    std::fs::write(&path, text).unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&path)
        .env_remove("SCIM_TOKEN")
        .env_remove("SCIM_TOKEN_FILE")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_reports_every_error_with_key_and_line() {
    let text = "\
[server]
listen = \"127.0.0.1:8080\"
max_connections = 0

[upstream]
url = \"ftp://chamilo\"

[forwarding]
trusted_networks = [\"10.0.0.0/8\"]

[scim]
tokens = [\"   \"]
token_files = [\"/nonexistent/scim-token\"]
";
    let (ok, _, err) = check(text, &[]);
    assert!(!ok);
    for expected in [
        "line 3, column 1: server.max_connections",
        "line 6, column 1: upstream.url: scheme must be http or https",
        "line 12, column 11: scim.tokens[0]: the secret is empty",
        "line 13, column 16: scim.token_files[0]: /nonexistent/scim-token",
        "4 error(s)",
    ] {
        assert!(err.contains(expected), "missing {expected:?} in:\n{err}");
    }
}

#[test]
fn check_config_points_at_syntax_and_type_errors() {
    let (ok, _, err) = check(
        "[server]\nlisten = \"127.0.0.1:1\"\n[forwarding]\ntrusted_networks = [\"10.1.0.0/40\"]\n",
        &[],
    );
    assert!(!ok);
    assert!(
        err.contains("line 4, column 21: forwarding.trusted_networks[0]"),
        "{err}"
    );

    let (ok, _, err) = check("[server]\nheader_read_timeout = \"soon\"\n", &[]);
    assert!(!ok);
    assert!(
        err.contains("line 2") && err.contains("server.header_read_timeout"),
        "{err}"
    );

    let (ok, _, err) = check("[admin]\nlisten = \"127.0.0.1:9\"\nverbose = true\n", &[]);
    assert!(!ok);
    assert!(err.contains("line 3") && err.contains("verbose"), "{err}");

    let (ok, _, err) = check("[server\n", &[]);
    assert!(!ok);
    assert!(err.contains("line 1"), "{err}");
}

#[test]
fn check_config_accepts_a_valid_file_and_the_example() {
    let (ok, out, err) = check("[scim]\ntokens = [\"abc\"]\n", &[]);
    assert!(ok, "{err}");
    assert!(out.contains("OK (1 SCIM token(s)"), "{out}");

    // The documented example must stay valid (its token comes from the environment).
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/config.toml");
    let out = Command::new(BIN)
        .args(["check-config", example])
        .env("SCIM_TOKEN", "example-token")
        .env_remove("SCIM_TOKEN_FILE")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_without_a_config_file() {
    let mut cmd = Command::new(BIN);
    cmd.arg("run");
    let proxy = ProxyProcess::spawn(
        cmd,
        &[
            ("LISTEN_ADDR", "127.0.0.1:0"),
            ("ADMIN_LISTEN_ADDR", "127.0.0.1:0"),
            ("UPSTREAM_URL", "http://127.0.0.1:9"),
            ("SCIM_TOKEN", "quick-start"),
        ],
    );
    assert_eq!(get(&proxy.admin_url("/readyz")).await.unwrap().0, 200);
    assert!(is_scim_answer(
        get(&proxy.url("/scim/v2/Users")).await.unwrap().0
    ));
}

#[test]
fn refuses_to_start_with_an_invalid_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "[upstream]\nurl = \"nope\"\n").unwrap();
    let out = Command::new(BIN)
        .arg("--config")
        .arg(&path)
        .env("SCIM_TOKEN", "x")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2, column 1: upstream.url"), "{err}");
}

#[test]
fn the_kubernetes_configmap_is_valid() {
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/config.yaml"))
            .unwrap();
    // The block scalar under `config.toml: |`, indented by four spaces.
    let mut lines = manifest
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("config.toml: |"));
    lines.next();
    let toml: String = lines
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    assert!(toml.contains("[upstream]"), "block not found");
    let dir = tempfile::tempdir().unwrap();
    // The Secret's keys, as the volume mount would lay them out.
    let mut toml = toml;
    for key in ["scim-token", "chamilo-api-key", "chamilo-security-key"] {
        let file = dir.path().join(key);
        std::fs::write(&file, "a-secret\n").unwrap();
        toml = toml.replace(
            &format!("/etc/chamilo-scim-proxy/secrets/{key}"),
            &file.display().to_string(),
        );
    }
    let (ok, _, err) = check(&toml, &[]);
    assert!(ok, "{err}");
}

#[test]
fn check_config_is_not_confused_by_run_settings_in_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, "[scim]\nenabled = false\n").unwrap();
    let out = Command::new(BIN)
        .arg("check-config")
        .arg(&path)
        .env("CHAMILO_SCIM_PROXY_CONFIG", "/nonexistent.toml")
        .env("LISTEN_ADDR", "127.0.0.1:0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Kills a child process however the test ends.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `standin` serves the simulated Chamilo as a separate server (what `.ci/run` points the
/// end-to-end suite at): it writes the `CHAMILO_E2E_*` lines once it listens, answers
/// `authenticate` with them, and stops on SIGTERM.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standin_serves_until_sigterm_and_writes_its_env_file() {
    let dir = tempfile::tempdir().unwrap();
    let env_file = dir.path().join("chamilo.env");
    let mut child = Killed(
        Command::new(BIN)
            .args(["standin", "--users", "3", "--env-file"])
            .arg(&env_file)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the stand-in"),
    );
    let written = eventually(Duration::from_secs(20), || async { env_file.exists() }).await;
    assert!(written, "no {} within 20 s", env_file.display());
    let text = std::fs::read_to_string(&env_file).unwrap();
    let vars: std::collections::HashMap<&str, &str> =
        text.lines().filter_map(|l| l.split_once('=')).collect();
    for key in [
        "CHAMILO_E2E_URL",
        "CHAMILO_E2E_USERNAME",
        "CHAMILO_E2E_PASSWORD",
        "CHAMILO_E2E_API_KEY",
        "CHAMILO_E2E_SECURITY_KEY",
    ] {
        assert!(
            vars.get(key).is_some_and(|v| !v.is_empty()),
            "{key} missing in:\n{text}"
        );
    }
    assert!(
        vars["CHAMILO_E2E_URL"].starts_with("http://127.0.0.1:"),
        "{text}"
    );

    // reqwest is built without a default TLS provider (plain HTTP here, but it insists).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let answer = reqwest::Client::new()
        .post(format!(
            "{}/main/webservices/api/v2.php",
            vars["CHAMILO_E2E_URL"]
        ))
        .form(&[
            ("action", "authenticate"),
            ("username", vars["CHAMILO_E2E_USERNAME"]),
            ("password", vars["CHAMILO_E2E_PASSWORD"]),
        ])
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let answer: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(answer["error"], false, "{answer}");
    assert_eq!(
        answer["data"]["apiKey"], vars["CHAMILO_E2E_API_KEY"],
        "{answer}"
    );

    let status = Command::new("sh")
        .args(["-c", &format!("kill -s TERM {}", child.0.id())])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = child.0.try_wait().unwrap() {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still running 10 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "{exit:?}");
}
