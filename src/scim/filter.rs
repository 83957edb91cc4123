//! The SCIM filter language (RFC 7644 §3.4.2.2) and attribute paths (§3.5.2).
//!
//! The AST below is the contract between the parser/evaluator (this file) and its users
//! (list handlers, the PATCH engine, directory backends that turn `userName eq "x"` into an
//! indexed lookup). Backends inspect the AST directly; nothing here knows about HTTP.

use serde_json::Number;

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
