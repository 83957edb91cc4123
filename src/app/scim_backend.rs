//! The SCIM engine's account store, chosen and started from configuration.
//!
//! This is where `scim` meets `chamilo`: the composition root owns it, so that neither they
//! nor the server know each other. The Chamilo backend is checked and its user index loaded in the
//! background; until then SCIM requests answer 503 with `Retry-After` (the pass-through is
//! not affected), and start-up is retried with back-off while Chamilo refuses or is down.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::chamilo_metrics::ChamiloCallMetrics;
use crate::admin::Health;
use crate::chamilo::directory::ChamiloDirectory;
use crate::chamilo::enrolment::EnrolmentRules;
use crate::chamilo::mapping::LanguagePolicy;
use crate::chamilo::{Backend, ChamiloClient, Credentials};
use crate::config::{ChamiloConfig, DirectoryKind, Live};
use crate::directory::memory::MemoryDirectory;
use crate::directory::{
    Capabilities, DirFuture, Directory, DirectoryError, Group, GroupPage, GroupRef, GroupStore,
    ListQuery, Page, User,
};
use crate::scim::ScimService;
use crate::secret::Secret;

/// How long a client is told to wait while the backend starts.
const RETRY_AFTER: Duration = Duration::from_secs(10);
/// Back-off between start attempts: first, and the ceiling.
const START_RETRY_FIRST: Duration = Duration::from_secs(2);
const START_RETRY_MAX: Duration = Duration::from_secs(60);

/// Builds the SCIM service for `cfg` and starts its backend in the background; `health`
/// learns when the backend is ready. Never fails: a backend that cannot be built is logged
/// and SCIM fails closed (503) while the pass-through keeps serving.
pub fn scim_service(
    live: &Live,
    health: Arc<Health>,
    calls: ChamiloCallMetrics,
    stop: CancellationToken,
) -> ScimService {
    let cfg = live.current();
    health.require_backend(cfg.scim.ready_requires_backend && cfg.scim.enabled);
    match cfg.scim.directory {
        DirectoryKind::Memory => {
            tracing::warn!(
                "scim.directory = \"memory\": accounts are kept in this process only and vanish at exit (testing only)"
            );
            health.set_backend_ready(true);
            ScimService::new(Arc::new(MemoryDirectory::new()))
        }
        DirectoryKind::Chamilo => {
            let backend = match Backend::observed(
                &cfg.chamilo,
                &cfg.upstream.url,
                Some(Arc::new(calls)),
            ) {
                Ok(b) => Arc::new(b),
                Err(e) => {
                    if cfg.scim.enabled {
                        tracing::warn!(error = %e, "SCIM: the Chamilo backend is not configured; SCIM requests answer 503");
                    }
                    return ScimService::default();
                }
            };
            tokio::spawn(follow_credentials(
                live.clone(),
                backend.client.clone(),
                backend.directory.clone(),
                stop.clone(),
            ));
            tokio::spawn(start_with_retry(backend.clone(), health.clone(), stop));
            ScimService::new(Arc::new(StartingDirectory { backend }))
        }
    }
}

/// The service account's secrets as configured: compared to notice a rotation.
fn credentials_of(c: &ChamiloConfig) -> Credentials {
    Credentials {
        username: c.username.clone(),
        api_key: c.api_key.clone(),
        password: c.password.clone(),
        security_key: c.security_key.clone(),
    }
}

fn same_credentials(a: &Credentials, b: &Credentials) -> bool {
    let exposed = |s: &Option<Secret>| s.as_ref().map(|s| s.expose().to_owned());
    a.username == b.username
        && exposed(&a.api_key) == exposed(&b.api_key)
        && exposed(&a.password) == exposed(&b.password)
        && exposed(&a.security_key) == exposed(&b.security_key)
}

