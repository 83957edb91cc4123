//! The user index against the stand-in: built from one listing, every lookup confirmed with
//! one fresh call, and correct when accounts change behind the proxy's back.

use std::sync::Arc;

use chamilo_scim_proxy::chamilo::client::{ClientSettings, Credentials};
use chamilo_scim_proxy::chamilo::index::{AccountRef, IndexFields, UserIndex};
use chamilo_scim_proxy::chamilo::lookup::AccountLookup;
use chamilo_scim_proxy::chamilo::ChamiloClient;
use chamilo_scim_proxy::chamilo::ChamiloError;
use chamilo_scim_proxy::config::Secret;
use chamilo_scim_proxy::standin::{Cost, NewUser, Standin, StandinConfig, StandinHandle};

const UN: &str = "scim_user_name";
const EXT: &str = "scim_external_id";

fn scim_user(chamilo: &StandinHandle, login: &str, user_name: &str, ext: &str) -> u64 {
    chamilo
        .state()
        .insert_user(NewUser {
            username: login.into(),
            firstname: Some("First".into()),
            lastname: "Last".into(),
            email: format!("{login}@example.org"),
            password: "x".into(),
            status: 5,
            extra: vec![
                (UN.into(), Some(user_name.into())),
                (EXT.into(), Some(ext.into())),
            ],
            ..NewUser::default()
        })
        .unwrap()
}

async fn setup(seed: usize) -> (StandinHandle, AccountLookup) {
    let chamilo = Standin::start(StandinConfig {
        seed_users: seed,
        ..StandinConfig::default()
    })
    .await
    .unwrap();
    let client = ChamiloClient::new(ClientSettings::new(
        chamilo.base_url.clone(),
        Credentials {
            username: "admin".into(),
            api_key: Some(Secret::new(chamilo.admin_api_key.clone())),
            password: None,
            security_key: None,
        },
    ))
    .unwrap();
    let lookup = AccountLookup::new(
        Arc::new(UserIndex::new()),
        Arc::new(client),
        IndexFields::default(),
    )
    .with_min_rebuild_interval(std::time::Duration::ZERO);
    (chamilo, lookup)
}

