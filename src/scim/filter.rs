//! The SCIM filter language (RFC 7644 §3.4.2.2) and attribute paths (§3.5.2), as text: the
//! lexer and parser that produce the query AST of [`crate::directory::query`], and PATCH
//! paths (§3.5.2), which only the PATCH engine uses.
//!
//! Entry points: [`parse_filter`], [`parse_patch_path`], [`parse_attr_path`]. What a parsed
//! filter means (and how it is evaluated) is documented with the AST.
//!
//! The parser rejects `null` with any operator but `eq`/`ne`, and `true`/`false` with
//! `co`/`sw`/`ew`.
//!
//! Limits: [`FilterLimits::max_length`] counts characters; [`FilterLimits::max_depth`] counts
//! nested `( … )`, `not ( … )` and `[ … ]`, and is capped at [`HARD_MAX_DEPTH`]; at most
//! [`MAX_TERMS`] comparisons. `and`/`or` chains parse to left-deep trees as long as the chain
//! (up to `MAX_TERMS`).

mod lexer;
mod parser;

use std::fmt;

pub use parser::{parse_attr_path, parse_filter, parse_patch_path, HARD_MAX_DEPTH, MAX_TERMS};

// Re-export for src/chamilo until it switches to the new path (`crate::directory::query`);
// tests/chamilo_*.rs import these from here too.
pub use crate::directory::query::{AttrPath, CompValue, CompareOp, Filter};

/// A PATCH `path`: `attrPath`, or `valuePath` optionally followed by `.subAttr`
/// (`emails[type eq "work"].value`).
#[derive(Debug, Clone, PartialEq)]
pub struct PatchPath {
    pub attr: AttrPath,
    pub value_filter: Option<Filter>,
    /// Only with `value_filter`: the sub-attribute after `]`.
    pub sub_attr: Option<String>,
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

#[cfg(test)]
mod tests;
