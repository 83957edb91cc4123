//! Form and query-string decoding the way PHP fills `$_GET` / `$_POST`.
//!
//! PHP decodes `+` as a space and `%XX` escapes; for a repeated key the last value wins. The
//! stand-in keeps the pairs in arrival order because Chamilo's `update_user_from_username`
//! reports the *first* unsupported key it meets.

use percent_encoding::percent_decode_str;

/// Decoded `key=value` pairs in arrival order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormPairs(Vec<(String, String)>);

impl FormPairs {
    /// Decodes an `application/x-www-form-urlencoded` body or a query string.
    pub fn parse(raw: &str) -> Self {
        let pairs = raw
            .split('&')
            .filter(|part| !part.is_empty())
            .map(|part| {
                let (key, value) = part.split_once('=').unwrap_or((part, ""));
                (decode_component(key), decode_component(value))
            })
            .collect();
        Self(pairs)
    }

    /// Builds pairs from already-decoded values (used for the `hash=` JSON form).
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        Self(pairs)
    }

    /// The value PHP would see for `key` (the last occurrence wins).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Whether `key` is present at all (even with an empty value).
    pub fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }

    /// Every pair, in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The entries of the PHP array `name[...]` as `(index path, value)`, in arrival order:
    /// `extra[0][field_name]=x` gives `(["0", "field_name"], "x")`.
    pub fn array_entries(&self, name: &str) -> Vec<(Vec<String>, String)> {
        let prefix = format!("{name}[");
        self.0
            .iter()
            .filter_map(|(k, v)| {
                let rest = k.strip_prefix(&prefix)?;
                let mut path = Vec::new();
                let mut rest = rest;
                loop {
                    let end = rest.find(']')?;
                    path.push(rest[..end].to_owned());
                    rest = &rest[end + 1..];
                    if rest.is_empty() {
                        break;
                    }
                    rest = rest.strip_prefix('[')?;
                }
                Some((path, v.clone()))
            })
            .collect()
    }
}

/// Decodes one form component: `+` is a space, then percent escapes (invalid UTF-8 is replaced).
pub fn decode_component(raw: &str) -> String {
    let spaced = raw.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_is_space_and_escaped_plus_is_plus() {
        let f = FormPairs::parse("a=Jean+Paul&b=Jean%2BPaul&c=&d");
        assert_eq!(f.get("a"), Some("Jean Paul"));
        assert_eq!(f.get("b"), Some("Jean+Paul"));
        assert_eq!(f.get("c"), Some(""));
        assert!(f.has("d"));
        assert_eq!(f.get("e"), None);
    }

    #[test]
    fn last_value_wins() {
        let f = FormPairs::parse("a=1&a=2");
        assert_eq!(f.get("a"), Some("2"));
    }

    #[test]
    fn php_array_entries() {
        let f = FormPairs::parse(
            "extra%5B0%5D%5Bfield_name%5D=dept&extra[0][field_value]=Sales&extra[ext_id]=X&extra=s",
        );
        let entries = f.array_entries("extra");
        assert_eq!(
            entries,
            vec![
                (vec!["0".into(), "field_name".into()], "dept".into()),
                (vec!["0".into(), "field_value".into()], "Sales".into()),
                (vec!["ext_id".into()], "X".into()),
            ]
        );
    }
}
