//! The REST actions about course enrolment.

use serde_json::Value;

use super::decode::{as_i64, as_id, single_bool, str_field};
use super::{unexpected, ChamiloClient};
use crate::chamilo::error::ChamiloError;

/// A course as `user_courses` lists it: what maps a course code to the id that
/// `get_users_subscribed_to_course` needs (no other web service does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CourseRef {
    pub id: u64,
    pub code: String,
}

/// A subscription as `get_users_subscribed_to_course` lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscriber {
    pub user_id: u64,
    /// Chamilo's course status: 1 teacher, 5 student.
    pub status: i64,
}

impl ChamiloClient {
    /// `subscribe_user_to_course` by course code with a course `status` (1 teacher, else
    /// student). `Ok(false)` is Chamilo's `[false]`, its answer to every failure: a course or
    /// user that does not exist, and a user already subscribed.
    pub async fn subscribe_to_course(
        &self,
        course_code: &str,
        user: u64,
        status: i64,
    ) -> Result<bool, ChamiloError> {
        let (u, s) = (user.to_string(), status.to_string());
        let data = self
            .call(
                "subscribe_user_to_course",
                &[
                    ("course_code", course_code),
                    ("user_id", &u),
                    ("status", &s),
                ],
            )
            .await?;
        single_bool("subscribe_user_to_course", &data)
    }

    /// `unsubscribe_user_from_course` by course code. Chamilo answers `[true]` also for a
    /// non-member, and `[false]` only when the course does not exist: `Ok(false)`.
    pub async fn unsubscribe_from_course(
        &self,
        course_code: &str,
        user: u64,
    ) -> Result<bool, ChamiloError> {
        let u = user.to_string();
        let data = self
            .call(
                "unsubscribe_user_from_course",
                &[("course_code", course_code), ("user_id", &u)],
            )
            .await?;
        single_bool("unsubscribe_user_from_course", &data)
    }

    /// `user_courses` of `user` (a platform admin's call; the current 1.11.x web services
    /// take `user_id`): the courses the user is subscribed to.
    pub async fn user_courses(&self, user: u64) -> Result<Vec<CourseRef>, ChamiloError> {
        let u = user.to_string();
        let data = self.call("user_courses", &[("user_id", &u)]).await?;
        let Value::Array(rows) = &data else {
            return Err(unexpected("user_courses", "data is not a list"));
        };
        rows.iter()
            .map(|row| {
                let id = as_id(row.get("id"))
                    .ok_or_else(|| unexpected("user_courses", "course without id"))?;
                let code = str_field(row, "code");
                if code.is_empty() {
                    return Err(unexpected("user_courses", "course without code"));
                }
                Ok(CourseRef { id, code })
            })
            .collect()
    }

    /// `get_users_subscribed_to_course` by course id: every subscription of the course.
    pub async fn course_subscribers(&self, course: u64) -> Result<Vec<Subscriber>, ChamiloError> {
        let c = course.to_string();
        let data = self
            .call("get_users_subscribed_to_course", &[("course", &c)])
            .await?;
        let Value::Array(rows) = &data else {
            return Err(unexpected(
                "get_users_subscribed_to_course",
                "data is not a list",
            ));
        };
        rows.iter()
            .map(|row| {
                Ok(Subscriber {
                    user_id: as_id(row.get("user_id")).ok_or_else(|| {
                        unexpected(
                            "get_users_subscribed_to_course",
                            "subscription without user_id",
                        )
                    })?,
                    status: row.get("status_rel").and_then(as_i64).unwrap_or(0),
                })
            })
            .collect()
    }
}
