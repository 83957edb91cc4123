//! The request side, as the upstream client writes it: body framing and the head.

use http::header::{self, HeaderMap};
use http::Method;

/// How a request body is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body.
    Empty,
    /// `Content-Length` is among the fields: the bytes as they are.
    Length(u64),
    /// No length known: `Transfer-Encoding: chunked` is added.
    Chunked,
}

impl RequestFraming {
    /// How a request with these fields is sent: as declared by `Content-Length` (hyper's
    /// server checked it against the body), empty, or chunked when the length is unknown
    /// (an HTTP/2 request without `content-length`, a chunked HTTP/1.1 one).
    pub fn of(headers: &HeaderMap, body_is_empty: bool) -> Self {
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        match declared {
            Some(0) | None if body_is_empty => Self::Empty,
            Some(n) => Self::Length(n),
            None => Self::Chunked,
        }
    }
}

/// Writes a request head field by field; the caller decides which fields the upstream gets.
#[derive(Debug)]
pub struct RequestHeadWriter(Vec<u8>);

impl RequestHeadWriter {
    /// Starts with the request line; `target` is origin-form.
    pub fn new(method: &Method, target: &str, fields: usize) -> Self {
        let mut out = Vec::with_capacity(64 + target.len() + 48 * fields);
        out.extend_from_slice(method.as_str().as_bytes());
        out.push(b' ');
        out.extend_from_slice(target.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\n");
        Self(out)
    }

    /// One field. Names and values come from `HeaderName`/`HeaderValue` or constants, which
    /// cannot hold CR or LF.
    pub fn field(&mut self, name: &[u8], value: &[u8]) {
        self.0.extend_from_slice(name);
        self.0.extend_from_slice(b": ");
        self.0.extend_from_slice(value);
        self.0.extend_from_slice(b"\r\n");
    }

    /// One field whose value `write` appends (from `HeaderValue`s, addresses and constants,
    /// never CR or LF).
    pub fn field_with(&mut self, name: &[u8], write: impl FnOnce(&mut Vec<u8>)) {
        self.0.extend_from_slice(name);
        self.0.extend_from_slice(b": ");
        write(&mut self.0);
        self.0.extend_from_slice(b"\r\n");
    }

    /// One field whose value is `parts` joined with `separator`.
    pub fn joined_field<'a>(
        &mut self,
        name: &[u8],
        parts: impl Iterator<Item = &'a [u8]>,
        separator: &[u8],
    ) {
        self.0.extend_from_slice(name);
        self.0.extend_from_slice(b": ");
        for (i, part) in parts.enumerate() {
            if i > 0 {
                self.0.extend_from_slice(separator);
            }
            self.0.extend_from_slice(part);
        }
        self.0.extend_from_slice(b"\r\n");
    }

    /// Ends the head; `Transfer-Encoding: chunked` is added for [`RequestFraming::Chunked`].
    pub fn finish(mut self, framing: RequestFraming) -> Vec<u8> {
        if framing == RequestFraming::Chunked {
            self.field(b"transfer-encoding", b"chunked");
        }
        self.0.extend_from_slice(b"\r\n");
        self.0
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use http::header::{HeaderName, HeaderValue};

    /// The fields of an encoded request head, for tests of what the upstream gets.
    pub(crate) fn request_fields(head: &[u8]) -> HeaderMap {
        let mut fields = [httparse::EMPTY_HEADER; crate::http1::MAX_FIELDS];
        let mut req = httparse::Request::new(&mut fields);
        assert!(req.parse(head).unwrap().is_complete());
        let mut map = HeaderMap::new();
        for f in req.headers.iter() {
            map.append(
                HeaderName::from_bytes(f.name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(f.value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn request_head_is_written_as_given() {
        let mut w = RequestHeadWriter::new(&Method::GET, "/a?b=1", 3);
        w.field(b"host", b"lms.example");
        w.joined_field(b"cookie", [&b"a=1"[..], b"b=2"].into_iter(), b"; ");
        w.field(b"x-many", b"caf\xe9");
        assert_eq!(
            w.finish(RequestFraming::Empty),
            b"GET /a?b=1 HTTP/1.1\r\nhost: lms.example\r\ncookie: a=1; b=2\r\n\
              x-many: caf\xe9\r\n\r\n"
        );
        let w = RequestHeadWriter::new(&Method::POST, "/", 0);
        let head = w.finish(RequestFraming::Chunked);
        assert!(head.ends_with(b"transfer-encoding: chunked\r\n\r\n"));
        assert_eq!(request_fields(&head)["transfer-encoding"], "chunked");
    }

    #[test]
    fn request_framing_follows_the_declared_length() {
        let mut h = HeaderMap::new();
        assert_eq!(RequestFraming::of(&h, true), RequestFraming::Empty);
        assert_eq!(RequestFraming::of(&h, false), RequestFraming::Chunked);
        h.insert("content-length", HeaderValue::from_static("0"));
        assert_eq!(RequestFraming::of(&h, true), RequestFraming::Empty);
        h.insert("content-length", HeaderValue::from_static("12"));
        assert_eq!(RequestFraming::of(&h, false), RequestFraming::Length(12));
    }
}
