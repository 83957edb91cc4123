//! The response side, as the upstream client reads it: the head, and how the body that
//! follows is delimited (RFC 9112 §6.3).

use bytes::{Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{StatusCode, Version};

use super::fields::FieldSpans;
use super::{parse_length, H1Error, MAX_FIELDS, MAX_HEAD};

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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::http1::ChunkedDecoder;
    use proptest::prelude::*;

    fn head(text: &str, head_request: bool) -> Result<Option<ResponseHead>, H1Error> {
        let mut buf = BytesMut::from(text);
        parse_response_head(&mut buf, head_request)
    }

    pub(crate) fn ok(text: &str) -> ResponseHead {
        head(text, false).unwrap().unwrap()
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
    }
}
