//! The write protocol: how a SCIM write becomes Chamilo calls that leave a safe state whatever
//! Chamilo does (`docs/chamilo.md`, "Writes").
//!
//! What a real Chamilo 1.11 does with one `update_user_from_username` call (transcript
//! `rest-current-1.11-writes.txt`, and `Rest::updateUserFromUserName`):
//! - it walks the parameters in request order; a column value (names, e-mail, `active`,
//!   `status`, …) is only noted, `language` is checked when reached, and each extra-field value
//!   is saved at once, one by one;
//! - the columns are written once, at the end, only if nothing failed before;
//! - saving an extra-field value that the row already holds fails when that row was written
//!   in the same second, and so does a field that does not exist.
//!
//! So this module:
//! - sends only what changes ([`AccountChange`] is computed against the freshest state the
//!   proxy has, never written whole from an index entry);
//! - puts the columns before the extra fields in the request, so that a refused column value
//!   stops the call before anything is saved, and an extra field that fails leaves no column
//!   written;
//! - sends a deactivation alone, first, so that it never depends on an extra field;
//! - repairs what it can ([`ChamiloDirectory::apply`]): an extra field refused because it
//!   already holds its value is read back and counted as done, an answer that may have been
//!   lost is sent again (a column is idempotent, an extra field already saved is recognised as
//!   above), a value refused in its second is tried once more in the next one;
//! - and reports what it cannot: an ERROR line with the Chamilo user id and what was and was
//!   not applied, `chamilo_writes_total{outcome="incomplete"}`, and a 503 with `Retry-After`
//!   that Entra ID and Okta retry. Never a 2xx for something not done.
//!
//! The operations, one file each: [`create`], [`update`] (PUT and PATCH), [`deprovision`]
//! (DELETE), [`revive`] (a create that brings back an account deleted through SCIM) and
//! [`credentials`] (renames and passwords, through SOAP).

pub mod create;
pub mod credentials;
pub mod deprovision;
pub mod revive;
pub mod update;

use std::time::Duration;

use super::directory::{from_chamilo, ChamiloDirectory, LANGUAGE_UNAVAILABLE};
use super::error::ChamiloError;
use crate::directory::DirectoryError;

/// Calls made for one step at most, the first included (a repair is a second or third call).
const STEP_ATTEMPTS: u32 = 3;

/// What the identity provider is told to wait before retrying an incomplete write.
pub const RETRY_AFTER: Duration = Duration::from_secs(10);

/// How a write ended, for `chamilo_writes_total{operation,outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteOutcome {
    /// Every call answered success at once.
    Applied,
    /// A call failed and was repaired (read back, or sent again).
    Repaired,
    /// Part of it is applied or unknown and could not be repaired: reported, 503.
    Incomplete,
    /// Chamilo refused it before anything was applied: 4xx.
    Refused,
}

impl WriteOutcome {
    /// A stable label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Repaired => "repaired",
            Self::Incomplete => "incomplete",
            Self::Refused => "refused",
        }
    }
}

/// One change of one account through `update_user_from_username`: the columns (written by
/// Chamilo at the end of the call, all or none) and the extra-field values (saved one by one
/// before them). Only what differs from the account's current state belongs here.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AccountChange {
    /// Keys among `client::UPDATABLE_KEYS`, with their new values.
    pub columns: Vec<(&'static str, String)>,
    /// Extra-field variables and their new values, in the order they are to be saved.
    pub extras: Vec<(String, String)>,
}

impl AccountChange {
    /// A change of columns only.
    pub fn columns(columns: Vec<(&'static str, String)>) -> Self {
        Self {
            columns,
            extras: Vec::new(),
        }
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty() && self.extras.is_empty()
    }

    /// What it writes, by name (never values: logs carry these).
    pub fn names(&self) -> Vec<String> {
        self.columns
            .iter()
            .map(|(k, _)| (*k).to_owned())
            .chain(self.extras.iter().map(|(k, _)| k.clone()))
            .collect()
    }

    /// Whether it sets `active` to 0.
    pub fn deactivates(&self) -> bool {
        self.columns.iter().any(|(k, v)| *k == "active" && v == "0")
    }

    /// Whether Chamilo may refuse part of it: an extra field (not saved) or the language
    /// (checked against the installed ones). Every other column is taken as it is.
    fn may_be_refused(&self) -> bool {
        !self.extras.is_empty() || self.columns.iter().any(|(k, _)| *k == "language")
    }

    /// The calls that carry this change, in order. A deactivation goes first, on its own,
    /// when the rest could be refused: an extra field that cannot be saved, or a language
    /// Chamilo refuses, must never keep a leaver active.
    pub fn into_calls(self) -> Vec<AccountChange> {
        if !self.deactivates() || !self.may_be_refused() {
            return if self.is_empty() {
                Vec::new()
            } else {
                vec![self]
            };
        }
        let (deactivate, columns): (Vec<_>, Vec<_>) =
            self.columns.into_iter().partition(|(k, _)| *k == "active");
        let rest = AccountChange {
            columns,
            extras: self.extras,
        };
        let mut calls = vec![AccountChange::columns(deactivate)];
        if !rest.is_empty() {
            calls.push(rest);
        }
        calls
    }
}

/// A step that could not be completed.
struct StepFailure {
    /// Names of what this step did save (extra fields before the one that failed).
    applied: Vec<String>,
    /// Names of what it may not have saved.
    pending: Vec<String>,
    cause: ChamiloError,
    /// Chamilo refused the first attempt before saving anything.
    nothing_applied: bool,
}

impl ChamiloDirectory {
    /// Applies `change` to the account `id` (login `login`) as [`AccountChange::into_calls`]
    /// orders it, each call verified and repaired (see the module documentation). `operation`
    /// names the SCIM operation in logs and metrics.
    ///
    /// A refusal of the first call before anything was saved is the client's to fix and comes
    /// back as the matching 4xx; anything that leaves part of the change applied or unknown is
    /// reported and comes back as 503 with `Retry-After`.
    pub(crate) async fn apply(
        &self,
        operation: &'static str,
        id: u64,
        login: &str,
        change: AccountChange,
    ) -> Result<(), DirectoryError> {
        self.apply_after(operation, id, login, change, &[]).await
    }

