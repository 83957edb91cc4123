//! Hot reload of the real binary: `..data` symlink swaps, invalid files, SIGHUP, and reloads
//! under load.
//!
//! What is observable from outside while SCIM and the pass-through are stubs: `scim.enabled`
//! (the SCIM route answers 501/401 when on and 404 when off), the access log (follows
//! `log.level`), and the reload metrics on the admin port.

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
