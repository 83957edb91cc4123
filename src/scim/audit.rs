//! The provisioning audit trail: one structured line per SCIM write (POST, PUT, PATCH, DELETE
//! on `/Users` and `/Groups`), at target `audit`, so that an administrator can answer "who
//! deactivated this account, and when" from the proxy's logs.
//!
//! A line names the token by its configured name (never its value), the operation, the
//! resource type and SCIM id (for Chamilo, the SCIM id *is* the Chamilo user or class id),
//! the attribute names the request touched (never their values), the status and the outcome.
//! Requests that fail authentication are not writes and are not audited (the operation log
//! has them).

use serde_json::Value;

use super::filter::parse_attr_path;
use super::normalize::flatten_keys;

/// Most attribute names one line lists; the rest are counted (a 10,000-member PATCH).
const MAX_NAMES: usize = 32;

/// The resource type an operation writes, if it is a write.
pub(super) fn write_of(op: &str) -> Option<(&'static str, &'static str)> {
    Some(match op {
        "create" => ("User", "create"),
        "replace" => ("User", "replace"),
        "patch" => ("User", "patch"),
        "delete" => ("User", "delete"),
        "group_create" => ("Group", "create"),
        "group_replace" => ("Group", "replace"),
        "group_patch" => ("Group", "patch"),
        "group_delete" => ("Group", "delete"),
        _ => return None,
    })
}

/// The attribute names a POST or PUT body carries (`userName`, `name`,
/// `urn:…:enterprise:2.0:User:employeeNumber`), in the order sent.
pub(super) fn body_attributes(body: &Value) -> Vec<String> {
    let Some(obj) = body.as_object() else {
        return Vec::new();
    };
    let mut names = Names::default();
    for (path, _) in flatten_keys(obj, None) {
        names.push(path.to_string());
    }
    names.0
}

/// The attribute paths a PATCH touches, as `op:path` (`replace:active`); a value filter is
/// cut off (`members[value eq "42"]` → `members`) since it holds values. A path-less
/// operation names the attributes of its value object.
pub(super) fn patch_attributes(body: &Value) -> Vec<String> {
    let ops = body
        .as_object()
        .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case("Operations")))
        .and_then(|(_, v)| v.as_array());
    let mut names = Names::default();
    for op in ops.into_iter().flatten() {
        let Some(op) = op.as_object() else { continue };
        let field = |name: &str| {
            op.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v)
        };
        // Only known words and parsed paths reach the line: what a client sent verbatim
        // could hold a line break and forge a line in the text log format.
        let verb = match field("op")
            .and_then(Value::as_str)
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some(v @ ("add" | "remove" | "replace")) => v.to_owned(),
            _ => "?".to_owned(),
        };
        match field("path").and_then(Value::as_str) {
            Some(path) => {
                let attr = path.split('[').next().unwrap_or(path).trim();
                let attr = parse_attr_path(attr)
                    .map_or_else(|_| "(invalid path)".to_owned(), |p| p.to_string());
                names.push(format!("{verb}:{attr}"));
            }
            None => {
                let value = field("value").unwrap_or(&Value::Null);
                for name in body_attributes(value) {
                    names.push(format!("{verb}:{name}"));
                }
            }
        }
    }
    names.0
}

/// Distinct names, at most [`MAX_NAMES`], then a count of the rest.
#[derive(Default)]
struct Names(Vec<String>, usize);

impl Names {
    fn push(&mut self, name: String) {
        if self.0.contains(&name) {
            return;
        }
        if self.0.len() < MAX_NAMES {
            self.0.push(name);
            return;
        }
        self.1 += 1;
        let more = format!("+{} more", self.1);
        if let Some(last) = self.0.last_mut().filter(|l| l.starts_with('+')) {
            *last = more;
        } else {
            self.0.push(more);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_never_values() {
        let body = json!({"userName": "alice", "password": "S3cret!",
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"employeeNumber": "7"}});
        let names = body_attributes(&body);
        assert_eq!(
            names,
            [
                "userName",
                "password",
                "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber"
            ]
        );
        let patch = json!({"Operations": [
            {"op": "Replace", "path": "active", "value": "False"},
            {"op": "remove", "path": "members[value eq \"42\"]"},
            {"op": "replace", "value": {"password": "x", "name.givenName": "A"}}]});
        assert_eq!(
            patch_attributes(&patch),
            [
                "replace:active",
                "remove:members",
                "replace:password",
                "replace:name.givenName"
            ]
        );
    }

    #[test]
    fn client_text_that_is_not_a_name_stays_out() {
        let patch = json!({"Operations": [
            {"op": "replace\nforged", "path": "active"},
            {"op": "add", "path": "a\n{\"forged\": 1}"}]});
        assert_eq!(patch_attributes(&patch), ["?:active", "add:(invalid path)"]);
    }

    #[test]
    fn long_lists_are_cut_and_counted() {
        let ops: Vec<Value> = (0..100)
            .map(|i| json!({"op": "add", "path": format!("a{i}")}))
            .collect();
        let names = patch_attributes(&json!({ "Operations": ops }));
        assert_eq!(names.len(), MAX_NAMES + 1);
        assert_eq!(names.last().map(String::as_str), Some("+68 more"));
    }
}
