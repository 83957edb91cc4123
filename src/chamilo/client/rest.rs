//! The REST actions about users (`v2.php`).

use std::time::Instant;

use serde_json::Value;

use super::decode::{
    as_id, decode_envelope, decode_profiles, expect_true, single_bool, single_id, ListedRow,
    ListedUser, Profile,
};
use super::{is_stale_key, keyed_form, read, transport_error, unexpected, ChamiloClient};
use crate::chamilo::error::{CallOutcome, ChamiloError};
use crate::config::Secret;

/// Keys `update_user_from_username` accepts; any other key makes Chamilo refuse the whole call.
pub const UPDATABLE_KEYS: &[&str] = &[
    "firstname",
    "lastname",
    "email",
    "phone",
    "status",
    "official_code",
    "language",
    "auth_source",
    "active",
    "enabled",
    "expiration_date",
];

/// The fields of `save_user`. Chamilo creates the user active; `official_code` and
/// `active=false` need a follow-up update.
#[derive(Debug, Clone)]
pub struct NewAccount {
    pub username: String,
    /// Always sent: without one Chamilo refuses platform users and gives SSO users the
    /// auth source's name as password.
    pub password: Secret,
    pub firstname: String,
    pub lastname: String,
    pub email: String,
    pub status: i64,
    pub language: Option<String>,
    pub phone: Option<String>,
    pub auth_source: Option<String>,
    pub expiration_date: Option<String>,
    /// `original_user_id_name` / `original_user_id_value`: the handle SOAP calls address
    /// the user by.
    pub handle: Option<(String, String)>,
    /// Further extra fields (created by Chamilo if missing).
    pub extra: Vec<(String, String)>,
}

/// What `delete_user` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// Deleted, or there was no such user (Chamilo does not tell them apart).
    Deleted,
    /// Refused: the user is the only teacher of a course (or the id was not numeric).
    Refused,
}

/// What the start-up check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// The service account's user id.
    pub service_user_id: Option<u64>,
    /// Ids of the anonymous users (status 6): never returned or changed through SCIM.
    pub anonymous_ids: Vec<u64>,
}

impl ChamiloClient {
    /// `get_users`: every user (`status=None` → `*`) or those of one status, with the values
    /// of `extra_fields`. Costly on large installs: for background index builds only.
    pub async fn get_users(
        &self,
        status: Option<i64>,
        extra_fields: &[&str],
    ) -> Result<Vec<ListedUser>, ChamiloError> {
        let status = status.map_or_else(|| "*".to_owned(), |s| s.to_string());
        let fields = extra_fields.join(",");
        let mut params = vec![("status", status.as_str())];
        if !fields.is_empty() {
            params.push(("extra_fields", fields.as_str()));
        }
        let rows: Vec<ListedRow> = self
            .call_with_timeout("get_users", &params, Some(self.listing_timeout))
            .await?;
        rows.into_iter()
            .map(|row| row.into_user(extra_fields))
            .collect()
    }

    /// `get_users` decoded as it arrives: `each` gets every user in turn, so that a large
    /// listing is never held whole (body, JSON tree or rows). Returns the number of users. For
    /// background index builds.
    pub async fn get_users_each(
        &self,
        status: Option<i64>,
        extra_fields: &[&str],
        mut each: impl FnMut(ListedUser),
    ) -> Result<usize, ChamiloError> {
        const ACTION: &str = "get_users";
        let status = status.map_or_else(|| "*".to_owned(), |s| s.to_string());
        let fields = extra_fields.join(",");
        let mut params = vec![("status", status.as_str())];
        if !fields.is_empty() {
            params.push(("extra_fields", fields.as_str()));
        }
        let mut retried = false;
        loop {
            let key = self.api_key(ACTION).await?;
            let username = read(&self.credentials).username;
            let form = keyed_form(ACTION, &username, &key, &params);
            let started = Instant::now();
            let result = self
                .stream_rows(ACTION, &form, extra_fields, &mut each)
                .await;
            let outcome = match &result {
                Ok(_) => CallOutcome::Ok,
                Err(e) => e.outcome(),
            };
            self.record(ACTION, outcome, started);
            match result {
                Err(e) if !retried && is_stale_key(&e) => {
                    retried = true;
                    self.refresh_key(Some(&key)).await?;
                }
                other => return other,
            }
        }
    }

