//! The SOAP calls REST cannot do (`registration.soap.php`): renaming a user or setting its
//! password, renaming a class. Bodies are never logged: the answer's debug dump echoes the
//! SOAP secret.

pub mod envelope;

use std::time::Instant;

use rand::Rng;

use self::envelope::SoapAnswer;
use super::{read, transport_error, unexpected, ChamiloClient};
use crate::chamilo::error::{CallOutcome, ChamiloError};
use crate::config::Secret;

/// Largest SOAP envelope read before giving up (the debug dump after it is not read).
const SOAP_ENVELOPE_LIMIT: usize = 1024 * 1024;

impl ChamiloClient {
    /// SOAP `WSEditUserCredentials`: renames the user addressed by the extra-field handle
    /// and/or sets its password. `Ok(false)` when Chamilo answered 0: the handle is unknown,
    /// the user is inactive, or the new name is taken.
    pub async fn edit_user_credentials(
        &self,
        handle_field: &str,
        handle_value: &str,
        username: &str,
        password: Option<&Secret>,
    ) -> Result<bool, ChamiloError> {
        let answer = self
            .soap(
                "WSEditUserCredentials",
                "editUserCredentials",
                &[
                    ("username", Some(username)),
                    ("password", password.map(Secret::expose)),
                    ("original_user_id_name", Some(handle_field)),
                    ("original_user_id_value", Some(handle_value)),
                ],
            )
            .await?;
        Ok(answer == "1")
    }

    /// Checks the SOAP secret (`security_key`, `soap_ip`) once, at start-up, so that a wrong
    /// one is an operator's error at once rather than the first rename's 503: a
    /// `WSEditUserCredentials` addressed to a handle no account holds, which Chamilo answers
    /// 0 without changing anything once the secret is accepted.
    pub async fn check_soap_secret(&self, handle_field: &str) -> Result<(), ChamiloError> {
        let probe = {
            let mut rng = rand::rng();
            let tag: String = (0..16)
                .map(|_| {
                    char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.random_range(0..36)])
                })
                .collect();
            format!("scim-proxy-secret-check-{tag}")
        };
        match self
            .edit_user_credentials(handle_field, &probe, &probe, None)
            .await
        {
            Ok(false) => Ok(()),
            Ok(true) => Err(unexpected(
                "WSEditUserCredentials",
                format!("the SOAP secret check renamed an account holding {handle_field} = {probe}; this Chamilo does not answer as 1.11 does"),
            )),
            Err(e) => Err(e),
        }
    }

    /// SOAP `WSUpdateGroup`: renames a class (Chamilo answers 1 even for a missing id).
    pub async fn update_group(
        &self,
        id: u64,
        name: &str,
        description: Option<&str>,
    ) -> Result<(), ChamiloError> {
        let id = id.to_string();
        self.soap(
            "WSUpdateGroup",
            "updateGroup",
            &[
                ("id", Some(&id)),
                ("name", Some(name)),
                ("description", description),
            ],
        )
        .await
        .map(|_| ())
    }

    async fn soap(
        &self,
        operation: &str,
        wrapper: &str,
        params: &[(&str, Option<&str>)],
    ) -> Result<String, ChamiloError> {
        let started = Instant::now();
        let result = self.soap_inner(operation, wrapper, params).await;
        let outcome = match &result {
            Ok(_) => CallOutcome::Ok,
            Err(e) => e.outcome(),
        };
        self.record(operation, outcome, started);
        result
    }

    async fn soap_inner(
        &self,
        operation: &str,
        wrapper: &str,
        params: &[(&str, Option<&str>)],
    ) -> Result<String, ChamiloError> {
        let Some(security_key) = read(&self.credentials).security_key else {
            return Err(ChamiloError::Config {
                detail: format!(
                    "chamilo.security_key is not configured; it is needed for {operation}"
                ),
            });
        };
        let secret = envelope::secret_key(&self.soap_ip, security_key.expose());
        let mut all: Vec<(&str, Option<&str>)> = vec![("secret_key", Some(secret.as_str()))];
        all.extend_from_slice(params);
        let body = envelope::envelope(operation, wrapper, &all);
        let mut req = self
            .http
            .post(&self.soap_url)
            .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=utf-8")
            .body(body);
        if self.soap_send_forwarded_for {
            // Our own value, never a client's: Chamilo keys the secret on its first entry.
            req = req.header("X-Forwarded-For", &self.soap_ip);
        }
        let mut resp = req
            .send()
            .await
            .map_err(|e| transport_error(operation, e))?;
        let status = resp.status().as_u16();
        let is_html = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/html"));
        let mut buf: Vec<u8> = Vec::new();
        let envelope = loop {
            if let Some(env) = envelope::envelope_prefix(&buf) {
                break Some(env.to_vec());
            }
            if buf.len() > SOAP_ENVELOPE_LIMIT {
                break None;
            }
            match resp
                .chunk()
                .await
                .map_err(|e| transport_error(operation, e))?
            {
                Some(chunk) => buf.extend_from_slice(&chunk),
                None => break None,
            }
        };
        // The rest of the body (the debug dump) is dropped unread with the response.
        drop(resp);
        let Some(envelope) = envelope else {
            let detail = if status == 500 && buf.is_empty() {
                "HTTP 500 with an empty body (a PHP fatal error in Chamilo)".to_owned()
            } else if is_html {
                format!("an HTML page (HTTP {status}) instead of a SOAP envelope (usually a Chamilo database error)")
            } else {
                format!("no SOAP envelope in the answer (HTTP {status})")
            };
            return Err(unexpected(operation, detail));
        };
        let text = String::from_utf8_lossy(&envelope);
        match envelope::parse_answer(&text) {
            Some(SoapAnswer::Return(v)) => Ok(v),
            Some(SoapAnswer::Fault(f)) if f.starts_with("Secret key is not correct") => {
                Err(ChamiloError::Unauthorized {
                    action: operation.to_owned(),
                    detail: "SOAP secret refused: check chamilo.security_key and chamilo.soap_ip"
                        .into(),
                })
            }
            Some(SoapAnswer::Fault(f)) => Err(unexpected(
                operation,
                format!(
                    "SOAP fault: {}",
                    crate::chamilo::error::sanitize_message(&f)
                ),
            )),
            None => Err(unexpected(operation, "unreadable SOAP envelope")),
        }
    }
}
