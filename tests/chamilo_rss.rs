//! Peak memory of the proxy's side during a user-index rebuild at 100k accounts, with the
//! stand-in in a separate process (this same test binary, re-run as a child) so that its
//! 100k users do not count. Prints figures, asserts nothing about size.
//!
//! `cargo test --release --test chamilo_rss -- --ignored --nocapture index_rebuild_peak_rss`

mod chamilo_bench_support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use chamilo_scim_proxy::chamilo::client::{ClientSettings, Credentials};
use chamilo_scim_proxy::chamilo::index::{IndexFields, UserIndex};
use chamilo_scim_proxy::chamilo::lookup::AccountLookup;
use chamilo_scim_proxy::chamilo::ChamiloClient;
use chamilo_scim_proxy::config::Secret;
use chamilo_scim_proxy::standin::{Standin, StandinConfig};

const CHILD: &str = "CHAMILO_RSS_STANDIN_USERS";

fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The child: serves a stand-in seeded like a real install (every account SCIM-managed, so
/// the listing carries both extra fields), prints its address, and runs until stdin closes.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
#[ignore = "helper process for index_rebuild_peak_rss"]
async fn serve_standin() {
    let Some(n) = std::env::var(CHILD)
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    else {
        return;
    };
    let chamilo = Standin::start(StandinConfig::default()).await.unwrap();
    chamilo_bench_support::seed_managed(&chamilo, n);
    println!("STANDIN {} {}", chamilo.base_url, chamilo.admin_api_key);
    // Until the parent closes stdin (bounded by the parent's own run).
    tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, prints figures"]
async fn index_rebuild_peak_rss() {
    const N: usize = 100_000;
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args(["--ignored", "--exact", "serve_standin", "--nocapture"])
        .env(CHILD, N.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (url, key) = loop {
        let line = lines.next().expect("child exited").unwrap();
        if let Some(rest) = line.strip_prefix("STANDIN ") {
            let mut parts = rest.split(' ');
            break (
                parts.next().unwrap().to_owned(),
                parts.next().unwrap().to_owned(),
            );
        }
    };
    let client = Arc::new(
        ChamiloClient::new(ClientSettings::new(
            url,
            Credentials {
                username: "admin".into(),
                api_key: Some(Secret::new(key)),
                password: None,
                security_key: None,
            },
        ))
        .unwrap(),
    );
    let lookup = AccountLookup::new(Arc::new(UserIndex::new()), client, IndexFields::default());
    let mib = |kib: u64| kib as f64 / 1024.0;
    // Reset the peak ("5" clears VmHWM) so that it covers the step measured only.
    let reset_peak = || {
        let _ = std::fs::write("/proc/self/clear_refs", "5");
    };
    reset_peak();
    let before = status_kib("VmRSS:");
    let started = Instant::now();
    let n = lookup.rebuild().await.unwrap();
    let took = started.elapsed();
    let peak = status_kib("VmHWM:");
    let after = status_kib("VmRSS:");
    println!(
        "first build of {n} accounts (stand-in in another process): RSS before {:.1} MiB, peak during {:.1} MiB, after {:.1} MiB ({took:?}); index estimate {:.1} MiB",
        mib(before),
        mib(peak),
        mib(after),
        lookup.index.approx_bytes() as f64 / 1048576.0
    );
    for round in 1..=2 {
        reset_peak();
        let again = Instant::now();
        lookup.rebuild().await.unwrap();
        println!(
            "refresh {round} (diffed into the live index): peak {:.1} MiB, after {:.1} MiB ({:?})",
            mib(status_kib("VmHWM:")),
            mib(status_kib("VmRSS:")),
            again.elapsed()
        );
    }
    // What paging costs: one page of 100 out of 100k, computed under the read lock.
    reset_peak();
    let t = Instant::now();
    let page = lookup.index.page(|a| a.user_name().is_some(), 50_000, 100);
    println!(
        "one page of {} (of {}): peak {:.1} MiB, {:?}",
        page.accounts.len(),
        page.total,
        mib(status_kib("VmHWM:")),
        t.elapsed()
    );
    // A search the index cannot answer by key looks at every account, a chunk at a time.
    reset_peak();
    let seen: usize = lookup.index.chunks(|_| true, 1024).map(|c| c.len()).sum();
    println!(
        "all {seen} accounts in chunks of 1024 (searches by other attributes): peak {:.1} MiB",
        mib(status_kib("VmHWM:"))
    );
    drop(child.stdin.take());
    let _ = child.wait();
}
