//! List requests: filtering, stable sorting, paging and attribute projection.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::filter::matches;
use super::filter::{AttrKind, AttrPath, AttrTypes};
use super::schema::{ResourceSchema, Returned, Section};
use crate::directory::json::get_ci;
use crate::directory::{Capabilities, ListQuery, Page, User, ENTERPRISE_SCHEMA};

/// The full User schema, built once (filter comparison rules do not depend on capabilities).
pub(crate) fn full_schema() -> &'static ResourceSchema {
    static SCHEMA: std::sync::OnceLock<ResourceSchema> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| ResourceSchema::new(&Capabilities::default()))
}

/// Filters, sorts and pages `candidates` (see [`ListQuery::select`]).
pub fn select(query: &ListQuery, candidates: Vec<User>) -> Page {
    let values: Vec<Value> = candidates
        .into_iter()
        .map(|u| Value::Object(u.into_json()))
        .collect();
    select_json(query, values.iter())
}

/// Filters, sorts and pages users that arrive in chunks (see [`ListQuery::select_chunks`]).
pub fn select_chunks(query: &ListQuery, chunks: impl IntoIterator<Item = Vec<User>>) -> Page {
    // Only the first `wanted` matches in the final order can be on the page; a chunk's other
    // matches are counted and dropped. The kept ones are trimmed once they double, so the
    // work stays linear in the number of candidates.
    let wanted = (query.start_index.max(1) - 1).saturating_add(query.count);
    let per_chunk = ListQuery {
        start_index: 1,
        count: wanted,
        ..query.clone()
    };
    let trim = ListQuery {
        filter: None,
        ..per_chunk.clone()
    };
    let mut total = 0;
    let mut best: Vec<User> = Vec::new();
    for chunk in chunks {
        let page = select(&per_chunk, chunk);
        total += page.total;
        best.extend(page.resources);
        if best.len() > wanted.saturating_mul(2) {
            best = select(&trim, best).resources;
        }
    }
    let last = ListQuery {
        filter: None,
        ..query.clone()
    };
    Page {
        total,
        resources: select(&last, best).resources,
    }
}

/// Filters, sorts and pages users held as JSON objects, copying only the returned page
/// (see [`ListQuery::select_json`]).
pub fn select_json<'a>(query: &ListQuery, candidates: impl IntoIterator<Item = &'a Value>) -> Page {
    let schema = full_schema();
    let mut matching: Vec<&Value> = candidates
        .into_iter()
        .filter(|json| {
            query
                .filter
                .as_ref()
                .is_none_or(|f| matches(f, json, schema as &dyn AttrTypes))
        })
        .collect();
    let by_id = |a: &&Value, b: &&Value| {
        a.get("id")
            .and_then(Value::as_str)
            .cmp(&b.get("id").and_then(Value::as_str))
    };
    match &query.sort {
        Some(key) => {
            let info = schema.lookup(None, &key.path);
            let case_exact = info.is_some_and(|i| i.case_exact);
            matching.sort_by(|a, b| {
                let (va, vb) = (sort_value(a, &key.path), sort_value(b, &key.path));
                // Resources without a value sort last in either order (RFC 7644 §3.4.2.3).
                let ord = match (va, vb) {
                    (None, None) => Ordering::Equal,
                    (None, Some(_)) => return Ordering::Greater,
                    (Some(_), None) => return Ordering::Less,
                    (Some(x), Some(y)) => {
                        let o = compare_values(x, y, case_exact);
                        if key.descending {
                            o.reverse()
                        } else {
                            o
                        }
                    }
                };
                ord.then_with(|| by_id(a, b))
            });
        }
        None => matching.sort_by(by_id),
    }
    let total = matching.len();
    let skip = query.start_index.max(1) - 1;
    let resources = matching
        .into_iter()
        .skip(skip)
        .take(query.count)
        .map(|v| User::from_json(v.as_object().cloned().unwrap_or_default()))
        .collect();
    Page { total, resources }
}

