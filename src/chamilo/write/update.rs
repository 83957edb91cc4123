//! PUT and PATCH of a user: the new state is compared with the account's freshest known state
//! and only the difference is written.
//!
//! What is fresh: the read that precedes every write (`users_profiles_by_extra_field`) gives
//! the login, `active`, `status`, `phone`, `official_code` and the full name, and confirms the
//! userName field. The first and last names, the e-mail, the externalId and the attributes
//! field come from the index (the last listing, or this replica's own writes), because no
//! web service returns them for one account. So:
//! - a PATCH writes only the attributes its operations changed: an attribute it did not touch
//!   is never written back from a possibly stale index entry (another replica may have changed
//!   it since);
//! - a PUT states the whole resource: every attribute is written whose value differs from
//!   the freshest state known, and the names also when the fresh full name does not match the
//!   index (changed in Chamilo or through another replica since the listing).

use super::AccountChange;
use crate::chamilo::directory::{reserved_account, ChamiloDirectory};
use crate::chamilo::index::Account;
use crate::chamilo::kept::KeptAttributes;
use crate::chamilo::mapping::Mapped;
use crate::directory::{DirectoryError, User};

/// Which attributes a write sets: all of them for PUT (and a revival), the ones its operations
/// changed for PATCH.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Touched {
    pub firstname: bool,
    pub lastname: bool,
    pub email: bool,
    pub phone: bool,
    pub official_code: bool,
    pub status: bool,
    pub language: bool,
    pub active: bool,
    pub user_name: bool,
    pub external_id: bool,
    /// The attributes kept in the attributes extra field (everything Chamilo has no column
    /// for, as sent, and an unassigned `active`).
    pub kept: bool,
}

impl Touched {
    /// Every attribute (PUT).
    pub const ALL: Self = Self {
        firstname: true,
        lastname: true,
        email: true,
        phone: true,
        official_code: true,
        status: true,
        language: true,
        active: true,
        user_name: true,
        external_id: true,
        kept: true,
    };

    /// What a PATCH changed: the attributes whose mapped value differs between the state the
    /// engine read and the state after its operations.
    pub fn between(before: &Mapped, after: &Mapped) -> Self {
        let tags = |m: &Mapped| {
            (
                m.kept.get_str("preferredLanguage").map(str::to_owned),
                m.kept.get_str("locale").map(str::to_owned),
            )
        };
        Self {
            firstname: before.firstname != after.firstname,
            lastname: before.lastname != after.lastname,
            email: before.email != after.email,
            phone: before.phone != after.phone,
            official_code: before.official_code != after.official_code,
            status: before.status != after.status,
            language: before.language != after.language || tags(before) != tags(after),
            active: before.active != after.active,
            user_name: before.user_name != after.user_name,
            external_id: before.external_id != after.external_id,
            kept: !before.kept.same_content(&after.kept),
        }
    }
}

/// Whether the fresh full name (`firstname lastname`, or the other order on sites that show
/// the family name first) is what the index holds: then the index's names are current.
fn names_are_current(a: &Account) -> bool {
    let Some(full) = a.full_name.as_deref() else {
        return false;
    };
    let first = a.firstname.as_deref().unwrap_or("");
    let joined = |x: &str, y: &str| format!("{x} {y}").trim().to_owned();
    let full = full.trim();
    full == joined(first, &a.lastname) || full == joined(&a.lastname, first)
}

