//! The express lane's HTTP/1.1 as bytes: which request heads it serves, and the response head
//! it writes. Pure; the I/O is in [`super`].
//!
//! The lane takes only the plainest requests — HTTP/1.1, origin-form target, no body or one
//! `Content-Length` body, no `Expect`, no upgrade — and sends everything else, malformed heads
//! included, to hyper's server, which answers them as it always did.

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName};
use http::{Method, Request, StatusCode, Uri, Version};

use crate::http1::fields::FieldSpans;
use crate::http1::parse_length;

/// The longest request head, as for responses (nginx's default is 8 KiB a line): browsers
/// send 1–2 KiB, a little more with many cookies.
pub use crate::http1::MAX_HEAD;

/// A request head the express lane serves.
#[derive(Debug)]
pub struct ExpressRequest {
    /// Method, target, version and fields; the fields are slices of the head's bytes.
    pub request: Request<()>,
    /// The client asked to close the connection after this response (`Connection: close`).
    pub close: bool,
    /// The request body's length by its `Content-Length` (0 without one).
    pub body_length: u64,
    /// The head as it came, for hyper when the router does not send the request upstream.
    pub head: Bytes,
}

/// Why the lane does not serve a request head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotServed {
    /// hyper's server takes the connection over, starting with this request; it answers the
    /// request, or refuses it as it always did.
    ToHyper(&'static str),
    /// The head is longer than [`MAX_HEAD`]: answered with this status (`431`, as hyper does)
    /// by the lane, which then closes the connection.
    TooLarge(StatusCode),
}

use NotServed::ToHyper;

/// Parses the request head at the front of `buf`. `Ok(Some)`: the head has been removed from
/// `buf`. `Ok(None)`: the head is not complete yet. `Err`: `buf` is left as it was, for hyper.
pub fn parse_request_head(buf: &mut BytesMut) -> Result<Option<ExpressRequest>, NotServed> {
    let mut fields = [const { std::mem::MaybeUninit::uninit() }; FieldSpans::MAX];
    let mut parsed = httparse::Request::new(&mut []);
    let config = httparse::ParserConfig::default();
    let len = match config.parse_request_with_uninit_headers(&mut parsed, buf, &mut fields) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            // 431 even when the request line alone is too long: hyper, which serves TLS,
            // answers so (it checks the head's size before the target's length), and a
            // request gets one answer whichever lane serves it.
            return Err(NotServed::TooLarge(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(_) => return Err(ToHyper("malformed head")),
    };
    if parsed.version != Some(1) {
        return Err(ToHyper("HTTP/1.0"));
    }
    let method = parsed
        .method
        .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
        .ok_or(ToHyper("method"))?;
    let target = parsed.path.ok_or(ToHyper("target"))?;
    if !target.starts_with('/') {
        // Absolute form, `*`, authority form: rare, and hyper knows them.
        return Err(ToHyper("target form"));
    }
    let mut close = false;
    let mut length = None;
    let mut hosts = 0;
    for field in parsed.headers.iter() {
        let name = field.name.as_bytes();
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        } else if let Some(reason) = needs_hyper(name, field.value, &mut close, &mut length) {
            return Err(ToHyper(reason));
        }
    }
    if hosts != 1 {
        // Refused by the dispatcher, as on every other connection.
        return Err(ToHyper("host"));
    }
    let base = buf.as_ptr() as usize;
    let target_at = target.as_ptr() as usize - base;
    let target_range = target_at..target_at + target.len();
    let spans = FieldSpans::record(buf, parsed.headers);

    let head = buf.split_to(len).freeze();
    let decoded = Uri::from_maybe_shared(head.slice(target_range))
        .map_err(|_| ToHyper("target"))
        .and_then(|uri| {
            let headers = spans.decode(&head, |_, _| {}).map_err(ToHyper)?;
            Ok((uri, headers))
        });
    let (uri, headers) = match decoded {
        Ok(decoded) => decoded,
        Err(reason) => {
            // httparse and `http` disagree about a byte: put the head back for hyper.
            restore(buf, &head);
            return Err(reason);
        }
    };
    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Ok(Some(ExpressRequest {
        request,
        close,
        body_length: length.unwrap_or(0),
        head,
    }))
}

