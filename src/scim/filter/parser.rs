//! Recursive-descent parser for filters (RFC 7644 §3.4.2.2) and PATCH paths (§3.5.2).
//!
//! `and`/`or` chains are parsed in loops (left-associative), so a long chain costs no stack;
//! recursion happens only on `(`, `not (` and `[`, and each of those counts one level against
//! [`FilterLimits::max_depth`] (itself capped at [`HARD_MAX_DEPTH`]).

use serde_json::Number;

use super::lexer::{tokenize, Token, TokenKind};
use super::{FilterError, FilterLimits, PatchPath};
use crate::directory::query::{AttrPath, CompValue, CompareOp, Filter};

/// Nesting bound applied whatever the configuration says, so that the recursive parser,
/// evaluator, `Display` and `Drop` stay far below a 2 MiB thread stack even in debug builds
/// (about 2 KiB per level there; real filters nest two or three levels).
pub const HARD_MAX_DEPTH: usize = 64;

/// Most comparisons one filter may hold. `and`/`or` chains become left-deep trees, whose
/// (compiler-generated, recursive) `Drop` must not exhaust the stack even when a very large
/// `max_length` is configured; at the default length limit this bound cannot be reached.
pub const MAX_TERMS: usize = 4096;

/// Parses a `filter` query parameter (or the `filter` of a `.search` body).
pub fn parse_filter(input: &str, limits: &FilterLimits) -> Result<Filter, FilterError> {
    check_length(input, limits.max_length, "filter")?;
    let mut p = Parser::new(input, limits)?;
    if p.peek().kind == TokenKind::End {
        return Err(p.error_at(0, "empty filter".to_owned()));
    }
    let f = p.parse_or()?;
    p.expect_end("a complete filter", "'and', 'or' or the end")?;
    Ok(*f)
}

/// Parses a PATCH operation's `path`: `attrPath`, `attrPath[valFilter]` or
/// `attrPath[valFilter].subAttr`.
pub fn parse_patch_path(input: &str) -> Result<PatchPath, FilterError> {
    let limits = FilterLimits::default();
    check_length(input, limits.max_length, "path")?;
    let mut p = Parser::new(input, &limits)?;
    let tok = p.next();
    let attr = match &tok.kind {
        TokenKind::Word(w) => attr_path(w, tok.pos)?,
        TokenKind::End => return Err(p.error_at(0, "empty path".to_owned())),
        _ => {
            return Err(p.error_at(
                tok.pos,
                format!("expected an attribute name, found {}", tok.describe()),
            ))
        }
    };
    let mut path = PatchPath {
        attr,
        value_filter: None,
        sub_attr: None,
    };
    if p.peek().kind == TokenKind::LBracket {
        let bracketed = p.value_filter_and_sub_attr()?;
        path.value_filter = Some(*bracketed.filter);
        path.sub_attr = bracketed.sub_attr.map(|sub| sub.name);
    }
    p.expect_end("the path", "the end")?;
    Ok(path)
}

/// Parses a bare attribute path as used by `attributes`, `excludedAttributes` and `sortBy`.
pub fn parse_attr_path(input: &str) -> Result<AttrPath, FilterError> {
    let limits = FilterLimits::default();
    check_length(input, limits.max_length, "attribute path")?;
    let mut p = Parser::new(input, &limits)?;
    let tok = p.next();
    let path = match &tok.kind {
        TokenKind::Word(w) => attr_path(w, tok.pos)?,
        TokenKind::End => return Err(p.error_at(0, "empty attribute path".to_owned())),
        _ => {
            return Err(p.error_at(
                tok.pos,
                format!("expected an attribute name, found {}", tok.describe()),
            ))
        }
    };
    p.expect_end("the attribute path", "the end")?;
    Ok(path)
}

fn check_length(input: &str, max: usize, what: &str) -> Result<(), FilterError> {
    // `chars().count()` walks the whole input; stop as soon as the limit is passed.
    if input.chars().nth(max).is_some() {
        return Err(FilterError {
            position: max,
            message: format!("{what} is longer than the limit of {max} characters"),
        });
    }
    Ok(())
}

