//! Attribute projection (RFC 7644 §3.9): which attributes a response carries.

use serde_json::{Map, Value};

use crate::directory::query::{AttrKind, AttrPath};
use crate::directory::schema::{AttrDef, ResourceSchema, Returned, Section};
use crate::directory::ENTERPRISE_SCHEMA;

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
    /// attributes and anything the schema does not define. Takes the resource by value: the
    /// values kept are moved, not copied (a group may carry 20,000 members).
    pub fn apply(
        &self,
        schema: &ResourceSchema,
        resource: Map<String, Value>,
    ) -> Map<String, Value> {
        let core = schema.kind.core_urn();
        let mut out = Map::new();
        for (key, value) in resource {
            if key == "schemas" {
                out.insert(key, value);
                continue;
            }
            if key == ENTERPRISE_SCHEMA {
                let Value::Object(ext) = value else {
                    continue;
                };
                let mut kept = Map::new();
                for (k, v) in ext {
                    if let Some((Section::Enterprise, def)) =
                        schema.attr(Some(ENTERPRISE_SCHEMA), &k)
                    {
                        if let Some(v) = self.project_attr(def, Some(ENTERPRISE_SCHEMA), v, core) {
                            kept.insert(k, v);
                        }
                    }
                }
                if !kept.is_empty() {
                    out.insert(key, Value::Object(kept));
                }
                continue;
            }
            let Some((section, def)) = schema.attr(None, &key) else {
                continue;
            };
            if section == Section::Enterprise {
                continue;
            }
            if let Some(v) = self.project_attr(def, None, value, core) {
                out.insert(key, v);
            }
        }
        out
    }

    /// Whether a response would carry the core attribute `name` when the resource has it:
    /// lets the engine skip reading what is projected away (a group's `members`, a user's
    /// `groups`).
    pub fn includes(&self, schema: &ResourceSchema, name: &str) -> bool {
        let Some((section, def)) = schema.attr(None, name) else {
            return false;
        };
        // `Null` stands for any value: it survives sub-attribute selection, so the answer
        // depends only on whether the attribute itself is kept.
        section != Section::Enterprise
            && self
                .project_attr(def, None, Value::Null, schema.kind.core_urn())
                .is_some()
    }

    /// Whether `attributes` names the core attribute `name` (or one of its sub-attributes).
    pub fn asks_for(&self, name: &str) -> bool {
        self.attributes
            .iter()
            .any(|p| p.name.eq_ignore_ascii_case(name))
    }

    fn project_attr(
        &self,
        def: &AttrDef,
        urn: Option<&str>,
        value: Value,
        core: &str,
    ) -> Option<Value> {
        match def.returned {
            Returned::Never => return None,
            Returned::Always => return Some(value),
            _ => {}
        }
        let names = |p: &AttrPath| {
            p.name.eq_ignore_ascii_case(def.name)
                && match (&p.urn, urn) {
                    (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
                    (Some(a), None) => a.eq_ignore_ascii_case(core),
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
                return whole_schema.then_some(value);
            }
            if wanted.iter().any(|p| p.sub_attr.is_none()) || def.kind != AttrKind::Complex {
                return Some(value);
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
            return Some(value);
        }
        let subs: Vec<&str> = excluded
            .iter()
            .filter_map(|p| p.sub_attr.as_deref())
            .collect();
        keep_subs(value, |k| !subs.iter().any(|s| s.eq_ignore_ascii_case(k)))
    }
}

fn keep_subs(value: Value, keep: impl Fn(&str) -> bool) -> Option<Value> {
    let filter_obj = |o: Map<String, Value>| -> Map<String, Value> {
        o.into_iter().filter(|(k, _)| keep(k)).collect()
    };
    match value {
        Value::Object(o) => {
            let m = filter_obj(o);
            (!m.is_empty()).then_some(Value::Object(m))
        }
        Value::Array(items) => {
            let kept: Vec<Value> = items
                .into_iter()
                .filter_map(|i| match i {
                    Value::Object(o) => Some(filter_obj(o)),
                    _ => None,
                })
                .filter(|m| !m.is_empty())
                .map(Value::Object)
                .collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        other => Some(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::Capabilities;
    use crate::scim::filter::parse_attr_path;
    use serde_json::json;

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
        let all = Value::Object(p(&[], &[]).apply(&schema, user.clone()));
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
            .apply(&schema, user.clone()),
        );
        assert_eq!(
            some,
            json!({"schemas": ["s"], "id": "1", "emails": [{"value": "a@x"}], ENTERPRISE_SCHEMA: {"department": "d"}})
        );
        let ext = Value::Object(p(&[ENTERPRISE_SCHEMA], &[]).apply(&schema, user.clone()));
        assert_eq!(ext[ENTERPRISE_SCHEMA]["costCenter"], "c");
        assert!(ext.get("userName").is_none());
        let excl = Value::Object(
            p(&[], &["name.givenName", "id", "department"]).apply(&schema, user.clone()),
        );
        assert_eq!(excl["name"], json!({"familyName": "f"}));
        assert_eq!(excl["id"], "1", "returned: always cannot be excluded");
        assert!(excl[ENTERPRISE_SCHEMA].get("department").is_none());
    }
}
