//! Course enrolment driven by SCIM groups (`[[chamilo.enrolment]]`, docs/chamilo.md
//! "Course enrolment"): the members of a group that a rule matches are subscribed to the
//! rule's courses, and unsubscribed when they leave it, unless another group of theirs still
//! grants the course. This module holds the pure parts: the rules, which courses a group
//! grants, and the changes a membership change makes; [`apply`] makes (or, in dry run, logs)
//! them.

pub mod apply;
pub mod reconcile;

use std::collections::{BTreeMap, BTreeSet};

use crate::config::{check_course_code, ChamiloConfig};

/// Chamilo's course status of a teacher; anything else subscribes a student (5).
pub const STATUS_TEACHER: i64 = 1;
/// Chamilo's course status of a student.
pub const STATUS_STUDENT: i64 = 5;

/// The role a rule gives in its courses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CourseRole {
    Student,
    Teacher,
}

impl CourseRole {
    /// The `status` of `subscribe_user_to_course`.
    pub fn status(self) -> i64 {
        match self {
            Self::Student => STATUS_STUDENT,
            Self::Teacher => STATUS_TEACHER,
        }
    }

    /// The name used in the configuration and the logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Student => "student",
            Self::Teacher => "teacher",
        }
    }
}

/// Which groups a rule applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupMatch {
    /// A `displayName` pattern (`*`, `?`), compared case-insensitively.
    DisplayName(String),
    /// An `externalId`, exactly.
    ExternalId(String),
}

/// One `[[chamilo.enrolment]]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolmentRule {
    pub group: GroupMatch,
    /// Course codes in upper case (Chamilo's codes are; its lookups ignore case).
    pub courses: Vec<String>,
    pub role: CourseRole,
}

/// The courses a group grants: course code → role (teacher wins over student).
pub type Grants = BTreeMap<String, CourseRole>;

/// The enrolment configuration of one operation (a snapshot: a reload applies to the next).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnrolmentRules {
    pub rules: Vec<EnrolmentRule>,
    /// Log the changes instead of making them.
    pub dry_run: bool,
}

impl EnrolmentRules {
    /// The rules of the `[chamilo]` section. The configuration loader has validated them
    /// (with key and line); this refuses what it would have refused, naming the key.
    pub fn from_config(c: &ChamiloConfig) -> Result<Self, String> {
        let mut rules = Vec::with_capacity(c.enrolment.len());
        for (i, e) in c.enrolment.iter().enumerate() {
            let key = format!("chamilo.enrolment[{i}]");
            let group = match (&e.display_name, &e.external_id) {
                (Some(p), None) if !p.trim().is_empty() => {
                    GroupMatch::DisplayName(p.to_lowercase())
                }
                (None, Some(x)) if !x.is_empty() => GroupMatch::ExternalId(x.clone()),
                _ => {
                    return Err(format!(
                        "{key}: give exactly one of display_name and external_id"
                    ))
                }
            };
            let role = match e.role.to_ascii_lowercase().as_str() {
                "student" => CourseRole::Student,
                "teacher" => CourseRole::Teacher,
                other => return Err(format!("{key}.role: unknown '{other}' (student, teacher)")),
            };
            let mut courses = Vec::with_capacity(e.courses.len());
            for code in &e.courses {
                check_course_code(code).map_err(|m| format!("{key}.courses: {m}"))?;
                courses.push(code.to_ascii_uppercase());
            }
            if courses.is_empty() {
                return Err(format!("{key}.courses: name at least one course code"));
            }
            rules.push(EnrolmentRule {
                group,
                courses,
                role,
            });
        }
        Ok(Self {
            rules,
            dry_run: c.enrolment_dry_run,
        })
    }

    /// Whether no group grants anything (then no enrolment work, and no call, is done).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The courses a group with this `displayName` and `externalId` grants its members.
    pub fn grants(&self, display_name: &str, external_id: Option<&str>) -> Grants {
        let mut grants = Grants::new();
        let name = display_name.to_lowercase();
        for rule in &self.rules {
            let applies = match &rule.group {
                GroupMatch::DisplayName(pattern) => glob_match(pattern, &name),
                GroupMatch::ExternalId(x) => external_id == Some(x.as_str()),
            };
            if applies {
                for code in &rule.courses {
                    let role = grants.entry(code.clone()).or_insert(rule.role);
                    *role = (*role).max(rule.role);
                }
            }
        }
        grants
    }
}

/// `*` matches any run of characters (also none), `?` one character; the rest literally.
/// Both sides are compared as given (callers lower-case them). Linear in practice: the
/// classic greedy matcher with one backtrack point.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(c) if *c == '?' || *c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// One enrolment change.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    Subscribe {
        user: u64,
        course: String,
        role: CourseRole,
    },
    Unsubscribe {
        user: u64,
        course: String,
    },
}

impl Change {
    pub fn user(&self) -> u64 {
        match self {
            Self::Subscribe { user, .. } | Self::Unsubscribe { user, .. } => *user,
        }
    }

    pub fn course(&self) -> &str {
        match self {
            Self::Subscribe { course, .. } | Self::Unsubscribe { course, .. } => course,
        }
    }

