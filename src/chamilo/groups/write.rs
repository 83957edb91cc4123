//! Writes of classes, with the users' write protocol (`super::super::write`): send only what
//! changes, verify every call, repair what can be repaired (a lost answer is sent again:
//! `add_group_sub_user` and `delete_group_sub_user` are idempotent), and report the rest as
//! incomplete — an ERROR line naming the class and exactly which changes were and were not
//! applied, `chamilo_writes_total{operation="group_…",outcome="incomplete"}` and a 503 with
//! `Retry-After`. The identity provider's retry reads the class again, so the difference it
//! applies is recomputed and completes the change.
//!
//! | operation | calls (normal case) |
//! |---|---|
//! | create | `get_groups`, `add_group` (the SCIM values in its description), one `add_group_sub_user` per member (four at a time) |
//! | modify | `get_groups`; a rename or new `externalId`: SOAP `WSUpdateGroup` + `get_groups` to verify (it answers 1 even for a missing id); one call per member added or removed |
//! | delete | `get_groups` (only a class, never a social group, is deleted), `delete_group` |

use std::time::Duration;

use serde_json::Value;

use super::description::{ClassDescription, ScimValues};
use super::members::{member_ids, MemberDiff};
use super::{same_name, stored_as, to_group, CLASS};
use crate::chamilo::client::Group as Class;
use crate::chamilo::directory::{from_chamilo, ChamiloDirectory};
use crate::chamilo::enrolment::apply::member_list;
use crate::chamilo::enrolment::Side;
use crate::chamilo::error::ChamiloError;
use crate::chamilo::write::{WriteOutcome, RETRY_AFTER};
use crate::directory::{DirectoryError, Group};

/// `chamilo_writes_total` operation labels.
const OP_CREATE: &str = "group_create";
const OP_UPDATE: &str = "group_update";
const OP_DELETE: &str = "group_delete";

/// Calls made for one step at most, the first included.
const STEP_ATTEMPTS: u32 = 3;

/// The relation Chamilo gives a member added without a role (a "reader"); a class's course
/// and session subscriptions do not look at it.
const MEMBER_ROLE: i64 = 2;

/// Membership calls in flight at once for one write: a class of 1,000 members is not 1,000
/// round trips in a row, and Chamilo is not flooded (a handful of PHP workers serve it).
const MEMBER_CALLS_AT_ONCE: usize = 4;

/// `usergroup.name` is a `VARCHAR(255)`.
const NAME_MAX: usize = 255;

/// A `displayName` Chamilo can store as it is.
fn check_display_name(name: Option<&str>) -> Result<String, DirectoryError> {
    let invalid = |detail: &str| DirectoryError::InvalidValue {
        attr: "displayName".into(),
        detail: detail.into(),
    };
    let Some(name) = name.filter(|n| !n.trim().is_empty()) else {
        return Err(invalid("a group needs a displayName"));
    };
    if name.chars().count() > NAME_MAX {
        return Err(invalid(
            "longer than the 255 characters of a Chamilo class name",
        ));
    }
    if name.chars().any(|c| u32::from(c) > 0xFFFF) {
        return Err(invalid(
            "characters outside the Basic Multilingual Plane (emoji) would be stored as ? by Chamilo",
        ));
    }
    Ok(name.to_owned())
}

/// What a membership change has applied so far, for the answer and the report.
#[derive(Debug, Default)]
struct Progress {
    /// The name/description step was wanted / is done.
    rename_wanted: bool,
    renamed: bool,
    added: Vec<u64>,
    removed: Vec<u64>,
    /// Some call needed more than one try.
    repaired: bool,
}

impl Progress {
    fn anything_applied(&self) -> bool {
        self.renamed || !self.added.is_empty() || !self.removed.is_empty()
    }
}

/// Pauses before sending a call again whose answer was lost.
async fn pause(attempt: u32) {
    tokio::time::sleep(Duration::from_millis(150 * u64::from(attempt))).await;
}

