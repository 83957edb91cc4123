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
    let sizes: Vec<usize> = std::env::var("CHAMILO_REFRESH_SIZES")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    println!("| accounts | bare get_users s / queries | bare refresh s / queries | full refresh (before issue 15, first listing) s / queries | ratio bare refresh / bare get_users | ratio full / bare refresh |");
    println!("|---|---|---|---|---|---|");
    for n in sizes {
        let chamilo = Standin::start(StandinConfig {
            seed_users: n,
            ..StandinConfig::realistic()
        })
        .await
        .unwrap();
        for f in IndexFields::default().all() {
            chamilo.state().ensure_extra_field(f);
        }
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