    /// `subscribe` or `unsubscribe`, for the logs.
    pub fn action(&self) -> &'static str {
        match self {
            Self::Subscribe { .. } => "subscribe",
            Self::Unsubscribe { .. } => "unsubscribe",
        }
    }
}

/// The group's state before and after a write, as far as enrolment is concerned.
#[derive(Debug, Clone, Default)]
pub struct Side<'a> {
    pub grants: Grants,
    pub members: &'a [u64],
}

/// The changes that take a group's members from `before` to `after`: a member gains the
/// courses the group grants now and did not grant them before, and loses those it granted
/// before and does not now — except a course `kept` says another group of theirs grants
/// (`kept(user, course)`). A member who stays and a course granted on both sides change
/// nothing (a role change is not made: it would need an unsubscription, which in Chamilo
/// loses course data).
pub fn plan(before: &Side<'_>, after: &Side<'_>, kept: impl Fn(u64, &str) -> bool) -> Vec<Change> {
    let old: BTreeSet<u64> = before.members.iter().copied().collect();
    let new: BTreeSet<u64> = after.members.iter().copied().collect();
    let mut changes = Vec::new();
    for user in &new {
        for (course, role) in &after.grants {
            let had = old.contains(user) && before.grants.contains_key(course);
            if !had && !kept(*user, course) {
                changes.push(Change::Subscribe {
                    user: *user,
                    course: course.clone(),
                    role: *role,
                });
            }
        }
    }
    for user in &old {
        for course in before.grants.keys() {
            let has = new.contains(user) && after.grants.contains_key(course);
            if !has && !kept(*user, course) {
                changes.push(Change::Unsubscribe {
                    user: *user,
                    course: course.clone(),
                });
            }
        }
    }
    changes
}

/// Who the groups entitle to each course: course code → user → role (teacher wins where two
/// groups give one course different roles), from each group's grants and members.
pub fn entitlements<'a>(
    groups: impl IntoIterator<Item = (&'a Grants, &'a [u64])>,
) -> BTreeMap<String, BTreeMap<u64, CourseRole>> {
    let mut out: BTreeMap<String, BTreeMap<u64, CourseRole>> = BTreeMap::new();
    for (grants, members) in groups {
        for (course, role) in grants {
            let users = out.entry(course.clone()).or_default();
            for user in members {
                let held = users.entry(*user).or_insert(*role);
                *held = (*held).max(*role);
            }
        }
    }
    out
}

