//! The `directory` implementation for Chamilo: reads, searches and the dispatch of writes
//! (the writes themselves are in `super::write`). See `super::mapping` for what goes where.

use std::sync::Arc;
use std::time::Duration;

use super::client::{ChamiloClient, DeleteOutcome, NewAccount, Profile};
use super::deprovisioned;
use super::error::ChamiloError;
use super::index::{Account, AccountRef};
use super::kept::KeptAttributes;
use super::lookup::AccountLookup;
use super::mapping::{invalid, random_password, ChamiloMapping, Deprovision, ListScope, Mapped};

use super::username::login_candidates;
use crate::config::Secret;
use crate::directory::{Capabilities, DirFuture, Directory, DirectoryError, ListQuery, Page, User};
use crate::scim::filter::CompValue;

fn reserved_account() -> DirectoryError {
    DirectoryError::Forbidden {
        detail: "this Chamilo account cannot be managed through SCIM".into(),
    }
}

fn from_chamilo(e: ChamiloError) -> DirectoryError {
    match e {
        ChamiloError::LoginTaken { .. } => DirectoryError::Conflict {
            detail: "the login is already taken in Chamilo".into(),
        },
        ChamiloError::NotFound { .. } => DirectoryError::NotFound,
        ChamiloError::Unreachable { .. } => DirectoryError::Unavailable {
            retry_after: Some(Duration::from_secs(5)),
        },
        ChamiloError::Timeout { .. } => DirectoryError::Timeout,
        other => DirectoryError::Backend {
            detail: other.to_string(),
        },
    }
}

/// A deprovisioned account a create may bring back.
struct Revivable {
    account: Account,
    /// The extra field and tombstone it was found by: the SOAP handle for a new password or
    /// login.
    handle: (String, String),
    /// Whether the handle names this account alone in Chamilo.
    handle_is_unique: bool,
}

/// Chamilo as a SCIM directory.
pub struct ChamiloDirectory {
    client: Arc<ChamiloClient>,
    lookup: Arc<AccountLookup>,
    mapping: ChamiloMapping,
    /// Fixed by the mapping; built once because the engine asks per request.
    capabilities: Capabilities,
    /// Accounts just confirmed fresh by `get`, for the write that follows at once (see
    /// [`ConfirmedJustNow`]).
    confirmed: ConfirmedJustNow,
}

/// The engine's PUT and PATCH read the user (`Directory::get`: one fresh confirmation) and
/// then write it (`Directory::replace`), which would confirm it a second time a few
/// milliseconds later: a third of a write's Chamilo calls for nothing. `get` leaves its
/// confirmation here and the next write of that id takes it — once, and only within
/// [`CONFIRMATION_REUSE`], so the window in which a change made elsewhere can go unseen is the
/// one every confirm-then-write already has, not longer. A delete through this directory
/// drops it.
#[derive(Default)]
struct ConfirmedJustNow(
    std::sync::Mutex<std::collections::HashMap<u64, (Account, std::time::Instant)>>,
);

/// How long a confirmation may serve the write that follows it.
const CONFIRMATION_REUSE: std::time::Duration = std::time::Duration::from_millis(200);
/// Confirmations kept at most (a burst of reads without writes must not grow it).
const CONFIRMATIONS_KEPT: usize = 256;

impl ConfirmedJustNow {
    fn put(&self, account: &Account) {
        let Ok(mut map) = self.0.lock() else { return };
        if map.len() >= CONFIRMATIONS_KEPT {
            map.retain(|_, (_, at)| at.elapsed() < CONFIRMATION_REUSE);
            if map.len() >= CONFIRMATIONS_KEPT {
                map.clear();
            }
        }
        map.insert(account.id, (account.clone(), std::time::Instant::now()));
    }

    fn take(&self, id: &str) -> Option<Account> {
        let id = id.parse::<u64>().ok()?;
        let (account, at) = self.0.lock().ok()?.remove(&id)?;
        (at.elapsed() < CONFIRMATION_REUSE).then_some(account)
    }

    fn forget(&self, id: &str) {
        if let (Ok(id), Ok(mut map)) = (id.parse::<u64>(), self.0.lock()) {
            map.remove(&id);
        }
    }
}

