//! Configuration errors that name the key and the line they come from.

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;

use toml::de::{DeTable, DeValue};
use toml::Spanned;

/// One problem found in a configuration: which key, where in the file, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Dotted key path such as `server.tls.cert_file` or `scim.token_files[1]`, when known.
    pub key: Option<String>,
    /// 1-based line and column of the key in the file, when it is written there.
    pub position: Option<(usize, usize)>,
    /// What is wrong, in words; never contains a secret value.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((line, column)) = self.position {
            write!(f, "line {line}, column {column}: ")?;
        }
        if let Some(key) = &self.key {
            write!(f, "{key}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every problem found in one load attempt (validation does not stop at the first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The configuration file, if one was given.
    pub file: Option<PathBuf>,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = match &self.file {
            Some(path) => path.display().to_string(),
            None => "configuration".to_owned(),
        };
        for (i, error) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{origin}: {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// The parsed TOML document with the byte spans of every key, used to point errors at lines.
pub(crate) struct Document<'a> {
    text: &'a str,
    root: Option<Spanned<DeTable<'a>>>,
}

impl<'a> Document<'a> {
    /// Parses `text` for spans only; a syntax error is reported by the typed parse anyway.
    pub(crate) fn parse(text: &'a str) -> Self {
        Self {
            text,
            root: DeTable::parse(text).ok(),
        }
    }

    /// 1-based (line, column) of a byte offset.
    pub(crate) fn position(&self, offset: usize) -> (usize, usize) {
        let before = &self.text.as_bytes()[..offset.min(self.text.len())];
        let line = before.iter().filter(|b| **b == b'\n').count() + 1;
        let line_start = before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        let column = self.text[line_start..offset.min(self.text.len())]
            .chars()
            .count()
            + 1;
        (line, column)
    }

    /// Span of the key at `path` (segments are table keys or `[index]` array positions).
    pub(crate) fn key_span(&self, path: &str) -> Option<Range<usize>> {
        let root = self.root.as_ref()?;
        let mut table: &DeTable<'_> = root.get_ref();
        let mut value: Option<&Spanned<DeValue<'_>>> = None;
        let mut span = None;
        for segment in split_path(path) {
            match segment {
                Segment::Key(name) => {
                    if let Some(v) = value {
                        match v.get_ref() {
                            DeValue::Table(t) => table = t,
                            _ => return span,
                        }
                    }
                    let (k, v) = table.get_key_value(name)?;
                    span = Some(k.span());
                    value = Some(v);
                }
                Segment::Index(i) => {
                    let DeValue::Array(items) = value?.get_ref() else {
                        return span;
                    };
                    let item = items.get(i)?;
                    span = Some(item.span());
                    value = Some(item);
                }
            }
        }
        span
    }

    /// The dotted path of the innermost key whose value (or key) contains the byte `offset`.
    ///
    /// Table spans do not cover their bodies (a `[section]` header is far from its keys), so
    /// every branch is searched and the narrowest matching span wins.
    pub(crate) fn key_at(&self, offset: usize) -> Option<String> {
        let root = self.root.as_ref()?;
        let mut best: Option<(usize, String)> = None;
        search_table(root.get_ref(), "", offset, &mut best);
        best.map(|(_, path)| path)
    }

    /// An error about `key`, positioned at the key if the file writes it.
    pub(crate) fn error_at(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            key: Some(key.to_owned()),
            position: self.key_span(key).map(|s| self.position(s.start)),
            message: message.into(),
        }
    }

    /// Converts a typed-parse error (syntax, wrong type, unknown key, bad CIDR) into one that
    /// names its key and line.
    pub(crate) fn toml_error(&self, error: &toml::de::Error) -> ConfigError {
        let span = error.span();
        let key = span.as_ref().and_then(|s| self.key_at(s.start));
        let message = error.message().trim();
        // serde quotes the offending value ("invalid type: string \"s3cret\", expected a
        // sequence"): under a secret key it must not reach a terminal or a log.
        let message = match &key {
            Some(k) if is_secret_key(k) => hide_value(message, true),
            Some(_) => message.to_owned(),
            // Not known to be a secret, not known not to be one.
            None => hide_value(message, false),
        };
        ConfigError {
            key,
            position: span.map(|s| self.position(s.start)),
            message,
        }
    }
}

/// Whether `key` (a dotted path as in [`ConfigError::key`]) holds a secret or names its file:
/// SCIM tokens, the Chamilo api key, password and security key.
pub(crate) fn is_secret_key(key: &str) -> bool {
    let last = key.rsplit('.').next().unwrap_or(key);
    let name = last.split('[').next().unwrap_or(last);
    ["token", "api_key", "password", "security_key", "secret"]
        .iter()
        .any(|s| name.contains(s))
}

/// `message` with the value it quotes replaced by its kind: "invalid type: string (value not
/// shown), expected a sequence". A message of another shape is replaced whole when `secret`,
/// kept otherwise (a syntax error quotes no value).
fn hide_value(message: &str, secret: bool) -> String {
    for prefix in ["invalid type: ", "invalid value: ", "invalid length "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some(at) = rest.rfind(", expected") {
                let kind = rest[..at].split([' ', '"', '`']).next().unwrap_or_default();
                return format!("{prefix}{kind} (value not shown){}", &rest[at..]);
            }
        }
    }
    if secret {
        "not a valid value for this key (the value is not shown: it holds a secret)".to_owned()
    } else {
        message.to_owned()
    }
}

