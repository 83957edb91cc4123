//! The Chamilo web-service client: REST `v2.php` (form-encoded) for almost everything, SOAP
//! `registration.soap.php` for the two things REST cannot do (rename / password change, class
//! rename).
//!
//! Every call is counted per action and reported to an optional [`CallObserver`] (metrics).
//! Request and response bodies are never logged: they carry api keys, passwords and, for SOAP,
//! a debug dump that echoes the SOAP secret.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;

use super::error::{classify_refusal, CallOutcome, ChamiloError};
use super::soap::{self, SoapAnswer};
use crate::config::{ChamiloConfig, Secret};

/// Path of the REST web services under the Chamilo base URL.
pub const REST_PATH: &str = "/main/webservices/api/v2.php";
/// Path of the SOAP registration service.
pub const SOAP_PATH: &str = "/main/webservices/registration.soap.php";

/// Largest SOAP envelope read before giving up (the debug dump after it is not read).
const SOAP_ENVELOPE_LIMIT: usize = 1024 * 1024;

/// Keys `update_user_from_username` accepts; any other key makes Chamilo refuse the whole call.
pub const UPDATABLE_KEYS: &[&str] = &[
    "firstname",
    "lastname",
    "email",
    "phone",
    "status",
    "official_code",
    "language",
    "auth_source",
    "active",
    "enabled",
    "expiration_date",
];

/// Receives one report per Chamilo call (for Prometheus counters and histograms).
pub trait CallObserver: Send + Sync {
    /// `action` is the REST action or SOAP operation.
    fn observe(&self, action: &str, outcome: CallOutcome, elapsed: Duration);
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

/// Decodes Chamilo's `{"error":…,"data":…}` envelope: the data on success, the refusal
/// classified, or `Unexpected` naming what came instead (an HTML error page, another shape).
fn decode_envelope<T: serde::de::DeserializeOwned>(
    action: &str,
    body: &[u8],
    is_html: bool,
) -> Result<T, ChamiloError> {
    let envelope: Envelope<T> = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) if is_html || body.trim_ascii_start().starts_with(b"<") => {
            return Err(unexpected(
                action,
                "an HTML page instead of JSON (usually a Chamilo database error)",
            ))
        }
        Err(e) => {
            return Err(unexpected(
                action,
                format!("an answer of an unknown shape: {e}"),
            ))
        }
    };
    match (envelope.error, envelope.data) {
        (Some(false), Some(data)) => Ok(data),
        (Some(false), None) => Err(unexpected(action, "no data in the answer")),
        (Some(true), _) => Err(classify_refusal(
            action,
            envelope.message.as_deref().unwrap_or(""),
        )),
        (None, _) => Err(unexpected(action, "no error flag in the answer")),
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

/// A user as `get_users` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedUser {
    pub id: u64,
    pub username: String,
    pub firstname: Option<String>,
    pub lastname: String,
    pub email: String,
    pub active: bool,
    /// The requested extra fields Chamilo knows, in request order: `None` for a NULL value,
    /// `Some("")` when the user has no value.
    pub extra: Vec<(String, Option<String>)>,
}

impl ListedUser {
    /// The value of a requested extra field (`None` when absent, NULL or empty).
    pub fn extra_value(&self, field: &str) -> Option<&str> {
        self.extra
            .iter()
            .find(|(n, _)| n == field)
            .and_then(|(_, v)| v.as_deref())
            .filter(|v| !v.is_empty())
    }
}

/// A user as `users_profiles_by_extra_field` returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub id: u64,
    pub status: i64,
    pub full_name: String,
    pub username: String,
    pub official_code: String,
    pub phone: String,
}

/// The fields of `save_user`. Chamilo creates the user active; `official_code` and
/// `active=false` need a follow-up update.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub username: String,
    /// Always sent: without one Chamilo refuses platform users and gives SSO users the
    /// auth source's name as password.
    pub password: Secret,
    pub firstname: String,
    pub lastname: String,
    pub email: String,
    pub status: i64,
    pub language: Option<String>,
    pub phone: Option<String>,
    pub auth_source: Option<String>,
    pub expiration_date: Option<String>,
    /// `original_user_id_name` / `original_user_id_value`: the handle SOAP calls address
    /// the user by.
    pub handle: Option<(String, String)>,
    /// Further extra fields (created by Chamilo if missing).
    pub extra: Vec<(String, String)>,
}