impl ChamiloDirectory {
    /// A directory over `client`, with its index lookups and mapping.
    pub fn new(
        client: Arc<ChamiloClient>,
        lookup: Arc<AccountLookup>,
        mapping: ChamiloMapping,
    ) -> Self {
        lookup.set_protected_logins(&mapping.protected_logins, mapping.login_rules);
        Self {
            client,
            lookup,
            capabilities: mapping.capabilities(),
            mapping,
            confirmed: ConfirmedJustNow::default(),
        }
    }

    /// The SCIM representation of an account.
    pub fn to_user(&self, a: &Account) -> User {
        self.mapping.to_user(a)
    }

    async fn ensure_index(&self) -> Result<(), DirectoryError> {
        if !self.lookup.index.is_ready() {
            self.lookup.rebuild().await.map_err(from_chamilo)?;
        }
        Ok(())
    }

    /// The account with this id as SCIM sees it: `None` when there is none, and when it was
    /// deleted through SCIM (deprovisioned), also by another replica.
    async fn account(&self, id: &str) -> Result<Option<Account>, DirectoryError> {
        let Ok(id) = id.parse::<u64>() else {
            return Ok(None);
        };
        self.ensure_index().await?;
        let before = self.lookup.index.by_id(id);
        match self.lookup.by_id(id).await.map_err(from_chamilo)? {
            Some(a) if deprovisioned::is_deprovisioned(&a) => Ok(None),
            Some(a) => self.unless_deprovisioned_elsewhere(a).await,
            None => match before.filter(deprovisioned::is_deprovisioned) {
                Some(tombstoned) => self.revived_elsewhere(&tombstoned).await,
                None => Ok(None),
            },
        }
    }

    /// An account this replica knows as made outside SCIM (no userName field) may have been
    /// deleted through another replica since the last listing, which adopts it under the
    /// tombstone of its login: one fresh lookup of that tombstone tells. Any other account
    /// was just confirmed by its live userName or externalId value, and passes at no cost.
    async fn unless_deprovisioned_elsewhere(
        &self,
        account: Account,
    ) -> Result<Option<Account>, DirectoryError> {
        if account.user_name.is_some() || account.partial {
            return Ok(Some(account));
        }
        let mark = deprovisioned::tombstone(&account.login);
        let fresh = self
            .client
            .users_by_extra_field(&self.mapping.fields.user_name, &mark, false)
            .await
            .map_err(from_chamilo)?;
        if !fresh.iter().any(|p| p.id == account.id) {
            return Ok(Some(account));
        }
        let mut gone = account;
        gone.user_name = Some(mark);
        gone.active = false;
        self.lookup.index.upsert(gone);
        Ok(None)
    }

    /// An account this replica holds as deprovisioned whose tombstone Chamilo no longer has:
    /// another replica revived it (or it was deleted in Chamilo). It is found again by its
    /// former userName or externalId when it came back under one of them.
    async fn revived_elsewhere(&self, t: &Account) -> Result<Option<Account>, DirectoryError> {
        if let Some(un) = t.user_name.as_deref().and_then(deprovisioned::original) {
            let found = self.lookup.by_user_name(un).await.map_err(from_chamilo)?;
            if let Some(a) = found.filter(|a| a.id == t.id) {
                return Ok(Some(a));
            }
        }
        if let Some(ext) = t.external_id.as_deref().and_then(deprovisioned::original) {
            let found = self
                .lookup
                .by_external_id(ext)
                .await
                .map_err(from_chamilo)?;
            if let Some(a) = found.filter(|a| a.id == t.id) {
                return Ok(Some(a));
            }
        }
        Ok(None)
    }