/// The value a resource sorts by: the attribute itself, or for a multi-valued attribute the
/// `value` of its primary (else first) element.
fn sort_value<'a>(resource: &'a Value, path: &AttrPath) -> Option<&'a Value> {
    let v = lookup_path(resource, path)?;
    match v {
        Value::Array(items) => {
            let el = items
                .iter()
                .find(|e| e.get("primary").and_then(Value::as_bool) == Some(true))
                .or_else(|| items.first())?;
            match el {
                Value::Object(o) => o.get("value"),
                other => Some(other),
            }
        }
        Value::Null => None,
        other => Some(other),
    }
}

fn compare_values(a: &Value, b: &Value, case_exact: bool) -> Ordering {
    match (a, b) {
        (Value::String(x), Value::String(y)) if case_exact => x.cmp(y),
        (Value::String(x), Value::String(y)) => x.to_lowercase().cmp(&y.to_lowercase()),
        (Value::Number(x), Value::Number(y)) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        _ => a.to_string().cmp(&b.to_string()),
    }
}

/// Finds the value at `path` in canonical JSON (keys matched case-insensitively).
pub fn lookup_path<'a>(resource: &'a Value, path: &AttrPath) -> Option<&'a Value> {
    let obj = resource.as_object()?;
    let container = match &path.urn {
        Some(u) if u.eq_ignore_ascii_case(ENTERPRISE_SCHEMA) => {
            get_ci(obj, ENTERPRISE_SCHEMA)?.as_object()?
        }
        _ => obj,
    };
    let top = get_ci(container, &path.name).or_else(|| {
        // Unqualified extension attribute.
        if path.urn.is_none() {
            get_ci(obj.get(ENTERPRISE_SCHEMA)?.as_object()?, &path.name)
        } else {
            None
        }
    })?;
    match &path.sub_attr {
        None => Some(top),
        Some(sub) => get_ci(top.as_object()?, sub),
    }
}

/// Which attributes a response carries (RFC 7644 §3.9).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Projection {
    /// `attributes`: only these (plus `returned: always`).
    pub attributes: Vec<AttrPath>,
    /// `excludedAttributes`: all `returned: default` ones except these.
    pub excluded: Vec<AttrPath>,
}

impl Projection {
    /// Applies the projection to a canonical resource, also dropping `returned: never`
    /// attributes and anything the schema does not define.
    pub fn apply(
        &self,
        schema: &ResourceSchema,
        resource: &Map<String, Value>,
    ) -> Map<String, Value> {
        let mut out = Map::new();
        for (key, value) in resource {
            if key == "schemas" {
                out.insert(key.clone(), value.clone());
                continue;
            }
            if key == ENTERPRISE_SCHEMA {
                let Some(ext) = value.as_object() else {
                    continue;
                };
                let mut kept = Map::new();
                for (k, v) in ext {
                    if let Some((Section::Enterprise, def)) =
                        schema.attr(Some(ENTERPRISE_SCHEMA), k)
                    {
                        if let Some(v) = self.project_attr(def, Some(ENTERPRISE_SCHEMA), v) {
                            kept.insert(k.clone(), v);
                        }
                    }
                }
                if !kept.is_empty() {
                    out.insert(key.clone(), Value::Object(kept));
                }
                continue;
            }
            let Some((section, def)) = schema.attr(None, key) else {
                continue;
            };
            if section == Section::Enterprise {
                continue;
            }
            if let Some(v) = self.project_attr(def, None, value) {
                out.insert(key.clone(), v);
            }
        }
        out
    }

