//! The Chamilo web-service client: REST `v2.php` (form-encoded) for almost everything, SOAP
//! `registration.soap.php` for the two things REST cannot do (rename / password change, class
//! rename).
//!
//! Every call is counted per action and reported to an optional [`CallObserver`] (metrics).
//! Request and response bodies are never logged: they carry api keys, passwords and, for SOAP,
//! a debug dump that echoes the SOAP secret.

pub mod courses;
pub mod decode;
pub mod groups;
pub mod listing;
pub mod rest;
pub mod soap;

pub use decode::{decode_listed_users, decode_profiles, ListedUser, Profile};
pub use groups::{Group, GroupMember};
pub use rest::{Capabilities, DeleteOutcome, NewAccount, UPDATABLE_KEYS};

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::error::{CallOutcome, ChamiloError};
use crate::config::{ChamiloConfig, Secret};
use decode::decode_envelope;

/// Path of the REST web services under the Chamilo base URL.
pub const REST_PATH: &str = "/main/webservices/api/v2.php";
/// Path of the SOAP registration service.
pub const SOAP_PATH: &str = "/main/webservices/registration.soap.php";

/// Receives one report per Chamilo call (for Prometheus counters and histograms).
pub trait CallObserver: Send + Sync {
    /// `action` is the REST action or SOAP operation.
    fn observe(&self, action: &str, outcome: CallOutcome, elapsed: Duration);

    /// How one SCIM write ended (`operation`: create, update, delete…); see
    /// `crate::chamilo::write`.
    fn write_outcome(&self, _operation: &str, _outcome: crate::chamilo::write::WriteOutcome) {}
}

/// The service account's secrets; replaceable at run time (reload).
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    pub username: String,
    pub api_key: Option<Secret>,
    pub password: Option<Secret>,
    pub security_key: Option<Secret>,
}

/// Everything needed to build a [`ChamiloClient`].
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Chamilo's base URL, e.g. `http://127.0.0.1:80` (no trailing slash needed).
    pub base_url: String,
    pub credentials: Credentials,
    /// The `ip` of the SOAP secret.
    pub soap_ip: String,
    /// Send `soap_ip` as `X-Forwarded-For` on SOAP calls.
    pub soap_send_forwarded_for: bool,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    pub listing_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
}

impl ClientSettings {
    /// Settings with the defaults of [`ChamiloConfig`] for `base_url` and `credentials`.
    pub fn new(base_url: impl Into<String>, credentials: Credentials) -> Self {
        let d = ChamiloConfig::default();
        Self {
            base_url: base_url.into(),
            credentials,
            soap_ip: d.soap_ip,
            soap_send_forwarded_for: d.soap_send_forwarded_for,
            connect_timeout: d.connect_timeout,
            request_timeout: d.request_timeout,
            listing_timeout: d.listing_timeout,
            pool_idle_timeout: d.pool_idle_timeout,
            pool_max_idle_per_host: d.pool_max_idle_per_host,
        }
    }

    /// Settings from the configuration section; secrets given as files are read now.
    /// `upstream_url` is used when the section has no `url`.
    pub fn from_config(c: &ChamiloConfig, upstream_url: &str) -> Result<Self, ChamiloError> {
        let credentials = Credentials {
            username: c.username.clone(),
            api_key: secret(&c.api_key, c.api_key_file.as_deref(), "api_key")?,
            password: secret(&c.password, c.password_file.as_deref(), "password")?,
            security_key: secret(
                &c.security_key,
                c.security_key_file.as_deref(),
                "security_key",
            )?,
        };
        if credentials.api_key.is_none() && credentials.password.is_none() {
            return Err(ChamiloError::Config {
                detail:
                    "set chamilo.api_key(_file) or chamilo.password(_file) for the service account"
                        .into(),
            });
        }
        let base_url = if c.url.is_empty() {
            upstream_url.to_owned()
        } else {
            c.url.clone()
        };
        Ok(Self {
            base_url,
            credentials,
            soap_ip: c.soap_ip.clone(),
            soap_send_forwarded_for: c.soap_send_forwarded_for,
            connect_timeout: c.connect_timeout,
            request_timeout: c.request_timeout,
            listing_timeout: c.listing_timeout,
            pool_idle_timeout: c.pool_idle_timeout,
            pool_max_idle_per_host: c.pool_max_idle_per_host,
        })
    }
}

fn secret(
    inline: &Option<Secret>,
    file: Option<&Path>,
    name: &str,
) -> Result<Option<Secret>, ChamiloError> {
    match file {
        Some(path) => std::fs::read_to_string(path)
            .map(|s| Some(Secret::new(s.trim().to_owned())))
            .map_err(|e| ChamiloError::Config {
                detail: format!("cannot read chamilo.{name}_file {}: {e}", path.display()),
            }),
        None => Ok(inline.clone()),
    }
}

