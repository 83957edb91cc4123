//! `chamilo-scim-proxy check-chamilo`: the preflight an administrator runs before pointing an
//! identity provider at the proxy, and again when provisioning fails.
//!
//! It makes the same calls the proxy makes at start-up ([`ChamiloClient::check_capabilities`],
//! [`ChamiloClient::missing_extra_fields`] / [`Backend::ensure_extra_fields`],
//! [`ChamiloClient::check_soap_secret`]), so that a ✓ here means the start-up check passes, plus
//! what start-up does not look at: account counts, one call's latency, whether the configured
//! languages are installed and the configured roles name Chamilo statuses.
//!
//! It is read-only unless [`Options::create_extra_fields`] is set: the language probe is an
//! `update_user_from_username` on the service account that Chamilo aborts before writing
//! anything (see [`language_installed`]). Secrets are never part of a line: every detail
//! comes from a [`ChamiloError`]'s `Display`, which holds none.

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, Instant};

use crate::chamilo::{Backend, ChamiloClient, ChamiloError};
use crate::config::Config;

/// Chamilo's user statuses (`main/inc/lib/api.lib.php`) and the name an administrator knows
/// them by. Status 6 (anonymous) is never given to a provisioned account.
const STATUSES: &[(i64, &str)] = &[
    (5, "students"),
    (1, "teachers"),
    (3, "session admins"),
    (4, "HR managers"),
    (17, "student bosses"),
    (20, "invitees"),
    (6, "anonymous"),
];

/// A call slower than this is worth a warning: each SCIM write makes two to four of them.
const SLOW_CALL: Duration = Duration::from_secs(1);

/// The extra `update_user_from_username` key of the language probe: one Chamilo does not
/// accept, so that the call aborts after checking `language` and before writing anything.
const LANGUAGE_PROBE_KEY: &str = "scim_preflight_language_probe";

/// How one check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Fine.
    Pass,
    /// Provisioning works, but something an administrator should know about.
    Warn,
    /// Provisioning will not work until this is fixed.
    Fail,
    /// Not checked: an earlier check failed.
    Skipped,
}

impl Verdict {
    fn mark(self) -> &'static str {
        match self {
            Self::Pass => "✓",
            Self::Warn => "!",
            Self::Fail => "✗",
            Self::Skipped => "-",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// What was checked, e.g. `"SOAP secret"`.
    pub name: &'static str,
    pub verdict: Verdict,
    /// What was found.
    pub detail: String,
    /// What to do about a failure or a warning.
    pub fix: Option<String>,
}

/// Every check, in the order they ran.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    /// Whether provisioning will work: no check failed. Warnings and skipped checks do not
    /// count (a check is only skipped after a failure).
    pub fn provisioning_will_work(&self) -> bool {
        !self.checks.iter().any(|c| c.verdict == Verdict::Fail)
    }

    /// The check called `name`, if it ran.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    fn push(&mut self, name: &'static str, verdict: Verdict, detail: impl Into<String>) {
        self.checks.push(Check {
            name,
            verdict,
            detail: detail.into(),
            fix: None,
        });
    }

    fn push_fix(
        &mut self,
        name: &'static str,
        verdict: Verdict,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.checks.push(Check {
            name,
            verdict,
            detail: detail.into(),
            fix: Some(fix.into()),
        });
    }

    fn skip(&mut self, names: &[&'static str], because: &str) {
        for name in names {
            self.push(name, Verdict::Skipped, format!("not checked: {because}"));
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.checks {
            writeln!(f, "{} {}: {}", c.verdict.mark(), c.name, c.detail)?;
            if let Some(fix) = &c.fix {
                writeln!(f, "    fix: {fix}")?;
            }
        }
        if self.provisioning_will_work() {
            writeln!(f, "Chamilo is ready for provisioning.")
        } else {
            let failed = self
                .checks
                .iter()
                .filter(|c| c.verdict == Verdict::Fail)
                .count();
            writeln!(
                f,
                "{failed} check(s) failed: provisioning will not work until they are fixed."
            )
        }
    }
}

/// What the preflight may do besides reading.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Create the missing extra fields now, the way the proxy does at start-up (a placeholder
    /// account created with them and deleted at once).
    pub create_extra_fields: bool,
}

