//! SCIM attributes that Chamilo applies but cannot give back, kept verbatim in one user extra
//! field (`chamilo.attributes_field`, default `scim_attributes`) so that Chamilo stays the only
//! store and the identity provider gets back exactly what it sent.
//!
//! - `preferredLanguage` and `locale`: Chamilo's `language` cannot be read through the web
//!   services, and it holds a folder name (`french`), not the tag the IdP sent (`fr-CA`).
//! - `roles`: Chamilo's `status` says which role applies, but not whether the IdP assigned
//!   one (an account without roles keeps the status Chamilo gives it) nor how it spelt it.
//! - `active`, only when the IdP unassigned it (a PUT without it, a PATCH `remove`): Chamilo
//!   has no "unassigned", so the account is active, and the attribute is not returned while
//!   it stays so.
//!
//! One field rather than one per attribute because every extra field named in `get_users`
//! costs Chamilo one database query per user on the index listing.
//!
//! Encoding: `preferredLanguage=fr-CA;locale=fr_CA;roles=teacher;active=unassigned`, values percent-encoded
//! outside `[A-Za-z0-9._~-]`. It holds none of the characters HTML filters rewrite (`<>&"'`),
//! nor any outside ASCII (Chamilo mangles those outside the Basic Multilingual Plane).

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Everything but RFC 3986's unreserved characters is encoded.
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

const PREFERRED_LANGUAGE: &str = "preferredLanguage";
const LOCALE: &str = "locale";
const ROLES: &str = "roles";
const ACTIVE: &str = "active";
const UNASSIGNED: &str = "unassigned";

/// The attributes kept in the extra field, as the identity provider sent them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeptAttributes {
    pub preferred_language: Option<String>,
    pub locale: Option<String>,
    /// The one role Chamilo's status was set from (primary, else first).
    pub role: Option<String>,
    /// The identity provider unassigned `active` (Chamilo keeps the account active).
    pub active_unassigned: bool,
}

impl KeptAttributes {
    /// The field's value; empty when nothing is kept (which clears the field).
    pub fn encode(&self) -> String {
        [
            (PREFERRED_LANGUAGE, &self.preferred_language),
            (LOCALE, &self.locale),
            (ROLES, &self.role),
            (
                ACTIVE,
                &self.active_unassigned.then(|| UNASSIGNED.to_owned()),
            ),
        ]
        .iter()
        .filter_map(|(k, v)| {
            v.as_deref()
                .map(|v| format!("{k}={}", utf8_percent_encode(v, VALUE)))
        })
        .collect::<Vec<_>>()
        .join(";")
    }

    /// Reads a field value. What cannot be read (an unknown key, a value that is not UTF-8
    /// once decoded, a pair without `=`) is left out rather than failing the account: the
    /// field can be edited by an administrator.
    pub fn decode(field: &str) -> Self {
        let mut kept = Self::default();
        for pair in field.split(';') {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            let Ok(value) = percent_decode_str(value.trim()).decode_utf8() else {
                continue;
            };
            if value.is_empty() {
                continue;
            }
            let slot = match key.trim() {
                ACTIVE => {
                    kept.active_unassigned = value == UNASSIGNED;
                    continue;
                }
                PREFERRED_LANGUAGE => &mut kept.preferred_language,
                LOCALE => &mut kept.locale,
                ROLES => &mut kept.role,
                _ => continue,
            };
            *slot = Some(value.into_owned());
        }
        kept
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.preferred_language.is_none()
            && self.locale.is_none()
            && self.role.is_none()
            && !self.active_unassigned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_verbatim() {
        let k = KeptAttributes {
            preferred_language: Some("fr-CA".into()),
            locale: Some("fr_CA".into()),
            role: Some("Course Teacher; <b>&\"x\"=1 😀".into()),
            active_unassigned: true,
        };
        let field = k.encode();
        assert!(
            field.is_ascii() && !field.contains(['<', '>', '&', '"', '\'', ' ']),
            "{field}"
        );
        assert!(field.starts_with("preferredLanguage=fr-CA;locale=fr_CA;roles=Course%20"));
        assert!(field.ends_with(";active=unassigned"));
        assert_eq!(KeptAttributes::decode(&field), k);
    }

    #[test]
    fn nothing_kept_is_an_empty_field() {
        assert_eq!(KeptAttributes::default().encode(), "");
        assert!(KeptAttributes::decode("").is_empty());
        let only_locale = KeptAttributes {
            locale: Some("en-US".into()),
            ..KeptAttributes::default()
        };
        assert_eq!(only_locale.encode(), "locale=en-US");
    }

    #[test]
    fn unreadable_parts_are_left_out() {
        let k = KeptAttributes::decode("junk;colour=red;locale=%FF%FE;roles=;preferredLanguage=de");
        assert_eq!(
            k,
            KeptAttributes {
                preferred_language: Some("de".into()),
                ..KeptAttributes::default()
            }
        );
    }
}
