//! HTTP/1.1 on the upstream side, as bytes: the request head the proxy writes, the response
//! head it reads and how the response body is framed (RFC 9112). Pure; the I/O is in
//! [`super::upstream`].
//!
//! Why not hyper's client: it drives every upstream connection from a task of its own and
//! passes each request and response through channels, which was a third of the proxy's CPU
//! time per request. The proxy needs only a small part of HTTP/1.1 here, talking to one known
//! upstream, and the message it writes was already parsed and re-framed by hyper's server.

use bytes::{Buf, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode, Version};

/// The largest response head accepted (status line and fields). nginx's default is 4–8 KiB;
/// Chamilo sets a handful of cookies at most.
pub const MAX_HEAD: usize = 64 * 1024;

/// The most fields a response head may have.
const MAX_FIELDS: usize = 128;

/// The longest chunk-size line (with extensions) or trailer field.
const MAX_LINE: usize = 4 * 1024;

/// The most trailer bytes accepted (they are read and dropped).
const MAX_TRAILERS: usize = 16 * 1024;

/// The upstream broke HTTP/1.1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum H1Error {
    #[error("response head larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    #[error("invalid response head: {0}")]
    Head(&'static str),
    #[error("invalid Content-Length")]
    ContentLength,
    #[error("invalid chunked body: {0}")]
    Chunk(&'static str),
}

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

/// The size line of a chunk of `len` bytes (`len` > 0).
pub fn chunk_size_line(len: usize) -> Bytes {
    Bytes::from(format!("{len:x}\r\n"))
}

/// The last chunk and an empty trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// How the response body is delimited (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: `HEAD`, `1xx`, `204`, `304`, or `Content-Length: 0`.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding` ending in `chunked`.
    Chunked,
    /// Until the upstream closes the connection.
    UntilClose,
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub version: Version,
    /// The reason phrase when it is not the canonical one for `status`.
    pub reason: Option<Bytes>,
    /// All fields, hop-by-hop ones included (the caller strips them).
    pub headers: HeaderMap,
    pub framing: Framing,
    /// Whether the connection can carry another request after this response's body.
    pub keep_alive: bool,
}

/// Parses a response head from the front of `buf` and removes it from there. `Ok(None)`: not
/// complete yet. `head_request`: the request was `HEAD`, so no body follows whatever the
/// fields say.
pub fn parse_response_head(
    buf: &mut BytesMut,
    head_request: bool,
) -> Result<Option<ResponseHead>, H1Error> {
    let mut fields = [const { std::mem::MaybeUninit::uninit() }; MAX_FIELDS];
    let mut parsed = httparse::Response::new(&mut []);
    let config = httparse::ParserConfig::default();
    let len = match config.parse_response_with_uninit_headers(&mut parsed, buf, &mut fields) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(H1Error::HeadTooLarge)
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(H1Error::Head("too many fields")),
        Err(_) => return Err(H1Error::Head("malformed")),
    };
    let version = match parsed.version {
        Some(1) => Version::HTTP_11,
        Some(0) => Version::HTTP_10,
        _ => return Err(H1Error::Head("unknown version")),
    };
    let status = parsed
        .code
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or(H1Error::Head("bad status code"))?;

    // Field values become slices of the head's bytes, not copies.
    let base = buf.as_ptr() as usize;
    let reason_at = parsed
        .reason
        .filter(|r| !r.is_empty() && status.canonical_reason() != Some(*r))
        .map(|r| (r.as_ptr() as usize - base, r.len()));
    let spans = FieldSpans::record(buf, parsed.headers);
    let head = buf.split_to(len).freeze();

    // The fields that delimit the body are noted on the way, not looked up afterwards.
    let mut delimiters = Delimiters::default();
    let mut headers = spans
        .decode(&head, |name, value| delimiters.note(name, value))
        .map_err(H1Error::Head)?;
    let reason = reason_at.map(|(from, len)| head.slice(from..from + len));

    let keep_alive = match version {
        Version::HTTP_11 => !delimiters.close,
        _ => !delimiters.close && delimiters.keep_alive,
    };
    let (framing, framing_closes) = delimiters.framing(status, head_request)?;
    if framing == Framing::Chunked && framing_closes {
        // Transfer-Encoding overrides Content-Length, which must not be passed on (RFC 9112
        // §6.3, 3).
        headers.remove(header::CONTENT_LENGTH);
    }
    if let (Some(Ok(n)), None, 2..) = (
        &delimiters.length,
        delimiters.chunked,
        delimiters.length_items,
    ) {
        // The same length repeated (RFC 9112 §6.3, 5 accepts it): one field goes on.
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(*n));
    }
    Ok(Some(ResponseHead {
        status,
        version,
        reason,
        headers,
        framing,
        keep_alive: keep_alive && !framing_closes && framing != Framing::UntilClose,
    }))
}

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