/// A JSON number literal. Integers that fit stay exact; others are read with the standard
/// library's correctly rounded parser (serde_json's default float parser may be off by one
/// unit in the last place, which would break `parse(display(f)) == f`).
fn json_number(text: &str) -> Option<Number> {
    // serde_json checks the JSON syntax (no `01`, `1.`, `+1`, `.5`).
    let checked = text.parse::<Number>().ok()?;
    if checked.is_f64() {
        Number::from_f64(text.parse::<f64>().ok()?)
    } else {
        Some(checked)
    }
}

const OPERATORS: &str = "eq, ne, co, sw, ew, gt, ge, lt, le, pr";

/// What the token at the cursor starts, where an operand of `and`/`or` is expected.
enum Operand {
    /// `(` at this position.
    Paren(usize),
    /// `not (`, the `(` at this position.
    Not(usize),
    Attribute,
    Invalid,
}

/// What follows an attribute path: a comparison operator or `pr`.
enum Operator {
    Compare(CompareOp),
    Present,
}

fn operator(word: &str) -> Option<Operator> {
    let op = match word.to_ascii_lowercase().as_str() {
        "eq" => CompareOp::Eq,
        "ne" => CompareOp::Ne,
        "co" => CompareOp::Co,
        "sw" => CompareOp::Sw,
        "ew" => CompareOp::Ew,
        "gt" => CompareOp::Gt,
        "ge" => CompareOp::Ge,
        "lt" => CompareOp::Lt,
        "le" => CompareOp::Le,
        "pr" => return Some(Operator::Present),
        _ => return None,
    };
    Some(Operator::Compare(op))
}

fn is_keyword(word: &str, keyword: &str) -> bool {
    word.eq_ignore_ascii_case(keyword)
}

/// Checks one attribute name (`ATTRNAME = ALPHA *(nameChar)`, plus `$ref`); `pos` is the
/// offset of its first character, for errors.
fn check_attr_name(name: &[char], pos: usize, what: &str) -> Result<(), FilterError> {
    let Some(&first) = name.first() else {
        return Err(FilterError {
            position: pos,
            message: format!("missing {what}"),
        });
    };
    if !(first.is_ascii_alphabetic() || first == '$') {
        return Err(FilterError {
            position: pos,
            message: format!(
                "{what} '{}' must start with a letter",
                name.iter().collect::<String>()
            ),
        });
    }
    for (i, &c) in name.iter().enumerate().skip(1) {
        if !(c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(FilterError {
                position: pos + i,
                message: format!(
                    "invalid character '{c}' in {what} '{}'",
                    name.iter().collect::<String>()
                ),
            });
        }
    }
    Ok(())
}

/// Turns the word `urn:…:User:name.givenName` (at offset `pos`) into an [`AttrPath`]. The
/// schema URN itself contains colons and dots, so it ends at the *last* colon.
pub(super) fn attr_path(word: &str, pos: usize) -> Result<AttrPath, FilterError> {
    let chars: Vec<char> = word.chars().collect();
    let (urn, rest_start) = match chars.iter().rposition(|&c| c == ':') {
        Some(colon) => {
            let urn: String = chars[..colon].iter().collect();
            if !urn.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("urn:")) {
                return Err(FilterError {
                    position: pos,
                    message: format!(
                        "'{word}' is not an attribute name: a qualified name must start with a schema URN ('urn:…:attribute')"
                    ),
                });
            }
            (Some(urn), colon + 1)
        }
        None => (None, 0),
    };
    let rest = &chars[rest_start..];
    let rest_pos = pos + rest_start;
    let (name, sub) = match rest.iter().position(|&c| c == '.') {
        Some(dot) => (&rest[..dot], Some((&rest[dot + 1..], dot + 1))),
        None => (rest, None),
    };
    let name_what = if urn.is_some() {
        "attribute name after the schema URN"
    } else {
        "attribute name"
    };
    check_attr_name(name, rest_pos, name_what)?;
    let sub_attr = match sub {
        Some((sub, offset)) => {
            if let Some(dot) = sub.iter().position(|&c| c == '.') {
                return Err(FilterError {
                    position: rest_pos + offset + dot,
                    message: format!(
                        "'{word}' has more than one sub-attribute level; SCIM allows only 'attribute.subAttribute'"
                    ),
                });
            }
            check_attr_name(sub, rest_pos + offset, "sub-attribute name")?;
            Some(sub.iter().collect())
        }
        None => None,
    };
    Ok(AttrPath {
        urn,
        name: name.iter().collect(),
        sub_attr,
    })
}

