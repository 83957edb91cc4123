//! The Chamilo backend: the web-service client (REST `v2.php` + the SOAP calls REST cannot do),
//! its error classes, the login mapping, the user index and the `directory` implementation.
//!
//! Chamilo stays the only store of accounts: nothing here persists anything.
//!
//! Wiring, for the runtime (the whole API):
//! 1. [`Backend::from_config`] builds everything; no call is made.
//! 2. [`Backend::start`] (async) checks Chamilo ([`ChamiloClient::check_capabilities`]: the
//!    service account is a platform administrator, the web services are the current 1.11.x
//!    ones), makes sure the user extra fields the proxy relies on exist (creating them when
//!    `chamilo.create_extra_fields` is on), learns the anonymous users, and spawns the
//!    background index refresh (a listing with extra fields at once and every
//!    `chamilo.full_refresh`, one without them every `chamilo.index_refresh`) and the course
//!    enrolment reconciliation (every `chamilo.enrolment_reconcile`) until `stop` is
//!    cancelled. An `Err` is a refusal whose message says what is missing: stay not ready and
//!    log it (retrying `start` later is safe).
//! 3. [`Backend::is_ready`] for `/readyz`: `start` succeeded and the first listing is loaded.
//! 4. `backend.directory` is the SCIM engine's `Directory`.

pub mod client;
pub mod deprovisioned;
pub mod directory;
pub mod enrolment;
pub mod error;
pub mod groups;
pub mod index;
pub mod kept;
pub mod lookup;
pub mod mapping;
pub mod username;
pub mod write;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;

pub use client::{CallObserver, ChamiloClient, ClientSettings, Credentials};
pub use error::{CallOutcome, ChamiloError};

use crate::config::{ChamiloConfig, Secret};

/// The pieces of the Chamilo backend, built from configuration.
pub struct Backend {
    pub client: Arc<ChamiloClient>,
    pub lookup: Arc<lookup::AccountLookup>,
    pub directory: Arc<directory::ChamiloDirectory>,
    refresh_every: Duration,
    full_refresh_every: Duration,
    enrolment_reconcile_every: Duration,
    create_extra_fields: bool,
    started: AtomicBool,
}

impl Backend {
    /// Builds client, index and directory (no call is made). `upstream_url` is used when
    /// `chamilo.url` is empty.
    pub fn from_config(config: &ChamiloConfig, upstream_url: &str) -> Result<Self, ChamiloError> {
        Self::observed(config, upstream_url, None)
    }

    /// As [`Backend::from_config`], with every Chamilo call reported to `observer` (metrics).
    pub fn observed(
        config: &ChamiloConfig,
        upstream_url: &str,
        observer: Option<Arc<dyn CallObserver>>,
    ) -> Result<Self, ChamiloError> {
        let mapping = mapping::ChamiloMapping::from_config(config)?;
        let enrolment = enrolment::EnrolmentRules::from_config(config)
            .map_err(|detail| ChamiloError::Config { detail })?;
        let mut client = ChamiloClient::new(ClientSettings::from_config(config, upstream_url)?)?;
        if let Some(observer) = observer {
            client = client.with_observer(observer);
        }
        let client = Arc::new(client);
        let lookup = Arc::new(lookup::AccountLookup::new(
            Arc::new(index::UserIndex::new()),
            client.clone(),
            mapping.fields.clone(),
        ));
        let directory = Arc::new(directory::ChamiloDirectory::new(
            client.clone(),
            lookup.clone(),
            mapping,
        ));
        directory.enrolment().set_rules(enrolment);
        Ok(Self {
            client,
            lookup,
            directory,
            refresh_every: config.index_refresh,
            full_refresh_every: config.full_refresh,
            enrolment_reconcile_every: config.enrolment_reconcile,
            create_extra_fields: config.create_extra_fields,
            started: AtomicBool::new(false),
        })
    }

