//! Property tests for the express lane's HTTP/1.1 codec (`server::express::head`): whatever a
//! client sends, `parse_request_head` either leaves the buffer exactly as it was or takes off
//! exactly one head whose fields are what httparse reads there, and only ever accepts a
//! request with one `Host`, no body or one of a single plain `Content-Length`, and no
//! `Transfer-Encoding`, `Expect` or upgrade; `write_response_head` writes a head a client
//! parses back to the given fields plus exactly the framing, `date` and `connection` fields
//! the lane owes it. (`fuzz/fuzz_targets/express_head.rs` explores the parser further.)

use bytes::{Bytes, BytesMut};
use chamilo_scim_proxy::server::express::head::{
    parse_request_head, write_response_head, BodyFraming, ExpressRequest, NotServed, MAX_HEAD,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version};
use proptest::prelude::*;

/// The most fields httparse is given here; the lane's own limit is the same.
const MAX_FIELDS: usize = 128;

/// Fields as a client or server reads them: names lower-cased, values as bytes, in order.
type Fields = Vec<(String, Vec<u8>)>;

/// What httparse reads from a request head.
struct Parsed {
    len: usize,
    method: String,
    target: String,
    fields: Fields,
}

/// What httparse reads from `bytes`; `None` when the head is incomplete or malformed.
fn httparse_request(bytes: &[u8]) -> Option<Parsed> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut req = httparse::Request::new(&mut fields);
    match req.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => Some(Parsed {
            len,
            method: req.method?.to_owned(),
            target: req.path?.to_owned(),
            fields: req
                .headers
                .iter()
                .map(|f| (f.name.to_ascii_lowercase(), f.value.to_vec()))
                .collect(),
        }),
        _ => None,
    }
}

/// Fields grouped by name in the order each name first appears, values in their order: the
/// order a `HeaderMap` keeps.
fn grouped(fields: &[(String, Vec<u8>)]) -> Fields {
    let mut names: Vec<&str> = Vec::new();
    for (name, _) in fields {
        if !names.contains(&name.as_str()) {
            names.push(name);
        }
    }
    names
        .iter()
        .flat_map(|n| fields.iter().filter(move |(name, _)| name == n).cloned())
        .collect()
}

/// The items of a comma-separated field value (`Connection`).
fn comma_tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|b| *b == b',').map(<[u8]>::trim_ascii)
}

/// Parses `buf` once and checks every invariant against what it held before; returns whether
/// a head was taken.
fn check_parse(buf: &mut BytesMut) -> Result<bool, TestCaseError> {
    let input = buf.to_vec();
    match parse_request_head(buf) {
        Err(not_served) => {
            prop_assert_eq!(
                &buf[..],
                &input[..],
                "an Err must leave the buffer as it was"
            );
            if let NotServed::TooLarge(_) = not_served {
                prop_assert!(input.len() >= MAX_HEAD);
            }
            Ok(false)
        }
        Ok(None) => {
            prop_assert_eq!(&buf[..], &input[..], "Ok(None) must consume nothing");
            prop_assert!(input.len() < MAX_HEAD);
            Ok(false)
        }
        Ok(Some(express)) => {
            check_accepted(&input, buf, &express)?;
            Ok(true)
        }
    }
}

/// `express` was taken off `input`, leaving `rest`: the invariants of an accepted head.
fn check_accepted(
    input: &[u8],
    rest: &BytesMut,
    express: &ExpressRequest,
) -> Result<(), TestCaseError> {
    let head = &express.head;
    prop_assert_eq!([&head[..], &rest[..]].concat(), input);
    let Some(Parsed {
        len,
        method,
        target,
        fields,
    }) = httparse_request(input)
    else {
        return Err(TestCaseError::fail("accepted a head httparse does not"));
    };
    prop_assert_eq!(head.len(), len, "r.head is exactly the consumed head");

    let request = &express.request;
    prop_assert_eq!(request.version(), Version::HTTP_11);
    prop_assert_eq!(request.method().as_str(), method);
    // `http`'s `Uri` drops a fragment (which no client should send), as in hyper's server.
    let without_fragment = target.split('#').next().unwrap_or_default();
    prop_assert_eq!(request.uri().to_string(), without_fragment);
    let map: Fields = request
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().to_vec()))
        .collect();
    prop_assert_eq!(&map, &grouped(&fields));

    // One `Host`; a body only of one plain `Content-Length`; no `Expect` or upgrade.
    let mut close = false;
    let mut hosts = 0;
    let mut length = None;
    for (name, value) in &fields {
        match name.as_str() {
            "transfer-encoding" | "expect" | "upgrade" => {
                return Err(TestCaseError::fail(format!("accepted a head with {name}")))
            }
            "host" => hosts += 1,
            "content-length" => {
                prop_assert!(length.is_none(), "accepted a repeated content-length");
                let digits = value.trim_ascii();
                prop_assert!(!digits.is_empty() && digits.iter().all(u8::is_ascii_digit));
                let n = std::str::from_utf8(digits)
                    .ok()
                    .and_then(|d| d.parse::<u64>().ok());
                prop_assert!(n.is_some(), "content-length {:?}", digits);
                length = n;
            }
            "connection" => {
                for token in comma_tokens(value) {
                    prop_assert!(!token.eq_ignore_ascii_case(b"upgrade"));
                    close |= token.eq_ignore_ascii_case(b"close");
                }
            }
            _ => {}
        }
    }
    prop_assert_eq!(hosts, 1);
    prop_assert_eq!(express.body_length, length.unwrap_or(0));
    prop_assert_eq!(express.close, close);
    Ok(())
}

