//! A parsed filter checked against the schema of the resources it will be matched with,
//! before any backend sees it (issue 11 §9): a filter naming an attribute the resource type
//! does not have, or comparing a `dateTime` attribute with something that is not a date,
//! would otherwise match nothing and answer an empty list, hiding the client's mistake.

use super::{AttrKind, AttrPath, AttrTypes, CompValue, Filter};

/// Checks every path of `filter` against `types`, and rewrites `userName` literals to
/// [`canonical_user_name`](crate::directory::canonical_user_name), the form names are stored
/// in. The error is a sentence for the client's `detail`.
///
/// Walks `and`/`or` spines in a loop: chains can be thousands of terms long.
pub fn check(filter: &mut Filter, types: &dyn AttrTypes) -> Result<(), String> {
    let mut stack: Vec<(&mut Filter, Option<AttrPath>)> = vec![(filter, None)];
    while let Some((node, parent)) = stack.pop() {
        match node {
            Filter::And(l, r) | Filter::Or(l, r) => {
                stack.push((&mut **r, parent.clone()));
                stack.push((&mut **l, parent));
            }
            Filter::Not(inner) => stack.push((&mut **inner, parent)),
            Filter::Present(path) => {
                known(types, parent.as_ref(), path)?;
            }
            Filter::Compare { path, value, .. } => {
                let kind = known(types, parent.as_ref(), path)?;
                if kind == AttrKind::DateTime && !is_date(value) {
                    return Err(format!(
                        "{} is a dateTime and can only be compared with an RFC 3339 date \
                         (such as \"2026-01-31T12:00:00Z\"), not {value}",
                        full_name(parent.as_ref(), path)
                    ));
                }
                if parent.is_none() && path.sub_attr.is_none() && path.is("userName") {
                    if let CompValue::Str(s) = value {
                        *s = crate::directory::canonical_user_name(s);
                    }
                }
            }
            Filter::ValuePath { attr, filter } => {
                known(types, parent.as_ref(), attr)?;
                stack.push((&mut **filter, Some(attr.clone())));
            }
        }
    }
    Ok(())
}

/// The kind of the attribute at `path` (inside `parent`'s value filter, if any), or the
/// client-facing reason it is not one.
fn known(
    types: &dyn AttrTypes,
    parent: Option<&AttrPath>,
    path: &AttrPath,
) -> Result<AttrKind, String> {
    types.lookup(parent, path).map(|i| i.kind).ok_or_else(|| {
        format!(
            "{} is not an attribute of this resource type",
            full_name(parent, path)
        )
    })
}

fn full_name(parent: Option<&AttrPath>, path: &AttrPath) -> String {
    match parent {
        Some(p) => format!("{p}.{path}"),
        None => path.to_string(),
    }
}

/// `null` (presence) or a string that parses as an RFC 3339 date-time.
fn is_date(value: &CompValue) -> bool {
    match value {
        CompValue::Null => true,
        CompValue::Str(s) => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
        CompValue::Num(_) | CompValue::Bool(_) => false,
    }
}

/// Two schemas as one, for a root-level search over Users and Groups: an attribute is known
/// when either resource type has it.
pub struct EitherSchema<'a>(pub &'a dyn AttrTypes, pub &'a dyn AttrTypes);

impl AttrTypes for EitherSchema<'_> {
    fn lookup(&self, parent: Option<&AttrPath>, path: &AttrPath) -> Option<super::AttrInfo> {
        self.0
            .lookup(parent, path)
            .or_else(|| self.1.lookup(parent, path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::query::CompareOp;
    use crate::directory::schema::ResourceSchema;

    fn compare(name: &str, sub: Option<&str>, value: CompValue) -> Filter {
        Filter::Compare {
            path: AttrPath::new(name, sub),
            op: CompareOp::Eq,
            value,
        }
    }

    #[test]
    fn long_chains_are_walked_without_recursion_and_every_term_is_checked() {
        let term = || compare("userName", None, CompValue::Str("x".into()));
        let mut chain = term();
        for _ in 0..4096 {
            chain = Filter::Or(Box::new(chain), Box::new(term()));
        }
        assert_eq!(check(&mut chain, ResourceSchema::full()), Ok(()));
        chain = Filter::And(
            Box::new(chain),
            Box::new(compare("shoe", None, CompValue::Null)),
        );
        let err = check(&mut chain, ResourceSchema::full()).unwrap_err();
        assert!(err.contains("shoe"), "{err}");
    }

    #[test]
    fn user_name_literals_take_the_stored_form() {
        let mut f = compare("USERNAME", None, CompValue::Str(" jose\u{301} ".into()));
        assert_eq!(check(&mut f, ResourceSchema::full()), Ok(()));
        assert_eq!(
            f,
            compare("USERNAME", None, CompValue::Str("jos\u{e9}".into()))
        );
        // Other attributes keep their literal as sent.
        let mut g = compare("displayName", None, CompValue::Str(" x ".into()));
        assert_eq!(check(&mut g, ResourceSchema::full()), Ok(()));
        assert_eq!(
            g,
            compare("displayName", None, CompValue::Str(" x ".into()))
        );
    }

    #[test]
    fn dates_compare_with_dates_or_null() {
        for (value, ok) in [
            (CompValue::Str("2026-01-31T12:00:00Z".into()), true),
            (CompValue::Null, true),
            (CompValue::Str("2026-01-31".into()), false),
            (CompValue::Bool(true), false),
        ] {
            let mut f = compare("meta", Some("created"), value);
            assert_eq!(check(&mut f, ResourceSchema::full()).is_ok(), ok, "{f}");
        }
    }
}
