//! Hot reload of the real binary: `..data` symlink swaps, invalid files, SIGHUP, and reloads
//! under load.
//!
//! What these tests observe from outside: `scim.enabled` (a SCIM request without a token
//! answers 401 when SCIM is on, 404 when off), the access log (follows `log.level`), and the
//! reload metrics on the admin port.

mod common;

use std::time::Duration;

use common::*;

const TOKEN_ENV: (&str, &str) = ("SCIM_TOKEN", "test-token-1");

fn scim_enabled(on: bool) -> String {
    config_text(
        "",
        &format!("[scim]\nenabled = {on}\n\n[reload]\npoll_interval = \"1h\"\n"),
    )
}

async fn scim_status(proxy: &ProxyProcess) -> u16 {
    get(&proxy.url("/scim/v2/Users")).await.unwrap().0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubelet_symlink_swap_is_picked_up() {
    let mut volume = KubeVolume::new(&[("config.toml", &scim_enabled(true))]);
    let proxy = ProxyProcess::start(&volume.path("config.toml"), &[TOKEN_ENV]);
    assert!(is_scim_answer(scim_status(&proxy).await));

    volume.swap(&[("config.toml", &scim_enabled(false))]);
    // Polling is set to an hour, so only the directory watch can explain a quick reload.
    let switched = eventually(Duration::from_secs(5), || async {
        scim_status(&proxy).await == 404
    })
    .await;
    assert!(
        switched,
        "the swap was not noticed:\n{}",
        proxy.logs().join("\n")
    );
    assert_eq!(
        admin_metric(&proxy, "config_reloads_total{result=\"success\"}").await,
        Some(1.0)
    );

    volume.swap(&[("config.toml", &scim_enabled(true))]);
    assert!(
        eventually(Duration::from_secs(5), || async {
            is_scim_answer(scim_status(&proxy).await)
        })
        .await
    );
    assert_eq!(
        admin_metric(&proxy, "config_reloads_total{result=\"success\"}").await,
        Some(2.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_reload_keeps_the_last_good_configuration() {
    let mut volume = KubeVolume::new(&[("config.toml", &scim_enabled(true))]);
    let proxy = ProxyProcess::start(&volume.path("config.toml"), &[TOKEN_ENV]);

    // Disables SCIM *and* has an error: nothing of it may take effect.
    let broken = format!(
        "{}\n[upstream]\nurl = \"ftp://nope\"\n",
        scim_enabled(false)
    );
    volume.swap(&[("config.toml", &broken)]);
    let counted = eventually(Duration::from_secs(5), || async {
        admin_metric(&proxy, "config_reloads_total{result=\"error\"}").await == Some(1.0)
    })
    .await;
    assert!(counted, "no error counted:\n{}", proxy.logs().join("\n"));
    assert!(
        is_scim_answer(scim_status(&proxy).await),
        "the old configuration must stay"
    );
    assert!(
        proxy.wait_for_log(Duration::from_secs(1), |l| l.contains("reload rejected")
            && l.contains("upstream.url")
            && l.contains("\"level\":\"ERROR\""))
    );

    // Fixing the file applies it.
    volume.swap(&[("config.toml", &scim_enabled(false))]);
    assert!(
        eventually(Duration::from_secs(5), || async {
            scim_status(&proxy).await == 404
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_without_watching() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let text = |on: bool| {
        config_text(
            "",
            &format!("[scim]\nenabled = {on}\n\n[reload]\nwatch = false\npoll_interval = \"1h\"\n"),
        )
    };
    std::fs::write(&path, text(true)).unwrap();
    let proxy = ProxyProcess::start(&path, &[TOKEN_ENV]);
    std::fs::write(&path, text(false)).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert!(
        is_scim_answer(scim_status(&proxy).await),
        "nothing should reload without a trigger"
    );

    proxy.signal("HUP");
    assert!(
        eventually(Duration::from_secs(5), || async {
            scim_status(&proxy).await == 404
        })
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_level_follows_reload() {
    let mut volume =
        KubeVolume::new(&[("config.toml", &config_text("", "[log]\nlevel = \"info\"\n"))]);
    let proxy = ProxyProcess::start(&volume.path("config.toml"), &[TOKEN_ENV]);
    get(&proxy.url("/scim/v2/one")).await.unwrap();
    assert!(proxy.wait_for_log(Duration::from_secs(2), |l| l.contains("/scim/v2/one")));

    volume.swap(&[("config.toml", &config_text("", "[log]\nlevel = \"warn\"\n"))]);
    assert!(
        eventually(Duration::from_secs(5), || async {
            admin_metric(&proxy, "config_reloads_total{result=\"success\"}").await == Some(1.0)
        })
        .await
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    get(&proxy.url("/scim/v2/two")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !proxy.logs().iter().any(|l| l.contains("/scim/v2/two")),
        "an info access line was written at level warn"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reloads_under_load_fail_no_request() {
    let config = |level: &str| {
        config_text(
            "",
            &format!("[log]\nlevel = \"{level}\"\n\n[reload]\ndebounce = \"10ms\"\npoll_interval = \"1h\"\n"),
        )
    };
    let mut volume = KubeVolume::new(&[("config.toml", &config("info"))]);
    let proxy = ProxyProcess::start(&volume.path("config.toml"), &[TOKEN_ENV]);
    let url = proxy.url("/scim/v2/Users");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let url = url.clone();
        let stop = stop.clone();
        clients.push(tokio::spawn(async move {
            let mut done = 0u32;
            let mut failures = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match get(&url).await {
                    Ok((status, _)) if is_scim_answer(status) => done += 1,
                    other => failures.push(format!("{other:?}")),
                }
            }
            (done, failures)
        }));
    }
    for i in 0..10 {
        volume.swap(&[(
            "config.toml",
            &config(if i % 2 == 0 { "debug" } else { "info" }),
        )]);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for c in clients {
        let (done, failures) = c.await.unwrap();
        assert!(failures.is_empty(), "failed requests: {failures:?}");
        total += done;
    }
    assert!(total > 20, "too few requests to mean anything: {total}");
    let reloads = admin_metric(&proxy, "config_reloads_total{result=\"success\"}")
        .await
        .unwrap();
    assert!(reloads >= 5.0, "only {reloads} reloads happened");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_only_changes_are_reported_and_not_applied() {
    let mut volume = KubeVolume::new(&[("config.toml", &scim_enabled(true))]);
    let proxy = ProxyProcess::start(&volume.path("config.toml"), &[TOKEN_ENV]);
    let public = proxy.public;

    // Moves the listener (restart only) and switches SCIM off (reloadable) in one change.
    let moved =
        scim_enabled(false).replacen("listen = \"127.0.0.1:0\"", "listen = \"127.0.0.1:1\"", 1);
    assert!(moved.starts_with("[server]\nlisten = \"127.0.0.1:1\""));
    volume.swap(&[("config.toml", &moved)]);
    assert!(
        eventually(Duration::from_secs(5), || async {
            scim_status(&proxy).await == 404
        })
        .await
    );
    assert!(
        proxy.wait_for_log(Duration::from_secs(1), |l| l.contains("\"level\":\"WARN\"")
            && l.contains("only take effect after a restart")
            && l.contains("server.listen"))
    );
    // Still on the same port.
    assert_eq!(proxy.public, public);
    assert_eq!(
        get(&format!("http://{public}/scim/v2/Users"))
            .await
            .unwrap()
            .0,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_volume_token_file_is_watched_and_an_empty_one_refused() {
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("config.toml");
    std::fs::write(&config, scim_enabled(true)).unwrap();
    let mut secrets = KubeVolume::new(&[("scim-token", "first-token\n")]);
    let token_path = secrets.path("scim-token").display().to_string();
    let proxy = ProxyProcess::start(&config, &[("SCIM_TOKEN_FILE", token_path.as_str())]);

    // Rotation through the Secret volume: a real change, counted as a successful reload.
    secrets.swap(&[("scim-token", "second-token\n")]);
    assert!(
        eventually(Duration::from_secs(5), || async {
            admin_metric(&proxy, "config_reloads_total{result=\"success\"}").await == Some(1.0)
        })
        .await,
        "token rotation not noticed:\n{}",
        proxy.logs().join("\n")
    );

    // An empty token is refused and named, without its (empty) value mattering.
    secrets.swap(&[("scim-token", "\n")]);
    assert!(
        eventually(Duration::from_secs(5), || async {
            admin_metric(&proxy, "config_reloads_total{result=\"error\"}").await == Some(1.0)
        })
        .await
    );
    assert!(
        proxy.wait_for_log(Duration::from_secs(1), |l| l.contains("SCIM_TOKEN_FILE")
            && l.contains("empty"))
    );
    let logs = proxy.logs().join("\n");
    assert!(!logs.contains("first-token") && !logs.contains("second-token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_reload_endpoint_triggers_a_reload() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    let text = |on: bool| {
        config_text(
            "",
            &format!("[scim]\nenabled = {on}\n\n[reload]\nwatch = false\npoll_interval = \"1h\"\n"),
        )
    };
    std::fs::write(&path, text(true)).unwrap();
    let proxy = ProxyProcess::start(&path, &[TOKEN_ENV]);
    std::fs::write(&path, text(false)).unwrap();
    assert!(is_scim_answer(scim_status(&proxy).await));

    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let req = http::Request::post(proxy.admin_url("/reload"))
        .body(http_body_util::Empty::new())
        .unwrap();
    assert_eq!(client.request(req).await.unwrap().status(), 202);
    assert!(
        eventually(Duration::from_secs(5), || async {
            scim_status(&proxy).await == 404
        })
        .await
    );
}
