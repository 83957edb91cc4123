//! The PATCH engine (RFC 7644 §3.5.2), pure: canonical resource + operations → new resource.
//!
//! Tolerates Entra ID and Okta: capitalised `op`s, string booleans, `Add` on single-valued
//! attributes, path-less values with dotted and URN-qualified keys, a filtered target that
//! matches nothing (an element is created from the filter's equality terms), `remove` with a
//! `value` list. The whole request is applied to a copy, so it succeeds or fails as a whole.

use std::collections::{HashMap, HashSet};

use serde_json::{Map, Value};

use super::error::{ScimError, ScimType};
use super::filter::{parse_patch_path, PatchPath};
use super::normalize::{
    coerce, display_path, finish, flatten_keys, keep_one_primary, with_container, write_identity,
};
use crate::directory::json::get_ci;
use crate::directory::query::{matches, AttrKind, AttrPath, CompValue, CompareOp, Filter};
use crate::directory::schema::{AttrDef, Mutability, ResourceSchema, Section};
use crate::directory::ENTERPRISE_SCHEMA;

/// The URN a PATCH request body declares.
pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A PATCH operation kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Add,
    Replace,
    Remove,
}

/// One operation of a PATCH request.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOp {
    pub op: OpKind,
    pub path: Option<PatchPath>,
    pub value: Option<Value>,
}

/// Most operations one PATCH request may carry (identity providers send a handful; a group's
/// member changes come as one operation with a list of values).
pub const MAX_OPERATIONS: usize = 1000;

/// Parses a PatchOp request body.
pub fn parse_patch_request(body: &Value) -> Result<Vec<PatchOp>, ScimError> {
    let obj = body
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("The PATCH body must be a JSON object"))?;
    if let Some(schemas) = get_ci(obj, "schemas").and_then(Value::as_array) {
        let ok = schemas.iter().any(|s| {
            s.as_str()
                .is_some_and(|s| s.eq_ignore_ascii_case(PATCH_OP_SCHEMA))
        });
        if !ok {
            return Err(ScimError::invalid_syntax(format!(
                "schemas must contain {PATCH_OP_SCHEMA}"
            )));
        }
    }
    let ops = get_ci(obj, "Operations")
        .and_then(Value::as_array)
        .ok_or_else(|| ScimError::invalid_syntax("Operations must be an array"))?;
    if ops.is_empty() {
        return Err(ScimError::invalid_syntax("Operations is empty"));
    }
    if ops.len() > MAX_OPERATIONS {
        return Err(ScimError::bad_request(
            ScimType::TooMany,
            format!(
                "{} operations in one PATCH; at most {MAX_OPERATIONS} are accepted",
                ops.len()
            ),
        ));
    }
    ops.iter()
        .enumerate()
        .map(|(i, op)| {
            let op_obj = op.as_object().ok_or_else(|| {
                ScimError::invalid_syntax(format!("Operations[{i}] must be an object"))
            })?;
            let kind = match get_ci(op_obj, "op")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase)
                .as_deref()
            {
                Some("add") => OpKind::Add,
                Some("replace") => OpKind::Replace,
                Some("remove") => OpKind::Remove,
                _ => {
                    return Err(ScimError::invalid_syntax(format!(
                        "Operations[{i}].op must be add, replace or remove"
                    )))
                }
            };
            let path = match get_ci(op_obj, "path") {
                None | Some(Value::Null) => None,
                Some(Value::String(s)) if s.trim().is_empty() => None,
                Some(Value::String(s)) => Some(parse_patch_path(s.trim()).map_err(|e| {
                    ScimError::bad_request(
                        ScimType::InvalidPath,
                        format!("Operations[{i}].path: {e}"),
                    )
                })?),
                Some(_) => {
                    return Err(ScimError::bad_request(
                        ScimType::InvalidPath,
                        format!("Operations[{i}].path must be a string"),
                    ))
                }
            };
            let value = get_ci(op_obj, "value").cloned();
            if kind == OpKind::Remove && path.is_none() {
                return Err(ScimError::bad_request(
                    ScimType::NoTarget,
                    format!("Operations[{i}]: remove needs a path"),
                ));
            }
            if kind != OpKind::Remove && value.is_none() {
                return Err(ScimError::invalid_value(format!(
                    "Operations[{i}]: {kind:?} needs a value"
                )));
            }
            Ok(PatchOp {
                op: kind,
                path,
                value,
            })
        })
        .collect()
}

