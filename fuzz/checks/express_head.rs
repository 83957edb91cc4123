//! Feeds arbitrary bytes, in two reads, to the express lane's request-head parser: nothing may
//! panic; a head that is refused or incomplete leaves the buffer exactly as it was; an
//! accepted one is taken off the front whole, with httparse's own fields (names in any case,
//! values byte for byte, in a `HeaderMap`'s order), has one `Host`, a body only by one plain
//! `Content-Length` (its `body_length`), and no `Transfer-Encoding`, `Expect` or upgrade.
//! `tests/express_props.rs` states the same with proptest.
//!
//! Shared by the cargo-fuzz target and `tests/fuzz_corpus.rs` (the corpus replayed on stable).
use bytes::BytesMut;
use chamilo_scim_proxy::server::express::head::parse_request_head;

/// One input: panics (or fails an assertion) on a bug.
pub fn check(data: &[u8]) {
    let Some((&cut, data)) = data.split_first() else {
        return;
    };
    let cut = usize::from(cut).min(data.len());
    let mut buf = BytesMut::from(&data[..cut]);
    if !buf.is_empty() && check_head(&mut buf) {
        return;
    }
    buf.extend_from_slice(&data[cut..]);
    check_head(&mut buf);
}

/// Parses once and checks the invariants against what `buf` held; whether a head was taken.
fn check_head(buf: &mut BytesMut) -> bool {
    let input = buf.to_vec();
    let express = match parse_request_head(buf) {
        Ok(Some(express)) => express,
        Ok(None) | Err(_) => {
            // `TooLarge` included: the lane answers it without taking anything off.
            assert_eq!(&buf[..], &input[..]);
            return false;
        }
    };
    assert_eq!([&express.head[..], &buf[..]].concat(), input);

    let mut fields = [httparse::EMPTY_HEADER; 128];
    let mut req = httparse::Request::new(&mut fields);
    let Ok(httparse::Status::Complete(len)) = req.parse(&input) else {
        panic!("accepted a head httparse does not");
    };
    assert_eq!(express.head.len(), len);
    assert_eq!(Some(express.request.method().as_str()), req.method);

    // A `HeaderMap` keeps each name's values together, names in the order first seen.
    let mut names: Vec<String> = Vec::new();
    for f in req.headers.iter() {
        let name = f.name.to_ascii_lowercase();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let expected: Vec<(&str, &[u8])> = names
        .iter()
        .flat_map(|n| {
            req.headers
                .iter()
                .filter(move |f| f.name.eq_ignore_ascii_case(n))
                .map(move |f| (n.as_str(), f.value))
        })
        .collect();
    let got: Vec<(&str, &[u8])> = express
        .request
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_bytes()))
        .collect();
    assert_eq!(got, expected);

    let mut close = false;
    let mut hosts = 0;
    let mut length = None;
    for f in req.headers.iter() {
        let name = f.name.to_ascii_lowercase();
        assert!(!matches!(
            name.as_str(),
            "transfer-encoding" | "expect" | "upgrade"
        ));
        hosts += usize::from(name == "host");
        if name == "content-length" {
            assert!(length.is_none(), "a repeated content-length");
            let digits = std::str::from_utf8(f.value.trim_ascii()).unwrap();
            assert!(digits.bytes().all(|b| b.is_ascii_digit()));
            length = Some(digits.parse::<u64>().unwrap());
        }
        if name == "connection" {
            for token in f.value.split(|b| *b == b',').map(<[u8]>::trim_ascii) {
                assert!(!token.eq_ignore_ascii_case(b"upgrade"));
                close |= token.eq_ignore_ascii_case(b"close");
            }
        }
    }
    assert_eq!(hosts, 1);
    assert_eq!(express.body_length, length.unwrap_or(0));
    assert_eq!(express.close, close);
    true
}
