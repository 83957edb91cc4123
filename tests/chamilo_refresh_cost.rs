//! What one index refresh costs Chamilo, with the stand-in's real-Chamilo cost model (issue
//! 15): a bare `get_users status=*`, the bare refresh, and the full refresh (the design before
//! issue 15, and still the first listing at start-up). Prints figures for `bench/chamilo.md`.
//!
//! `CHAMILO_REFRESH_SIZES=1000,10000 cargo test --test chamilo_refresh_cost -- --ignored --nocapture`

use std::sync::Arc;

use chamilo_scim_proxy::chamilo::client::{ClientSettings, Credentials};
use chamilo_scim_proxy::chamilo::index::{IndexFields, UserIndex};
use chamilo_scim_proxy::chamilo::lookup::AccountLookup;
use chamilo_scim_proxy::chamilo::ChamiloClient;
use chamilo_scim_proxy::config::Secret;
use chamilo_scim_proxy::standin::{Standin, StandinConfig, StandinHandle};

/// The sizes to measure: `CHAMILO_REFRESH_SIZES` (comma-separated), 1k and 10k by default.
fn sizes() -> Vec<usize> {
    std::env::var("CHAMILO_REFRESH_SIZES")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// A stand-in of `n` accounts with the real-Chamilo cost model and the proxy's extra fields.
async fn realistic_standin(n: usize) -> StandinHandle {
    let chamilo = Standin::start(StandinConfig {
        seed_users: n,
        ..StandinConfig::realistic()
    })
    .await
    .unwrap();
    for f in IndexFields::default().all() {
        chamilo.state().ensure_extra_field(f);
    }
    chamilo
}

/// Chamilo time (the stand-in's modelled cost) and queries of one step.
async fn measure<F, T>(chamilo: &StandinHandle, step: F) -> (f64, u64)
where
    F: std::future::Future<Output = T>,
{
    chamilo.reset_calls();
    step.await;
    (chamilo.busy_time().as_secs_f64(), chamilo.queries())
}

#[tokio::test]
#[ignore = "measurement, prints figures"]
async fn refresh_cost_on_chamilo() {
    let sizes = sizes();
    println!("| accounts | bare get_users s / queries | bare refresh s / queries | full refresh (before issue 15, first listing) s / queries | ratio bare refresh / bare get_users | ratio full / bare refresh |");
    println!("|---|---|---|---|---|---|");
    for n in sizes {
        let chamilo = realistic_standin(n).await;
        let client = Arc::new(
            ChamiloClient::new(ClientSettings::new(
                chamilo.base_url.clone(),
                Credentials {
                    username: "admin".into(),
                    api_key: Some(Secret::new(chamilo.admin_api_key.clone())),
                    password: None,
                    security_key: None,
                },
            ))
            .unwrap(),
        );
        let lookup = AccountLookup::new(
            Arc::new(UserIndex::new()),
            client.clone(),
            IndexFields::default(),
        );
        let (bare_s, bare_q) = measure(&chamilo, async {
            client.get_users_each(None, &[], |_| {}).await.unwrap()
        })
        .await;
        let (full_s, full_q) = measure(&chamilo, async { lookup.rebuild().await.unwrap() }).await;
        let (cheap_s, cheap_q) =
            measure(&chamilo, async { lookup.refresh_bare().await.unwrap() }).await;
        println!(
            "| {n} | {bare_s:.2} / {bare_q} | {cheap_s:.2} / {cheap_q} | {full_s:.2} / {full_q} | {:.2} | {:.0} |",
            cheap_s / bare_s,
            full_s / cheap_s
        );
    }
}

/// Start-up with the real-Chamilo cost model (issue 15 §3): how long after the start until
/// SCIM answers a lookup by userName and a create, and until the first listing is in (every
/// request answers, `/readyz` with `scim.ready_requires_backend`). Prints figures.
///
/// `CHAMILO_REFRESH_SIZES=1000,10000,100000 cargo test --test chamilo_refresh_cost start_up -- --ignored --nocapture`
#[tokio::test]
#[ignore = "measurement, prints figures"]
async fn start_up_time() {
    use chamilo_scim_proxy::chamilo::Backend;
    use chamilo_scim_proxy::config::Config;
    use chamilo_scim_proxy::directory::query::{AttrPath, CompValue, CompareOp, Filter};
    use chamilo_scim_proxy::directory::{Directory, ListQuery, User};
    use std::time::{Duration, Instant};

    let sizes = sizes();
    println!("| accounts | start checks s | first lookup answered s | first create answered s | index in (ready) s | Chamilo time, every call s |");
    println!("|---|---|---|---|---|---|");
    for n in sizes {
        let chamilo = realistic_standin(n).await;
        let text = format!(
            "[chamilo]\nurl = \"{}\"\nusername = \"admin\"\napi_key = \"{}\"\nindex_refresh = \"1h\"\nenrolment_reconcile = \"0s\"\n",
            chamilo.base_url, chamilo.admin_api_key
        );
        let config: Config = toml::from_str(&text).unwrap();
        let t0 = Instant::now();
        let b = Backend::from_config(&config.chamilo, "http://127.0.0.1:9").unwrap();
        let stop = tokio_util::sync::CancellationToken::new();
        let refresh = b.start(stop.clone()).await.unwrap();
        let started = t0.elapsed();
        let lookup = ListQuery {
            filter: Some(Filter::Compare {
                path: AttrPath::new("userName", None),
                op: CompareOp::Eq,
                value: CompValue::Str("new.hire@example.org".into()),
            }),
            sort: None,
            start_index: 1,
            count: 1,
        };
        let found = b.directory.find(&lookup).await.unwrap();
        assert_eq!(found.total, 0);
        let looked_up = t0.elapsed();
        b.directory
            .create(User::from_json(
                serde_json::json!({"userName": "new.hire@example.org",
                    "emails": [{"value": "new.hire@example.org"}]})
                .as_object()
                .unwrap()
                .clone(),
            ))
            .await
            .unwrap();
        let created = t0.elapsed();
        while !b.is_ready() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let ready = t0.elapsed();
        let modelled = chamilo.modelled_time();
        println!(
            "| {n} | {:.2} | {:.2} | {:.2} | {:.1} | {:.1} |",
            started.as_secs_f64(),
            looked_up.as_secs_f64(),
            created.as_secs_f64(),
            ready.as_secs_f64(),
            modelled.as_secs_f64()
        );
        stop.cancel();
        let _ = refresh.await;
    }
}
