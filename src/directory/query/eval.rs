//! Evaluates a parsed filter against one resource's canonical SCIM JSON.
//!
//! Attribute names are resolved case-insensitively against the JSON keys. Comparison follows
//! RFC 7644 §3.4.2.2 with the choices listed in the documentation of [`super`].

use std::cmp::Ordering;

use chrono::{DateTime, FixedOffset};
use serde_json::{Map, Number, Value};

use super::{is_core_urn, AttrInfo, AttrKind, AttrPath, AttrTypes, CompValue, CompareOp, Filter};
use crate::directory::json::get_ci;

/// Whether `resource` satisfies `filter`. `types` supplies `caseExact` and data types; an
/// attribute it does not know compares as a case-insensitive string (or as dates when both
/// sides are RFC 3339 timestamps). Never panics, whatever the JSON.
pub fn matches(filter: &Filter, resource: &Value, types: &dyn AttrTypes) -> bool {
    eval(filter, resource, types, None)
}

/// `parent` is the attribute whose element `resource` is, inside a value filter.
fn eval(
    filter: &Filter,
    resource: &Value,
    types: &dyn AttrTypes,
    parent: Option<&AttrPath>,
) -> bool {
    match filter {
        Filter::And(..) | Filter::Or(..) => eval_chain(filter, resource, types, parent),
        Filter::Not(inner) => !eval(inner, resource, types, parent),
        Filter::Present(path) => {
            let root = resolve(resource, path);
            match &path.sub_attr {
                None => root.is_some_and(is_present),
                Some(sub) => sub_values(root, sub).into_iter().any(is_present),
            }
        }
        Filter::Compare { path, op, value } => {
            compare_path(resource, types, parent, path, *op, value)
        }
        Filter::ValuePath { attr, filter } => {
            let root = resolve(resource, attr);
            let elements = match &attr.sub_attr {
                None => root.map(elements_of).unwrap_or_default().iter().collect(),
                Some(sub) => sub_values(root, sub),
            };
            elements.into_iter().any(|el| match el {
                Value::Object(_) => eval(filter, el, types, Some(attr)),
                Value::Null => false,
                // A multi-valued attribute of simple values: its elements are `value`.
                other => {
                    let wrapped =
                        Value::Object(Map::from_iter([("value".to_owned(), other.clone())]));
                    eval(filter, &wrapped, types, Some(attr))
                }
            })
        }
    }
}

/// `a and b and c …` / `… or …`: evaluated with an explicit stack, so chain length costs no
/// recursion.
fn eval_chain(
    filter: &Filter,
    resource: &Value,
    types: &dyn AttrTypes,
    parent: Option<&AttrPath>,
) -> bool {
    let is_and = matches!(filter, Filter::And(..));
    let mut stack = vec![filter];
    while let Some(node) = stack.pop() {
        match (node, is_and) {
            (Filter::And(l, r), true) | (Filter::Or(l, r), false) => {
                stack.push(r);
                stack.push(l);
            }
            _ => {
                let hit = eval(node, resource, types, parent);
                if hit != is_and {
                    // `false` in an and-chain, `true` in an or-chain decides it.
                    return hit;
                }
            }
        }
    }
    is_and
}

/// The value of the attribute `path.name` (not yet its sub-attribute); `None` when absent.
fn resolve<'a>(resource: &'a Value, path: &AttrPath) -> Option<&'a Value> {
    let obj = resource.as_object()?;
    let found = match &path.urn {
        Some(urn) if is_core_urn(urn) => get_ci(obj, &path.name),
        Some(urn) => get_ci(obj, urn)?
            .as_object()
            .and_then(|ext| get_ci(ext, &path.name)),
        None => get_ci(obj, &path.name).or_else(|| {
            // Unqualified name of an extension attribute (`employeeNumber`).
            obj.iter()
                .filter(|(k, _)| k.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:")))
                .filter_map(|(_, v)| v.as_object())
                .find_map(|ext| get_ci(ext, &path.name))
        }),
    };
    found.filter(|v| !v.is_null())
}

/// The elements of a possibly multi-valued attribute (a single value is one element).
fn elements_of(v: &Value) -> &[Value] {
    match v {
        Value::Array(items) => items,
        other => std::slice::from_ref(other),
    }
}

/// `sub` of every element of `root` (arrays flattened, nulls dropped).
fn sub_values<'a>(root: Option<&'a Value>, sub: &str) -> Vec<&'a Value> {
    let mut out = Vec::new();
    for el in root.map(elements_of).unwrap_or_default() {
        if let Some(v) = el.as_object().and_then(|o| get_ci(o, sub)) {
            out.extend(elements_of(v).iter().filter(|v| !v.is_null()));
        }
    }
    out
}

/// `pr`: present and neither null, `""`, `[]` nor an object without present members.
fn is_present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => items.iter().any(is_present),
        Value::Object(members) => members.values().any(is_present),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

