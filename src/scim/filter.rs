//! The SCIM filter language (RFC 7644 §3.4.2.2) and attribute paths (§3.5.2).
//!
//! The AST below is the contract between the parser/evaluator (this file) and its users
//! (list handlers, the PATCH engine, directory backends that turn `userName eq "x"` into an
//! indexed lookup). Backends inspect the AST directly; nothing here knows about HTTP.
//!
//! Entry points: [`parse_filter`], [`parse_patch_path`], [`parse_attr_path`], [`matches`].
//! `Display` prints the canonical text of a filter or path, which parses back to the same AST.
//!
//! Semantics chosen where RFC 7644 leaves room (the evaluator follows them consistently):
//! - `x ne v` is exactly `not (x eq v)`: true when `x` is missing, and on a multi-valued `x`
//!   true only when *no* value equals `v`.
//! - `null` may only be compared with `eq`/`ne`: `x eq null` means "x is not present"
//!   (`not (x pr)`), `x ne null` means `x pr`. Other operators with `null` are rejected.
//! - `true`/`false` may only be compared with `eq`/`ne`; `co`/`sw`/`ew` need a string.
//! - Other comparisons on a missing attribute are false.
//! - An unqualified attribute name is looked up at the top level of the resource, then in the
//!   extension objects (`"urn:…": {…}`); a core-schema URN (`urn:ietf:params:scim:schemas:core:…`)
//!   addresses the top level, any other URN the object under that key.

mod eval;
mod lexer;
mod parser;

use std::fmt;

use serde_json::Number;

pub use eval::matches;
pub use parser::{parse_attr_path, parse_filter, parse_patch_path, HARD_MAX_DEPTH, MAX_TERMS};

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

/// A PATCH `path`: `attrPath`, or `valuePath` optionally followed by `.subAttr`
/// (`emails[type eq "work"].value`).
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub value_filter: Option<Filter>,
    /// Only with `value_filter`: the sub-attribute after `]`.
    pub sub_attr: Option<String>,
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

/// Bounds that keep a hostile filter from costing more than it should.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterLimits {
    pub max_length: usize,
    pub max_depth: usize,
}

impl Default for FilterLimits {
    fn default() -> Self {
        Self {
            max_length: 4096,
            max_depth: 32,
        }
    }
}

/// Why a filter or path was rejected; `position` is a 0-based character offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at position {position}: {message}")]
pub struct FilterError {
    pub position: usize,
    pub message: String,
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

impl fmt::Display for CompareOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(parser::op_name(*self))
    }
}

impl fmt::Display for CompValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompValue::Str(s) => f.write_str(&lexer::quote(s)),
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

impl fmt::Display for PatchPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.attr)?;
        if let Some(filter) = &self.value_filter {
            write!(f, "[{filter}]")?;
            if let Some(sub) = &self.sub_attr {
                write!(f, ".{sub}")?;
            }
        }
        Ok(())
    }
}

impl Filter {
    /// For backends: if the filter is `attr eq value`, or a top-level `and` of terms one of
    /// which is, return that value — e.g. `filter.equality_on("userName")` on
    /// `userName eq "bjensen" and active eq true` gives `"bjensen"`. The backend may look
    /// candidates up by it but must still run [`matches`] on them (the other terms, and
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

#[cfg(test)]
mod tests;