/// The client. Cheap to share behind an `Arc`; connections are pooled.
pub struct ChamiloClient {
    http: reqwest::Client,
    rest_url: String,
    soap_url: String,
    credentials: RwLock<Credentials>,
    /// The key in use (configured, or obtained through `authenticate`).
    current_key: RwLock<Option<Secret>>,
    reauth: tokio::sync::Mutex<()>,
    soap_ip: String,
    soap_send_forwarded_for: bool,
    listing_timeout: Duration,
    calls: Mutex<HashMap<String, u64>>,
    observer: Option<Arc<dyn CallObserver>>,
}

impl std::fmt::Debug for ChamiloClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChamiloClient")
            .field("rest_url", &self.rest_url)
            .finish_non_exhaustive()
    }
}

pub(super) fn read<T: Clone>(lock: &RwLock<T>) -> T {
    lock.read().unwrap_or_else(|p| p.into_inner()).clone()
}

pub(super) fn write<T>(lock: &RwLock<T>, value: T) {
    *lock.write().unwrap_or_else(|p| p.into_inner()) = value;
}

pub(super) fn unexpected(action: &str, detail: impl Into<String>) -> ChamiloError {
    ChamiloError::Unexpected {
        action: action.to_owned(),
        detail: detail.into(),
    }
}

pub(super) fn transport_error(action: &str, e: reqwest::Error) -> ChamiloError {
    let e = e.without_url();
    if e.is_timeout() {
        ChamiloError::Timeout {
            action: action.to_owned(),
        }
    } else if e.is_connect() || e.is_request() {
        ChamiloError::Unreachable {
            action: action.to_owned(),
            detail: error_chain(&e),
        }
    } else {
        unexpected(action, error_chain(&e))
    }
}

pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

impl ChamiloClient {
    /// Builds the client (no call is made). Installs the ring TLS provider for `https` URLs.
    pub fn new(settings: ClientSettings) -> Result<Self, ChamiloError> {
        // reqwest is built without a default crypto provider; ignore "already installed".
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(settings.connect_timeout)
            .timeout(settings.request_timeout)
            .pool_idle_timeout(settings.pool_idle_timeout)
            .pool_max_idle_per_host(settings.pool_max_idle_per_host)
            .user_agent(concat!("chamilo-scim-proxy/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ChamiloError::Config {
                detail: format!("HTTP client: {}", error_chain(&e)),
            })?;
        let base = settings.base_url.trim_end_matches('/');
        let current_key = settings.credentials.api_key.clone();
        Ok(Self {
            http,
            rest_url: format!("{base}{REST_PATH}"),
            soap_url: format!("{base}{SOAP_PATH}"),
            credentials: RwLock::new(settings.credentials),
            current_key: RwLock::new(current_key),
            reauth: tokio::sync::Mutex::new(()),
            soap_ip: settings.soap_ip,
            soap_send_forwarded_for: settings.soap_send_forwarded_for,
            listing_timeout: settings.listing_timeout,
            calls: Mutex::new(HashMap::new()),
            observer: None,
        })
    }

    /// Reports every call to `observer`.
    pub fn with_observer(mut self, observer: Arc<dyn CallObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// Replaces the secrets (configuration reload). A new api key is used at once; with only
    /// a new password the next `Invalid API key` triggers `authenticate`.
    pub fn update_credentials(&self, credentials: Credentials) {
        if let Some(key) = &credentials.api_key {
            write(&self.current_key, Some(key.clone()));
        }
        write(&self.credentials, credentials);
    }

    /// Calls made per action (REST action or SOAP operation) since start.
    pub fn calls(&self, action: &str) -> u64 {
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(action)
            .copied()
            .unwrap_or(0)
    }

    /// Every action's call count.
    pub fn call_counts(&self) -> HashMap<String, u64> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(super) fn record(&self, action: &str, outcome: CallOutcome, started: Instant) {
        *self
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(action.to_owned())
            .or_insert(0) += 1;
        let elapsed = started.elapsed();
        if let Some(o) = &self.observer {
            o.observe(action, outcome, elapsed);
        }
        tracing::debug!(
            chamilo.action = action,
            outcome = outcome.as_str(),
            elapsed_ms = elapsed.as_secs_f64() * 1000.0,
            "chamilo call"
        );
    }

    /// Reports how a SCIM write ended to the observer (metrics).
    pub fn report_write(&self, operation: &str, outcome: crate::chamilo::write::WriteOutcome) {
        if let Some(o) = &self.observer {
            o.write_outcome(operation, outcome);
        }
    }

    /// Whether SOAP calls can be made (the `security_key` is configured): renames and
    /// password changes need them.
    pub fn soap_configured(&self) -> bool {
        read(&self.credentials).security_key.is_some()
    }

    /// Obtains an api key with the service account's password (`authenticate`).
    pub async fn authenticate(&self) -> Result<(), ChamiloError> {
        let creds = read(&self.credentials);
        let Some(password) = creds.password else {
            return Err(ChamiloError::Unauthorized {
                action: "authenticate".into(),
                detail: "the configured api key is not valid and no password is configured".into(),
            });
        };
        let form = [
            ("action", "authenticate"),
            ("username", creds.username.as_str()),
            ("password", password.expose()),
        ];
        let data: Value = self.post("authenticate", &form, None).await?;
        let key = data
            .get("apiKey")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| unexpected("authenticate", "no apiKey in the answer"))?;
        write(&self.current_key, Some(Secret::new(key)));
        tracing::info!(chamilo.user = %creds.username, "obtained a Chamilo api key");
        Ok(())
    }

