//! Incremental decoding of a `get_users` answer: each user object of the `data` array is
//! handed over as soon as its bytes have arrived, so a 100k-user listing never exists in
//! memory as a whole (neither as the body, nor as a JSON tree, nor as a vector of rows).
//!
//! The scanner tracks JSON strings and nesting only; every object that is an element of an
//! array nested in the top-level object (`{"data":[{…},{…}]}`) is cut out and passed on. The
//! rest of the body (the envelope, with `0` in place of each object) is kept as a small
//! "skeleton" that is parsed at the end for `error` / `message`.

/// Splits a streamed `{"error":…,"data":[{…},…]}` body into row objects and a skeleton.
#[derive(Debug, Default)]
pub struct RowScanner {
    /// Open containers: `b'{'` or `b'['`.
    stack: Vec<u8>,
    in_string: bool,
    escaped: bool,
    /// Bytes of the row object being read (when inside one).
    row: Vec<u8>,
    in_row: bool,
    /// Everything outside row objects.
    skeleton: Vec<u8>,
    rows: usize,
}

/// Rows nested deeper than this are not user objects (the envelope is `{ data: [ {row} ] }`).
const ROW_DEPTH: usize = 2;

impl RowScanner {
    /// A scanner at the start of a body.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next chunk; `each` gets every complete row object's bytes.
    pub fn feed<E>(
        &mut self,
        chunk: &[u8],
        mut each: impl FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut start = 0usize;
        for (i, &b) in chunk.iter().enumerate() {
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => {
                    if !self.in_row
                        && b == b'{'
                        && self.stack.len() == ROW_DEPTH
                        && self.stack.last() == Some(&b'[')
                    {
                        // A row starts: flush the skeleton so far, start the row here.
                        self.skeleton.extend_from_slice(&chunk[start..i]);
                        self.skeleton.push(b'0');
                        self.in_row = true;
                        self.row.clear();
                        start = i;
                    }
                    self.stack.push(b);
                }
                b'}' | b']' => {
                    self.stack.pop();
                    if self.in_row && self.stack.len() == ROW_DEPTH {
                        self.row.extend_from_slice(&chunk[start..=i]);
                        self.in_row = false;
                        self.rows += 1;
                        each(&self.row)?;
                        start = i + 1;
                    }
                }
                _ => {}
            }
        }
        if self.in_row {
            self.row.extend_from_slice(&chunk[start..]);
        } else {
            self.skeleton.extend_from_slice(&chunk[start..]);
        }
        Ok(())
    }

    /// Number of rows handed over.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The body without its rows (each replaced by `0`); `None` when the body ended inside a
    /// string or an open container (truncated).
    pub fn finish(self) -> Option<Vec<u8>> {
        (!self.in_string && !self.in_row && self.stack.is_empty()).then_some(self.skeleton)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(body: &str, chunk: usize) -> (Vec<String>, Option<String>) {
        let mut s = RowScanner::new();
        let mut rows = Vec::new();
        for part in body.as_bytes().chunks(chunk) {
            s.feed::<()>(part, |r| {
                rows.push(String::from_utf8(r.to_vec()).unwrap());
                Ok(())
            })
            .unwrap();
        }
        (rows, s.finish().map(|k| String::from_utf8(k).unwrap()))
    }

    #[test]
    fn rows_are_cut_out_whatever_the_chunking() {
        let body = r#"{"error":false,"data":[{"id":1,"username":"a{[\"}","x":{"y":[1]}},{"id":"2","firstname":null}]}"#;
        for chunk in [1, 2, 3, 7, 64, 1000] {
            let (rows, skeleton) = scan(body, chunk);
            assert_eq!(
                rows,
                vec![
                    r#"{"id":1,"username":"a{[\"}","x":{"y":[1]}}"#,
                    r#"{"id":"2","firstname":null}"#
                ],
                "chunk {chunk}"
            );
            assert_eq!(skeleton.as_deref(), Some(r#"{"error":false,"data":[0,0]}"#));
        }
    }

    #[test]
    fn errors_and_truncation() {
        let (rows, skeleton) = scan(r#"{"error":true,"message":"Invalid API key"}"#, 5);
        assert!(rows.is_empty());
        assert_eq!(
            skeleton.as_deref(),
            Some(r#"{"error":true,"message":"Invalid API key"}"#)
        );
        let (rows, skeleton) = scan(r#"{"error":false,"data":[{"id":1},{"id":2"#, 4);
        assert_eq!(rows, vec![r#"{"id":1}"#]);
        assert_eq!(skeleton, None);
        let (_, skeleton) = scan("<html><body>Error</body></html>", 4);
        assert_eq!(skeleton.as_deref(), Some("<html><body>Error</body></html>"));
    }
}
