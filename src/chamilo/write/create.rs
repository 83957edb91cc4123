//! SCIM `POST /Users`: at most three Chamilo calls — who holds the userName now (one fresh
//! lookup), `save_user`, and an update for what `save_user` ignores (`active=false`, the
//! official code), only when the user has them.
//!
//! No duplicate account, whatever runs at the same time:
//! - Chamilo refuses a second account with a login that is taken (case-insensitively), and the
//!   login is derived from the userName, so two creates of one userName (two replicas, or an
//!   identity provider retrying while the first POST still runs) meet at `save_user`: one
//!   wins, the other is told the login is taken;
//! - a taken login is never simply skipped for the next candidate: the userName is looked up
//!   again (twice, a moment apart, since Chamilo saves a new account's extra fields just after
//!   its login) and an account deleted through SCIM under it is looked for, so the loser
//!   answers 409 or revives, and only a login taken by an account of another userName moves
//!   on to the next candidate;
//! - an answer lost in transit (timeout, broken connection) is repaired by looking for the
//!   account before sending `save_user` again.
//!
//! The externalId is checked against the index and confirmed fresh only when the index knows
//! it: RFC 7643 does not make it unique, and a fresh check for every create would cost a call.
//! An account deleted through SCIM that another replica tombstoned since this replica's last
//! listing is found by its userName through the login it still holds; one that comes back
//! under another userName with the same externalId is then created anew.

use std::time::Duration;

use super::revive::Revivable;
use super::AccountChange;
use crate::chamilo::client::{DeleteOutcome, NewAccount};
use crate::chamilo::deprovisioned;
use crate::chamilo::directory::{from_chamilo, ChamiloDirectory};
use crate::chamilo::error::ChamiloError;
use crate::chamilo::index::Account;
use crate::chamilo::mapping::{invalid, random_password, Mapped};
use crate::config::Secret;
use crate::directory::{DirectoryError, User};

/// How long to wait before looking a userName up again after its login was found taken.
const SETTLE: Duration = Duration::from_millis(300);

/// What `save_user` came to.
enum Saved {
    /// A new account, with its id and login.
    New(u64, String),
    /// The login belonged to an account deleted through SCIM under this userName.
    Revive(Box<Revivable>),
}