/// What the fields of a response say about its body and its connection.
#[derive(Debug, Default)]
struct Delimiters {
    /// `Transfer-Encoding` seen: whether its last coding is `chunked`.
    chunked: Option<bool>,
    /// `Content-Length` seen, and its value if all its values agree.
    length: Option<Result<u64, H1Error>>,
    /// How many `Content-Length` values there were (fields and comma-separated items).
    length_items: u32,
    close: bool,
    keep_alive: bool,
}

impl Delimiters {
    fn note(&mut self, name: &HeaderName, value: &[u8]) {
        let items = || value.split(|b| *b == b',').map(<[u8]>::trim_ascii);
        if *name == header::CONNECTION {
            for token in items() {
                self.close |= token.eq_ignore_ascii_case(b"close");
                self.keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
            }
        } else if *name == header::TRANSFER_ENCODING {
            if let Some(last) = items().rfind(|coding| !coding.is_empty()) {
                self.chunked = Some(last.eq_ignore_ascii_case(b"chunked"));
            }
        } else if *name == header::CONTENT_LENGTH {
            for item in items() {
                self.length_items += 1;
                let n = parse_length(item).ok_or(H1Error::ContentLength);
                self.length = Some(match (self.length.take(), n) {
                    (None, n) => n,
                    (Some(Ok(seen)), Ok(n)) if seen == n => Ok(n),
                    _ => Err(H1Error::ContentLength),
                });
            }
        }
    }

    /// The body's framing (RFC 9112 §6.3), and whether it forbids reusing the connection
    /// afterwards (a message with both `Transfer-Encoding` and `Content-Length` does).
    fn framing(&self, status: StatusCode, head_request: bool) -> Result<(Framing, bool), H1Error> {
        if head_request
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return Ok((Framing::Empty, false));
        }
        match (self.chunked, &self.length) {
            (Some(true), length) => Ok((Framing::Chunked, length.is_some())),
            (Some(false), _) => Ok((Framing::UntilClose, true)),
            (None, Some(Ok(0))) => Ok((Framing::Empty, false)),
            (None, Some(Ok(n))) => Ok((Framing::Length(*n), false)),
            (None, Some(Err(err))) => Err(err.clone()),
            (None, None) => Ok((Framing::UntilClose, true)),
        }
    }
}