    /// The deprovisioned account whose `field` holds the tombstone of `value` (one fresh
    /// call), for a create to revive. `case_insensitive` as SCIM compares the attribute
    /// (userName yes, externalId no). Chamilo matches case- and accent-insensitively: an
    /// account the index knows under another tombstone is someone else and left out. More
    /// than one match is a conflict (never merged).
    async fn deprovisioned_by(
        &self,
        attr: &str,
        field: &str,
        value: &str,
        case_insensitive: bool,
    ) -> Result<Option<Revivable>, DirectoryError> {
        let mark = deprovisioned::tombstone(value);
        let same = |stored: &str| {
            if case_insensitive {
                stored.trim().to_lowercase() == mark.trim().to_lowercase()
            } else {
                stored == mark
            }
        };
        let by_user_name = field == self.mapping.fields.user_name;
        let fresh = self
            .client
            .users_by_extra_field(field, &mark, false)
            .await
            .map_err(from_chamilo)?;
        // Chamilo's SOAP handle lookup sees every account, reserved ones too.
        let handle_is_unique = fresh.len() == 1;
        let fresh: Vec<Profile> = fresh
            .into_iter()
            .filter(|p| {
                let probe = Account {
                    id: p.id,
                    login: p.username.clone(),
                    status: Some(p.status),
                    ..Account::default()
                };
                !self.mapping.is_protected(&p.username) && !self.lookup.is_reserved(&probe)
            })
            .collect();
        let mut matching: Vec<(Profile, Option<Account>)> = fresh
            .into_iter()
            .map(|p| {
                let known = self.lookup.index.by_id(p.id);
                (p, known)
            })
            .filter(|(_, known)| {
                let stored = known.as_ref().and_then(|k| {
                    if by_user_name {
                        k.user_name.clone()
                    } else {
                        k.external_id.clone()
                    }
                });
                stored
                    .filter(|v| deprovisioned::is_tombstone(v))
                    .is_none_or(|v| same(&v))
            })
            .collect();
        if matching.len() > 1 {
            let ids: Vec<String> = matching.iter().map(|(p, _)| p.id.to_string()).collect();
            return Err(DirectoryError::Conflict {
                detail: format!(
                    "several Chamilo accounts deleted through SCIM had this {attr} (ids {}); reactivate the right one by clearing the others' {field} field in Chamilo",
                    ids.join(", ")
                ),
            });
        }
        let Some((profile, known)) = matching.pop() else {
            return Ok(None);
        };
        let mut account = known.unwrap_or_else(|| Account {
            id: profile.id,
            lastname: profile.full_name.clone(),
            partial: true,
            ..Account::default()
        });
        account.login = profile.username;
        // Deprovisioned accounts are inactive unless an administrator reactivated them in
        // Chamilo; assuming inactive is the safe side for the SOAP call (see edit_credentials).
        account.active = false;
        account.phone = Some(profile.phone);
        account.official_code = Some(profile.official_code);
        account.status = Some(profile.status);
        Ok(Some(Revivable {
            account,
            handle: (field.to_owned(), mark),
            handle_is_unique,
        }))
    }

    async fn create_user(&self, user: User) -> Result<User, DirectoryError> {
        let m = self.mapping.map(&user)?;
        let email = m
            .email
            .clone()
            .ok_or_else(|| invalid("emails", "Chamilo requires an e-mail address"))?;
        let firstname = m.firstname.clone().unwrap_or_default();
        let lastname = m.lastname.clone().unwrap_or_default();
        self.ensure_index().await?;
        if self.lookup.is_reserved_login(&m.user_name) {
            return Err(DirectoryError::Conflict {
                detail: format!(
                    "userName '{}' is a Chamilo account that SCIM may not manage (the service account, a protected login or the anonymous user)",
                    m.user_name
                ),
            });
        }
        if let Some(revivable) = self.existing_for_create(&m).await? {
            return self.revive(revivable, &m).await;
        }
        let candidates = login_candidates(
            &m.user_name,
            self.mapping.login_rules,
            self.mapping.login_transform,
        )
        .map_err(|e| invalid("userName", e.to_string()))?;
        let password = Secret::new(m.password.clone().unwrap_or_else(random_password));
        let attributes = Some(m.kept.encode()).filter(|a| !a.is_empty());
        let mut created: Option<(u64, String)> = None;
        for login in candidates {
            let account = NewAccount {
                username: login.clone(),
                password: password.clone(),
                firstname: firstname.clone(),
                lastname: lastname.clone(),
                email: email.clone(),
                status: m.status.unwrap_or(self.mapping.default_status),
                language: m.language.clone(),
                phone: m.phone.clone(),
                auth_source: Some(self.mapping.auth_source.clone()),
                expiration_date: None,
                handle: Some((self.mapping.fields.user_name.clone(), m.user_name.clone())),
                extra: m
                    .external_id
                    .iter()
                    .map(|e| (self.mapping.fields.external_id.clone(), e.clone()))
                    .chain(
                        attributes
                            .iter()
                            .map(|a| (self.mapping.fields.attributes.clone(), a.clone())),
                    )
                    .collect(),
            };
            match self.client.save_user(&account).await {
                Ok(id) => {
                    created = Some((id, login));
                    break;
                }
                Err(ChamiloError::LoginTaken { .. }) => continue,
                Err(e) => return Err(from_chamilo(e)),
            }
        }
        let Some((id, login)) = created else {
            return Err(DirectoryError::Conflict {
                detail: "every Chamilo login derived from this userName is taken".into(),
            });
        };
        // save_user ignores `active` and `official_code`: a follow-up update sets them.
        let mut follow_up: Vec<(&str, String)> = Vec::new();
        if !m.active {
            follow_up.push(("active", "0".into()));
        }
        if let Some(o) = &m.official_code {
            follow_up.push(("official_code", o.clone()));
        }
        if !follow_up.is_empty() {
            if let Err(e) = self.client.update_user(&login, &follow_up, &[]).await {
                // All or nothing (invariant 4): remove the half-made account.
                let _ = self.client.delete_user(id).await;
                return Err(from_chamilo(e));
            }
        }
        let account = Account {
            id,
            login,
            user_name: Some(m.user_name.clone()),
            external_id: m.external_id.clone(),
            active: m.active,
            firstname: Some(firstname),
            lastname,
            email,
            partial: false,
            phone: m.phone.clone(),
            official_code: m.official_code.clone(),
            status: Some(m.status.unwrap_or(self.mapping.default_status)),
            attributes,
        };
        self.lookup.index.upsert(account.clone());
        tracing::info!(chamilo.user_id = id, "created user");
        Ok(self.to_user(&account))
    }

