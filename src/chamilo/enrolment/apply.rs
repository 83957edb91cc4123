//! Making the enrolment changes of a class write (or logging them, in dry run).
//!
//! Failure semantics (docs/chamilo.md "Course enrolment"): the membership write answers for
//! the membership; an enrolment that could not be made is reported — an ERROR line naming
//! the class and each (user, course, action), `chamilo_writes_total{operation="enrolment",
//! outcome="incomplete"}` — and owed: the next write of that class tries it again (at most
//! [`OWED_ROUNDS`] times), since the identity provider's retry of the same PATCH would find
//! no membership left to change.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{plan, Change, EnrolmentRules, Grants, Side};
use crate::chamilo::client::Group as Class;
use crate::chamilo::directory::ChamiloDirectory;
use crate::chamilo::error::ChamiloError;
use crate::chamilo::groups::to_group;
use crate::chamilo::write::WriteOutcome;

/// `chamilo_writes_total` operation label.
pub const OP_ENROLMENT: &str = "enrolment";
/// Calls made for one change at most, the first included (a lost answer is sent again).
const CHANGE_ATTEMPTS: u32 = 3;
/// Enrolment calls in flight at once for one write (as for memberships).
pub(crate) const CALLS_AT_ONCE: usize = 4;
/// Writes of a class that try an owed change again before it is given up (and logged).
pub const OWED_ROUNDS: u32 = 3;
/// Failed changes listed in full in the ERROR line (the counts are always there).
pub(crate) const LISTED_AT_MOST: usize = 200;

/// The enrolment state of a directory: the rules in force (swapped on reload) and the
/// changes owed per class.
pub struct Enrolment {
    rules: arc_swap::ArcSwap<EnrolmentRules>,
    owed: Mutex<HashMap<u64, Vec<(Change, u32)>>>,
    /// Course code (upper case) → id, learnt from `user_courses` answers: Chamilo has no
    /// web service that maps a code to its id, which `get_users_subscribed_to_course` needs.
    course_ids: Mutex<HashMap<String, u64>>,
    /// Bumped by every change of the rules: reconciliation runs again.
    generation: tokio::sync::watch::Sender<u64>,
}

