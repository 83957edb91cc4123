//! Chamilo login names for SCIM `userName`s.
//!
//! Chamilo accepts `^[0-9A-Za-z_.$-]{1,50}$` by default (with its `login_is_email` setting also
//! `@`, up to 100 characters) and compares logins case-insensitively. Identity providers send
//! whatever their directory holds — Entra ID's default is an e-mail-style UPN. This module maps
//! a SCIM `userName` to the Chamilo login to create, as a pure, deterministic function: every
//! replica derives the same login for the same `userName`, so two replicas racing to create one
//! person collide in Chamilo's own uniqueness check instead of creating two accounts.
//!
//! Round-trip: the SCIM `userName` itself is kept in a Chamilo extra field by the backend, so the
//! identity provider always gets back exactly what it sent; the login is only Chamilo's handle.

use std::fmt;

use sha2::{Digest, Sha256};

/// How a `userName` that Chamilo cannot store as a login is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LoginTransform {
    /// Only `userName`s that are valid logins are accepted; others get 400 `invalidValue`.
    Strict,
    /// Characters Chamilo refuses become `_` (`ann@example.org` → `ann_example.org`).
    #[default]
    Sanitize,
    /// The part before `@`, sanitised (`ann@example.org` → `ann`).
    LocalPart,
}

/// The login rules of the Chamilo site (its `login_is_email` setting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginRules {
    /// Chamilo's `login_is_email`: `@` allowed, 100 characters.
    pub login_is_email: bool,
}

impl LoginRules {
    /// `USERNAME_MAX_LENGTH`, or 100 with `login_is_email`.
    pub fn max_len(self) -> usize {
        if self.login_is_email {
            100
        } else {
            50
        }
    }

    fn allows(self, c: char) -> bool {
        if self.login_is_email {
            c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '@')
        } else {
            c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '$' | '-')
        }
    }

    /// Whether Chamilo would store `login` exactly as given.
    pub fn is_valid(self, login: &str) -> bool {
        !login.is_empty()
            && login.chars().count() <= self.max_len()
            && login.chars().all(|c| self.allows(c))
    }
}

/// Why no login can be made for a `userName`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    /// Empty or only white space.
    Empty,
    /// `Strict` and the `userName` is not a valid login; the text says which rule failed.
    NotAValidLogin(String),
}

impl fmt::Display for LoginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoginError::Empty => f.write_str("userName must not be empty"),
            LoginError::NotAValidLogin(why) => {
                write!(f, "userName cannot be a Chamilo login: {why}")
            }
        }
    }
}

/// Length of the hexadecimal fingerprint appended to disambiguate a derived login.
const FINGERPRINT_HEX: usize = 8;

/// The logins to try, in order, for `user_name`: the first that is free in Chamilo (or already
/// belongs to this same SCIM user) is used. The list is short (at most two) and the same on every
/// replica. A `userName` that is already a valid login yields only itself, so nothing about it
/// changes for sites whose identity provider already sends Chamilo-style names.
pub fn login_candidates(
    user_name: &str,
    rules: LoginRules,
    transform: LoginTransform,
) -> Result<Vec<String>, LoginError> {
    let trimmed = user_name.trim();
    if trimmed.is_empty() {
        return Err(LoginError::Empty);
    }
    if rules.is_valid(trimmed) {
        return Ok(vec![trimmed.to_owned()]);
    }
    let base = match transform {
        LoginTransform::Strict => return Err(LoginError::NotAValidLogin(explain(trimmed, rules))),
        LoginTransform::Sanitize => sanitize(trimmed, rules),
        LoginTransform::LocalPart => {
            let local = trimmed.split('@').next().unwrap_or(trimmed);
            sanitize(local, rules)
        }
    };
    let fingerprint = fingerprint(trimmed);
    // Room for "-" and the fingerprint.
    let stem_len = rules.max_len() - FINGERPRINT_HEX - 1;
    let stem: String = base.chars().take(stem_len).collect();
    let with_fingerprint = if stem.is_empty() {
        format!("u-{fingerprint}")
    } else {
        format!("{stem}-{fingerprint}")
    };
    let mut candidates = Vec::with_capacity(2);
    if !base.is_empty() && base.chars().count() <= rules.max_len() && has_letter_or_digit(&base) {
        candidates.push(base);
    }
    candidates.push(with_fingerprint);
    Ok(candidates)
}

fn has_letter_or_digit(s: &str) -> bool {
    s.chars().any(|c| c.is_ascii_alphanumeric())
}

/// Every character Chamilo refuses becomes `_`; runs of `_` collapse so that
/// `Zoë Müller` gives `Zo_M_ller` rather than a wall of underscores.
fn sanitize(s: &str, rules: LoginRules) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let mapped = if rules.allows(c) { c } else { '_' };
        if mapped == '_' && out.ends_with('_') && !rules.allows(c) {
            continue;
        }
        out.push(mapped);
    }
    out.trim_matches('_').to_owned()
}

