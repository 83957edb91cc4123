//! The target of the end-to-end suite (`tests/e2e_chamilo.rs`, `tests/e2e_chamilo_tools.rs`)
//! and what the tests do on Chamilo's side of the proxy, "behind its back".
//!
//! Without `CHAMILO_E2E_URL` every test starts its own in-process stand-in. With it, the tests
//! run against that Chamilo instead, reached the way the proxy reaches it: by URL and
//! credentials only.
//!
//! | variable | meaning |
//! |---|---|
//! | `CHAMILO_E2E_URL` | base URL of Chamilo (`https://chamilo.example`); unset: the stand-in |
//! | `CHAMILO_E2E_USERNAME` | the service account, a platform administrator (default `admin`) |
//! | `CHAMILO_E2E_PASSWORD`, `CHAMILO_E2E_API_KEY` | its password and/or REST api key (one is enough) |
//! | `CHAMILO_E2E_SECURITY_KEY` | Chamilo's SOAP `security_key`; without it, tests that rename are skipped |
//! | `CHAMILO_E2E_SOAP_IP` | the `ip` of the SOAP secret, sent as `X-Forwarded-For` (default `scim-proxy`, as the proxy) |
//! | `CHAMILO_E2E_COURSE_ID`, `CHAMILO_E2E_COURSE_CODE` | an existing course the enrolment test may subscribe its accounts to (they leave it at the end); unset: that test is skipped |
//!
//! Names: every login, userName, externalId and e-mail a test makes begins with
//! `e2e-<run>-<tag>-` in both modes (`<run>`: 6 base-36 digits of the start time and 2 random
//! ones; `<tag>`: the test). Clean-up, against an external Chamilo: when a test's
//! [`ChamiloSide`] is dropped — also when an assertion failed — every account the test created
//! or that carries its prefix is hard-deleted (`delete_user`); the first test of a run deletes
//! what earlier runs left behind (prefix `e2e-`, older than [`LEFTOVER_AGE`]).
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chamilo_scim_proxy::standin::{NewUser, Standin, StandinConfig, StandinHandle};
use serde_json::Value;

use crate::common::{config_text, ProxyProcess};
use crate::scim_support::{TestServer, TOKEN};

/// What every name the suite makes begins with.
pub const PREFIX: &str = "e2e-";
/// Accounts of other runs younger than this are left alone (another run may be using them).
pub const LEFTOVER_AGE: Duration = Duration::from_secs(3600);
/// The proxy's default extra field holding the SCIM userName (the tests keep the default).
pub const USER_NAME_FIELD: &str = "scim_user_name";
/// What a soft-deleted account's userName field begins with.
pub const TOMBSTONE: &str = "scim-deprovisioned:";
/// The extra field this harness uses as the SOAP handle to rename an account directly.
pub const HANDLE_FIELD: &str = "e2e_handle";

const REST_PATH: &str = "/main/webservices/api/v2.php";
const SOAP_PATH: &str = "/main/webservices/registration.soap.php";

/// A Chamilo reached by URL and credentials.
#[derive(Debug, Clone)]
pub struct External {
    pub url: String,
    pub username: String,
    pub password: Option<String>,
    pub api_key: Option<String>,
    pub security_key: Option<String>,
    pub soap_ip: Option<String>,
}

/// Where the suite runs.
#[derive(Debug, Clone)]
pub enum Target {
    /// A fresh in-process stand-in per test (the default).
    Standin,
    /// The Chamilo named by `CHAMILO_E2E_*`.
    External(External),
}

impl Target {
    fn from_env() -> Result<Self, String> {
        let var = |k: &str| {
            std::env::var(k)
                .ok()
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let Some(url) = var("CHAMILO_E2E_URL") else {
            return Ok(Target::Standin);
        };
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "CHAMILO_E2E_URL={url:?}: expected Chamilo's base URL, http:// or https://"
            ));
        }
        let external = External {
            url: url.trim_end_matches('/').to_owned(),
            username: var("CHAMILO_E2E_USERNAME").unwrap_or_else(|| "admin".to_owned()),
            password: var("CHAMILO_E2E_PASSWORD"),
            api_key: var("CHAMILO_E2E_API_KEY"),
            security_key: var("CHAMILO_E2E_SECURITY_KEY"),
            soap_ip: var("CHAMILO_E2E_SOAP_IP"),
        };
        if external.password.is_none() && external.api_key.is_none() {
            return Err(format!(
                "CHAMILO_E2E_URL={url} is set, but neither CHAMILO_E2E_PASSWORD nor CHAMILO_E2E_API_KEY: \
                 the suite needs the service account's ({}) password or REST api key",
                external.username
            ));
        }
        Ok(Target::External(external))
    }
}

