//! Reconciliation: the enrolment of every mapped group compared with its courses, and the
//! missing subscriptions made (docs/chamilo.md, "Reconciliation").
//!
//! Membership writes enrol what they change; reconciliation catches what they cannot: the
//! members of a group a rule starts to match by a reload, the members added while the
//! mapping was in dry run, and a subscription that failed and was owed when the proxy
//! restarted (owed changes live in memory). It runs at start-up, after every change of the
//! mapping, and every `chamilo.enrolment_reconcile`.
//!
//! It only subscribes. Chamilo does not record who subscribed a user, so a subscription no
//! group grants may be a teacher's own, and an unsubscription deletes course data: those are
//! left to the membership writes, which know who left. A subscription made here for a user
//! who left the group while the pass ran (the write's own unsubscription came first) is taken
//! back at once, after a fresh read of the groups: it holds no course data yet.
//!
//! Cost per pass: one `get_groups`, one `get_group_sub_users` per mapped class, one
//! `get_users_subscribed_to_course` per granted course, and one call per missing
//! subscription. A course's id (which that listing needs; no web service maps a code to it)
//! is learnt from `user_courses`, of at most [`ID_PROBES`] entitled users per unknown course,
//! and kept; when none of them holds the course, the first missing subscription is made and
//! read back. A course that refuses that first one (no such course) costs no other call.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use super::apply::{Made, CALLS_AT_ONCE, LISTED_AT_MOST, OP_ENROLMENT};
use super::{entitlements, missing, Change, CourseRole, EnrolmentRules, Grants};
use crate::chamilo::directory::ChamiloDirectory;
use crate::chamilo::error::ChamiloError;
use crate::chamilo::write::WriteOutcome;
use crate::directory::DirectoryError;

/// Users whose courses are read to learn an unknown course's id before every entitled user
/// is simply subscribed (Chamilo's `[false]` for one already there is then read back).
pub const ID_PROBES: usize = 3;

/// What one pass found and did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reconciliation {
    /// Mapped classes (classes that grant a course).
    pub classes: usize,
    /// Courses they grant.
    pub courses: usize,
    /// Courses whose subscriptions could not be read (reported; tried next pass).
    pub unread_courses: usize,
    /// Subscriptions missing.
    pub missing: usize,
    /// Subscriptions made (none in dry run).
    pub made: usize,
    /// Subscriptions not made (reported in an ERROR line).
    pub failed: usize,
    /// Subscriptions made, then taken back because the user left the group meanwhile.
    pub withdrawn: usize,
    pub dry_run: bool,
}

/// A mapped class: what it grants, and its members.
type Mapped = (Grants, Vec<u64>);