fn consider(span: Range<usize>, path: &str, offset: usize, best: &mut Option<(usize, String)>) {
    if span.contains(&offset) || span.start == offset {
        let width = span.end - span.start;
        if best.as_ref().is_none_or(|(w, _)| width <= *w) {
            *best = Some((width, path.to_owned()));
        }
    }
}

fn search_value(
    value: &Spanned<DeValue<'_>>,
    path: &str,
    offset: usize,
    best: &mut Option<(usize, String)>,
) {
    match value.get_ref() {
        DeValue::Table(t) => search_table(t, path, offset, best),
        DeValue::Array(items) => {
            consider(value.span(), path, offset, best);
            for (i, item) in items.iter().enumerate() {
                search_value(item, &format!("{path}[{i}]"), offset, best);
            }
        }
        _ => consider(value.span(), path, offset, best),
    }
}

fn search_table(
    table: &DeTable<'_>,
    prefix: &str,
    offset: usize,
    best: &mut Option<(usize, String)>,
) {
    for (k, v) in table.iter() {
        let path = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        consider(k.span(), &path, offset, best);
        search_value(v, &path, offset, best);
    }
}

enum Segment<'p> {
    Key(&'p str),
    Index(usize),
}

fn split_path(path: &str) -> Vec<Segment<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (name, rest) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            out.push(Segment::Key(name));
        }
        for index in rest.split('[').filter(|s| !s.is_empty()) {
            if let Ok(i) = index.trim_end_matches(']').parse() {
                out.push(Segment::Index(i));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "[server]\nlisten = \"0.0.0.0:1\"\n\n[scim]\ntoken_files = [\"/a\", \"/b\"]\n\n[[access.rules]]\npath_prefix = \"/x\"\n";

    #[test]
    fn key_span_finds_nested_and_indexed_keys() {
        let doc = Document::parse(TEXT);
        let span = doc.key_span("server.listen").unwrap();
        assert_eq!(doc.position(span.start), (2, 1));
        let span = doc.key_span("scim.token_files[1]").unwrap();
        assert_eq!(doc.position(span.start), (5, 22));
        let span = doc.key_span("access.rules[0].path_prefix").unwrap();
        assert_eq!(doc.position(span.start).0, 8);
        assert!(doc.key_span("server.tls").is_none());
    }

    #[test]
    fn key_at_names_the_innermost_key() {
        let doc = Document::parse(TEXT);
        let offset = TEXT.find("\"/b\"").unwrap();
        assert_eq!(doc.key_at(offset).as_deref(), Some("scim.token_files[1]"));
        let offset = TEXT.find("\"/x\"").unwrap();
        assert_eq!(
            doc.key_at(offset).as_deref(),
            Some("access.rules[0].path_prefix")
        );
    }

    #[test]
    fn position_counts_lines_and_columns_from_one() {
        let doc = Document::parse("a = 1\nbb = 2\n");
        assert_eq!(doc.position(0), (1, 1));
        assert_eq!(doc.position(9), (2, 4));
    }
}
