//! Form and query-string decoding the way PHP fills `$_GET` / `$_POST`.
//!
//! PHP decodes `+` as a space and `%XX` escapes; for a repeated key the last value wins. The
//! stand-in keeps the pairs in arrival order because Chamilo's `update_user_from_username`
//! walks `$_POST` in order: [`FormPairs::to_php`] builds that array exactly as PHP does (a key
//! sits where it first appeared, `a[x]=1&b=2&a[y]=3` gives `a` then `b`).

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

impl FormPairs {
    /// The PHP array these pairs become (`$_POST` / `$_GET`), following
    /// `php_register_variable_ex`: leading spaces of a name are dropped; in the name before the
    /// first `[`, spaces and dots become `_`; `a[x][y]=v` nests, `a[]=v` appends; an unmatched
    /// first `[` becomes `_` (`a[b=v` is the key `a_b`); anything after a `]` that does not open
    /// another `[` is ignored; a scalar is replaced by an array when a later pair indexes it, and
    /// a later scalar replaces an array. A key keeps the position of its first appearance.
    pub fn to_php(&self) -> PhpArray {
        let mut out = PhpArray::default();
        for (key, value) in &self.0 {
            register(&mut out, key, value);
        }
        out
    }
}

fn register(top: &mut PhpArray, raw: &str, value: &str) {
    let name = raw.trim_start_matches(' ');
    let (base, rest) = match name.find('[') {
        Some(at) => (&name[..at], Some(&name[at + 1..])),
        None => (name, None),
    };
    let mut base: String = base
        .chars()
        .map(|c| if c == ' ' || c == '.' { '_' } else { c })
        .collect();
    if base.is_empty() {
        return;
    }
    // The indices, each `Some(key)` or `None` for `[]`.
    let mut indices: Vec<Option<String>> = Vec::new();
    if let Some(mut rest) = rest {
        loop {
            let Some(close) = rest.find(']') else {
                if indices.is_empty() {
                    // Not an index after all: the `[` becomes `_` and the rest is kept.
                    base.push('_');
                    base.push_str(rest);
                }
                break;
            };
            let index = &rest[..close];
            indices.push((!index.is_empty()).then(|| index.to_owned()));
            rest = &rest[close + 1..];
            match rest.strip_prefix('[') {
                Some(next) => rest = next,
                None => break,
            }
        }
    }
    let mut slot = top.slot(Some(base));
    for index in indices {
        if !matches!(slot, PhpValue::Array(_)) {
            *slot = PhpValue::Array(PhpArray::default());
        }
        let PhpValue::Array(array) = slot else {
            return;
        };
        slot = array.slot(index);
    }
    *slot = PhpValue::Str(value.to_owned());
}

/// A PHP array: ordered `key => value` pairs. Integer keys are kept as their decimal text,
/// which is how PHP prints them and compares them with numeric strings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PhpArray(Vec<(String, PhpValue)>);

/// One value of a PHP request array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PhpValue {
    Str(String),
    Array(PhpArray),
}

impl PhpArray {
    /// The value under `key`.
    pub fn get(&self, key: &str) -> Option<&PhpValue> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Every entry in PHP order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &PhpValue)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the array has no entry.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The slot for `key` (`None`: the next integer key), created empty at the end if new.
    fn slot(&mut self, key: Option<String>) -> &mut PhpValue {
        let key = key.unwrap_or_else(|| self.next_index().to_string());
        let at = match self.0.iter().position(|(k, _)| *k == key) {
            Some(at) => at,
            None => {
                self.0.push((key, PhpValue::Str(String::new())));
                self.0.len() - 1
            }
        };
        &mut self.0[at].1
    }

    /// PHP's next free integer key (PHP 8.2: never below 0).
    fn next_index(&self) -> i64 {
        self.0
            .iter()
            .filter_map(|(k, _)| php_int_key(k))
            .map(|n| n.saturating_add(1))
            .max()
            .unwrap_or(0)
            .max(0)
    }

    /// `print_r($array, true)`.
    pub fn print_r(&self) -> String {
        let mut out = String::new();
        print_r_into(&mut out, self, 0);
        out
    }
}