/// Feeds `input` in two reads cut at `cut`, as a connection would, checking each parse.
fn feed_in_two(input: &[u8], cut: usize) -> Result<(), TestCaseError> {
    let cut = cut.min(input.len());
    let mut buf = BytesMut::from(&input[..cut]);
    if !buf.is_empty() && check_parse(&mut buf)? {
        return Ok(());
    }
    let had = buf.len();
    buf.extend_from_slice(&input[cut..]);
    // What stayed in the buffer after the first read is still the input's front.
    prop_assert_eq!(&buf[..had], &input[..had]);
    check_parse(&mut buf)?;
    Ok(())
}

/// A field value's bytes: visible ASCII with tabs, inner spaces and obs-text; one value in
/// 25 also holds a control byte, DEL, CR or LF (which httparse refuses or ends the line on).
fn value_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        12 => 0x21u8..=0x7e,
        2 => Just(b' '),
        1 => Just(b'\t'),
        3 => 0x80u8..=0xff,
    ];
    let odd = prop::sample::select(vec![0x00u8, 0x0b, 0x0c, 0x7f, b'\r', b'\n']);
    (
        prop::collection::vec(byte, 0..24),
        prop::option::weighted(0.04, (odd, any::<prop::sample::Index>())),
    )
        .prop_map(|(mut value, odd)| {
            if let Some((byte, at)) = odd {
                value.insert(at.index(value.len() + 1), byte);
            }
            value
        })
}

fn request_field() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
    let name = prop_oneof![
        10 => prop::sample::select(vec![
            "Cookie", "Accept", "X-A", "x-a", "User-Agent", "Date", "Keep-Alive",
        ])
        .prop_map(String::from),
        2 => "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}",
        1 => "[ -~]{1,3}",
    ];
    // (A bare `&str` is a regex strategy in proptest: literal names go in `select`.)
    let special = prop_oneof![
        3 => (
            prop::sample::select(vec!["Content-Length", "content-length"]),
            prop::sample::select(vec![
                "0",
                " 0 ",
                "00",
                "5",
                "0, 0",
                "5, 5",
                "",
                "-0",
                "+3",
                "123456789012345678",
                "1234567890123456789",
            ])
        ),
        1 => (
            prop::sample::select(vec!["Transfer-Encoding"]),
            prop::sample::select(vec!["chunked", "gzip", ""])
        ),
        1 => (
            prop::sample::select(vec!["Expect", "Upgrade"]),
            prop::sample::select(vec!["100-continue", "websocket"])
        ),
        1 => (
            prop::sample::select(vec!["Connection", "connection", "CONNECTION"]),
            prop::sample::select(vec![
                "close",
                "keep-alive",
                "Keep-Alive, Close",
                "Upgrade",
                "x, upgrade",
                "closed",
                "",
            ])
        ),
    ]
    .prop_map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()));
    prop_oneof![
        8 => (name.prop_map(String::into_bytes), value_bytes()),
        1 => special,
    ]
}

/// `Host` fields: one mostly, sometimes none or two.
fn hosts() -> impl Strategy<Value = Vec<(Vec<u8>, Vec<u8>)>> {
    let host = (
        prop::sample::select(vec!["Host", "host", "HOST"]),
        "[a-z0-9.-]{0,12}(:[0-9]{1,5})?",
    )
        .prop_map(|(n, v)| (n.as_bytes().to_vec(), v.into_bytes()));
    prop_oneof![
        8 => prop::collection::vec(host.clone(), 1),
        1 => prop::collection::vec(host, 0..=2),
    ]
}