/// A length in decimal digits, nothing else (no sign, no spaces), that fits in 64 bits.
pub(crate) fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Decodes a chunked body (RFC 9112 §7.1) as its bytes arrive; extensions and trailers are
/// read and dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChunkedDecoder {
    state: ChunkState,
    trailer_bytes: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum ChunkState {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

impl ChunkedDecoder {
    /// The next piece of body data at the front of `buf` (removed from it). `Ok(None)` when
    /// more bytes are needed, or when the body is complete ([`Self::is_done`]).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, H1Error> {
        loop {
            match self.state {
                ChunkState::Size => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(None);
                    };
                    let size = parse_chunk_size(&line)?;
                    self.state = if size == 0 {
                        ChunkState::Trailers
                    } else {
                        ChunkState::Data(size)
                    };
                }
                ChunkState::Data(remaining) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let n = usize::try_from(remaining).map_or(buf.len(), |r| r.min(buf.len()));
                    let data = buf.split_to(n).freeze();
                    let left = remaining - n as u64;
                    self.state = if left == 0 {
                        ChunkState::DataEnd
                    } else {
                        ChunkState::Data(left)
                    };
                    return Ok(Some(data));
                }
                ChunkState::DataEnd => {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(H1Error::Chunk("data not followed by CRLF"));
                    }
                    buf.advance(2);
                    self.state = ChunkState::Size;
                }
                ChunkState::Trailers => {
                    let Some(line) = take_line(buf)? else {
                        return Ok(None);
                    };
                    if line.is_empty() {
                        self.state = ChunkState::Done;
                        return Ok(None);
                    }
                    self.trailer_bytes += line.len() + 2;
                    if self.trailer_bytes > MAX_TRAILERS {
                        return Err(H1Error::Chunk("trailers too large"));
                    }
                }
                ChunkState::Done => return Ok(None),
            }
        }
    }

    /// Whether the last chunk and the trailer section have been read.
    pub fn is_done(&self) -> bool {
        self.state == ChunkState::Done
    }
}

/// Takes one CRLF-terminated line off the front of `buf`, without its CRLF.
fn take_line(buf: &mut BytesMut) -> Result<Option<BytesMut>, H1Error> {
    let Some(lf) = buf.iter().take(MAX_LINE + 2).position(|b| *b == b'\n') else {
        return if buf.len() > MAX_LINE + 1 {
            Err(H1Error::Chunk("line too long"))
        } else {
            Ok(None)
        };
    };
    if lf == 0 || buf[lf - 1] != b'\r' {
        return Err(H1Error::Chunk("bare LF"));
    }
    let mut line = buf.split_to(lf + 1);
    line.truncate(lf - 1);
    Ok(Some(line))
}

