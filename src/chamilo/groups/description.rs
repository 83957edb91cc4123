//! The SCIM values of a class kept in its description.
//!
//! A Chamilo class has only a name and a description, and the proxy keeps no state, so the
//! group's `externalId` and its `displayName` exactly as the identity provider sent it live in
//! the description, on one last line of their own:
//!
//! ```text
//! Whatever the administrator wrote stays here, untouched.
//! [scim-proxy:v1 displayName=Staff%20A externalId=8f3c-11]
//! ```
//!
//! - The line is the **last** line (after the last `\n`, surrounding spaces and a `\r`
//!   ignored) and is recognised only when it parses completely: the exact opening
//!   `[scim-proxy:v1`, then space-separated `key=value` pairs with known keys (each at most
//!   once), values percent-encoded outside `[A-Za-z0-9._~-]` (so no character an HTML filter
//!   rewrites), and the closing `]`. Anything else — a line that only looks like it, a
//!   marker in the middle of the text — is the administrator's text and is kept as it is.
//! - The text before the line is the administrator's: the proxy never changes it, and
//!   rewrites only its own line (a class adopted through SCIM gets the line appended).
//! - A class whose description has no such line was made outside SCIM (in Chamilo's UI).

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// The opening of the proxy's line.
pub const MARKER: &str = "[scim-proxy:v1";

/// Characters left as they are in a value; everything else is percent-encoded.
const VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

const DISPLAY_NAME: &str = "displayName";
const EXTERNAL_ID: &str = "externalId";

/// What SCIM keeps about a class beyond its name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScimValues {
    /// The `displayName` verbatim, as last written through SCIM.
    pub display_name: Option<String>,
    /// The `externalId` verbatim.
    pub external_id: Option<String>,
}

/// A class description split into the administrator's text and the proxy's line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClassDescription {
    /// The text before the proxy's line (the whole description when there is none).
    pub admin: String,
    /// The proxy's values; `None` when the class was not made or adopted through SCIM.
    pub scim: Option<ScimValues>,
}

impl ClassDescription {
    /// Splits a description as Chamilo returns it.
    pub fn parse(description: &str) -> Self {
        let (before, last) = match description.rfind('\n') {
            Some(i) => (&description[..i], &description[i + 1..]),
            None => ("", description),
        };
        match parse_line(last) {
            Some(scim) => Self {
                admin: before.strip_suffix('\r').unwrap_or(before).to_owned(),
                scim: Some(scim),
            },
            None => Self {
                admin: description.to_owned(),
                scim: None,
            },
        }
    }

    /// The description to store: the administrator's text, then the proxy's line.
    pub fn render(&self) -> String {
        let Some(scim) = &self.scim else {
            return self.admin.clone();
        };
        let mut line = String::from(MARKER);
        for (key, value) in [
            (DISPLAY_NAME, &scim.display_name),
            (EXTERNAL_ID, &scim.external_id),
        ] {
            if let Some(v) = value {
                line.push(' ');
                line.push_str(key);
                line.push('=');
                line.extend(utf8_percent_encode(v, VALUE));
            }
        }
        line.push(']');
        if self.admin.is_empty() {
            line
        } else {
            format!("{}\n{line}", self.admin)
        }
    }
}

/// The proxy's values if `line` is exactly one of its lines.
fn parse_line(line: &str) -> Option<ScimValues> {
    let inner = line
        .trim_matches(|c| c == ' ' || c == '\r' || c == '\t')
        .strip_prefix(MARKER)?
        .strip_suffix(']')?;
    let mut values = ScimValues::default();
    if inner.is_empty() {
        return Some(values);
    }
    for pair in inner.strip_prefix(' ')?.split(' ') {
        let (key, raw) = pair.split_once('=')?;
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b))
        {
            return None;
        }
        let value = percent_decode_str(raw).decode_utf8().ok()?.into_owned();
        let slot = match key {
            DISPLAY_NAME => &mut values.display_name,
            EXTERNAL_ID => &mut values.external_id,
            _ => return None,
        };
        if slot.replace(value).is_some() {
            return None;
        }
    }
    Some(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn managed(admin: &str, display: Option<&str>, ext: Option<&str>) -> ClassDescription {
        ClassDescription {
            admin: admin.into(),
            scim: Some(ScimValues {
                display_name: display.map(Into::into),
                external_id: ext.map(Into::into),
            }),
        }
    }

    #[test]
    fn round_trips_verbatim() {
        for d in [
            managed("", Some("Staff A"), Some("8f3c-11")),
            managed("First class", Some("Zoë & <b>co</b> ] [x"), None),
            managed("line 1\nline 2\n", None, Some("a=b c%20d\n]")),
            managed("", None, None),
            managed("  spaced  ", Some(""), Some("")),
        ] {
            let text = d.render();
            assert!(!text.contains('<') && !text.contains('&') && !text.contains('"'));
            assert_eq!(ClassDescription::parse(&text), d, "{text}");
        }
    }

    #[test]
    fn the_line_looks_as_documented() {
        let d = managed("Kept.", Some("Staff A"), Some("8f3c-11"));
        assert_eq!(
            d.render(),
            "Kept.\n[scim-proxy:v1 displayName=Staff%20A externalId=8f3c-11]"
        );
    }

    #[test]
    fn a_description_without_the_line_is_the_admins() {
        for text in [
            "",
            "First class",
            "[scim-proxy:v1",
            "[scim-proxy:v1 displayName=A",
            "[scim-proxy:v1 colour=red]",
            "[scim-proxy:v1 displayName=A displayName=B]",
            "[scim-proxy:v1 displayName=a b]",
            "[scim-proxy:v1  displayName=A]",
            "[scim-proxy:v1 displayName=%FF]",
            "[scim-proxy:v1 displayName=<b>]",
            "[scim-proxy:v2 displayName=A]",
            "[scim-proxy:v1displayName=A]",
            "[scim-proxy:v1 displayName=A]\nwritten after it",
            "[SCIM-PROXY:v1 displayName=A]",
        ] {
            let d = ClassDescription::parse(text);
            assert_eq!(d.scim, None, "{text:?}");
            assert_eq!(d.admin, text);
            assert_eq!(d.render(), text, "kept as it is");
        }
    }

    #[test]
    fn admin_text_is_kept_and_only_the_line_is_rewritten() {
        let admin = "Notes: [scim-proxy:v1 displayName=Fake]\r\nsecond line";
        let mut d = ClassDescription::parse(admin);
        assert_eq!(d.scim, None);
        d.scim = Some(ScimValues {
            display_name: Some("Real".into()),
            external_id: None,
        });
        let stored = d.render();
        assert!(stored.starts_with(admin));
        let back = ClassDescription::parse(&stored);
        assert_eq!(back.admin, admin);
        assert_eq!(back.scim.unwrap().display_name.as_deref(), Some("Real"));
        // A line written in Chamilo's UI (CRLF, trailing spaces) still parses.
        let ui = "About\r\n[scim-proxy:v1 externalId=x1] \r";
        let d = ClassDescription::parse(ui);
        assert_eq!(d.admin, "About");
        assert_eq!(d.scim.unwrap().external_id.as_deref(), Some("x1"));
    }
}
