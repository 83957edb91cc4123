//! Chunked transfer coding (RFC 9112 §7.1): the framing written around each chunk, and a
//! decoder for chunked bodies as their bytes arrive.

use bytes::{Buf, Bytes, BytesMut};

use super::H1Error;

/// The longest chunk-size line (with extensions) or trailer field.
const MAX_LINE: usize = 4 * 1024;

/// The most trailer bytes accepted (they are read and dropped).
const MAX_TRAILERS: usize = 16 * 1024;

/// The size line of a chunk of `len` bytes (`len` > 0).
pub fn chunk_size_line(len: usize) -> Bytes {
    Bytes::from(format!("{len:x}\r\n"))
}

/// The last chunk and an empty trailer section.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

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
mod tests {
    use super::*;
    use proptest::prelude::*;

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
