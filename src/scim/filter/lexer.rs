//! Tokens of the filter language. Positions are 0-based character offsets into the input,
//! which is what `FilterError::position` reports.
//!
//! Operators, keywords and attribute paths are all lexed as [`TokenKind::Word`]: which one a
//! word is depends on where it stands (`title pr`, but also an attribute named `pr`), so the
//! parser decides.

use super::FilterError;

/// One lexical token.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum TokenKind {
    /// A run of characters up to whitespace, a bracket, a parenthesis or a quote:
    /// an attribute path, an operator, a keyword, a number, or `.subAttr` after `]`.
    Word(String),
    /// A JSON string literal, escapes resolved.
    Str(String),
    LParen,
    RParen,
    LBracket,
    RBracket,
    End,
}

#[derive(Debug, Clone, PartialEq)]
pub(super) struct Token {
    pub kind: TokenKind,
    /// Character offset of the token's first character.
    pub pos: usize,
}

impl Token {
    /// How the token reads in an error message.
    pub fn describe(&self) -> String {
        match &self.kind {
            TokenKind::Word(w) => format!("'{w}'"),
            TokenKind::Str(s) => format!("the string {}", quote(s)),
            TokenKind::LParen => "'('".to_owned(),
            TokenKind::RParen => "')'".to_owned(),
            TokenKind::LBracket => "'['".to_owned(),
            TokenKind::RBracket => "']'".to_owned(),
            TokenKind::End => "the end of the filter".to_owned(),
        }
    }
}

/// A string as a JSON literal (for messages and canonical display).
pub(super) fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

fn is_delimiter(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']' | '"')
}

/// Splits `input` into tokens; the last one is always [`TokenKind::End`].
pub(super) fn tokenize(input: &str) -> Result<Vec<Token>, FilterError> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let pos = i;
        let kind = match c {
            '(' => TokenKind::LParen,
            ')' => TokenKind::RParen,
            '[' => TokenKind::LBracket,
            ']' => TokenKind::RBracket,
            '"' => {
                let (s, next) = string_literal(&chars, i)?;
                tokens.push(Token {
                    kind: TokenKind::Str(s),
                    pos,
                });
                i = next;
                continue;
            }
            _ => {
                let start = i;
                while i < chars.len() && !is_delimiter(chars[i]) {
                    i += 1;
                }
                tokens.push(Token {
                    kind: TokenKind::Word(chars[start..i].iter().collect()),
                    pos,
                });
                continue;
            }
        };
        tokens.push(Token { kind, pos });
        i += 1;
    }
    tokens.push(Token {
        kind: TokenKind::End,
        pos: chars.len(),
    });
    Ok(tokens)
}