    /// What a create of `m` meets in Chamilo: `Ok(None)` when the userName and externalId
    /// are free, the deprovisioned account to revive when one had them, else a conflict.
    /// The live and tombstone lookups run concurrently (one fresh call each).
    async fn existing_for_create(&self, m: &Mapped) -> Result<Option<Revivable>, DirectoryError> {
        let fields = &self.mapping.fields;
        let ext = m.external_id.as_deref();
        let (live_un, live_ext, dead_un, dead_ext) = tokio::try_join!(
            async {
                self.lookup
                    .by_user_name(&m.user_name)
                    .await
                    .map_err(from_chamilo)
            },
            async {
                match ext {
                    Some(e) => self.lookup.by_external_id(e).await.map_err(from_chamilo),
                    None => Ok(None),
                }
            },
            self.deprovisioned_by("userName", &fields.user_name, &m.user_name, true),
            async {
                match ext {
                    Some(e) => {
                        self.deprovisioned_by("externalId", &fields.external_id, e, false)
                            .await
                    }
                    None => Ok(None),
                }
            },
        )?;
        let dead_ids: Vec<u64> = [&dead_un, &dead_ext]
            .into_iter()
            .flatten()
            .map(|r| r.account.id)
            .collect();
        // A live answer about a deprovisioned account comes from this replica's stale view
        // (an account made outside SCIM, deleted through another replica): it is the
        // deprovisioned one.
        let live = |a: Option<Account>| {
            a.filter(|a| !deprovisioned::is_deprovisioned(a) && !dead_ids.contains(&a.id))
        };
        let reviving = dead_un.as_ref().or(dead_ext.as_ref()).map(|r| r.account.id);
        let besides = |what: &str| {
            match reviving {
            Some(id) => format!(
                "{what} is already in use by another account than the one deleted through SCIM (id {id}) that this create would reactivate"
            ),
            None => format!("{what} is already in use"),
        }
        };
        if live(live_un).is_some() {
            return Err(DirectoryError::Conflict {
                detail: besides("userName"),
            });
        }
        if live(live_ext).is_some() {
            return Err(DirectoryError::Conflict {
                detail: besides("externalId"),
            });
        }
        match (dead_un, dead_ext) {
            (Some(a), Some(b)) if a.account.id != b.account.id => Err(DirectoryError::Conflict {
                detail: format!(
                    "the userName belonged to the account deleted through SCIM with id {} and the externalId to another one, id {}; they are not merged",
                    a.account.id, b.account.id
                ),
            }),
            (Some(a), _) => Ok(Some(a)),
            (None, b) => Ok(b),
        }
    }

