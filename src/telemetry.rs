//! Logging: JSON lines on stdout by default, human-readable text when `log.format = "text"`;
//! the level (a `tracing` filter) follows configuration reloads.
//!
//! Nothing here ever formats a request header: the access log line (written by `server`) is a
//! fixed set of fields, so `Authorization`, cookies and query strings cannot leak into logs.

use tokio::sync::watch;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

use crate::config::{Config, LogConfig, LogFormat};

/// Changes the log level of the running process.
#[derive(Clone)]
pub struct LogControl {
    handle: reload::Handle<EnvFilter, Registry>,
}

/// Why logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("invalid log.level: {0}")]
    Level(String),
    #[error("logging is already initialised: {0}")]
    Init(String),
}

fn filter(level: &str) -> Result<EnvFilter, TelemetryError> {
    EnvFilter::builder()
        .parse(level)
        .map_err(|e| TelemetryError::Level(e.to_string()))
}

/// Installs the global subscriber. The format is fixed for the life of the process.
pub fn init(cfg: &LogConfig) -> Result<LogControl, TelemetryError> {
    let (filter_layer, handle) = reload::Layer::new(filter(&cfg.level)?);
    let json = (cfg.format == LogFormat::Json).then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_writer(std::io::stdout)
    });
    let text = (cfg.format == LogFormat::Text).then(|| {
        tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(std::io::stdout)
    });
    tracing_subscriber::registry()
        .with(filter_layer)
        .with(json)
        .with(text)
        .try_init()
        .map_err(|e| TelemetryError::Init(e.to_string()))?;
    Ok(LogControl { handle })
}

impl LogControl {
    /// Replaces the level filter (e.g. `debug`, `info,chamilo_scim_proxy::scim=debug`).
    pub fn set_level(&self, level: &str) -> Result<(), TelemetryError> {
        let new = filter(level)?;
        self.handle
            .reload(new)
            .map_err(|e| TelemetryError::Init(e.to_string()))
    }

    /// Applies `log.level` from every configuration that `changes` announces, until the
    /// sender goes away.
    pub async fn follow(self, mut changes: watch::Receiver<std::sync::Arc<Config>>) {
        let mut level = changes.borrow().log.level.clone();
        while changes.changed().await.is_ok() {
            let new = changes.borrow_and_update().log.level.clone();
            if new == level {
                continue;
            }
            // Logged under the old filter, so the change is visible even when it silences info.
            tracing::info!(from = %level, to = %new, "changing the log level");
            match self.set_level(&new) {
                Ok(()) => level = new,
                Err(e) => tracing::error!(error = %e, "cannot apply the new log level"),
            }
        }
    }
}

/// An error and its sources on one line (`connect failed: Connection refused (os error
/// 111)`), for log fields.
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