impl ChamiloDirectory {
    /// PUT (`base: None`) or PATCH (`base`: the state the engine read and patched).
    /// `expected_version`: the version the engine read (and checked `If-Match` against); when
    /// this write has to read the account again (the engine's read is no longer fresh), a
    /// change since is `PreconditionFailed` (the engine retries a PATCH without `If-Match`).
    pub(crate) async fn update_user(
        &self,
        id: &str,
        user: User,
        base: Option<&User>,
        expected_version: Option<&str>,
    ) -> Result<User, DirectoryError> {
        let mut m = self.mapping.map(&user)?;
        // Without `active` (PUT without it, PATCH remove) the account is active, Chamilo's only
        // unassigned state, and the absence is remembered so that it round-trips.
        m.kept.active_unassigned = user.active().is_none();
        let touched = match base.map(|b| (b, self.mapping.map(b))) {
            Some((b, Ok(mut before))) => {
                before.kept.active_unassigned = b.active().is_none();
                Touched::between(&before, &m)
            }
            // A state the mapping cannot read back (edited in Chamilo beyond its rules):
            // written like a PUT.
            _ => Touched::ALL,
        };
        let mut current = match self.confirmed.take(id) {
            // The read the engine checked the version of.
            Some(current) => current,
            None => {
                let current = self.account(id).await?.ok_or(DirectoryError::NotFound)?;
                if expected_version.is_some_and(|v| self.to_user(&current).version() != Some(v)) {
                    return Err(DirectoryError::PreconditionFailed);
                }
                current
            }
        };
        if self.mapping.is_protected(&current.login) || self.lookup.is_reserved(&current) {
            return Err(reserved_account());
        }
        // The userName the account answers to now: its field, or (not yet adopted) its login.
        let answers_to = current.user_name.as_deref().unwrap_or(&current.login);
        if touched.user_name && !answers_to.eq_ignore_ascii_case(&m.user_name) {
            if let Some(other) = self
                .lookup
                .by_user_name(&m.user_name)
                .await
                .map_err(crate::chamilo::directory::from_chamilo)?
            {
                if other.id != current.id {
                    return Err(DirectoryError::Conflict {
                        detail: "userName is already in use".into(),
                    });
                }
            }
        }
        if m.email.is_none() && !current.partial {
            return Err(crate::chamilo::mapping::invalid(
                "emails",
                "Chamilo requires an e-mail address",
            ));
        }
        let (login, earlier) = self.settle_credentials(&mut current, &m, touched).await?;
        let (change, after) = self.plan(&current, login, &m, touched, false);
        let names = change.names();
        self.apply_after("update", current.id, &after.login, change, &earlier)
            .await?;
        if let Some(u) = m.unmapped_language.as_ref() {
            if names.iter().any(|n| n == "language") {
                u.warn(current.id);
            }
        }
        if !names.is_empty() {
            tracing::info!(chamilo.user_id = current.id, changed = ?names, "updated user");
        }
        self.lookup.index.upsert(after.clone());
        Ok(self.to_user(&after))
    }

