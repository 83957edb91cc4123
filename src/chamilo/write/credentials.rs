//! Renames and password changes: `WSEditUserCredentials` over SOAP, the only web service that
//! can change a login or a password.
//!
//! It addresses the account by a *handle* (an extra-field value only that account holds: its
//! userName field, or a deprovisioned account's tombstone) and refuses inactive accounts, so an
//! inactive account is activated for the call and deactivated again afterwards, whatever the
//! call's outcome. The deactivation is a write of its own, repaired and reported like any other
//! ([`ChamiloDirectory::apply`]): an account is never silently left active.
//!
//! A lost answer is repaired by sending the same call again: Chamilo excludes the account
//! itself when it checks whether the new login is taken, so a rename already applied answers
//! success again, and setting the same password twice is harmless.

use std::time::Duration;

use super::update::Touched;
use super::AccountChange;
use crate::chamilo::directory::{from_chamilo, ChamiloDirectory};
use crate::chamilo::error::ChamiloError;
use crate::chamilo::index::Account;
use crate::chamilo::mapping::{invalid, Mapped};
use crate::chamilo::username::login_candidates;
use crate::config::Secret;
use crate::directory::DirectoryError;

/// SOAP calls per candidate login at most (the first and one repair).
const SOAP_ATTEMPTS: u32 = 2;

impl ChamiloDirectory {
    /// Whether `login` is one of the logins derived from `user_name` (so that no rename is
    /// needed when the userName changes). Chamilo compares logins case-insensitively.
    pub(crate) fn login_fits(&self, login: &str, user_name: &str) -> Result<bool, DirectoryError> {
        Ok(self
            .login_candidates(user_name)?
            .iter()
            .any(|c| c.eq_ignore_ascii_case(login)))
    }

    /// The logins a userName may have, in order of preference.
    pub(crate) fn login_candidates(&self, user_name: &str) -> Result<Vec<String>, DirectoryError> {
        login_candidates(
            user_name,
            self.mapping.login_rules,
            self.mapping.login_transform,
        )
        .map_err(|e| invalid("userName", e.to_string()))
    }

    /// Renames the login when the new userName no longer fits it and sets the password when
    /// one was sent; returns the login in force afterwards and the names of what was applied
    /// (for the report should a later step fail). Without the SOAP secret the login stays
    /// (SCIM sees the userName field, not the login) and a warning says so.
    pub(crate) async fn settle_credentials(
        &self,
        current: &mut Account,
        m: &Mapped,
        touched: Touched,
    ) -> Result<(String, Vec<String>), DirectoryError> {
        let rename = touched.user_name && !self.login_fits(&current.login, &m.user_name)?;
        if !rename && m.password.is_none() {
            return Ok((current.login.clone(), Vec::new()));
        }
        if !self.client.soap_configured() {
            tracing::warn!(
                chamilo.user_id = current.id,
                "chamilo.security_key is not configured: the login is not renamed and no password is set (SOAP is needed for both)"
            );
            return Ok((current.login.clone(), Vec::new()));
        }
        let mut applied = Vec::new();
        let field = self.mapping.fields.user_name.clone();
        if current.user_name.is_none() {
            // SOAP addresses users by a userName-field handle: give an account made outside
            // SCIM one (the userName it answered to: its login). It is adopted from now on.
            let change = AccountChange {
                columns: Vec::new(),
                extras: vec![(field.clone(), current.login.clone())],
            };
            self.apply("update", current.id, &current.login, change)
                .await?;
            current.user_name = Some(current.login.clone());
            applied.push(field.clone());
            self.lookup.index.upsert(current.clone());
            tracing::info!(
                chamilo.user_id = current.id,
                "adopted existing Chamilo account"
            );
        }
        let handle = current.user_name.clone().unwrap_or_default();
        let login = self
            .edit_credentials(current, (&field, &handle), m, rename)
            .await?;
        current.login = login.clone();
        applied.extend(credential_names(rename, m));
        Ok((login, applied))
    }

    /// Renames (to the first free login derived from `m.user_name`, when `rename`) and/or sets
    /// `m.password`, for the account addressed by `handle`. Returns the login in force.
    pub(crate) async fn edit_credentials(
        &self,
        current: &Account,
        handle: (&str, &str),
        m: &Mapped,
        rename: bool,
    ) -> Result<String, DirectoryError> {
        let logins = if rename {
            self.login_candidates(&m.user_name)?
        } else {
            vec![current.login.clone()]
        };
        let password = m.password.clone().map(Secret::new);
        if !current.active {
            self.apply(
                "credentials",
                current.id,
                &current.login,
                AccountChange::columns(vec![("active", "1".into())]),
            )
            .await?;
        }
        let result = self
            .soap_credentials(current.id, handle, &logins, password.as_ref())
            .await;
        if !current.active {
            // Restore the state whatever the edit did (invariant 4), under the login in force.
            let login = match &result {
                Ok(login) => login.clone(),
                Err(_) => self
                    .login_now(current.id, handle)
                    .await
                    .unwrap_or_else(|| current.login.clone()),
            };
            let mut earlier = vec!["active".to_owned()];
            if result.is_ok() {
                earlier.extend(credential_names(rename, m));
            }
            self.apply_after(
                "credentials",
                current.id,
                &login,
                AccountChange::columns(vec![("active", "0".into())]),
                &earlier,
            )
            .await?;
        }
        result
    }

    async fn soap_credentials(
        &self,
        id: u64,
        (field, handle): (&str, &str),
        logins: &[String],
        password: Option<&Secret>,
    ) -> Result<String, DirectoryError> {
        for login in logins {
            let mut attempt = 0;
            loop {
                attempt += 1;
                match self
                    .client
                    .edit_user_credentials(field, handle, login, password)
                    .await
                {
                    Ok(true) => return Ok(login.clone()),
                    // Taken by another account (the handle is fresh and the account active).
                    Ok(false) => break,
                    Err(e) if e.is_ambiguous() && attempt < SOAP_ATTEMPTS => {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    Err(e) if e.is_ambiguous() => {
                        return Err(self.incomplete(
                            "credentials",
                            id,
                            &[],
                            &["login or password".to_owned()],
                            &e,
                        ));
                    }
                    Err(e) => return Err(soap_refusal(e)),
                }
            }
        }
        Err(DirectoryError::Conflict {
            detail: "every Chamilo login derived from this userName is taken".into(),
        })
    }

    /// The login of account `id` now, found by its handle (one fresh call).
    async fn login_now(&self, id: u64, (field, handle): (&str, &str)) -> Option<String> {
        self.client
            .users_by_extra_field(field, handle, false)
            .await
            .ok()?
            .into_iter()
            .find(|p| p.id == id)
            .map(|p| p.username)
    }
}

/// A SOAP call Chamilo refused: a wrong secret or no secret configured is the operator's to
/// fix (503, so the identity provider retries once it is), anything else as usual.
fn soap_refusal(e: ChamiloError) -> DirectoryError {
    match e {
        ChamiloError::Config { .. } | ChamiloError::Unauthorized { .. } => {
            tracing::error!(error = %e, "Chamilo's SOAP service refused the proxy");
            DirectoryError::Unavailable {
                retry_after: Some(super::RETRY_AFTER),
            }
        }
        other => from_chamilo(other),
    }
}

/// What a successful `WSEditUserCredentials` applied, by name (never values).
pub(crate) fn credential_names(rename: bool, m: &Mapped) -> Vec<String> {
    let mut names = Vec::new();
    if rename {
        names.push("login".to_owned());
    }
    if m.password.is_some() {
        names.push("password".to_owned());
    }
    names
}