/// Applies `ops` to a copy of `resource`; the copy is returned only if every op succeeded.
pub fn apply_patch(
    schema: &ResourceSchema,
    resource: &Map<String, Value>,
    ops: &[PatchOp],
) -> Result<Map<String, Value>, ScimError> {
    let mut r = resource.clone();
    for op in ops {
        apply_op(schema, &mut r, op)?;
    }
    finish(schema, &mut r);
    Ok(r)
}

struct Target<'s> {
    section: Section,
    def: &'s AttrDef,
    sub: Option<&'s AttrDef>,
    filter: Option<&'s Filter>,
}

fn apply_op(
    schema: &ResourceSchema,
    r: &mut Map<String, Value>,
    op: &PatchOp,
) -> Result<(), ScimError> {
    match &op.path {
        None => {
            let obj = op
                .value
                .as_ref()
                .and_then(Value::as_object)
                .ok_or_else(|| {
                    ScimError::invalid_value("A PATCH without path needs an object value")
                })?;
            apply_object(schema, r, op.op, obj, None)
        }
        Some(pp) if names_extension(pp) => {
            // The whole extension: `path` is its URN, `value` an object of its attributes.
            match op.op {
                OpKind::Remove => {
                    r.remove(ENTERPRISE_SCHEMA);
                    Ok(())
                }
                _ => {
                    let obj = op
                        .value
                        .as_ref()
                        .and_then(Value::as_object)
                        .ok_or_else(|| {
                            ScimError::invalid_value("The extension's value must be an object")
                        })?;
                    apply_object(schema, r, op.op, obj, Some(ENTERPRISE_SCHEMA))
                }
            }
        }
        Some(pp) => {
            let (section, def, sub) = match resolve_patch_path(schema, pp) {
                Ok(target) => target,
                // An attribute of the resource type this backend does not store: nothing to do.
                // IdPs send every attribute they map, and a 400 would fail (and quarantine) the
                // whole sync.
                Err(_) if resolve_patch_path(schema.unpruned(), pp).is_ok() => return Ok(()),
                Err(e) => return Err(e),
            };
            if is_read_only(def, sub) {
                return Err(ScimError::bad_request(
                    ScimType::Mutability,
                    format!("{} is read-only", display_path(section, def, sub)),
                ));
            }
            let t = Target {
                section,
                def,
                sub,
                filter: pp.value_filter.as_ref(),
            };
            apply_target(schema, r, op.op, &t, op.value.as_ref())
        }
    }
}

/// Whether a path is the enterprise extension's URN itself.
fn names_extension(pp: &PatchPath) -> bool {
    if pp.value_filter.is_some() || pp.attr.sub_attr.is_some() {
        return false;
    }
    let full = match &pp.attr.urn {
        Some(u) => format!("{u}:{}", pp.attr.name),
        None => pp.attr.name.clone(),
    };
    full.eq_ignore_ascii_case(ENTERPRISE_SCHEMA)
}

/// Applies a path-less value object (or an extension object, with its `urn`) key by key.
/// Unknown and read-only keys are ignored: Okta sends `id` with a rename, Entra sends
/// attributes the backend does not map.
fn apply_object(
    schema: &ResourceSchema,
    r: &mut Map<String, Value>,
    kind: OpKind,
    obj: &Map<String, Value>,
    urn: Option<&str>,
) -> Result<(), ScimError> {
    for (path, v) in flatten_keys(obj, urn) {
        let Some((section, def, sub)) = schema.resolve(&path) else {
            continue;
        };
        if is_read_only(def, sub) {
            continue;
        }
        let t = Target {
            section,
            def,
            sub,
            filter: None,
        };
        apply_target(schema, r, kind, &t, Some(v))?;
    }
    Ok(())
}

fn is_read_only(def: &AttrDef, sub: Option<&AttrDef>) -> bool {
    def.mutability == Mutability::ReadOnly
        || sub.is_some_and(|s| s.mutability == Mutability::ReadOnly)
}