/// The target, read from the environment once per test binary; announced on stderr (not
/// captured by the test harness) so every run shows which mode it was.
pub fn target() -> &'static Target {
    static TARGET: OnceLock<Target> = OnceLock::new();
    TARGET.get_or_init(|| {
        let target = Target::from_env().unwrap_or_else(|e| panic!("{e}"));
        match &target {
            Target::Standin => say(
                "e2e against the built-in Chamilo stand-in (set CHAMILO_E2E_URL to test a real Chamilo: README, Testing)",
            ),
            Target::External(e) => say(&format!(
                "e2e against external Chamilo at {} (service account {}, run {PREFIX}{}-, SOAP {})",
                e.url,
                e.username,
                run_id(),
                if e.security_key.is_some() {
                    "security key given"
                } else {
                    "not configured: tests that rename accounts or set passwords are skipped"
                }
            )),
        }
        target
    })
}

/// Whether the suite runs against an external Chamilo.
pub fn is_external() -> bool {
    matches!(target(), Target::External(_))
}

/// One line on stderr that the test harness does not capture.
pub fn say(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// For tests that need the stand-in's internals: true (and one line saying why) when the
/// suite runs against an external Chamilo; the test then returns.
pub fn skip_on_external(test: &str, why: &str) -> bool {
    let skip = is_external();
    if skip {
        say(&format!(
            "{test}: skipped against an external Chamilo: {why}"
        ));
    }
    skip
}

/// For tests that rename accounts or set passwords (SOAP): true (and why) when the external
/// Chamilo's security key was not given.
pub fn skip_without_soap(test: &str, why: &str) -> bool {
    let skip = matches!(target(), Target::External(e) if e.security_key.is_none());
    if skip {
        say(&format!(
            "{test}: skipped against an external Chamilo without CHAMILO_E2E_SECURITY_KEY: {why}"
        ));
    }
    skip
}

/// This run's id: 6 base-36 digits of the start time (seconds), then 2 random ones.
pub fn run_id() -> &'static str {
    static RUN: OnceLock<String> = OnceLock::new();
    RUN.get_or_init(|| {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut id = base36(secs, 6);
        id.push_str(&base36(u64::from(rand::random::<u16>()), 2));
        id
    })
}

fn base36(mut n: u64, width: usize) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(n % 36) as usize];
        n /= 36;
    }
    String::from_utf8(out).unwrap_or_default()
}

/// How long ago the run `run` started, from its id; `None` if it is not one of ours.
fn run_age(run: &str) -> Option<Duration> {
    if run.len() != 8 {
        return None;
    }
    let secs = u64::from_str_radix(run.get(..6)?, 36).ok()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(now.saturating_sub(secs)))
}

/// The run an account belongs to, from its login or userName field (`e2e-<run>-…`).
fn run_of(a: &Account) -> Option<String> {
    [Some(a.login.as_str()), a.user_name()]
        .into_iter()
        .flatten()
        .find_map(|name| {
            let lower = name.to_ascii_lowercase();
            let rest = lower.strip_prefix(PREFIX)?;
            Some(rest.split('-').next()?.to_owned())
        })
}

/// Names unique to one run and one test.
#[derive(Debug, Clone)]
pub struct Names {
    /// `e2e-<run>-<tag>-`.
    pub prefix: String,
}

impl Names {
    pub fn new(tag: &str) -> Self {
        Self {
            prefix: format!("{PREFIX}{}-{tag}-", run_id()),
        }
    }

    /// `value` made unique: `e2e-<run>-<tag>-value`.
    pub fn of(&self, value: &str) -> String {
        format!("{}{value}", self.prefix)
    }

    /// Whether the account carries this prefix (in its login or its userName field, live or
    /// tombstoned), case-insensitively.
    pub fn owns(&self, a: &Account) -> bool {
        [Some(a.login.as_str()), a.user_name()]
            .into_iter()
            .flatten()
            .any(|name| name.to_ascii_lowercase().starts_with(&self.prefix))
    }
}

/// Whether an account was made by some run of this suite.
pub fn is_e2e_account(a: &Account) -> bool {
    run_of(a).is_some()
}

/// One Chamilo account as the web services show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: u64,
    pub login: String,
    pub firstname: Option<String>,
    pub lastname: String,
    pub email: String,
    pub active: i64,
    /// The extra fields asked for; "" when the account has no value.
    pub extra: BTreeMap<String, String>,
}

impl Account {
    /// The userName field with a tombstone removed, when it was asked for and is set.
    pub fn user_name(&self) -> Option<&str> {
        let v = self.extra.get(USER_NAME_FIELD)?;
        let v = v.strip_prefix(TOMBSTONE).unwrap_or(v);
        (!v.is_empty()).then_some(v)
    }