    /// Brings a deprovisioned account back for a create (same id, its history in Chamilo):
    /// the new state is applied like a PUT, the tombstones are replaced by the new userName
    /// and externalId and the account is activated (unless `active: false` was sent), in the
    /// last call, so that a failure before it leaves the account deprovisioned.
    async fn revive(&self, r: Revivable, m: &Mapped) -> Result<User, DirectoryError> {
        let current = r.account;
        // The login stays unless it is not one derived from the new userName (revived by
        // externalId under another userName): then it is renamed like a PUT would.
        let candidates = login_candidates(
            &m.user_name,
            self.mapping.login_rules,
            self.mapping.login_transform,
        )
        .map_err(|e| invalid("userName", e.to_string()))?;
        let renamed = !candidates
            .iter()
            .any(|c| c.eq_ignore_ascii_case(&current.login));
        let mut login = current.login.clone();
        if renamed || m.password.is_some() {
            if !r.handle_is_unique {
                return Err(DirectoryError::Conflict {
                    detail: "several Chamilo accounts carry the tombstone of the account to reactivate; its password or login cannot be set".into(),
                });
            }
            let (field, value) = (&r.handle.0, &r.handle.1);
            login = self
                .edit_credentials(&current, (field, value), m, renamed)
                .await?;
        }
        let user = self.write_account(&current, login, m, false, true).await?;
        tracing::info!(
            chamilo.user_id = current.id,
            "reactivated a user deleted through SCIM"
        );
        Ok(user)
    }

    async fn replace_user(&self, id: &str, user: User) -> Result<User, DirectoryError> {
        let m = self.mapping.map(&user)?;
        let current = match self.confirmed.take(id) {
            Some(current) => current,
            None => self.account(id).await?.ok_or(DirectoryError::NotFound)?,
        };
        if self.mapping.is_protected(&current.login) || self.lookup.is_reserved(&current) {
            return Err(reserved_account());
        }
        // The userName the account answers to now: its field, or (not yet adopted) its login.
        let answers_to = current.user_name.as_deref().unwrap_or(&current.login);
        if !answers_to.eq_ignore_ascii_case(&m.user_name) {
            if let Some(other) = self
                .lookup
                .by_user_name(&m.user_name)
                .await
                .map_err(from_chamilo)?
            {
                if other.id != current.id {
                    return Err(DirectoryError::Conflict {
                        detail: "userName is already in use".into(),
                    });
                }
            }
        }
        let mut login = current.login.clone();
        let renamed = match current.user_name.as_deref() {
            Some(u) => u != m.user_name,
            // Adoption: the login already is the userName (Chamilo compares logins
            // case-insensitively), so only the field is set below.
            None => !current.login.eq_ignore_ascii_case(&m.user_name),
        };
        if renamed || m.password.is_some() {
            let mut current = current.clone();
            if current.user_name.is_none() {
                // SOAP addresses users by a userName-field handle: give the account one.
                self.adopt(&current).await?;
                current.user_name = Some(current.login.clone());
            }
            let handle = current.user_name.clone().unwrap_or(current.login.clone());
            login = self
                .edit_credentials(
                    &current,
                    (&self.mapping.fields.user_name, &handle),
                    &m,
                    renamed,
                )
                .await?;
        }
        self.write_account(&current, login, &m, user.active().is_none(), false)
            .await
    }