fn resolve_patch_path<'s>(
    schema: &'s ResourceSchema,
    pp: &PatchPath,
) -> Result<(Section, &'s AttrDef, Option<&'s AttrDef>), ScimError> {
    let invalid = || {
        ScimError::bad_request(
            ScimType::InvalidPath,
            format!("Unknown attribute path {}", path_text(pp)),
        )
    };
    let (section, def, sub) = schema.resolve(&pp.attr).ok_or_else(invalid)?;
    if pp.value_filter.is_none() {
        return Ok((section, def, sub));
    }
    if sub.is_some() || def.kind != AttrKind::Complex {
        return Err(invalid());
    }
    let sub = match &pp.sub_attr {
        Some(s) => Some(def.sub(s).ok_or_else(invalid)?),
        None => None,
    };
    Ok((section, def, sub))
}

fn path_text(pp: &PatchPath) -> String {
    let a = &pp.attr;
    let mut s = match &a.urn {
        Some(u) => format!("{u}:{}", a.name),
        None => a.name.clone(),
    };
    if let Some(sub) = &a.sub_attr {
        s.push('.');
        s.push_str(sub);
    }
    if pp.value_filter.is_some() {
        s.push_str("[…]");
    }
    if let Some(sub) = &pp.sub_attr {
        s.push('.');
        s.push_str(sub);
    }
    s
}

/// Takes the values of `name` out of `c` (the working copy of the resource), to be put back
/// by [`store_items`]: moved, not copied (a group may have 20,000 members). Every path that
/// takes them stores them back or fails the whole PATCH.
fn take_items(c: &mut Map<String, Value>, name: &str) -> Vec<Value> {
    // Taken in place (a `null` left behind), so the attribute keeps its position.
    match c.get_mut(name) {
        Some(v @ (Value::Array(_) | Value::Object(_))) => match std::mem::take(v) {
            Value::Array(a) => a,
            other => vec![other],
        },
        _ => Vec::new(),
    }
}

fn store_items(c: &mut Map<String, Value>, def: &AttrDef, items: Vec<Value>) {
    let items: Vec<Value> = items
        .into_iter()
        .filter(|v| v.as_object().is_none_or(|o| !o.is_empty()))
        .collect();
    if items.is_empty() {
        c.remove(def.name);
    } else if def.multi_valued {
        c.insert(def.name.to_owned(), Value::Array(items));
    } else if let Some(first) = items.into_iter().next() {
        c.insert(def.name.to_owned(), first);
    }
}

/// What identifies an element of a multi-valued attribute: its `value` when it has one
/// (`members`, `emails`), else the whole element. Equal keys are the same element; keyed so
/// that adding or removing 10,000 values is linear, not pairwise (issue 11 §1).
fn member_key(v: &Value) -> String {
    let mut key = String::with_capacity(48);
    match v.get("value") {
        Some(value) => {
            key.push('v');
            write_identity(value, &mut key);
        }
        None => {
            key.push('w');
            write_identity(v, &mut key);
        }
    }
    key
}