impl ChamiloDirectory {
    /// `POST /Groups`: the class, then its members; a failure among the members removes the
    /// class again (nothing half-made stays), or is reported when that fails too.
    pub(crate) async fn create_class(&self, group: Group) -> Result<Group, DirectoryError> {
        let display = check_display_name(group.display_name())?;
        let external_id = group.external_id().filter(|e| !e.is_empty());
        let mut ids = member_ids(&group)?;
        ids.sort_unstable();
        ids.dedup();
        self.check_members(&ids).await?;
        let all = self.client.get_groups(None).await.map_err(from_chamilo)?;
        if all.iter().any(|c| same_name(&c.name, &display)) {
            return Err(name_taken());
        }
        if let Some(ext) = external_id {
            if all
                .iter()
                .any(|c| c.group_type == CLASS && external_id_of(c).as_deref() == Some(ext))
            {
                return Err(external_id_taken());
            }
        }
        let description = ClassDescription {
            admin: String::new(),
            scim: Some(ScimValues {
                display_name: Some(display.clone()),
                external_id: external_id.map(str::to_owned),
            }),
        }
        .render();
        let (gid, mut repaired) = self.add_class(&display, &description).await?;
        let diff = MemberDiff {
            added: ids,
            removed: Vec::new(),
        };
        let mut progress = Progress::default();
        if let Err(e) = self.apply_members(gid, &diff, &mut progress).await {
            return Err(self.undo_class(gid, &progress, &diff, e).await);
        }
        repaired |= progress.repaired;
        self.client.report_write(OP_CREATE, outcome(repaired));
        let class = Class {
            id: gid,
            name: display,
            description,
            group_type: CLASS,
        };
        let rules = self.enrolment().rules();
        let after = Side {
            grants: Self::class_grants(&rules, &class),
            members: &diff.added,
        };
        self.follow_membership(&rules, gid, &class.name, &Side::default(), &after, &all)
            .await;
        let members: Vec<(u64, Option<String>)> = diff
            .added
            .iter()
            .map(|id| (*id, self.user_display(*id)))
            .collect();
        Ok(to_group(&class, Some(&members)))
    }

    /// The enrolment changes of a successful update: the grants of the class as it was and
    /// as it is now (a rename may start or stop matching a pattern), and its members.
    async fn enrol_after_update(
        &self,
        class: &Class,
        display: &str,
        description: &str,
        base: &Group,
        diff: &MemberDiff,
        all: &[Class],
    ) {
        let rules = self.enrolment().rules();
        let now = Class {
            id: class.id,
            name: display.to_owned(),
            description: description.to_owned(),
            group_type: CLASS,
        };
        let (old_grants, new_grants) = (
            Self::class_grants(&rules, class),
            Self::class_grants(&rules, &now),
        );
        let old: Vec<u64> = member_list(shown_in(base).into_iter().map(|(id, _)| id));
        let new: Vec<u64> = member_list(
            old.iter()
                .copied()
                .filter(|id| !diff.removed.contains(id))
                .chain(diff.added.iter().copied()),
        );
        let before = Side {
            grants: old_grants,
            members: &old,
        };
        let after = Side {
            grants: new_grants,
            members: &new,
        };
        self.follow_membership(&rules, class.id, display, &before, &after, all)
            .await;
    }