/// Reads the JSON string literal whose opening quote is at `start`; returns its value and the
/// offset after the closing quote.
fn string_literal(chars: &[char], start: usize) -> Result<(String, usize), FilterError> {
    let mut out = String::new();
    let mut i = start + 1;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err(FilterError {
                position: start,
                message: "unterminated string: no closing '\"'".to_owned(),
            });
        };
        match c {
            '"' => return Ok((out, i + 1)),
            '\\' => {
                let esc_pos = i;
                let Some(&e) = chars.get(i + 1) else {
                    return Err(FilterError {
                        position: start,
                        message: "unterminated string: no closing '\"'".to_owned(),
                    });
                };
                i += 2;
                match e {
                    '"' => out.push('"'),
                    '\\' => out.push('\\'),
                    '/' => out.push('/'),
                    'b' => out.push('\u{8}'),
                    'f' => out.push('\u{c}'),
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'u' => {
                        let (ch, next) = unicode_escape(chars, esc_pos)?;
                        out.push(ch);
                        i = next;
                    }
                    other => {
                        return Err(FilterError {
                            position: esc_pos,
                            message: format!(
                                "invalid escape '\\{other}' in string (allowed: \\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX)"
                            ),
                        })
                    }
                }
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
}

/// Four hex digits after `\u` at `esc_pos`.
fn hex4(chars: &[char], esc_pos: usize) -> Result<u32, FilterError> {
    let digits = chars.get(esc_pos + 2..esc_pos + 6);
    let parsed = digits.and_then(|d| {
        d.iter()
            .try_fold(0u32, |acc, c| c.to_digit(16).map(|v| acc * 16 + v))
    });
    parsed.ok_or_else(|| FilterError {
        position: esc_pos,
        message: "invalid escape: '\\u' must be followed by four hex digits".to_owned(),
    })
}

/// Decodes `\uXXXX` (and a following low surrogate) at `esc_pos`; returns the character and
/// the offset after the escape(s).
fn unicode_escape(chars: &[char], esc_pos: usize) -> Result<(char, usize), FilterError> {
    let hi = hex4(chars, esc_pos)?;
    let after = esc_pos + 6;
    if (0xD800..0xDC00).contains(&hi) {
        let lo_pos = after;
        if chars.get(lo_pos) == Some(&'\\') && chars.get(lo_pos + 1) == Some(&'u') {
            let lo = hex4(chars, lo_pos)?;
            if (0xDC00..0xE000).contains(&lo) {
                let code = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
                if let Some(ch) = char::from_u32(code) {
                    return Ok((ch, lo_pos + 6));
                }
            }
        }
        return Err(FilterError {
            position: esc_pos,
            message: "invalid escape: high surrogate not followed by a low surrogate".to_owned(),
        });
    }
    char::from_u32(hi)
        .map(|ch| (ch, after))
        .ok_or_else(|| FilterError {
            position: esc_pos,
            message: "invalid escape: lone low surrogate".to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(input: &str) -> Vec<TokenKind> {
        tokenize(input)
            .unwrap()
            .into_iter()
            .map(|t| t.kind)
            .collect()
    }

    #[test]
    fn words_strings_and_brackets() {
        assert_eq!(
            kinds(r#"emails[type eq "work"].value eq"x""#),
            vec![
                TokenKind::Word("emails".into()),
                TokenKind::LBracket,
                TokenKind::Word("type".into()),
                TokenKind::Word("eq".into()),
                TokenKind::Str("work".into()),
                TokenKind::RBracket,
                TokenKind::Word(".value".into()),
                TokenKind::Word("eq".into()),
                TokenKind::Str("x".into()),
                TokenKind::End,
            ]
        );
    }

    #[test]
    fn positions_are_character_offsets() {
        let toks = tokenize("é  (x)").unwrap();
        let pos: Vec<usize> = toks.iter().map(|t| t.pos).collect();
        assert_eq!(pos, vec![0, 3, 4, 5, 6]);
    }

    #[test]
    fn escapes() {
        assert_eq!(
            kinds(r#""a\"b\\c\/\n\u00e9\ud83d\ude00""#)[0],
            TokenKind::Str("a\"b\\c/\né😀".into())
        );
    }

    #[test]
    fn bad_strings() {
        let e = tokenize(r#"x eq "abc"#).unwrap_err();
        assert_eq!(e.position, 5);
        assert!(e.message.contains("unterminated"), "{e}");
        let e = tokenize(r#"x eq "a\qb""#).unwrap_err();
        assert_eq!(e.position, 7);
        assert!(e.message.contains("invalid escape '\\q'"), "{e}");
        let e = tokenize(r#"x eq "\u12g4""#).unwrap_err();
        assert_eq!(e.position, 6);
        assert!(e.message.contains("four hex digits"), "{e}");
        let e = tokenize(r#"x eq "\ud800x""#).unwrap_err();
        assert!(e.message.contains("surrogate"), "{e}");
        let e = tokenize(r#"x eq "\udc00""#).unwrap_err();
        assert!(e.message.contains("surrogate"), "{e}");
        let e = tokenize(r#"x eq "abc\"#).unwrap_err();
        assert_eq!(e.position, 5);
    }
}
