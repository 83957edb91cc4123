//! SCIM Groups as Chamilo classes (usergroups of type 0): the `GroupStore` of
//! [`ChamiloDirectory`]. See `docs/chamilo.md`, "Groups".
//!
//! | SCIM | Chamilo |
//! |---|---|
//! | `id` | class id |
//! | `displayName` | class name (unique, case-insensitively); verbatim also in the description line |
//! | `externalId` | the description line ([`description`]) |
//! | `members[].value` | user ids (`add_group_sub_user` / `delete_group_sub_user`) |
//!
//! Costs: one `get_groups` serves any read of classes without members (a list of N classes
//! is one call); members cost one `get_group_sub_users` per class returned with them, and a
//! `members[value eq "x"]` filter one `get_user_sub_group`. Writes: [`write`].

pub mod description;
pub mod members;
pub mod write;

use serde_json::{json, Map, Value};

use self::description::ClassDescription;
use self::members::members_json;
use super::client::Group as Class;
use super::directory::{from_chamilo, ChamiloDirectory};
use super::mapping::GroupScope;
use crate::directory::query::{CompValue, CompareOp, Filter};
use crate::directory::{
    DirFuture, DirectoryError, Group, GroupPage, GroupRef, GroupStore, ListQuery, GROUP_SCHEMA,
};

/// Chamilo's type of a class (1 is a social group, which SCIM never sees).
const CLASS: i64 = 0;

/// Two class names Chamilo takes for the same (its check ignores case).
pub(crate) fn same_name(a: &str, b: &str) -> bool {
    a.trim().to_lowercase() == b.trim().to_lowercase()
}

/// Whether Chamilo's stored text is `sent` as it keeps it: the same, or trimmed, or with
/// HTML's special characters escaped (what Chamilo's screens do to text on the way in; the
/// web services are not documented to, so both are accepted).
pub(crate) fn stored_as(stored: &str, sent: &str) -> bool {
    stored == sent || stored == sent.trim() || stored == html_escaped(sent)
}

/// `htmlspecialchars` with PHP's default flags.
fn html_escaped(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#039;"),
            c => out.push(c),
        }
    }
    out
}

/// What a class's SCIM id starts with. SCIM ids are unique across resource types (RFC 7643
/// §3.1; a root `/.search` mixes Users and Groups), Chamilo's user and class ids are not: user
/// 7 and class 7 both exist. A class's SCIM id is therefore `class-7`.
pub(crate) const CLASS_ID_PREFIX: &str = "class-";

/// The SCIM id of class `id`.
pub(crate) fn scim_group_id(id: u64) -> String {
    format!("{CLASS_ID_PREFIX}{id}")
}

/// The class a SCIM group id names, if it is one.
pub(crate) fn class_id(scim_id: &str) -> Option<u64> {
    scim_id
        .strip_prefix(CLASS_ID_PREFIX)?
        .parse::<u64>()
        .ok()
        .filter(|id| *id > 0)
}

/// The SCIM group of a class. `displayName` is the one last written through SCIM while the
/// class still bears that name (Chamilo compares names ignoring case), else the class name
/// (renamed in Chamilo's UI).
pub(crate) fn to_group(class: &Class, members: Option<&[(u64, Option<String>)]>) -> Group {
    let d = ClassDescription::parse(&class.description);
    let scim = d.scim.unwrap_or_default();
    let display = match scim.display_name {
        Some(dn) if same_name(&dn, &class.name) || same_name(&html_escaped(&dn), &class.name) => dn,
        _ => class.name.clone(),
    };
    let mut json = Map::new();
    json.insert("schemas".into(), json!([GROUP_SCHEMA]));
    json.insert("id".into(), Value::String(scim_group_id(class.id)));
    json.insert("displayName".into(), Value::String(display));
    if let Some(ext) = scim.external_id.filter(|e| !e.is_empty()) {
        json.insert("externalId".into(), Value::String(ext));
    }
    if let Some(m) = members {
        json.insert("members".into(), members_json(m));
    }
    Group::from_json(json)
}

/// The value of `members[value eq "x"]` or `members.value eq "x"` when the filter requires
/// it (alone or in a top-level `and`).
fn member_equality(filter: &Filter) -> Option<String> {
    let mut stack = vec![filter];
    while let Some(node) = stack.pop() {
        match node {
            Filter::And(l, r) => {
                stack.push(r);
                stack.push(l);
            }
            Filter::Compare {
                path,
                op: CompareOp::Eq,
                value,
            } if path.is("members.value") => return comp_str(value),
            Filter::ValuePath { attr, filter } if attr.is("members") && attr.sub_attr.is_none() => {
                if let Filter::Compare {
                    path,
                    op: CompareOp::Eq,
                    value,
                } = filter.as_ref()
                {
                    if path.is("value") {
                        return comp_str(value);
                    }
                }
            }
            _ => {}
        }
    }
    None
}

