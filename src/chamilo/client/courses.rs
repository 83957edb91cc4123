//! The REST actions about course enrolment.

use super::decode::single_bool;
use super::ChamiloClient;
use crate::chamilo::error::ChamiloError;

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
}
