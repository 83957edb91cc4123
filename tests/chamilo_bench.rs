//! Cost of directory operations against the stand-in at 1k, 10k and 100k accounts with a
//! 5 ms per-call latency: Chamilo calls per operation, p50/p99, and the proxy's own share
//! (elapsed minus the time the stand-in spent answering, i.e. client, HTTP and directory work).
//! Prints figures, asserts nothing about speed.
//!
//! `cargo test --release --test chamilo_bench -- --ignored --nocapture`
//!
//! Figures, the method (a no-op baseline of one bare call gives the loopback round trip, which is
//! subtracted per call), and the memory measurements are recorded in `bench/chamilo.md`.

mod chamilo_support;

use std::time::{Duration, Instant};

use chamilo_scim_proxy::chamilo::mapping::ChamiloMapping;
use chamilo_scim_proxy::directory::{Directory, ListQuery, User};
use chamilo_scim_proxy::scim::filter::{AttrPath, CompValue, CompareOp, Filter};
use chamilo_scim_proxy::standin::{Cost, Standin, StandinConfig, StandinHandle};
use serde_json::{json, Value};

const LATENCY: Duration = Duration::from_millis(5);
const OPS: usize = 60;

fn user(i: usize) -> User {
    match json!({
        "userName": format!("bench.user{i}@example.org"),
        "externalId": format!("bench-{i}"),
        "name": {"givenName": "Bench", "familyName": format!("User{i}")},
        "emails": [{"value": format!("bench.user{i}@example.org"), "primary": true}],
    }) {
        Value::Object(m) => User::from_json(m),
        _ => unreachable!(),
    }
}

fn eq(attr: &str, value: &str) -> ListQuery {
    ListQuery {
        filter: Some(Filter::Compare {
            path: AttrPath {
                urn: None,
                name: attr.into(),
                sub_attr: None,
            },
            op: CompareOp::Eq,
            value: CompValue::Str(value.into()),
        }),
        sort: None,
        start_index: 1,
        count: 10,
    }
}

struct Stats {
    name: &'static str,
    times: Vec<Duration>,
    calls: u64,
    /// Time the stand-in spent answering (its modelled latency and its own work).
    chamilo: Duration,
}

impl Stats {
    /// Per Chamilo call: elapsed minus the stand-in's time, i.e. the loopback HTTP round trip
    /// and the client's encoding/decoding (measured with a no-op directory: one bare call).
    fn transport_per_call(&self) -> Duration {
        let total: Duration = self.times.iter().sum();
        total.saturating_sub(self.chamilo) / (self.calls.max(1) as u32)
    }

    fn print(&mut self, accounts: usize, transport: Duration) {
        self.times.sort();
        let n = self.times.len();
        let p50 = self.times[n / 2];
        let p99 = self.times[(n * 99 / 100).min(n - 1)];
        let calls = self.calls as f64 / n as f64;
        let total: Duration = self.times.iter().sum();
        let own = total.saturating_sub(self.chamilo);
        let directory = own.saturating_sub(transport * (self.calls as u32));
        println!(
            "{accounts:>7} accounts  {:<22} calls/op {calls:>4.2}  p50 {:>7.2} ms  p99 {:>7.2} ms  own share {:>5.1} % (directory {:>4.1} %, {:>6.1} µs/op)",
            self.name,
            p50.as_secs_f64() * 1000.0,
            p99.as_secs_f64() * 1000.0,
            own.as_secs_f64() / total.as_secs_f64() * 100.0,
            directory.as_secs_f64() / total.as_secs_f64() * 100.0,
            directory.as_secs_f64() * 1e6 / n as f64
        );
    }
}

async fn measure<F, Fut>(chamilo: &StandinHandle, name: &'static str, mut op: F) -> Stats
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    chamilo.reset_calls();
    let mut times = Vec::with_capacity(OPS);
    for i in 0..OPS {
        let t = Instant::now();
        op(i).await;
        times.push(t.elapsed());
    }
    Stats {
        name,
        times,
        calls: chamilo.total_calls(),
        chamilo: chamilo.busy_time(),
    }
}

