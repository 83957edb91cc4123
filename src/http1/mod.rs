//! HTTP/1.1 as bytes (RFC 9112), shared by both sides of the proxy: the upstream client
//! ([`crate::proxy`]) writes request heads and reads response heads and bodies; the server's
//! express lane ([`crate::server`]) reads request heads and writes response heads with the same
//! field tables, length rules and chunk framing. Pure, but for [`poll_read_buf`].
//!
//! - [`request`]: how a request body is framed, and the request head the proxy writes;
//! - [`response`]: the response head it reads, and how the response body is delimited;
//! - [`chunked`]: chunked framing, both ways;
//! - [`fields`]: field values as slices of the head's bytes, not copies.
//!
//! Why not hyper's client: it drives every upstream connection from a task of its own and
//! passes each request and response through channels, which was a third of the proxy's CPU
//! time per request. The proxy needs only a small part of HTTP/1.1 here, talking to one known
//! upstream, and the message it writes was already parsed (by hyper's server or the express
//! lane).

pub mod chunked;
pub mod fields;
pub mod request;
pub mod response;

use std::io;
use std::task::{Context, Poll};

use bytes::BytesMut;
use futures_util::FutureExt as _;
use tokio::net::TcpStream;

pub use chunked::{chunk_size_line, ChunkedDecoder, LAST_CHUNK};
pub use request::{RequestFraming, RequestHeadWriter};
pub use response::{parse_response_head, Framing, ResponseHead};

/// The largest head accepted, request or response (start line and fields). nginx's default
/// is 4–8 KiB a line; browsers send 1–2 KiB, Chamilo sets a handful of cookies at most.
pub const MAX_HEAD: usize = 64 * 1024;

/// The most fields a head may have.
pub(crate) const MAX_FIELDS: usize = 128;

/// The upstream broke HTTP/1.1 (a response head or body the proxy cannot pass on).
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

/// A length in decimal digits, nothing else (no sign, no spaces), that fits in 64 bits.
pub fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    })
}

/// Reads what `stream` has into `buf` (the number of bytes; 0 at its end).
pub fn poll_read_buf(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    let mut read = std::pin::pin!(tokio::io::AsyncReadExt::read_buf(stream, buf));
    read.poll_unpin(cx)
}