/// Names of the checks, in order; tests and the guides refer to them.
pub mod names {
    pub const SETTINGS: &str = "settings";
    pub const REACH: &str = "reach Chamilo";
    pub const SERVICE_ACCOUNT: &str = "service account";
    pub const LATENCY: &str = "latency";
    pub const ADMIN: &str = "platform administrator";
    pub const WEB_SERVICES: &str = "web services version";
    pub const SOAP: &str = "SOAP secret";
    pub const ACCOUNTS: &str = "accounts";
    pub const EXTRA_FIELDS: &str = "extra fields";
    pub const LANGUAGES: &str = "languages";
    pub const ROLES: &str = "roles";
}

/// Runs every check against the Chamilo `config` points at.
pub async fn check_chamilo(config: &Config, options: Options) -> Report {
    use names::*;
    let mut report = Report::default();
    let mut chamilo = config.chamilo.clone();
    chamilo.create_extra_fields = options.create_extra_fields;
    let backend = match Backend::from_config(&chamilo, &config.upstream.url) {
        Ok(b) => b,
        Err(e) => {
            report.push_fix(
                SETTINGS,
                Verdict::Fail,
                e.to_string(),
                "correct the [chamilo] section (chamilo-scim-proxy check-config FILE explains each key)",
            );
            report.skip(
                &[
                    REACH,
                    SERVICE_ACCOUNT,
                    ADMIN,
                    WEB_SERVICES,
                    SOAP,
                    ACCOUNTS,
                    EXTRA_FIELDS,
                    LANGUAGES,
                ],
                "the settings are unusable",
            );
            roles(&mut report, config);
            return report;
        }
    };
    let url = if config.chamilo.url.is_empty() {
        config.upstream.url.as_str()
    } else {
        config.chamilo.url.as_str()
    };
    report.push(
        SETTINGS,
        Verdict::Pass,
        format!(
            "Chamilo at {url}, service account '{}'",
            config.chamilo.username
        ),
    );
    let client = backend.client.clone();

    // The first call tells reachability, the credentials, and the latency of one call.
    let started = Instant::now();
    let first = client.username_exists(&config.chamilo.username).await;
    let latency = started.elapsed();
    let after_failure = [ADMIN, WEB_SERVICES, SOAP, ACCOUNTS, EXTRA_FIELDS, LANGUAGES];
    match first {
        Ok(_) => {
            report.push(
                REACH,
                Verdict::Pass,
                format!("{url}/main/webservices/api/v2.php answers"),
            );
            report.push(
                SERVICE_ACCOUNT,
                Verdict::Pass,
                format!("'{}' is accepted", config.chamilo.username),
            );
            let ms = latency.as_secs_f64() * 1000.0;
            if latency < SLOW_CALL {
                report.push(LATENCY, Verdict::Pass, format!("one call took {ms:.0} ms"));
            } else {
                report.push_fix(
                    LATENCY,
                    Verdict::Warn,
                    format!("one call took {ms:.0} ms"),
                    "each SCIM write makes two to four Chamilo calls: check the network between the proxy and Chamilo, PHP-FPM's free workers and the database",
                );
            }
        }
        Err(e @ (ChamiloError::Unreachable { .. } | ChamiloError::Timeout { .. })) => {
            report.push_fix(
                REACH,
                Verdict::Fail,
                e.to_string(),
                "check chamilo.url (or upstream.url), that Chamilo's web server runs, and that this host may connect to it (firewall, DNS, TLS)",
            );
            report.skip(&[SERVICE_ACCOUNT], "Chamilo was not reached");
            report.skip(&after_failure, "Chamilo was not reached");
            roles(&mut report, config);
            return report;
        }
        Err(e @ ChamiloError::Unauthorized { .. }) => {
            report.push(
                REACH,
                Verdict::Pass,
                format!("{url}/main/webservices/api/v2.php answers"),
            );
            report.push_fix(
                SERVICE_ACCOUNT,
                Verdict::Fail,
                e.to_string(),
                "check chamilo.username and chamilo.api_key (Chamilo: the account's profile > API key, or Administration > Users) or chamilo.password; a rotated key needs the new one",
            );
            report.skip(&after_failure, "the service account was refused");
            roles(&mut report, config);
            return report;
        }
        Err(e) => {
            report.push_fix(
                REACH,
                Verdict::Fail,
                format!("{e}: something answers, but not Chamilo's REST web services"),
                "chamilo.url must be Chamilo's root (where /main/webservices/api/v2.php is) and the web services must be enabled (Administration > Configuration settings > Web services)",
            );
            report.skip(&[SERVICE_ACCOUNT], "Chamilo's web services did not answer");
            report.skip(&after_failure, "Chamilo's web services did not answer");
            roles(&mut report, config);
            return report;
        }
    }

    // The start-up check itself.
    match client.check_capabilities().await {
        Ok(_) => {
            report.push(
                ADMIN,
                Verdict::Pass,
                format!("'{}' is a platform administrator", config.chamilo.username),
            );
            report.push(
                WEB_SERVICES,
                Verdict::Pass,
                "the current 1.11.x REST web services (get_users with usernames and active flags, users_profiles_by_extra_field)",
            );
        }
        Err(ChamiloError::Incompatible { detail }) if detail.contains("administrator") => {
            let (found, fix) = split_fix(&detail);
            report.push_fix(ADMIN, Verdict::Fail, found, fix);
            report.skip(
                &[WEB_SERVICES, SOAP, ACCOUNTS, EXTRA_FIELDS, LANGUAGES],
                "the service account is not an administrator",
            );
            roles(&mut report, config);
            return report;
        }
        Err(ChamiloError::Incompatible { detail }) => {
            report.push(
                ADMIN,
                Verdict::Pass,
                format!("'{}' may list every account", config.chamilo.username),
            );
            let (found, fix) = split_fix(&detail);
            report.push_fix(
                WEB_SERVICES,
                Verdict::Fail,
                found,
                format!("{fix}: upgrade Chamilo, or copy main/webservices/api/v2.php and main/inc/lib/webservices/Rest.php from the 1.11.x branch"),
            );
        }
        Err(e) => {
            report.push_fix(
                ADMIN,
                Verdict::Fail,
                e.to_string(),
                "look at Chamilo's PHP error log for this call",
            );
            report.skip(&[WEB_SERVICES], "the capability check failed");
        }
    }

    soap(&mut report, &client, &backend).await;
    let counts = accounts(&mut report, &client).await;
    extra_fields(
        &mut report,
        &backend,
        &config.chamilo,
        options,
        counts.as_deref(),
    )
    .await;
    languages(&mut report, &client, config).await;
    roles(&mut report, config);
    report
}