/// `[valFilter]` and the `.subAttr` that may follow it.
struct Bracketed {
    filter: Box<Filter>,
    sub_attr: Option<SubAttr>,
}

struct SubAttr {
    name: String,
    /// As written (`.value`), for messages.
    text: String,
}

struct Parser {
    tokens: Vec<Token>,
    idx: usize,
    depth: usize,
    max_depth: usize,
    terms: usize,
    /// Inside `[ … ]`, where another `[` is not allowed.
    in_value_filter: bool,
}

impl Parser {
    fn new(input: &str, limits: &FilterLimits) -> Result<Self, FilterError> {
        Ok(Self {
            tokens: tokenize(input)?,
            idx: 0,
            depth: 0,
            max_depth: limits.max_depth.min(HARD_MAX_DEPTH),
            terms: 0,
            in_value_filter: false,
        })
    }

    fn peek(&self) -> &Token {
        // `tokenize` always ends with `End`, and `next` never moves past it.
        &self.tokens[self.idx.min(self.tokens.len() - 1)]
    }

    fn next(&mut self) -> Token {
        let tok = self.peek().clone();
        if tok.kind != TokenKind::End {
            self.idx += 1;
        }
        tok
    }

    fn error_at(&self, position: usize, message: String) -> FilterError {
        FilterError { position, message }
    }

    fn peek_keyword(&self, keyword: &str) -> bool {
        matches!(&self.peek().kind, TokenKind::Word(w) if is_keyword(w, keyword))
    }

    /// Nothing may follow `after`, except what `expected` says.
    fn expect_end(&mut self, after: &str, expected: &str) -> Result<(), FilterError> {
        let tok = self.peek().clone();
        let message = match tok.kind {
            TokenKind::End => return Ok(()),
            TokenKind::RParen => "unbalanced ')': there is no matching '('".to_owned(),
            TokenKind::RBracket => "unbalanced ']': there is no matching '['".to_owned(),
            _ => format!(
                "unexpected {} after {after} (expected {expected})",
                tok.describe()
            ),
        };
        Err(self.error_at(tok.pos, message))
    }

    fn enter(&mut self, pos: usize) -> Result<(), FilterError> {
        self.depth += 1;
        if self.depth > self.max_depth {
            return Err(self.depth_error(pos));
        }
        Ok(())
    }

    #[cold]
    #[inline(never)]
    fn depth_error(&self, pos: usize) -> FilterError {
        self.error_at(
            pos,
            format!(
                "filter nests deeper than {} levels of parentheses, 'not' and value filters",
                self.max_depth
            ),
        )
    }

    fn leave(&mut self) {
        self.depth -= 1;
    }

    fn count_term(&mut self, pos: usize) -> Result<(), FilterError> {
        self.terms += 1;
        if self.terms > MAX_TERMS {
            return Err(self.error_at(pos, format!("filter has more than {MAX_TERMS} comparisons")));
        }
        Ok(())
    }

    /// `or`-chain: lowest precedence.
    fn parse_or(&mut self) -> Result<Box<Filter>, FilterError> {
        let mut left = self.parse_and()?;
        while self.peek_keyword("or") {
            self.idx += 1;
            let right = self.parse_and()?;
            left = Box::new(Filter::Or(left, right));
        }
        Ok(left)
    }

    fn parse_and(&mut self) -> Result<Box<Filter>, FilterError> {
        let mut left = self.parse_unary()?;
        while self.peek_keyword("and") {
            self.idx += 1;
            let right = self.parse_unary()?;
            left = Box::new(Filter::And(left, right));
        }
        Ok(left)
    }

    /// `( filter )`, `not ( filter )` or an attribute expression.
    ///
    /// This and [`Self::parenthesised`] are on the recursive path (one frame each per nesting
    /// level), so they allocate nothing and leave message building to cold functions: debug
    /// builds give every temporary its own stack slot.
    fn parse_unary(&mut self) -> Result<Box<Filter>, FilterError> {
        match self.classify_operand() {
            Operand::Paren(open) => {
                self.idx += 1;
                self.parenthesised(open)
            }
            Operand::Not(open) => {
                self.idx += 2;
                let inner = self.parenthesised(open)?;
                Ok(Box::new(Filter::Not(inner)))
            }
            Operand::Attribute => self.attr_operand(),
            Operand::Invalid => Err(self.operand_error()),
        }
    }