    /// The change that brings `current` (whose login is now `login`) to the state `m`, for the
    /// attributes `touched`, and the account as it will be once applied. `revive`: `current`
    /// is an account deleted through SCIM that a create brings back: its state is the create's
    /// alone, and the tombstones are replaced whatever they hold.
    pub(crate) fn plan(
        &self,
        current: &Account,
        login: String,
        m: &Mapped,
        touched: Touched,
        revive: bool,
    ) -> (AccountChange, Account) {
        let fields = &self.mapping.fields;
        // A value the proxy never knew (an account learned from a fresh lookup only) is left
        // alone when the new state lacks it; a known one is cleared.
        let keep_unknown = current.partial && !revive;
        let mut after = current.clone();
        after.login = login;
        let mut columns: Vec<(&'static str, String)> = Vec::new();
        let names_current = !revive && names_are_current(current);
        let firstname = match (&m.firstname, keep_unknown) {
            (Some(f), _) => Some(f.clone()),
            (None, false) => Some(String::new()),
            (None, true) => None,
        };
        if let (true, Some(f)) = (touched.firstname, firstname) {
            if !names_current || current.firstname.as_deref().unwrap_or("") != f {
                columns.push(("firstname", f.clone()));
            }
            after.firstname = Some(f);
        }
        let lastname = match (&m.lastname, keep_unknown) {
            (Some(l), _) => Some(l.clone()),
            (None, false) => Some(String::new()),
            (None, true) => None,
        };
        if let (true, Some(l)) = (touched.lastname, lastname) {
            if !names_current || current.lastname != l {
                columns.push(("lastname", l.clone()));
            }
            after.lastname = l;
        }
        if let (true, Some(e)) = (touched.email, &m.email) {
            if revive || current.partial || current.email != *e {
                columns.push(("email", e.clone()));
            }
            after.email = e.clone();
        }
        // Phone and official code are cleared only when they were known (and so returned to
        // the identity provider): an attribute the proxy could not read is not wiped by a
        // PATCH round trip that could not carry it.
        for (key, touched, want, have, slot) in [
            (
                "phone",
                touched.phone,
                &m.phone,
                &current.phone,
                &mut after.phone,
            ),
            (
                "official_code",
                touched.official_code,
                &m.official_code,
                &current.official_code,
                &mut after.official_code,
            ),
        ] {
            if !touched {
                continue;
            }
            let write = match have {
                Some(have) => *have != want.clone().unwrap_or_default(),
                None => want.is_some(),
            };
            if write {
                columns.push((key, want.clone().unwrap_or_default()));
            }
            *slot = want.clone();
        }
        if let (true, Some(s)) = (touched.status, m.status) {
            if revive || current.status != Some(s) {
                columns.push(("status", s.to_string()));
            }
            after.status = Some(s);
        }
        if let (true, Some(l)) = (touched.language, &m.language) {
            // Chamilo's language cannot be read: it is written when the tags the identity
            // provider sent change (they are kept in the attributes field).
            let kept = current
                .attributes
                .as_deref()
                .map(KeptAttributes::decode)
                .unwrap_or_default();
            let same_tags = ["preferredLanguage", "locale"]
                .iter()
                .all(|t| kept.get_str(t) == m.kept.get_str(t));
            if revive || current.attributes.is_none() || !same_tags {
                columns.push(("language", l.clone()));
            }
        }
        if touched.active && (revive || m.active != current.active) {
            columns.push(("active", if m.active { "1" } else { "0" }.into()));
        }
        if touched.active {
            after.active = m.active;
        }
        // Extra fields, the userName last: it is the SCIM identity, and a call that fails
        // before it leaves the account answering to its old one.
        let mut extras: Vec<(String, String)> = Vec::new();
        if touched.external_id {
            let want = m.external_id.clone().unwrap_or_default();
            let write = revive
                || match &current.external_id {
                    Some(have) => *have != want,
                    None => !want.is_empty() || !keep_unknown,
                };
            if write {
                extras.push((fields.external_id.clone(), want));
            }
            after.external_id = m.external_id.clone();
        }
        let user_name_write =
            touched.user_name && (revive || current.user_name.as_deref() != Some(&m.user_name));
        // The attributes field: what Chamilo has no column for, as sent, and the dates of the
        // proxy's writes. It is written when its content changes, and by every write that
        // changes anything else (for `meta.lastModified`); never with the value it holds (a
        // rewrite in the same second fails on a real Chamilo).
        let have = current
            .attributes
            .as_deref()
            .map(KeptAttributes::decode)
            .unwrap_or_default();
        let mut kept = if touched.kept {
            m.kept.clone()
        } else {
            have.clone()
        };
        kept.created = have.created.clone();
        let write = if revive {
            true
        } else if keep_unknown && current.attributes.is_none() {
            // Like the names above, what a partial account holds is unknown: not cleared by a
            // state that lacks it, nor rewritten for a date alone.
            touched.kept && !m.kept.attributes.is_empty()
        } else {
            (touched.kept && !have.same_content(&m.kept))
                || !columns.is_empty()
                || !extras.is_empty()
                || user_name_write
        };
        if write {
            kept.last_modified = Some(crate::chamilo::kept::timestamp_after(
                have.last_modified.as_deref(),
                chrono::Utc::now(),
            ));
            let attributes = kept.encode();
            extras.push((fields.attributes.clone(), attributes.clone()));
            after.attributes = Some(attributes).filter(|a| !a.is_empty());
        }
        if user_name_write {
            extras.push((fields.user_name.clone(), m.user_name.clone()));
        }
        if touched.user_name {
            after.user_name = Some(m.user_name.clone());
        }
        after.partial = keep_unknown && (m.firstname.is_none() || m.email.is_none());
        (AccountChange { columns, extras }, after)
    }
}