impl ChamiloDirectory {
    /// SCIM `POST /Users`.
    pub(crate) async fn create_user(&self, user: User) -> Result<User, DirectoryError> {
        let mut m = self.mapping.map(&user)?;
        // `meta.created`: the proxy makes the account now (a revival keeps the first date).
        let now = crate::chamilo::kept::timestamp_now();
        m.kept.created = Some(now.clone());
        m.kept.last_modified = Some(now);
        let email = m
            .email
            .clone()
            .ok_or_else(|| invalid("emails", "Chamilo requires an e-mail address"))?;
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
        let (id, login) = match self.save_new(&m, &email).await? {
            Saved::New(id, login) => (id, login),
            Saved::Revive(r) => return self.revive(*r, &m).await,
        };
        // save_user ignores `active` and `official_code`: a follow-up update sets them.
        let mut follow_up: Vec<(&'static str, String)> = Vec::new();
        if !m.active {
            follow_up.push(("active", "0".into()));
        }
        if let Some(o) = &m.official_code {
            follow_up.push(("official_code", o.clone()));
        }
        if !follow_up.is_empty() {
            if let Err(e) = self
                .apply("create", id, &login, AccountChange::columns(follow_up))
                .await
            {
                return Err(self.undo_create(id, e).await);
            }
        } else {
            // One call, answered with the new id: nothing to verify further.
            self.client
                .report_write("create", super::WriteOutcome::Applied);
        }
        let status = m.status.unwrap_or(self.mapping.default_status);
        let account = Account {
            id,
            login,
            user_name: Some(m.user_name.clone()),
            external_id: m.external_id.clone(),
            active: m.active,
            firstname: Some(m.firstname.clone().unwrap_or_default()),
            lastname: m.lastname.clone().unwrap_or_default(),
            email,
            partial: false,
            phone: m.phone.clone(),
            official_code: m.official_code.clone(),
            status: Some(status),
            attributes: Some(m.kept.encode()).filter(|a| !a.is_empty()),
            full_name: None,
        };
        self.lookup.index.upsert(account.clone());
        tracing::info!(chamilo.user_id = id, "created user");
        if let Some(u) = &m.unmapped_language {
            u.warn(id);
        }
        Ok(self.to_user(&account))
    }

    /// `save_user` under the first free login derived from the userName (see the module
    /// documentation for what a taken login and a lost answer lead to).
    async fn save_new(&self, m: &Mapped, email: &str) -> Result<Saved, DirectoryError> {
        let fields = &self.mapping.fields;
        let password = Secret::new(m.password.clone().unwrap_or_else(random_password));
        let attributes = Some(m.kept.encode()).filter(|a| !a.is_empty());
        for login in self.login_candidates(&m.user_name)? {
            let account = NewAccount {
                username: login.clone(),
                password: password.clone(),
                firstname: m.firstname.clone().unwrap_or_default(),
                lastname: m.lastname.clone().unwrap_or_default(),
                email: email.to_owned(),
                status: m.status.unwrap_or(self.mapping.default_status),
                language: m.language.clone(),
                phone: m.phone.clone(),
                auth_source: Some(self.mapping.auth_source.clone()),
                expiration_date: None,
                handle: Some((fields.user_name.clone(), m.user_name.clone())),
                extra: m
                    .external_id
                    .iter()
                    .map(|e| (fields.external_id.clone(), e.clone()))
                    .chain(
                        attributes
                            .iter()
                            .map(|a| (fields.attributes.clone(), a.clone())),
                    )
                    .collect(),
            };
            let mut lost = false;
            loop {
                match self.client.save_user(&account).await {
                    Ok(id) => return Ok(Saved::New(id, login)),
                    Err(ChamiloError::LoginTaken { .. }) if lost => {
                        // Our own lost call created it, unless a racing create did: either
                        // way, this userName now has its one account.
                        return match self.live_holder(&m.user_name).await? {
                            Some(a) => Ok(Saved::New(a.id, a.login)),
                            None => Err(self.lost_create(&login)),
                        };
                    }
                    Err(ChamiloError::LoginTaken { .. }) => {
                        if let Some(next) = self.after_login_taken(m, &login).await? {
                            return Ok(next);
                        }
                        break;
                    }
                    Err(e) if e.is_ambiguous() && !lost => {
                        // Maybe created: look before sending it again.
                        lost = true;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        if let Some(a) = self.live_holder(&m.user_name).await? {
                            if a.login.eq_ignore_ascii_case(&login) {
                                return Ok(Saved::New(a.id, a.login));
                            }
                            return Err(in_use("userName"));
                        }
                    }
                    Err(e) if e.is_ambiguous() => return Err(self.lost_create(&login)),
                    Err(e) => return Err(create_refusal(e)),
                }
            }
        }
        Err(DirectoryError::Conflict {
            detail: "every Chamilo login derived from this userName is taken".into(),
        })
    }

    /// `save_user` said `login` is taken. `Ok(None)`: by an account of another userName, try
    /// the next candidate; a revival when it was this userName's account deleted through
    /// SCIM; a conflict when an account answers to this userName.
    async fn after_login_taken(
        &self,
        m: &Mapped,
        login: &str,
    ) -> Result<Option<Saved>, DirectoryError> {
        let field = self.mapping.fields.user_name.clone();
        if let Some(r) = self
            .deprovisioned_by("userName", &field, &m.user_name, true)
            .await?
        {
            return Ok(Some(Saved::Revive(Box::new(r))));
        }
        if login.eq_ignore_ascii_case(&m.user_name) {
            // An account whose login is the userName answers to it (made in Chamilo, or by a
            // create racing this one).
            return Err(in_use("userName"));
        }
        for wait in [Duration::ZERO, SETTLE] {
            tokio::time::sleep(wait).await;
            if self.live_holder(&m.user_name).await?.is_some() {
                return Err(in_use("userName"));
            }
        }
        Ok(None)
    }

    /// The live account (not deprovisioned) with this userName field, confirmed fresh.
    async fn live_holder(&self, user_name: &str) -> Result<Option<Account>, DirectoryError> {
        let field = self.mapping.fields.user_name.clone();
        let fresh = self
            .client
            .users_by_extra_field(&field, user_name, false)
            .await
            .map_err(from_chamilo)?;
        let folded = user_name.trim().to_lowercase();
        Ok(fresh
            .into_iter()
            .find(|p| {
                // Chamilo matches accent-insensitively too: a known account under another
                // spelling is someone else.
                self.lookup.index.by_id(p.id).is_none_or(|k| {
                    k.user_name
                        .as_deref()
                        .is_none_or(|u| u.trim().to_lowercase() == folded)
                })
            })
            .map(|p| Account {
                id: p.id,
                login: p.username,
                user_name: Some(user_name.to_owned()),
                partial: true,
                ..Account::default()
            }))
    }

    /// What a create of `m` meets in Chamilo: `Ok(None)` when the userName is free (and the
    /// externalId, as far as the index knows), the deprovisioned account to revive when the
    /// index knows one under these values, else a conflict. One fresh call, two when the
    /// index knows the externalId or a tombstone.
    async fn existing_for_create(&self, m: &Mapped) -> Result<Option<Revivable>, DirectoryError> {
        let fields = &self.mapping.fields;
        let index = &self.lookup.index;
        // Before the first listing the index knows nothing: every fresh check is made.
        let unlisted = !index.is_ready();
        // A value the index knows, live or tombstoned, that is no longer live in Chamilo may
        // have been tombstoned by another replica since: then the tombstone is looked up.
        let mut dead_un_possible = unlisted
            || index
                .by_user_name(&deprovisioned::tombstone(&m.user_name))
                .is_some()
            || index.by_user_name(&m.user_name).is_some();
        match self
            .lookup
            .holder_for_create(&m.user_name)
            .await
            .map_err(from_chamilo)?
        {
            Some(a) if !deprovisioned::is_deprovisioned(&a) => return Err(in_use("userName")),
            Some(_) => dead_un_possible = true,
            None => {}
        }
        let dead_un = if dead_un_possible {
            self.deprovisioned_by("userName", &fields.user_name, &m.user_name, true)
                .await?
        } else {
            None
        };
        let mut dead_ext_possible = false;
        if let Some(ext) = m.external_id.as_deref() {
            dead_ext_possible = unlisted
                || index
                    .by_external_id(&deprovisioned::tombstone(ext))
                    .is_some();
            if unlisted || index.by_external_id(ext).is_some() {
                match self
                    .lookup
                    .by_external_id(ext)
                    .await
                    .map_err(from_chamilo)?
                {
                    Some(a) if !deprovisioned::is_deprovisioned(&a) => {
                        return Err(DirectoryError::Conflict {
                            detail: match &dead_un {
                                Some(r) => format!(
                                    "externalId is already in use by another account than the one deleted through SCIM (id {}) that this create would reactivate",
                                    r.account.id
                                ),
                                None => "externalId is already in use".into(),
                            },
                        });
                    }
                    _ => dead_ext_possible = true,
                }
            }
        }
        let dead_ext = match m.external_id.as_deref() {
            Some(e) if dead_ext_possible => {
                self.deprovisioned_by("externalId", &fields.external_id, e, false)
                    .await?
            }
            _ => None,
        };
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

    /// A create whose follow-up update failed: the account is removed so that nothing
    /// half-made stays (invariant 4). `cause` is the follow-up's error.
    async fn undo_create(&self, id: u64, cause: DirectoryError) -> DirectoryError {
        match self.client.delete_user(id).await {
            Ok(DeleteOutcome::Deleted) => {
                tracing::warn!(
                    chamilo.user_id = id,
                    "removed a new account whose creation could not be completed"
                );
                cause
            }
            other => {
                let e = match other {
                    Err(e) => e,
                    Ok(_) => ChamiloError::Rejected {
                        action: "delete_user".into(),
                        message: "refused".into(),
                    },
                };
                self.incomplete(
                    "create",
                    id,
                    &["account".into()],
                    &["active".into(), "official_code".into()],
                    &e,
                )
            }
        }
    }

    /// Two lost answers in a row: whether the account exists is unknown.
    fn lost_create(&self, login: &str) -> DirectoryError {
        tracing::error!(
            chamilo.login = login,
            "save_user did not answer twice and no account was found; the identity provider is told to retry (503)"
        );
        self.client
            .report_write("create", super::WriteOutcome::Incomplete);
        DirectoryError::Unavailable {
            retry_after: Some(super::RETRY_AFTER),
        }
    }
}

fn in_use(attr: &str) -> DirectoryError {
    DirectoryError::Conflict {
        detail: format!("{attr} is already in use"),
    }
}

/// `save_user` refused the account. Its one refusal text, "User not registered.", covers a
/// login or an e-mail address Chamilo does not accept (both are checked before the call).
fn create_refusal(e: ChamiloError) -> DirectoryError {
    match &e {
        ChamiloError::Rejected { message, .. } if message == "User not registered." => invalid(
            "userName",
            "Chamilo refused to register the account (it checks the login derived from userName and the e-mail address)",
        ),
        _ => from_chamilo(e),
    }
}
