//! Peak memory of the proxy's side during a user-index rebuild at 100k accounts, with the
//! stand-in in a separate process (this same test binary, re-run as a child) so that its
//! 100k users do not count. Every account carries the kept attributes of a user sent with
//! Entra ID's default mapping (`chamilo_bench_support::entra_kept_field`, about 0.9 KB of
//! JSON); `CHAMILO_RSS_KEPT=0` leaves them out (the figures before issue 10). Prints figures,
//! asserts nothing about size.
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
const KEPT: &str = "CHAMILO_RSS_KEPT";

/// Whether the accounts carry kept attributes (unless `CHAMILO_RSS_KEPT=0`).
fn with_kept() -> bool {
    std::env::var(KEPT).map_or(true, |v| v != "0")
}

fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// CPU time (user + system, every thread) this process has used: the proxy's side only, the
/// stand-in being another process. Clock ticks of 10 ms.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which ends with the last ')'): utime is the 12th, stime
    // the 13th of them.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0
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
    if with_kept() {
        chamilo_bench_support::seed_managed_kept(&chamilo, n);
    } else {
        chamilo_bench_support::seed_managed(&chamilo, n);
    }
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
        .env(KEPT, if with_kept() { "1" } else { "0" })
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
    if with_kept() {
        let sizes: Vec<usize> = (1..=1000)
            .map(|i| chamilo_bench_support::entra_kept_field(i).len())
            .collect();
        println!(
            "kept attributes field (Entra default mapping): {:.0} bytes on average as stored (json64), {}..{}",
            sizes.iter().sum::<usize>() as f64 / sizes.len() as f64,
            sizes.iter().min().unwrap_or(&0),
            sizes.iter().max().unwrap_or(&0)
        );
    } else {
        println!("no kept attributes (CHAMILO_RSS_KEPT=0)");
    }
    // Reset the peak ("5" clears VmHWM) so that it covers the step measured only.
    let reset_peak = || {
        let _ = std::fs::write("/proc/self/clear_refs", "5");
    };
    reset_peak();
    let before = status_kib("VmRSS:");
    let started = Instant::now();
    let cpu = cpu_seconds();
    let n = lookup.rebuild().await.unwrap();
    let took = started.elapsed();
    let cpu = cpu_seconds() - cpu;
    let peak = status_kib("VmHWM:");
    let after = status_kib("VmRSS:");
    println!(
        "first build of {n} accounts (stand-in in another process): RSS before {:.1} MiB, peak during {:.1} MiB, after {:.1} MiB ({took:?}, CPU here {cpu:.2} s); index estimate {:.1} MiB",
        mib(before),
        mib(peak),
        mib(after),
        lookup.index.approx_bytes() as f64 / 1048576.0
    );
    for round in 1..=2 {
        reset_peak();
        let again = Instant::now();
        let cpu = cpu_seconds();
        lookup.rebuild().await.unwrap();
        let cpu = cpu_seconds() - cpu;
        println!(
            "refresh {round} (diffed into the live index, nothing changed): peak {:.1} MiB, after {:.1} MiB ({:?}, CPU here {cpu:.2} s)",
            mib(status_kib("VmHWM:")),
            mib(status_kib("VmRSS:")),
            again.elapsed()
        );
    }
    // The periodic refresh: a listing without extra fields, diffed into the index.
    for round in 1..=2 {
        reset_peak();
        let again = Instant::now();
        let cpu = cpu_seconds();
        lookup.refresh_bare().await.unwrap();
        let cpu = cpu_seconds() - cpu;
        println!(
            "bare refresh {round} (no extra fields listed, nothing changed): peak {:.1} MiB, after {:.1} MiB ({:?}, CPU here {cpu:.2} s)",
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