/// Whether one request field takes the request out of the express lane (and why); notes
/// `Connection: close` and the body's length on the way. Any doubt about the body's framing
/// goes to hyper, which refuses what must be refused (RFC 9112 §6.3).
fn needs_hyper(
    name: &[u8],
    value: &[u8],
    close: &mut bool,
    length: &mut Option<u64>,
) -> Option<&'static str> {
    if name.eq_ignore_ascii_case(b"content-length") {
        if length.is_some() {
            return Some("repeated content-length");
        }
        return match decimal(value) {
            Ok(n) => {
                *length = Some(n);
                None
            }
            Err(reason) => Some(reason),
        };
    }
    if name.eq_ignore_ascii_case(b"transfer-encoding") {
        return Some("transfer-encoding");
    }
    if name.eq_ignore_ascii_case(b"expect") {
        return Some("expect");
    }
    if name.eq_ignore_ascii_case(b"upgrade") {
        return Some("upgrade");
    }
    if name.eq_ignore_ascii_case(b"connection") {
        for token in value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
            if token.eq_ignore_ascii_case(b"close") {
                *close = true;
            } else if token.eq_ignore_ascii_case(b"upgrade") {
                return Some("upgrade");
            }
        }
    }
    None
}

/// A `Content-Length` value: digits only (no sign, no list), at most 18 of them (an
/// exabyte) on this lane; anything else goes to hyper.
fn decimal(value: &[u8]) -> Result<u64, &'static str> {
    let digits = value.trim_ascii();
    match digits.len() {
        ..=18 => parse_length(digits).ok_or("invalid content-length"),
        _ => Err("invalid content-length"),
    }
}

/// Puts `head` back in front of what `buf` still holds.
pub fn restore(buf: &mut BytesMut, head: &Bytes) {
    let mut whole = BytesMut::with_capacity(head.len() + buf.len());
    whole.extend_from_slice(head);
    whole.extend_from_slice(buf);
    *buf = whole;
}

/// How a response body goes to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body bytes: a `HEAD` request, `1xx`, `204`, `304`. The fields go as they are
    /// (a `HEAD` response keeps the `Content-Length` of what a `GET` would return).
    None,
    /// Exactly this many bytes, told by one `Content-Length` field with this value (in place
    /// of the fields' own, added when they have none).
    Length(u64),
    /// Length unknown: chunked.
    Chunked,
}

impl BodyFraming {
    /// The framing of a response to a `head_request` (or not) with these fields, whose body
    /// knows its exact length (`exact`) or not.
    pub fn of(
        head_request: bool,
        status: StatusCode,
        headers: &HeaderMap,
        exact: Option<u64>,
    ) -> Self {
        if head_request
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
        {
            return Self::None;
        }
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        match declared.or(exact) {
            Some(n) => Self::Length(n),
            None => Self::Chunked,
        }
    }
}

/// Writes a response head: the status line (with the upstream's own reason phrase when it
/// had one), the fields in their order, then what this connection adds: the framing field
/// (a known length replaces the fields' `Content-Length` where the first one was), `date`
/// when the fields have none, and `connection: close` when the connection ends after this
/// response. Fields that describe the connection were removed by the proxy already;
/// any left (an answer made by the proxy itself has none) are skipped here.
pub fn write_response_head(
    out: &mut Vec<u8>,
    status: StatusCode,
    reason: Option<&[u8]>,
    headers: &HeaderMap,
    framing: BodyFraming,
    close: bool,
    date: impl FnOnce() -> Bytes,
) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(
        reason
            .or(status.canonical_reason().map(str::as_bytes))
            .unwrap_or_default(),
    );
    out.extend_from_slice(b"\r\n");
    let mut has_length = false;
    let mut has_date = false;
    for (name, value) in headers {
        if *name == header::CONNECTION || *name == header::TRANSFER_ENCODING {
            continue;
        }
        if *name == header::CONTENT_LENGTH {
            match framing {
                BodyFraming::Chunked => continue,
                // One field with the length the body is sent with, where the first was:
                // the fields may repeat it (`7, 7`, or twice), which a client may refuse,
                // or hold what does not parse while the body's own length is known.
                BodyFraming::Length(n) => {
                    if !has_length {
                        content_length(out, n);
                        has_length = true;
                    }
                    continue;
                }
                // A `HEAD` response's length describes another body: it goes as it is.
                BodyFraming::None => {}
            }
        }
        has_date |= *name == header::DATE;
        field(out, name, value.as_bytes());
    }
    match framing {
        BodyFraming::Length(n) if !has_length => content_length(out, n),
        BodyFraming::Chunked => field(out, &header::TRANSFER_ENCODING, b"chunked"),
        _ => {}
    }
    if !has_date {
        field(out, &header::DATE, &date());
    }
    if close {
        field(out, &header::CONNECTION, b"close");
    }
    out.extend_from_slice(b"\r\n");
}

fn content_length(out: &mut Vec<u8>, n: u64) {
    let mut digits = itoa::Buffer::new();
    field(out, &header::CONTENT_LENGTH, digits.format(n).as_bytes());
}