#[tokio::test]
async fn lookups_cost_one_call_and_see_changes_behind_the_proxy() {
    let (chamilo, lookup) = setup(500).await;
    let ann = scim_user(&chamilo, "ann.lee", "Ann.Lee@Example.org", "ext-ann");
    let bob = scim_user(&chamilo, "bob", "bob@example.org", "ext-bob");

    assert_eq!(lookup.rebuild().await.unwrap(), 504);
    assert_eq!(chamilo.calls("get_users"), 1);
    assert!(lookup.index.is_ready());
    chamilo.reset_calls();

    // Hit by userName (case-insensitive), by externalId, by id: one call each.
    let a = lookup
        .by_user_name("ann.lee@example.org")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((a.id, a.active, a.login.as_str()), (ann, true, "ann.lee"));
    assert_eq!(a.firstname.as_deref(), Some("First"));
    assert_eq!(chamilo.total_calls(), 1);
    let b = lookup.by_external_id("ext-bob").await.unwrap().unwrap();
    assert_eq!(b.id, bob);
    assert_eq!(chamilo.total_calls(), 2);
    assert_eq!(lookup.by_id(ann).await.unwrap().map(|a| a.id), Some(ann));
    assert_eq!(chamilo.total_calls(), 3);
    // externalId is case-exact even though Chamilo matches case-insensitively.
    assert!(lookup.by_external_id("EXT-BOB").await.unwrap().is_none());

    // A miss is confirmed fresh: a user created behind the proxy's back is found.
    chamilo.reset_calls();
    let cy = scim_user(&chamilo, "cy", "cy@example.org", "ext-cy");
    let c = lookup
        .by_user_name("cy@example.org")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((c.id, c.login.as_str(), c.active), (cy, "cy", true));
    assert!(c.partial, "names arrive with the next listing");
    assert!(chamilo.total_calls() <= 2);
    // A true miss: one call, and nothing invented.
    chamilo.reset_calls();
    assert!(lookup
        .by_user_name("nobody@example.org")
        .await
        .unwrap()
        .is_none());
    assert_eq!(chamilo.total_calls(), 1);

    // A deactivation behind the proxy's back is never hidden.
    chamilo.state().set_active(ann, false);
    let a = lookup
        .by_user_name("ann.lee@example.org")
        .await
        .unwrap()
        .unwrap();
    assert!(!a.active);
    assert!(!lookup.index.by_id(ann).unwrap().active);

    // A rename behind the proxy's back: the id lookup returns the new login.
    chamilo.state().rename_user(bob, "robert");
    let b = lookup.by_id(bob).await.unwrap().unwrap();
    assert_eq!(b.login, "robert");

    // A deletion behind the proxy's back: only a listing can tell a deletion from a rename
    // made elsewhere, so the lookup asks for one (503) instead of answering 404 at once; then
    // the id is not returned, and dropped from the index.
    chamilo.state().remove_user(bob);
    assert!(matches!(
        lookup.by_id(bob).await,
        Err(ChamiloError::IndexRefreshing { .. })
    ));
    lookup.rebuild().await.unwrap();
    assert!(lookup.by_id(bob).await.unwrap().is_none());
    assert!(lookup.by_external_id("ext-bob").await.unwrap().is_none());
    assert!(lookup.index.by_id(bob).is_none());

    // An id newer than the index: the request does not list (it answers "refreshing", 503),
    // the background listing it asks for finds it.
    let dan = scim_user(&chamilo, "dan", "dan@example.org", "ext-dan");
    chamilo.reset_calls();
    assert!(matches!(
        lookup.by_id(dan).await,
        Err(ChamiloError::IndexRefreshing { .. })
    ));
    assert_eq!(chamilo.calls("get_users"), 0, "no listing inside a request");
    lookup.rebuild().await.unwrap();
    let d = lookup.by_id(dan).await.unwrap().unwrap();
    assert_eq!(d.login, "dan");
    assert_eq!(chamilo.calls("get_users"), 1);
    // An old id that does not exist: no call at all.
    chamilo.reset_calls();
    assert!(lookup.by_id(bob).await.unwrap().is_none());
    assert_eq!(chamilo.total_calls(), 0);
}

#[tokio::test]
async fn lookup_cost_does_not_grow_with_accounts() {
    let (small, small_lookup) = setup(100).await;
    let (large, large_lookup) = setup(20_000).await;
    for (chamilo, lookup) in [(&small, &small_lookup), (&large, &large_lookup)] {
        let id = scim_user(chamilo, "probe", "probe@example.org", "ext-probe");
        lookup.rebuild().await.unwrap();
        chamilo.reset_calls();
        for _ in 0..5 {
            assert_eq!(
                lookup
                    .by_user_name("probe@example.org")
                    .await
                    .unwrap()
                    .map(|a| a.id),
                Some(id)
            );
            assert!(lookup
                .by_user_name("absent@example.org")
                .await
                .unwrap()
                .is_none());
        }
        assert_eq!(chamilo.total_calls(), 10);
        assert_eq!(chamilo.calls("get_users"), 0);
    }
    assert_eq!(large_lookup.index.len(), 20_003);
}

#[tokio::test]
async fn unknown_ids_do_not_trigger_a_listing_storm() {
    let (chamilo, lookup) = setup(10).await;
    let lookup = AccountLookup::new(
        lookup.index.clone(),
        lookup.client.clone(),
        IndexFields::default(),
    );
    lookup.rebuild().await.unwrap();
    let newer = scim_user(&chamilo, "eve", "eve@example.org", "ext-eve");
    chamilo.reset_calls();
    for id in [newer, 999_999, 1_000_000] {
        assert!(lookup.by_id(id).await.unwrap().is_none());
    }
    assert_eq!(
        chamilo.calls("get_users"),
        0,
        "the last listing is too recent"
    );
    // By userName it is found at once: a fresh lookup, not a listing.
    assert_eq!(
        lookup
            .by_user_name("eve@example.org")
            .await
            .unwrap()
            .map(|a| a.id),
        Some(newer)
    );
}

