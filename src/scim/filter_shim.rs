//! TEMPORARY stand-in for the filter engineer's parser/evaluator until `filter` is merged.
//! Supports `path op value` joined by `and`/`or`, `pr`, and `attr[filter]` value paths.
#![allow(dead_code)]

use serde_json::Value;

use super::filter::{
    AttrPath, AttrTypes, CompValue, CompareOp, Filter, FilterError, FilterLimits, PatchPath,
};

fn err(position: usize, message: &str) -> FilterError {
    FilterError {
        position,
        message: message.to_owned(),
    }
}

/// Parses `[urn:]name[.sub]`.
pub fn parse_attr_path(input: &str) -> Result<AttrPath, FilterError> {
    let input = input.trim();
    if input.is_empty() {
        return Err(err(0, "empty path"));
    }
    let (urn, rest) = if input.to_ascii_lowercase().starts_with("urn:") {
        match input.rfind(':') {
            Some(i) => (Some(input[..i].to_owned()), &input[i + 1..]),
            None => return Err(err(0, "bad urn")),
        }
    } else {
        (None, input)
    };
    let mut parts = rest.splitn(2, '.');
    let name = parts.next().unwrap_or_default().to_owned();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '$')
    {
        return Err(err(0, "bad attribute name"));
    }
    Ok(AttrPath {
        urn,
        name,
        sub_attr: parts.next().map(str::to_owned),
    })
}

/// Parses a PATCH path.
pub fn parse_patch_path(input: &str) -> Result<PatchPath, FilterError> {
    match input.find('[') {
        None => Ok(PatchPath {
            attr: parse_attr_path(input)?,
            value_filter: None,
            sub_attr: None,
        }),
        Some(i) => {
            let close = input.rfind(']').ok_or_else(|| err(i, "missing ]"))?;
            let attr = parse_attr_path(&input[..i])?;
            let filter = parse_filter(&input[i + 1..close], &FilterLimits::default())?;
            let rest = &input[close + 1..];
            let sub_attr = match rest.strip_prefix('.') {
                Some(s) if !s.is_empty() => Some(s.to_owned()),
                None if rest.is_empty() => None,
                _ => return Err(err(close, "bad sub-attribute")),
            };
            Ok(PatchPath {
                attr,
                value_filter: Some(filter),
                sub_attr,
            })
        }
    }
}

fn tokens(input: &str) -> Result<Vec<String>, FilterError> {
    let mut out = Vec::new();
    let mut chars = input.char_indices().peekable();
    while let Some(&(i, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '"' {
            chars.next();
            let mut s = String::from("\"");
            let mut closed = false;
            while let Some((_, c)) = chars.next() {
                if c == '\\' {
                    if let Some((_, n)) = chars.next() {
                        s.push(n);
                    }
                } else if c == '"' {
                    closed = true;
                    break;
                } else {
                    s.push(c);
                }
            }
            if !closed {
                return Err(err(i, "unterminated string"));
            }
            out.push(s);
        } else {
            let mut s = String::new();
            let mut depth = 0;
            while let Some(&(_, c)) = chars.peek() {
                if c == '[' {
                    depth += 1;
                } else if c == ']' {
                    depth -= 1;
                } else if c.is_whitespace() && depth == 0 {
                    break;
                }
                if c == '"' && depth > 0 {
                    // quoted text inside a value path
                    s.push(c);
                    chars.next();
                    for (_, c) in chars.by_ref() {
                        s.push(c);
                        if c == '"' {
                            break;
                        }
                    }
                    continue;
                }
                s.push(c);
                chars.next();
            }
            out.push(s);
        }
    }
    Ok(out)
}

/// Parses a (subset of the) filter language.
pub fn parse_filter(input: &str, limits: &FilterLimits) -> Result<Filter, FilterError> {
    if input.len() > limits.max_length {
        return Err(err(limits.max_length, "filter too long"));
    }
    let toks = tokens(input)?;
    let mut i = 0;
    let mut acc: Option<Filter> = None;
    let mut pending: Option<String> = None;
    while i < toks.len() {
        let path_tok = &toks[i];
        let f = if let Some(b) = path_tok.find('[') {
            let close = path_tok.rfind(']').ok_or_else(|| err(i, "missing ]"))?;
            let attr = parse_attr_path(&path_tok[..b])?;
            let mut inner = parse_filter(&path_tok[b + 1..close], limits)?;
            let rest = &path_tok[close + 1..];
            if let Some(sub) = rest.strip_prefix('.') {
                let op = toks.get(i + 1).ok_or_else(|| err(i, "missing operator"))?;
                let val = toks.get(i + 2).ok_or_else(|| err(i, "missing value"))?;
                inner = Filter::And(
                    Box::new(inner),
                    Box::new(Filter::Compare {
                        path: parse_attr_path(sub)?,
                        op: parse_op(op, i)?,
                        value: parse_value(val, i)?,
                    }),
                );
                i += 3;
            } else {
                i += 1;
            }
            Filter::ValuePath {
                attr,
                filter: Box::new(inner),
            }
        } else {
            let path = parse_attr_path(path_tok)?;
            let op = toks.get(i + 1).ok_or_else(|| err(i, "missing operator"))?;
            if op.eq_ignore_ascii_case("pr") {
                i += 2;
                Filter::Present(path)
            } else {
                let val = toks.get(i + 2).ok_or_else(|| err(i, "missing value"))?;
                i += 3;
                Filter::Compare {
                    path,
                    op: parse_op(op, i)?,
                    value: parse_value(val, i)?,
                }
            }
        };
        acc = Some(match (acc, pending.take()) {
            (None, _) => f,
            (Some(a), Some(j)) if j.eq_ignore_ascii_case("or") => {
                Filter::Or(Box::new(a), Box::new(f))
            }
            (Some(a), _) => Filter::And(Box::new(a), Box::new(f)),
        });
        if let Some(j) = toks.get(i) {
            if !(j.eq_ignore_ascii_case("and") || j.eq_ignore_ascii_case("or")) {
                return Err(err(i, "expected and/or"));
            }
            pending = Some(j.clone());
            i += 1;
            if i == toks.len() {
                return Err(err(i, "dangling operator"));
            }
        }
    }
    acc.ok_or_else(|| err(0, "empty filter"))
}

fn parse_op(op: &str, pos: usize) -> Result<CompareOp, FilterError> {
    Ok(match op.to_ascii_lowercase().as_str() {
        "eq" => CompareOp::Eq,
        "ne" => CompareOp::Ne,
        "co" => CompareOp::Co,
        "sw" => CompareOp::Sw,
        "ew" => CompareOp::Ew,
        "gt" => CompareOp::Gt,
        "ge" => CompareOp::Ge,
        "lt" => CompareOp::Lt,
        "le" => CompareOp::Le,
        _ => return Err(err(pos, "unknown operator")),
    })
}

fn parse_value(v: &str, pos: usize) -> Result<CompValue, FilterError> {
    if let Some(s) = v.strip_prefix('"') {
        return Ok(CompValue::Str(s.to_owned()));
    }
    match v.to_ascii_lowercase().as_str() {
        "true" => Ok(CompValue::Bool(true)),
        "false" => Ok(CompValue::Bool(false)),
        "null" => Ok(CompValue::Null),
        _ => serde_json::from_str::<serde_json::Number>(v)
            .map(CompValue::Num)
            .map_err(|_| err(pos, "bad value")),
    }
}

fn get_ci<'a>(obj: &'a Value, key: &str) -> Option<&'a Value> {
    obj.as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(key))
        .map(|(_, v)| v)
}