/// `chunk-size [ chunk-ext ]`: hexadecimal, then nothing, or whitespace and `;` extensions.
fn parse_chunk_size(line: &[u8]) -> Result<u64, H1Error> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(H1Error::Chunk("bad chunk size"));
    }
    let rest = line[digits..].trim_ascii_start();
    if !rest.is_empty() && rest[0] != b';' {
        return Err(H1Error::Chunk("bad chunk size"));
    }
    if rest.iter().any(|b| b.is_ascii_control() && *b != b'\t') {
        return Err(H1Error::Chunk("control character in extension"));
    }
    let mut size = 0u64;
    for d in &line[..digits] {
        let v = match d {
            b'0'..=b'9' => d - b'0',
            b'a'..=b'f' => d - b'a' + 10,
            _ => d - b'A' + 10,
        };
        size = (size << 4) | u64::from(v);
    }
    Ok(size)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn head(text: &str, head_request: bool) -> Result<Option<ResponseHead>, H1Error> {
        let mut buf = BytesMut::from(text);
        parse_response_head(&mut buf, head_request)
    }

    fn ok(text: &str) -> ResponseHead {
        head(text, false).unwrap().unwrap()
    }

    /// The fields of an encoded request head, for tests of what the upstream gets.
    pub(crate) fn request_fields(head: &[u8]) -> HeaderMap {
        let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
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

    #[test]
    fn response_head_is_parsed_and_removed_from_the_buffer() {
        let mut buf = BytesMut::from(
            "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nhello",
        );
        let r = parse_response_head(&mut buf, false).unwrap().unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.version, Version::HTTP_11);
        assert_eq!(r.reason, None);
        assert_eq!(r.framing, Framing::Length(5));
        assert!(r.keep_alive);
        let cookies: Vec<_> = r.headers.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert_eq!(&buf[..], b"hello");
    }

    #[test]
    fn partial_heads_wait_and_huge_ones_fail() {
        assert!(head("HTTP/1.1 200 OK\r\nContent-Le", false)
            .unwrap()
            .is_none());
        let huge = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD));
        assert_eq!(head(&huge, false).unwrap_err(), H1Error::HeadTooLarge);
        let many: String = (0..=MAX_FIELDS).map(|i| format!("x{i}: 1\r\n")).collect();
        assert!(head(&format!("HTTP/1.1 200 OK\r\n{many}\r\n"), false).is_err());
        assert!(head("HTTP/1.1 20 OK\r\n\r\n", false).is_err());
        assert!(head("HTTP/2.0 200 OK\r\n\r\n", false).is_err());
        assert!(head("SSH-2.0-OpenSSH\r\n\r\n", false).is_err());
    }

    #[test]
    fn a_custom_reason_phrase_is_kept() {
        assert_eq!(
            ok("HTTP/1.1 404 Nope\r\ncontent-length: 0\r\n\r\n")
                .reason
                .as_deref(),
            Some(&b"Nope"[..])
        );
        assert_eq!(
            ok("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n").reason,
            None
        );
    }

    #[test]
    fn framing_follows_rfc_9112_section_6_3() {
        let cases = [
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
                Framing::Empty,
            ),
            ("HTTP/1.1 204 No Content\r\n\r\n", Framing::Empty),
            (
                "HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n",
                Framing::Empty,
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n",
                Framing::Chunked,
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, Chunked\r\n\r\n",
                Framing::Chunked,
            ),
            (
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n",
                Framing::UntilClose,
            ),
            ("HTTP/1.1 200 OK\r\n\r\n", Framing::UntilClose),
            (
                "HTTP/1.1 200 OK\r\ncontent-length: 7, 7\r\n\r\n",
                Framing::Length(7),
            ),
        ];
        for (text, framing) in cases {
            assert_eq!(ok(text).framing, framing, "{text}");
        }
        let r = head("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n", true)
            .unwrap()
            .unwrap();
        assert_eq!(r.framing, Framing::Empty);
        assert!(r.keep_alive);
        assert_eq!(r.headers["content-length"], "10");
    }

    #[test]
    fn transfer_encoding_beats_content_length_and_closes() {
        let r = ok("HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n");
        assert_eq!(r.framing, Framing::Chunked);
        assert!(r.headers.get("content-length").is_none());
        assert!(!r.keep_alive);
    }

    #[test]
    fn bad_content_lengths_are_errors() {
        for cl in [
            "-1",
            "1 2",
            "0x10",
            "",
            "3, 4",
            "+5",
            "99999999999999999999",
        ] {
            let text = format!("HTTP/1.1 200 OK\r\ncontent-length: {cl}\r\n\r\n");
            assert_eq!(
                head(&text, false).unwrap_err(),
                H1Error::ContentLength,
                "{cl}"
            );
        }
        let two = "HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n";
        assert_eq!(head(two, false).unwrap_err(), H1Error::ContentLength);
    }

    #[test]
    fn a_repeated_length_goes_on_as_one_field() {
        for fields in [
            "content-length: 6\r\ncontent-length: 6\r\n",
            "content-length: 6, 6\r\n",
        ] {
            let parsed = ok(&format!("HTTP/1.1 200 OK\r\n{fields}x: 1\r\n\r\n"));
            assert_eq!(parsed.framing, Framing::Length(6));
            let lengths: Vec<_> = parsed
                .headers
                .get_all(header::CONTENT_LENGTH)
                .iter()
                .collect();
            assert_eq!(lengths, ["6"], "{fields}");
        }
        let single = ok("HTTP/1.1 200 OK\r\ncontent-length: 06\r\n\r\n");
        assert_eq!(single.headers[header::CONTENT_LENGTH], "06");
    }

    #[test]
    fn keep_alive_follows_version_and_connection() {
        let cl = "content-length: 1\r\n";
        assert!(ok(&format!("HTTP/1.1 200 OK\r\n{cl}\r\n")).keep_alive);
        assert!(!ok(&format!("HTTP/1.1 200 OK\r\n{cl}connection: Close\r\n\r\n")).keep_alive);
        assert!(!ok(&format!("HTTP/1.0 200 OK\r\n{cl}\r\n")).keep_alive);
        assert!(
            ok(&format!(
                "HTTP/1.0 200 OK\r\n{cl}connection: keep-alive\r\n\r\n"
            ))
            .keep_alive
        );
        assert!(!ok("HTTP/1.1 200 OK\r\n\r\n").keep_alive);
    }

    fn decode_all(input: &[u8], step: usize) -> Result<(Vec<u8>, usize), H1Error> {
        let mut decoder = ChunkedDecoder::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for piece in input.chunks(step.max(1)) {
            buf.extend_from_slice(piece);
            while let Some(data) = decoder.decode(&mut buf)? {
                out.extend_from_slice(&data);
            }
            if decoder.is_done() {
                break;
            }
        }
        assert!(decoder.is_done(), "incomplete");
        Ok((out, buf.len()))
    }

    #[test]
    fn chunked_bodies_decode_with_extensions_and_trailers() {
        let body = b"5;name=value\r\nhello\r\n6 ; x\r\n world\r\n0\r\nx-sum: 1\r\n\r\nNEXT";
        for step in [1, 2, 3, 7, body.len()] {
            let (out, left) = decode_all(body, step).unwrap();
            assert_eq!(out, b"hello world");
            // What follows the body is left for the next response.
            assert!(left <= 4);
        }
    }

    #[test]
    fn bad_chunked_bodies_are_errors() {
        for bad in [
            &b"x\r\nhello\r\n"[..],
            b"5\r\nhelloXX",
            b"5\nhello\r\n",
            b"11111111111111111\r\n",
            b"5 x\r\nhello\r\n",
            b"5;a\x01\r\nhello\r\n",
        ] {
            let mut decoder = ChunkedDecoder::default();
            let mut buf = BytesMut::from(bad);
            let mut result = Ok(None);
            for _ in 0..4 {
                result = decoder.decode(&mut buf);
                if result.is_err() {
                    break;
                }
            }
            assert!(result.is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let long = format!("5;{}\r\n", "a".repeat(MAX_LINE + 10));
        let mut buf = BytesMut::from(long.as_str());
        assert!(ChunkedDecoder::default().decode(&mut buf).is_err());
        let trailers = format!("0\r\n{}\r\n", "x: y\r\n".repeat(MAX_TRAILERS / 6 + 1));
        assert!(decode_all(trailers.as_bytes(), 64).is_err());
    }

    proptest! {
        /// Whatever the upstream sends, the parser answers without panicking: a head it
        /// accepts is taken off the buffer whole, and a chunked body never yields more bytes
        /// than arrived. (`fuzz/fuzz_targets/upstream_h1.rs` explores further.)
        #[test]
        fn arbitrary_bytes_are_answered_not_panicked_on(
            head in proptest::collection::vec(any::<u8>(), 0..300),
            body in proptest::collection::vec(any::<u8>(), 0..300),
            head_request in any::<bool>(),
        ) {
            let mut buf = BytesMut::from(&head[..]);
            if let Ok(Some(_)) = parse_response_head(&mut buf, head_request) {
                prop_assert!(buf.len() < head.len());
            }
            let mut buf = BytesMut::from(&body[..]);
            let mut decoder = ChunkedDecoder::default();
            let mut yielded = 0;
            while let Ok(Some(data)) = decoder.decode(&mut buf) {
                yielded += data.len();
            }
            prop_assert!(yielded <= body.len());
        }

        /// Any body, cut into any chunks and delivered in any pieces, decodes to itself.
        #[test]
        fn chunked_round_trip(
            body in proptest::collection::vec(any::<u8>(), 0..2000),
            cuts in proptest::collection::vec(1usize..300, 1..20),
            step in 1usize..200,
        ) {
            let mut encoded = Vec::new();
            let mut rest = &body[..];
            let mut i = 0;
            while !rest.is_empty() {
                let n = cuts[i % cuts.len()].min(rest.len());
                encoded.extend_from_slice(&chunk_size_line(n));
                encoded.extend_from_slice(&rest[..n]);
                encoded.extend_from_slice(b"\r\n");
                rest = &rest[n..];
                i += 1;
            }
            encoded.extend_from_slice(LAST_CHUNK);
            let (out, left) = decode_all(&encoded, step).unwrap();
            prop_assert_eq!(out, body);
            prop_assert_eq!(left, 0);
        }
    }
}