/// What `delete_user` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// Deleted, or there was no such user (Chamilo does not tell them apart).
    Deleted,
    /// Refused: the user is the only teacher of a course (or the id was not numeric).
    Refused,
}

/// A class or social group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: u64,
    pub name: String,
    pub description: String,
    pub group_type: i64,
}

/// A member of a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub user_id: u64,
    pub firstname: Option<String>,
    pub lastname: String,
    pub relation_type: i64,
}

/// What the start-up check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// The service account's user id.
    pub service_user_id: Option<u64>,
    /// Ids of the anonymous users (status 6): never returned or changed through SCIM.
    pub anonymous_ids: Vec<u64>,
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

fn read<T: Clone>(lock: &RwLock<T>) -> T {
    lock.read().unwrap_or_else(|p| p.into_inner()).clone()
}

fn write<T>(lock: &RwLock<T>, value: T) {
    *lock.write().unwrap_or_else(|p| p.into_inner()) = value;
}

fn unexpected(action: &str, detail: impl Into<String>) -> ChamiloError {
    ChamiloError::Unexpected {
        action: action.to_owned(),
        detail: detail.into(),
    }
}

fn transport_error(action: &str, e: reqwest::Error) -> ChamiloError {
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

fn error_chain(e: &dyn std::error::Error) -> String {
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

    fn record(&self, action: &str, outcome: CallOutcome, started: Instant) {
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
    async fn post<T: DeserializeOwned>(
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

    async fn call_with_timeout<T: DeserializeOwned>(
        &self,
        action: &str,
        params: &[(&str, &str)],
        timeout: Option<Duration>,
    ) -> Result<T, ChamiloError> {
        let mut retried = false;
        loop {
            let key = match read(&self.current_key) {
                Some(k) => k,
                None => {
                    self.refresh_key(None).await?;
                    read(&self.current_key).ok_or_else(|| ChamiloError::Unauthorized {
                        action: action.to_owned(),
                        detail: "no api key".into(),
                    })?
                }
            };
            let username = read(&self.credentials).username;
            let mut form: Vec<(&str, &str)> = Vec::with_capacity(params.len() + 3);
            form.push(("action", action));
            form.push(("username", &username));
            form.push(("api_key", key.expose()));
            form.extend_from_slice(params);
            match self.post(action, &form, timeout).await {
                Err(ChamiloError::Unauthorized { detail, .. })
                    if detail == "invalid API key" && !retried =>
                {
                    retried = true;
                    self.refresh_key(Some(&key)).await?;
                }
                other => return other,
            }
        }
    }

    /// Re-authenticates unless another task already replaced `stale`.
    async fn refresh_key(&self, stale: Option<&Secret>) -> Result<(), ChamiloError> {
        let _guard = self.reauth.lock().await;
        let current = read(&self.current_key);
        if current.is_some() && current.as_ref() != stale {
            return Ok(());
        }
        self.authenticate().await
    }

    /// `get_users`: every user (`status=None` → `*`) or those of one status, with the values
    /// of `extra_fields`. Costly on large installs: for background index builds only.
    pub async fn get_users(
        &self,
        status: Option<i64>,
        extra_fields: &[&str],
    ) -> Result<Vec<ListedUser>, ChamiloError> {
        let status = status.map_or_else(|| "*".to_owned(), |s| s.to_string());
        let fields = extra_fields.join(",");
        let mut params = vec![("status", status.as_str())];
        if !fields.is_empty() {
            params.push(("extra_fields", fields.as_str()));
        }
        let rows: Vec<ListedRow> = self
            .call_with_timeout("get_users", &params, Some(self.listing_timeout))
            .await?;
        rows.into_iter()
            .map(|row| row.into_user(extra_fields))
            .collect()
    }

    /// `get_users` decoded as it arrives: `each` gets every user in turn, so that a large
    /// listing is never held whole (body, JSON tree or rows). Returns the number of users. For
    /// background index builds.
    pub async fn get_users_each(
        &self,
        status: Option<i64>,
        extra_fields: &[&str],
        mut each: impl FnMut(ListedUser),
    ) -> Result<usize, ChamiloError> {
        const ACTION: &str = "get_users";
        let status = status.map_or_else(|| "*".to_owned(), |s| s.to_string());
        let fields = extra_fields.join(",");
        let mut params = vec![("status", status.as_str())];
        if !fields.is_empty() {
            params.push(("extra_fields", fields.as_str()));
        }
        let mut retried = false;
        loop {
            let key = match read(&self.current_key) {
                Some(k) => k,
                None => {
                    self.refresh_key(None).await?;
                    read(&self.current_key).ok_or_else(|| ChamiloError::Unauthorized {
                        action: ACTION.to_owned(),
                        detail: "no api key".into(),
                    })?
                }
            };
            let username = read(&self.credentials).username;
            let mut form: Vec<(&str, &str)> = Vec::with_capacity(params.len() + 3);
            form.push(("action", ACTION));
            form.push(("username", &username));
            form.push(("api_key", key.expose()));
            form.extend_from_slice(&params);
            let started = Instant::now();
            let result = self
                .stream_rows(ACTION, &form, extra_fields, &mut each)
                .await;
            let outcome = match &result {
                Ok(_) => CallOutcome::Ok,
                Err(e) => e.outcome(),
            };
            self.record(ACTION, outcome, started);
            match result {
                Err(ChamiloError::Unauthorized { detail, .. })
                    if detail == "invalid API key" && !retried =>
                {
                    retried = true;
                    self.refresh_key(Some(&key)).await?;
                }
                other => return other,
            }
        }
    }

    async fn stream_rows(
        &self,
        action: &str,
        form: &[(&str, &str)],
        extra_fields: &[&str],
        each: &mut impl FnMut(ListedUser),
    ) -> Result<usize, ChamiloError> {
        let mut resp = self
            .http
            .post(&self.rest_url)
            .form(form)
            .timeout(self.listing_timeout)
            .send()
            .await
            .map_err(|e| transport_error(action, e))?;
        let status = resp.status();
        let is_html = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html"));
        if !status.is_success() {
            let body = resp.bytes().await.map_err(|e| transport_error(action, e))?;
            if status.as_u16() == 500 && body.is_empty() {
                return Err(unexpected(
                    action,
                    "HTTP 500 with an empty body (a PHP fatal error in Chamilo)",
                ));
            }
            return Err(unexpected(action, format!("HTTP {}", status.as_u16())));
        }
        let mut scanner = super::listing::RowScanner::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| transport_error(action, e))? {
            scanner.feed(&chunk, |row| {
                let row: ListedRow = serde_json::from_slice(row).map_err(|e| {
                    unexpected(action, format!("an answer of an unknown shape: {e}"))
                })?;
                each(row.into_user(extra_fields)?);
                Ok::<(), ChamiloError>(())
            })?;
        }
        let rows = scanner.rows();
        let Some(skeleton) = scanner.finish() else {
            return Err(unexpected(action, "the answer ended early (truncated)"));
        };
        decode_envelope::<serde::de::IgnoredAny>(action, &skeleton, is_html)?;
        Ok(rows)
    }

    /// `username_exist` (case-insensitive on Chamilo's side).
    pub async fn username_exists(&self, login: &str) -> Result<bool, ChamiloError> {
        let data = self.call("username_exist", &[("loginname", login)]).await?;
        single_bool("username_exist", &data)
    }

    /// `users_profiles_by_extra_field`: users whose `field` equals `value` (case-insensitive,
    /// trailing spaces ignored), in id order.
    pub async fn users_by_extra_field(
        &self,
        field: &str,
        value: &str,
        only_active: bool,
    ) -> Result<Vec<Profile>, ChamiloError> {
        let mut params = vec![("field_name", field), ("field_value", value)];
        if only_active {
            params.push(("active", "1"));
        }
        let data = self.call("users_profiles_by_extra_field", &params).await?;
        decode_profiles(&data)
    }

    /// `save_user`: creates an active user; returns its id.
    pub async fn save_user(&self, account: &NewAccount) -> Result<u64, ChamiloError> {
        let status = account.status.to_string();
        let mut owned: Vec<(String, String)> = vec![
            ("loginname".into(), account.username.clone()),
            ("password".into(), account.password.expose().to_owned()),
            ("firstname".into(), account.firstname.clone()),
            ("lastname".into(), account.lastname.clone()),
            ("email".into(), account.email.clone()),
            ("status".into(), status),
        ];
        let optional = [
            ("language", &account.language),
            ("phone", &account.phone),
            ("auth_source", &account.auth_source),
            ("expiration_date", &account.expiration_date),
        ];
        for (k, v) in optional {
            if let Some(v) = v {
                owned.push((k.into(), v.clone()));
            }
        }
        if let Some((name, value)) = &account.handle {
            owned.push(("original_user_id_name".into(), name.clone()));
            owned.push(("original_user_id_value".into(), value.clone()));
        }
        push_extra(&mut owned, &account.extra);
        let params: Vec<(&str, &str)> = owned
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let data = self.call("save_user", &params).await?;
        single_id("save_user", &data)
    }

    /// `update_user_from_username`: a partial update of `changes` (keys from
    /// [`UPDATABLE_KEYS`]) and extra-field values (the fields must exist).
    pub async fn update_user(
        &self,
        login: &str,
        changes: &[(&str, String)],
        extra: &[(String, String)],
    ) -> Result<(), ChamiloError> {
        const ACTION: &str = "update_user_from_username";
        if let Some((bad, _)) = changes.iter().find(|(k, _)| !UPDATABLE_KEYS.contains(k)) {
            // Chamilo would refuse the whole call; refuse before it.
            return Err(ChamiloError::Rejected {
                action: ACTION.into(),
                message: format!("Unsupported update. '{bad}'"),
            });
        }
        let mut owned: Vec<(String, String)> = vec![("loginname".into(), login.to_owned())];
        owned.extend(changes.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        push_extra(&mut owned, extra);
        let params: Vec<(&str, &str)> = owned
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let data = self.call(ACTION, &params).await?;
        expect_true(ACTION, &data)
    }

    /// `delete_user`: a hard delete.
    pub async fn delete_user(&self, id: u64) -> Result<DeleteOutcome, ChamiloError> {
        let id = id.to_string();
        let data = self.call("delete_user", &[("user_id", &id)]).await?;
        match data.get("status") {
            Some(Value::Bool(true)) => Ok(DeleteOutcome::Deleted),
            Some(Value::Bool(false)) => Ok(DeleteOutcome::Refused),
            _ => Err(unexpected("delete_user", "no status in data")),
        }
    }

    /// `get_groups` of one type (`None` = all; 0 classes, 1 social groups).
    pub async fn get_groups(&self, group_type: Option<i64>) -> Result<Vec<Group>, ChamiloError> {
        let t = group_type.map_or_else(|| "*".to_owned(), |t| t.to_string());
        let data = self.call("get_groups", &[("type", &t)]).await?;
        let Value::Array(items) = &data else {
            return Err(unexpected("get_groups", "data is not a list"));
        };
        items
            .iter()
            .map(|g| {
                Ok(Group {
                    id: as_id(g.get("id"))
                        .ok_or_else(|| unexpected("get_groups", "group without id"))?,
                    name: str_field(g, "name"),
                    description: str_field(g, "description"),
                    group_type: g.get("type").and_then(as_i64).unwrap_or(0),
                })
            })
            .collect()
    }

    /// `add_group`: creates a class (type 0); returns its id.
    pub async fn add_group(&self, name: &str, description: &str) -> Result<u64, ChamiloError> {
        let data = self
            .call("add_group", &[("name", name), ("description", description)])
            .await?;
        single_id("add_group", &data)
    }

    /// `delete_group`; `NotFound` when it did not exist.
    pub async fn delete_group(&self, id: u64) -> Result<(), ChamiloError> {
        let id = id.to_string();
        match self.call("delete_group", &[("id", &id)]).await {
            Ok(_) => Ok(()),
            Err(ChamiloError::Rejected { action, message }) if message == "NotDeleted" => {
                Err(ChamiloError::NotFound { action })
            }
            Err(e) => Err(e),
        }
    }

    /// `add_group_sub_user` (idempotent; an existing member keeps its role).
    pub async fn add_group_member(
        &self,
        group: u64,
        user: u64,
        role: i64,
    ) -> Result<(), ChamiloError> {
        let (g, u, r) = (group.to_string(), user.to_string(), role.to_string());
        match self
            .call(
                "add_group_sub_user",
                &[("group_id", &g), ("user_id", &u), ("role", &r)],
            )
            .await
        {
            Ok(data) => expect_true("add_group_sub_user", &data),
            Err(ChamiloError::Rejected { action, message })
                if message == "user_id or group_id does not exist" =>
            {
                Err(ChamiloError::NotFound { action })
            }
            Err(e) => Err(e),
        }
    }

    /// `delete_group_sub_user` (answers the same for non-members).
    pub async fn remove_group_member(&self, group: u64, user: u64) -> Result<(), ChamiloError> {
        let (g, u) = (group.to_string(), user.to_string());
        self.call(
            "delete_group_sub_user",
            &[("group_id", &g), ("user_id", &u)],
        )
        .await
        .map(|_| ())
    }

    /// `get_group_sub_users`: members of a group (empty for an unknown group).
    pub async fn group_members(&self, group: u64) -> Result<Vec<GroupMember>, ChamiloError> {
        let g = group.to_string();
        let data = self.call("get_group_sub_users", &[("id", &g)]).await?;
        let entries: Vec<&Value> = match &data {
            Value::Object(m) => m.values().collect(),
            Value::Array(a) if a.is_empty() => Vec::new(),
            _ => {
                return Err(unexpected(
                    "get_group_sub_users",
                    "data is neither an object nor []",
                ))
            }
        };
        entries
            .into_iter()
            .map(|m| {
                Ok(GroupMember {
                    user_id: as_id(m.get("id"))
                        .ok_or_else(|| unexpected("get_group_sub_users", "member without id"))?,
                    firstname: m
                        .get("firstname")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    lastname: str_field(m, "lastname"),
                    relation_type: m.get("relation_type").and_then(as_i64).unwrap_or(0),
                })
            })
            .collect()
    }

    /// `get_user_sub_group`: ids of the groups a user belongs to.
    pub async fn user_groups(&self, user: u64) -> Result<Vec<u64>, ChamiloError> {
        let u = user.to_string();
        let data = self.call("get_user_sub_group", &[("user_id", &u)]).await?;
        match data.get("groups") {
            Some(Value::Array(ids)) => Ok(ids.iter().filter_map(|v| as_id(Some(v))).collect()),
            _ => Err(unexpected("get_user_sub_group", "no groups list")),
        }
    }

    /// SOAP `WSEditUserCredentials`: renames the user addressed by the extra-field handle
    /// and/or sets its password. `Ok(false)` when Chamilo answered 0: the handle is unknown,
    /// the user is inactive, or the new name is taken.
    pub async fn edit_user_credentials(
        &self,
        handle_field: &str,
        handle_value: &str,
        username: &str,
        password: Option<&Secret>,
    ) -> Result<bool, ChamiloError> {
        let answer = self
            .soap(
                "WSEditUserCredentials",
                "editUserCredentials",
                &[
                    ("username", Some(username)),
                    ("password", password.map(Secret::expose)),
                    ("original_user_id_name", Some(handle_field)),
                    ("original_user_id_value", Some(handle_value)),
                ],
            )
            .await?;
        Ok(answer == "1")
    }

    /// SOAP `WSUpdateGroup`: renames a class (Chamilo answers 1 even for a missing id).
    pub async fn update_group(
        &self,
        id: u64,
        name: &str,
        description: Option<&str>,
    ) -> Result<(), ChamiloError> {
        let id = id.to_string();
        self.soap(
            "WSUpdateGroup",
            "updateGroup",
            &[
                ("id", Some(&id)),
                ("name", Some(name)),
                ("description", description),
            ],
        )
        .await
        .map(|_| ())
    }

    async fn soap(
        &self,
        operation: &str,
        wrapper: &str,
        params: &[(&str, Option<&str>)],
    ) -> Result<String, ChamiloError> {
        let started = Instant::now();
        let result = self.soap_inner(operation, wrapper, params).await;
        let outcome = match &result {
            Ok(_) => CallOutcome::Ok,
            Err(e) => e.outcome(),
        };
        self.record(operation, outcome, started);
        result
    }

    async fn soap_inner(
        &self,
        operation: &str,
        wrapper: &str,
        params: &[(&str, Option<&str>)],
    ) -> Result<String, ChamiloError> {
        let Some(security_key) = read(&self.credentials).security_key else {
            return Err(ChamiloError::Config {
                detail: format!(
                    "chamilo.security_key is not configured; it is needed for {operation}"
                ),
            });
        };
        let secret = soap::secret_key(&self.soap_ip, security_key.expose());
        let mut all: Vec<(&str, Option<&str>)> = vec![("secret_key", Some(secret.as_str()))];
        all.extend_from_slice(params);
        let body = soap::envelope(operation, wrapper, &all);
        let mut req = self
            .http
            .post(&self.soap_url)
            .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=utf-8")
            .body(body);
        if self.soap_send_forwarded_for {
            // Our own value, never a client's: Chamilo keys the secret on its first entry.
            req = req.header("X-Forwarded-For", &self.soap_ip);
        }
        let mut resp = req
            .send()
            .await
            .map_err(|e| transport_error(operation, e))?;
        let status = resp.status().as_u16();
        let is_html = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html"));
        let mut buf: Vec<u8> = Vec::new();
        let envelope = loop {
            if let Some(env) = soap::envelope_prefix(&buf) {
                break Some(env.to_vec());
            }
            if buf.len() > SOAP_ENVELOPE_LIMIT {
                break None;
            }
            match resp
                .chunk()
                .await
                .map_err(|e| transport_error(operation, e))?
            {
                Some(chunk) => buf.extend_from_slice(&chunk),
                None => break None,
            }
        };
        // The rest of the body (the debug dump) is dropped unread with the response.
        drop(resp);
        let Some(envelope) = envelope else {
            let detail = if status == 500 && buf.is_empty() {
                "HTTP 500 with an empty body (a PHP fatal error in Chamilo)".to_owned()
            } else if is_html {
                format!("an HTML page (HTTP {status}) instead of a SOAP envelope (usually a Chamilo database error)")
            } else {
                format!("no SOAP envelope in the answer (HTTP {status})")
            };
            return Err(unexpected(operation, detail));
        };
        let text = String::from_utf8_lossy(&envelope);
        match soap::parse_answer(&text) {
            Some(SoapAnswer::Return(v)) => Ok(v),
            Some(SoapAnswer::Fault(f)) if f.starts_with("Secret key is not correct") => {
                Err(ChamiloError::Unauthorized {
                    action: operation.to_owned(),
                    detail: "SOAP secret refused: check chamilo.security_key and chamilo.soap_ip"
                        .into(),
                })
            }
            Some(SoapAnswer::Fault(f)) => Err(unexpected(
                operation,
                format!("SOAP fault: {}", super::error::sanitize_message(&f)),
            )),
            None => Err(unexpected(operation, "unreadable SOAP envelope")),
        }
    }

    /// Which of the user extra fields `fields` do not exist in Chamilo. `get_users` leaves
    /// unknown field names out of its rows, so a listing of a small status (anonymous, then
    /// teachers) tells; when both are empty nothing can be told and none is reported missing.
    pub async fn missing_extra_fields(&self, fields: &[&str]) -> Result<Vec<String>, ChamiloError> {
        for status in [6, 1] {
            let rows = self.get_users(Some(status), fields).await?;
            if let Some(first) = rows.first() {
                return Ok(fields
                    .iter()
                    .filter(|f| !first.extra.iter().any(|(n, _)| n == f.trim()))
                    .map(|f| (*f).to_owned())
                    .collect());
            }
        }
        Ok(Vec::new())
    }

    /// Start-up check: the key works, the service account is a platform administrator, and the
    /// web services are the current 1.11.x ones (`get_users` returns usernames and the active
    /// flag; `users_profiles_by_extra_field` exists). Costs two small calls.
    pub async fn check_capabilities(&self) -> Result<Capabilities, ChamiloError> {
        const NEED: &str = "the proxy needs the REST web services of the current Chamilo 1.11.x branch (v2.php/Rest.php of 2024 or later, as in 1.11.28+)";
        let username = read(&self.credentials).username;
        let not_admin = |e: ChamiloError| {
            match e {
            ChamiloError::Unauthorized { detail, .. } if detail.contains("administrator") => {
                ChamiloError::Incompatible {
                    detail: format!(
                        "the service account '{username}' is not a Chamilo platform administrator; make it one (Administration > Users > edit > Platform admin)"
                    ),
                }
            }
            other => other,
        }
        };
        // Anonymous users (status 6) are few; fall back to teachers if there are none.
        let mut data = self
            .call("get_users", &[("status", "6")])
            .await
            .map_err(&not_admin)?;
        let anonymous_ids: Vec<u64> = data
            .as_array()
            .map(|rows| rows.iter().filter_map(|r| as_id(r.get("id"))).collect())
            .unwrap_or_default();
        if data.as_array().is_some_and(Vec::is_empty) {
            data = self
                .call("get_users", &[("status", "1")])
                .await
                .map_err(&not_admin)?;
        }
        let Value::Array(rows) = &data else {
            return Err(ChamiloError::Incompatible {
                detail: format!("get_users did not return a list; {NEED}"),
            });
        };
        if let Some(first) = rows.first() {
            if first.get("username").is_none() || first.get("active").is_none() {
                return Err(ChamiloError::Incompatible {
                    detail: format!(
                        "get_users returns no usernames or active flags (Chamilo 1.11.16 or older); {NEED}"
                    ),
                });
            }
        }
        let service_user_id = rows
            .iter()
            .find(|r| {
                r.get("username")
                    .and_then(Value::as_str)
                    .is_some_and(|u| u.eq_ignore_ascii_case(&username))
            })
            .and_then(|r| as_id(r.get("id")));
        match self
            .call(
                "users_profiles_by_extra_field",
                &[
                    ("field_name", "scim_capability_probe"),
                    ("field_value", "-"),
                ],
            )
            .await
        {
            Ok(_) => {}
            Err(ChamiloError::Rejected { message, .. }) if message == "Invalid action" => {
                return Err(ChamiloError::Incompatible {
                    detail: format!("users_profiles_by_extra_field is missing; {NEED}"),
                })
            }
            Err(e) => return Err(not_admin(e)),
        }
        Ok(Capabilities {
            service_user_id,
            anonymous_ids,
        })
    }
}

fn push_extra(out: &mut Vec<(String, String)>, extra: &[(String, String)]) {
    for (i, (name, value)) in extra.iter().enumerate() {
        out.push((format!("extra[{i}][field_name]"), name.clone()));
        out.push((format!("extra[{i}][field_value]"), value.clone()));
    }
}

fn as_id(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn as_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn str_field(v: &Value, key: &str) -> String {
    match v.get(key) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => String::new(),
    }
}

fn single_bool(action: &str, data: &Value) -> Result<bool, ChamiloError> {
    data.get(0)
        .and_then(Value::as_bool)
        .ok_or_else(|| unexpected(action, "data is not [bool]"))
}

fn expect_true(action: &str, data: &Value) -> Result<(), ChamiloError> {
    if single_bool(action, data)? {
        Ok(())
    } else {
        Err(unexpected(action, "Chamilo answered [false]"))
    }
}

fn single_id(action: &str, data: &Value) -> Result<u64, ChamiloError> {
    as_id(data.get(0)).ok_or_else(|| unexpected(action, "data is not [id]"))
}

/// `{"error":…,"message":…,"data":…}`.
#[derive(Deserialize)]
struct Envelope<T> {
    error: Option<bool>,
    message: Option<String>,
    data: Option<T>,
}

/// One `get_users` entry, decoded without an intermediate JSON tree.
#[derive(Deserialize)]
struct ListedRow {
    id: Value,
    firstname: Option<String>,
    lastname: Option<String>,
    email: Option<String>,
    username: Option<String>,
    active: Option<Value>,
    /// The requested extra fields.
    #[serde(flatten)]
    extra: HashMap<String, Value>,
}

impl ListedRow {
    fn into_user(mut self, extra_fields: &[&str]) -> Result<ListedUser, ChamiloError> {
        let id =
            as_id(Some(&self.id)).ok_or_else(|| unexpected("get_users", "an entry has no id"))?;
        let username = self.username.ok_or_else(|| {
            unexpected(
                "get_users",
                "an entry has no username (Chamilo older than the current 1.11.x?)",
            )
        })?;
        let active = match &self.active {
            Some(v) => as_i64(v).is_some_and(|a| a == 1),
            None => return Err(unexpected("get_users", "an entry has no active flag")),
        };
        let extra = extra_fields
            .iter()
            .filter_map(|f| {
                let name = f.trim();
                self.extra.remove(name).map(|v| {
                    let value = match v {
                        Value::Null => None,
                        Value::String(s) => Some(s),
                        other => Some(other.to_string()),
                    };
                    (name.to_owned(), value)
                })
            })
            .collect();
        Ok(ListedUser {
            id,
            username,
            firstname: self.firstname,
            lastname: self.lastname.unwrap_or_default(),
            email: self.email.unwrap_or_default(),
            active,
            extra,
        })
    }
}

/// Decodes `get_users` data given as a JSON value (the client itself decodes from bytes).
pub fn decode_listed_users(
    data: &Value,
    extra_fields: &[&str],
) -> Result<Vec<ListedUser>, ChamiloError> {
    let rows: Vec<ListedRow> = serde_json::from_value(data.clone())
        .map_err(|e| unexpected("get_users", format!("an answer of an unknown shape: {e}")))?;
    rows.into_iter()
        .map(|row| row.into_user(extra_fields))
        .collect()
}

/// Decodes `users_profiles_by_extra_field` data (an object keyed by id, or `[]`).
pub fn decode_profiles(data: &Value) -> Result<Vec<Profile>, ChamiloError> {
    const ACTION: &str = "users_profiles_by_extra_field";
    let entries: Vec<&Value> = match data {
        Value::Object(m) => m.values().collect(),
        Value::Array(a) if a.is_empty() => Vec::new(),
        _ => return Err(unexpected(ACTION, "data is neither an object nor []")),
    };
    let mut out: Vec<Profile> = entries
        .into_iter()
        .map(|p| {
            Ok(Profile {
                id: as_id(p.get("id")).ok_or_else(|| unexpected(ACTION, "a profile has no id"))?,
                status: p.get("status").and_then(as_i64).unwrap_or(0),
                full_name: str_field(p, "fullName"),
                username: p
                    .get("username")
                    .and_then(Value::as_str)
                    .ok_or_else(|| unexpected(ACTION, "a profile has no username"))?
                    .to_owned(),
                official_code: str_field(p, "officialCode"),
                phone: str_field(p, "phone"),
            })
        })
        .collect::<Result<_, ChamiloError>>()?;
    out.sort_by_key(|p| p.id);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn listed_users_decode_nulls_and_missing_fields() {
        let data = json!([
            {"id":24,"firstname":null,"lastname":"NoFirst","email":"n@x.org","username":"nofirst","active":1,"ext_id":"V-1O1"},
            {"id":28,"firstname":"No","lastname":"ExtValue","email":"n@x.org","username":"noextvalue","active":0,"ext_id":null}
        ]);
        let users = decode_listed_users(&data, &["ext_id", "nope"]).unwrap();
        assert_eq!(users[0].firstname, None);
        assert_eq!(users[0].extra_value("ext_id"), Some("V-1O1"));
        assert!(users[0].active);
        assert!(!users[1].active);
        assert_eq!(users[1].extra, vec![("ext_id".to_owned(), None)]);
        assert_eq!(users[1].extra_value("ext_id"), None);
    }

    #[test]
    fn old_release_listing_is_refused() {
        let data = json!([{"id":1,"firstname":"Chamilo","lastname":"Admin","email":"a@x.org"}]);
        assert!(matches!(
            decode_listed_users(&data, &[]),
            Err(ChamiloError::Unexpected { .. })
        ));
    }

    #[test]
    fn profiles_object_or_empty_list() {
        assert!(decode_profiles(&json!([])).unwrap().is_empty());
        let p = decode_profiles(&json!({"4":{"id":4,"status":5,"fullName":"Sam Alpha","username":"sama","officialCode":"","phone":""},"3":{"id":3,"status":1,"fullName":"Sam Zulu","username":"samz","officialCode":"","phone":""}})).unwrap();
        assert_eq!(p.iter().map(|p| p.id).collect::<Vec<_>>(), vec![3, 4]);
        assert!(decode_profiles(&json!({"error": 1})).is_err());
    }
}
