//! Which HTTP version a connection speaks, decided without wrapping the stream: on TLS by
//! the negotiated ALPN, on plain TCP by peeking at the first bytes for the HTTP/2
//! prior-knowledge preface (h2c). hyper-util's auto builder would read them into a `Rewind`
//! wrapper that then sits in every read of the connection's life.

use std::io;
use std::os::fd::AsFd;

use tokio::io::Interest;
use tokio::net::TcpStream;

/// What a prior-knowledge HTTP/2 client sends first (RFC 9113, section 3.4).
pub(super) const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The HTTP version a connection is served with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// HTTP/1.1 (and 1.0), with upgrades (WebSocket).
    Http1,
    /// HTTP/2, by ALPN `h2` or by prior knowledge (h2c).
    Http2,
}

impl Protocol {
    /// What a plain connection's first bytes announce: HTTP/2 once they hold the whole preface,
    /// HTTP/1.1 as soon as they differ from it, `None` while they are a strict prefix of it.
    pub fn from_first_bytes(first: &[u8]) -> Option<Protocol> {
        if first.len() >= H2_PREFACE.len() {
            Some(if first.starts_with(H2_PREFACE) {
                Protocol::Http2
            } else {
                Protocol::Http1
            })
        } else if H2_PREFACE.starts_with(first) {
            None
        } else {
            Some(Protocol::Http1)
        }
    }

    /// What a TLS connection negotiated: `h2` is HTTP/2; anything else (`http/1.1`, or no ALPN
    /// at all) is HTTP/1.1.
    pub fn from_alpn(alpn: Option<&[u8]>) -> Protocol {
        if alpn == Some(b"h2".as_slice()) {
            Protocol::Http2
        } else {
            Protocol::Http1
        }
    }
}

/// Waits until a plain connection's first bytes tell HTTP/1.1 from HTTP/2 prior knowledge,
/// without consuming them; `None` when the client closed first.
pub(super) async fn sniff(stream: &TcpStream) -> io::Result<Option<Protocol>> {
    let mut first = [0u8; H2_PREFACE.len()];
    let n = stream.peek(&mut first).await?;
    if n == 0 {
        return Ok(None);
    }
    if let Some(protocol) = Protocol::from_first_bytes(&first[..n]) {
        return Ok(Some(protocol));
    }
    // Part of the preface so far (rare: clients send it in one write). Peeking again would
    // return the same bytes at once, forever; `async_io` instead clears the readiness when the
    // closure reports `WouldBlock`, so the next peek waits for more bytes. A synchronous peek
    // needs a std handle: a duplicate of the descriptor, only on this path.
    let dup = std::net::TcpStream::from(stream.as_fd().try_clone_to_owned()?);
    stream
        .async_io(Interest::READABLE, || {
            let n = dup.peek(&mut first)?;
            if n == 0 {
                return Ok(None);
            }
            Protocol::from_first_bytes(&first[..n])
                .map(Some)
                .ok_or_else(|| io::ErrorKind::WouldBlock.into())
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_whole_preface_is_http2() {
        assert_eq!(
            Protocol::from_first_bytes(H2_PREFACE),
            Some(Protocol::Http2)
        );
        let mut with_settings = H2_PREFACE.to_vec();
        with_settings.extend_from_slice(&[0, 0, 0, 4, 0]);
        assert_eq!(
            Protocol::from_first_bytes(&with_settings),
            Some(Protocol::Http2)
        );
    }

    #[test]
    fn part_of_the_preface_is_undecided() {
        for n in 0..H2_PREFACE.len() {
            assert_eq!(Protocol::from_first_bytes(&H2_PREFACE[..n]), None, "{n}");
        }
    }

    #[test]
    fn anything_else_is_http1_at_the_first_difference() {
        assert_eq!(Protocol::from_first_bytes(b"G"), Some(Protocol::Http1));
        assert_eq!(
            Protocol::from_first_bytes(b"GET / HTTP/1.1\r\n"),
            Some(Protocol::Http1)
        );
        // PRI as an HTTP/1.1 method, or a preface that breaks off in its last byte.
        assert_eq!(
            Protocol::from_first_bytes(b"PRI /x HTTP/1.1"),
            Some(Protocol::Http1)
        );
        let mut almost = H2_PREFACE.to_vec();
        almost[23] = b'X';
        assert_eq!(Protocol::from_first_bytes(&almost), Some(Protocol::Http1));
    }

    #[test]
    fn alpn_h2_alone_selects_http2() {
        assert_eq!(Protocol::from_alpn(Some(b"h2")), Protocol::Http2);
        assert_eq!(Protocol::from_alpn(Some(b"http/1.1")), Protocol::Http1);
        assert_eq!(Protocol::from_alpn(Some(b"h2c")), Protocol::Http1);
        assert_eq!(Protocol::from_alpn(None), Protocol::Http1);
    }
}
