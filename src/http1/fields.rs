//! Field values as slices of the head's bytes: a head parsed by httparse borrows its buffer,
//! and `FieldSpans` carries where each field lay across the split that turns the buffer
//! into [`Bytes`].

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue};

use super::MAX_FIELDS;

/// Where each field of a head parsed by httparse lies in its buffer, so that once the head is
/// split off as [`Bytes`] its values become slices of it instead of copies.
///
/// The table itself is per thread and reused: a table in each head's frame cost zeroing and
/// moving 2 KiB twice per request. This token stands for what [`FieldSpans::record`] put
/// there; recording and decoding happen without an `await` in between, and a token whose
/// table was overwritten meanwhile is refused instead of misread.
#[must_use]
pub(crate) struct FieldSpans {
    count: usize,
    generation: u64,
    /// The table is this thread's: the token must not move to another one.
    _this_thread: std::marker::PhantomData<*const ()>,
}

/// (name start, name length, value start, value length) of one field.
type Span = (u32, u32, u32, u32);

thread_local! {
    static SPANS: std::cell::RefCell<(u64, Vec<Span>)> =
        const { std::cell::RefCell::new((0, Vec::new())) };
}

impl FieldSpans {
    /// The most fields a head may have (requests and responses alike).
    pub(crate) const MAX: usize = MAX_FIELDS;

    /// Records `fields`, which httparse parsed from `buf` (a head is far below 4 GiB).
    pub(crate) fn record(buf: &[u8], fields: &[httparse::Header<'_>]) -> Self {
        let base = buf.as_ptr() as usize;
        let offset = |s: &[u8]| (s.as_ptr() as usize - base) as u32;
        SPANS.with_borrow_mut(|(generation, spans)| {
            *generation += 1;
            spans.clear();
            spans.extend(fields.iter().map(|field| {
                (
                    offset(field.name.as_bytes()),
                    field.name.len() as u32,
                    offset(field.value),
                    field.value.len() as u32,
                )
            }));
            Self {
                count: spans.len(),
                generation: *generation,
                _this_thread: std::marker::PhantomData,
            }
        })
    }

    /// The fields as a map over `head`, the bytes `record` saw (split off and frozen);
    /// `note` sees each field on the way.
    pub(crate) fn decode(
        self,
        head: &Bytes,
        mut note: impl FnMut(&HeaderName, &[u8]),
    ) -> Result<HeaderMap, &'static str> {
        SPANS.with_borrow(|(generation, spans)| {
            if *generation != self.generation || spans.len() != self.count {
                return Err("field table reused");
            }
            let mut headers = HeaderMap::with_capacity(self.count);
            for &(name_at, name_len, value_at, value_len) in spans {
                let (name_at, value_at) = (name_at as usize, value_at as usize);
                let name = head
                    .get(name_at..name_at + name_len as usize)
                    .and_then(|name| HeaderName::from_bytes(name).ok())
                    .ok_or("bad field name")?;
                let value_end = value_at + value_len as usize;
                if value_end > head.len() {
                    return Err("bad field value");
                }
                let value = HeaderValue::from_maybe_shared(head.slice(value_at..value_end))
                    .map_err(|_| "bad field value")?;
                note(&name, value.as_bytes());
                headers.append(name, value);
            }
            Ok(headers)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::response::tests::ok;

    /// Records and decodes one request head the way the express lane does.
    fn request_spans(text: &[u8]) -> (FieldSpans, Bytes) {
        let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let mut req = httparse::Request::new(&mut fields);
        let len = match req.parse(text) {
            Ok(httparse::Status::Complete(len)) => len,
            other => panic!("{other:?}"),
        };
        let spans = FieldSpans::record(text, req.headers);
        (spans, Bytes::copy_from_slice(&text[..len]))
    }

    #[test]
    fn a_field_table_overwritten_between_record_and_decode_is_refused() {
        let text = b"GET / HTTP/1.1\r\nHost: a\r\nX-AB: 1\r\n\r\n";
        let (alone, head) = request_spans(text);
        let fields = alone.decode(&head, |_, _| {}).unwrap();
        assert_eq!(
            (fields.len(), &fields["x-ab"]),
            (2, &HeaderValue::from_static("1"))
        );

        // A response head and a request head are parsed on this thread in between: each gets
        // its own fields. The last one's spans also fit the first head (they would misread
        // it as `x-a: " "`), so only the token's check stands between it and wrong fields.
        let (first, first_head) = request_spans(text);
        let response = ok("HTTP/1.1 200 OK\r\nX-D: 4\r\ncontent-length: 0\r\n\r\n");
        assert_eq!(response.headers["x-d"], "4");
        let (other, other_head) = request_spans(b"GET / HTTP/1.1\r\nHost: b\r\nX-A: 2\r\n\r\n");
        assert_eq!(other.decode(&other_head, |_, _| {}).unwrap()["x-a"], "2");
        assert_eq!(
            first.decode(&first_head, |_, _| {}).unwrap_err(),
            "field table reused"
        );
    }
}