    /// `add_group`, sent again when its answer was lost; a class found with this name and
    /// exactly this description after a lost answer is the one that call made.
    async fn add_class(
        &self,
        name: &str,
        description: &str,
    ) -> Result<(u64, bool), DirectoryError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.client.add_group(name, description).await {
                Ok(id) => return Ok((id, attempt > 1)),
                Err(e) if e.is_duplicate_name() && attempt > 1 => {
                    let all = self
                        .client
                        .get_groups(Some(CLASS))
                        .await
                        .map_err(from_chamilo)?;
                    return all
                        .iter()
                        .find(|c| {
                            stored_as(&c.name, name) && stored_as(&c.description, description)
                        })
                        .map(|c| (c.id, true))
                        .ok_or_else(name_taken);
                }
                Err(e) if e.is_duplicate_name() => return Err(name_taken()),
                Err(e) if e.is_ambiguous() && attempt < STEP_ATTEMPTS => pause(attempt).await,
                Err(e) if e.is_ambiguous() => {
                    tracing::error!(
                        scim.operation = OP_CREATE,
                        error = %e,
                        "add_group did not answer {STEP_ATTEMPTS} times; whether the class exists is unknown; the identity provider is told to retry (503)"
                    );
                    self.client
                        .report_write(OP_CREATE, WriteOutcome::Incomplete);
                    return Err(retry_later());
                }
                Err(e) => return Err(from_chamilo(e)),
            }
        }
    }

    /// Removes a class whose members could not all be added.
    async fn undo_class(
        &self,
        gid: u64,
        progress: &Progress,
        diff: &MemberDiff,
        cause: ChamiloError,
    ) -> DirectoryError {
        match self.remove_class(gid).await {
            // Gone either way (deleted by someone else meanwhile: nothing half-made stays).
            Ok(_) | Err(ChamiloError::NotFound { .. }) => {
                tracing::warn!(
                    chamilo.group_id = gid,
                    error = %cause,
                    "removed a new class whose members could not all be added"
                );
                if matches!(cause, ChamiloError::NotFound { .. }) {
                    // A member deleted in Chamilo since the index learned it.
                    self.lookup.request_refresh();
                }
                retry_later()
            }
            Err(e) => {
                tracing::error!(chamilo.group_id = gid, error = %e, "could not remove the half-made class");
                self.group_incomplete(OP_CREATE, gid, progress, diff, &cause)
            }
        }
    }

    /// `PUT`/`PATCH /Groups/{id}`: the name and SCIM values when they changed, then the
    /// members added and removed between `base` and `group`.
    pub(crate) async fn modify_class(
        &self,
        id: &str,
        base: &Group,
        group: Group,
    ) -> Result<Group, DirectoryError> {
        let gid = super::class_id(id).ok_or(DirectoryError::NotFound)?;
        let display = check_display_name(group.display_name())?;
        let external_id = group.external_id().filter(|e| !e.is_empty());
        let diff = MemberDiff::between(&member_ids(base)?, &member_ids(&group)?);
        let all = self.client.get_groups(None).await.map_err(from_chamilo)?;
        let class = all
            .iter()
            .find(|c| c.id == gid && c.group_type == CLASS && self.in_scope(c))
            .ok_or(DirectoryError::NotFound)?;
        self.check_members(&diff.added).await?;
        if !stored_as(&class.name, &display)
            && all
                .iter()
                .any(|c| c.id != gid && same_name(&c.name, &display))
        {
            return Err(name_taken());
        }
        if let Some(ext) = external_id {
            if all.iter().any(|c| {
                c.id != gid && c.group_type == CLASS && external_id_of(c).as_deref() == Some(ext)
            }) {
                return Err(external_id_taken());
            }
        }
        // A class made in Chamilo gets the proxy's line only when SCIM gives it something
        // to keep (an externalId, or a name of its own).
        let parsed = ClassDescription::parse(&class.description);
        let description = if parsed.scim.is_some()
            || external_id.is_some()
            || !stored_as(&class.name, &display)
        {
            ClassDescription {
                admin: parsed.admin,
                scim: Some(ScimValues {
                    display_name: Some(display.clone()),
                    external_id: external_id.map(str::to_owned),
                }),
            }
            .render()
        } else {
            class.description.clone()
        };
        let mut progress = Progress {
            rename_wanted: !stored_as(&class.name, &display)
                || !stored_as(&class.description, &description),
            ..Progress::default()
        };
        if progress.rename_wanted && !self.client.soap_configured() {
            // Only SOAP renames a class or rewrites its description: refuse before anything
            // is written rather than answer 503 for ever.
            let attr = if !stored_as(&class.name, &display) {
                "displayName"
            } else {
                "externalId"
            };
            tracing::error!(
                chamilo.group_id = gid,
                "a group's {attr} cannot be changed: chamilo.security_key is not configured (SOAP WSUpdateGroup is needed)"
            );
            return Err(DirectoryError::InvalidValue {
                attr: attr.into(),
                detail: "this proxy cannot change it: Chamilo's SOAP service (chamilo.security_key) is not configured".into(),
            });
        }
        if progress.rename_wanted {
            match self.update_class(gid, &display, &description).await {
                Ok(repaired) => {
                    progress.renamed = true;
                    progress.repaired |= repaired;
                }
                Err(ChamiloError::NotFound { .. }) => return Err(DirectoryError::NotFound),
                Err(e) if !e.is_ambiguous() => return Err(from_chamilo(e)),
                Err(e) => return Err(self.group_incomplete(OP_UPDATE, gid, &progress, &diff, &e)),
            }
        }
        if let Err(e) = self.apply_members(gid, &diff, &mut progress).await {
            if matches!(e, ChamiloError::NotFound { .. }) {
                // A member deleted in Chamilo since the index learned it, or the class.
                self.lookup.request_refresh();
            }
            // The members that did change (and a rename, done by now if wanted) are enrolled
            // now: the identity provider's retry only sends the rest.
            let applied = MemberDiff {
                added: progress.added.clone(),
                removed: progress.removed.clone(),
            };
            self.enrol_after_update(class, &display, &description, base, &applied, &all)
                .await;
            if !progress.anything_applied() && !e.is_ambiguous() {
                tracing::warn!(
                    chamilo.group_id = gid,
                    error = %e,
                    "Chamilo refused the first membership change of a group write; nothing was changed"
                );
                return Err(retry_later());
            }
            return Err(self.group_incomplete(OP_UPDATE, gid, &progress, &diff, &e));
        }
        if progress.anything_applied() {
            self.client
                .report_write(OP_UPDATE, outcome(progress.repaired));
        }
        self.enrol_after_update(class, &display, &description, base, &diff, &all)
            .await;
        let mut members: Vec<(u64, Option<String>)> = shown_in(base)
            .into_iter()
            .filter(|(id, _)| !diff.removed.contains(id))
            .collect();
        members.extend(diff.added.iter().map(|id| (*id, self.user_display(*id))));
        let class = Class {
            id: gid,
            name: display,
            description,
            group_type: CLASS,
        };
        Ok(to_group(&class, Some(&members)))
    }

    /// SOAP `WSUpdateGroup`, verified by reading the class back (Chamilo answers 1 even for
    /// a missing id); sent again when the answer was lost or the class does not show it.
    /// `Ok(true)` when it took more than one call.
    async fn update_class(
        &self,
        gid: u64,
        name: &str,
        description: &str,
    ) -> Result<bool, ChamiloError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self.client.update_group(gid, name, Some(description)).await;
            if let Err(e) = &sent {
                if !e.is_ambiguous() {
                    return Err(e.clone());
                }
            }
            // A failed read leaves it unknown whether the rename is applied.
            let classes = self.client.get_groups(Some(CLASS)).await.map_err(|e| {
                ChamiloError::Unexpected {
                    action: "WSUpdateGroup".into(),
                    detail: format!("the class could not be read back: {e}"),
                }
            })?;
            match classes.iter().find(|c| c.id == gid) {
                None => {
                    return Err(ChamiloError::NotFound {
                        action: "WSUpdateGroup".into(),
                    })
                }
                Some(c) if stored_as(&c.name, name) && stored_as(&c.description, description) => {
                    return Ok(attempt > 1 || sent.is_err())
                }
                Some(_) if attempt < STEP_ATTEMPTS => pause(attempt).await,
                Some(_) => {
                    return Err(sent.err().unwrap_or_else(|| {
                        ChamiloError::Unexpected {
                    action: "WSUpdateGroup".into(),
                    detail:
                        "answered success, but the class does not hold the new name and description"
                            .into(),
                }
                    }))
                }
            }
        }
    }

    /// Adds, then removes, members, [`MEMBER_CALLS_AT_ONCE`] calls at a time, each sent
    /// again while its answer is lost. A batch always runs to its end, so that when a call
    /// fails exactly which members were changed is known; no later batch starts.
    async fn apply_members(
        &self,
        gid: u64,
        diff: &MemberDiff,
        progress: &mut Progress,
    ) -> Result<(), ChamiloError> {
        for (adding, ids) in [(true, &diff.added), (false, &diff.removed)] {
            for batch in ids.chunks(MEMBER_CALLS_AT_ONCE) {
                let results = futures_util::future::join_all(
                    batch.iter().map(|uid| self.member_call(gid, *uid, adding)),
                )
                .await;
                let mut failure = None;
                for (uid, result) in batch.iter().zip(results) {
                    match result {
                        Ok(repaired) => {
                            progress.repaired |= repaired;
                            if adding {
                                progress.added.push(*uid);
                            } else {
                                progress.removed.push(*uid);
                            }
                        }
                        Err(e) => {
                            failure.get_or_insert(e);
                        }
                    }
                }
                if let Some(e) = failure {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// One `add_group_sub_user` or `delete_group_sub_user`, sent again while its answer is
    /// lost (both are idempotent). `Ok(true)` when it took more than one call.
    async fn member_call(&self, gid: u64, uid: u64, adding: bool) -> Result<bool, ChamiloError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = if adding {
                self.client.add_group_member(gid, uid, MEMBER_ROLE).await
            } else {
                self.client.remove_group_member(gid, uid).await
            };
            match result {
                Ok(()) => return Ok(attempt > 1),
                Err(e) if e.is_ambiguous() && attempt < STEP_ATTEMPTS => pause(attempt).await,
                Err(e) => return Err(e),
            }
        }
    }

    /// `DELETE /Groups/{id}`: the class goes, its members (users) stay.
    pub(crate) async fn delete_class(&self, id: &str) -> Result<(), DirectoryError> {
        let Some(class) = self.class(id).await? else {
            return Err(DirectoryError::NotFound);
        };
        // The members lose the class's courses: read them first (only when it grants any).
        let rules = self.enrolment().rules();
        let grants = Self::class_grants(&rules, &class);
        let members = match grants.is_empty() {
            true => Vec::new(),
            false => self
                .client
                .group_members(class.id)
                .await
                .map_err(from_chamilo)?
                .into_iter()
                .map(|m| m.user_id)
                .collect(),
        };
        match self.remove_class(class.id).await {
            Ok(repaired) => {
                self.client.report_write(OP_DELETE, outcome(repaired));
                let before = Side {
                    grants,
                    members: &member_list(members),
                };
                if !before.grants.is_empty() {
                    let classes = self.all_classes().await.unwrap_or_default();
                    self.follow_membership(
                        &rules,
                        class.id,
                        &class.name,
                        &before,
                        &Side::default(),
                        &classes,
                    )
                    .await;
                }
                Ok(())
            }
            Err(ChamiloError::NotFound { .. }) => Err(DirectoryError::NotFound),
            Err(e) if e.is_ambiguous() => {
                tracing::error!(
                    chamilo.group_id = class.id,
                    scim.operation = OP_DELETE,
                    error = %e,
                    "delete_group did not answer {STEP_ATTEMPTS} times; whether the class is deleted is unknown; the identity provider is told to retry (503)"
                );
                self.client
                    .report_write(OP_DELETE, WriteOutcome::Incomplete);
                Err(retry_later())
            }
            Err(e) => Err(from_chamilo(e)),
        }
    }

    /// `delete_group`, sent again while its answer is lost ("NotDeleted" after a lost answer
    /// means that call deleted it). `Ok(true)` when it took more than one call.
    async fn remove_class(&self, gid: u64) -> Result<bool, ChamiloError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.client.delete_group(gid).await {
                Ok(()) => return Ok(attempt > 1),
                Err(ChamiloError::NotFound { .. }) if attempt > 1 => return Ok(true),
                Err(e) if e.is_ambiguous() && attempt < STEP_ATTEMPTS => pause(attempt).await,
                Err(e) => return Err(e),
            }
        }
    }

    /// Logs and counts a class write that is partly applied or unknown, and answers 503.
    fn group_incomplete(
        &self,
        operation: &'static str,
        gid: u64,
        progress: &Progress,
        diff: &MemberDiff,
        cause: &ChamiloError,
    ) -> DirectoryError {
        let not_added: Vec<u64> = diff
            .added
            .iter()
            .filter(|id| !progress.added.contains(id))
            .copied()
            .collect();
        let not_removed: Vec<u64> = diff
            .removed
            .iter()
            .filter(|id| !progress.removed.contains(id))
            .copied()
            .collect();
        tracing::error!(
            chamilo.group_id = gid,
            scim.operation = operation,
            name_and_description = if !progress.rename_wanted {
                "unchanged"
            } else if progress.renamed {
                "applied"
            } else {
                "not applied"
            },
            added_count = progress.added.len(),
            removed_count = progress.removed.len(),
            not_added_count = not_added.len(),
            not_removed_count = not_removed.len(),
            added = ?progress.added,
            removed = ?progress.removed,
            not_added = ?not_added,
            not_removed = ?not_removed,
            error = %cause,
            "a SCIM group write could not be completed in Chamilo; the identity provider is told to retry (503)"
        );
        self.client
            .report_write(operation, WriteOutcome::Incomplete);
        retry_later()
    }

    /// A user's name as a member's `display`, from the index (no call).
    fn user_display(&self, id: u64) -> Option<String> {
        let a = self.lookup.index.by_id(id)?;
        let name = format!("{} {}", a.firstname.as_deref().unwrap_or(""), a.lastname);
        let name = name.trim();
        (!name.is_empty()).then(|| name.to_owned())
    }
}

