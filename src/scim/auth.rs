//! Bearer-token authentication of SCIM requests.
//!
//! Tokens are compared as SHA-256 digests in constant time, against every configured token
//! (no early exit), so neither the token nor which token matched leaks through timing. The
//! matched token is named (never shown) for the audit trail: see
//! [`ScimConfig::token_name`].

use std::sync::atomic::{AtomicUsize, Ordering};

use http::HeaderMap;
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::config::ScimConfig;

/// Why a request was not authenticated (for the log; the client sees one generic 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No token is configured at all: every request is refused.
    NoTokenConfigured,
    /// No `Authorization: Bearer …` header.
    Missing,
    /// A bearer token that matches none of the configured ones.
    Mismatch,
}

/// The address of the last configuration we warned about, so "no token configured" is
/// logged at most once per configuration snapshot.
static WARNED_CONFIG: AtomicUsize = AtomicUsize::new(0);

/// Checks the `Authorization` header against `cfg.tokens`; on success, the configured name
/// of the token that matched.
pub fn authenticate(headers: &HeaderMap, cfg: &ScimConfig) -> Result<String, AuthFailure> {
    let configured: Vec<(usize, &str)> = cfg
        .tokens
        .iter()
        .map(|t| t.expose())
        .enumerate()
        .filter(|(_, t)| !t.is_empty())
        .collect();
    if configured.is_empty() {
        let addr = cfg as *const ScimConfig as usize;
        if WARNED_CONFIG.swap(addr, Ordering::Relaxed) != addr {
            tracing::warn!("no SCIM token is configured: every SCIM request is refused with 401");
        }
        return Err(AuthFailure::NoTokenConfigured);
    }
    let presented = headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(bearer_token)
        .ok_or(AuthFailure::Missing)?;
    let presented = Sha256::digest(presented.as_bytes());
    let mut matched = subtle::Choice::from(0u8);
    // The index of the matching token, selected without a branch on the comparison.
    let mut which = 0u64;
    for (index, token) in configured {
        let expected = Sha256::digest(token.as_bytes());
        let equal = expected.as_slice().ct_eq(presented.as_slice());
        which = u64::conditional_select(&which, &(index as u64), equal);
        matched |= equal;
    }
    if bool::from(matched) {
        Ok(cfg.token_name(usize::try_from(which).unwrap_or(0)))
    } else {
        Err(AuthFailure::Mismatch)
    }
}

/// The token of a `Bearer` credential (scheme case-insensitive, RFC 6750 §2.1).
fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret;

    fn cfg(tokens: &[&str]) -> ScimConfig {
        ScimConfig {
            tokens: tokens.iter().map(|t| Secret::new(*t)).collect(),
            ..ScimConfig::default()
        }
    }

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn any_configured_token_is_accepted() {
        let c = cfg(&["old-token", "new-token"]);
        assert_eq!(
            authenticate(&headers("Bearer old-token"), &c).as_deref(),
            Ok("tokens[0]")
        );
        assert_eq!(
            authenticate(&headers("bearer  new-token "), &c).as_deref(),
            Ok("tokens[1]")
        );
    }

    #[test]
    fn the_matched_token_is_named_by_its_configured_name() {
        let c = ScimConfig {
            token_names: vec!["entra".to_owned(), "okta".to_owned()],
            ..cfg(&["entra-secret", "okta-secret"])
        };
        assert_eq!(
            authenticate(&headers("Bearer okta-secret"), &c).as_deref(),
            Ok("okta")
        );
        assert_eq!(
            authenticate(&headers("Bearer entra-secret"), &c).as_deref(),
            Ok("entra")
        );
    }

    #[test]
    fn wrong_missing_or_unconfigured_tokens_fail() {
        let c = cfg(&["secret"]);
        assert_eq!(
            authenticate(&headers("Bearer secreT"), &c).map(drop),
            Err(AuthFailure::Mismatch)
        );
        assert_eq!(
            authenticate(&headers("Basic secret"), &c).map(drop),
            Err(AuthFailure::Missing)
        );
        assert_eq!(
            authenticate(&HeaderMap::new(), &c).map(drop),
            Err(AuthFailure::Missing)
        );
        assert_eq!(
            authenticate(&headers("Bearer secret"), &cfg(&[])).map(drop),
            Err(AuthFailure::NoTokenConfigured)
        );
        assert_eq!(
            authenticate(&headers("Bearer "), &cfg(&[""])).map(drop),
            Err(AuthFailure::NoTokenConfigured)
        );
    }
}
