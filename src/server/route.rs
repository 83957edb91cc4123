//! Where a request goes: the SCIM service, the pass-through, or nowhere.
//!
//! INTERFACE STUB: the decision must be made on the decoded, normalised path
//! (`proxy-and-ops.md`, "Path confusion"); the placeholder below is naive.

use http::Uri;

/// The routing decision for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `/scim/v2` and below; `sub_path` is the normalised rest (`""`, `/Users`, `/Users/42`).
    Scim { sub_path: String },
    /// Everything else; `path` is the normalised path used for access rules.
    PassThrough { path: String },
    /// A target that cannot be routed safely, answered with this status.
    Reject {
        status: http::StatusCode,
        reason: &'static str,
    },
}

/// Classifies a request target.
pub fn classify(uri: &Uri) -> Route {
    let path = uri.path();
    match path.strip_prefix("/scim/v2") {
        Some(rest) if rest.is_empty() || rest.starts_with('/') => Route::Scim {
            sub_path: rest.to_owned(),
        },
        _ => Route::PassThrough {
            path: path.to_owned(),
        },
    }
}