/// Heads that are mostly valid HTTP/1.x, with the fields, targets and oddities the lane must
/// sort out, and sometimes bytes of a body or of a next request after them.
fn request_head() -> impl Strategy<Value = Vec<u8>> {
    let method = prop_oneof![
        4 => prop::sample::select(vec!["GET", "HEAD", "POST", "OPTIONS", "DELETE", "get"])
            .prop_map(String::from),
        1 => "[A-Za-z!#$%&'*+.^_`|~-]{1,8}",
    ];
    let target = prop_oneof![
        6 => "/[A-Za-z0-9/._~%?&=+:@!$'()*,;-]{0,30}".prop_map(String::into_bytes),
        1 => prop::collection::vec(prop_oneof![0x21u8..=0x7e, 0x80u8..=0xff], 1..12)
            .prop_map(|mut t| { t.insert(0, b'/'); t }),
        1 => prop::sample::select(vec!["*", "http://lms.example/", "lms.example:443", ""])
            .prop_map(|t| t.as_bytes().to_vec()),
    ];
    let version = prop::sample::select(vec![
        "HTTP/1.1", "HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/2.0",
    ]);
    let eol = prop::sample::select(vec!["\r\n", "\r\n", "\r\n", "\n"]);
    (
        any::<bool>(),
        method,
        target,
        version,
        (
            prop::collection::vec(request_field(), 0..8),
            hosts(),
            any::<prop::sample::Index>(),
        ),
        eol,
        prop::collection::vec(any::<u8>(), 0..16),
    )
        .prop_map(
            |(leading_crlf, method, target, version, (mut fields, hosts, at), eol, after)| {
                for host in hosts {
                    fields.insert(at.index(fields.len() + 1), host);
                }
                let mut head = Vec::new();
                if leading_crlf {
                    head.extend_from_slice(b"\r\n");
                }
                head.extend_from_slice(method.as_bytes());
                head.push(b' ');
                head.extend_from_slice(&target);
                head.push(b' ');
                head.extend_from_slice(version.as_bytes());
                head.extend_from_slice(eol.as_bytes());
                for (name, value) in fields {
                    head.extend_from_slice(&name);
                    head.extend_from_slice(b": ");
                    head.extend_from_slice(&value);
                    head.extend_from_slice(eol.as_bytes());
                }
                head.extend_from_slice(eol.as_bytes());
                head.extend_from_slice(&after);
                head
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 5000, ..ProptestConfig::default() })]

    /// Arbitrary bytes, cut anywhere: no panic, and every invariant of `check_parse`.
    #[test]
    fn arbitrary_bytes_leave_the_buffer_whole_or_give_one_head(
        prefix in prop::sample::select(vec![&b""[..], b"GET / HTTP/1.1\r\n", b"GET /"]),
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        suffix in prop::sample::select(vec![&b""[..], b"\r\n\r\n"]),
        cut in any::<prop::sample::Index>(),
    ) {
        let input = [prefix, &bytes[..], suffix].concat();
        feed_in_two(&input, cut.index(input.len() + 1))?;
    }

    /// Mostly valid heads, cut anywhere: an accepted head has exactly httparse's fields, one
    /// `Host`, a body only by one plain `Content-Length`, no upgrade; anything else leaves the
    /// buffer as it was.
    #[test]
    fn request_heads_are_served_only_when_plain_and_then_exactly(
        input in request_head(),
        cut in any::<prop::sample::Index>(),
    ) {
        feed_in_two(&input, cut.index(input.len() + 1))?;
    }

    /// The plainest heads are always served, whatever their field values hold (obs-text
    /// included): the check above must not pass by refusing everything.
    #[test]
    fn plain_heads_with_any_visible_values_are_served(
        method in prop::sample::select(vec![Method::GET, Method::HEAD, Method::DELETE]),
        path in "/[a-z0-9/]{0,20}",
        values in prop::collection::vec(
            prop::collection::vec(prop_oneof![0x21u8..=0x7e, 0x80u8..=0xff], 1..20),
            0..6,
        ),
    ) {
        let mut input = format!("{method} {path} HTTP/1.1\r\nHost: lms.example\r\n").into_bytes();
        for (i, value) in values.iter().enumerate() {
            input.extend_from_slice(format!("X-F{}: ", i % 3).as_bytes());
            input.extend_from_slice(value);
            input.extend_from_slice(b"\r\n");
        }
        input.extend_from_slice(b"\r\n");
        let mut buf = BytesMut::from(&input[..]);
        prop_assert!(check_parse(&mut buf)?, "{:?}", String::from_utf8_lossy(&input));
        prop_assert!(buf.is_empty());
    }
}

// ---- write_response_head ----