fn comp_str(v: &CompValue) -> Option<String> {
    match v {
        CompValue::Str(s) => Some(s.clone()),
        CompValue::Num(n) => Some(n.to_string()),
        _ => None,
    }
}

/// How many terms of the filter look at `members`.
fn member_terms(filter: &Filter) -> usize {
    match filter {
        Filter::And(l, r) | Filter::Or(l, r) => member_terms(l) + member_terms(r),
        Filter::Not(f) => member_terms(f),
        Filter::Compare { path, .. } | Filter::Present(path) => {
            usize::from(path.name.eq_ignore_ascii_case("members"))
        }
        Filter::ValuePath { attr, .. } => usize::from(attr.name.eq_ignore_ascii_case("members")),
    }
}

impl ChamiloDirectory {
    /// Every class (type 0), in or out of scope: one `get_groups`.
    pub(crate) async fn all_classes(&self) -> Result<Vec<Class>, DirectoryError> {
        Ok(self
            .client
            .get_groups(Some(CLASS))
            .await
            .map_err(from_chamilo)?
            .into_iter()
            .filter(|c| c.group_type == CLASS)
            .collect())
    }

    /// Whether `/Groups` shows this class (`chamilo.group_scope`).
    pub(crate) fn in_scope(&self, class: &Class) -> bool {
        match self.mapping.group_scope {
            GroupScope::All => true,
            GroupScope::Managed => ClassDescription::parse(&class.description).scim.is_some(),
        }
    }

    /// The classes `/Groups` shows: one `get_groups`.
    pub(crate) async fn classes(&self) -> Result<Vec<Class>, DirectoryError> {
        let mut all = self.all_classes().await?;
        all.retain(|c| self.in_scope(c));
        Ok(all)
    }

    /// The class `id` if `/Groups` shows it.
    pub(crate) async fn class(&self, id: &str) -> Result<Option<Class>, DirectoryError> {
        let Some(id) = class_id(id) else {
            return Ok(None);
        };
        Ok(self.classes().await?.into_iter().find(|c| c.id == id))
    }

    /// The members SCIM shows of class `id`: one `get_group_sub_users`.
    pub(crate) async fn class_members(
        &self,
        id: u64,
    ) -> Result<Vec<(u64, Option<String>)>, DirectoryError> {
        let members = self.client.group_members(id).await.map_err(from_chamilo)?;
        Ok(self.shown_members(&members))
    }

    async fn read_group(
        &self,
        id: &str,
        with_members: bool,
    ) -> Result<Option<Group>, DirectoryError> {
        let Some(class) = self.class(id).await? else {
            return Ok(None);
        };
        let members = match with_members {
            true => Some(self.class_members(class.id).await?),
            false => None,
        };
        Ok(Some(to_group(&class, members.as_deref())))
    }

    async fn search_groups(
        &self,
        query: &ListQuery,
        with_members: bool,
    ) -> Result<GroupPage, DirectoryError> {
        let mut classes = self.classes().await?;
        let filter = query.filter.as_ref();
        let terms = filter.map_or(0, member_terms);
        // Members each candidate carries for the filter: all of them (`full`), only the one
        // user a `members[value eq "x"]` filter asks about, or none.
        let mut full = false;
        let mut candidates: Vec<Value> = Vec::with_capacity(classes.len());
        if let Some(wanted) = filter.and_then(member_equality) {
            let user = wanted
                .parse::<u64>()
                .ok()
                .filter(|u| *u > 0 && self.shows_member(*u));
            let Some(user) = user else {
                return Ok(GroupPage::default());
            };
            let of_user = self.client.user_groups(user).await.map_err(from_chamilo)?;
            classes.retain(|c| of_user.contains(&c.id));
            for class in &classes {
                let members = if terms > 1 {
                    full = true;
                    self.class_members(class.id).await?
                } else {
                    vec![(user, None)]
                };
                candidates.push(Value::Object(to_group(class, Some(&members)).into_json()));
            }
        } else if terms > 0 {
            // Any other filter on members needs every class's members.
            full = true;
            for class in &classes {
                let members = self.class_members(class.id).await?;
                candidates.push(Value::Object(to_group(class, Some(&members)).into_json()));
            }
        } else {
            candidates.extend(
                classes
                    .iter()
                    .map(|c| Value::Object(to_group(c, None).into_json())),
            );
        }
        let page = query.select_json(candidates.iter());
        let mut resources = Vec::with_capacity(page.resources.len());
        for user in page.resources {
            let mut group = Group::from_json(user.into_json());
            if !with_members {
                group.as_json_mut().remove("members");
            } else if !full {
                let id = group.id().and_then(class_id).unwrap_or(0);
                let members = self.class_members(id).await?;
                group
                    .as_json_mut()
                    .insert("members".into(), members_json(&members));
            }
            resources.push(group);
        }
        Ok(GroupPage {
            total: page.total,
            resources,
        })
    }

