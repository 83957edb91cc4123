//! Hot reload: file-system hints (notify), debounce, content hash, poll fallback, and an
//! explicit trigger (SIGHUP, admin). Survives Kubernetes' `..data` symlink swap because it
//! watches *directories* and re-reads files by path.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use notify::{EventKind, RecursiveMode, Watcher};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::live::Live;
use super::load::{load, Loaded, Source};
use super::Config;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

/// `config_reloads_total{result}` and `config_last_reload_success_timestamp_seconds`.
#[derive(Clone, Default)]
pub struct ReloadMetrics {
    reloads: Family<ResultLabel, Counter>,
    last_success: Gauge,
}

impl ReloadMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self::default();
        registry.register(
            "config_reloads",
            "Configuration reload attempts by result (success, error)",
            metrics.reloads.clone(),
        );
        registry.register(
            "config_last_reload_success_timestamp_seconds",
            "Unix time of the last successful configuration load",
            metrics.last_success.clone(),
        );
        // Both series exist from the start, so alerts on `increase(...{result="error"})` work.
        let _ = metrics
            .reloads
            .get_or_create(&ResultLabel { result: "success" });
        let _ = metrics
            .reloads
            .get_or_create(&ResultLabel { result: "error" });
        metrics.mark_success_time();
        metrics
    }

    fn mark_success_time(&self) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        self.last_success.set(now);
    }

    fn count(&self, result: &'static str) {
        self.reloads.get_or_create(&ResultLabel { result }).inc();
    }
}

/// What one reload attempt did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// Nothing changed on disk since the last attempt.
    Unchanged,
    /// The new configuration is in force; the listed keys changed but need a restart.
    Applied { restart_required: Vec<&'static str> },
    /// The new configuration was refused; the last good one stays.
    Rejected,
}

/// Asks the reloader to re-read everything now (SIGHUP, admin endpoint).
#[derive(Clone, Default)]
pub struct ReloadTrigger(Arc<Notify>);

impl ReloadTrigger {
    /// Requests a reload; several requests before it runs count as one.
    pub fn request(&self) {
        self.0.notify_one();
    }
}

/// Watches the configuration's files and swaps in valid new versions.
pub struct Reloader {
    source: Source,
    live: Live,
    metrics: ReloadMetrics,
    trigger: ReloadTrigger,
    hint: Arc<Notify>,
    last_fingerprint: [u8; 32],
    last_failed: bool,
    watched_dirs: BTreeSet<PathBuf>,
    watcher: Option<notify::RecommendedWatcher>,
}

impl Reloader {
    /// `initial` is the configuration `live` was created with.
    pub fn new(source: Source, live: Live, initial: &Loaded, metrics: ReloadMetrics) -> Self {
        let mut reloader = Self {
            source,
            live,
            metrics,
            trigger: ReloadTrigger::default(),
            hint: Arc::new(Notify::new()),
            last_fingerprint: initial.fingerprint,
            last_failed: false,
            watched_dirs: BTreeSet::new(),
            watcher: None,
        };
        if initial.config.reload.watch {
            reloader.start_watcher();
            reloader.watch_files(&initial.files);
        }
        reloader
    }

    /// A handle that requests a reload.
    pub fn trigger(&self) -> ReloadTrigger {
        self.trigger.clone()
    }

