//! Feeds arbitrary bytes to the upstream HTTP/1.1 response parser and chunked decoder, in
//! arbitrary pieces: nothing may panic, a parsed head is removed from the buffer whole, and a
//! chunked body never yields more bytes than it was given.
//!
//! Shared by the cargo-fuzz target and `tests/fuzz_corpus.rs` (the corpus replayed on stable).
use bytes::BytesMut;
use chamilo_scim_proxy::http1::{parse_response_head, ChunkedDecoder};

/// One input: panics (or fails an assertion) on a bug.
pub fn check(data: &[u8]) {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let step = usize::from(split).max(1);
    let mut buf = BytesMut::new();
    let mut decoder = ChunkedDecoder::default();
    let mut in_body = false;
    let mut yielded = 0usize;
    for piece in data.chunks(step) {
        buf.extend_from_slice(piece);
        if !in_body {
            let before = buf.len();
            match parse_response_head(&mut buf, split % 2 == 0) {
                Ok(Some(_)) => {
                    assert!(buf.len() < before);
                    in_body = true;
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before);
                    continue;
                }
                Err(_) => return,
            }
        }
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(bytes)) => yielded += bytes.len(),
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(yielded <= data.len());
        if decoder.is_done() {
            return;
        }
    }
}