/// Hands rotated Chamilo secrets (files re-read by the configuration reload) to the client,
/// and the enrolment mapping and the language policy to the directory (each operation takes
/// a snapshot); other
/// `[chamilo]` settings need a restart, which the reload already reports.
async fn follow_credentials(
    live: Live,
    client: Arc<ChamiloClient>,
    directory: Arc<ChamiloDirectory>,
    stop: CancellationToken,
) {
    let mut changes = live.subscribe();
    // A reload between the backend's build and this task's first poll is not missed: the
    // first turn compares the enrolment mapping with the configuration in force.
    changes.mark_changed();
    let mut current = credentials_of(&live.current().chamilo);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            changed = changes.changed() => {
                if changed.is_err() {
                    return;
                }
                let config = live.current();
                match EnrolmentRules::from_config(&config.chamilo) {
                    Ok(rules) if rules != *directory.enrolment().rules() => {
                        tracing::info!(
                            rules = rules.rules.len(),
                            dry_run = rules.dry_run,
                            "SCIM: course enrolment mapping reloaded"
                        );
                        directory.enrolment().set_rules(rules);
                    }
                    Ok(_) => {}
                    // The loader validated it; keep the rules in force.
                    Err(e) => tracing::error!(error = %e, "SCIM: course enrolment mapping not reloaded"),
                }
                let policy = LanguagePolicy::from_config(&config.chamilo);
                let languages = &directory.mapping.language_policy;
                if **languages.load() != policy {
                    tracing::info!(
                        refuse_unmapped = policy.refuse_unmapped,
                        default_language = %policy.default_folder,
                        "SCIM: language policy reloaded"
                    );
                    languages.store(Arc::new(policy));
                }
                let next = credentials_of(&config.chamilo);
                if !same_credentials(&current, &next) {
                    tracing::info!("SCIM: Chamilo service-account credentials changed; using the new ones");
                    client.update_credentials(next.clone());
                    current = next;
                }
            }
        }
    }
}

/// Runs [`Backend::start`] until it succeeds, then follows the index until it is ready.
async fn start_with_retry(backend: Arc<Backend>, health: Arc<Health>, stop: CancellationToken) {
    let mut wait = START_RETRY_FIRST;
    loop {
        match backend.start(stop.clone()).await {
            Ok(_refresh) => break,
            Err(e) => {
                tracing::error!(error = %e, retry_in_s = wait.as_secs(), "SCIM: Chamilo backend refused to start");
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                wait = (wait * 2).min(START_RETRY_MAX);
            }
        }
    }
    loop {
        if backend.is_ready() {
            health.set_backend_ready(true);
            tracing::info!("SCIM: Chamilo backend ready");
            return;
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
        }
    }
}

/// The Chamilo directory, answering 503 until the backend is started (and, for what needs
/// the user index, until its first listing is in: the directory says so itself).
struct StartingDirectory {
    backend: Arc<Backend>,
}

impl StartingDirectory {
    /// Open once Chamilo is checked: the directory itself says 503 for what needs the index
    /// while the first listing loads.
    fn gate(&self) -> Result<&dyn Directory, DirectoryError> {
        if self.backend.is_started() {
            Ok(self.backend.directory.as_ref())
        } else {
            Err(DirectoryError::Unavailable {
                retry_after: Some(RETRY_AFTER),
            })
        }
    }
}

impl Directory for StartingDirectory {
    fn capabilities(&self) -> Capabilities {
        self.backend.directory.capabilities()
    }

