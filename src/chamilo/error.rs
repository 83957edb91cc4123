//! One error type per Chamilo failure class, so the SCIM layer can answer with the right
//! status (409, 400, 404, 503, 504, 502) without looking at Chamilo's text.
//!
//! `Display` never contains a secret: Chamilo's Doctrine errors (which echo the new user's
//! password hash and salt) are cut down to their SQLSTATE line before they get here.

use std::fmt;

/// The outcome class of one call, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CallOutcome {
    Ok,
    /// Chamilo answered `error:true` (taken login, validation, not found, not allowed).
    Refused,
    Unreachable,
    Timeout,
    Unexpected,
}

impl CallOutcome {
    /// A stable label for metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Refused => "refused",
            Self::Unreachable => "unreachable",
            Self::Timeout => "timeout",
            Self::Unexpected => "unexpected",
        }
    }
}

/// A failed Chamilo call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChamiloError {
    /// The login is taken (case-insensitively) — SCIM 409 `uniqueness`.
    #[error("Chamilo {action}: the login is already taken")]
    LoginTaken { action: String },
    /// Chamilo refused the request. For a write refused before anything was saved this is
    /// SCIM 400 `invalidValue` (the proxy validates first, so it is rare); anywhere else it is
    /// the proxy's or Chamilo's fault, 502.
    #[error("Chamilo {action} refused the request: {message}")]
    Rejected { action: String, message: String },
    /// `update_user_from_username` could not save an extra-field value: the value was already
    /// stored and written in the same second (Chamilo counts affected rows), or the field does
    /// not exist. The extra fields before it in the request were saved, no column was.
    #[error("Chamilo {action} could not save the extra field {}", field.as_deref().unwrap_or("(unnamed)"))]
    ExtraFieldNotSaved {
        action: String,
        /// The field Chamilo named, when its message could be read.
        field: Option<String>,
    },
    /// The target user (or group, course) does not exist — SCIM 404.
    #[error("Chamilo {action}: not found")]
    NotFound { action: String },
    /// The service account's key or password is wrong, or it is not an administrator.
    #[error("Chamilo {action}: not authorised ({detail})")]
    Unauthorized { action: String, detail: String },
    /// No connection could be made — SCIM 503 with `Retry-After`.
    #[error("Chamilo is unreachable ({action}): {detail}")]
    Unreachable { action: String, detail: String },
    /// Chamilo did not answer in time — SCIM 504.
    #[error("Chamilo did not answer {action} in time")]
    Timeout { action: String },
    /// Anything else (HTTP 500, an HTML page, a data shape we do not know) — SCIM 502.
    #[error("unexpected answer from Chamilo to {action}: {detail}")]
    Unexpected { action: String, detail: String },
    /// The answer needs accounts the user index does not have yet (made since the last
    /// listing); a listing has been asked for in the background — SCIM 503 with `Retry-After`.
    #[error("the user index is being refreshed")]
    IndexRefreshing { retry_after: std::time::Duration },
    /// The Chamilo instance lacks something the proxy needs (start-up check).
    #[error("Chamilo is not usable by the proxy: {detail}")]
    Incompatible { detail: String },
    /// The proxy's own Chamilo settings are unusable (missing secret, unreadable file).
    #[error("Chamilo settings: {detail}")]
    Config { detail: String },
}

impl ChamiloError {
    /// The metrics class of this error.
    pub fn outcome(&self) -> CallOutcome {
        match self {
            Self::LoginTaken { .. }
            | Self::Rejected { .. }
            | Self::ExtraFieldNotSaved { .. }
            | Self::NotFound { .. }
            | Self::Unauthorized { .. } => CallOutcome::Refused,
            Self::Unreachable { .. } => CallOutcome::Unreachable,
            Self::Timeout { .. } => CallOutcome::Timeout,
            Self::Unexpected { .. }
            | Self::Incompatible { .. }
            | Self::Config { .. }
            | Self::IndexRefreshing { .. } => CallOutcome::Unexpected,
        }
    }

    /// Whether the call may have been carried out although it failed: it timed out, the
    /// connection broke, or Chamilo answered with a PHP fatal or an HTML page. Sending the same
    /// values again is how such a call is repaired.
    pub fn is_ambiguous(&self) -> bool {
        matches!(
            self,
            Self::Timeout { .. } | Self::Unreachable { .. } | Self::Unexpected { .. }
        )
    }

    /// Chamilo's refusal text for a duplicate group name (`"<name> Already exists"`).
    pub fn is_duplicate_name(&self) -> bool {
        matches!(self, Self::Rejected { message, .. } if message.ends_with(" Already exists"))
    }
}

/// Chamilo's refusal for non-administrators.
pub const NOT_ALLOWED_PREFIX: &str = "You are not allowed to see this page";

/// The beginning of Chamilo's message when an extra-field value is not saved.
const EXTRA_FIELD_NOT_SAVED: &str = "Could not update extra field value.";