fn apply_target(
    schema: &ResourceSchema,
    r: &mut Map<String, Value>,
    kind: OpKind,
    t: &Target<'_>,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let label = display_path(t.section, t.def, t.sub);
    let def = t.def;
    with_container(r, t.section, |c| -> Result<(), ScimError> {
        if let Some(filter) = t.filter {
            return apply_filtered(schema, c, kind, t, filter, value, &label);
        }
        match (t.sub, kind) {
            (Some(sub), OpKind::Remove) => {
                let mut items = take_items(c, def.name);
                for el in &mut items {
                    if let Value::Object(o) = el {
                        o.remove(sub.name);
                    }
                }
                store_items(c, def, items);
            }
            (Some(sub), _) => {
                let v = match value {
                    Some(v) => coerce(sub, v, &label)?,
                    None => None,
                };
                let mut items = take_items(c, def.name);
                match v {
                    None => {
                        for el in &mut items {
                            if let Value::Object(o) = el {
                                o.remove(sub.name);
                            }
                        }
                    }
                    Some(v) => {
                        if items.is_empty() {
                            items.push(Value::Object(Map::new()));
                        }
                        for el in &mut items {
                            if let Value::Object(o) = el {
                                o.insert(sub.name.to_owned(), v.clone());
                            }
                        }
                        keep_one_primary(&mut items, None);
                    }
                }
                store_items(c, def, items);
            }
            (None, OpKind::Remove) => match value.filter(|v| !v.is_null()) {
                Some(v) if def.multi_valued => {
                    let Some(Value::Array(gone)) = coerce(def, v, &label)? else {
                        return Ok(());
                    };
                    let gone: HashSet<String> = gone.iter().map(member_key).collect();
                    let mut items = take_items(c, def.name);
                    items.retain(|el| !gone.contains(&member_key(el)));
                    store_items(c, def, items);
                }
                _ => {
                    c.remove(def.name);
                }
            },
            (None, OpKind::Add | OpKind::Replace) => {
                let v = match value {
                    Some(v) => coerce(def, v, &label)?,
                    None => None,
                };
                let Some(v) = v else {
                    // Replacing with null clears; adding null changes nothing.
                    if kind == OpKind::Replace {
                        c.remove(def.name);
                    }
                    return Ok(());
                };
                match (def.multi_valued, def.kind, v) {
                    (true, _, Value::Array(new)) if kind == OpKind::Add => {
                        let mut items = take_items(c, def.name);
                        let mut index: HashMap<String, usize> = items
                            .iter()
                            .enumerate()
                            .map(|(i, el)| (member_key(el), i))
                            .collect();
                        let mut prefer = None;
                        for n in new {
                            let is_primary =
                                n.get("primary").and_then(Value::as_bool) == Some(true);
                            let key = member_key(&n);
                            let idx = match index.get(&key) {
                                Some(&i) => {
                                    merge_into(&mut items[i], n);
                                    i
                                }
                                None => {
                                    items.push(n);
                                    index.insert(key, items.len() - 1);
                                    items.len() - 1
                                }
                            };
                            if is_primary {
                                prefer = Some(idx);
                            }
                        }
                        keep_one_primary(&mut items, prefer);
                        store_items(c, def, items);
                    }
                    (false, AttrKind::Complex, Value::Object(new)) => {
                        // RFC 7644 §3.5.2.3: sub-attributes not given are left unchanged.
                        match c.get_mut(def.name) {
                            Some(Value::Object(existing)) => existing.extend(new),
                            _ => {
                                c.insert(def.name.to_owned(), Value::Object(new));
                            }
                        }
                    }
                    (_, _, v) => {
                        c.insert(def.name.to_owned(), v);
                    }
                }
            }
        }
        Ok(())
    })
}

fn merge_into(target: &mut Value, new: Value) {
    match (target, new) {
        (Value::Object(t), Value::Object(n)) => t.extend(n),
        (t, n) => *t = n,
    }
}

fn element_matches(schema: &ResourceSchema, t: &Target<'_>, filter: &Filter, el: &Value) -> bool {
    let mut wrapper = Map::new();
    wrapper.insert(t.def.name.to_owned(), Value::Array(vec![el.clone()]));
    let (resource, urn) = if t.section == Section::Enterprise {
        let mut outer = Map::new();
        outer.insert(ENTERPRISE_SCHEMA.to_owned(), Value::Object(wrapper));
        (Value::Object(outer), Some(ENTERPRISE_SCHEMA.to_owned()))
    } else {
        (Value::Object(wrapper), None)
    };
    let vp = Filter::ValuePath {
        attr: AttrPath {
            urn,
            name: t.def.name.to_owned(),
            sub_attr: None,
        },
        filter: Box::new(filter.clone()),
    };
    matches(&vp, &resource, schema)
}