    fn from_json(v: &Value, fields: &[&str]) -> Option<Self> {
        let int = |v: &Value| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        };
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        Some(Self {
            id: u64::try_from(int(&v["id"])?).ok()?,
            login: text(&v["username"]),
            firstname: v["firstname"].as_str().map(str::to_owned),
            lastname: text(&v["lastname"]),
            email: text(&v["email"]),
            active: int(&v["active"]).unwrap_or(0),
            extra: fields
                .iter()
                .map(|f| ((*f).to_owned(), text(&v[*f])))
                .collect(),
        })
    }
}

/// What the proxy under test is given: Chamilo's URL and the service account's credentials.
#[derive(Debug, Clone)]
pub struct Creds {
    pub url: String,
    pub username: String,
    pub api_key: Option<String>,
    pub password: Option<String>,
    pub security_key: Option<String>,
    pub soap_ip: Option<String>,
    /// The REST key the harness itself uses (given, or obtained with the password).
    pub key: String,
}

/// A TOML basic string (JSON's escapes are a subset of TOML's).
pub fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// The `[chamilo]` lines for `creds`, without the api key or password.
pub fn chamilo_lines(creds: &Creds) -> String {
    let mut lines = format!("username = {}\n", toml_str(&creds.username));
    if let Some(k) = &creds.security_key {
        lines.push_str(&format!("security_key = {}\n", toml_str(k)));
    }
    if let Some(ip) = &creds.soap_ip {
        lines.push_str(&format!("soap_ip = {}\n", toml_str(ip)));
    }
    lines
}

/// The configuration of a binary in front of the target; `chamilo_keys` go into `[chamilo]`.
/// The proxy gets what a real deployment would: the URL and the given api key and/or password.
pub fn proxy_config(creds: &Creds, chamilo_keys: &str) -> String {
    let mut auth = String::new();
    if let Some(k) = &creds.api_key {
        auth.push_str(&format!("api_key = {}\n", toml_str(k)));
    }
    if let Some(p) = &creds.password {
        auth.push_str(&format!("password = {}\n", toml_str(p)));
    }
    config_text(
        "",
        &format!(
            "[upstream]\nurl = {url}\n\n[scim]\ntokens = [\"{TOKEN}\"]\n\n[chamilo]\n{lines}{auth}{chamilo_keys}\n",
            url = toml_str(&creds.url),
            lines = chamilo_lines(creds),
        ),
    )
}

/// Starts the binary in front of the target and waits until SCIM stops answering 503.
pub async fn start_proxy(
    creds: &Creds,
    chamilo_keys: &str,
) -> (ProxyProcess, TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("proxy.toml");
    std::fs::write(&file, proxy_config(creds, chamilo_keys)).unwrap();
    let proxy = tokio::task::spawn_blocking(move || ProxyProcess::start(&file, &[]))
        .await
        .unwrap();
    let scim = TestServer::at(proxy.url("/scim/v2"));
    scim.wait_until_ready(Duration::from_secs(30), || proxy.logs().join("\n"))
        .await;
    (proxy, scim, dir)
}

