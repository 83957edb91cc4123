//! A create that meets an account deleted through SCIM (a tombstone in its userName or
//! externalId field, see `deprovisioned`) brings it back: same Chamilo id, its course history
//! kept. The create's state is written like a PUT, the tombstones are replaced by the live
//! values and the account is activated, all in one call whose columns Chamilo writes last, so
//! that a failure before the end leaves the account deprovisioned.

use super::update::Touched;
use crate::chamilo::client::Profile;
use crate::chamilo::deprovisioned;
use crate::chamilo::directory::{from_chamilo, ChamiloDirectory};
use crate::chamilo::index::Account;
use crate::chamilo::mapping::Mapped;
use crate::directory::{DirectoryError, User};

/// A deprovisioned account a create may bring back.
pub(crate) struct Revivable {
    pub account: Account,
    /// The extra field and tombstone it was found by: the SOAP handle for a new password or
    /// login.
    pub handle: (String, String),
    /// Whether the handle names this account alone in Chamilo.
    pub handle_is_unique: bool,
}

impl ChamiloDirectory {
    /// The deprovisioned account whose `field` holds the tombstone of `value` (one fresh
    /// call), for a create to revive. `case_insensitive` as SCIM compares the attribute
    /// (userName yes, externalId no). Chamilo matches case- and accent-insensitively: an
    /// account the index knows under another tombstone is someone else and left out. More
    /// than one match is a conflict (never merged).
    pub(crate) async fn deprovisioned_by(
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

    /// Brings `r` back with the state `m` of a create.
    pub(crate) async fn revive(&self, r: Revivable, m: &Mapped) -> Result<User, DirectoryError> {
        let mut current = r.account;
        // The login stays unless it is not one derived from the new userName (revived by
        // externalId under another userName): then it is renamed like a PUT would.
        let rename = !self.login_fits(&current.login, &m.user_name)?;
        let mut login = current.login.clone();
        let mut earlier = Vec::new();
        if (rename || m.password.is_some()) && self.client.soap_configured() {
            if !r.handle_is_unique {
                return Err(DirectoryError::Conflict {
                    detail: "several Chamilo accounts carry the tombstone of the account to reactivate; its password or login cannot be set".into(),
                });
            }
            let (field, value) = (&r.handle.0, &r.handle.1);
            login = self
                .edit_credentials(&current, (field, value), m, rename)
                .await?;
            current.login = login.clone();
            earlier = super::credentials::credential_names(rename, m);
        }
        let (change, after) = self.plan(&current, login, m, Touched::ALL, true);
        self.apply_after("create", current.id, &after.login, change, &earlier)
            .await?;
        self.lookup.index.upsert(after.clone());
        tracing::info!(
            chamilo.user_id = current.id,
            "reactivated a user deleted through SCIM"
        );
        if let Some(u) = &m.unmapped_language {
            u.warn(current.id);
        }
        Ok(self.to_user(&after))
    }
}