    async fn stream_rows(
        &self,
        action: &str,
        form: &[(&str, &str)],
        extra_fields: &[&str],
        each: &mut impl FnMut(ListedUser),
    ) -> Result<usize, ChamiloError> {
        let mut resp = self
            .http
            .post(&self.rest_url)
            .form(form)
            .timeout(self.listing_timeout)
            .send()
            .await
            .map_err(|e| transport_error(action, e))?;
        let status = resp.status();
        let is_html = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html"));
        if !status.is_success() {
            let body = resp.bytes().await.map_err(|e| transport_error(action, e))?;
            if status.as_u16() == 500 && body.is_empty() {
                return Err(unexpected(
                    action,
                    "HTTP 500 with an empty body (a PHP fatal error in Chamilo)",
                ));
            }
            return Err(unexpected(action, format!("HTTP {}", status.as_u16())));
        }
        let mut scanner = super::listing::RowScanner::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| transport_error(action, e))? {
            scanner.feed(&chunk, |row| {
                let row: ListedRow = serde_json::from_slice(row).map_err(|e| {
                    unexpected(action, format!("an answer of an unknown shape: {e}"))
                })?;
                each(row.into_user(extra_fields)?);
                Ok::<(), ChamiloError>(())
            })?;
        }
        let rows = scanner.rows();
        let Some(skeleton) = scanner.finish() else {
            return Err(unexpected(action, "the answer ended early (truncated)"));
        };
        decode_envelope::<serde::de::IgnoredAny>(action, &skeleton, is_html)?;
        Ok(rows)
    }

    /// `username_exist` (case-insensitive on Chamilo's side).
    pub async fn username_exists(&self, login: &str) -> Result<bool, ChamiloError> {
        let data = self.call("username_exist", &[("loginname", login)]).await?;
        single_bool("username_exist", &data)
    }

    /// `users_profiles_by_extra_field`: users whose `field` equals `value` (case-insensitive,
    /// trailing spaces ignored), in id order.
    pub async fn users_by_extra_field(
        &self,
        field: &str,
        value: &str,
        only_active: bool,
    ) -> Result<Vec<Profile>, ChamiloError> {
        let mut params = vec![("field_name", field), ("field_value", value)];
        if only_active {
            params.push(("active", "1"));
        }
        let data = self.call("users_profiles_by_extra_field", &params).await?;
        decode_profiles(&data)
    }

    /// `save_user`: creates an active user; returns its id.
    pub async fn save_user(&self, account: &NewAccount) -> Result<u64, ChamiloError> {
        let status = account.status.to_string();
        let mut owned: Vec<(String, String)> = vec![
            ("loginname".into(), account.username.clone()),
            ("password".into(), account.password.expose().to_owned()),
            ("firstname".into(), account.firstname.clone()),
            ("lastname".into(), account.lastname.clone()),
            ("email".into(), account.email.clone()),
            ("status".into(), status),
        ];
        let optional = [
            ("language", &account.language),
            ("phone", &account.phone),
            ("auth_source", &account.auth_source),
            ("expiration_date", &account.expiration_date),
        ];
        for (k, v) in optional {
            if let Some(v) = v {
                owned.push((k.into(), v.clone()));
            }
        }
        if let Some((name, value)) = &account.handle {
            owned.push(("original_user_id_name".into(), name.clone()));
            owned.push(("original_user_id_value".into(), value.clone()));
        }
        push_extra(&mut owned, &account.extra);
        let params: Vec<(&str, &str)> = owned
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let data = self.call("save_user", &params).await?;
        single_id("save_user", &data)
    }

    /// `update_user_from_username`: a partial update of `changes` (keys from
    /// [`UPDATABLE_KEYS`]) and extra-field values (the fields must exist).
    pub async fn update_user(
        &self,
        login: &str,
        changes: &[(&str, String)],
        extra: &[(String, String)],
    ) -> Result<(), ChamiloError> {
        const ACTION: &str = "update_user_from_username";
        if let Some((bad, _)) = changes.iter().find(|(k, _)| !UPDATABLE_KEYS.contains(k)) {
            // Chamilo would refuse the whole call; refuse before it.
            return Err(ChamiloError::Rejected {
                action: ACTION.into(),
                message: format!("Unsupported update. '{bad}'"),
            });
        }
        let mut owned: Vec<(String, String)> = vec![("loginname".into(), login.to_owned())];
        owned.extend(changes.iter().map(|(k, v)| ((*k).to_owned(), v.clone())));
        push_extra(&mut owned, extra);
        let params: Vec<(&str, &str)> = owned
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let data = self.call(ACTION, &params).await?;
        expect_true(ACTION, &data)
    }

    /// `delete_user`: a hard delete.
    pub async fn delete_user(&self, id: u64) -> Result<DeleteOutcome, ChamiloError> {
        let id = id.to_string();
        let data = self.call("delete_user", &[("user_id", &id)]).await?;
        match data.get("status") {
            Some(Value::Bool(true)) => Ok(DeleteOutcome::Deleted),
            Some(Value::Bool(false)) => Ok(DeleteOutcome::Refused),
            _ => Err(unexpected("delete_user", "no status in data")),
        }
    }

    /// Which of the user extra fields `fields` do not exist in Chamilo. `get_users` leaves
    /// unknown field names out of its rows, so a listing of a small status (anonymous, then
    /// teachers) tells; when both are empty nothing can be told and none is reported missing.
    pub async fn missing_extra_fields(&self, fields: &[&str]) -> Result<Vec<String>, ChamiloError> {
        for status in [6, 1] {
            let rows = self.get_users(Some(status), fields).await?;
            if let Some(first) = rows.first() {
                return Ok(fields
                    .iter()
                    .filter(|f| !first.extra.iter().any(|(n, _)| n == f.trim()))
                    .map(|f| (*f).to_owned())
                    .collect());
            }
        }
        Ok(Vec::new())
    }

    /// Start-up check: the key works, the service account is a platform administrator, and the
    /// web services are the current 1.11.x ones (`get_users` returns usernames and the active
    /// flag; `users_profiles_by_extra_field` exists). Costs two small calls.
    pub async fn check_capabilities(&self) -> Result<Capabilities, ChamiloError> {
        const NEED: &str = "the proxy needs the REST web services of the current Chamilo 1.11.x branch (v2.php/Rest.php of 2024 or later, as in 1.11.28+)";
        let username = read(&self.credentials).username;
        let not_admin = |e: ChamiloError| {
            match e {
            ChamiloError::Unauthorized { detail, .. } if detail.contains("administrator") => {
                ChamiloError::Incompatible {
                    detail: format!(
                        "the service account '{username}' is not a Chamilo platform administrator; make it one (Administration > Users > edit > Platform admin)"
                    ),
                }
            }
            other => other,
        }
        };
        // Anonymous users (status 6) are few; fall back to teachers if there are none.
        let mut data = self
            .call("get_users", &[("status", "6")])
            .await
            .map_err(&not_admin)?;
        let anonymous_ids: Vec<u64> = data
            .as_array()
            .map(|rows| rows.iter().filter_map(|r| as_id(r.get("id"))).collect())
            .unwrap_or_default();
        if data.as_array().is_some_and(Vec::is_empty) {
            data = self
                .call("get_users", &[("status", "1")])
                .await
                .map_err(&not_admin)?;
        }
        let Value::Array(rows) = &data else {
            return Err(ChamiloError::Incompatible {
                detail: format!("get_users did not return a list; {NEED}"),
            });
        };
        if let Some(first) = rows.first() {
            if first.get("username").is_none() || first.get("active").is_none() {
                return Err(ChamiloError::Incompatible {
                    detail: format!(
                        "get_users returns no usernames or active flags (Chamilo 1.11.16 or older); {NEED}"
                    ),
                });
            }
        }
        let service_user_id = rows
            .iter()
            .find(|r| {
                r.get("username")
                    .and_then(Value::as_str)
                    .is_some_and(|u| u.eq_ignore_ascii_case(&username))
            })
            .and_then(|r| as_id(r.get("id")));
        match self
            .call(
                "users_profiles_by_extra_field",
                &[
                    ("field_name", "scim_capability_probe"),
                    ("field_value", "-"),
                ],
            )
            .await
        {
            Ok(_) => {}
            Err(ChamiloError::Rejected { message, .. }) if message == "Invalid action" => {
                return Err(ChamiloError::Incompatible {
                    detail: format!("users_profiles_by_extra_field is missing; {NEED}"),
                })
            }
            Err(e) => return Err(not_admin(e)),
        }
        Ok(Capabilities {
            service_user_id,
            anonymous_ids,
        })
    }
}

fn push_extra(out: &mut Vec<(String, String)>, extra: &[(String, String)]) {
    for (i, (name, value)) in extra.iter().enumerate() {
        out.push((format!("extra[{i}][field_name]"), name.clone()));
        out.push((format!("extra[{i}][field_value]"), value.clone()));
    }
}
