//! The live configuration: one atomic pointer that every request loads once.

use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use tokio::sync::watch;

use super::load::Loaded;
use super::tls::TlsMaterial;
use super::Config;

/// A cheap, clonable handle to the configuration in force.
///
/// A request calls [`Live::current`] once and keeps that `Arc<Config>` for its whole life, so
/// a reload in the middle never mixes two configurations in one request.
#[derive(Clone)]
pub struct Live {
    inner: Arc<LiveInner>,
}

struct LiveInner {
    config: ArcSwap<Config>,
    tls: ArcSwapOption<TlsMaterial>,
    changes: watch::Sender<Arc<Config>>,
}

impl Live {
    /// Starts with a configuration that passed validation.
    pub fn new(loaded: &Loaded) -> Self {
        let config = Arc::new(loaded.config.clone());
        let (changes, _) = watch::channel(config.clone());
        Self {
            inner: Arc::new(LiveInner {
                config: ArcSwap::new(config),
                tls: ArcSwapOption::new(loaded.tls.clone()),
                changes,
            }),
        }
    }

    /// The configuration in force now.
    pub fn current(&self) -> Arc<Config> {
        self.inner.config.load_full()
    }

    /// The certificate and key in force now (`None` without TLS).
    pub fn tls(&self) -> Option<Arc<TlsMaterial>> {
        self.inner.tls.load_full()
    }

    /// Notifies on every successful reload, with the new configuration.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Config>> {
        self.inner.changes.subscribe()
    }

    /// Swaps in a new validated configuration (the certificate first, so that a handshake
    /// never sees a configuration newer than its certificate).
    pub(crate) fn install(&self, config: Config, tls: Option<Arc<TlsMaterial>>) {
        if tls.is_some() {
            self.inner.tls.store(tls);
        }
        let config = Arc::new(config);
        self.inner.config.store(config.clone());
        self.inner.changes.send_replace(config);
    }
}