    fn create(&self, user: User) -> DirFuture<'_, User> {
        match self.gate() {
            Ok(d) => d.create(user),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn get<'a>(&'a self, id: &'a str) -> DirFuture<'a, Option<User>> {
        match self.gate() {
            Ok(d) => d.get(id),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn find<'a>(&'a self, query: &'a ListQuery) -> DirFuture<'a, Page> {
        match self.gate() {
            Ok(d) => d.find(query),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn replace<'a>(
        &'a self,
        id: &'a str,
        user: User,
        expected_version: Option<&'a str>,
    ) -> DirFuture<'a, User> {
        match self.gate() {
            Ok(d) => d.replace(id, user, expected_version),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn modify<'a>(
        &'a self,
        id: &'a str,
        base: &'a User,
        user: User,
        expected_version: Option<&'a str>,
    ) -> DirFuture<'a, User> {
        // Passed through, not left to the trait's default (a full `replace`): the backend
        // writes only what the PATCH changed.
        match self.gate() {
            Ok(d) => d.modify(id, base, user, expected_version),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn delete<'a>(&'a self, id: &'a str) -> DirFuture<'a, ()> {
        match self.gate() {
            Ok(d) => d.delete(id),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn groups(&self) -> Option<&dyn GroupStore> {
        // Advertised from the start (discovery does not wait for Chamilo); every call waits
        // for the backend like the user operations.
        self.backend
            .directory
            .groups()
            .map(|_| self as &dyn GroupStore)
    }
}

impl StartingDirectory {
    fn group_gate(&self) -> Result<&dyn GroupStore, DirectoryError> {
        self.gate()?.groups().ok_or(DirectoryError::NotFound)
    }
}

impl GroupStore for StartingDirectory {
    fn create_group(&self, group: Group) -> DirFuture<'_, Group> {
        match self.group_gate() {
            Ok(g) => g.create_group(group),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn get_group<'a>(&'a self, id: &'a str, with_members: bool) -> DirFuture<'a, Option<Group>> {
        match self.group_gate() {
            Ok(g) => g.get_group(id, with_members),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn find_groups<'a>(
        &'a self,
        query: &'a ListQuery,
        with_members: bool,
    ) -> DirFuture<'a, GroupPage> {
        match self.group_gate() {
            Ok(g) => g.find_groups(query, with_members),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn modify_group<'a>(
        &'a self,
        id: &'a str,
        base: &'a Group,
        group: Group,
        expected_version: Option<&'a str>,
    ) -> DirFuture<'a, Group> {
        match self.group_gate() {
            Ok(g) => g.modify_group(id, base, group, expected_version),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn delete_group<'a>(&'a self, id: &'a str) -> DirFuture<'a, ()> {
        match self.group_gate() {
            Ok(g) => g.delete_group(id),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }

    fn groups_of<'a>(&'a self, user_id: &'a str) -> DirFuture<'a, Vec<GroupRef>> {
        match self.group_gate() {
            Ok(g) => g.groups_of(user_id),
            Err(e) => Box::pin(async move { Err(e) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::Loaded;
    use crate::config::{Config, EnrolmentConfig};

    fn loaded(config: Config) -> Loaded {
        Loaded {
            config,
            tls: None,
            fingerprint: [0; 32],
            files: Vec::new(),
            warnings: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_reload_hands_the_enrolment_mapping_to_the_directory() {
        let mut config = Config::default();
        config.chamilo.api_key = Some(Secret::new("k".to_owned()));
        let backend = Backend::from_config(&config.chamilo, "http://127.0.0.1:9").unwrap();
        backend
            .directory
            .enrolment()
            .set_rules(EnrolmentRules::from_config(&config.chamilo).unwrap());
        let live = Live::new(&loaded(config.clone()));
        let stop = CancellationToken::new();
        tokio::spawn(follow_credentials(
            live.clone(),
            backend.client.clone(),
            backend.directory.clone(),
            stop.clone(),
        ));
        assert!(backend.directory.enrolment().rules().is_empty());
        config.chamilo.enrolment = vec![EnrolmentConfig {
            display_name: Some("Course *".into()),
            external_id: None,
            courses: vec!["M1".into()],
            role: "teacher".into(),
        }];
        config.chamilo.enrolment_dry_run = false;
        // Installed before the task first runs (it must not be missed), then once more
        // while it waits.
        live.install(config.clone(), None);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while backend.directory.enrolment().rules().is_empty() {
            assert!(std::time::Instant::now() < deadline, "not reloaded");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let rules = backend.directory.enrolment().rules();
        assert!(!rules.dry_run);
        assert_eq!(rules.grants("course x", None).len(), 1);
        config.chamilo.enrolment_dry_run = true;
        live.install(config, None);
        while !backend.directory.enrolment().rules().dry_run {
            assert!(std::time::Instant::now() < deadline, "not reloaded");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop.cancel();
    }

    #[tokio::test]
    async fn a_reload_hands_the_language_policy_to_the_directory() {
        let mut config = Config::default();
        config.chamilo.api_key = Some(Secret::new("k".to_owned()));
        let backend = Backend::from_config(&config.chamilo, "http://127.0.0.1:9").unwrap();
        let live = Live::new(&loaded(config.clone()));
        let stop = CancellationToken::new();
        tokio::spawn(follow_credentials(
            live.clone(),
            backend.client.clone(),
            backend.directory.clone(),
            stop.clone(),
        ));
        let policy = || (**backend.directory.mapping.language_policy.load()).clone();
        assert!(!policy().refuse_unmapped);
        config.chamilo.refuse_unmapped_languages = true;
        config.chamilo.default_language = "french".into();
        live.install(config, None);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !policy().refuse_unmapped {
            assert!(std::time::Instant::now() < deadline, "not reloaded");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(policy().default_folder, "french");
        stop.cancel();
    }
}
