//! Typed configuration: one TOML file plus a few environment variables.
//!
//! This module is a leaf: every other layer reads its section from here, nothing here knows
//! about them. Loading, validation, secrets from files and hot reload live in submodules:
//! [`load`] (file + overrides + environment → validated [`load::Loaded`]), [`error`] (errors
//! with key and line), [`secret`] (secret files), [`tls`] (certificate/key preparation),
//! [`live`] (the atomically swapped configuration) and [`reload`] (watching and reloading).

pub mod enrolment;
pub mod error;
pub mod live;
pub mod load;
pub mod reload;
pub mod secret;
pub mod tls;
mod tokens;

pub use enrolment::{check_course_code, EnrolmentConfig};
pub use live::Live;
// Re-export for src/chamilo until it switches to the new path. (The sections' fields hold
// `Secret`s, so tests and examples that build a configuration use it from here too.)
pub use crate::secret::Secret;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

/// The whole configuration as written in the TOML file (after defaults).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub upstream: UpstreamConfig,
    pub forwarding: ForwardingConfig,
    pub access: AccessConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
    pub shutdown: ShutdownConfig,
    pub scim: ScimConfig,
    pub reload: ReloadConfig,
    pub chamilo: ChamiloConfig,
}

/// The public listener. `listen`, `max_connections`, `workers` and the TLS on/off choice
/// cannot change at run time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub tls: Option<TlsConfig>,
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    #[serde(with = "humantime_serde")]
    pub tls_handshake_timeout: Duration,
    pub max_connections: usize,
    /// Event loops serving the public listener, each a single-threaded runtime on its own
    /// thread with its own `SO_REUSEPORT` socket; 0 means one per available CPU.
    pub workers: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 8080)),
            tls: None,
            header_read_timeout: Duration::from_secs(30),
            tls_handshake_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            workers: 0,
        }
    }
}

/// PEM certificate chain and private key; both files are watched and reloaded.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

/// The Chamilo site that non-SCIM requests are passed to.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// Base URL, e.g. `http://127.0.0.1:80`.
    pub url: String,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Time allowed until the upstream's response headers arrive (504 after it).
    #[serde(with = "humantime_serde")]
    pub response_header_timeout: Duration,
    /// Longest pause between two body frames in either direction.
    #[serde(with = "humantime_serde")]
    pub body_idle_timeout: Duration,
    /// An upgraded (WebSocket) tunnel with no byte in either direction for this long is closed.
    #[serde(with = "humantime_serde")]
    pub tunnel_idle_timeout: Duration,
    /// Must stay below the upstream's keep-alive (Apache: 5 s).
    #[serde(with = "humantime_serde")]
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:80".to_owned(),
            connect_timeout: Duration::from_secs(3),
            response_header_timeout: Duration::from_secs(120),
            body_idle_timeout: Duration::from_secs(60),
            tunnel_idle_timeout: Duration::from_secs(15 * 60),
            pool_idle_timeout: Duration::from_secs(4),
            pool_max_idle_per_host: 256,
        }
    }
}

/// Which peers may supply `X-Forwarded-*` / `Forwarded` headers that are kept.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardingConfig {
    pub trusted_networks: Vec<IpNet>,
}

/// Allow/deny rules for passed-through requests, by path prefix and client network.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AccessConfig {
    pub rules: Vec<AccessRule>,
}

/// One rule: requests whose normalised path starts with `path_prefix` are allowed only from
/// `allow` networks (when non-empty) and never from `deny` networks.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessRule {
    pub path_prefix: String,
    #[serde(default)]
    pub allow: Vec<IpNet>,
    #[serde(default)]
    pub deny: Vec<IpNet>,
}

/// The admin listener (`/livez`, `/readyz`, `/metrics`); loopback by default.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Json,
    Text,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter directive such as `info` or `info,chamilo_scim_proxy::scim=debug`.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            level: "info".to_owned(),
            format: LogFormat::Json,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// Time spent not-ready but still serving, so load balancers stop sending traffic.
    #[serde(with = "humantime_serde")]
    pub drain_delay: Duration,
    /// Hard deadline for in-flight requests and tunnels after accepting stops.
    #[serde(with = "humantime_serde")]
    pub grace_period: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            drain_delay: Duration::from_secs(5),
            grace_period: Duration::from_secs(20),
        }
    }
}