    /// What the token at the cursor starts, looking one token further for `not (`.
    fn classify_operand(&self) -> Operand {
        let tok = self.peek();
        let after = &self.tokens[(self.idx + 1).min(self.tokens.len() - 1)];
        // After an attribute comes an operator or `[`: then `not`/`and`/`or` is a name.
        let after_is_operator = match &after.kind {
            TokenKind::Word(op) => operator(op).is_some(),
            TokenKind::LBracket => true,
            _ => false,
        };
        match &tok.kind {
            TokenKind::LParen => Operand::Paren(tok.pos),
            TokenKind::Word(w) if is_keyword(w, "not") => match after.kind {
                TokenKind::LParen => Operand::Not(after.pos),
                // An attribute that happens to be called `not`.
                _ if after_is_operator => Operand::Attribute,
                _ => Operand::Invalid,
            },
            // `and`/`or` where an operand belongs (`a pr or or b pr`), unless it is an
            // attribute of that name (`or eq "x"`).
            TokenKind::Word(w)
                if (is_keyword(w, "and") || is_keyword(w, "or")) && !after_is_operator =>
            {
                Operand::Invalid
            }
            TokenKind::Word(_) => Operand::Attribute,
            _ => Operand::Invalid,
        }
    }

    /// An attribute expression starting at the cursor.
    #[inline(never)]
    fn attr_operand(&mut self) -> Result<Box<Filter>, FilterError> {
        let tok = self.next();
        self.attr_expression(&tok)
    }

    /// Why the token at the cursor cannot start an operand.
    #[cold]
    #[inline(never)]
    fn operand_error(&self) -> FilterError {
        let tok = self.peek();
        let after = &self.tokens[(self.idx + 1).min(self.tokens.len() - 1)];
        let (position, message) = match &tok.kind {
            TokenKind::Word(w) if is_keyword(w, "not") => (
                after.pos,
                format!("expected '(' after 'not', found {}", after.describe()),
            ),
            TokenKind::RBracket if self.in_value_filter => (
                tok.pos,
                "expected an attribute name, found ']' (empty value filter?)".to_owned(),
            ),
            _ => (
                tok.pos,
                format!(
                    "expected an attribute name, '(' or 'not', found {}",
                    tok.describe()
                ),
            ),
        };
        FilterError { position, message }
    }

    /// After `(` at `open`: a filter and its `)`.
    fn parenthesised(&mut self, open: usize) -> Result<Box<Filter>, FilterError> {
        self.enter(open)?;
        let inner = self.parse_or()?;
        if self.peek().kind != TokenKind::RParen {
            return Err(self.unclosed_error("')'", "'('", open));
        }
        self.idx += 1;
        self.leave();
        Ok(inner)
    }

    #[cold]
    #[inline(never)]
    fn unclosed_error(&self, close: &str, open: &str, open_pos: usize) -> FilterError {
        let tok = self.peek();
        FilterError {
            position: tok.pos,
            message: format!(
                "expected {close} to close the {open} at position {open_pos}, found {}",
                tok.describe()
            ),
        }
    }

    /// `attrPath op value`, `attrPath pr`, `attrPath[valFilter]`, or Entra's
    /// `attrPath[valFilter].subAttr op value`. `word` is the path token, already consumed.
    fn attr_expression(&mut self, word: &Token) -> Result<Box<Filter>, FilterError> {
        let TokenKind::Word(text) = &word.kind else {
            return Err(self.error_at(word.pos, "expected an attribute name".to_owned()));
        };
        if text.starts_with('.') {
            return Err(self.error_at(
                word.pos,
                format!("expected an attribute name, found '{text}'"),
            ));
        }
        let path = attr_path(text, word.pos)?;
        if self.peek().kind == TokenKind::LBracket {
            let Bracketed {
                filter: inner,
                sub_attr,
            } = self.value_filter_and_sub_attr()?;
            let filter = match sub_attr {
                // Entra: `emails[type eq "work"].value eq "x"` means
                // `emails[type eq "work" and value eq "x"]`.
                Some(SubAttr { name, text }) => {
                    let sub_path = AttrPath {
                        urn: None,
                        name,
                        sub_attr: None,
                    };
                    let cmp = self.comparison(sub_path, &text)?;
                    Box::new(Filter::And(inner, cmp))
                }
                None => inner,
            };
            return Ok(Box::new(Filter::ValuePath { attr: path, filter }));
        }
        self.comparison(path, text)
    }