/// A random lower-case hex string of `n` bytes.
fn random_hex(n: usize) -> String {
    (0..n)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

/// Chamilo as the tests see it from behind the proxy: the stand-in's state, or an external
/// Chamilo's web services called with the service account.
pub struct ChamiloSide {
    kind: Kind,
    pub names: Names,
    created: Mutex<BTreeSet<u64>>,
}

enum Kind {
    Standin(StandinHandle),
    External(Rest),
}

impl ChamiloSide {
    /// A fresh stand-in, or the external Chamilo; `tag` (short, `[a-z0-9]`) names the test's
    /// accounts.
    pub async fn new(tag: &str) -> Self {
        let kind = match target() {
            Target::Standin => Kind::Standin(
                Standin::start(StandinConfig::default())
                    .await
                    .expect("start the stand-in"),
            ),
            Target::External(e) => Kind::External(Rest::connect(e).await),
        };
        Self {
            kind,
            names: Names::new(tag),
            created: Mutex::new(BTreeSet::new()),
        }
    }

    /// The stand-in, when the suite runs against it.
    pub fn standin(&self) -> Option<&StandinHandle> {
        match &self.kind {
            Kind::Standin(s) => Some(s),
            Kind::External(_) => None,
        }
    }

    pub fn creds(&self) -> Creds {
        match &self.kind {
            Kind::Standin(s) => Creds {
                url: s.base_url.clone(),
                username: s.admin_username.clone(),
                api_key: Some(s.admin_api_key.clone()),
                password: None,
                security_key: Some(s.security_key.clone()),
                soap_ip: None,
                key: s.admin_api_key.clone(),
            },
            Kind::External(r) => Creds {
                url: r.cfg.url.clone(),
                username: r.cfg.username.clone(),
                api_key: r.given.api_key.clone(),
                password: r.given.password.clone(),
                security_key: r.cfg.security_key.clone(),
                soap_ip: r.given.soap_ip.clone(),
                key: r.cfg.key.clone(),
            },
        }
    }

    /// `value` made unique to this run and test.
    pub fn name(&self, value: &str) -> String {
        self.names.of(value)
    }

    /// Remembers an account to delete at the end (against an external Chamilo).
    pub fn track(&self, id: u64) {
        self.created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id);
    }

    /// Makes a class directly in Chamilo (as its UI would: no SCIM line in the description),
    /// named `<prefix><local>` (removed with the test's accounts), with `members`.
    pub async fn make_class(&self, local: &str, members: &[u64]) -> u64 {
        let name = self.name(local);
        let data = self
            .rest("add_group", &[("name", name.as_str()), ("description", "")])
            .await
            .unwrap_or_else(|e| panic!("add_group {name}: {e}"));
        let id = match &data {
            Value::Array(a) => a.first().and_then(id_of),
            v => id_of(&v["id"]),
        }
        .unwrap_or_else(|| panic!("add_group {name} answered {data}"));
        let g = id.to_string();
        for m in members {
            let u = m.to_string();
            self.rest(
                "add_group_sub_user",
                &[
                    ("group_id", g.as_str()),
                    ("user_id", u.as_str()),
                    ("role", "2"),
                ],
            )
            .await
            .unwrap_or_else(|e| panic!("add_group_sub_user {g} {u}: {e}"));
        }
        id
    }

    /// Creates an account directly in Chamilo (not through SCIM): login `<prefix><local>`,
    /// e-mail `<login>@example.org`, a student with a random password.
    pub async fn create_direct(&self, local: &str, firstname: &str, lastname: &str) -> u64 {
        let login = self.name(local);
        let email = format!("{login}@example.org");
        let id = match &self.kind {
            Kind::Standin(s) => s
                .state()
                .insert_user(NewUser {
                    username: login.clone(),
                    firstname: Some(firstname.to_owned()),
                    lastname: lastname.to_owned(),
                    email,
                    password: random_hex(16),
                    status: 5,
                    language: "english".into(),
                    auth_source: "platform".into(),
                    ..NewUser::default()
                })
                .unwrap_or_else(|| panic!("direct creation of {login}: the login is taken")),
            Kind::External(r) => r
                .create(&login, firstname, lastname, &email)
                .await
                .unwrap_or_else(|e| panic!("direct creation of {login}: {e}")),
        };
        self.track(id);
        id
    }

    /// `n` accounts created directly (`<prefix>seed1`…), before a proxy starts.
    pub async fn seed(&self, n: usize) -> Vec<u64> {
        let mut ids = Vec::with_capacity(n);
        for i in 1..=n {
            ids.push(
                self.create_direct(&format!("seed{i}"), &format!("Seed{i}"), "Seed")
                    .await,
            );
        }
        ids
    }

    /// Every account (the anonymous one included), with the extra fields `fields`.
    pub async fn accounts(&self, fields: &[&str]) -> Vec<Account> {
        match &self.kind {
            Kind::Standin(s) => s
                .state()
                .users()
                .map(|u| Account {
                    id: u.id,
                    login: u.username.clone(),
                    firstname: u.firstname.clone(),
                    lastname: u.lastname.clone(),
                    email: u.email.clone(),
                    active: u.active,
                    extra: fields
                        .iter()
                        .map(|f| {
                            let v = u.extra.get(*f).cloned().flatten().unwrap_or_default();
                            ((*f).to_owned(), v)
                        })
                        .collect(),
                })
                .collect(),
            Kind::External(r) => r
                .list(fields)
                .await
                .unwrap_or_else(|e| panic!("listing Chamilo's accounts: {e}")),
        }
    }

    /// One account, or `None` when Chamilo has no account with this id.
    pub async fn user(&self, id: u64) -> Option<Account> {
        self.accounts(&[]).await.into_iter().find(|a| a.id == id)
    }

    /// One account that must exist.
    pub async fn account(&self, id: u64) -> Account {
        self.user(id)
            .await
            .unwrap_or_else(|| panic!("Chamilo has no account {id}"))
    }

    /// The accounts carrying this test's prefix (live, deactivated or tombstoned).
    pub async fn own_accounts(&self) -> Vec<Account> {
        self.accounts(&[USER_NAME_FIELD])
            .await
            .into_iter()
            .filter(|a| self.names.owns(a))
            .collect()
    }

    /// The highest account id.
    pub async fn max_id(&self) -> u64 {
        self.accounts(&[])
            .await
            .iter()
            .map(|a| a.id)
            .max()
            .unwrap_or(0)
    }

    /// Activates or deactivates an account directly.
    pub async fn set_active(&self, id: u64, active: bool) {
        match &self.kind {
            Kind::Standin(s) => assert!(s.state().set_active(id, active), "no account {id}"),
            Kind::External(r) => {
                let a = self.account(id).await;
                r.update(&a.login, &[("active", if active { "1" } else { "0" })])
                    .await
                    .unwrap_or_else(|e| panic!("setting active={active} on {a:?}: {e}"));
            }
        }
    }

    /// Renames an account's login directly. Against an external Chamilo this is SOAP
    /// `WSEditUserCredentials`, which refuses inactive accounts: an inactive one is activated
    /// for the rename and deactivated again (all before the proxy looks).
    pub async fn rename(&self, id: u64, new_login: &str) {
        match &self.kind {
            Kind::Standin(s) => assert!(s.state().rename_user(id, new_login), "no account {id}"),
            Kind::External(r) => {
                let a = self.account(id).await;
                let handle = random_hex(12);
                let mut params = vec![
                    ("extra[0][field_name]", HANDLE_FIELD),
                    ("extra[0][field_value]", handle.as_str()),
                ];
                if a.active != 1 {
                    params.push(("active", "1"));
                }
                let fail = |e: String| panic!("renaming {a:?} to {new_login}: {e}");
                r.update(&a.login, &params).await.unwrap_or_else(fail);
                r.edit_credentials(HANDLE_FIELD, &handle, new_login)
                    .await
                    .unwrap_or_else(fail);
                if a.active != 1 {
                    r.update(new_login, &[("active", "0")])
                        .await
                        .unwrap_or_else(fail);
                }
            }
        }
    }

    /// Hard-deletes an account directly.
    pub async fn delete(&self, id: u64) {
        match &self.kind {
            Kind::Standin(s) => assert!(s.state().remove_user(id), "no account {id}"),
            Kind::External(r) => r
                .delete(id)
                .await
                .unwrap_or_else(|e| panic!("deleting account {id}: {e}")),
        }
    }

    /// The language Chamilo stored; `None` against an external Chamilo, whose web services
    /// cannot read it.
    pub async fn language(&self, id: u64) -> Option<String> {
        match &self.kind {
            Kind::Standin(s) => Some(
                s.state()
                    .user(id)
                    .unwrap_or_else(|| panic!("no account {id}"))
                    .language
                    .clone(),
            ),
            Kind::External(_) => None,
        }
    }
}