/// The SCIM service provider at `/scim/v2`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScimConfig {
    pub enabled: bool,
    /// Bearer tokens accepted at once (rotation). Prefer `token_files` or `SCIM_TOKEN`.
    pub tokens: Vec<Secret>,
    /// Files each holding one token (Kubernetes Secret volumes); re-read on reload.
    pub token_files: Vec<PathBuf>,
    /// Tokens with a name of the operator's choosing for the audit trail
    /// (`[[scim.named_tokens]] name = "entra"`, with `token_file` or `token`).
    pub named_tokens: Vec<NamedToken>,
    /// The name of each of `tokens` once loaded, for the audit trail (never the value):
    /// `tokens[0]`… for inline tokens, a token file's stem, `env` for `SCIM_TOKEN`. Filled by
    /// loading, not read from the file; see [`ScimConfig::token_name`].
    #[serde(skip)]
    pub token_names: Vec<String>,
    /// Whether `/ServiceProviderConfig`, `/Schemas`, `/ResourceTypes` need the token.
    pub discovery_requires_auth: bool,
    pub max_body_bytes: usize,
    pub max_filter_length: usize,
    /// Largest `count` honoured on list requests (`filter.maxResults`).
    pub max_results: usize,
    /// `count` used when a list request gives none.
    pub default_count: usize,
    /// Where accounts live: `chamilo` (the `[chamilo]` section) or `memory` (testing only:
    /// accounts vanish at exit). Fixed at start.
    pub directory: DirectoryKind,
    /// Whether `/readyz` waits for the SCIM backend (Chamilo checked, user index loaded).
    /// Off by default: in a sidecar, readiness gates Chamilo's own traffic, which must not
    /// stop because provisioning cannot work; SCIM answers 503 meanwhile.
    pub ready_requires_backend: bool,
    /// The SCIM base URL as identity providers reach it (`https://lms.example.org/scim/v2`),
    /// used for `Location` and `meta.location`. Without it they are built from the request's
    /// `Host` and the connection's scheme (`X-Forwarded-Proto` only from a trusted peer).
    pub base_url: Option<String>,
    /// Longest time reading a SCIM request body may take, from the end of its head: a client
    /// that sends part of a body and stops does not hold a connection and an in-flight slot.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
}

/// One `[[scim.named_tokens]]` entry: a token (inline or, better, in a file) and the name
/// the audit trail gives it.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct NamedToken {
    pub name: String,
    pub token: Option<Secret>,
    pub token_file: Option<PathBuf>,
}

/// The account store behind the SCIM engine.
#[derive(Debug, Clone, Copy, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DirectoryKind {
    #[default]
    Chamilo,
    Memory,
}

impl Default for ScimConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            tokens: Vec::new(),
            token_files: Vec::new(),
            named_tokens: Vec::new(),
            token_names: Vec::new(),
            discovery_requires_auth: true,
            max_body_bytes: 1024 * 1024,
            max_filter_length: 4096,
            max_results: 1000,
            default_count: 100,
            directory: DirectoryKind::Chamilo,
            ready_requires_backend: false,
            base_url: None,
            body_read_timeout: Duration::from_secs(30),
        }
    }
}

impl ScimConfig {
    /// The name of the token at `index` in `tokens` (`tokens[index]` when loading gave none,
    /// as for a configuration built in code).
    pub fn token_name(&self, index: usize) -> String {
        self.token_names
            .get(index)
            .cloned()
            .unwrap_or_else(|| format!("tokens[{index}]"))
    }
}

/// How configuration changes are noticed. `watch` cannot change at run time.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReloadConfig {
    /// Watch the directories of the configuration and every referenced file (inotify).
    pub watch: bool,
    /// Events within this window are handled as one.
    #[serde(with = "humantime_serde")]
    pub debounce: Duration,
    /// Re-read everything this often in any case (missed events, network file systems).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
}

impl Default for ReloadConfig {
    fn default() -> Self {
        Self {
            watch: true,
            debounce: Duration::from_millis(250),
            poll_interval: Duration::from_secs(10),
        }
    }
}