    /// [`Self::apply`] as a later step of an operation whose earlier steps applied `earlier`
    /// (names, e.g. a password set through SOAP): a refusal then leaves the operation part
    /// done, so it is reported as incomplete (503), never answered 4xx as if nothing changed.
    pub(crate) async fn apply_after(
        &self,
        operation: &'static str,
        id: u64,
        login: &str,
        change: AccountChange,
        earlier: &[String],
    ) -> Result<(), DirectoryError> {
        let calls = change.into_calls();
        let mut done: Vec<String> = earlier.to_vec();
        let mut repaired = false;
        for (i, step) in calls.iter().enumerate() {
            match self.apply_step(id, login, step.clone()).await {
                Ok(was_repaired) => {
                    repaired |= was_repaired;
                    done.extend(step.names());
                }
                Err(f)
                    if i == 0
                        && earlier.is_empty()
                        && f.nothing_applied
                        && !f.cause.is_ambiguous() =>
                {
                    self.client.report_write(operation, WriteOutcome::Refused);
                    return Err(self.refused(f.cause, &step.names()));
                }
                Err(f) => {
                    done.extend(f.applied);
                    let mut pending = f.pending;
                    for later in &calls[i + 1..] {
                        pending.extend(later.names());
                    }
                    return Err(self.incomplete(operation, id, &done, &pending, &f.cause));
                }
            }
        }
        if !calls.is_empty() {
            let outcome = if repaired {
                WriteOutcome::Repaired
            } else {
                WriteOutcome::Applied
            };
            self.client.report_write(operation, outcome);
        }
        Ok(())
    }

    /// One `update_user_from_username` call, repaired: `Ok(true)` when it took more than one
    /// call to get it applied.
    async fn apply_step(
        &self,
        id: u64,
        login: &str,
        mut change: AccountChange,
    ) -> Result<bool, StepFailure> {
        let mut applied: Vec<String> = Vec::new();
        let mut attempt = 0;
        let mut maybe_applied = false;
        loop {
            attempt += 1;
            let cause = match self
                .client
                .update_user(login, &change.columns, &change.extras)
                .await
            {
                Ok(()) => return Ok(attempt > 1),
                Err(e) => e,
            };
            let give_up =
                |change: &AccountChange, applied: Vec<String>, cause, maybe: bool| StepFailure {
                    nothing_applied: applied.is_empty() && !maybe,
                    applied,
                    pending: change.names(),
                    cause,
                };
            match &cause {
                ChamiloError::ExtraFieldNotSaved { field, .. } => {
                    // Saved one by one, in order: those before the one named were saved; no
                    // column was written.
                    let at = field
                        .as_deref()
                        .and_then(|f| change.extras.iter().position(|(n, _)| n == f))
                        .unwrap_or(0);
                    applied.extend(change.extras.drain(..at).map(|(n, _)| n));
                    let holds = match change.extras.first() {
                        Some((name, value)) if !value.is_empty() => {
                            match self.holds_value(id, name, value).await {
                                Ok(h) => h,
                                Err(e) => return Err(give_up(&change, applied, e, true)),
                            }
                        }
                        _ => false,
                    };
                    if holds {
                        // Already stored (written in the same second by this proxy, another
                        // replica or a retry): done, not an error.
                        applied.extend(change.extras.drain(..1).map(|(n, _)| n));
                        if change.is_empty() {
                            return Ok(true);
                        }
                    } else if attempt >= STEP_ATTEMPTS {
                        return Err(give_up(&change, applied, cause, maybe_applied));
                    } else {
                        // Unchanged values are refused only within the second they were
                        // written (or the field is missing, and the next try says so again).
                        tokio::time::sleep(Duration::from_millis(1100)).await;
                    }
                }
                e if e.is_ambiguous() && attempt < STEP_ATTEMPTS => {
                    // It may have been carried out. Sending the same values again is safe:
                    // columns are idempotent, and an extra field saved by the lost call comes
                    // back as "not saved" and is read back above.
                    maybe_applied = true;
                    tokio::time::sleep(Duration::from_millis(150 * u64::from(attempt))).await;
                }
                _ => return Err(give_up(&change, applied, cause, maybe_applied)),
            }
        }
    }

