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
use super::{
    AccessConfig, AdminConfig, ChamiloConfig, Config, ForwardingConfig, LogConfig, ReloadConfig,
    ScimConfig, ServerConfig, ShutdownConfig, UpstreamConfig,
};

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
    /// The configuration file's text in force, to recognise a file caught half-written.
    good_text: Option<Vec<u8>>,
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
            good_text: None,
            watched_dirs: BTreeSet::new(),
            watcher: None,
        };
        reloader.good_text = reloader.read_text();
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

    fn read_text(&self) -> Option<Vec<u8>> {
        self.source
            .path
            .as_ref()
            .and_then(|p| std::fs::read(p).ok())
    }

    /// Re-reads everything; `forced` re-reports a still-broken configuration.
    pub fn reload(&mut self, cause: &'static str, forced: bool) -> ReloadOutcome {
        let text = self.read_text();
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
            Ok(_) if is_cut_short(text.as_deref(), self.good_text.as_deref()) => {
                // Valid TOML, but the beginning of the file in force: a writer that truncated
                // it and has not finished (or a copy cut short). Every key left out would fall
                // back to its default: no tokens, the default upstream.
                self.last_failed = true;
                self.metrics.count("error");
                tracing::error!(
                    cause,
                    file = ?self.source.path,
                    "configuration reload rejected: the file is the beginning of the configuration in force, cut short (being written?); the last good configuration stays in force"
                );
                ReloadOutcome::Rejected
            }
            Ok(loaded) => {
                self.last_failed = false;
                self.good_text = text;
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

/// Whether `new` is a proper beginning of `good` (ignoring trailing whitespace).
fn is_cut_short(new: Option<&[u8]>, good: Option<&[u8]>) -> bool {
    let (Some(new), Some(good)) = (new, good) else {
        return false;
    };
    let end = new
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    let good_end = good
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(0, |i| i + 1);
    end < good_end && good.starts_with(&new[..end])
}

fn far_future() -> tokio::time::Instant {
    tokio::time::Instant::now() + Duration::from_secs(86_400 * 365)
}

/// Copies settings that cannot change at run time from `old` into `new`, returning the keys
/// that the new file tried to change.
///
/// This is the reload contract, and the compiler keeps it whole: every field of every
/// section is named below, either kept (restart-only) or bound to `_` (reloadable, read from
/// the live configuration where it is used). The patterns have no `..`, so a new field that
/// is not classified here does not compile.
pub fn keep_static_settings(old: &Config, new: &mut Config) -> Vec<&'static str> {
    let mut kept = Kept(Vec::new());
    let Config {
        server,
        upstream,
        forwarding,
        access,
        admin,
        log,
        shutdown,
        scim,
        reload,
        chamilo,
    } = new;

    let ServerConfig {
        listen,
        tls,
        header_read_timeout: _,
        tls_handshake_timeout: _,
        max_connections,
        workers,
    } = server;
    kept.keep("server.listen", &old.server.listen, listen);
    kept.keep(
        "server.max_connections",
        &old.server.max_connections,
        max_connections,
    );
    kept.keep("server.workers", &old.server.workers, workers);
    // The certificate and key reload; turning TLS on or off does not.
    if old.server.tls.is_some() != tls.is_some() {
        kept.0.push("server.tls (on/off)");
        tls.clone_from(&old.server.tls);
    }

    let AdminConfig { listen } = admin;
    kept.keep("admin.listen", &old.admin.listen, listen);

    let UpstreamConfig {
        url: _,
        connect_timeout,
        response_header_timeout: _,
        body_idle_timeout: _,
        tunnel_idle_timeout: _,
        pool_idle_timeout,
        pool_max_idle_per_host,
    } = upstream;
    kept.keep(
        "upstream.connect_timeout",
        &old.upstream.connect_timeout,
        connect_timeout,
    );
    kept.keep(
        "upstream.pool_idle_timeout",
        &old.upstream.pool_idle_timeout,
        pool_idle_timeout,
    );
    kept.keep(
        "upstream.pool_max_idle_per_host",
        &old.upstream.pool_max_idle_per_host,
        pool_max_idle_per_host,
    );

    let ForwardingConfig {
        trusted_networks: _,
    } = forwarding;
    let AccessConfig { rules: _ } = access;
    let ShutdownConfig {
        drain_delay: _,
        grace_period: _,
    } = shutdown;

    let LogConfig { level: _, format } = log;
    kept.keep("log.format", &old.log.format, format);

    let ReloadConfig {
        watch,
        debounce: _,
        poll_interval: _,
    } = reload;
    kept.keep("reload.watch", &old.reload.watch, watch);

    let ScimConfig {
        enabled: _,
        tokens: _,
        token_files: _,
        named_tokens: _,
        token_names: _,
        discovery_requires_auth: _,
        max_body_bytes: _,
        max_filter_length: _,
        max_results: _,
        default_count: _,
        directory,
        ready_requires_backend,
        base_url: _,
        body_read_timeout: _,
    } = scim;
    kept.keep("scim.directory", &old.scim.directory, directory);
    kept.keep(
        "scim.ready_requires_backend",
        &old.scim.ready_requires_backend,
        ready_requires_backend,
    );

    // The Chamilo backend is built once; only its service account's secrets follow a reload.
    let o = &old.chamilo;
    let ChamiloConfig {
        url,
        username,
        api_key: _,
        api_key_file: _,
        password: _,
        password_file: _,
        security_key: _,
        security_key_file: _,
        soap_ip,
        soap_send_forwarded_for,
        connect_timeout,
        request_timeout,
        listing_timeout,
        pool_idle_timeout,
        pool_max_idle_per_host,
        user_name_field,
        external_id_field,
        attributes_field,
        login_is_email,
        login_transform,
        deprovision,
        auth_source,
        default_status,
        roles,
        languages,
        // Read per operation from the directory's language policy, which follows reloads.
        refuse_unmapped_languages: _,
        default_language: _,
        protected_logins,
        index_refresh,
        full_refresh,
        list_scope,
        group_scope,
        create_extra_fields,
        // Read per operation from the live configuration (`chamilo::enrolment`).
        enrolment: _,
        enrolment_dry_run: _,
        enrolment_reconcile,
    } = chamilo;
    kept.keep("chamilo.url", &o.url, url);
    kept.keep("chamilo.username", &o.username, username);
    kept.keep("chamilo.soap_ip", &o.soap_ip, soap_ip);
    kept.keep(
        "chamilo.soap_send_forwarded_for",
        &o.soap_send_forwarded_for,
        soap_send_forwarded_for,
    );
    kept.keep(
        "chamilo.connect_timeout",
        &o.connect_timeout,
        connect_timeout,
    );
    kept.keep(
        "chamilo.request_timeout",
        &o.request_timeout,
        request_timeout,
    );
    kept.keep(
        "chamilo.listing_timeout",
        &o.listing_timeout,
        listing_timeout,
    );
    kept.keep(
        "chamilo.pool_idle_timeout",
        &o.pool_idle_timeout,
        pool_idle_timeout,
    );
    kept.keep(
        "chamilo.pool_max_idle_per_host",
        &o.pool_max_idle_per_host,
        pool_max_idle_per_host,
    );
    kept.keep(
        "chamilo.user_name_field",
        &o.user_name_field,
        user_name_field,
    );
    kept.keep(
        "chamilo.external_id_field",
        &o.external_id_field,
        external_id_field,
    );
    kept.keep(
        "chamilo.attributes_field",
        &o.attributes_field,
        attributes_field,
    );
    kept.keep(
        "chamilo.create_extra_fields",
        &o.create_extra_fields,
        create_extra_fields,
    );
    kept.keep("chamilo.login_is_email", &o.login_is_email, login_is_email);
    kept.keep(
        "chamilo.login_transform",
        &o.login_transform,
        login_transform,
    );
    kept.keep("chamilo.deprovision", &o.deprovision, deprovision);
    kept.keep("chamilo.auth_source", &o.auth_source, auth_source);
    kept.keep("chamilo.default_status", &o.default_status, default_status);
    kept.keep("chamilo.roles", &o.roles, roles);
    kept.keep("chamilo.languages", &o.languages, languages);
    kept.keep(
        "chamilo.protected_logins",
        &o.protected_logins,
        protected_logins,
    );
    kept.keep("chamilo.list_scope", &o.list_scope, list_scope);
    kept.keep("chamilo.group_scope", &o.group_scope, group_scope);
    kept.keep("chamilo.index_refresh", &o.index_refresh, index_refresh);
    kept.keep("chamilo.full_refresh", &o.full_refresh, full_refresh);
    kept.keep(
        "chamilo.enrolment_reconcile",
        &o.enrolment_reconcile,
        enrolment_reconcile,
    );
    kept.0
}

/// The keys of restart-only settings the new file tried to change.
struct Kept(Vec<&'static str>);

impl Kept {
    /// Keeps the running value of a restart-only setting, noting `key` when it differs.
    fn keep<T: PartialEq + Clone>(&mut self, key: &'static str, running: &T, new: &mut T) {
        if running != new {
            self.0.push(key);
            new.clone_from(running);
        }
    }
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

    /// Issue 11 §3: an empty file, or one caught half-written, reloaded as all defaults.
    #[test]
    fn empty_or_cut_short_files_are_rejected_and_the_last_good_one_kept() {
        let full = "[upstream]\nurl = \"http://127.0.0.1:8081\"\n\n[scim]\ntokens = [\"a-token-of-sufficient-length-0001\"]\n";
        let (dir, mut reloader, live, _) = setup(full);
        let path = dir.path().join("c.toml");
        for text in [
            "",
            "\n  \n",
            "[upstream]\nurl = \"http://127.0.0.1:8081\"\n",
        ] {
            std::fs::write(&path, text).unwrap();
            assert_eq!(
                reloader.reload("test", false),
                ReloadOutcome::Rejected,
                "{text:?}"
            );
            let cfg = live.current();
            assert_eq!(cfg.upstream.url, "http://127.0.0.1:8081");
            assert!(cfg
                .scim
                .tokens
                .iter()
                .any(|t| t.expose() == "a-token-of-sufficient-length-0001"));
        }
        // A shorter file that is not the beginning of the old one is an edit: applied.
        std::fs::write(&path, "[upstream]\nurl = \"http://127.0.0.1:8082\"\n").unwrap();
        assert!(matches!(
            reloader.reload("test", false),
            ReloadOutcome::Applied { .. }
        ));
        assert_eq!(live.current().upstream.url, "http://127.0.0.1:8082");
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
            "[chamilo]\napi_key = \"k2\"\ndeprovision = \"delete\"\ngroup_scope = \"managed\"\n",
        )
        .unwrap();
        assert_eq!(
            reloader.reload("test", false),
            ReloadOutcome::Applied {
                restart_required: vec!["chamilo.deprovision", "chamilo.group_scope"]
            }
        );
        let cfg = live.current();
        assert_eq!(cfg.chamilo.deprovision, "deactivate");
        assert_eq!(cfg.chamilo.group_scope, "all");
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