/// The members `base` shows, with their `display`.
fn shown_in(base: &Group) -> Vec<(u64, Option<String>)> {
    base.as_json()
        .get("members")
        .and_then(Value::as_array)
        .map(|members| {
            members
                .iter()
                .filter_map(|m| {
                    let id = m.get("value")?.as_str()?.parse::<u64>().ok()?;
                    Some((
                        id,
                        m.get("display").and_then(Value::as_str).map(str::to_owned),
                    ))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn external_id_of(class: &Class) -> Option<String> {
    ClassDescription::parse(&class.description)
        .scim
        .and_then(|s| s.external_id)
}

fn outcome(repaired: bool) -> WriteOutcome {
    if repaired {
        WriteOutcome::Repaired
    } else {
        WriteOutcome::Applied
    }
}

fn name_taken() -> DirectoryError {
    DirectoryError::Conflict {
        detail: "a Chamilo class or group with this displayName already exists".into(),
    }
}

fn external_id_taken() -> DirectoryError {
    DirectoryError::Conflict {
        detail: "a Chamilo class with this externalId already exists".into(),
    }
}

fn retry_later() -> DirectoryError {
    DirectoryError::Unavailable {
        retry_after: Some(RETRY_AFTER),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_chamilo_would_alter_are_refused() {
        assert_eq!(check_display_name(Some("Staff A")).unwrap(), "Staff A");
        assert_eq!(check_display_name(Some(" padded ")).unwrap(), " padded ");
        for bad in [None, Some(""), Some("   "), Some("team 🚀")] {
            assert!(
                matches!(check_display_name(bad), Err(DirectoryError::InvalidValue { ref attr, .. }) if attr == "displayName"),
                "{bad:?}"
            );
        }
        assert!(check_display_name(Some(&"é".repeat(255))).is_ok());
        assert!(check_display_name(Some(&"é".repeat(256))).is_err());
    }
}