    /// Whether Chamilo finds the account `id` by `value` in the extra field `field` (one fresh
    /// call). Chamilo compares case-insensitively; a value refused as unchanged differs from the
    /// stored one in nothing Chamilo would save, so a match means it is stored.
    async fn holds_value(&self, id: u64, field: &str, value: &str) -> Result<bool, ChamiloError> {
        Ok(self
            .client
            .users_by_extra_field(field, value, false)
            .await?
            .iter()
            .any(|p| p.id == id))
    }

    /// Logs and counts a write that is partly applied or unknown, and answers 503.
    pub(crate) fn incomplete(
        &self,
        operation: &'static str,
        id: u64,
        applied: &[String],
        pending: &[String],
        cause: &ChamiloError,
    ) -> DirectoryError {
        tracing::error!(
            chamilo.user_id = id,
            scim.operation = operation,
            applied = ?applied,
            not_applied = ?pending,
            error = %cause,
            "a SCIM write could not be completed in Chamilo; the identity provider is told to retry (503)"
        );
        self.client
            .report_write(operation, WriteOutcome::Incomplete);
        DirectoryError::Unavailable {
            retry_after: Some(RETRY_AFTER),
        }
    }
}

impl ChamiloDirectory {
    /// The answer to a write Chamilo refused before saving anything. A refused value is the
    /// client's to fix (400 `invalidValue` naming the SCIM attributes of the refused call);
    /// a missing extra field is the operator's (503).
    fn refused(&self, cause: ChamiloError, fields: &[String]) -> DirectoryError {
        match cause {
            ChamiloError::ExtraFieldNotSaved { field, .. } => {
                // Nothing was saved and the value is not stored: the field is missing (it was
                // checked at start-up; an administrator deleted it since).
                tracing::error!(
                    field = field.as_deref().unwrap_or("?"),
                    "Chamilo cannot save a user extra field the proxy relies on; does it still exist?"
                );
                DirectoryError::Unavailable {
                    retry_after: Some(RETRY_AFTER),
                }
            }
            ChamiloError::Rejected { message, .. } if !is_known_refusal(&message) => {
                let mut attrs: Vec<String> = fields
                    .iter()
                    .map(|f| self.mapping.scim_attribute_of(f))
                    .collect();
                attrs.dedup();
                DirectoryError::InvalidValue {
                    attr: attrs.join(", "),
                    detail: format!("Chamilo refused the value: {message}"),
                }
            }
            other => from_chamilo(other),
        }
    }
}

/// Refusals [`from_chamilo`] already answers precisely.
fn is_known_refusal(message: &str) -> bool {
    message == LANGUAGE_UNAVAILABLE
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(columns: &[(&'static str, &str)], extras: &[(&str, &str)]) -> AccountChange {
        AccountChange {
            columns: columns.iter().map(|(k, v)| (*k, (*v).to_owned())).collect(),
            extras: extras
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn a_deactivation_goes_first_and_alone() {
        let c = change(
            &[
                ("firstname", "Ann"),
                ("active", "0"),
                ("language", "french"),
            ],
            &[("scim_user_name", "ann")],
        );
        let calls = c.into_calls();
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0], change(&[("active", "0")], &[]));
        assert_eq!(
            calls[1],
            change(
                &[("firstname", "Ann"), ("language", "french")],
                &[("scim_user_name", "ann")]
            )
        );
    }

    #[test]
    fn other_changes_are_one_call() {
        let c = change(&[("active", "0")], &[]);
        assert_eq!(c.clone().into_calls(), vec![c]);
        let c = change(&[("active", "1")], &[("scim_external_id", "E")]);
        assert_eq!(c.clone().into_calls(), vec![c]);
        // Columns Chamilo takes as they are go with the deactivation.
        let c = change(&[("active", "0"), ("official_code", "A")], &[]);
        assert_eq!(c.clone().into_calls(), vec![c]);
        let c = change(&[("active", "0"), ("language", "french")], &[]);
        assert_eq!(c.into_calls().len(), 2);
        assert!(AccountChange::default().into_calls().is_empty());
    }

    #[test]
    fn names_never_carry_values() {
        let c = change(
            &[("email", "a@b.org")],
            &[("scim_external_id", "SECRET-ISH")],
        );
        assert_eq!(c.names(), vec!["email", "scim_external_id"]);
    }
}