fn values<'a>(resource: &'a Value, path: &AttrPath) -> Vec<&'a Value> {
    let container = match &path.urn {
        Some(u) if u.to_ascii_lowercase().contains("extension") => match get_ci(resource, u) {
            Some(c) => c,
            None => return Vec::new(),
        },
        _ => resource,
    };
    let Some(top) = get_ci(container, &path.name) else {
        return Vec::new();
    };
    let tops: Vec<&Value> = match top {
        Value::Array(a) => a.iter().collect(),
        v => vec![v],
    };
    match &path.sub_attr {
        None => tops,
        Some(s) => tops.into_iter().filter_map(|t| get_ci(t, s)).collect(),
    }
}

fn compare(v: &Value, op: CompareOp, lit: &CompValue) -> bool {
    match (v, lit) {
        (Value::String(a), CompValue::Str(b)) => {
            let (a, b) = (a.to_lowercase(), b.to_lowercase());
            match op {
                CompareOp::Eq => a == b,
                CompareOp::Ne => a != b,
                CompareOp::Co => a.contains(&b),
                CompareOp::Sw => a.starts_with(&b),
                CompareOp::Ew => a.ends_with(&b),
                CompareOp::Gt => a > b,
                CompareOp::Ge => a >= b,
                CompareOp::Lt => a < b,
                CompareOp::Le => a <= b,
            }
        }
        (Value::Bool(a), CompValue::Bool(b)) => match op {
            CompareOp::Eq => a == b,
            CompareOp::Ne => a != b,
            _ => false,
        },
        (Value::Number(a), CompValue::Num(b)) => {
            let (a, b) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
            match op {
                CompareOp::Eq => a == b,
                CompareOp::Ne => a != b,
                CompareOp::Gt => a > b,
                CompareOp::Ge => a >= b,
                CompareOp::Lt => a < b,
                CompareOp::Le => a <= b,
                _ => false,
            }
        }
        _ => op == CompareOp::Ne,
    }
}

/// Evaluates a filter (case-insensitive strings only).
pub fn matches(filter: &Filter, resource: &Value, types: &dyn AttrTypes) -> bool {
    match filter {
        Filter::And(a, b) => matches(a, resource, types) && matches(b, resource, types),
        Filter::Or(a, b) => matches(a, resource, types) || matches(b, resource, types),
        Filter::Not(a) => !matches(a, resource, types),
        Filter::Present(p) => values(resource, p).iter().any(|v| {
            !v.is_null() && v.as_str() != Some("") && v.as_array().is_none_or(|a| !a.is_empty())
        }),
        Filter::Compare { path, op, value } => {
            let vs = values(resource, path);
            if vs.is_empty() {
                return *op == CompareOp::Ne && *value != CompValue::Null;
            }
            vs.iter().any(|v| compare(v, *op, value))
        }
        Filter::ValuePath { attr, filter } => values(resource, attr)
            .iter()
            .any(|el| matches(filter, el, types)),
    }
}