    fn start_watcher(&mut self) {
        let hint = self.hint.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            match event {
                // Our own reads produce access events; only changes are hints.
                Ok(event) if matches!(event.kind, EventKind::Access(_)) => {}
                Ok(_) | Err(_) => hint.notify_one(),
            }
        });
        match watcher {
            Ok(w) => self.watcher = Some(w),
            Err(e) => tracing::warn!(
                error = %e,
                "cannot start the file watcher; relying on polling and SIGHUP"
            ),
        }
    }

    /// Watches the parent directory of every file (not the file: a symlink swap replaces it).
    fn watch_files(&mut self, files: &[PathBuf]) {
        let Some(watcher) = self.watcher.as_mut() else {
            return;
        };
        for file in files {
            let dir = watched_directory(file);
            if self.watched_dirs.contains(&dir) {
                continue;
            }
            match watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => {
                    tracing::debug!(directory = %dir.display(), "watching for configuration changes");
                    self.watched_dirs.insert(dir);
                }
                Err(e) => tracing::warn!(
                    directory = %dir.display(),
                    error = %e,
                    "cannot watch directory; relying on polling"
                ),
            }
        }
    }

    /// Re-reads everything; `forced` re-reports a still-broken configuration.
    pub fn reload(&mut self, cause: &'static str, forced: bool) -> ReloadOutcome {
        let attempt = load(&self.source);
        let (fingerprint, files) = match &attempt {
            Ok(l) => (l.fingerprint, l.files.clone()),
            Err(f) => (f.fingerprint, f.files.clone()),
        };
        let unchanged = fingerprint == self.last_fingerprint;
        if unchanged && !(forced && self.last_failed) {
            if forced {
                tracing::info!(cause, "configuration unchanged");
            }
            return ReloadOutcome::Unchanged;
        }
        self.last_fingerprint = fingerprint;
        self.watch_files(&files);
        match attempt {
            Err(failure) => {
                self.last_failed = true;
                self.metrics.count("error");
                let errors: Vec<String> = failure
                    .errors
                    .errors
                    .iter()
                    .map(|e| e.to_string())
                    .collect();
                tracing::error!(
                    cause,
                    file = ?failure.errors.file,
                    errors = ?errors,
                    "configuration reload rejected; the last good configuration stays in force"
                );
                ReloadOutcome::Rejected
            }
            Ok(loaded) => {
                self.last_failed = false;
                let old = self.live.current();
                let mut config = loaded.config;
                let restart_required = keep_static_settings(&old, &mut config);
                if !restart_required.is_empty() {
                    tracing::warn!(
                        keys = ?restart_required,
                        "these settings changed but only take effect after a restart; the running values are kept"
                    );
                }
                // Turning TLS on at run time is a restart-only change: keep no certificate.
                let tls = if old.server.tls.is_some() {
                    loaded.tls
                } else {
                    None
                };
                log_warnings(&loaded.warnings);
                self.live.install(config, tls);
                self.metrics.count("success");
                self.metrics.mark_success_time();
                tracing::info!(cause, "configuration reloaded");
                ReloadOutcome::Applied { restart_required }
            }
        }
    }

    /// Runs until `shutdown`: debounced file hints, periodic polling, explicit triggers.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut pending: Option<tokio::time::Instant> = None;
        let mut poll_every = self.live.current().reload.poll_interval;
        let mut next_poll = tokio::time::Instant::now() + poll_every;
        loop {
            let debounce_at = pending.unwrap_or_else(far_future);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.hint.notified() => {
                    if pending.is_none() {
                        pending = Some(tokio::time::Instant::now() + self.live.current().reload.debounce);
                    }
                }
                _ = tokio::time::sleep_until(debounce_at), if pending.is_some() => {
                    pending = None;
                    self.reload("file change", false);
                }
                _ = self.trigger.0.notified() => {
                    self.reload("signal", true);
                }
                _ = tokio::time::sleep_until(next_poll) => {
                    self.reload("poll", false);
                }
            }
            let interval = self.live.current().reload.poll_interval;
            if interval != poll_every || tokio::time::Instant::now() >= next_poll {
                poll_every = interval;
                next_poll = tokio::time::Instant::now() + poll_every;
            }
        }
    }
}

/// Logs the load's warnings (at start and after each reload).
pub fn log_warnings(warnings: &[super::error::ConfigError]) {
    for warning in warnings {
        tracing::warn!(key = ?warning.key, position = ?warning.position, "{}", warning.message);
    }
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365)
}

/// Copies settings that cannot change at run time from `old` into `new`, returning the keys
/// that the new file tried to change.
pub fn keep_static_settings(old: &Config, new: &mut Config) -> Vec<&'static str> {
    let mut changed = Vec::new();
    macro_rules! keep {
        ($key:literal, $($field:tt)+) => {
            if old.$($field)+ != new.$($field)+ {
                changed.push($key);
                new.$($field)+ = old.$($field)+.clone();
            }
        };
    }
    keep!("server.listen", server.listen);
    keep!("server.max_connections", server.max_connections);
    keep!("server.workers", server.workers);
    keep!("admin.listen", admin.listen);
    keep!("upstream.connect_timeout", upstream.connect_timeout);
    keep!("upstream.pool_idle_timeout", upstream.pool_idle_timeout);
    keep!(
        "upstream.pool_max_idle_per_host",
        upstream.pool_max_idle_per_host
    );
    keep!("log.format", log.format);
    keep!("reload.watch", reload.watch);
    keep!("scim.directory", scim.directory);
    keep!("scim.ready_requires_backend", scim.ready_requires_backend);
    // The Chamilo backend is built once; only its secrets follow a reload.
    keep!("chamilo.url", chamilo.url);
    keep!("chamilo.username", chamilo.username);
    keep!("chamilo.soap_ip", chamilo.soap_ip);
    keep!(
        "chamilo.soap_send_forwarded_for",
        chamilo.soap_send_forwarded_for
    );
    keep!("chamilo.connect_timeout", chamilo.connect_timeout);
    keep!("chamilo.request_timeout", chamilo.request_timeout);
    keep!("chamilo.listing_timeout", chamilo.listing_timeout);
    keep!("chamilo.pool_idle_timeout", chamilo.pool_idle_timeout);
    keep!(
        "chamilo.pool_max_idle_per_host",
        chamilo.pool_max_idle_per_host
    );
    keep!("chamilo.user_name_field", chamilo.user_name_field);
    keep!("chamilo.external_id_field", chamilo.external_id_field);
    keep!("chamilo.attributes_field", chamilo.attributes_field);
    keep!("chamilo.create_extra_fields", chamilo.create_extra_fields);
    keep!("chamilo.login_is_email", chamilo.login_is_email);
    keep!("chamilo.login_transform", chamilo.login_transform);
    keep!("chamilo.deprovision", chamilo.deprovision);
    keep!("chamilo.auth_source", chamilo.auth_source);
    keep!("chamilo.default_status", chamilo.default_status);
    keep!("chamilo.roles", chamilo.roles);
    keep!("chamilo.languages", chamilo.languages);
    keep!("chamilo.protected_logins", chamilo.protected_logins);
    keep!("chamilo.list_scope", chamilo.list_scope);
    keep!("chamilo.index_refresh", chamilo.index_refresh);
    if old.server.tls.is_some() != new.server.tls.is_some() {
        changed.push("server.tls (on/off)");
        new.server.tls = old.server.tls.clone();
    }
    changed
}