    async fn user_group_refs(&self, user_id: &str) -> Result<Vec<GroupRef>, DirectoryError> {
        let Ok(user) = user_id.parse::<u64>() else {
            return Ok(Vec::new());
        };
        let ids = self.client.user_groups(user).await.map_err(from_chamilo)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut refs: Vec<GroupRef> = self
            .classes()
            .await?
            .iter()
            .filter(|c| ids.contains(&c.id))
            .map(|c| {
                let g = to_group(c, None);
                GroupRef {
                    value: scim_group_id(c.id),
                    display: g.display_name().map(str::to_owned),
                }
            })
            .collect();
        refs.sort_by_key(|r| class_id(&r.value).unwrap_or(0));
        Ok(refs)
    }
}

impl GroupStore for ChamiloDirectory {
    fn create_group(&self, group: Group) -> DirFuture<'_, Group> {
        Box::pin(self.create_class(group))
    }

    fn get_group<'a>(&'a self, id: &'a str, with_members: bool) -> DirFuture<'a, Option<Group>> {
        Box::pin(self.read_group(id, with_members))
    }

    fn find_groups<'a>(
        &'a self,
        query: &'a ListQuery,
        with_members: bool,
    ) -> DirFuture<'a, GroupPage> {
        Box::pin(self.search_groups(query, with_members))
    }

    fn modify_group<'a>(
        &'a self,
        id: &'a str,
        base: &'a Group,
        group: Group,
        _expected_version: Option<&'a str>,
    ) -> DirFuture<'a, Group> {
        // `versions: false`: the engine sends no precondition.
        Box::pin(self.modify_class(id, base, group))
    }

    fn delete_group<'a>(&'a self, id: &'a str) -> DirFuture<'a, ()> {
        Box::pin(self.delete_class(id))
    }

    fn groups_of<'a>(&'a self, user_id: &'a str) -> DirFuture<'a, Vec<GroupRef>> {
        Box::pin(self.user_group_refs(user_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::query::AttrPath;

    fn eq(path: &str, sub: Option<&str>, v: &str) -> Filter {
        Filter::Compare {
            path: AttrPath::new(path, sub),
            op: CompareOp::Eq,
            value: CompValue::Str(v.into()),
        }
    }

    #[test]
    fn a_member_filter_is_recognised() {
        let vp = Filter::ValuePath {
            attr: AttrPath::new("members", None),
            filter: Box::new(eq("value", None, "42")),
        };
        assert_eq!(member_equality(&vp).as_deref(), Some("42"));
        assert_eq!(member_terms(&vp), 1);
        let dotted = eq("members", Some("value"), "7");
        assert_eq!(member_equality(&dotted).as_deref(), Some("7"));
        let and = Filter::And(Box::new(eq("displayName", None, "A")), Box::new(vp.clone()));
        assert_eq!(member_equality(&and).as_deref(), Some("42"));
        let or = Filter::Or(Box::new(eq("displayName", None, "A")), Box::new(vp));
        assert_eq!(member_equality(&or), None);
        assert_eq!(member_terms(&or), 1);
        assert_eq!(member_terms(&eq("displayName", None, "A")), 0);
    }

    #[test]
    fn the_display_name_follows_a_rename_in_chamilo() {
        let class = |name: &str, description: &str| Class {
            id: 4,
            name: name.into(),
            description: description.into(),
            group_type: 0,
        };
        let line = "[scim-proxy:v1 displayName=Staff%20A externalId=e1]";
        let g = to_group(&class("STAFF A", line), None);
        assert_eq!(g.display_name(), Some("Staff A"));
        assert_eq!(g.external_id(), Some("e1"));
        assert!(!g.has_members());
        let g = to_group(&class("Teachers", line), Some(&[]));
        assert_eq!(g.display_name(), Some("Teachers"));
        assert_eq!(g.external_id(), Some("e1"));
        assert!(g.has_members());
        let line = "[scim-proxy:v1 displayName=R%26D%20%3Cteam%3E]";
        let g = to_group(&class("R&amp;D &lt;team&gt;", line), None);
        assert_eq!(g.display_name(), Some("R&D <team>"), "escaped by Chamilo");
        assert!(stored_as("R&amp;D", "R&D") && stored_as("A", " A ") && !stored_as("a", "A"));
        let g = to_group(&class("Made in Chamilo", "Some notes"), None);
        assert_eq!(g.display_name(), Some("Made in Chamilo"));
        assert_eq!(g.external_id(), None);
        assert_eq!(g.id(), Some("class-4"));
        assert_eq!(class_id("class-4"), Some(4));
        assert_eq!(class_id("4"), None);
        assert_eq!(class_id("class-0"), None);
    }
}
