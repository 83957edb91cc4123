//! SCIM `DELETE`, under the configured policy (`chamilo.deprovision`).
//!
//! The soft delete (`deactivate`, the default) is two steps, in this order:
//! 1. `active=0`, alone (skipped when the fresh read says the account is already inactive:
//!    Entra ID deactivates before it deletes);
//! 2. the tombstones: the externalId field, then the userName field, become
//!    `scim-deprovisioned:<value>` (see `deprovisioned`), so the account answers 404 on every
//!    replica.
//!
//! A failure in step 2 leaves a deactivated account that SCIM still finds, and the answer is
//! 503: the identity provider sends the DELETE again. A failure in step 1 changes nothing.

use super::AccountChange;
use crate::chamilo::client::DeleteOutcome;
use crate::chamilo::deprovisioned;
use crate::chamilo::directory::{from_chamilo, reserved_account, ChamiloDirectory};
use crate::chamilo::index::Account;
use crate::chamilo::mapping::Deprovision;
use crate::directory::DirectoryError;

impl ChamiloDirectory {
    /// SCIM `DELETE` of the user `id`.
    pub(crate) async fn delete_user(&self, id: &str) -> Result<(), DirectoryError> {
        self.confirmed.forget(id);
        let current = self.account(id).await?.ok_or(DirectoryError::NotFound)?;
        if self.mapping.is_protected(&current.login) || self.lookup.is_reserved(&current) {
            return Err(reserved_account());
        }
        match self.mapping.deprovision {
            Deprovision::Deactivate => self.deactivate(&current).await,
            Deprovision::Delete | Deprovision::DeleteOrDeactivate => {
                match self.hard_delete(&current).await? {
                    DeleteOutcome::Deleted => {
                        self.lookup.index.remove(current.id);
                        tracing::info!(chamilo.user_id = current.id, "deleted user");
                        Ok(())
                    }
                    DeleteOutcome::Refused
                        if self.mapping.deprovision == Deprovision::DeleteOrDeactivate =>
                    {
                        self.deactivate(&current).await
                    }
                    DeleteOutcome::Refused => Err(DirectoryError::Conflict {
                        detail: "Chamilo refuses to delete the only teacher of a course".into(),
                    }),
                }
            }
        }
    }

    /// `delete_user`, sent again once when its answer was lost (deleting twice answers the
    /// same: Chamilo reports success for an id that no longer exists).
    async fn hard_delete(&self, current: &Account) -> Result<DeleteOutcome, DirectoryError> {
        match self.client.delete_user(current.id).await {
            Err(e) if e.is_ambiguous() => {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                self.client.delete_user(current.id).await.map_err(|e| {
                    if e.is_ambiguous() {
                        self.incomplete("delete", current.id, &[], &["account".into()], &e)
                    } else {
                        from_chamilo(e)
                    }
                })
            }
            other => other.map_err(from_chamilo),
        }
    }

    /// The soft delete: deactivated first, then tombstoned. An account made outside SCIM is
    /// adopted under the tombstone of its login (the userName it answered to).
    async fn deactivate(&self, current: &Account) -> Result<(), DirectoryError> {
        let fields = &self.mapping.fields;
        let answers_to = current.user_name.as_deref().unwrap_or(&current.login);
        let user_name = deprovisioned::tombstone(answers_to);
        let external_id = current.external_id.as_deref().map(deprovisioned::tombstone);
        let mut extras = Vec::new();
        match &external_id {
            Some(t) => extras.push((fields.external_id.clone(), t.clone())),
            // Unknown to this replica (learned from a fresh lookup only): cleared, so that it
            // cannot find the account any more.
            None if current.partial => extras.push((fields.external_id.clone(), String::new())),
            None => {}
        }
        extras.push((fields.user_name.clone(), user_name.clone()));
        let columns = if current.active {
            vec![("active", "0".to_owned())]
        } else {
            Vec::new()
        };
        self.apply(
            "delete",
            current.id,
            &current.login,
            AccountChange { columns, extras },
        )
        .await?;
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
    }
}