impl ChamiloDirectory {
    /// One reconciliation pass under the rules in force (see the module documentation).
    /// `Err` only when the classes cannot be listed; a course that fails is reported and
    /// counted, and the others go on.
    pub async fn reconcile_enrolment(&self) -> Result<Reconciliation, DirectoryError> {
        let rules = self.enrolment.rules();
        let mut report = Reconciliation {
            dry_run: rules.dry_run,
            ..Reconciliation::default()
        };
        if rules.is_empty() {
            return Ok(report);
        }
        let mapped = self.mapped_classes(&rules).await?;
        report.classes = mapped.len();
        let entitled = entitlements(mapped.iter().map(|(g, m)| (g, m.as_slice())));
        report.courses = entitled.len();
        let mut failures: Vec<String> = Vec::new();
        for (course, users) in &entitled {
            let subscribed = match self.subscribed_to(course, users).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(
                        chamilo.course = course.as_str(),
                        error = %e,
                        "enrolment reconciliation: the course's subscriptions could not be read; tried again next pass"
                    );
                    report.unread_courses += 1;
                    continue;
                }
            };
            let mut changes = missing(
                course,
                users,
                subscribed.as_ref().unwrap_or(&BTreeSet::new()),
            );
            if changes.is_empty() {
                continue;
            }
            if rules.dry_run {
                report.missing += changes.len();
                let listed: Vec<u64> = changes
                    .iter()
                    .take(LISTED_AT_MOST)
                    .map(Change::user)
                    .collect();
                tracing::info!(
                    chamilo.course = course.as_str(),
                    missing_count = changes.len(),
                    // Without the course's id, who is subscribed is known only of the
                    // members whose courses were read.
                    course_listed = subscribed.is_some(),
                    users = ?listed,
                    "enrolment reconciliation dry run: subscriptions not made (chamilo.enrolment_dry_run = true)"
                );
                continue;
            }
            let mut made_now = Vec::new();
            if subscribed.is_none() {
                // The course's id is unknown and no member read holds the course: the first
                // subscription shows whether the course exists and, read back, its id; then
                // the course's own listing says who else is missing.
                let first = changes.remove(0);
                report.missing += 1;
                match self.make_one(&first).await {
                    Made::Failed(why) => {
                        report.missing += changes.len();
                        report.failed += 1 + changes.len();
                        failures.push(format!(
                            "subscribe user {} course {course}: {why}; the course's {} other missing subscriptions were not tried",
                            first.user(),
                            changes.len()
                        ));
                        continue;
                    }
                    Made::Done { .. } => {
                        report.made += 1;
                        made_now.push(first.user());
                        if self.enrolment.course_id(course).is_none() {
                            // Only to learn the id: an error leaves the list as it is.
                            let _ = self.is_subscribed(first.user(), course).await;
                        }
                    }
                    Made::Already => {}
                }
                if let Some(id) = self.enrolment.course_id(course) {
                    if let Ok(list) = self.client.course_subscribers(id).await {
                        let listed: BTreeSet<u64> = list.into_iter().map(|s| s.user_id).collect();
                        changes = missing(course, users, &listed);
                    }
                }
            }
            report.missing += changes.len();
            made_now.extend(
                self.subscribe_all(&changes, &mut report, &mut failures)
                    .await,
            );
            if !made_now.is_empty() {
                report.withdrawn += self.withdraw_departed(course, &made_now).await;
            }
        }
        if !failures.is_empty() {
            tracing::error!(
                made_count = report.made,
                failed_count = report.failed,
                failed = ?failures,
                "enrolment reconciliation: subscriptions required by chamilo.enrolment could not be made; the next pass tries them again"
            );
        }
        if report.failed > 0 || report.unread_courses > 0 {
            self.client
                .report_write(OP_ENROLMENT, WriteOutcome::Incomplete);
        } else if report.made > 0 {
            self.client
                .report_write(OP_ENROLMENT, WriteOutcome::Repaired);
        }
        Ok(report)
    }

    /// The classes in scope that grant a course under `rules`, with their members (as SCIM
    /// shows them: no reserved account): one `get_groups`, one `get_group_sub_users` each.
    async fn mapped_classes(&self, rules: &EnrolmentRules) -> Result<Vec<Mapped>, DirectoryError> {
        let mut mapped = Vec::new();
        for class in self.classes().await? {
            let grants = Self::class_grants(rules, &class);
            if grants.is_empty() {
                continue;
            }
            let members = self
                .class_members(class.id)
                .await?
                .into_iter()
                .map(|(id, _)| id)
                .collect();
            mapped.push((grants, members));
        }
        Ok(mapped)
    }

    /// Who `course` lists. With its id unknown, a few entitled users' courses are read to
    /// learn it; `None` when none of them holds the course (the id is still unknown).
    async fn subscribed_to(
        &self,
        course: &str,
        entitled: &BTreeMap<u64, CourseRole>,
    ) -> Result<Option<BTreeSet<u64>>, ChamiloError> {
        if self.enrolment.course_id(course).is_none() {
            for user in entitled.keys().take(ID_PROBES) {
                self.is_subscribed(*user, course).await?;
                if self.enrolment.course_id(course).is_some() {
                    break;
                }
            }
        }
        let Some(id) = self.enrolment.course_id(course) else {
            return Ok(None);
        };
        match self.client.course_subscribers(id).await {
            Ok(list) => Ok(Some(list.into_iter().map(|s| s.user_id).collect())),
            Err(e) => {
                // The course may be gone (or made again under another id): learn it anew.
                self.enrolment.forget_course(course);
                Err(e)
            }
        }
    }

    /// Makes `changes` ([`CALLS_AT_ONCE`] at a time); the users subscribed by this pass.
    async fn subscribe_all(
        &self,
        changes: &[Change],
        report: &mut Reconciliation,
        failures: &mut Vec<String>,
    ) -> Vec<u64> {
        let mut made_now = Vec::new();
        for batch in changes.chunks(CALLS_AT_ONCE) {
            let results =
                futures_util::future::join_all(batch.iter().map(|c| self.make_one(c))).await;
            for (change, result) in batch.iter().zip(results) {
                match result {
                    Made::Done { .. } => {
                        report.made += 1;
                        made_now.push(change.user());
                    }
                    // Subscribed since the course was read: nothing to do, nothing to take back.
                    Made::Already => {}
                    Made::Failed(why) => {
                        report.failed += 1;
                        if failures.len() < LISTED_AT_MOST {
                            failures.push(format!(
                                "subscribe user {} course {}: {why}",
                                change.user(),
                                change.course()
                            ));
                        }
                    }
                }
            }
        }
        made_now
    }

    /// Takes back the subscriptions to `course` this pass made for users no group entitles
    /// to it any more (read fresh): they left while the pass ran. The number taken back.
    async fn withdraw_departed(&self, course: &str, made_now: &[u64]) -> usize {
        let rules = self.enrolment.rules();
        let still = match self.mapped_classes(&rules).await {
            Ok(mapped) => entitlements(mapped.iter().map(|(g, m)| (g, m.as_slice()))),
            Err(e) => {
                tracing::warn!(
                    chamilo.course = course,
                    error = %e,
                    "enrolment reconciliation: the groups could not be read again after subscribing; a member who left meanwhile may stay subscribed"
                );
                return 0;
            }
        };
        let departed: Vec<Change> = made_now
            .iter()
            .filter(|u| !still.get(course).is_some_and(|users| users.contains_key(u)))
            .map(|u| Change::Unsubscribe {
                user: *u,
                course: course.to_owned(),
            })
            .collect();
        let mut withdrawn = 0;
        for change in &departed {
            match self.make_one(change).await {
                Made::Done { .. } | Made::Already => withdrawn += 1,
                Made::Failed(why) => tracing::error!(
                    chamilo.user_id = change.user(),
                    chamilo.course = course,
                    error = why.as_str(),
                    "enrolment reconciliation: a user who left the group while being subscribed could not be unsubscribed; unsubscribe them by hand"
                ),
            }
        }
        withdrawn
    }

    /// Runs [`ChamiloDirectory::reconcile_enrolment`] once the user index holds its first
    /// listing, then every `every` and after each change of the rules, until `stop`. `every`
    /// zero: never.
    pub fn spawn_enrolment_reconcile(
        self: Arc<Self>,
        every: Duration,
        stop: tokio_util::sync::CancellationToken,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if every.is_zero() {
            return None;
        }
        Some(tokio::spawn(async move {
            let mut changes = self.enrolment.rule_changes();
            // Members are told apart from reserved accounts (the service account, protected
            // logins) by the index: the first pass waits for its first listing.
            while !self.lookup.index.is_ready() {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
            loop {
                changes.borrow_and_update();
                match self.reconcile_enrolment().await {
                    Ok(r) if r.missing > 0 || r.failed > 0 || r.unread_courses > 0 => {
                        tracing::info!(
                            classes = r.classes,
                            courses = r.courses,
                            missing_count = r.missing,
                            made_count = r.made,
                            failed_count = r.failed,
                            withdrawn_count = r.withdrawn,
                            unread_courses = r.unread_courses,
                            dry_run = r.dry_run,
                            "enrolment reconciliation done"
                        );
                    }
                    Ok(r) => tracing::debug!(
                        classes = r.classes,
                        courses = r.courses,
                        "enrolment reconciliation: every mapped group's members are subscribed"
                    ),
                    Err(e) => tracing::warn!(
                        error = %e,
                        "enrolment reconciliation: the classes could not be read; tried again next pass"
                    ),
                }
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                    changed = changes.changed() => if changed.is_err() { break },
                }
            }
        }))
    }
}
