//! Wrappers around a client connection's stream that change only how it is read.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, ReadBuf};

use super::protocol::H2_PREFACE;

/// `AsyncWrite` for a wrapper `$name<I>` that only changes how its `io` field is read:
/// every write call goes to `io` as it is.
macro_rules! write_through {
    ($name:ident) => {
        impl<I: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for $name<I> {
            fn poll_write(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                buf: &[u8],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
            }

            fn poll_write_vectored(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
                bufs: &[std::io::IoSlice<'_>],
            ) -> std::task::Poll<std::io::Result<usize>> {
                std::pin::Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
            }

            fn is_write_vectored(&self) -> bool {
                self.io.is_write_vectored()
            }

            fn poll_flush(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().io).poll_flush(cx)
            }

            fn poll_shutdown(
                self: std::pin::Pin<&mut Self>,
                cx: &mut std::task::Context<'_>,
            ) -> std::task::Poll<std::io::Result<()>> {
                std::pin::Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
            }
        }
    };
}

/// Fails a read with `TimedOut` when the HTTP/2 preface has not fully arrived by the deadline.
///
/// Only for HTTP/2 over TLS: hyper's HTTP/2 server has no header-read timeout, so a client
/// that completes the handshake and stays silent (or sends part of the preface) would hold a
/// connection slot forever. Past the preface it costs one branch per read.
pub(super) struct PrefaceDeadline<I> {
    io: I,
    /// Preface bytes still expected; the deadline is dropped when this reaches 0.
    awaited: usize,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<I> PrefaceDeadline<I> {
    pub(super) fn new(io: I, wait: Duration) -> Self {
        Self {
            io,
            awaited: H2_PREFACE.len(),
            deadline: Some(Box::pin(tokio::time::sleep(wait))),
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for PrefaceDeadline<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let Some(deadline) = this.deadline.as_mut() else {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        };
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(result) => {
                let read = buf.filled().len() - before;
                this.awaited = this.awaited.saturating_sub(read);
                if this.awaited == 0 {
                    this.deadline = None;
                }
                Poll::Ready(result)
            }
            Poll::Pending if deadline.as_mut().poll(cx).is_ready() => Poll::Ready(Err(
                io::Error::new(io::ErrorKind::TimedOut, "no HTTP/2 preface received"),
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

write_through!(PrefaceDeadline);

/// A connection whose first bytes were already read: hyper reads those first.
pub(super) struct Prefixed<I> {
    prefix: Bytes,
    io: I,
}

impl<I> Prefixed<I> {
    pub(super) fn new(io: I, prefix: Bytes) -> Self {
        Self { prefix, io }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Prefixed<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.prefix.is_empty() {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        }
        let n = this.prefix.len().min(buf.remaining());
        buf.put_slice(&this.prefix[..n]);
        this.prefix.advance(n);
        Poll::Ready(Ok(()))
    }
}

write_through!(Prefixed);