/// An id Chamilo may send as a number or as a string.
fn id_of(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str()?.parse().ok())
}

impl ChamiloSide {
    /// A REST call with the service account, whichever Chamilo this is (the stand-in is
    /// reached over HTTP too, so both modes read classes the same way).
    async fn rest(&self, action: &str, params: &[(&str, &str)]) -> Result<Value, String> {
        let c = self.creds();
        let mut all = vec![
            ("username", c.username.as_str()),
            ("api_key", c.key.as_str()),
        ];
        all.extend_from_slice(params);
        post(
            &http_client(),
            &format!("{}{REST_PATH}", c.url),
            action,
            &all,
        )
        .await
    }

    /// A course the test may enrol its accounts in: a new one in the stand-in; against an
    /// external Chamilo the existing course named by `CHAMILO_E2E_COURSE_ID` and
    /// `CHAMILO_E2E_COURSE_CODE` (the suite does not create courses there: no web service
    /// deletes them), or `None` with a line saying the test is skipped.
    pub async fn course_for_tests(&self, test: &str) -> Option<(u64, String)> {
        match &self.kind {
            Kind::Standin(s) => {
                let code = format!("E2E{}", random_hex(3).to_uppercase());
                let id = s.state().insert_course(&code, "E2E course")?;
                Some((id, code))
            }
            Kind::External(_) => {
                let id = std::env::var("CHAMILO_E2E_COURSE_ID")
                    .ok()
                    .and_then(|v| v.trim().parse().ok());
                let code = std::env::var("CHAMILO_E2E_COURSE_CODE").ok();
                match (id, code) {
                    (Some(id), Some(code)) => Some((id, code.trim().to_owned())),
                    _ => {
                        say(&format!(
                            "{test}: skipped against an external Chamilo without CHAMILO_E2E_COURSE_ID and CHAMILO_E2E_COURSE_CODE (a course the tests may enrol accounts in)"
                        ));
                        None
                    }
                }
            }
        }
    }

