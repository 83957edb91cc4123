//! The query model: what a list request asks of a [`Directory`](super::Directory) — the
//! filter AST (RFC 7644 §3.4.2.2), the sort key and the page — and how it is answered over
//! canonical JSON ([`matches()`], [`ListQuery::select`]).
//!
//! The SCIM layer parses filter text into this AST (`crate::scim::filter`); backends inspect
//! the AST (`userName eq "x"` → an indexed lookup, [`Filter::equality_on`]) and run the
//! evaluation here on their candidates. Nothing here knows about HTTP or filter syntax,
//! except that `Display` prints the canonical text of a filter or path, which the parser reads
//! back to the same AST.
//!
//! Semantics chosen where RFC 7644 leaves room (the evaluator follows them consistently):
//! - `x ne v` is exactly `not (x eq v)`: true when `x` is missing, and on a multi-valued `x`
//!   true only when *no* value equals `v`.
//! - `null` may only be compared with `eq`/`ne`: `x eq null` means "x is not present"
//!   (`not (x pr)`), `x ne null` means `x pr`. Other operators with `null` are rejected by the
//!   parser.
//! - `true`/`false` may only be compared with `eq`/`ne`; `co`/`sw`/`ew` need a string.
//! - Other comparisons on a missing attribute are false.
//! - An unqualified attribute name is looked up at the top level of the resource, then in the
//!   extension objects (`"urn:…": {…}`); a core-schema URN (`urn:ietf:params:scim:schemas:core:…`)
//!   addresses the top level, any other URN the object under that key.
//! - A multi-valued attribute matches when any of its values does; a complex attribute
//!   compared without a sub-attribute is compared on its `value` sub-attribute
//!   (`emails co "@example.org"`); `attr[filter]` needs one element satisfying all of `filter`.
//! - Strings honour `caseExact` from [`AttrTypes`] (unknown attributes: case-insensitive);
//!   `gt`/`ge`/`lt`/`le` order strings lexicographically, numbers numerically (`1` = `1.0`)
//!   and `dateTime` values (or unknown ones where both sides parse as RFC 3339) as instants.
//!   A value of another JSON type than the literal never matches, except that `eq` accepts
//!   `"True"`/`"false"` strings for booleans either way round (Entra sends them).
//! - `pr` is false for a missing attribute, `null`, `""`, `[]` and objects with nothing
//!   present inside.
//!
//! Before a list request reaches a backend the SCIM layer runs [`check_filter`]: unknown
//! attributes and non-dates compared with `dateTime` attributes are refused, and `userName`
//! literals take the stored (NFC, trimmed) form.
//!
//! `and`/`or` chains can be thousands of terms long (left-deep trees): code that walks a
//! [`Filter`] recursively should loop along `And`/`Or` spines as [`matches()`] and `Display`
//! do.

mod check;
mod eval;
mod select;

use std::fmt;

use serde_json::{Number, Value};

use super::{Group, GroupPage, User};

pub use check::{check as check_filter, EitherSchema};
pub use eval::matches;

/// `urn:…:User:name.givenName` → `{ urn: Some("urn:…:User"), name: "name", sub_attr: Some("givenName") }`.
/// `name` and `sub_attr` keep the spelling the client used; comparison is case-insensitive.
#[derive(Debug, Clone, PartialEq)]
pub struct AttrPath {
    pub urn: Option<String>,
    pub name: String,
    pub sub_attr: Option<String>,
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Eq,
    Ne,
    Co,
    Sw,
    Ew,
    Gt,
    Ge,
    Lt,
    Le,
}

/// A literal on the right of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub enum CompValue {
    Str(String),
    Num(Number),
    Bool(bool),
    Null,
}

/// A parsed filter expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    /// `attrPath op value`
    Compare {
        path: AttrPath,
        op: CompareOp,
        value: CompValue,
    },
    /// `attrPath pr`
    Present(AttrPath),
    /// `attr[valFilter]` — true when some element of the multi-valued (or the single complex)
    /// `attr` satisfies `filter`, whose paths are relative to the element. Entra's non-RFC
    /// `emails[type eq "work"].value eq "x"` parses to this with `value eq "x"` and-ed into
    /// `filter`.
    ValuePath {
        attr: AttrPath,
        filter: Box<Filter>,
    },
}

/// The SCIM data type of an attribute, as far as comparison cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrKind {
    String,
    Boolean,
    Decimal,
    Integer,
    DateTime,
    Binary,
    Reference,
    Complex,
}

/// What the evaluator needs to know about one attribute to compare it as RFC 7644 says
/// (`caseExact` strings, dates and numbers compared as such).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttrInfo {
    pub kind: AttrKind,
    pub case_exact: bool,
    pub multi_valued: bool,
}