    /// One POST to v2.php; returns `data` of a successful answer, decoded as `T` straight
    /// from the body (a 100k-user listing never exists as a `serde_json::Value` tree).
    pub(super) async fn post<T: DeserializeOwned>(
        &self,
        action: &str,
        form: &[(&str, &str)],
        timeout: Option<Duration>,
    ) -> Result<T, ChamiloError> {
        let started = Instant::now();
        let result = self.post_inner(action, form, timeout).await;
        let outcome = match &result {
            Ok(_) => CallOutcome::Ok,
            Err(e) => e.outcome(),
        };
        self.record(action, outcome, started);
        result
    }

    async fn post_inner<T: DeserializeOwned>(
        &self,
        action: &str,
        form: &[(&str, &str)],
        timeout: Option<Duration>,
    ) -> Result<T, ChamiloError> {
        let mut req = self.http.post(&self.rest_url).form(form);
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        let resp = req.send().await.map_err(|e| transport_error(action, e))?;
        let status = resp.status();
        let is_html = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html"));
        let body = resp.bytes().await.map_err(|e| transport_error(action, e))?;
        if status.as_u16() == 500 && body.is_empty() {
            return Err(unexpected(
                action,
                "HTTP 500 with an empty body (a PHP fatal error in Chamilo)",
            ));
        }
        if !status.is_success() {
            return Err(unexpected(action, format!("HTTP {}", status.as_u16())));
        }
        decode_envelope(action, &body, is_html)
    }

    /// Calls an action with the service account's key, re-authenticating once on
    /// `Invalid API key` when a password is configured.
    pub async fn call(&self, action: &str, params: &[(&str, &str)]) -> Result<Value, ChamiloError> {
        self.call_with_timeout(action, params, None).await
    }

    pub(super) async fn call_with_timeout<T: DeserializeOwned>(
        &self,
        action: &str,
        params: &[(&str, &str)],
        timeout: Option<Duration>,
    ) -> Result<T, ChamiloError> {
        let mut retried = false;
        loop {
            let key = self.api_key(action).await?;
            let username = read(&self.credentials).username;
            let form = keyed_form(action, &username, &key, params);
            match self.post(action, &form, timeout).await {
                Err(e) if !retried && is_stale_key(&e) => {
                    retried = true;
                    self.refresh_key(Some(&key)).await?;
                }
                other => return other,
            }
        }
    }

    /// The service account's current api key, authenticating first when there is none yet.
    pub(super) async fn api_key(&self, action: &str) -> Result<Secret, ChamiloError> {
        if let Some(k) = read(&self.current_key) {
            return Ok(k);
        }
        self.refresh_key(None).await?;
        read(&self.current_key).ok_or_else(|| ChamiloError::Unauthorized {
            action: action.to_owned(),
            detail: "no api key".into(),
        })
    }

    /// Re-authenticates unless another task already replaced `stale`.
    pub(super) async fn refresh_key(&self, stale: Option<&Secret>) -> Result<(), ChamiloError> {
        let _guard = self.reauth.lock().await;
        let current = read(&self.current_key);
        if current.is_some() && current.as_ref() != stale {
            return Ok(());
        }
        self.authenticate().await
    }
}

/// The form of a REST call: the action, the service account's name and key, then `params`.
pub(super) fn keyed_form<'a>(
    action: &'a str,
    username: &'a str,
    key: &'a Secret,
    params: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    let mut form: Vec<(&str, &str)> = Vec::with_capacity(params.len() + 3);
    form.push(("action", action));
    form.push(("username", username));
    form.push(("api_key", key.expose()));
    form.extend_from_slice(params);
    form
}

/// Whether Chamilo refused the key itself (expired or rotated): worth one re-authentication.
pub(super) fn is_stale_key(e: &ChamiloError) -> bool {
    matches!(e, ChamiloError::Unauthorized { detail, .. } if detail == "invalid API key")
}