fn compare_path(
    resource: &Value,
    types: &dyn AttrTypes,
    parent: Option<&AttrPath>,
    path: &AttrPath,
    op: CompareOp,
    literal: &CompValue,
) -> bool {
    let root = resolve(resource, path);
    if *literal == CompValue::Null {
        // Only `eq`/`ne` reach here (the parser rejects the rest): absent / present.
        let present = match &path.sub_attr {
            None => root.is_some_and(is_present),
            Some(sub) => sub_values(root, sub).into_iter().any(is_present),
        };
        return match op {
            CompareOp::Ne => present,
            _ => !present,
        };
    }
    let (eq_op, negate) = match op {
        CompareOp::Ne => (CompareOp::Eq, true),
        other => (other, false),
    };
    let hit = |info: Option<AttrInfo>| move |v: &&Value| compare_value(v, eq_op, literal, info);
    let any = match &path.sub_attr {
        Some(sub) => {
            let info = types.lookup(parent, path);
            sub_values(root, sub).iter().any(hit(info))
        }
        None => {
            let info = types.lookup(parent, path);
            let elements = root.map(elements_of).unwrap_or_default();
            let complex = match info {
                Some(i) => i.kind == AttrKind::Complex,
                None => elements.iter().any(Value::is_object),
            };
            if complex {
                // RFC 7644: a complex attribute compared without a sub-attribute is compared
                // on its `value` sub-attribute (`emails co "example.com"`).
                let value_path = AttrPath {
                    urn: path.urn.clone(),
                    name: path.name.clone(),
                    sub_attr: Some("value".to_owned()),
                };
                let info = types.lookup(parent, &value_path);
                sub_values(root, "value").iter().any(hit(info))
            } else {
                elements
                    .iter()
                    .filter(|v| !v.is_null())
                    .any(|v| hit(info)(&v))
            }
        }
    };
    any != negate
}

/// `actual op literal` for one (non-null) value. `op` is never `Ne` here.
fn compare_value(
    actual: &Value,
    op: CompareOp,
    literal: &CompValue,
    info: Option<AttrInfo>,
) -> bool {
    match (actual, literal) {
        (Value::String(a), CompValue::Str(b)) => compare_strings(a, op, b, info),
        (Value::Number(a), CompValue::Num(b)) => match op {
            CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
            _ => number_cmp(a, b).is_some_and(|ord| ordering_satisfies(ord, op)),
        },
        (Value::Bool(a), CompValue::Bool(b)) => op == CompareOp::Eq && a == b,
        // Entra sends booleans as strings; accept `active eq "True"` and the reverse.
        (Value::Bool(a), CompValue::Str(b)) => op == CompareOp::Eq && string_bool(b) == Some(*a),
        (Value::String(a), CompValue::Bool(b)) => op == CompareOp::Eq && string_bool(a) == Some(*b),
        _ => false,
    }
}

fn string_bool(s: &str) -> Option<bool> {
    if s.eq_ignore_ascii_case("true") {
        Some(true)
    } else if s.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

fn ordering_satisfies(ord: Ordering, op: CompareOp) -> bool {
    match op {
        CompareOp::Eq => ord == Ordering::Equal,
        CompareOp::Ne => ord != Ordering::Equal,
        CompareOp::Gt => ord == Ordering::Greater,
        CompareOp::Ge => ord != Ordering::Less,
        CompareOp::Lt => ord == Ordering::Less,
        CompareOp::Le => ord != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}

fn parse_instant(s: &str) -> Option<DateTime<FixedOffset>> {
    DateTime::parse_from_rfc3339(s.trim()).ok()
}

fn compare_strings(a: &str, op: CompareOp, b: &str, info: Option<AttrInfo>) -> bool {
    let ordered = !matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew);
    // Dates compare as instants (`…Z` equals `…+00:00`); an unknown attribute is treated as
    // a date when both sides parse as one.
    let date_like = match info {
        Some(i) => i.kind == AttrKind::DateTime,
        None => true,
    };
    if ordered && date_like {
        if let (Some(x), Some(y)) = (parse_instant(a), parse_instant(b)) {
            return ordering_satisfies(x.cmp(&y), op);
        }
    }
    if info.is_some_and(|i| i.case_exact) {
        return match op {
            CompareOp::Co => a.contains(b),
            CompareOp::Sw => a.starts_with(b),
            CompareOp::Ew => a.ends_with(b),
            _ => ordering_satisfies(a.cmp(b), op),
        };
    }
    // Case-insensitive: compare lower-cased character streams, allocating only for `co`/`ew`.
    let lower = |s: &str| s.chars().flat_map(char::to_lowercase).collect::<String>();
    match op {
        CompareOp::Co => lower(a).contains(&lower(b)),
        CompareOp::Ew => lower(a).ends_with(&lower(b)),
        CompareOp::Sw => {
            let mut a = a.chars().flat_map(char::to_lowercase);
            b.chars()
                .flat_map(char::to_lowercase)
                .all(|c| a.next() == Some(c))
        }
        _ => {
            let a = a.chars().flat_map(char::to_lowercase);
            ordering_satisfies(a.cmp(b.chars().flat_map(char::to_lowercase)), op)
        }
    }
}

/// A JSON number as an exact integer where possible.
enum Numeric {
    Int(i128),
    Float(f64),
}

fn numeric(n: &Number) -> Numeric {
    if let Some(i) = n.as_i64() {
        Numeric::Int(i128::from(i))
    } else if let Some(u) = n.as_u64() {
        Numeric::Int(i128::from(u))
    } else {
        Numeric::Float(n.as_f64().unwrap_or(f64::NAN))
    }
}

/// Numeric order; integers exactly, otherwise as `f64` (`1` equals `1.0`).
fn number_cmp(a: &Number, b: &Number) -> Option<Ordering> {
    match (numeric(a), numeric(b)) {
        (Numeric::Int(x), Numeric::Int(y)) => Some(x.cmp(&y)),
        (Numeric::Int(x), Numeric::Float(y)) => (x as f64).partial_cmp(&y),
        (Numeric::Float(x), Numeric::Int(y)) => x.partial_cmp(&(y as f64)),
        (Numeric::Float(x), Numeric::Float(y)) => x.partial_cmp(&y),
    }
}