fn rss_bytes() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<usize>().ok())
        .map_or(0, |pages| pages * 4096)
}

/// Memory and build time of the index at 100k accounts. Prints figures; run with
/// `cargo test --release --test chamilo_index -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, prints figures"]
async fn index_memory_at_100k_accounts() {
    use chamilo_scim_proxy::chamilo::index::Account;
    const N: u64 = 100_000;
    let before = rss_bytes();
    let index = UserIndex::new();
    index.begin_rebuild();
    let started = std::time::Instant::now();
    index.finish_rebuild((1..=N).map(|i| Account {
        id: i,
        login: format!("firstname.lastname{i}"),
        user_name: Some(format!("firstname.lastname{i}@example-university.org")),
        external_id: Some(format!("{:08x}-1d2c-4b7a-9e3f-{:012x}", i * 7919, i)),
        active: i % 10 != 0,
        firstname: Some("Firstname".into()),
        lastname: format!("Lastname{i}"),
        email: format!("firstname.lastname{i}@example-university.org"),
        ..Account::default()
    }));
    let build = started.elapsed();
    let after = rss_bytes();
    let started = std::time::Instant::now();
    let mut hits = 0;
    for i in (1..=N).step_by(97) {
        hits += usize::from(
            index
                .by_user_name(&format!("FIRSTNAME.LASTNAME{i}@example-university.org"))
                .is_some(),
        );
    }
    let per_lookup = started.elapsed() / hits.max(1) as u32;
    println!(
        "index at {N} accounts: RSS +{:.1} MiB (estimate {:.1} MiB), build {:?}, in-memory lookup {:?} ({hits} hits)",
        (after.saturating_sub(before)) as f64 / 1048576.0,
        index.approx_bytes() as f64 / 1048576.0,
        build,
        per_lookup
    );

    // The same through the stand-in: one get_users with two extra fields, decoded and loaded.
    let (chamilo, lookup) = setup(N as usize).await;
    let started = std::time::Instant::now();
    let n = lookup.rebuild().await.unwrap();
    println!(
        "rebuild from a {n}-user stand-in listing (2 extra fields, no modelled cost): {:?}",
        started.elapsed()
    );
    assert_eq!(chamilo.calls("get_users"), 1);
}

#[tokio::test]
async fn unmanaged_logins_answer_as_user_names_with_fresh_checks() {
    let (chamilo, lookup) = setup(3).await;
    scim_user(&chamilo, "ann_example.org", "ann@example.org", "E-ann");
    lookup.rebuild().await.unwrap();
    chamilo.reset_calls();

    // An existing login without the userName field answers to itself, confirmed fresh.
    let a = lookup.by_user_name("User000002").await.unwrap().unwrap();
    assert_eq!(a.login, "user000002");
    assert_eq!(a.user_name, None);
    assert_eq!(chamilo.calls("username_exist"), 1);

    // A derived login belongs to its SCIM userName only.
    assert!(lookup
        .by_user_name("ann_example.org")
        .await
        .unwrap()
        .is_none());
    assert!(lookup
        .by_user_name("ann@example.org")
        .await
        .unwrap()
        .is_some());

    // An e-mail-style userName cannot be a login (no `login_is_email`): no extra call.
    chamilo.reset_calls();
    assert!(lookup
        .by_user_name("nobody@example.org")
        .await
        .unwrap()
        .is_none());
    assert_eq!(chamilo.calls("username_exist"), 0);

    // Deleted behind the proxy's back: not found, and dropped from the index.
    let gone = lookup.index.by_login("user000003").unwrap().id;
    chamilo.state().remove_user(gone);
    assert!(lookup.by_user_name("user000003").await.unwrap().is_none());
    assert!(lookup.index.by_id(gone).is_none());

    // Made in Chamilo since the listing: learned by a (rate-limited) listing in the
    // background; until then the lookup says so (503), it does not list.
    let late = chamilo.seed_users(1)[0];
    assert!(matches!(
        lookup.by_user_name("user000004").await,
        Err(ChamiloError::IndexRefreshing { .. })
    ));
    lookup.rebuild().await.unwrap();
    let found = lookup.by_user_name("user000004").await.unwrap().unwrap();
    assert_eq!(found.id, late);

    // Protected logins never answer.
    lookup.set_protected_logins(
        &["User000001".to_owned()],
        chamilo_scim_proxy::chamilo::username::LoginRules {
            login_is_email: false,
        },
    );
    assert!(lookup.by_user_name("user000001").await.unwrap().is_none());
}

