//! The binary runs with the container image's arguments: the Dockerfile's ENTRYPOINT + CMD,
//! with the configuration and secrets of deploy/config.yaml mounted where the manifests mount
//! them, becomes ready and provisions through a (simulated) Chamilo. No container engine runs
//! here, so the two volume mounts are a directory substituted for `/etc/chamilo-scim-proxy/`
//! in the arguments and in the configuration; the listen addresses and the upstream come from
//! the environment variables the binary reads (`LISTEN_ADDR`, `ADMIN_LISTEN_ADDR`,
//! `UPSTREAM_URL`), the rest is the image's and the ConfigMap's.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use chamilo_scim_proxy::standin::{NewUser, Standin, StandinConfig};
use common::{eventually, ProxyProcess, BIN};

const MOUNT_ROOT: &str = "/etc/chamilo-scim-proxy/";

fn repo(path: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).unwrap()
}

/// ENTRYPOINT + CMD of the Dockerfile's last stage (exec form: JSON arrays).
fn image_argv() -> Vec<String> {
    let (mut entrypoint, mut cmd) = (Vec::new(), Vec::new());
    for line in repo("Dockerfile").lines() {
        if line.starts_with("FROM ") {
            entrypoint.clear();
            cmd.clear();
        } else if let Some(json) = line.strip_prefix("ENTRYPOINT ") {
            entrypoint = serde_json::from_str(json).unwrap();
        } else if let Some(json) = line.strip_prefix("CMD ") {
            cmd = serde_json::from_str(json).unwrap();
        }
    }
    assert!(
        !entrypoint.is_empty() && !cmd.is_empty(),
        "exec-form ENTRYPOINT and CMD"
    );
    entrypoint.into_iter().chain(cmd).collect()
}

/// The block scalar under `key: |` in a YAML text (the ConfigMap's `config.toml`).
fn block_scalar(text: &str, key: &str) -> String {
    let mut lines = text.lines().skip_while(|l| l.trim() != format!("{key}: |"));
    let header = lines.next().unwrap_or_else(|| panic!("no `{key}: |`"));
    let indent = header.len() - header.trim_start().len() + 2;
    let mut out = String::new();
    for line in lines {
        if !line.trim().is_empty() && line.len() - line.trim_start().len() < indent {
            break;
        }
        out.push_str(line.get(indent..).unwrap_or(""));
        out.push('\n');
    }
    out
}

/// `key: "value"` lines of the Secret's `stringData`.
fn secret_keys(text: &str) -> Vec<String> {
    let data = text
        .split("stringData:")
        .nth(1)
        .expect("a Secret with stringData");
    data.lines()
        .filter(|l| l.starts_with("  ") && !l.trim_start().starts_with('#'))
        .filter_map(|l| l.trim().split_once(':').map(|(k, _)| k.to_owned()))
        .collect()
}

/// The manifests run the image's arguments unchanged (command = ENTRYPOINT, args = CMD).
#[test]
fn the_manifests_run_the_image_arguments() {
    let argv = image_argv();
    for manifest in ["deploy/native-sidecar.yaml", "deploy/classic-sidecar.yaml"] {
        let text = repo(manifest);
        let flow = |key: &str| -> Vec<String> {
            let line = text
                .lines()
                .find_map(|l| {
                    l.trim()
                        .strip_prefix(&format!("{key}: "))
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| panic!("{manifest}: no {key}"));
            serde_json::from_str(&line).unwrap()
        };
        let mut run = flow("command");
        run.extend(flow("args"));
        assert_eq!(run, argv, "{manifest}");
    }
}

// Multi-threaded: the stand-in answers while this thread waits for the process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_runs_with_the_image_arguments_and_the_deploy_configuration() {
    let chamilo = Standin::start(StandinConfig {
        seed_users: 2,
        ..StandinConfig::default()
    })
    .await
    .unwrap();
    let deploy = repo("deploy/config.yaml");
    let config = block_scalar(&deploy, "config.toml");
    // The service account the ConfigMap names, made an administrator with an api key.
    let account = config
        .lines()
        .find_map(|l| l.strip_prefix("username = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("chamilo.username in the ConfigMap")
        .to_owned();
    let api_key = {
        let mut state = chamilo.state();
        let id = state
            .insert_user(NewUser {
                username: account.clone(),
                lastname: "SCIM".into(),
                email: "scim@example.org".into(),
                password: "Service-Account-1".into(),
                status: 1,
                ..NewUser::default()
            })
            .unwrap();
        state.set_admin(id, true);
        state.ensure_api_key(id)
    };

    // The two volumes: config/ (the ConfigMap) and secrets/ (the Secret).
    let root = tempfile::tempdir().unwrap();
    let mount = format!("{}/", root.path().display());
    std::fs::create_dir_all(root.path().join("config")).unwrap();
    std::fs::create_dir_all(root.path().join("secrets")).unwrap();
    std::fs::write(
        root.path().join("config/config.toml"),
        config.replace(MOUNT_ROOT, &mount),
    )
    .unwrap();
    let token = "deploy-image-test-token-0123456789abcdef";
    for key in secret_keys(&deploy) {
        let value = match key.as_str() {
            "scim-token" => token.to_owned(),
            "chamilo-api-key" => api_key.clone(),
            "chamilo-security-key" => chamilo.security_key.clone(),
            other => panic!("deploy/config.yaml: a secret this test does not know: {other}"),
        };
        std::fs::write(root.path().join("secrets").join(&key), value).unwrap();
    }

    let argv: Vec<String> = image_argv()
        .into_iter()
        .map(|a| a.replace(MOUNT_ROOT, &mount))
        .collect();
    let mut cmd = Command::new(BIN);
    cmd.args(&argv[1..]);
    let proxy = ProxyProcess::spawn(
        cmd,
        &[
            ("LISTEN_ADDR", "127.0.0.1:0"),
            ("ADMIN_LISTEN_ADDR", "127.0.0.1:0"),
            ("UPSTREAM_URL", &chamilo.base_url),
        ],
    );
    let (status, _) = common::get(&proxy.admin_url("/readyz")).await.unwrap();
    assert_eq!(status, 200);

    // SCIM works once the backend has checked Chamilo and loaded its index.
    // reqwest is built without a default crypto provider (as in the proxy's own client).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let users = proxy.url("/scim/v2/Users?count=1");
    let served = eventually(Duration::from_secs(20), || {
        let request = client.get(&users).bearer_auth(token).send();
        async move { matches!(request.await, Ok(r) if r.status() == 200) }
    })
    .await;
    assert!(
        served,
        "SCIM never answered 200:\n{}",
        proxy.logs().join("\n")
    );
    // The pass-through reaches the same Chamilo.
    let (status, _) = common::get(&proxy.url("/main/webservices/api/v2.php"))
        .await
        .unwrap();
    assert_ne!(status, 502, "{}", proxy.logs().join("\n"));
}