/// Splits a start-up refusal `"what is wrong; what to do"` at its last `"; "`.
fn split_fix(detail: &str) -> (String, String) {
    match detail.rsplit_once("; ") {
        Some((found, fix)) => (found.to_owned(), fix.to_owned()),
        None => (detail.to_owned(), "see docs/chamilo.md".to_owned()),
    }
}

async fn soap(report: &mut Report, client: &ChamiloClient, backend: &Backend) {
    if !client.soap_configured() {
        report.push_fix(
            names::SOAP,
            Verdict::Warn,
            "chamilo.security_key is not set: renames (userName changes) and password changes will be refused",
            "set chamilo.security_key(_file) to $_configuration['security_key'] from Chamilo's app/config/configuration.php",
        );
        return;
    }
    match client
        .check_soap_secret(&backend.lookup.fields.user_name)
        .await
    {
        Ok(()) => report.push(
            names::SOAP,
            Verdict::Pass,
            "accepted (a WSEditUserCredentials that changes no account)",
        ),
        Err(e @ ChamiloError::Unauthorized { .. }) => report.push_fix(
            names::SOAP,
            Verdict::Fail,
            e.to_string(),
            "chamilo.security_key must be $_configuration['security_key'] from app/config/configuration.php; keep chamilo.soap_send_forwarded_for = true, or set chamilo.soap_ip to the address Chamilo sees this host connect from",
        ),
        Err(e) => report.push_fix(
            names::SOAP,
            Verdict::Fail,
            e.to_string(),
            "check that /main/webservices/registration.soap.php is reachable from this host and PHP's soap extension is installed",
        ),
    }
}