    /// Writes the full new state `m` of `current` (whose login is now `login`) in one
    /// `update_user_from_username` call, records it in the index and returns it.
    /// `active_unassigned`: the new state has no `active` (see `KeptAttributes`). `revive`:
    /// `current` is a deprovisioned account brought back by a create, whose state is the
    /// create's alone (nothing is kept from before, the tombstones are overwritten).
    async fn write_account(
        &self,
        current: &Account,
        login: String,
        m: &Mapped,
        active_unassigned: bool,
        revive: bool,
    ) -> Result<User, DirectoryError> {
        // A value the proxy never knew (an account learned from a fresh lookup only) is
        // left alone when the new state lacks it; a known one is cleared.
        let keep_unknown = current.partial && !revive;
        let mut changes: Vec<(&str, String)> =
            vec![("active", if m.active { "1" } else { "0" }.into())];
        match (&m.firstname, keep_unknown) {
            (Some(f), _) => changes.push(("firstname", f.clone())),
            (None, false) => changes.push(("firstname", String::new())),
            (None, true) => {}
        }
        match (&m.lastname, keep_unknown) {
            (Some(l), _) => changes.push(("lastname", l.clone())),
            (None, false) => changes.push(("lastname", String::new())),
            (None, true) => {}
        }
        match (&m.email, keep_unknown) {
            (Some(e), _) => changes.push(("email", e.clone())),
            (None, false) => {
                return Err(invalid("emails", "Chamilo requires an e-mail address"));
            }
            (None, true) => {}
        }
        if let Some(s) = m.status {
            changes.push(("status", s.to_string()));
        }
        // Phone and official code are cleared only when they were known (and so returned to
        // the identity provider): an attribute the proxy could not read is not wiped by a
        // PATCH round trip that could not carry it.
        let known = |v: &Option<String>| v.as_ref().is_some_and(|v| !v.is_empty());
        if m.phone.is_some() || known(&current.phone) {
            changes.push(("phone", m.phone.clone().unwrap_or_default()));
        }
        if m.official_code.is_some() || known(&current.official_code) {
            changes.push(("official_code", m.official_code.clone().unwrap_or_default()));
        }
        if let Some(l) = &m.language {
            changes.push(("language", l.clone()));
        }
        let mut extra = vec![(self.mapping.fields.user_name.clone(), m.user_name.clone())];
        extra.push((
            self.mapping.fields.external_id.clone(),
            m.external_id.clone().unwrap_or_default(),
        ));
        // Without `active` (PUT without it, PATCH remove) the account is active, Chamilo's only
        // unassigned state, and the absence is remembered so that it round-trips.
        let kept = KeptAttributes {
            active_unassigned,
            ..m.kept.clone()
        };
        let attributes = kept.encode();
        // Written when there is something to keep or to clear. Like the names above, what
        // a partial account holds is unknown and not cleared by a state that lacks it,
        // except by a revival, whose state is the create's alone.
        if !attributes.is_empty() || current.attributes.is_some() || (revive && current.partial) {
            extra.push((self.mapping.fields.attributes.clone(), attributes.clone()));
        }
        self.client
            .update_user(&login, &changes, &extra)
            .await
            .map_err(from_chamilo)?;
        let account = Account {
            id: current.id,
            login,
            user_name: Some(m.user_name.clone()),
            external_id: m.external_id.clone(),
            active: m.active,
            // As written above: cleared when absent, unless never known (kept as it is).
            firstname: match (&m.firstname, keep_unknown) {
                (Some(f), _) => Some(f.clone()),
                (None, true) => current.firstname.clone(),
                (None, false) => Some(String::new()),
            },
            lastname: match (&m.lastname, keep_unknown) {
                (Some(l), _) => l.clone(),
                (None, true) => current.lastname.clone(),
                (None, false) => String::new(),
            },
            email: m.email.clone().unwrap_or(current.email.clone()),
            partial: keep_unknown && (m.firstname.is_none() || m.email.is_none()),
            phone: m.phone.clone(),
            official_code: m.official_code.clone(),
            status: m.status.or(current.status),
            attributes: Some(attributes).filter(|a| !a.is_empty()),
        };
        self.lookup.index.upsert(account.clone());
        Ok(self.to_user(&account))
    }

