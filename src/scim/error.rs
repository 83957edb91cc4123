//! SCIM errors (RFC 7644 §3.12) and how directory errors map onto them.

use std::time::Duration;

use http::StatusCode;
use serde_json::json;

use crate::directory::DirectoryError;

/// RFC 7644 `scimType` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimType {
    InvalidFilter,
    TooMany,
    Uniqueness,
    Mutability,
    InvalidSyntax,
    InvalidPath,
    NoTarget,
    InvalidValue,
    InvalidVers,
    Sensitive,
}

impl ScimType {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidFilter => "invalidFilter",
            Self::TooMany => "tooMany",
            Self::Uniqueness => "uniqueness",
            Self::Mutability => "mutability",
            Self::InvalidSyntax => "invalidSyntax",
            Self::InvalidPath => "invalidPath",
            Self::NoTarget => "noTarget",
            Self::InvalidValue => "invalidValue",
            Self::InvalidVers => "invalidVers",
            Self::Sensitive => "sensitive",
        }
    }
}

/// An error answered with a SCIM Error body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {detail}")]
pub struct ScimError {
    pub status: StatusCode,
    pub scim_type: Option<ScimType>,
    /// Human-readable; never contains secrets or backend internals.
    pub detail: String,
    /// `Retry-After` for 503.
    pub retry_after: Option<Duration>,
}

impl ScimError {
    /// An error with a status and detail, no `scimType`.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Self {
            status,
            scim_type: None,
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// A 400 with a `scimType`.
    pub fn bad_request(scim_type: ScimType, detail: impl Into<String>) -> Self {
        Self::typed(StatusCode::BAD_REQUEST, scim_type, detail)
    }

    /// Any status with a `scimType`.
    pub fn typed(status: StatusCode, scim_type: ScimType, detail: impl Into<String>) -> Self {
        Self {
            status,
            scim_type: Some(scim_type),
            detail: detail.into(),
            retry_after: None,
        }
    }

    /// 400 invalidValue.
    pub fn invalid_value(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidValue, detail)
    }

    /// 400 invalidSyntax.
    pub fn invalid_syntax(detail: impl Into<String>) -> Self {
        Self::bad_request(ScimType::InvalidSyntax, detail)
    }

    /// 404 for a resource id.
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// The Error body.
    pub fn body(&self) -> serde_json::Value {
        let mut body = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "status": self.status.as_u16().to_string(),
        });
        if let Some(t) = self.scim_type {
            body["scimType"] = json!(t.as_str());
        }
        body["detail"] = json!(self.detail);
        body
    }
}

impl From<DirectoryError> for ScimError {
    fn from(e: DirectoryError) -> Self {
        match e {
            DirectoryError::NotFound => Self::not_found("Resource not found"),
            DirectoryError::Conflict { detail } => {
                Self::typed(StatusCode::CONFLICT, ScimType::Uniqueness, detail)
            }
            DirectoryError::InvalidValue { attr, detail } => {
                Self::invalid_value(format!("{attr}: {detail}"))
            }
            DirectoryError::PreconditionFailed => Self::new(
                StatusCode::PRECONDITION_FAILED,
                "The resource was modified; fetch it again",
            ),
            DirectoryError::Forbidden { detail } => Self::new(StatusCode::FORBIDDEN, detail),
            DirectoryError::Unavailable { retry_after } => Self {
                retry_after,
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "The account store is temporarily unavailable",
                )
            },
            DirectoryError::Timeout => Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                "The account store did not answer in time",
            ),
            // The backend's detail is logged by the caller, not sent to the client.
            DirectoryError::Backend { .. } => Self::new(
                StatusCode::BAD_GATEWAY,
                "The account store failed to process the request",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_string_status_and_type() {
        let e = ScimError::typed(StatusCode::CONFLICT, ScimType::Uniqueness, "taken");
        let b = e.body();
        assert_eq!(b["status"], "409");
        assert_eq!(b["scimType"], "uniqueness");
        assert_eq!(b["detail"], "taken");
    }

    #[test]
    fn backend_detail_is_not_exposed() {
        let e: ScimError = DirectoryError::Backend {
            detail: "api_key=secret".into(),
        }
        .into();
        assert_eq!(e.status, StatusCode::BAD_GATEWAY);
        assert!(!e.detail.contains("secret"));
    }
}
