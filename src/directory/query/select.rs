//! Answering a [`ListQuery`] over canonical JSON: filter, stable sort, page.

use std::cmp::Ordering;

use serde_json::Value;

use super::{matches, AttrPath, AttrTypes, ListQuery, Page};
use crate::directory::json::get_ci;
use crate::directory::schema::ResourceSchema;
use crate::directory::{Group, GroupPage, User, ENTERPRISE_SCHEMA};

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
    let (total, page) = select_refs(query, ResourceSchema::full(), candidates);
    let resources = page
        .into_iter()
        .map(|v| User::from_json(v.as_object().cloned().unwrap_or_default()))
        .collect();
    Page { total, resources }
}

/// Filters, sorts and pages groups held as JSON objects with the Group schema's comparison
/// rules, copying only the returned page (see [`ListQuery::select_group_json`]).
pub fn select_group_json<'a>(
    query: &ListQuery,
    candidates: impl IntoIterator<Item = &'a Value>,
) -> GroupPage {
    let (total, page) = select_refs(query, ResourceSchema::group(), candidates);
    let resources = page
        .into_iter()
        .map(|v| Group::from_json(v.as_object().cloned().unwrap_or_default()))
        .collect();
    GroupPage { total, resources }
}

/// The number of `candidates` matching the filter, and the requested page of them in order,
/// compared by `schema`'s rules.
fn select_refs<'a>(
    query: &ListQuery,
    schema: &ResourceSchema,
    candidates: impl IntoIterator<Item = &'a Value>,
) -> (usize, Vec<&'a Value>) {
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
    let page = matching.into_iter().skip(skip).take(query.count).collect();
    (total, page)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::query::{CompValue, CompareOp, Filter, SortKey};
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

    fn title_present() -> Filter {
        Filter::Present(AttrPath::new("title", None))
    }

    fn not_bob() -> Filter {
        Filter::Compare {
            path: AttrPath::new("userName", None),
            op: CompareOp::Ne,
            value: CompValue::Str("bob".into()),
        }
    }

    #[test]
    fn chunks_select_like_the_whole() {
        let cases = [
            (None, None, 1, 10),
            (None, Some(("userName", false)), 2, 2),
            (Some(title_present()), Some(("title", true)), 1, 2),
            (Some(not_bob()), None, 2, 1),
            (None, Some(("emails", false)), 1, 0),
            (None, None, 9, 3),
        ];
        for (filter, sort, start, count) in cases {
            let q = query(filter.clone(), sort, start, count);
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
        filter: Option<Filter>,
        sort: Option<(&str, bool)>,
        start: usize,
        count: usize,
    ) -> ListQuery {
        ListQuery {
            filter,
            sort: sort.map(|(p, descending)| SortKey {
                path: AttrPath::new(p, None),
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
    fn groups_select_with_the_group_schema() {
        let groups: Vec<Value> = [
            json!({"id": "g2", "displayName": "teachers", "members": [{"value": "u1"}]}),
            json!({"id": "g1", "displayName": "Staff", "members": [{"value": "U2"}]}),
            json!({"id": "g3", "displayName": "Alumni"}),
        ]
        .into();
        let member = |id: &str| Filter::ValuePath {
            attr: AttrPath::new("members", None),
            filter: Box::new(Filter::Compare {
                path: AttrPath::new("value", None),
                op: CompareOp::Eq,
                value: CompValue::Str(id.into()),
            }),
        };
        let names = |page: &GroupPage| -> Vec<String> {
            page.resources
                .iter()
                .filter_map(|g| g.display_name().map(str::to_owned))
                .collect()
        };
        // Member ids are case-exact in the Group schema (unknown attributes would not be).
        let page = query(Some(member("u2")), None, 1, 10).select_group_json(groups.iter());
        assert_eq!(page.total, 0);
        let page = query(Some(member("U2")), None, 1, 10).select_group_json(groups.iter());
        assert_eq!(names(&page), ["Staff"]);
        let page = query(None, Some(("displayName", false)), 1, 2).select_group_json(groups.iter());
        assert_eq!(
            (page.total, names(&page)),
            (3, vec!["Alumni".into(), "Staff".into()])
        );
        let owned: Vec<Group> = groups
            .iter()
            .map(|g| Group::from_json(g.as_object().cloned().unwrap()))
            .collect();
        assert_eq!(
            query(None, None, 2, 1).select_groups(owned).resources[0].id(),
            Some("g2")
        );
    }

    #[test]
    fn filters_select_before_paging() {
        let page = query(Some(title_present()), Some(("userName", false)), 1, 1).select(users());
        assert_eq!(page.total, 3);
        assert_eq!(ids(&page), ["1"]);
    }
}