    /// Renames and/or sets the password through SOAP, addressed by a handle: an extra field
    /// and a value only this account holds (its userName, or a deprovisioned one's tombstone).
    /// `WSEditUserCredentials` refuses inactive users, so those are activated for the call and
    /// deactivated again. Returns the login in force afterwards.
    async fn edit_credentials(
        &self,
        current: &Account,
        (field, handle): (&str, &str),
        m: &Mapped,
        renamed: bool,
    ) -> Result<String, DirectoryError> {
        let logins = if !renamed {
            vec![current.login.clone()]
        } else {
            login_candidates(
                &m.user_name,
                self.mapping.login_rules,
                self.mapping.login_transform,
            )
            .map_err(|e| invalid("userName", e.to_string()))?
        };
        let password = m.password.clone().map(Secret::new);
        if !current.active {
            self.client
                .update_user(&current.login, &[("active", "1".into())], &[])
                .await
                .map_err(from_chamilo)?;
        }
        let mut result = Err(DirectoryError::Conflict {
            detail: "every Chamilo login derived from this userName is taken".into(),
        });
        for login in logins {
            match self
                .client
                .edit_user_credentials(field, handle, &login, password.as_ref())
                .await
            {
                Ok(true) => {
                    result = Ok(login);
                    break;
                }
                Ok(false) => continue,
                Err(e) => {
                    result = Err(from_chamilo(e));
                    break;
                }
            }
        }
        if !current.active {
            let login = result.as_ref().map_or(current.login.clone(), Clone::clone);
            // Restore the state even when the edit failed (invariant 4).
            self.client
                .update_user(&login, &[("active", "0".into())], &[])
                .await
                .map_err(from_chamilo)?;
        }
        result
    }

    /// Sets the userName field of an account made outside SCIM to its login (the userName it
    /// answers to), so that it is SCIM-managed from now on.
    async fn adopt(&self, current: &Account) -> Result<(), DirectoryError> {
        self.client
            .update_user(
                &current.login,
                &[],
                &[(self.mapping.fields.user_name.clone(), current.login.clone())],
            )
            .await
            .map_err(from_chamilo)?;
        let mut a = current.clone();
        a.user_name = Some(current.login.clone());
        self.lookup.index.upsert(a);
        tracing::info!(
            chamilo.user_id = current.id,
            "adopted existing Chamilo account"
        );
        Ok(())
    }

    async fn delete_user(&self, id: &str) -> Result<(), DirectoryError> {
        self.confirmed.forget(id);
        let current = self.account(id).await?.ok_or(DirectoryError::NotFound)?;
        if self.mapping.is_protected(&current.login) || self.lookup.is_reserved(&current) {
            return Err(reserved_account());
        }
        // A soft delete (see `deprovisioned`): the deactivation and the tombstones go in one
        // call, so a failure changes nothing. An account made outside SCIM is adopted under
        // the tombstone of its login (the userName it answered to).
        let deactivate = || async {
            let fields = &self.mapping.fields;
            let answers_to = current.user_name.as_deref().unwrap_or(&current.login);
            let user_name = deprovisioned::tombstone(answers_to);
            let external_id = current.external_id.as_deref().map(deprovisioned::tombstone);
            let mut extra = vec![(fields.user_name.clone(), user_name.clone())];
            match &external_id {
                Some(t) => extra.push((fields.external_id.clone(), t.clone())),
                // Unknown to this replica (learned from a fresh lookup only): cleared, so
                // that it cannot find the account any more.
                None if current.partial => extra.push((fields.external_id.clone(), String::new())),
                None => {}
            }
            self.client
                .update_user(&current.login, &[("active", "0".into())], &extra)
                .await
                .map_err(from_chamilo)?;
            let mut a = current.clone();
            a.active = false;
            a.user_name = Some(user_name);
            a.external_id = external_id;
            self.lookup.index.upsert(a);
            tracing::info!(
                chamilo.user_id = current.id,
                "deactivated a user deleted through SCIM; it answers 404 until created again"
            );
            Ok(())
        };
        match self.mapping.deprovision {
            Deprovision::Deactivate => deactivate().await,
            Deprovision::Delete | Deprovision::DeleteOrDeactivate => {
                match self
                    .client
                    .delete_user(current.id)
                    .await
                    .map_err(from_chamilo)?
                {
                    DeleteOutcome::Deleted => {
                        self.lookup.index.remove(current.id);
                        Ok(())
                    }
                    DeleteOutcome::Refused
                        if self.mapping.deprovision == Deprovision::DeleteOrDeactivate =>
                    {
                        deactivate().await
                    }
                    DeleteOutcome::Refused => Err(DirectoryError::Conflict {
                        detail: "Chamilo refuses to delete the only teacher of a course".into(),
                    }),
                }
            }
        }
    }