    /// Checks Chamilo, ensures the extra fields, and spawns the index refresh (see the module
    /// documentation). Costs four small calls, plus two to create missing fields.
    pub async fn start(
        &self,
        stop: CancellationToken,
    ) -> Result<tokio::task::JoinHandle<()>, ChamiloError> {
        let caps = self.client.check_capabilities().await?;
        self.lookup.set_anonymous_ids(caps.anonymous_ids);
        self.ensure_extra_fields().await?;
        if self.client.soap_configured() {
            self.client
                .check_soap_secret(&self.lookup.fields.user_name)
                .await?;
        }
        self.started.store(true, Ordering::Release);
        tracing::info!("Chamilo web services checked; building the user index");
        // Detached: it ends with `stop`, like the refresh.
        let _ = self
            .directory
            .clone()
            .spawn_enrolment_reconcile(self.enrolment_reconcile_every, stop.clone());
        Ok(self
            .lookup
            .clone()
            .spawn_refresh(self.refresh_every, self.full_refresh_every, stop))
    }

    /// Whether every SCIM request can be served: [`Backend::start`] succeeded and the user
    /// index holds a full listing.
    pub fn is_ready(&self) -> bool {
        self.is_started() && self.lookup.index.is_ready()
    }

    /// Whether SCIM requests are served at all: [`Backend::start`] succeeded. Until the index
    /// holds its first listing, lookups by userName or externalId and creates answer (fresh
    /// from Chamilo), while lists, other filters and requests by id answer 503.
    pub fn is_started(&self) -> bool {
        self.started.load(Ordering::Acquire)
    }

    /// Makes sure the userName, externalId and attributes extra fields exist. Updates of accounts made
    /// outside SCIM (adoption) fail on a missing field, while `save_user` creates the fields it
    /// is given: the only way through the web services is a short-lived placeholder account
    /// created with those fields and deleted at once. Public for `check-chamilo
    /// --create-extra-fields`, which must create them exactly as start-up does.
    pub async fn ensure_extra_fields(&self) -> Result<(), ChamiloError> {
        let missing = self
            .client
            .missing_extra_fields(&self.lookup.fields.all())
            .await?;
        if missing.is_empty() {
            return Ok(());
        }
        let explain = |missing: &[String]| {
            format!(
                "the Chamilo user extra fields {} do not exist; create them (Administration > Users > Profiling: add a text field with that variable name, not visible or changeable by users) or set chamilo.create_extra_fields = true",
                missing.join(", ")
            )
        };
        if !self.create_extra_fields {
            return Err(ChamiloError::Incompatible {
                detail: explain(&missing),
            });
        }
        // The thread-local generator is not `Send`: drop it before the first await.
        let (tag, password) = {
            let mut rng = rand::rng();
            let tag: String = (0..12)
                .map(|_| {
                    char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)])
                })
                .collect();
            let password: String = (0..40)
                .map(|_| {
                    char::from(
                        b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
                            [rng.random_range(0..57)],
                    )
                })
                .collect();
            (tag, password)
        };
        let placeholder = client::NewAccount {
            username: format!("scim_setup_{tag}"),
            password: Secret::new(password),
            firstname: "SCIM".into(),
            lastname: "field setup (deleted at once)".into(),
            email: format!("scim-setup-{tag}@example.invalid"),
            status: 5,
            language: None,
            phone: None,
            auth_source: Some("platform".into()),
            expiration_date: None,
            handle: None,
            extra: missing.iter().map(|m| (m.clone(), String::new())).collect(),
        };
        let id = self.client.save_user(&placeholder).await?;
        match self.client.delete_user(id).await {
            Ok(client::DeleteOutcome::Deleted) => {}
            other => tracing::warn!(
                chamilo.user_id = id,
                outcome = ?other.map(|_| "refused"),
                "could not delete the placeholder account used to create extra fields"
            ),
        }
        let still = self
            .client
            .missing_extra_fields(&self.lookup.fields.all())
            .await?;
        if !still.is_empty() {
            return Err(ChamiloError::Incompatible {
                detail: explain(&still),
            });
        }
        tracing::info!(fields = ?missing, "created Chamilo user extra fields");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_needs_a_credential() {
        let c: crate::config::Config = toml::from_str("[chamilo]\nusername = \"admin\"\n").unwrap();
        assert!(matches!(
            Backend::from_config(&c.chamilo, "http://127.0.0.1:80"),
            Err(ChamiloError::Config { .. })
        ));
        let c: crate::config::Config =
            toml::from_str("[chamilo]\napi_key = \"0123456789abcdef0123456789abcdef\"\n").unwrap();
        let b = Backend::from_config(&c.chamilo, "http://127.0.0.1:80").unwrap();
        assert!(!b.lookup.index.is_ready());
    }
}