/// Counts accounts per status; `None` when the listing failed. One `get_users` per status.
async fn accounts(report: &mut Report, client: &ChamiloClient) -> Option<Vec<(i64, usize)>> {
    let mut counts = Vec::new();
    let mut inactive = 0usize;
    for (status, _) in STATUSES {
        match client.get_users(Some(*status), &[]).await {
            Ok(rows) => {
                inactive += rows.iter().filter(|u| !u.active).count();
                counts.push((*status, rows.len()));
            }
            Err(e) => {
                report.push_fix(
                    names::ACCOUNTS,
                    Verdict::Fail,
                    e.to_string(),
                    "the proxy lists accounts to build its index: look at Chamilo's PHP error log (memory_limit, max_execution_time) for get_users",
                );
                return None;
            }
        }
    }
    let total: usize = counts.iter().map(|(_, n)| n).sum();
    let per_status: Vec<String> = counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(status, n)| {
            let name = STATUSES
                .iter()
                .find(|(s, _)| s == status)
                .map_or("?", |(_, name)| name);
            format!("{n} {name}")
        })
        .collect();
    report.push(
        names::ACCOUNTS,
        Verdict::Pass,
        format!(
            "{total} ({}), {inactive} inactive",
            if per_status.is_empty() {
                "none".to_owned()
            } else {
                per_status.join(", ")
            }
        ),
    );
    Some(counts)
}

async fn extra_fields(
    report: &mut Report,
    backend: &Backend,
    chamilo: &crate::config::ChamiloConfig,
    options: Options,
    counts: Option<&[(i64, usize)]>,
) {
    let fields = backend.lookup.fields.all();
    let listed = fields.join(", ");
    // `missing_extra_fields` can only tell from an anonymous or teacher account's row.
    let can_tell = counts.is_none_or(|c| c.iter().any(|(s, n)| (*s == 6 || *s == 1) && *n > 0));
    let missing = match backend.client.missing_extra_fields(&fields).await {
        Ok(m) => m,
        Err(e) => {
            report.push_fix(
                names::EXTRA_FIELDS,
                Verdict::Fail,
                e.to_string(),
                "look at Chamilo's PHP error log for get_users",
            );
            return;
        }
    };
    if missing.is_empty() {
        if can_tell {
            report.push(
                names::EXTRA_FIELDS,
                Verdict::Pass,
                format!("{listed} exist"),
            );
        } else {
            report.push_fix(
                names::EXTRA_FIELDS,
                Verdict::Warn,
                format!("cannot tell whether {listed} exist: Chamilo has no anonymous or teacher account to list them with"),
                "none needed: the first account created through SCIM creates them",
            );
        }
        return;
    }
    let missing_list = missing.join(", ");
    if options.create_extra_fields {
        match backend.ensure_extra_fields().await {
            Ok(()) => report.push(
                names::EXTRA_FIELDS,
                Verdict::Pass,
                format!("created {missing_list}"),
            ),
            Err(e) => report.push_fix(
                names::EXTRA_FIELDS,
                Verdict::Fail,
                e.to_string(),
                "create them by hand: Administration > Users > Profiling, a text field with that variable name, not visible or changeable by users",
            ),
        }
    } else if chamilo.create_extra_fields {
        report.push_fix(
            names::EXTRA_FIELDS,
            Verdict::Warn,
            format!("{missing_list} do not exist; the proxy creates them at start-up (chamilo.create_extra_fields = true)"),
            "nothing, or create them now: check-chamilo --create-extra-fields",
        );
    } else {
        report.push_fix(
            names::EXTRA_FIELDS,
            Verdict::Fail,
            format!("{missing_list} do not exist and chamilo.create_extra_fields = false"),
            "run check-chamilo --create-extra-fields, or create them in Administration > Users > Profiling (text fields with those variable names, not visible or changeable by users)",
        );
    }
}

/// Whether Chamilo has the language folder `folder` installed.
///
/// `update_user_from_username` handles its keys in order: `language` is checked when reached
/// (`Language unavailable.`), and a key it does not know aborts the call (`Unsupported update.`)
/// before any column is written. So `language=<folder>` followed by an unknown key tells
/// whether the language exists and changes nothing (no `extra` key is sent, the only kind
/// saved before the end).
pub async fn language_installed(
    client: &ChamiloClient,
    service_account: &str,
    folder: &str,
) -> Result<bool, ChamiloError> {
    const ACTION: &str = "update_user_from_username";
    let outcome = client
        .call(
            ACTION,
            &[
                ("loginname", service_account),
                ("language", folder),
                (LANGUAGE_PROBE_KEY, "1"),
            ],
        )
        .await;
    match outcome {
        Err(ChamiloError::Rejected { message, .. }) if message.starts_with("Language unavailable") => {
            Ok(false)
        }
        Err(ChamiloError::Rejected { message, .. })
            if message.contains("Unsupported update") && message.contains(LANGUAGE_PROBE_KEY) =>
        {
            Ok(true)
        }
        Err(e) => Err(e),
        Ok(_) => Err(ChamiloError::Unexpected {
            action: ACTION.into(),
            detail: format!(
                "Chamilo accepted the unknown key {LANGUAGE_PROBE_KEY}; this is not the 1.11.x update_user_from_username"
            ),
        }),
    }
}