impl PhpValue {
    /// The value as PHP's string conversion gives it: an array is `"Array"`.
    pub fn as_php_string(&self) -> &str {
        match self {
            Self::Str(s) => s,
            Self::Array(_) => "Array",
        }
    }
}

/// The integer a PHP array key string stands for (canonical decimal only: `"0"`, `"-3"`, not
/// `"03"` or `"+3"`).
fn php_int_key(key: &str) -> Option<i64> {
    let digits = key.strip_prefix('-').unwrap_or(key);
    let canonical = !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" || !digits.starts_with('0'))
        && key != "-0";
    if canonical {
        key.parse().ok()
    } else {
        None
    }
}

fn print_r_into(out: &mut String, array: &PhpArray, pad: usize) {
    let indent = " ".repeat(pad);
    out.push_str("Array\n");
    out.push_str(&indent);
    out.push_str("(\n");
    for (key, value) in array.iter() {
        out.push_str(&indent);
        out.push_str("    [");
        out.push_str(key);
        out.push_str("] => ");
        match value {
            PhpValue::Str(s) => out.push_str(s),
            PhpValue::Array(inner) => {
                print_r_into(out, inner, pad + 8);
            }
        }
        out.push('\n');
    }
    out.push_str(&indent);
    out.push_str(")\n");
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

    fn php(raw: &str) -> PhpArray {
        FormPairs::parse(raw).to_php()
    }

    fn s(v: &str) -> PhpValue {
        PhpValue::Str(v.to_owned())
    }

    #[test]
    fn php_post_keeps_first_appearance_order_and_nests() {
        let a = php("loginname=x&extra%5B0%5D%5Bfield_name%5D=n&firstname=F&extra[0][field_value]=v&extra[1][field_name]=m&firstname=G");
        let keys: Vec<&str> = a.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["loginname", "extra", "firstname"]);
        assert_eq!(a.get("firstname"), Some(&s("G")));
        let Some(PhpValue::Array(extra)) = a.get("extra") else {
            panic!("extra is an array");
        };
        assert_eq!(extra.len(), 2);
        let Some(PhpValue::Array(first)) = extra.get("0") else {
            panic!("extra[0] is an array");
        };
        assert_eq!(
            first.print_r(),
            "Array\n(\n    [field_name] => n\n    [field_value] => v\n)\n"
        );
    }

    #[test]
    fn php_post_name_mangling() {
        let a = php(
            "a.b=1&+c+d=2&e[f=3&g[]=4&g[]=5&g[7]=6&g[]=7&h[i]j=8&k=9&k[l]=10&m[n]=11&m=12&[x]=13",
        );
        assert_eq!(a.get("a_b"), Some(&s("1")));
        assert_eq!(a.get("c_d"), Some(&s("2")));
        assert_eq!(a.get("e_f"), Some(&s("3")));
        let Some(PhpValue::Array(g)) = a.get("g") else {
            panic!("g");
        };
        let keys: Vec<&str> = g.iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["0", "1", "7", "8"]);
        let Some(PhpValue::Array(h)) = a.get("h") else {
            panic!("h");
        };
        assert_eq!(h.get("i"), Some(&s("8")));
        assert!(matches!(a.get("k"), Some(PhpValue::Array(_))));
        assert_eq!(a.get("m"), Some(&s("12")));
        assert_eq!(a.len(), 7, "an empty name is dropped: {a:?}");
    }

    #[test]
    fn print_r_nested() {
        let a = php("a=x&b[c]=y");
        assert_eq!(
            a.print_r(),
            "Array\n(\n    [a] => x\n    [b] => Array\n        (\n            [c] => y\n        )\n\n)\n"
        );
        assert_eq!(PhpArray::default().print_r(), "Array\n(\n)\n");
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