fn response_field() -> impl Strategy<Value = (HeaderName, HeaderValue)> {
    let name = prop_oneof![
        4 => prop::sample::select(vec![
            "set-cookie", "content-type", "x-a", "cache-control", "connection",
            "transfer-encoding", "content-length", "date", "keep-alive",
        ])
        .prop_map(String::from),
        1 => "[a-z0-9!#$%&'*+.^_`|~-]{1,12}",
    ];
    let value = prop_oneof![
        4 => prop::collection::vec(
            prop_oneof![8 => 0x20u8..=0x7e, 1 => Just(b'\t'), 2 => 0x80u8..=0xff],
            0..24,
        ),
        1 => (0u64..100_000).prop_map(|n| n.to_string().into_bytes()),
    ];
    (name, value).prop_filter_map("not a field", |(name, value)| {
        Some((
            HeaderName::from_bytes(name.as_bytes()).ok()?,
            HeaderValue::from_bytes(&value).ok()?,
        ))
    })
}

/// A response's status: every class, with the bodiless ones often.
fn status() -> impl Strategy<Value = StatusCode> {
    prop_oneof![
        3 => prop::sample::select(vec![200u16, 204, 304, 101, 103, 404, 500]),
        1 => 100u16..=999,
    ]
    .prop_map(|code| StatusCode::from_u16(code).unwrap_or(StatusCode::OK))
}

const DATE: &[u8] = b"Sun, 29 Nov 2026 09:00:00 GMT";

/// Fields a client reads, names lower-cased.
fn response_fields(out: &[u8]) -> Result<(u16, Vec<u8>, Fields), TestCaseError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_FIELDS];
    let mut res = httparse::Response::new(&mut fields);
    let status = res
        .parse(out)
        .map_err(|e| TestCaseError::fail(format!("{e}")))?;
    prop_assert_eq!(status, httparse::Status::Complete(out.len()));
    prop_assert_eq!(res.version, Some(1));
    Ok((
        res.code.unwrap_or_default(),
        res.reason.unwrap_or_default().as_bytes().to_vec(),
        res.headers
            .iter()
            .map(|f| (f.name.to_ascii_lowercase(), f.value.to_vec()))
            .collect(),
    ))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 4000, ..ProptestConfig::default() })]

    /// The head parses back to the given status and fields minus the connection's own ones,
    /// plus exactly the framing field `BodyFraming` chose, a `date` only when there was none,
    /// and `connection: close` exactly when asked.
    #[test]
    fn a_written_response_head_parses_back_to_its_fields_and_framing(
        status in status(),
        reason in prop::option::of("[A-Za-z][A-Za-z ]{0,12}"),
        fields in prop::collection::vec(response_field(), 0..10),
        head_request in any::<bool>(),
        exact in prop::option::of(0u64..100_000),
        close in any::<bool>(),
    ) {
        let mut headers = HeaderMap::new();
        for (name, value) in fields {
            headers.append(name, value);
        }
        let framing = BodyFraming::of(head_request, status, &headers, exact);
        let mut out = Vec::new();
        write_response_head(
            &mut out,
            status,
            reason.as_deref().map(str::as_bytes),
            &headers,
            framing,
            close,
            || Bytes::from_static(DATE),
        );
        let (code, got_reason, got) = response_fields(&out)?;
        prop_assert_eq!(code, status.as_u16());
        let want_reason = reason
            .as_deref()
            .or(status.canonical_reason())
            .unwrap_or_default();
        prop_assert_eq!(got_reason, want_reason.as_bytes());

        // A client reads values without their surrounding whitespace.
        let sent: Fields = headers
            .iter()
            .map(|(n, v)| (n.as_str().to_owned(), v.as_bytes().trim_ascii().to_vec()))
            .collect();
        let named = |fields: &[(String, Vec<u8>)], name: &str| -> Vec<Vec<u8>> {
            fields.iter().filter(|(n, _)| n == name).map(|(_, v)| v.clone()).collect()
        };
        let owned = ["connection", "transfer-encoding", "content-length", "date"];
        let others = |fields: &[(String, Vec<u8>)]| -> Fields {
            fields.iter().filter(|(n, _)| !owned.contains(&n.as_str())).cloned().collect()
        };
        prop_assert_eq!(others(&got), others(&sent));

        let lengths = named(&got, "content-length");
        let codings = named(&got, "transfer-encoding");
        match framing {
            BodyFraming::None => {
                prop_assert_eq!(lengths, named(&sent, "content-length"));
                prop_assert!(codings.is_empty());
            }
            BodyFraming::Length(n) => {
                prop_assert_eq!(lengths, vec![n.to_string().into_bytes()]);
                prop_assert!(codings.is_empty());
            }
            BodyFraming::Chunked => {
                prop_assert!(lengths.is_empty());
                prop_assert_eq!(codings, vec![b"chunked".to_vec()]);
            }
        }
        let dates = named(&sent, "date");
        if dates.is_empty() {
            prop_assert_eq!(named(&got, "date"), vec![DATE.to_vec()]);
        } else {
            prop_assert_eq!(named(&got, "date"), dates);
        }
        let connection = named(&got, "connection");
        prop_assert_eq!(connection, if close { vec![b"close".to_vec()] } else { vec![] });
    }
}