    /// A search the index cannot answer by key (no filter, or a filter on other attributes):
    /// the accounts in the configured list scope, never protected or reserved ones. Paging
    /// without a filter or sort (Okta's imports) copies only the page, in id order; other
    /// searches look at the index a chunk at a time.
    fn search(&self, query: &ListQuery) -> Page {
        let managed_only = self.mapping.list_scope == ListScope::Managed;
        let reserved = self.lookup.reserved_check();
        // Accounts SCIM deleted (a tombstone userName) are gone for SCIM.
        let keep = |a: AccountRef<'_>| {
            (!managed_only || a.user_name().is_some())
                && !a.user_name().is_some_and(deprovisioned::is_tombstone)
                && !self.mapping.is_protected(a.login())
                && !reserved(a)
        };
        if query.filter.is_none() && query.sort.is_none() {
            let page = self
                .lookup
                .index
                .page(keep, query.start_index.max(1) - 1, query.count);
            let resources = page.accounts.iter().map(|a| self.to_user(a)).collect();
            return Page {
                total: page.total,
                resources,
            };
        }
        let chunks = self
            .lookup
            .index
            .chunks(keep, SEARCH_CHUNK)
            .map(|accounts| accounts.iter().map(|a| self.to_user(a)).collect());
        query.select_chunks(chunks)
    }

    async fn find_users(&self, query: &ListQuery) -> Result<Page, DirectoryError> {
        self.ensure_index().await?;
        let str_of = |v: &CompValue| match v {
            CompValue::Str(s) => Some(s.clone()),
            CompValue::Num(n) => Some(n.to_string()),
            _ => None,
        };
        let candidates: Vec<Account> = match &query.filter {
            Some(f) => {
                if let Some(v) = f.equality_on("userName").and_then(str_of) {
                    if deprovisioned::is_tombstone(&v) {
                        // Not a SCIM value (refused on writes): nothing has it.
                        Vec::new()
                    } else {
                        match self.lookup.by_user_name(&v).await.map_err(from_chamilo)? {
                            Some(a) => self
                                .unless_deprovisioned_elsewhere(a)
                                .await?
                                .into_iter()
                                .collect(),
                            None => Vec::new(),
                        }
                    }
                } else if let Some(v) = f.equality_on("externalId").and_then(str_of) {
                    if deprovisioned::is_tombstone(&v) {
                        Vec::new()
                    } else {
                        self.lookup
                            .by_external_id(&v)
                            .await
                            .map_err(from_chamilo)?
                            .into_iter()
                            .collect()
                    }
                } else if let Some(v) = f.equality_on("id").and_then(str_of) {
                    self.account(&v).await?.into_iter().collect()
                } else {
                    return Ok(self.search(query));
                }
            }
            None => return Ok(self.search(query)),
        };
        let candidates: Vec<Account> = candidates
            .into_iter()
            .filter(|a| {
                !self.mapping.is_protected(&a.login)
                    && !self.lookup.is_reserved(a)
                    && !deprovisioned::is_deprovisioned(a)
            })
            .collect();
        let users = candidates.iter().map(|a| self.to_user(a)).collect();
        Ok(query.select(users))
    }
}

/// Accounts converted to SCIM at a time by a search the index cannot answer by key.
const SEARCH_CHUNK: usize = 1024;

impl Directory for ChamiloDirectory {
    fn capabilities(&self) -> Capabilities {
        self.capabilities.clone()
    }

    fn create(&self, user: User) -> DirFuture<'_, User> {
        Box::pin(self.create_user(user))
    }

    fn get<'a>(&'a self, id: &'a str) -> DirFuture<'a, Option<User>> {
        Box::pin(async move {
            let account = self
                .account(id)
                .await?
                .filter(|a| !self.mapping.is_protected(&a.login) && !self.lookup.is_reserved(a));
            if let Some(a) = &account {
                self.confirmed.put(a);
            }
            Ok(account.map(|a| self.to_user(&a)))
        })
    }

    fn find<'a>(&'a self, query: &'a ListQuery) -> DirFuture<'a, Page> {
        Box::pin(self.find_users(query))
    }

    fn replace<'a>(
        &'a self,
        id: &'a str,
        user: User,
        _expected_version: Option<&'a str>,
    ) -> DirFuture<'a, User> {
        // `versions: false`: the engine sends no precondition.
        Box::pin(self.replace_user(id, user))
    }

    fn delete<'a>(&'a self, id: &'a str) -> DirFuture<'a, ()> {
        Box::pin(self.delete_user(id))
    }
}