    /// The users subscribed to course `id` and their status (1 teacher, 5 student), as
    /// `get_users_subscribed_to_course` lists them.
    pub async fn course_users(&self, id: u64) -> Vec<(u64, i64)> {
        let id = id.to_string();
        let data = self
            .rest("get_users_subscribed_to_course", &[("course", id.as_str())])
            .await
            .unwrap_or_else(|e| panic!("get_users_subscribed_to_course {id}: {e}"));
        let mut users: Vec<(u64, i64)> = data
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| Some((id_of(&u["user_id"])?, u["status_rel"].as_i64().unwrap_or(0))))
            .collect();
        users.sort_unstable();
        users
    }

    /// The class `id` as Chamilo holds it: its name and its members' ids, sorted; `None` when
    /// there is no such class.
    pub async fn class(&self, id: u64) -> Option<(String, Vec<u64>)> {
        let groups = self
            .rest("get_groups", &[("type", "0")])
            .await
            .unwrap_or_else(|e| panic!("get_groups: {e}"));
        let name = groups
            .as_array()?
            .iter()
            .find(|g| id_of(&g["id"]) == Some(id))?["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let id = id.to_string();
        let members = self
            .rest("get_group_sub_users", &[("id", id.as_str())])
            .await
            .unwrap_or_else(|e| panic!("get_group_sub_users {id}: {e}"));
        let mut ids: Vec<u64> = match &members {
            Value::Object(m) => m.keys().filter_map(|k| k.parse().ok()).collect(),
            _ => Vec::new(),
        };
        ids.sort_unstable();
        Some((name, ids))
    }
}

/// Against an external Chamilo: deletes what the test made, however it ended.
impl Drop for ChamiloSide {
    fn drop(&mut self) {
        let Kind::External(rest) = &self.kind else {
            return;
        };
        let (cfg, given) = (rest.cfg.clone(), rest.given.clone());
        let ids = std::mem::take(&mut *self.created.lock().unwrap_or_else(|p| p.into_inner()));
        let names = self.names.clone();
        // A thread with its own runtime: Drop cannot await, and may run while unwinding.
        let outcome = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async move {
                let rest = Rest::new(cfg, given);
                let classes = rest.delete_classes_named(&names.prefix).await;
                let accounts = rest
                    .delete_where(|a| ids.contains(&a.id) || names.owns(a))
                    .await;
                classes.and(accounts)
            })
        })
        .join();
        match outcome {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => say(&format!("clean-up of {}*: {e}", self.names.prefix)),
            Err(_) => say(&format!("clean-up of {}*: panicked", self.names.prefix)),
        }
    }
}

/// The service account's session with an external Chamilo.
#[derive(Debug, Clone)]
struct RestConfig {
    url: String,
    username: String,
    key: String,
    security_key: Option<String>,
    soap_ip: String,
}

struct Rest {
    cfg: RestConfig,
    /// What the environment gave (for the proxy's configuration).
    given: External,
    http: reqwest::Client,
}

/// The service account's key, checked once per run; leftovers of earlier runs are removed
/// on the way.
static SESSION: tokio::sync::OnceCell<RestConfig> = tokio::sync::OnceCell::const_new();

fn http_client() -> reqwest::Client {
    // reqwest is built without a default TLS provider.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(120))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client")
}

/// At most this much of an unexpected answer goes into a message.
fn excerpt(text: &str) -> String {
    let mut s: String = text.chars().take(600).collect();
    if s.len() < text.len() {
        s.push('…');
    }
    s
}

impl Rest {
    fn new(cfg: RestConfig, given: External) -> Self {
        Self {
            cfg,
            given,
            http: http_client(),
        }
    }

    /// The session for `e`: authenticated, checked and swept once per run.
    async fn connect(e: &External) -> Self {
        let cfg = SESSION
            .get_or_try_init(|| Self::start_session(e))
            .await
            .unwrap_or_else(|msg| panic!("{msg}"))
            .clone();
        Self::new(cfg, e.clone())
    }