/// The field named after [`EXTRA_FIELD_NOT_SAVED`]: `: Array\n(\n    [field_name] => X\n…`
/// (indexed `extra[i][…]` form) or `: X` (associative form).
fn extra_field_named(rest: &str) -> Option<String> {
    let rest = rest.strip_prefix(':')?.trim_start();
    if let Some(after) = rest.split("[field_name] => ").nth(1) {
        return after.lines().next().map(|f| f.trim_end().to_owned());
    }
    (!rest.starts_with("Array") && !rest.is_empty()).then(|| rest.trim().to_owned())
}

/// Turns an `{"error":true,"message":…}` answer into an error class.
pub fn classify_refusal(action: &str, message: &str) -> ChamiloError {
    let action = action.to_owned();
    let message = sanitize_message(message);
    if message == "This login is not available" || message.contains("Duplicate entry") {
        return ChamiloError::LoginTaken { action };
    }
    if message == "User not found." || message == "This course could not be found" {
        return ChamiloError::NotFound { action };
    }
    if message == "Invalid API key" {
        return ChamiloError::Unauthorized {
            action,
            detail: "invalid API key".to_owned(),
        };
    }
    if message == "Invalid user detected." {
        return ChamiloError::Unauthorized {
            action,
            detail: "wrong service-account username or password".to_owned(),
        };
    }
    if let Some(rest) = message.strip_prefix(EXTRA_FIELD_NOT_SAVED) {
        return ChamiloError::ExtraFieldNotSaved {
            action,
            field: extra_field_named(rest),
        };
    }
    if message.starts_with(NOT_ALLOWED_PREFIX) {
        return ChamiloError::Unauthorized {
            action,
            detail: "the service account is not a Chamilo platform administrator".to_owned(),
        };
    }
    ChamiloError::Rejected { action, message }
}

/// Doctrine's exception text holds the INSERT parameters (password hash, salt): keep only
/// the SQLSTATE line. Any other message is kept, cut to a sane length.
pub fn sanitize_message(message: &str) -> String {
    if message.starts_with("An exception occurred") {
        let tail = message
            .rsplit("\n\n")
            .next()
            .filter(|t| t.starts_with("SQLSTATE"))
            .unwrap_or("(details withheld)");
        return format!("database error: {tail}");
    }
    let mut m: String = message.chars().take(300).collect();
    if m.len() < message.len() {
        m.push('…');
    }
    m
}

impl fmt::Display for CallOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes() {
        assert!(matches!(
            classify_refusal("save_user", "This login is not available"),
            ChamiloError::LoginTaken { .. }
        ));
        assert!(matches!(
            classify_refusal("update_user_from_username", "User not found."),
            ChamiloError::NotFound { .. }
        ));
        assert!(matches!(
            classify_refusal("get_users", "You are not allowed to see this page. Either…"),
            ChamiloError::Unauthorized { .. }
        ));
        assert!(matches!(
            classify_refusal("save_user", "User not registered."),
            ChamiloError::Rejected { .. }
        ));
        assert!(classify_refusal("add_group", "ClassA Already exists").is_duplicate_name());
    }

    #[test]
    fn extra_field_refusals_name_the_field() {
        let indexed = "Could not update extra field value.: Array\n(\n    [field_name] => scim_external_id\n    [field_value] => EXT-2\n)\n";
        assert_eq!(
            classify_refusal("update_user_from_username", indexed),
            ChamiloError::ExtraFieldNotSaved {
                action: "update_user_from_username".into(),
                field: Some("scim_external_id".into())
            }
        );
        assert_eq!(
            classify_refusal(
                "update_user_from_username",
                "Could not update extra field value.: no_such_field"
            ),
            ChamiloError::ExtraFieldNotSaved {
                action: "update_user_from_username".into(),
                field: Some("no_such_field".into())
            }
        );
        let empty = "Could not update extra field value.: Array\n(\n    [field_name] => scim_user_name\n    [field_value] => \n)\n";
        assert!(matches!(
            classify_refusal("update_user_from_username", empty),
            ChamiloError::ExtraFieldNotSaved { field: Some(f), .. } if f == "scim_user_name"
        ));
    }

    #[test]
    fn doctrine_text_loses_the_password_hash() {
        let raw = "An exception occurred while executing 'INSERT INTO user (…)' with params [null, \"race2\", \"$2y$04$eXmaTb4SZWO5RwBUhWa21.38zcgVYK4LIrFHW0NajGLRldoHkM7U6\"]:\n\nSQLSTATE[23000]: Integrity constraint violation: 1062 Duplicate entry 'race2' for key 'UNIQ'";
        let e = classify_refusal("save_user", raw);
        assert!(matches!(e, ChamiloError::LoginTaken { .. }));
        let m = sanitize_message(raw);
        assert!(!m.contains("$2y$"), "{m}");
        assert!(m.starts_with("database error: SQLSTATE[23000]"));
        let e = classify_refusal(
            "save_user",
            "An exception occurred … with params [\"$2y$04$abc\"]:\n\nSQLSTATE[23000]: 1048 Column 'status' cannot be null",
        );
        assert!(!e.to_string().contains("$2y$"));
    }
}
