//! The Chamilo backend's pieces built on a stand-in, as `Backend::from_config` and
//! `Backend::start` build them in production: the admin's client, the extra fields, the index
//! lookups and the directory.
#![allow(dead_code)]

pub mod groups;

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chamilo_scim_proxy::chamilo::client::{ClientSettings, Credentials};
use chamilo_scim_proxy::chamilo::directory::ChamiloDirectory;
use chamilo_scim_proxy::chamilo::index::UserIndex;
use chamilo_scim_proxy::chamilo::lookup::{AccountLookup, MIN_REBUILD_INTERVAL};
use chamilo_scim_proxy::chamilo::mapping::ChamiloMapping;
use chamilo_scim_proxy::chamilo::ChamiloClient;
use chamilo_scim_proxy::config::Secret;
use chamilo_scim_proxy::directory::DirectoryError;
use chamilo_scim_proxy::standin::StandinHandle;
use tokio_util::sync::CancellationToken;

/// One replica of the backend: its client, its index lookups and its directory.
pub struct Replica {
    pub client: Arc<ChamiloClient>,
    pub lookup: Arc<AccountLookup>,
    pub directory: ChamiloDirectory,
}

/// A client of the stand-in signed in as its administrator (api key and SOAP secret).
pub fn admin_client(chamilo: &StandinHandle) -> Arc<ChamiloClient> {
    Arc::new(ChamiloClient::new(admin_settings(chamilo)).unwrap())
}

/// The settings of [`admin_client`], to adjust (timeouts) before building a client.
pub fn admin_settings(chamilo: &StandinHandle) -> ClientSettings {
    ClientSettings::new(
        chamilo.base_url.clone(),
        Credentials {
            username: "admin".into(),
            api_key: Some(Secret::new(chamilo.admin_api_key.clone())),
            password: None,
            security_key: Some(Secret::new(chamilo.security_key.clone())),
        },
    )
}

/// What `Backend::start` makes sure of: the extra fields exist.
pub fn ensure_fields(chamilo: &StandinHandle, mapping: &ChamiloMapping) {
    let mut state = chamilo.state();
    for name in mapping.fields.all() {
        state.ensure_extra_field(name);
    }
}

/// A replica on `chamilo` with the default rate limit of listings triggered by lookups.
pub async fn replica(chamilo: &StandinHandle, mapping: ChamiloMapping) -> Replica {
    replica_with(chamilo, mapping, MIN_REBUILD_INTERVAL).await
}

/// A replica whose listings triggered by lookups may run every `min_rebuild`, with its
/// background refresh running (hourly, and when a lookup asks for it) and a first listing
/// loaded, as `Backend::start` leaves it.
pub async fn replica_with(
    chamilo: &StandinHandle,
    mapping: ChamiloMapping,
    min_rebuild: Duration,
) -> Replica {
    replica_on(chamilo, mapping, min_rebuild, admin_client(chamilo)).await
}

/// As [`replica_with`], over a given client (for other timeouts or credentials).
pub async fn replica_on(
    chamilo: &StandinHandle,
    mapping: ChamiloMapping,
    min_rebuild: Duration,
    client: Arc<ChamiloClient>,
) -> Replica {
    ensure_fields(chamilo, &mapping);
    let lookup = Arc::new(
        AccountLookup::new(
            Arc::new(UserIndex::new()),
            client.clone(),
            mapping.fields.clone(),
        )
        .with_min_rebuild_interval(min_rebuild),
    );
    let directory = ChamiloDirectory::new(client.clone(), lookup.clone(), mapping);
    // Runs until the test's runtime ends.
    lookup.clone().spawn_refresh(
        Duration::from_secs(3600),
        Duration::from_secs(3600),
        CancellationToken::new(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !lookup.index.is_ready() {
        assert!(Instant::now() < deadline, "the first listing did not load");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Replica {
        client,
        lookup,
        directory,
    }
}

/// `op` again while it answers 503 (a listing it needs runs in the background), as an
/// identity provider retries after `Retry-After`; at most 20 s.
pub async fn settled<T, F, Fut>(mut op: F) -> Result<T, DirectoryError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, DirectoryError>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match op().await {
            Err(DirectoryError::Unavailable { .. }) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}
