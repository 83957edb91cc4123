//! The Chamilo backend: the web-service client (REST `v2.php` + the SOAP calls REST cannot do),
//! its error classes, the login mapping, the user index and the `directory` implementation.
//!
//! Chamilo stays the only store of accounts: nothing here persists anything.
//!
//! Wiring (see [`Backend::from_config`]): build the backend, run
//! [`ChamiloClient::check_capabilities`] before becoming ready, start
//! [`index::AccountLookup::spawn_refresh`] and report ready once
//! `backend.lookup.index.is_ready()`; hand `backend.directory` to the SCIM engine.

pub mod client;
pub mod directory;
pub mod error;
pub mod index;
pub mod soap;
pub mod username;

use std::sync::Arc;

pub use client::{ChamiloClient, ClientSettings, Credentials};
pub use error::{CallOutcome, ChamiloError};

use crate::config::ChamiloConfig;

/// The pieces of the Chamilo backend, built from configuration.
pub struct Backend {
    pub client: Arc<ChamiloClient>,
    pub lookup: Arc<index::AccountLookup>,
    pub directory: Arc<directory::ChamiloDirectory>,
}

impl Backend {
    /// Builds client, index and directory (no call is made). `upstream_url` is used when
    /// `chamilo.url` is empty.
    pub fn from_config(config: &ChamiloConfig, upstream_url: &str) -> Result<Self, ChamiloError> {
        let mapping = directory::ChamiloMapping::from_config(config)?;
        let client = Arc::new(ChamiloClient::new(ClientSettings::from_config(
            config,
            upstream_url,
        )?)?);
        let lookup = Arc::new(index::AccountLookup::new(
            Arc::new(index::UserIndex::new()),
            client.clone(),
            mapping.fields.clone(),
        ));
        let directory = Arc::new(directory::ChamiloDirectory::new(
            client.clone(),
            lookup.clone(),
            mapping,
        ));
        Ok(Self {
            client,
            lookup,
            directory,
        })
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