/// A short, stable fingerprint of a `userName`. Case-folded, because SCIM `userName` and
/// Chamilo logins are both case-insensitive: `Ann@X.org` and `ann@x.org` are one person.
fn fingerprint(user_name: &str) -> String {
    let digest = Sha256::digest(user_name.to_lowercase().as_bytes());
    hex::encode(digest)[..FINGERPRINT_HEX].to_owned()
}

fn explain(user_name: &str, rules: LoginRules) -> String {
    let len = user_name.chars().count();
    if len > rules.max_len() {
        return format!("{len} characters, at most {} allowed", rules.max_len());
    }
    match user_name.chars().find(|c| !rules.allows(*c)) {
        Some(c) => format!(
            "character {c:?} is not allowed (allowed: letters A-Z a-z, digits, {})",
            if rules.login_is_email {
                "_ . @"
            } else {
                "_ . $ -"
            }
        ),
        None => "not a valid login".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: LoginRules = LoginRules {
        login_is_email: false,
    };
    const EMAIL: LoginRules = LoginRules {
        login_is_email: true,
    };

    #[test]
    fn valid_logins_are_kept_exactly() {
        for name in ["ann1", "Ann.Lee", "a_b-c$d", &"x".repeat(50)] {
            assert_eq!(
                login_candidates(name, DEFAULT, LoginTransform::Sanitize).unwrap(),
                vec![name.to_owned()]
            );
            assert_eq!(
                login_candidates(name, DEFAULT, LoginTransform::Strict).unwrap(),
                vec![name.to_owned()]
            );
        }
    }

    #[test]
    fn upn_is_sanitised_then_fingerprinted() {
        let c = login_candidates("ann.lee@example.org", DEFAULT, LoginTransform::Sanitize).unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0], "ann.lee_example.org");
        assert!(c[1].starts_with("ann.lee_example.org-"));
        assert_eq!(c[1].len(), "ann.lee_example.org-".len() + FINGERPRINT_HEX);
        assert!(c.iter().all(|l| DEFAULT.is_valid(l)), "{c:?}");
    }

    #[test]
    fn local_part_transform() {
        let c =
            login_candidates("ann.lee@example.org", DEFAULT, LoginTransform::LocalPart).unwrap();
        assert_eq!(c[0], "ann.lee");
        // Another domain, same local part: same first choice, different fallback.
        let d = login_candidates("ann.lee@other.org", DEFAULT, LoginTransform::LocalPart).unwrap();
        assert_eq!(d[0], "ann.lee");
        assert_ne!(c[1], d[1]);
    }

    #[test]
    fn login_is_email_accepts_upns_as_they_are() {
        assert_eq!(
            login_candidates("ann@example.org", EMAIL, LoginTransform::Strict).unwrap(),
            vec!["ann@example.org".to_owned()]
        );
    }

    #[test]
    fn strict_explains_the_rule() {
        let err = login_candidates("ann@example.org", DEFAULT, LoginTransform::Strict).unwrap_err();
        assert!(err.to_string().contains("'@'"), "{err}");
        let long = "a".repeat(51);
        let err = login_candidates(&long, DEFAULT, LoginTransform::Strict).unwrap_err();
        assert!(err.to_string().contains("51 characters"), "{err}");
        assert_eq!(
            login_candidates("  ", DEFAULT, LoginTransform::Sanitize),
            Err(LoginError::Empty)
        );
    }

    #[test]
    fn derivation_is_deterministic_and_case_insensitive() {
        let a = login_candidates("Ann@Example.org", DEFAULT, LoginTransform::Sanitize).unwrap();
        let b = login_candidates("ann@example.org", DEFAULT, LoginTransform::Sanitize).unwrap();
        assert_eq!(a[1].to_lowercase(), b[1].to_lowercase());
        assert_eq!(
            a,
            login_candidates("Ann@Example.org", DEFAULT, LoginTransform::Sanitize).unwrap()
        );
    }

    #[test]
    fn long_and_non_ascii_names_fit_the_limit() {
        let long = format!("{}@example.org", "é".repeat(80));
        let c = login_candidates(&long, DEFAULT, LoginTransform::Sanitize).unwrap();
        assert!(c.iter().all(|l| DEFAULT.is_valid(l)), "{c:?}");
        let long_ascii = format!("{}@example.org", "a".repeat(80));
        let c = login_candidates(&long_ascii, DEFAULT, LoginTransform::Sanitize).unwrap();
        assert_eq!(
            c.len(),
            1,
            "a base over 50 characters is not a candidate: {c:?}"
        );
        assert_eq!(c[0].chars().count(), 50);
        assert!(DEFAULT.is_valid(&c[0]));
        let c = login_candidates("Zoë Müller", DEFAULT, LoginTransform::Sanitize).unwrap();
        assert_eq!(c[0], "Zo_M_ller");
    }

    #[test]
    fn names_without_any_usable_character_still_get_a_login() {
        let c = login_candidates("日本語@", DEFAULT, LoginTransform::Sanitize).unwrap();
        assert_eq!(c.len(), 1);
        assert!(c[0].starts_with("u-") && DEFAULT.is_valid(&c[0]), "{c:?}");
    }
}