    async fn start_session(e: &External) -> Result<RestConfig, String> {
        let http = http_client();
        let key = match &e.api_key {
            Some(k) => k.clone(),
            None => {
                let password = e.password.as_deref().unwrap_or_default();
                let data = post(
                    &http,
                    &format!("{}{REST_PATH}", e.url),
                    "authenticate",
                    &[("username", e.username.as_str()), ("password", password)],
                )
                .await
                .map_err(|m| {
                    format!(
                        "CHAMILO_E2E_URL={}: cannot authenticate the service account {} with CHAMILO_E2E_PASSWORD: {m}",
                        e.url, e.username
                    )
                })?;
                data["apiKey"]
                    .as_str()
                    .ok_or_else(|| format!("authenticate answered without apiKey: {data}"))?
                    .to_owned()
            }
        };
        let rest = Self::new(
            RestConfig {
                url: e.url.clone(),
                username: e.username.clone(),
                key,
                security_key: e.security_key.clone(),
                soap_ip: e.soap_ip.clone().unwrap_or_else(|| "scim-proxy".to_owned()),
            },
            e.clone(),
        );
        // Lists every account: checks the key and that the account is a platform admin.
        let accounts = rest.list(&[USER_NAME_FIELD]).await.map_err(|m| {
            format!(
                "CHAMILO_E2E_URL={}: the service account {} cannot list users ({m}); it must be a platform administrator of Chamilo 1.11.x with the REST web services on",
                e.url, e.username
            )
        })?;
        let current = run_id();
        let stale: BTreeSet<u64> = accounts
            .iter()
            .filter(|a| {
                run_of(a).is_some_and(|run| {
                    run != current && run_age(&run).is_none_or(|age| age > LEFTOVER_AGE)
                })
            })
            .map(|a| a.id)
            .collect();
        if !stale.is_empty() {
            let n = rest.delete_where(|a| stale.contains(&a.id)).await?;
            say(&format!("e2e: deleted {n} account(s) left by earlier runs"));
        }
        if e.security_key.is_some() {
            // The SOAP handle field must exist before `update_user_from_username` can set it;
            // `save_user` creates it (through a placeholder account, deleted at once).
            let login = format!("{PREFIX}{current}-handle");
            let id = rest
                .create(&login, "E2E", "Handle", &format!("{login}@example.org"))
                .await
                .map_err(|m| format!("creating the {HANDLE_FIELD} extra field: {m}"))?;
            rest.delete(id).await?;
        }
        Ok(rest.cfg)
    }

    /// One REST call with the service account; `data` on success.
    async fn call(&self, action: &str, params: &[(&str, &str)]) -> Result<Value, String> {
        let mut all = vec![
            ("username", self.cfg.username.as_str()),
            ("api_key", self.cfg.key.as_str()),
        ];
        all.extend_from_slice(params);
        post(
            &self.http,
            &format!("{}{REST_PATH}", self.cfg.url),
            action,
            &all,
        )
        .await
    }

    async fn list(&self, fields: &[&str]) -> Result<Vec<Account>, String> {
        let extra = fields.join(",");
        let mut params = vec![("status", "*")];
        if !fields.is_empty() {
            params.push(("extra_fields", extra.as_str()));
        }
        let data = self.call("get_users", &params).await?;
        let rows = data
            .as_array()
            .ok_or_else(|| format!("get_users: not a list: {}", excerpt(&data.to_string())))?;
        Ok(rows
            .iter()
            .filter_map(|v| Account::from_json(v, fields))
            .collect())
    }

    async fn create(
        &self,
        login: &str,
        firstname: &str,
        lastname: &str,
        email: &str,
    ) -> Result<u64, String> {
        let password = random_hex(16);
        let data = self
            .call(
                "save_user",
                &[
                    ("loginname", login),
                    ("password", &password),
                    ("firstname", firstname),
                    ("lastname", lastname),
                    ("email", email),
                    ("status", "5"),
                    ("original_user_id_name", HANDLE_FIELD),
                    ("original_user_id_value", login),
                ],
            )
            .await?;
        data[0]
            .as_u64()
            .or_else(|| data[0].as_str().and_then(|s| s.parse().ok()))
            .ok_or_else(|| format!("save_user: no id in {data}"))
    }

    async fn update(&self, login: &str, changes: &[(&str, &str)]) -> Result<(), String> {
        let mut params = vec![("loginname", login)];
        params.extend_from_slice(changes);
        self.call("update_user_from_username", &params)
            .await
            .map(drop)
    }

    async fn delete(&self, id: u64) -> Result<(), String> {
        let data = self
            .call("delete_user", &[("user_id", &id.to_string())])
            .await?;
        if data["status"] == true {
            Ok(())
        } else {
            Err(format!("delete_user {id} refused: {data}"))
        }
    }

    /// Hard-deletes every account `pick` selects, never the service account; returns how many.
    async fn delete_where(&self, pick: impl Fn(&Account) -> bool) -> Result<usize, String> {
        let accounts = self.list(&[USER_NAME_FIELD]).await?;
        let mut failures = Vec::new();
        let mut deleted = 0;
        for a in accounts
            .iter()
            .filter(|a| pick(a) && !a.login.eq_ignore_ascii_case(&self.cfg.username))
        {
            match self.delete(a.id).await {
                Ok(()) => deleted += 1,
                Err(e) => failures.push(format!("{} ({}): {e}", a.id, a.login)),
            }
        }
        if failures.is_empty() {
            Ok(deleted)
        } else {
            Err(format!(
                "deleted {deleted}, could not delete: {}",
                failures.join("; ")
            ))
        }
    }