fn managed(a: AccountRef<'_>) -> bool {
    a.user_name().is_some()
}

fn page_ids(lookup: &AccountLookup, skip: usize, take: usize) -> (usize, Vec<u64>) {
    let page = lookup.index.page(managed, skip, take);
    (page.total, page.accounts.iter().map(|a| a.id).collect())
}

/// A refresh while a client pages: changes made in Chamilo (added, renamed, deactivated,
/// deleted) are diffed into the live index, writes made through the proxy while the listing
/// was in flight are not undone by its older rows, and every page is one consistent state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_diffs_changes_behind_the_proxys_back_while_paging() {
    let (chamilo, lookup) = setup(0).await;
    let lookup = Arc::new(lookup);
    let ids: Vec<u64> = (1..=12)
        .map(|i| {
            scim_user(
                &chamilo,
                &format!("u{i:02}"),
                &format!("u{i:02}@example.org"),
                &format!("E-{i}"),
            )
        })
        .collect();
    lookup.rebuild().await.unwrap();
    // The service account and the anonymous user are listed too.
    let others = lookup.index.len() - ids.len();
    let (total, first) = page_ids(&lookup, 0, 4);
    assert_eq!((total, first.as_slice()), (12, &ids[..4]));

    // Behind the proxy's back, between two pages.
    let added = scim_user(&chamilo, "u13", "u13@example.org", "E-13");
    {
        let mut state = chamilo.state();
        assert!(state.rename_user(ids[5], "u06b"));
        state
            .user_mut(ids[5])
            .unwrap()
            .extra
            .insert(UN.into(), Some("u06b@example.org".into()));
        assert!(state.set_active(ids[6], false));
        assert!(state.remove_user(ids[1]));
        assert!(state.remove_user(ids[9]));
    }

    // A slow listing; while it is in flight, writes through the proxy (Chamilo and the
    // index change together, after Chamilo computed the listing).
    chamilo.set_cost(Cost {
        latency: std::time::Duration::from_millis(300),
        ..Cost::default()
    });
    chamilo.reset_calls();
    let refresh = tokio::spawn({
        let lookup = lookup.clone();
        async move { lookup.rebuild().await }
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while chamilo.calls("get_users") == 0 {
        assert!(std::time::Instant::now() < deadline, "no listing requested");
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let mut renamed = lookup.index.by_id(ids[7]).unwrap();
    {
        let mut state = chamilo.state();
        assert!(state.rename_user(ids[7], "u08b"));
        assert!(state.remove_user(ids[8]));
    }
    renamed.login = "u08b".into();
    lookup.index.upsert(renamed);
    lookup.index.remove(ids[8]);
    let late = scim_user(&chamilo, "u14", "u14@example.org", "E-14");
    let mut late_account = lookup.index.by_id(ids[0]).unwrap();
    late_account.id = late;
    late_account.login = "u14".into();
    late_account.user_name = Some("u14@example.org".into());
    late_account.external_id = Some("E-14".into());
    lookup.index.upsert(late_account);
    // The page taken meanwhile is consistent (its total matches its contents' state).
    let (mid_total, mid) = page_ids(&lookup, 0, 100);
    assert_eq!(mid_total, mid.len());
    assert!(mid.windows(2).all(|w| w[0] < w[1]));

    assert_eq!(
        refresh.await.unwrap().unwrap(),
        11 + others,
        "the listing as Chamilo computed it: 12 - 2 deleted + 1 added"
    );
    chamilo.set_cost(Cost::default());

    let idx = &lookup.index;
    // Added, renamed, deactivated, deleted behind the proxy's back: all seen.
    assert_eq!(idx.by_login("u13").map(|a| a.id), Some(added));
    assert!(idx.by_login("u06").is_none());
    assert!(idx.by_user_name("u06@example.org").is_none());
    assert_eq!(
        idx.by_user_name("U06B@example.org").map(|a| a.id),
        Some(ids[5])
    );
    assert_eq!(idx.by_id(ids[6]).map(|a| a.active), Some(false));
    assert!(idx.by_id(ids[1]).is_none());
    assert!(idx.by_external_id("E-10").is_none());
    // The proxy's own writes during the listing win over its older rows.
    assert_eq!(idx.by_login("u08b").map(|a| a.id), Some(ids[7]));
    assert!(idx.by_login("u08").is_none());
    assert!(idx.by_id(ids[8]).is_none());
    assert_eq!(idx.by_external_id("E-14").map(|a| a.id), Some(late));

    // The next pages come from the new state, in id order, and pages partition it.
    let mut expected: Vec<u64> = ids
        .iter()
        .copied()
        .filter(|id| ![ids[1], ids[8], ids[9]].contains(id))
        .chain([added, late])
        .collect();
    expected.sort_unstable();
    let mut paged = Vec::new();
    for skip in (0..20).step_by(4) {
        let (total, page) = page_ids(&lookup, skip, 4);
        assert_eq!(total, expected.len());
        paged.extend(page);
    }
    assert_eq!(paged, expected);

    // A second refresh agrees with Chamilo and changes nothing visible.
    lookup.rebuild().await.unwrap();
    assert_eq!(page_ids(&lookup, 0, 100).1, expected);
    assert_eq!(idx.by_login("u08b").map(|a| a.id), Some(ids[7]));
}

/// A listing without extra fields (the cheap refresh) sees logins, names, e-mail, `active`
/// and gone accounts, counts new ones without adding them, keeps the userName, externalId and attributes the index has, says
/// which accounts' extra fields are unknown, and never undoes a write made meanwhile.
#[test]
fn a_bare_listing_keeps_the_extra_fields_the_index_has() {
    use chamilo_scim_proxy::chamilo::index::Account;
    let scim = |id: u64, login: &str, un: &str, ext: &str| Account {
        id,
        login: login.into(),
        user_name: Some(un.into()),
        external_id: Some(ext.into()),
        attributes: Some(format!("attrs-{id}")),
        active: true,
        lastname: format!("Last{id}"),
        email: format!("{login}@example.org"),
        ..Account::default()
    };
    let bare = |a: &Account| Account {
        user_name: None,
        external_id: None,
        attributes: None,
        ..a.clone()
    };
    let index = UserIndex::new();
    index.begin_rebuild();
    index.finish_rebuild([
        scim(10, "alice", "alice@idp", "E-10"),
        scim(11, "bob", "bob@idp", "E-11"),
        scim(12, "carol", "carol@idp", "E-12"),
    ]);

    let mut refresh = index.begin_rebuild();
    // Renamed, deactivated and given a new e-mail behind the proxy's back.
    let mut alice = bare(&scim(10, "alice2", "", ""));
    alice.active = false;
    assert!(!index.apply_listed_bare(&mut refresh, &alice));
    // Carol is written through the proxy while the listing is in flight: the write wins.
    let mut carol = scim(12, "carol", "carol.new@idp", "E-12b");
    index.upsert(carol.clone());
    carol.lastname = "Stale".into();
    assert!(!index.apply_listed_bare(&mut refresh, &bare(&carol)));
    // Made by another replica or in Chamilo: extra fields unknown, so left out for a listing
    // with them.
    assert!(index.apply_listed_bare(&mut refresh, &bare(&scim(13, "dave", "", ""))));
    assert_eq!(refresh.extras_unknown(), 1);
    // Bob is not listed: deleted in Chamilo.
    assert_eq!(index.finish_refresh(refresh), 1);

    let a = index.by_id(10).unwrap();
    assert_eq!((a.login.as_str(), a.active), ("alice2", false));
    assert_eq!(a.email, "alice2@example.org");
    assert_eq!(a.user_name.as_deref(), Some("alice@idp"));
    assert_eq!(a.external_id.as_deref(), Some("E-10"));
    assert_eq!(a.attributes.as_deref(), Some("attrs-10"));
    assert_eq!(index.by_user_name("alice@idp").map(|a| a.id), Some(10));
    assert!(index.by_id(11).is_none());
    let c = index.by_id(12).unwrap();
    assert_eq!(c.user_name.as_deref(), Some("carol.new@idp"));
    assert_eq!(c.lastname, "Last12");
    assert!(index.by_id(13).is_none());
    assert!(index.by_login("dave").is_none());
}

/// The periodic refresh lists without extra fields (one query on Chamilo, not one per user
/// and field), sees changes behind the proxy's back, and fills in the extra fields of an
/// account made elsewhere with one listing with them at the next tick.
#[tokio::test]
async fn the_periodic_refresh_lists_without_extra_fields() {
    use std::time::{Duration, Instant};
    let (chamilo, lookup) = setup(200).await;
    let lookup = Arc::new(lookup);
    let known = scim_user(&chamilo, "known", "known@idp", "E-known");
    let stop = tokio_util::sync::CancellationToken::new();
    let every = Duration::from_millis(150);
    let task = lookup
        .clone()
        .spawn_refresh(every, Duration::from_secs(3600), stop.clone());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !lookup.index.is_ready() {
        assert!(Instant::now() < deadline, "the first listing did not load");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(every / 2).await;
    chamilo.reset_calls();
    assert!(chamilo.state().set_active(known, false));
    let wait_for = |what: &'static str, done: &dyn Fn() -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < deadline, "{what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    };
    let l = lookup.clone();
    tokio::task::spawn_blocking(move || {
        wait_for("deactivation not seen", &|| {
            l.index.by_id(known).is_some_and(|a| !a.active)
        })
    })
    .await
    .unwrap();
    let k = lookup.index.by_id(known).unwrap();
    assert_eq!(k.user_name.as_deref(), Some("known@idp"));
    // Only bare listings so far: one query each.
    assert!(chamilo.calls("get_users") >= 1);
    assert_eq!(chamilo.queries(), chamilo.calls("get_users"));

    let other = scim_user(&chamilo, "other", "other@idp", "E-other");
    let l = lookup.clone();
    tokio::task::spawn_blocking(move || {
        wait_for(
            "extra fields of an account made elsewhere not filled in",
            &|| {
                l.index
                    .by_id(other)
                    .is_some_and(|a| a.user_name.as_deref() == Some("other@idp"))
            },
        )
    })
    .await
    .unwrap();
    assert!(
        chamilo.queries() > chamilo.calls("get_users"),
        "one listing with extra fields"
    );
    stop.cancel();
    task.await.unwrap();
}

/// Requests answered 503 while the first listing runs ask for a listing; that listing answers
/// them, so no second full listing follows it (at 100k accounts on a real Chamilo, two minutes
/// of a PHP worker each).
#[tokio::test]
async fn asks_made_during_the_first_listing_do_not_order_a_second() {
    let (chamilo, lookup) = setup(200).await;
    // A listing that takes long enough (200 users × 2 ms) for the asks to arrive during it.
    chamilo.set_cost(Cost {
        listing_cost_per_user: std::time::Duration::from_millis(2),
        ..Cost::default()
    });
    let lookup = Arc::new(
        AccountLookup::new(
            lookup.index.clone(),
            lookup.client.clone(),
            IndexFields::default(),
        )
        .with_min_rebuild_interval(std::time::Duration::from_millis(50)),
    );
    chamilo.reset_calls();
    let stop = tokio_util::sync::CancellationToken::new();
    let refresh = lookup.clone().spawn_refresh(
        std::time::Duration::from_secs(3600),
        std::time::Duration::from_secs(3600),
        stop.clone(),
    );
    while chamilo.calls("get_users") == 0 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    for _ in 0..5 {
        lookup.request_refresh();
    }
    while !lookup.index.is_ready() {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Well past the shortest interval between two listings.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(chamilo.calls("get_users"), 1);
    stop.cancel();
    refresh.await.unwrap();
}
