//! A request body read straight from the client's connection, which the body borrows for
//! the time of the request and gives back when it ends or is dropped.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::net::TcpStream;

use crate::http1::poll_read_buf;

/// Room kept free in the buffer while a body is read: uploads go in larger reads than heads.
const BODY_READ_ROOM: usize = 64 * 1024;

/// The client's connection while a request body is read from it.
#[derive(Debug)]
pub struct Lent {
    pub stream: TcpStream,
    /// Bytes read from the connection and not used yet (the body's start, maybe more).
    pub buf: BytesMut,
    /// Body bytes not read yet: more than zero when the body was dropped before its end
    /// (an early answer, a failure), and then the connection cannot carry another request.
    pub left: u64,
}

/// Where the connection goes back to.
pub type Home = Arc<Mutex<Option<Lent>>>;

/// `Content-Length` bytes of request body from the client's connection; or none at all.
#[derive(Debug, Default)]
pub struct ClientBody {
    lent: Option<Lent>,
    home: Option<Home>,
}

impl ClientBody {
    /// No body.
    pub fn none() -> Self {
        Self::default()
    }

    /// The next `length` bytes of `stream` (after those in `buf`); the connection is back in
    /// the returned [`Home`] once the body has been read or dropped.
    pub fn lend(stream: TcpStream, buf: BytesMut, length: u64) -> (Self, Home) {
        let home = Home::default();
        let body = Self {
            lent: Some(Lent {
                stream,
                buf,
                left: length,
            }),
            home: Some(home.clone()),
        };
        (body, home)
    }

    fn give_back(&mut self) {
        if let (Some(lent), Some(home)) = (self.lent.take(), self.home.take()) {
            // A poisoned lock only means a panic elsewhere; the slot is still usable.
            *home.lock().unwrap_or_else(|e| e.into_inner()) = Some(lent);
        }
    }
}

impl Drop for ClientBody {
    fn drop(&mut self) {
        self.give_back();
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        loop {
            let Some(lent) = self.lent.as_mut() else {
                return Poll::Ready(None);
            };
            if lent.left == 0 {
                self.give_back();
                return Poll::Ready(None);
            }
            if !lent.buf.is_empty() {
                let n =
                    usize::try_from(lent.left).map_or(lent.buf.len(), |l| l.min(lent.buf.len()));
                lent.left -= n as u64;
                let data = lent.buf.split_to(n).freeze();
                if lent.left == 0 {
                    // The connection is home before the upstream has even taken the last bytes.
                    self.give_back();
                }
                return Poll::Ready(Some(Ok(Frame::data(data))));
            }
            if lent.buf.capacity() < BODY_READ_ROOM / 4 {
                lent.buf.reserve(BODY_READ_ROOM);
            }
            let n = ready!(poll_read_buf(&mut lent.stream, &mut lent.buf, cx))?;
            if n == 0 {
                return Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "client closed the connection during the request body",
                ))));
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.lent.as_ref().is_none_or(|lent| lent.left == 0)
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.lent.as_ref().map_or(0, |lent| lent.left))
    }
}