/// Schema lookup used by the evaluator. `parent` is the enclosing complex attribute when the
/// path is evaluated inside a value filter (`emails[type eq "work"]` → parent `emails`).
/// Unknown attributes return `None` and compare as case-insensitive strings.
pub trait AttrTypes {
    fn lookup(&self, parent: Option<&AttrPath>, path: &AttrPath) -> Option<AttrInfo>;
}

/// Schema URNs whose attributes sit at the top level of a resource.
const CORE_URN_PREFIX: &str = "urn:ietf:params:scim:schemas:core:";

/// Whether `urn` names a core schema (`urn:ietf:params:scim:schemas:core:2.0:User`, `…:Group`).
pub fn is_core_urn(urn: &str) -> bool {
    urn.get(..CORE_URN_PREFIX.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(CORE_URN_PREFIX))
}

fn eq_opt_ci(a: Option<&str>, b: Option<&str>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
        _ => false,
    }
}

impl AttrPath {
    /// An unqualified path (`userName`, `name.givenName`).
    pub fn new(name: &str, sub_attr: Option<&str>) -> Self {
        Self {
            urn: None,
            name: name.to_owned(),
            sub_attr: sub_attr.map(str::to_owned),
        }
    }

    /// Whether this path denotes the attribute `name` (`"userName"`, `"name.givenName"`,
    /// `"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber"`),
    /// compared case-insensitively.
    ///
    /// `name` is the caller's canonical name; URNs are reconciled like this: if both carry a
    /// URN they must be equal; if only this path does, it must be a core-schema URN (an
    /// unqualified `name` means a core attribute); if only `name` does, this unqualified path
    /// matches (SCIM lets clients omit the URN of an attribute whose name is unique).
    pub fn is(&self, name: &str) -> bool {
        // Called for every attribute of every resource a filter is matched against: split
        // `name` in place rather than parsing it.
        let name = name.trim();
        let (urn, rest) = match name.rfind(':') {
            Some(colon) => (Some(&name[..colon]), &name[colon + 1..]),
            None => (None, name),
        };
        let (attr, sub) = match rest.split_once('.') {
            Some((attr, sub)) => (attr, Some(sub)),
            None => (rest, None),
        };
        if !self.name.eq_ignore_ascii_case(attr)
            || !eq_opt_ci(self.sub_attr.as_deref(), sub)
            || attr.is_empty()
            || sub.is_some_and(|s| s.is_empty() || s.contains('.'))
        {
            return false;
        }
        match (&self.urn, urn) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            (Some(a), None) => is_core_urn(a),
            (None, _) => true,
        }
    }

    /// The same path without its sub-attribute (`name.givenName` → `name`).
    pub fn parent(&self) -> Self {
        Self {
            urn: self.urn.clone(),
            name: self.name.clone(),
            sub_attr: None,
        }
    }
}

impl fmt::Display for AttrPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(urn) = &self.urn {
            write!(f, "{urn}:")?;
        }
        f.write_str(&self.name)?;
        if let Some(sub) = &self.sub_attr {
            write!(f, ".{sub}")?;
        }
        Ok(())
    }
}

impl CompareOp {
    /// The operator as written in a filter (`eq`, `ne`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            CompareOp::Eq => "eq",
            CompareOp::Ne => "ne",
            CompareOp::Co => "co",
            CompareOp::Sw => "sw",
            CompareOp::Ew => "ew",
            CompareOp::Gt => "gt",
            CompareOp::Ge => "ge",
            CompareOp::Lt => "lt",
            CompareOp::Le => "le",
        }
    }
}

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for CompValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            // A JSON string literal, which the filter grammar shares.
            CompValue::Str(s) => write!(f, "{}", Value::String(s.clone())),
            CompValue::Num(n) => write!(f, "{n}"),
            CompValue::Bool(b) => write!(f, "{b}"),
            CompValue::Null => f.write_str("null"),
        }
    }
}

/// Binding strength, for deciding where canonical text needs parentheses.
fn precedence(f: &Filter) -> u8 {
    match f {
        Filter::Or(..) => 1,
        Filter::And(..) => 2,
        _ => 3,
    }
}

/// Writes `child`, in parentheses when it binds less tightly than `min` requires.
fn write_operand(f: &mut fmt::Formatter<'_>, child: &Filter, min: u8) -> fmt::Result {
    if precedence(child) < min {
        write!(f, "({child})")
    } else {
        write!(f, "{child}")
    }
}