/// The subscriptions that bring `course` up to its entitled users: each one it does not list
/// (`subscribed`), with the entitled role. Reconciliation only adds: Chamilo does not record
/// who subscribed a user, so a subscription no group grants may be a teacher's own doing, and
/// an unsubscription deletes course data; a role is not changed for the same reason.
pub fn missing(
    course: &str,
    entitled: &BTreeMap<u64, CourseRole>,
    subscribed: &BTreeSet<u64>,
) -> Vec<Change> {
    entitled
        .iter()
        .filter(|(user, _)| !subscribed.contains(user))
        .map(|(user, role)| Change::Subscribe {
            user: *user,
            course: course.to_owned(),
            role: *role,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EnrolmentConfig;

    fn rule(
        display: Option<&str>,
        ext: Option<&str>,
        courses: &[&str],
        role: &str,
    ) -> EnrolmentConfig {
        EnrolmentConfig {
            display_name: display.map(str::to_owned),
            external_id: ext.map(str::to_owned),
            courses: courses.iter().map(|c| (*c).to_owned()).collect(),
            role: role.to_owned(),
        }
    }

    fn rules(entries: Vec<EnrolmentConfig>) -> Result<EnrolmentRules, String> {
        EnrolmentRules::from_config(&ChamiloConfig {
            enrolment: entries,
            ..ChamiloConfig::default()
        })
    }

    #[test]
    fn patterns_match_case_insensitively_with_stars_and_question_marks() {
        for (p, t, m) in [
            ("course *", "course math", true),
            ("course *", "course ", true),
            ("course *", "course", false),
            ("*", "", true),
            ("", "", true),
            ("", "a", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*-teachers", "math-teachers", true),
            ("*a*b*", "xxaxxbxx", true),
            ("*a*b*", "xxbxxaxx", false),
            ("staff", "staff a", false),
            ("ü*", "über", true),
        ] {
            assert_eq!(glob_match(p, t), m, "{p:?} on {t:?}");
        }
        let r = rules(vec![rule(Some("Course *"), None, &["m1"], "student")]).unwrap();
        assert_eq!(r.grants("COURSE Maths", None).len(), 1);
        assert!(r.grants("Staff", None).is_empty());
    }

    #[test]
    fn grants_combine_rules_and_teacher_wins() {
        let r = rules(vec![
            rule(Some("Course *"), None, &["M1", "m2"], "student"),
            rule(None, Some("ext-9"), &["M2"], "Teacher"),
        ])
        .unwrap();
        assert!(r.dry_run, "dry run is the default");
        let g = r.grants("Course A", Some("ext-9"));
        assert_eq!(g.get("M1"), Some(&CourseRole::Student));
        assert_eq!(g.get("M2"), Some(&CourseRole::Teacher));
        let g = r.grants("Other", Some("ext-9"));
        assert_eq!(g.keys().collect::<Vec<_>>(), vec!["M2"]);
        assert!(
            r.grants("Other", Some("EXT-9")).is_empty(),
            "externalId is exact"
        );
    }

    #[test]
    fn invalid_rules_name_their_key() {
        for (entry, key) in [
            (rule(None, None, &["A"], "student"), "chamilo.enrolment[0]:"),
            (
                rule(Some("x"), Some("y"), &["A"], "student"),
                "chamilo.enrolment[0]:",
            ),
            (
                rule(Some("x"), None, &[], "student"),
                "chamilo.enrolment[0].courses",
            ),
            (
                rule(Some("x"), None, &["A B"], "student"),
                "chamilo.enrolment[0].courses",
            ),
            (
                rule(Some("x"), None, &["A"], "admin"),
                "chamilo.enrolment[0].role",
            ),
        ] {
            let e = rules(vec![entry]).unwrap_err();
            assert!(e.starts_with(key), "{e}");
        }
    }

    fn grants(courses: &[(&str, CourseRole)]) -> Grants {
        courses.iter().map(|(c, r)| ((*c).to_owned(), *r)).collect()
    }

    #[test]
    fn joining_and_leaving_change_only_what_no_other_group_grants() {
        use CourseRole::*;
        let g = grants(&[("M1", Student), ("M2", Teacher)]);
        let before = Side {
            grants: g.clone(),
            members: &[1, 2],
        };
        let after = Side {
            grants: g.clone(),
            members: &[2, 3],
        };
        // User 1 keeps M1 through another group.
        let changes = plan(&before, &after, |u, c| u == 1 && c == "M1");
        assert_eq!(
            changes,
            vec![
                Change::Subscribe {
                    user: 3,
                    course: "M1".into(),
                    role: Student
                },
                Change::Subscribe {
                    user: 3,
                    course: "M2".into(),
                    role: Teacher
                },
                Change::Unsubscribe {
                    user: 1,
                    course: "M2".into()
                },
            ]
        );
        // A rename that stops matching: everyone loses the courses; one that starts: gains.
        let none = Side {
            grants: Grants::new(),
            members: &[2],
        };
        let some = Side {
            grants: grants(&[("M1", Student)]),
            members: &[2],
        };
        assert_eq!(
            plan(&some, &none, |_, _| false),
            vec![Change::Unsubscribe {
                user: 2,
                course: "M1".into()
            }]
        );
        assert_eq!(
            plan(&none, &some, |_, _| false),
            vec![Change::Subscribe {
                user: 2,
                course: "M1".into(),
                role: Student
            }]
        );
        // Nothing changes: nothing to do; a group that grants nothing: nothing to do.
        assert!(plan(&some, &some, |_, _| false).is_empty());
        let a = Side {
            grants: Grants::new(),
            members: &[1],
        };
        let b = Side {
            grants: Grants::new(),
            members: &[2],
        };
        assert!(plan(&a, &b, |_, _| false).is_empty());
    }

    #[test]
    fn entitlements_join_groups_and_teacher_wins() {
        let a: Grants = [
            ("MATH".to_owned(), CourseRole::Student),
            ("PHYS".to_owned(), CourseRole::Student),
        ]
        .into();
        let b: Grants = [("MATH".to_owned(), CourseRole::Teacher)].into();
        let none = Grants::new();
        let e = entitlements([
            (&a, &[1u64, 2][..]),
            (&b, &[2u64, 3][..]),
            (&none, &[9u64][..]),
        ]);
        assert_eq!(e.len(), 2);
        assert_eq!(
            e["MATH"].clone().into_iter().collect::<Vec<_>>(),
            vec![
                (1, CourseRole::Student),
                (2, CourseRole::Teacher),
                (3, CourseRole::Teacher)
            ]
        );
        assert_eq!(e["PHYS"].keys().copied().collect::<Vec<_>>(), vec![1, 2]);
        // The order of the groups does not change the outcome.
        let e2 = entitlements([(&b, &[2u64, 3][..]), (&a, &[1u64, 2][..])]);
        assert_eq!(e, e2);
    }

    #[test]
    fn missing_only_adds_and_keeps_roles() {
        let entitled: BTreeMap<u64, CourseRole> = [
            (1, CourseRole::Student),
            (2, CourseRole::Teacher),
            (3, CourseRole::Student),
        ]
        .into();
        // 2 is subscribed (whatever its role there), 7 is subscribed without any grant.
        let subscribed: BTreeSet<u64> = [2, 7].into();
        assert_eq!(
            missing("MATH", &entitled, &subscribed),
            vec![
                Change::Subscribe {
                    user: 1,
                    course: "MATH".into(),
                    role: CourseRole::Student
                },
                Change::Subscribe {
                    user: 3,
                    course: "MATH".into(),
                    role: CourseRole::Student
                },
            ]
        );
        assert!(missing("MATH", &BTreeMap::new(), &subscribed).is_empty());
    }
}