    fn project_attr(
        &self,
        def: &super::schema::AttrDef,
        urn: Option<&str>,
        value: &Value,
    ) -> Option<Value> {
        match def.returned {
            Returned::Never => return None,
            Returned::Always => return Some(value.clone()),
            _ => {}
        }
        let names = |p: &AttrPath| {
            p.name.eq_ignore_ascii_case(def.name)
                && match (&p.urn, urn) {
                    (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                    (Some(a), None) => a.eq_ignore_ascii_case(crate::directory::USER_SCHEMA),
                    (None, _) => true,
                }
        };
        if !self.attributes.is_empty() {
            let wanted: Vec<&AttrPath> = self.attributes.iter().filter(|p| names(p)).collect();
            if wanted.is_empty() {
                // `attributes=urn:…:enterprise:2.0:User` asks for the whole extension.
                let whole_schema = self.attributes.iter().any(|p| {
                    urn.is_some_and(|u| {
                        let full = format!("{}:{}", p.urn.as_deref().unwrap_or(""), p.name);
                        full.eq_ignore_ascii_case(u)
                    })
                });
                return whole_schema.then(|| value.clone());
            }
            if wanted.iter().any(|p| p.sub_attr.is_none()) || def.kind != AttrKind::Complex {
                return Some(value.clone());
            }
            let subs: Vec<&str> = wanted
                .iter()
                .filter_map(|p| p.sub_attr.as_deref())
                .collect();
            return keep_subs(value, |k| subs.iter().any(|s| s.eq_ignore_ascii_case(k)));
        }
        if def.returned == Returned::Request {
            return None;
        }
        let excluded: Vec<&AttrPath> = self.excluded.iter().filter(|p| names(p)).collect();
        if excluded.iter().any(|p| p.sub_attr.is_none()) {
            return None;
        }
        if excluded.is_empty() {
            return Some(value.clone());
        }
        let subs: Vec<&str> = excluded
            .iter()
            .filter_map(|p| p.sub_attr.as_deref())
            .collect();
        keep_subs(value, |k| !subs.iter().any(|s| s.eq_ignore_ascii_case(k)))
    }
}

fn keep_subs(value: &Value, keep: impl Fn(&str) -> bool) -> Option<Value> {
    let filter_obj = |o: &Map<String, Value>| -> Map<String, Value> {
        o.iter()
            .filter(|(k, _)| keep(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    };
    match value {
        Value::Object(o) => {
            let m = filter_obj(o);
            (!m.is_empty()).then_some(Value::Object(m))
        }
        Value::Array(items) => {
            let kept: Vec<Value> = items
                .iter()
                .filter_map(|i| i.as_object().map(filter_obj))
                .filter(|m| !m.is_empty())
                .map(Value::Object)
                .collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        other => Some(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::SortKey;
    use crate::scim::filter::{parse_attr_path, parse_filter, FilterLimits};
    use serde_json::json;

    fn users() -> Vec<User> {
        [
            json!({"id": "3", "userName": "carol", "emails": [{"value": "z@x", "primary": true}, {"value": "a@x"}]}),
            json!({"id": "1", "userName": "Alice", "title": "b", "emails": [{"value": "m@x"}]}),
            json!({"id": "2", "userName": "bob", "title": "a"}),
            json!({"id": "4", "userName": "dave", "title": "B"}),
        ]
        .into_iter()
        .map(|v| User::from_json(v.as_object().cloned().unwrap()))
        .collect()
    }

    #[test]
    fn chunks_select_like_the_whole() {
        let cases = [
            (None, None, 1, 10),
            (None, Some(("userName", false)), 2, 2),
            (Some("title pr"), Some(("title", true)), 1, 2),
            (Some("userName ne \"bob\""), None, 2, 1),
            (None, Some(("emails", false)), 1, 0),
            (None, None, 9, 3),
        ];
        for (filter, sort, start, count) in cases {
            let q = query(filter, sort, start, count);
            let whole = q.select(users());
            for size in [1, 2, 3] {
                let chunks: Vec<Vec<User>> = users().chunks(size).map(<[User]>::to_vec).collect();
                assert_eq!(
                    select_chunks(&q, chunks),
                    whole,
                    "{filter:?} {sort:?} {start} {count} in chunks of {size}"
                );
            }
        }
    }

    fn ids(page: &Page) -> Vec<&str> {
        page.resources.iter().filter_map(User::id).collect()
    }

    fn query(
        filter: Option<&str>,
        sort: Option<(&str, bool)>,
        start: usize,
        count: usize,
    ) -> ListQuery {
        ListQuery {
            filter: filter.map(|f| parse_filter(f, &FilterLimits::default()).unwrap()),
            sort: sort.map(|(p, descending)| SortKey {
                path: parse_attr_path(p).unwrap(),
                descending,
            }),
            start_index: start,
            count,
        }
    }

    #[test]
    fn unsorted_lists_are_ordered_by_id_and_paged() {
        let page = query(None, None, 2, 2).select(users());
        assert_eq!(page.total, 4);
        assert_eq!(ids(&page), ["2", "3"]);
        let page = query(None, None, 4, 10).select(users());
        assert_eq!(ids(&page), ["4"]);
        let page = query(None, None, 9, 10).select(users());
        assert!(page.resources.is_empty());
        assert_eq!(page.total, 4);
    }

    #[test]
    fn sorting_is_case_insensitive_with_missing_values_last() {
        let page = query(None, Some(("userName", false)), 1, 10).select(users());
        assert_eq!(ids(&page), ["1", "2", "3", "4"]);
        let page = query(None, Some(("title", false)), 1, 10).select(users());
        // "a" < "b" == "B" (tie broken by id), missing last.
        assert_eq!(ids(&page), ["2", "1", "4", "3"]);
        let page = query(None, Some(("title", true)), 1, 10).select(users());
        assert_eq!(ids(&page), ["1", "4", "2", "3"]);
        // Multi-valued: the primary value sorts.
        let page = query(None, Some(("emails", false)), 1, 10).select(users());
        assert_eq!(ids(&page), ["1", "3", "2", "4"]);
    }

    #[test]
    fn filters_select_before_paging() {
        let page = query(Some("title pr"), Some(("userName", false)), 1, 1).select(users());
        assert_eq!(page.total, 3);
        assert_eq!(ids(&page), ["1"]);
    }

    #[test]
    fn projection_rules() {
        let schema = ResourceSchema::new(&Capabilities::default());
        let user = json!({
            "schemas": ["s"], "id": "1", "userName": "u", "password": "secret",
            "name": {"givenName": "g", "familyName": "f"},
            "emails": [{"value": "a@x", "type": "work"}],
            "meta": {"version": "1"},
            ENTERPRISE_SCHEMA: {"department": "d", "costCenter": "c"}
        });
        let user = user.as_object().unwrap();
        let p = |attrs: &[&str], excl: &[&str]| Projection {
            attributes: attrs.iter().map(|a| parse_attr_path(a).unwrap()).collect(),
            excluded: excl.iter().map(|a| parse_attr_path(a).unwrap()).collect(),
        };
        let all = Value::Object(p(&[], &[]).apply(&schema, user));
        assert!(all.get("password").is_none(), "returned: never");
        assert_eq!(all["meta"]["version"], "1");
        let some = Value::Object(
            p(
                &[
                    "emails.value",
                    "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department",
                ],
                &[],
            )
            .apply(&schema, user),
        );
        assert_eq!(
            some,
            json!({"schemas": ["s"], "id": "1", "emails": [{"value": "a@x"}], ENTERPRISE_SCHEMA: {"department": "d"}})
        );
        let ext = Value::Object(p(&[ENTERPRISE_SCHEMA], &[]).apply(&schema, user));
        assert_eq!(ext[ENTERPRISE_SCHEMA]["costCenter"], "c");
        assert!(ext.get("userName").is_none());
        let excl =
            Value::Object(p(&[], &["name.givenName", "id", "department"]).apply(&schema, user));
        assert_eq!(excl["name"], json!({"familyName": "f"}));
        assert_eq!(excl["id"], "1", "returned: always cannot be excluded");
        assert!(excl[ENTERPRISE_SCHEMA].get("department").is_none());
    }
}