async fn languages(report: &mut Report, client: &ChamiloClient, config: &Config) {
    let mapping = match crate::chamilo::mapping::ChamiloMapping::from_config(&config.chamilo) {
        Ok(m) => m,
        Err(e) => {
            report.push(names::LANGUAGES, Verdict::Fail, e.to_string());
            return;
        }
    };
    let configured = !config.chamilo.languages.is_empty();
    let fallback = config.chamilo.default_language.trim();
    let mut folders: BTreeSet<&str> = mapping.languages.iter().map(|(_, f)| f.as_str()).collect();
    // Unmapped tags fall back to it (unless refused): Chamilo refuses an update naming a
    // folder it does not have.
    if !config.chamilo.refuse_unmapped_languages && !fallback.is_empty() {
        folders.insert(fallback);
    }
    let mut present = Vec::new();
    let mut absent = Vec::new();
    for folder in folders {
        match language_installed(client, &config.chamilo.username, folder).await {
            Ok(true) => present.push(folder),
            Ok(false) => absent.push(folder),
            Err(e) => {
                report.push_fix(
                    names::LANGUAGES,
                    Verdict::Warn,
                    format!("could not check '{folder}': {e}"),
                    "check the languages in Administration > Languages by hand",
                );
                return;
            }
        }
    }
    if absent.is_empty() {
        report.push(
            names::LANGUAGES,
            Verdict::Pass,
            format!("installed: {}", present.join(", ")),
        );
        return;
    }
    if absent.contains(&fallback) && !config.chamilo.refuse_unmapped_languages {
        report.push_fix(
            names::LANGUAGES,
            Verdict::Fail,
            format!(
                "chamilo.default_language '{fallback}' (given to users whose language tag has no entry) is not installed in this Chamilo"
            ),
            "make it available in Administration > Languages, or set chamilo.default_language to an installed folder (english, french…)",
        );
        return;
    }
    let tags: Vec<String> = mapping
        .languages
        .iter()
        .filter(|(_, f)| absent.contains(&f.as_str()))
        .map(|(t, f)| format!("{t} → {f}"))
        .collect();
    if configured {
        report.push_fix(
            names::LANGUAGES,
            Verdict::Fail,
            format!("chamilo.languages maps to folders this Chamilo does not have: {}", tags.join(", ")),
            "make them available in Administration > Languages, or correct chamilo.languages (values are Chamilo folder names such as english, french)",
        );
    } else {
        report.push_fix(
            names::LANGUAGES,
            Verdict::Warn,
            format!(
                "the built-in table names languages this Chamilo does not have: {}; users with those tags will be refused on update",
                tags.join(", ")
            ),
            "make them available in Administration > Languages, or set chamilo.languages to the ones you use",
        );
    }
}

/// The configured roles and the default status must be Chamilo statuses a provisioned
/// account can have. Needs no call.
fn roles(report: &mut Report, config: &Config) {
    let valid = |s: i64| s != 6 && STATUSES.iter().any(|(status, _)| *status == s);
    let mut bad: Vec<String> = config
        .chamilo
        .roles
        .iter()
        .filter(|(_, s)| !valid(**s))
        .map(|(role, s)| format!("{role} → {s}"))
        .collect();
    if !valid(config.chamilo.default_status) {
        bad.push(format!(
            "default_status = {}",
            config.chamilo.default_status
        ));
    }
    if bad.is_empty() {
        let which = if config.chamilo.roles.is_empty() {
            "the built-in table (student, teacher, session_admin, hr_manager, student_boss, invitee)".to_owned()
        } else {
            config
                .chamilo
                .roles
                .iter()
                .map(|(r, s)| format!("{r} → {s}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        report.push(names::ROLES, Verdict::Pass, which);
    } else {
        report.push_fix(
            names::ROLES,
            Verdict::Fail,
            format!("not a Chamilo status: {}", bad.join(", ")),
            "use 5 (student), 1 (teacher), 3 (session admin), 4 (HR manager), 17 (student boss) or 20 (invitee)",
        );
    }
}