/// The directory to watch for `file` (exposed for tests of the `..data` layout).
pub fn watched_directory(file: &Path) -> PathBuf {
    match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::load::EnvSecrets;

    fn setup(text: &str) -> (tempfile::TempDir, Reloader, Live, Registry) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        let source = Source {
            path: Some(path),
            env: EnvSecrets {
                scim_token: Some("tok".to_owned()),
                scim_token_file: None,
            },
            ..Source::default()
        };
        let loaded = load(&source).unwrap();
        let live = Live::new(&loaded);
        let mut registry = Registry::default();
        let metrics = ReloadMetrics::register(&mut registry);
        let reloader = Reloader::new(source, live.clone(), &loaded, metrics);
        (dir, reloader, live, registry)
    }

    fn metrics_text(registry: &Registry) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, registry).unwrap();
        out
    }

    #[test]
    fn unchanged_content_is_not_a_reload() {
        let (_dir, mut reloader, _live, _) = setup("[log]\nlevel = \"info\"\n");
        assert_eq!(reloader.reload("test", false), ReloadOutcome::Unchanged);
    }

    #[test]
    fn valid_change_is_applied_and_invalid_one_rejected() {
        let (dir, mut reloader, live, registry) = setup("[log]\nlevel = \"info\"\n");
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "[log]\nlevel = \"debug\"\n").unwrap();
        assert!(matches!(
            reloader.reload("test", false),
            ReloadOutcome::Applied { .. }
        ));
        assert_eq!(live.current().log.level, "debug");
        std::fs::write(&path, "[log]\nlevel = \n").unwrap();
        assert_eq!(reloader.reload("test", false), ReloadOutcome::Rejected);
        assert_eq!(live.current().log.level, "debug");
        // The same broken file is not re-reported by polling, but is by an explicit trigger.
        assert_eq!(reloader.reload("poll", false), ReloadOutcome::Unchanged);
        assert_eq!(reloader.reload("signal", true), ReloadOutcome::Rejected);
        let text = metrics_text(&registry);
        assert!(
            text.contains("config_reloads_total{result=\"success\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("config_reloads_total{result=\"error\"} 2"),
            "{text}"
        );
    }

    #[test]
    fn static_settings_are_kept_and_reported() {
        let (dir, mut reloader, live, _) =
            setup("[server]\nlisten = \"127.0.0.1:1111\"\n[admin]\nlisten = \"127.0.0.1:2222\"\n");
        std::fs::write(
            dir.path().join("c.toml"),
            "[server]\nlisten = \"127.0.0.1:3333\"\n[admin]\nlisten = \"127.0.0.1:2222\"\n[log]\nlevel = \"warn\"\n",
        )
        .unwrap();
        let outcome = reloader.reload("test", false);
        assert_eq!(
            outcome,
            ReloadOutcome::Applied {
                restart_required: vec!["server.listen"]
            }
        );
        let cfg = live.current();
        assert_eq!(cfg.server.listen.port(), 1111);
        assert_eq!(cfg.log.level, "warn");
    }

    #[test]
    fn chamilo_settings_other_than_secrets_need_a_restart() {
        let (dir, mut reloader, live, _) = setup("[chamilo]\napi_key = \"k1\"\n");
        std::fs::write(
            dir.path().join("c.toml"),
            "[chamilo]\napi_key = \"k2\"\ndeprovision = \"delete\"\n",
        )
        .unwrap();
        assert_eq!(
            reloader.reload("test", false),
            ReloadOutcome::Applied {
                restart_required: vec!["chamilo.deprovision"]
            }
        );
        let cfg = live.current();
        assert_eq!(cfg.chamilo.deprovision, "deactivate");
        assert_eq!(cfg.chamilo.api_key.as_ref().map(|k| k.expose()), Some("k2"));
    }

    #[test]
    fn watched_directory_is_the_parent() {
        assert_eq!(
            watched_directory(Path::new("/etc/proxy/config.toml")),
            PathBuf::from("/etc/proxy")
        );
        assert_eq!(watched_directory(Path::new("c.toml")), PathBuf::from("."));
    }
}