impl fmt::Display for Filter {
    /// Canonical text: lower-case operators, JSON string literals, single spaces, and
    /// parentheses only where the tree differs from what left-associative parsing with
    /// `not > and > or` would build.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Filter::And(..) | Filter::Or(..) => {
                // Walk the left spine of same-operator nodes in a loop, so that a long
                // `a and b and c …` chain costs no recursion.
                let prec = precedence(self);
                let mut rights = Vec::new();
                let mut node = self;
                while let (Filter::And(l, r), 2) | (Filter::Or(l, r), 1) = (node, prec) {
                    rights.push(r.as_ref());
                    node = l;
                }
                let keyword = if prec == 2 { " and " } else { " or " };
                write_operand(f, node, prec)?;
                for r in rights.into_iter().rev() {
                    f.write_str(keyword)?;
                    write_operand(f, r, prec + 1)?;
                }
                Ok(())
            }
            Filter::Not(inner) => write!(f, "not ({inner})"),
            Filter::Compare { path, op, value } => write!(f, "{path} {op} {value}"),
            Filter::Present(path) => write!(f, "{path} pr"),
            Filter::ValuePath { attr, filter } => write!(f, "{attr}[{filter}]"),
        }
    }
}

impl Filter {
    /// For backends: if the filter is `attr eq value`, or a top-level `and` of terms one of
    /// which is, return that value — e.g. `filter.equality_on("userName")` on
    /// `userName eq "bjensen" and active eq true` gives `"bjensen"`. The backend may look
    /// candidates up by it but must still run [`matches()`] on them (the other terms, and
    /// `caseExact` rules, still apply). `attr eq null` (meaning "absent") is not an equality.
    pub fn equality_on(&self, attr: &str) -> Option<&CompValue> {
        let mut stack = vec![self];
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
                } if *value != CompValue::Null && path.is(attr) => return Some(value),
                _ => {}
            }
        }
        None
    }
}

/// Sort order of a list request.
#[derive(Debug, Clone, PartialEq)]
pub struct SortKey {
    pub path: AttrPath,
    pub descending: bool,
}

/// A list or search request, already validated and clamped by the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct ListQuery {
    /// Only resources matching this filter are counted and returned. A backend may use
    /// [`Filter::equality_on`] for an indexed lookup (`userName`, `externalId`, `id`) and must
    /// still apply the whole filter to the candidates, e.g. with [`ListQuery::select`].
    pub filter: Option<Filter>,
    /// Order of results; `None` means a stable backend order (e.g. by id) so that paging works.
    pub sort: Option<SortKey>,
    /// 1-based index of the first result to return (RFC 7644 `startIndex`), at least 1.
    pub start_index: usize,
    /// Largest number of resources to return; 0 asks for `total` only.
    pub count: usize,
}

/// One page of a list result.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page {
    /// Number of resources matching the filter, across all pages.
    pub total: usize,
    /// The resources of the requested page, in order.
    pub resources: Vec<User>,
}

impl ListQuery {
    /// Filters, sorts (stable, by `sort` then by `id`) and pages `candidates` as the engine
    /// would, using the User schema for comparison rules. Backends that cannot do this
    /// natively call it on the users they fetched.
    pub fn select(&self, candidates: Vec<User>) -> Page {
        select::select(self, candidates)
    }

    /// Like [`ListQuery::select`] for candidates that arrive in chunks: holds one chunk and
    /// the best `start_index - 1 + count` matches at a time, never every candidate.
    pub fn select_chunks(&self, chunks: impl IntoIterator<Item = Vec<User>>) -> Page {
        select::select_chunks(self, chunks)
    }

    /// Like [`ListQuery::select`] for users kept as JSON objects (`Value::Object` in the
    /// canonical form): matches by reference and copies only the returned page.
    pub fn select_json<'a>(&self, candidates: impl IntoIterator<Item = &'a Value>) -> Page {
        select::select_json(self, candidates)
    }

    /// [`ListQuery::select`] for groups: the Group schema's comparison rules (`displayName`
    /// case-insensitive, `members.value` case-exact), the same stable order and paging.
    pub fn select_groups(&self, candidates: Vec<Group>) -> GroupPage {
        let values: Vec<Value> = candidates
            .into_iter()
            .map(|g| Value::Object(g.into_json()))
            .collect();
        select::select_group_json(self, values.iter())
    }

    /// [`ListQuery::select_groups`] for groups kept as JSON objects: matches by reference and
    /// copies only the returned page.
    pub fn select_group_json<'a>(
        &self,
        candidates: impl IntoIterator<Item = &'a Value>,
    ) -> GroupPage {
        select::select_group_json(self, candidates)
    }
}