/// How the proxy reaches Chamilo's web services (REST `v2.php` and SOAP), and as whom.
///
/// Secrets may be given inline or, preferably, as files (Kubernetes Secret volumes) that are
/// re-read on reload. Either `api_key` or `password` authenticates the service account; with a
/// password the proxy calls `authenticate` at start and again when Chamilo answers
/// `Invalid API key`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChamiloConfig {
    /// Base URL for web-service calls; empty means the upstream URL.
    pub url: String,
    /// The service account: a Chamilo platform administrator.
    pub username: String,
    pub api_key: Option<Secret>,
    pub api_key_file: Option<PathBuf>,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    /// Chamilo's `security_key` (`app/config/configuration.php`), for the SOAP calls.
    pub security_key: Option<Secret>,
    pub security_key_file: Option<PathBuf>,
    /// The `ip` in the SOAP secret `sha1(ip . security_key)`. It is sent as the proxy's own
    /// `X-Forwarded-For` (Chamilo trusts that header's first entry), so any fixed token works.
    pub soap_ip: String,
    /// Send `soap_ip` as `X-Forwarded-For`; when false, `soap_ip` must be the address Chamilo
    /// sees the proxy connect from.
    pub soap_send_forwarded_for: bool,
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Deadline of one ordinary call.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Deadline of a full `get_users` listing (minutes at 100k users with extra fields).
    #[serde(with = "humantime_serde")]
    pub listing_timeout: Duration,
    /// Must stay below Chamilo's keep-alive (Apache: 5 s).
    #[serde(with = "humantime_serde")]
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
    /// Extra field holding the SCIM `userName` verbatim (also the SOAP handle).
    pub user_name_field: String,
    /// Extra field holding the SCIM `externalId`.
    pub external_id_field: String,
    /// Extra field holding, verbatim, the SCIM attributes Chamilo applies but cannot return
    /// (`preferredLanguage`, `locale`, the role).
    pub attributes_field: String,
    /// Chamilo's `login_is_email` setting (logins may hold `@`, up to 100 characters).
    pub login_is_email: bool,
    /// `userName`s Chamilo cannot store as a login: `strict` (400), `sanitize`, `local-part`.
    pub login_transform: String,
    /// SCIM `DELETE`: `deactivate`, `delete`, or `delete-or-deactivate`.
    pub deprovision: String,
    /// `auth_source` of created users: `platform` or an SSO source name.
    pub auth_source: String,
    /// Status of users without a mapped role (5 student).
    pub default_status: i64,
    /// SCIM role value (case-insensitive) → Chamilo status; empty means the built-in table.
    pub roles: std::collections::BTreeMap<String, i64>,
    /// Language tag → Chamilo language folder; empty means the built-in table.
    pub languages: std::collections::BTreeMap<String, String>,
    /// A `preferredLanguage`/`locale` tag with no entry in `languages` (neither itself nor its
    /// base language): `false` (default) keeps the tag verbatim and gives Chamilo
    /// `default_language`, with a WARN line; `true` refuses the request (400). Reloadable.
    pub refuse_unmapped_languages: bool,
    /// The Chamilo language folder an unmapped tag gets (Chamilo's own default platform
    /// language is `english`; set the site's). Reloadable.
    pub default_language: String,
    /// Logins SCIM may never change or delete (the service account is always protected).
    pub protected_logins: Vec<String>,
    /// How often the user index reloads the full listing in the background.
    #[serde(with = "humantime_serde")]
    pub index_refresh: Duration,
    /// How often a refresh lists the extra fields too (userName, externalId, attributes): one
    /// query per user and field on Chamilo, so rarely; the refreshes between list without
    /// them (see docs/chamilo.md, "Reads and the user index").
    #[serde(with = "humantime_serde")]
    pub full_refresh: Duration,
    /// Accounts `GET /Users` lists: `all` (every account but protected and anonymous ones, so
    /// that imports can link existing accounts) or `managed` (made or adopted through SCIM).
    pub list_scope: String,
    /// Classes `/Groups` lists: `all` (every class, also those made in Chamilo's UI, so that
    /// they can be adopted) or `managed` (only classes made through SCIM, which carry the
    /// proxy's line in their description).
    pub group_scope: String,
    /// At start-up, create the userName/externalId/attributes extra fields when they are missing
    /// (through a placeholder account deleted at once); when false, refuse and explain.
    pub create_extra_fields: bool,
    /// Groups whose members are enrolled in courses (`[[chamilo.enrolment]]`); reloadable.
    pub enrolment: Vec<EnrolmentConfig>,
    /// Log the enrolment changes instead of making them. On by default, so that a mapping is
    /// first seen at work (on a test group) before it enrols or unenrols anyone; reloadable.
    pub enrolment_dry_run: bool,
    /// How often the enrolment of every mapped group is compared with its courses and the
    /// missing subscriptions made (and at start-up and after a change of the mapping); `0`
    /// never. Needs a restart.
    #[serde(with = "humantime_serde")]
    pub enrolment_reconcile: Duration,
}

impl Default for ChamiloConfig {
    fn default() -> Self {
        Self {
            url: String::new(),
            username: "admin".to_owned(),
            api_key: None,
            api_key_file: None,
            password: None,
            password_file: None,
            security_key: None,
            security_key_file: None,
            soap_ip: "scim-proxy".to_owned(),
            soap_send_forwarded_for: true,
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(30),
            listing_timeout: Duration::from_secs(600),
            pool_idle_timeout: Duration::from_secs(4),
            pool_max_idle_per_host: 32,
            user_name_field: "scim_user_name".to_owned(),
            external_id_field: "scim_external_id".to_owned(),
            attributes_field: "scim_attributes".to_owned(),
            login_is_email: false,
            login_transform: "sanitize".to_owned(),
            deprovision: "deactivate".to_owned(),
            auth_source: "platform".to_owned(),
            default_status: 5,
            roles: std::collections::BTreeMap::new(),
            languages: std::collections::BTreeMap::new(),
            refuse_unmapped_languages: false,
            default_language: "english".to_owned(),
            protected_logins: vec!["admin".to_owned()],
            index_refresh: Duration::from_secs(300),
            full_refresh: Duration::from_secs(6 * 3600),
            list_scope: "all".to_owned(),
            group_scope: "all".to_owned(),
            create_extra_fields: true,
            enrolment: Vec::new(),
            enrolment_dry_run: true,
            enrolment_reconcile: Duration::from_secs(3600),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c: Config = toml::from_str("").unwrap();
        assert_eq!(c.admin.listen.ip().to_string(), "127.0.0.1");
        assert!(c.scim.enabled);
    }
}