fn field(out: &mut Vec<u8>, name: &HeaderName, value: &[u8]) {
    out.extend_from_slice(name.as_str().as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn parse(text: &[u8]) -> (Result<Option<ExpressRequest>, NotServed>, BytesMut) {
        let mut buf = BytesMut::from(text);
        let parsed = parse_request_head(&mut buf);
        (parsed, buf)
    }

    #[test]
    fn a_plain_get_is_served_and_its_head_consumed() {
        let (parsed, rest) = parse(
            b"GET /main/index.php?a=1 HTTP/1.1\r\nHost: lms.example\r\nCookie: a=\xe9\r\n\
              X-A: 1\r\nX-A: 2\r\n\r\nGET /next",
        );
        let express = parsed.unwrap().unwrap();
        assert_eq!(&rest[..], b"GET /next");
        let req = express.request;
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri(), "/main/index.php?a=1");
        assert_eq!(req.version(), Version::HTTP_11);
        assert_eq!(req.headers()["host"], "lms.example");
        assert_eq!(req.headers()["cookie"].as_bytes(), b"a=\xe9");
        let xa: Vec<_> = req.headers().get_all("x-a").iter().collect();
        assert_eq!(xa, ["1", "2"]);
        assert!(!express.close);
    }

    #[test]
    fn a_body_of_one_content_length_is_served_and_left_in_the_buffer() {
        let (parsed, rest) =
            parse(b"POST /login HTTP/1.1\r\nHost: h\r\nContent-Length:  11 \r\n\r\nuser=a&pw=b");
        let express = parsed.unwrap().unwrap();
        assert_eq!(express.body_length, 11);
        assert_eq!(&rest[..], b"user=a&pw=b");
        let (parsed, _) = parse(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(parsed.unwrap().unwrap().body_length, 0);
    }

    #[test]
    fn connection_close_is_noted() {
        let (parsed, _) =
            parse(b"HEAD / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, Close\r\n\r\n");
        let express = parsed.unwrap().unwrap();
        assert!(express.close);
        assert_eq!(express.request.method(), Method::HEAD);
    }

    #[test]
    fn an_incomplete_head_waits_and_consumes_nothing() {
        for cut in [1, 10, 20, 30] {
            let text = b"GET / HTTP/1.1\r\nHost: lms.example\r\n\r\n";
            let (parsed, rest) = parse(&text[..cut]);
            assert!(parsed.unwrap().is_none(), "{cut}");
            assert_eq!(&rest[..], &text[..cut]);
        }
    }

    #[test]
    fn anything_unusual_goes_to_hyper_with_the_buffer_untouched() {
        let cases: &[(&[u8], &str)] = &[
            (
                b"POST / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 0\r\n\r\n",
                "repeated content-length",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\nabc",
                "invalid content-length",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 3, 3\r\n\r\nabc",
                "invalid content-length",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
                "invalid content-length",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 1234567890123456789\r\n\r\n",
                "invalid content-length",
            ),
            (
                b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                "transfer-encoding",
            ),
            (
                b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
                "transfer-encoding",
            ),
            (b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n", "expect"),
            (
                b"GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
                "upgrade",
            ),
            (b"GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n", "upgrade"),
            (b"GET / HTTP/1.0\r\n\r\n", "HTTP/1.0"),
            (b"GET / HTTP/1.1\r\n\r\n", "host"),
            (b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", "host"),
            (b"GET http://x/ HTTP/1.1\r\n\r\n", "target form"),
            (b"OPTIONS * HTTP/1.1\r\n\r\n", "target form"),
            (b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", "malformed head"),
            (b"GET /\x01 HTTP/1.1\r\n\r\n", "malformed head"),
        ];
        for (text, reason) in cases {
            let (parsed, rest) = parse(text);
            assert_eq!(
                parsed.unwrap_err(),
                ToHyper(reason),
                "{}",
                String::from_utf8_lossy(text)
            );
            assert_eq!(&rest[..], *text);
        }
    }

    #[test]
    fn a_head_past_the_limit_is_too_large() {
        let mut line = b"GET /".to_vec();
        line.resize(MAX_HEAD, b'a');
        let (parsed, _) = parse(&line);
        assert_eq!(
            parsed.unwrap_err(),
            NotServed::TooLarge(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        let mut text = b"GET / HTTP/1.1\r\nx: ".to_vec();
        text.resize(MAX_HEAD, b'a');
        let (parsed, rest) = parse(&text);
        assert_eq!(
            parsed.unwrap_err(),
            NotServed::TooLarge(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        assert_eq!(rest.len(), text.len());
    }

    #[test]
    fn framing_follows_method_status_and_length() {
        let none = HeaderMap::new();
        let mut declared = HeaderMap::new();
        declared.insert(header::CONTENT_LENGTH, HeaderValue::from_static("69"));
        let ok = StatusCode::OK;
        assert_eq!(
            BodyFraming::of(true, ok, &declared, Some(0)),
            BodyFraming::None
        );
        for status in [StatusCode::NO_CONTENT, StatusCode::NOT_MODIFIED] {
            assert_eq!(
                BodyFraming::of(false, status, &none, None),
                BodyFraming::None
            );
        }
        assert_eq!(
            BodyFraming::of(false, ok, &declared, None),
            BodyFraming::Length(69)
        );
        assert_eq!(
            BodyFraming::of(false, ok, &none, Some(7)),
            BodyFraming::Length(7)
        );
        assert_eq!(
            BodyFraming::of(false, ok, &none, None),
            BodyFraming::Chunked
        );
    }

    fn head(headers: &HeaderMap, framing: BodyFraming, close: bool) -> String {
        let mut out = Vec::new();
        let date = || Bytes::from_static(b"Sun, 29 Nov 2026 09:00:00 GMT");
        write_response_head(
            &mut out,
            StatusCode::OK,
            None,
            headers,
            framing,
            close,
            date,
        );
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn the_response_head_adds_framing_date_and_close_once() {
        let mut h = HeaderMap::new();
        h.append(header::SET_COOKIE, HeaderValue::from_static("a=1"));
        h.append(header::SET_COOKIE, HeaderValue::from_static("b=2"));
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
        assert_eq!(
            head(&h, BodyFraming::Length(5), true),
            "HTTP/1.1 200 OK\r\nset-cookie: a=1\r\nset-cookie: b=2\r\ncontent-length: 5\r\n\
             date: Sun, 29 Nov 2026 09:00:00 GMT\r\nconnection: close\r\n\r\n"
        );
        h.insert(header::DATE, HeaderValue::from_static("upstream's"));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("5"));
        assert_eq!(
            head(&h, BodyFraming::Length(5), false),
            "HTTP/1.1 200 OK\r\nset-cookie: a=1\r\nset-cookie: b=2\r\ndate: upstream's\r\n\
             content-length: 5\r\n\r\n"
        );
        h.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("gzip"));
        assert_eq!(
            head(&h, BodyFraming::Chunked, false),
            "HTTP/1.1 200 OK\r\nset-cookie: a=1\r\nset-cookie: b=2\r\ndate: upstream's\r\n\
             transfer-encoding: chunked\r\n\r\n"
        );
    }

    #[test]
    fn a_repeated_or_unparsable_length_goes_out_as_one_field_with_the_bodys_length() {
        let cases: &[(&[&str], Option<u64>)] = &[
            (&["7, 7"], Some(7)),
            (&["7", "7"], Some(7)),
            (&["", "x"], Some(3)),
        ];
        for (lengths, exact) in cases {
            let mut h = HeaderMap::new();
            h.append(header::SET_COOKIE, HeaderValue::from_static("a=1"));
            for length in *lengths {
                h.append(header::CONTENT_LENGTH, HeaderValue::from_static(length));
            }
            h.append(header::DATE, HeaderValue::from_static("upstream's"));
            let framing = BodyFraming::of(false, StatusCode::OK, &h, *exact);
            let n = exact.unwrap_or_default();
            assert_eq!(framing, BodyFraming::Length(n));
            assert_eq!(
                head(&h, framing, false),
                format!(
                    "HTTP/1.1 200 OK\r\nset-cookie: a=1\r\ncontent-length: {n}\r\n\
                     date: upstream's\r\n\r\n"
                ),
                "{lengths:?}"
            );
        }
        // A `HEAD` response's fields go as they are.
        let mut h = HeaderMap::new();
        h.append(header::CONTENT_LENGTH, HeaderValue::from_static("7, 7"));
        assert!(head(&h, BodyFraming::None, false).contains("content-length: 7, 7\r\n"));
    }

    #[test]
    fn the_upstream_reason_phrase_is_kept() {
        let mut out = Vec::new();
        let h = HeaderMap::new();
        let framing = BodyFraming::Length(0);
        write_response_head(
            &mut out,
            StatusCode::OK,
            Some(b"Fine"),
            &h,
            framing,
            false,
            Bytes::new,
        );
        assert!(out.starts_with(b"HTTP/1.1 200 Fine\r\n"));
        out.clear();
        let status = StatusCode::from_u16(299).unwrap();
        write_response_head(&mut out, status, None, &h, framing, false, Bytes::new);
        assert!(out.starts_with(b"HTTP/1.1 299 \r\n"));
    }
}