    /// At `[`: the value filter up to `]`, then an optional `.subAttr` (returned with the
    /// text used for messages).
    fn value_filter_and_sub_attr(&mut self) -> Result<Bracketed, FilterError> {
        let open = self.next();
        if self.in_value_filter {
            return Err(self.error_at(
                open.pos,
                "'[' is not allowed inside a value filter ('[' inside '[')".to_owned(),
            ));
        }
        self.enter(open.pos)?;
        self.in_value_filter = true;
        let inner = self.parse_or()?;
        let close = self.next();
        if close.kind != TokenKind::RBracket {
            let message = if close.kind == TokenKind::LBracket {
                "'[' is not allowed inside a value filter ('[' inside '[')".to_owned()
            } else {
                format!(
                    "expected ']' to close the '[' at position {}, found {}",
                    open.pos,
                    close.describe()
                )
            };
            return Err(self.error_at(close.pos, message));
        }
        self.in_value_filter = false;
        self.leave();
        let sub = match &self.peek().kind {
            TokenKind::Word(w) if w.starts_with('.') => {
                let w = w.clone();
                let pos = self.peek().pos;
                self.next();
                let name: Vec<char> = w.chars().skip(1).collect();
                if let Some(dot) = name.iter().position(|&c| c == '.') {
                    return Err(self.error_at(
                        pos + 1 + dot,
                        "only one sub-attribute may follow ']'".to_owned(),
                    ));
                }
                check_attr_name(&name, pos + 1, "sub-attribute name after ']'")?;
                Some(SubAttr {
                    name: name.into_iter().collect(),
                    text: w,
                })
            }
            _ => None,
        };
        Ok(Bracketed {
            filter: inner,
            sub_attr: sub,
        })
    }

    /// After an attribute path (`path_text` as written): `pr`, or an operator and a value.
    fn comparison(&mut self, path: AttrPath, path_text: &str) -> Result<Box<Filter>, FilterError> {
        let op_tok = self.next();
        let op = match &op_tok.kind {
            TokenKind::Word(w) => operator(w),
            _ => None,
        };
        let Some(op) = op else {
            let message = if op_tok.kind == TokenKind::LBracket {
                "'[' is not allowed inside a value filter ('[' inside '[')".to_owned()
            } else {
                format!(
                    "expected a comparison operator ({OPERATORS}) after '{path_text}', found {}",
                    op_tok.describe()
                )
            };
            return Err(self.error_at(op_tok.pos, message));
        };
        self.count_term(op_tok.pos)?;
        let op = match op {
            Operator::Present => return Ok(Box::new(Filter::Present(path))),
            Operator::Compare(op) => op,
        };
        let value_tok = self.next();
        let value = self.value(&value_tok, op)?;
        let allowed = match &value {
            CompValue::Str(_) => true,
            CompValue::Num(_) => !matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew),
            CompValue::Bool(_) | CompValue::Null => matches!(op, CompareOp::Eq | CompareOp::Ne),
        };
        if !allowed {
            return Err(self.error_at(
                value_tok.pos,
                format!(
                    "'{}' cannot be used with {}",
                    op.as_str(),
                    value_tok.describe()
                ),
            ));
        }
        Ok(Box::new(Filter::Compare { path, op, value }))
    }

    fn value(&self, tok: &Token, op: CompareOp) -> Result<CompValue, FilterError> {
        let expected = || {
            format!(
                "expected a value after '{}' (a quoted string, a number, true, false or null), found {}",
                op.as_str(),
                tok.describe()
            )
        };
        match &tok.kind {
            TokenKind::Str(s) => Ok(CompValue::Str(s.clone())),
            TokenKind::Word(w) if is_keyword(w, "true") => Ok(CompValue::Bool(true)),
            TokenKind::Word(w) if is_keyword(w, "false") => Ok(CompValue::Bool(false)),
            TokenKind::Word(w) if is_keyword(w, "null") => Ok(CompValue::Null),
            TokenKind::Word(w) if w.starts_with(|c: char| c == '-' || c.is_ascii_digit()) => {
                json_number(w).map(CompValue::Num).ok_or_else(|| {
                    self.error_at(
                        tok.pos,
                        format!("invalid number '{w}' (JSON number syntax, finite)"),
                    )
                })
            }
            _ => Err(self.error_at(tok.pos, expected())),
        }
    }
}