/// The element a filter like `type eq "work" and primary eq true` describes, if it only uses
/// `eq` joined by `and` on sub-attributes.
fn element_from_filter(filter: &Filter, def: &AttrDef, out: &mut Map<String, Value>) -> bool {
    match filter {
        Filter::And(a, b) => element_from_filter(a, def, out) && element_from_filter(b, def, out),
        Filter::Compare {
            path,
            op: CompareOp::Eq,
            value,
        } if path.sub_attr.is_none() => {
            let Some(sub) = def.sub(&path.name) else {
                return false;
            };
            let v = match value {
                CompValue::Str(s) => Value::String(s.clone()),
                CompValue::Num(n) => Value::Number(n.clone()),
                CompValue::Bool(b) => Value::Bool(*b),
                CompValue::Null => return false,
            };
            out.insert(sub.name.to_owned(), v);
            true
        }
        _ => false,
    }
}

fn apply_filtered(
    schema: &ResourceSchema,
    c: &mut Map<String, Value>,
    kind: OpKind,
    t: &Target<'_>,
    filter: &Filter,
    value: Option<&Value>,
    label: &str,
) -> Result<(), ScimError> {
    let def = t.def;
    let mut items = take_items(c, def.name);
    let matched: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, el)| element_matches(schema, t, filter, el))
        .map(|(i, _)| i)
        .collect();
    if kind == OpKind::Remove {
        if matched.is_empty() {
            return Err(ScimError::bad_request(
                ScimType::NoTarget,
                format!("No value of {label} matches the filter"),
            ));
        }
        match t.sub {
            Some(sub) => {
                for &i in &matched {
                    if let Value::Object(o) = &mut items[i] {
                        o.remove(sub.name);
                    }
                }
            }
            None => {
                let mut i = 0;
                items.retain(|_| {
                    let keep = !matched.contains(&i);
                    i += 1;
                    keep
                });
            }
        }
        store_items(c, def, items);
        return Ok(());
    }
    let value = value.unwrap_or(&Value::Null);
    // The part to write into each matched element.
    let part: Option<Map<String, Value>> = match t.sub {
        Some(sub) => coerce(sub, value, label)?.map(|v| {
            let mut m = Map::new();
            m.insert(sub.name.to_owned(), v);
            m
        }),
        None => match coerce(def, value, label)? {
            Some(Value::Array(mut a)) if a.len() == 1 => match a.pop() {
                Some(Value::Object(o)) => Some(o),
                _ => None,
            },
            Some(Value::Object(o)) => Some(o),
            None => None,
            Some(_) => {
                return Err(ScimError::invalid_value(format!(
                    "{label}: a filtered target takes one value"
                )))
            }
        },
    };
    let Some(part) = part else {
        // Writing null to a filtered target removes what it names.
        for &i in matched.iter().rev() {
            match t.sub {
                Some(sub) => {
                    if let Value::Object(o) = &mut items[i] {
                        o.remove(sub.name);
                    }
                }
                None => {
                    items.remove(i);
                }
            }
        }
        store_items(c, def, items);
        return Ok(());
    };
    let sets_primary = part.get("primary").and_then(Value::as_bool) == Some(true);
    let mut prefer = None;
    if matched.is_empty() {
        // Entra expects the element to be created (e.g. `emails[type eq "work"].value`).
        let mut el = Map::new();
        if !element_from_filter(filter, def, &mut el) {
            return Err(ScimError::bad_request(
                ScimType::NoTarget,
                format!("No value of {label} matches the filter"),
            ));
        }
        el.extend(part);
        let mut made = match coerce(def, &Value::Object(el), label)? {
            Some(Value::Array(a)) => a,
            Some(v) => vec![v],
            None => {
                store_items(c, def, items);
                return Ok(());
            }
        };
        if !def.multi_valued {
            items.clear();
        }
        items.append(&mut made);
        prefer = Some(items.len() - 1);
    } else {
        for &i in &matched {
            merge_into(&mut items[i], Value::Object(part.clone()));
            if sets_primary {
                prefer = Some(i);
            }
        }
    }
    keep_one_primary(&mut items, prefer);
    store_items(c, def, items);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::{Capabilities, USER_SCHEMA};
    use serde_json::json;

    fn schema() -> ResourceSchema {
        ResourceSchema::new(&Capabilities::default())
    }

    fn base() -> Map<String, Value> {
        let v = json!({
            "schemas": [USER_SCHEMA],
            "id": "1",
            "userName": "bjensen",
            "name": {"givenName": "Barbara", "familyName": "Jensen"},
            "active": true,
            "emails": [
                {"value": "bjensen@example.com", "type": "work", "primary": true},
                {"value": "babs@jensen.org", "type": "home"}
            ],
            "meta": {"version": "1"}
        });
        v.as_object().cloned().unwrap()
    }

    fn patch(ops: Value) -> Result<Map<String, Value>, ScimError> {
        let body = json!({"schemas": [PATCH_OP_SCHEMA], "Operations": ops});
        let ops = parse_patch_request(&body)?;
        apply_patch(&schema(), &base(), &ops)
    }

    fn ok(ops: Value) -> Value {
        Value::Object(patch(ops).unwrap_or_else(|e| panic!("{e:?}")))
    }

    fn err(ops: Value) -> ScimType {
        patch(ops).unwrap_err().scim_type.unwrap()
    }

    #[test]
    fn values_taken_out_for_an_operation_are_put_back_in_place() {
        // Each operation takes the attribute's values out of the working copy; every path
        // must put them back where they were, changed or not.
        let keys = |r: &Value| -> Vec<String> { r.as_object().unwrap().keys().cloned().collect() };
        let before = keys(&Value::Object(base()));
        for ops in [
            json!([{"op": "add", "path": "emails", "value": [{"value": "x@example.org"}]}]),
            json!([{"op": "replace", "path": "emails.type", "value": "other"}]),
            json!([{"op": "remove", "path": "emails", "value": [{"value": "nobody@example.org"}]}]),
            json!([{"op": "replace", "path": "emails[type eq \"home\"].display", "value": "H"}]),
            // A filtered target whose value normalises to nothing.
            json!([{"op": "add", "path": "emails[type eq \"other\"]", "value": {"display": null}}]),
        ] {
            let r = ok(ops.clone());
            assert_eq!(keys(&r), before, "{ops}");
            assert!(
                r["emails"].as_array().is_some_and(|a| a.len() >= 2),
                "{ops}: {r}"
            );
        }
    }

    #[test]
    fn rfc_add_without_path_merges() {
        // RFC 7644 §3.5.2.1 example: add emails and nickname.
        let r = ok(json!([{"op": "add", "value": {
            "emails": [{"value": "babs@example.com", "type": "other"}], "nickname": "Babs"}}]));
        assert_eq!(r["emails"].as_array().unwrap().len(), 3);
        assert_eq!(r["nickName"], "Babs");
        assert_eq!(r["name"]["givenName"], "Barbara");
    }

    #[test]
    fn rfc_add_with_path_appends_to_multi_valued() {
        let r = ok(json!([{"op": "add", "path": "emails",
            "value": [{"value": "new@x.org", "type": "other", "primary": true}]}]));
        let emails = r["emails"].as_array().unwrap();
        assert_eq!(emails.len(), 3);
        assert_eq!(emails[2]["primary"], true);
        assert_eq!(emails[0]["primary"], false, "primary stays unique");
    }

    /// Issue 11 §1: the number of operations is bounded before any is parsed or applied.
    #[test]
    fn too_many_operations_are_refused() {
        let op = json!({"op": "replace", "path": "active", "value": true});
        let body =
            |n: usize| json!({"schemas": [PATCH_OP_SCHEMA], "Operations": vec![op.clone(); n]});
        assert_eq!(
            parse_patch_request(&body(MAX_OPERATIONS)).map(|o| o.len()),
            Ok(MAX_OPERATIONS)
        );
        let err = parse_patch_request(&body(MAX_OPERATIONS + 1)).unwrap_err();
        assert_eq!(err.body()["scimType"], "tooMany");
    }

    #[test]
    fn add_of_existing_value_changes_nothing() {
        let r = ok(json!([{"op": "add", "path": "emails",
            "value": [{"value": "babs@jensen.org", "type": "home"}]}]));
        assert_eq!(r["emails"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn rfc_replace_sub_attribute_and_complex() {
        let r = ok(json!([{"op": "replace", "path": "name.familyName", "value": "Doe"}]));
        assert_eq!(
            r["name"],
            json!({"givenName": "Barbara", "familyName": "Doe"})
        );
        let r = ok(json!([{"op": "replace", "path": "name", "value": {"givenName": "Babs"}}]));
        assert_eq!(
            r["name"],
            json!({"givenName": "Babs", "familyName": "Jensen"})
        );
    }

    #[test]
    fn rfc_replace_multi_valued_replaces_all() {
        let r =
            ok(json!([{"op": "replace", "path": "emails", "value": [{"value": "only@x.org"}]}]));
        assert_eq!(r["emails"], json!([{"value": "only@x.org"}]));
    }

    #[test]
    fn rfc_replace_with_value_filter_and_sub_attr() {
        let r = ok(
            json!([{"op": "replace", "path": "emails[type eq \"work\"].value",
            "value": "b@work.example"}]),
        );
        assert_eq!(r["emails"][0]["value"], "b@work.example");
        assert_eq!(r["emails"][1]["value"], "babs@jensen.org");
    }

    #[test]
    fn rfc_remove_variants() {
        let r = ok(json!([{"op": "remove", "path": "emails[type eq \"work\"]"}]));
        assert_eq!(r["emails"].as_array().unwrap().len(), 1);
        let r = ok(json!([{"op": "remove", "path": "emails"}]));
        assert!(r.get("emails").is_none());
        let r = ok(json!([{"op": "remove", "path": "name.givenName"}]));
        assert_eq!(r["name"], json!({"familyName": "Jensen"}));
        let r = ok(json!([{"op": "remove", "path": "emails[type eq \"home\"].type"}]));
        assert_eq!(r["emails"][1], json!({"value": "babs@jensen.org"}));
    }

    #[test]
    fn remove_with_value_list_removes_only_those() {
        let r = ok(json!([{"op": "Remove", "path": "emails",
            "value": [{"value": "babs@jensen.org"}]}]));
        let emails = r["emails"].as_array().unwrap();
        assert_eq!(emails.len(), 1);
        assert_eq!(emails[0]["value"], "bjensen@example.com");
    }

    #[test]
    fn entra_capitalised_ops_and_string_booleans() {
        let r = ok(json!([
            {"op": "Replace", "path": "active", "value": "False"},
            {"op": "Add", "path": "displayName", "value": "Babs J"},
        ]));
        assert_eq!(r["active"], false);
        assert_eq!(r["displayName"], "Babs J");
        let r = ok(json!([{"op": "Add", "path": "active", "value": "True"}]));
        assert_eq!(r["active"], true);
    }

    #[test]
    fn entra_pathless_replace_with_dotted_and_urn_keys() {
        let r = ok(json!([{"op": "replace", "value": {
            "name.givenName": "A",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber": "7",
            "id": "ignored"}}]));
        assert_eq!(r["name"]["givenName"], "A");
        assert_eq!(r["name"]["familyName"], "Jensen");
        assert_eq!(r[ENTERPRISE_SCHEMA]["employeeNumber"], "7");
        assert_eq!(r["id"], "1");
        assert!(r["schemas"]
            .as_array()
            .unwrap()
            .contains(&json!(ENTERPRISE_SCHEMA)));
    }

    #[test]
    fn entra_filtered_target_that_matches_nothing_is_created() {
        let r = ok(json!([
            {"op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "+1 555"},
            {"op": "Replace", "path": "addresses[type eq \"work\"].postalCode", "value": "1234"},
        ]));
        assert_eq!(
            r["phoneNumbers"],
            json!([{"type": "mobile", "value": "+1 555"}])
        );
        assert_eq!(
            r["addresses"],
            json!([{"type": "work", "postalCode": "1234"}])
        );
        let r = ok(
            json!([{"op": "replace", "path": "emails[primary eq true].value", "value": "p@x.org"}]),
        );
        assert_eq!(r["emails"][0]["value"], "p@x.org");
    }

    #[test]
    fn entra_manager_as_array_and_bare_id() {
        let r = ok(json!([{"op": "Add",
            "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
            "value": [{"value": "m1", "$ref": null}]}]));
        assert_eq!(r[ENTERPRISE_SCHEMA]["manager"], json!({"value": "m1"}));
        let r = ok(json!([{"op": "replace",
            "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager",
            "value": "m2"}]));
        assert_eq!(r[ENTERPRISE_SCHEMA]["manager"], json!({"value": "m2"}));
    }

    #[test]
    fn extension_urn_as_path_targets_the_whole_extension() {
        let r = ok(json!([{"op": "add", "path": ENTERPRISE_SCHEMA,
            "value": {"department": "R&D", "employeeNumber": "9"}}]));
        assert_eq!(
            r[ENTERPRISE_SCHEMA],
            json!({"department": "R&D", "employeeNumber": "9"})
        );
        let body = json!({"Operations": [{"op": "remove", "path": ENTERPRISE_SCHEMA}]});
        let ops = parse_patch_request(&body).unwrap();
        let r = apply_patch(&schema(), r.as_object().unwrap(), &ops).unwrap();
        assert!(r.get(ENTERPRISE_SCHEMA).is_none());
        assert_eq!(r["schemas"], json!([USER_SCHEMA]));
    }

    #[test]
    fn attributes_the_backend_does_not_store_are_ignored() {
        let caps = Capabilities {
            attributes: Some(vec!["name".into(), "emails".into(), "active".into()]),
            ..Capabilities::default()
        };
        let narrow = ResourceSchema::new(&caps);
        let body = json!({"Operations": [
            {"op": "Add", "path": "phoneNumbers[type eq \"mobile\"].value", "value": "1"},
            {"op": "replace", "path": "title", "value": "x"},
            {"op": "replace", "value": {"nickName": "n", "active": false}}]});
        let ops = parse_patch_request(&body).unwrap();
        let r = apply_patch(&narrow, &base(), &ops).unwrap();
        assert!(
            r.get("phoneNumbers").is_none()
                && r.get("title").is_none()
                && r.get("nickName").is_none()
        );
        assert_eq!(r["active"], false);
        let bad = json!({"Operations": [{"op": "replace", "path": "nonsense", "value": "x"}]});
        let ops = parse_patch_request(&bad).unwrap();
        assert!(apply_patch(&narrow, &base(), &ops).is_err());
    }

    #[test]
    fn okta_pathless_deactivate() {
        let r = ok(json!([{"op": "replace", "value": {"active": false}}]));
        assert_eq!(r["active"], false);
    }

    #[test]
    fn errors_have_the_right_scim_type() {
        assert_eq!(
            err(json!([{"op": "replace", "path": "id", "value": "x"}])),
            ScimType::Mutability
        );
        assert_eq!(
            err(json!([{"op": "replace", "path": "meta.version", "value": "x"}])),
            ScimType::Mutability
        );
        assert_eq!(
            err(json!([{"op": "replace", "path": "nope", "value": "x"}])),
            ScimType::InvalidPath
        );
        assert_eq!(
            err(json!([{"op": "replace", "path": "name.nope", "value": "x"}])),
            ScimType::InvalidPath
        );
        assert_eq!(err(json!([{"op": "remove"}])), ScimType::NoTarget);
        assert_eq!(
            err(json!([{"op": "remove", "path": "emails[type eq \"fax\"]"}])),
            ScimType::NoTarget
        );
        assert_eq!(
            err(json!([{"op": "replace", "path": "emails[value co \"zzz\"].type", "value": "w"}])),
            ScimType::NoTarget
        );
        assert_eq!(
            err(json!([{"op": "replace", "path": "active", "value": "yes"}])),
            ScimType::InvalidValue
        );
        assert_eq!(
            err(json!([{"op": "move", "path": "active", "value": true}])),
            ScimType::InvalidSyntax
        );
        assert_eq!(err(json!([])), ScimType::InvalidSyntax);
        assert_eq!(
            err(json!([{"op": "add", "path": "active"}])),
            ScimType::InvalidValue
        );
    }

    #[test]
    fn a_failing_operation_leaves_nothing_applied() {
        let before = base();
        let body = json!({"Operations": [
            {"op": "replace", "path": "displayName", "value": "changed"},
            {"op": "replace", "path": "id", "value": "x"}]});
        let ops = parse_patch_request(&body).unwrap();
        assert!(apply_patch(&schema(), &before, &ops).is_err());
        assert_eq!(before, base());
    }
}