    /// Deletes the classes whose name starts with `prefix` (the ones a test made).
    async fn delete_classes_named(&self, prefix: &str) -> Result<usize, String> {
        let groups = self.call("get_groups", &[("type", "0")]).await?;
        let mut deleted = 0;
        for g in groups.as_array().into_iter().flatten() {
            let name = g["name"].as_str().unwrap_or_default();
            if !name.starts_with(prefix) {
                continue;
            }
            if let Some(id) = id_of(&g["id"]) {
                self.call("delete_group", &[("id", id.to_string().as_str())])
                    .await
                    .map_err(|e| format!("delete_group {id} ({name}): {e}"))?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// SOAP `WSEditUserCredentials`: renames the account whose `field` holds `value`.
    async fn edit_credentials(&self, field: &str, value: &str, login: &str) -> Result<(), String> {
        use sha1::Digest;
        let Some(security_key) = &self.cfg.security_key else {
            return Err("CHAMILO_E2E_SECURITY_KEY is not set".into());
        };
        let mut h = sha1::Sha1::new();
        h.update(self.cfg.soap_ip.as_bytes());
        h.update(security_key.as_bytes());
        let secret = hex::encode(h.finalize());
        let esc = |s: &str| quick_xml::escape::escape(s).into_owned();
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<SOAP-ENV:Envelope xmlns:SOAP-ENV=\"http://schemas.xmlsoap.org/soap/envelope/\" xmlns:SOAP-ENC=\"http://schemas.xmlsoap.org/soap/encoding/\" xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" xmlns:ns1=\"urn:WSRegistration\" SOAP-ENV:encodingStyle=\"http://schemas.xmlsoap.org/soap/encoding/\">\n<SOAP-ENV:Body>\n<ns1:WSEditUserCredentials>\n<editUserCredentials><username>{}</username><secret_key>{secret}</secret_key><original_user_id_name>{}</original_user_id_name><original_user_id_value>{}</original_user_id_value></editUserCredentials>\n</ns1:WSEditUserCredentials>\n</SOAP-ENV:Body>\n</SOAP-ENV:Envelope>\n",
            esc(login),
            esc(field),
            esc(value)
        );
        let resp = self
            .http
            .post(format!("{}{SOAP_PATH}", self.cfg.url))
            .header("content-type", "text/xml; charset=utf-8")
            .header("x-forwarded-for", &self.cfg.soap_ip)
            .body(body)
            .send()
            .await
            .map_err(|e| format!("WSEditUserCredentials: {e}"))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| format!("WSEditUserCredentials: {e}"))?;
        // Only the envelope: the debug dump after it echoes the secret.
        let end = "</SOAP-ENV:Envelope>";
        let Some(pos) = text.find(end) else {
            return Err(format!(
                "WSEditUserCredentials: HTTP {status} without a SOAP envelope (an HTML error page or a PHP fatal)"
            ));
        };
        let envelope = &text[..pos + end.len()];
        let between = |open: &str, close: &str| {
            let start = envelope.find(open)?;
            let from = start + envelope[start..].find('>')? + 1;
            let to = from + envelope[from..].find(close)?;
            Some(envelope[from..to].to_owned())
        };
        if let Some(fault) = between("<faultstring", "</faultstring>") {
            return Err(format!("WSEditUserCredentials: SOAP fault: {fault}"));
        }
        match between("<return", "</return>").as_deref() {
            Some("1") => Ok(()),
            other => Err(format!(
                "WSEditUserCredentials answered {other:?} (0: the login is taken, the account is inactive or the handle is unknown)"
            )),
        }
    }
}

/// A form-encoded POST to `v2.php`; `data` when Chamilo answers `error: false`.
async fn post(
    http: &reqwest::Client,
    url: &str,
    action: &str,
    params: &[(&str, &str)],
) -> Result<Value, String> {
    let mut form = vec![("action", action)];
    form.extend_from_slice(params);
    let resp = http
        .post(url)
        .form(&form)
        .send()
        .await
        .map_err(|e| format!("{action}: {url}: {e}"))?;
    let status = resp.status();
    let text = resp
        .text()
        .await
        .map_err(|e| format!("{action}: reading the answer: {e}"))?;
    let json: Value = serde_json::from_str(&text).map_err(|_| {
        format!(
            "{action}: HTTP {status}, not JSON (a PHP fatal or an error page?): {:?}",
            excerpt(&text)
        )
    })?;
    if json["error"] == false {
        Ok(json["data"].clone())
    } else {
        Err(format!(
            "{action}: Chamilo answered error: {}",
            json["message"]
                .as_str()
                .map_or_else(|| excerpt(&json.to_string()), excerpt)
        ))
    }
}