async fn run(accounts: usize) {
    let chamilo = Standin::start(StandinConfig {
        seed_users: accounts,
        ..StandinConfig::default()
    })
    .await
    .unwrap();
    let chamilo_support::Replica {
        client,
        lookup,
        directory: dir,
    } = chamilo_support::replica(&chamilo, ChamiloMapping::default()).await;
    let t = Instant::now();
    lookup.rebuild().await.unwrap();
    let build = t.elapsed();
    chamilo.set_cost(Cost {
        latency: LATENCY,
        ..Cost::default()
    });

    // The baseline: one bare web-service call per operation, no directory work.
    let mut noop = measure(&chamilo, "no-op (one bare call)", |i| {
        let client = &client;
        async move {
            assert!(!client.username_exists(&format!("nobody{i}")).await.unwrap());
        }
    })
    .await;
    let created = std::sync::Mutex::new(Vec::new());
    let mut creates = measure(&chamilo, "create", |i| {
        let dir = &dir;
        let created = &created;
        async move {
            let id = dir.create(user(i)).await.unwrap().id().unwrap().to_owned();
            created.lock().unwrap().push(id);
        }
    })
    .await;
    let ids = created.into_inner().unwrap();
    let mut by_name = measure(&chamilo, "lookup userName", |i| {
        let dir = &dir;
        async move {
            let p = dir
                .find(&eq("userName", &format!("BENCH.user{i}@example.org")))
                .await
                .unwrap();
            assert_eq!(p.total, 1);
        }
    })
    .await;
    let mut by_ext = measure(&chamilo, "lookup externalId", |i| {
        let dir = &dir;
        async move {
            let p = dir
                .find(&eq("externalId", &format!("bench-{i}")))
                .await
                .unwrap();
            assert_eq!(p.total, 1);
        }
    })
    .await;
    let mut by_id = measure(&chamilo, "lookup id", |i| {
        let dir = &dir;
        let id = ids[i].clone();
        async move {
            assert!(dir.get(&id).await.unwrap().is_some());
        }
    })
    .await;
    let mut misses = measure(&chamilo, "lookup miss", |i| {
        let dir = &dir;
        async move {
            let p = dir
                .find(&eq("userName", &format!("nobody{i}@example.org")))
                .await
                .unwrap();
            assert_eq!(p.total, 0);
        }
    })
    .await;
    let mut updates = measure(&chamilo, "update (replace)", |i| {
        let dir = &dir;
        let id = ids[i].clone();
        async move {
            let mut u = user(i);
            u.as_json_mut().insert(
                "name".into(),
                json!({"givenName": "Renamed", "familyName": "X"}),
            );
            dir.replace(&id, u, None).await.unwrap();
        }
    })
    .await;
    let mut deactivations = measure(&chamilo, "deactivate (delete)", |i| {
        let dir = &dir;
        let id = ids[i].clone();
        async move {
            dir.delete(&id).await.unwrap();
        }
    })
    .await;
    println!(
        "{accounts:>7} accounts  index build (one get_users, 2 extra fields, no modelled cost): {build:?}"
    );
    let transport = noop.transport_per_call();
    println!(
        "{accounts:>7} accounts  loopback round trip + client per call: {:.1} µs",
        transport.as_secs_f64() * 1e6
    );
    for s in [
        &mut noop,
        &mut creates,
        &mut by_name,
        &mut by_ext,
        &mut by_id,
        &mut misses,
        &mut updates,
        &mut deactivations,
    ] {
        s.print(accounts + 2, transport);
    }
    assert_eq!(chamilo.calls("get_users"), 0, "no listing per request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark, prints figures"]
async fn directory_costs_at_1k_10k_100k() {
    for n in [1_000, 10_000, 100_000] {
        run(n).await;
    }
}