impl Default for Enrolment {
    fn default() -> Self {
        Self {
            rules: Default::default(),
            owed: Default::default(),
            course_ids: Default::default(),
            generation: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl Enrolment {
    /// The rules for one operation (a reload applies to the next one).
    pub fn rules(&self) -> Arc<EnrolmentRules> {
        self.rules.load_full()
    }

    /// New rules (configuration reload).
    pub fn set_rules(&self, rules: EnrolmentRules) {
        self.rules.store(Arc::new(rules));
        self.generation.send_modify(|g| *g += 1);
    }

    /// Follows changes of the rules (see [`Enrolment::set_rules`]).
    pub fn rule_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// Remembers the id of every course in `courses`.
    pub(crate) fn learn(&self, courses: &[crate::chamilo::client::courses::CourseRef]) {
        if let Ok(mut ids) = self.course_ids.lock() {
            for c in courses {
                ids.insert(c.code.to_ascii_uppercase(), c.id);
            }
        }
    }

    /// Forgets the id of course `code` (its listing failed: it may be gone).
    pub(crate) fn forget_course(&self, code: &str) {
        if let Ok(mut ids) = self.course_ids.lock() {
            ids.remove(&code.to_ascii_uppercase());
        }
    }

    /// The id of course `code`, when an answer has shown it.
    pub(crate) fn course_id(&self, code: &str) -> Option<u64> {
        self.course_ids
            .lock()
            .ok()
            .and_then(|ids| ids.get(&code.to_ascii_uppercase()).copied())
    }

    fn take_owed(&self, gid: u64) -> Vec<(Change, u32)> {
        self.owed
            .lock()
            .map(|mut o| o.remove(&gid).unwrap_or_default())
            .unwrap_or_default()
    }

    fn owe(&self, gid: u64, changes: Vec<(Change, u32)>) {
        if changes.is_empty() {
            return;
        }
        if let Ok(mut o) = self.owed.lock() {
            o.entry(gid).or_default().extend(changes);
        }
    }

    /// Changes owed to class `gid` (tests, and the admin's view of what is pending).
    pub fn owed_to(&self, gid: u64) -> Vec<Change> {
        self.owed
            .lock()
            .map(|o| {
                o.get(&gid)
                    .map(|v| v.iter().map(|(c, _)| c.clone()).collect())
                    .unwrap_or_default()
            })
            .unwrap_or_default()
    }
}

/// How one change ended.
pub(crate) enum Made {
    /// Made by this call (`repaired`: after a lost answer).
    Done {
        repaired: bool,
    },
    /// Nothing to make: the user was already subscribed (read back after Chamilo's `[false]`).
    Already,
    Failed(String),
}

impl ChamiloDirectory {
    /// The enrolment rules and owed changes of this directory.
    pub fn enrolment(&self) -> &Enrolment {
        &self.enrolment
    }

    /// The courses class `class` grants under `rules`.
    pub(crate) fn class_grants(rules: &EnrolmentRules, class: &Class) -> Grants {
        if rules.is_empty() {
            return Grants::new();
        }
        let g = to_group(class, None);
        rules.grants(g.display_name().unwrap_or(""), g.external_id())
    }

    /// Subscribes and unsubscribes what a write of class `gid` changed (`before` → `after`),
    /// after trying again what earlier writes of it owe. `classes` are every class as the
    /// write read them (to find the other groups that grant the same courses). Never fails
    /// the write: what could not be done is reported and owed.
    pub(crate) async fn follow_membership(
        &self,
        rules: &EnrolmentRules,
        gid: u64,
        group: &str,
        before: &Side<'_>,
        after: &Side<'_>,
        classes: &[Class],
    ) {
        let owed = self.enrolment.take_owed(gid);
        if rules.is_empty() && owed.is_empty() {
            return;
        }
        let changed: BTreeSet<&str> = before
            .grants
            .keys()
            .chain(after.grants.keys())
            .map(String::as_str)
            .collect();
        let mut changes: Vec<(Change, u32)> = Vec::new();
        if !changed.is_empty() {
            let others = match self.other_grants(rules, gid, &changed, classes).await {
                Ok(o) => Some(o),
                Err(e) => {
                    // Unknown who keeps a course through another group: unsubscribe nobody.
                    tracing::warn!(
                        chamilo.group_id = gid,
                        error = %e,
                        "the members of the other mapped classes could not be read; no one is unsubscribed by this write"
                    );
                    None
                }
            };
            let kept = |user: u64, course: &str| match &others {
                Some(o) => o.get(&user).is_some_and(|c| c.contains(course)),
                None => true,
            };
            let planned = plan(before, after, |u, c| kept(u, c));
            // Without the other classes' members, subscriptions still go ahead.
            let planned = if others.is_none() {
                let all = plan(before, after, |_, _| false);
                all.into_iter()
                    .filter(|c| matches!(c, Change::Subscribe { .. }) || planned.contains(c))
                    .collect()
            } else {
                planned
            };
            changes.extend(planned.into_iter().map(|c| (c, 0)));
        }
        // Owed changes first, unless this write plans the opposite for the same pair.
        let mut all: Vec<(Change, u32)> = owed
            .into_iter()
            .filter(|(o, _)| {
                !changes
                    .iter()
                    .any(|(c, _)| c.user() == o.user() && c.course() == o.course())
            })
            .collect();
        all.extend(changes);
        if all.is_empty() {
            return;
        }
        if rules.dry_run {
            for (change, _) in &all {
                tracing::info!(
                    chamilo.group_id = gid,
                    scim.group = group,
                    chamilo.user_id = change.user(),
                    chamilo.course = change.course(),
                    enrolment.action = change.action(),
                    enrolment.role = match change {
                        Change::Subscribe { role, .. } => role.as_str(),
                        Change::Unsubscribe { .. } => "",
                    },
                    "enrolment dry run: not made (chamilo.enrolment_dry_run = true)"
                );
            }
            return;
        }
        self.make(gid, group, all).await;
    }

    /// For the users of the other classes that grant one of `courses`: which of them.
    /// One `get_group_sub_users` per such class; none when no other class grants them.
    async fn other_grants(
        &self,
        rules: &EnrolmentRules,
        gid: u64,
        courses: &BTreeSet<&str>,
        classes: &[Class],
    ) -> Result<HashMap<u64, BTreeSet<String>>, ChamiloError> {
        let mut kept: HashMap<u64, BTreeSet<String>> = HashMap::new();
        for class in classes.iter().filter(|c| c.id != gid && c.group_type == 0) {
            let grants = Self::class_grants(rules, class);
            let shared: Vec<&String> = grants
                .keys()
                .filter(|c| courses.contains(c.as_str()))
                .collect();
            if shared.is_empty() {
                continue;
            }
            for member in self.client.group_members(class.id).await? {
                kept.entry(member.user_id)
                    .or_default()
                    .extend(shared.iter().map(|c| (*c).clone()));
            }
        }
        Ok(kept)
    }

    /// Makes the changes, [`CALLS_AT_ONCE`] at a time; reports and owes what failed.
    async fn make(&self, gid: u64, group: &str, changes: Vec<(Change, u32)>) {
        let mut failed: Vec<(Change, u32, String)> = Vec::new();
        let (mut made, mut repaired) = (0usize, false);
        for batch in changes.chunks(CALLS_AT_ONCE) {
            let results =
                futures_util::future::join_all(batch.iter().map(|(c, _)| self.make_one(c))).await;
            for ((change, rounds), result) in batch.iter().zip(results) {
                match result {
                    Made::Done { repaired: r } => {
                        made += 1;
                        repaired |= r || *rounds > 0;
                    }
                    Made::Already => {
                        made += 1;
                        repaired |= *rounds > 0;
                    }
                    Made::Failed(why) => failed.push((change.clone(), rounds + 1, why)),
                }
            }
        }
        if failed.is_empty() {
            self.client.report_write(
                OP_ENROLMENT,
                if repaired {
                    WriteOutcome::Repaired
                } else {
                    WriteOutcome::Applied
                },
            );
            return;
        }
        let listed: Vec<String> = failed
            .iter()
            .take(LISTED_AT_MOST)
            .map(|(c, _, why)| {
                format!(
                    "{} user {} course {}: {why}",
                    c.action(),
                    c.user(),
                    c.course()
                )
            })
            .collect();
        let (retry, given_up): (Vec<_>, Vec<_>) =
            failed.into_iter().partition(|(_, r, _)| *r < OWED_ROUNDS);
        tracing::error!(
            chamilo.group_id = gid,
            scim.group = group,
            made_count = made,
            failed_count = retry.len() + given_up.len(),
            owed_count = retry.len(),
            given_up_count = given_up.len(),
            failed = ?listed,
            "course enrolment changes required by chamilo.enrolment could not be made; the next write of this group tries the owed ones again (the group's membership itself is applied)"
        );
        self.client
            .report_write(OP_ENROLMENT, WriteOutcome::Incomplete);
        self.enrolment
            .owe(gid, retry.into_iter().map(|(c, r, _)| (c, r)).collect());
    }

    /// One subscription or unsubscription, sent again while its answer is lost.
    pub(crate) async fn make_one(&self, change: &Change) -> Made {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = match change {
                Change::Subscribe { user, course, role } => {
                    self.client
                        .subscribe_to_course(course, *user, role.status())
                        .await
                }
                Change::Unsubscribe { user, course } => {
                    self.client.unsubscribe_from_course(course, *user).await
                }
            };
            match result {
                Ok(true) => {
                    return Made::Done {
                        repaired: attempt > 1,
                    }
                }
                // `[false]` is every failure, and also "already subscribed" (after a lost
                // answer, the first call's own success): the user's courses tell which.
                Ok(false) => {
                    return match change {
                        Change::Subscribe { user, course, .. } => {
                            match self.is_subscribed(*user, course).await {
                                Ok(true) if attempt > 1 => Made::Done { repaired: true },
                                Ok(true) => Made::Already,
                                Ok(false) => Made::Failed(
                                    "Chamilo answered [false] and the user is not subscribed (no such course or user)"
                                        .into(),
                                ),
                                Err(e) => Made::Failed(format!(
                                    "Chamilo answered [false] and the user's courses could not be read: {e}"
                                )),
                            }
                        }
                        Change::Unsubscribe { .. } => {
                            Made::Failed("Chamilo answered [false] (no such course)".into())
                        }
                    }
                }
                Err(e) if e.is_ambiguous() && attempt < CHANGE_ATTEMPTS => {
                    tokio::time::sleep(Duration::from_millis(150 * u64::from(attempt))).await;
                }
                Err(e) => return Made::Failed(e.to_string()),
            }
        }
    }

    /// Whether `user` is subscribed to `course`: one `user_courses` (whose ids are learnt).
    pub(crate) async fn is_subscribed(
        &self,
        user: u64,
        course: &str,
    ) -> Result<bool, ChamiloError> {
        let courses = self.client.user_courses(user).await?;
        self.enrolment.learn(&courses);
        Ok(courses.iter().any(|c| c.code.eq_ignore_ascii_case(course)))
    }
}

/// The members of a group as a sorted list of ids (for [`Side`]).
pub fn member_list(members: impl IntoIterator<Item = u64>) -> Vec<u64> {
    members
        .into_iter()
        .collect::<BTreeSet<u64>>()
        .into_iter()
        .collect()
}
