//! One client connection, from accept to close: the protocol choice, hyper's HTTP/1.1 or
//! HTTP/2 connection, the deadlines before the first request, and the graceful drain.
//!
//! The protocol is chosen without wrapping the stream: on TLS by the negotiated ALPN, on plain
//! TCP by peeking at the first bytes for the HTTP/2 prior-knowledge preface (h2c). hyper-util's
//! auto builder would read them into a `Rewind` wrapper that then sits in every read of the
//! connection's life.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::{service_fn, Service};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, Interest, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::dispatch::Dispatcher;
use crate::body::BoxBody;
use crate::config::Live;
use crate::proxy::ClientInfo;
use crate::timer::CoarseTimer;

/// What a prior-knowledge HTTP/2 client sends first (RFC 9113, section 3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

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

/// Tells a worker's open connections to finish and waits until they all have.
///
/// The same contract as hyper-util's `GracefulShutdown`, which cannot watch hyper's
/// `http1::UpgradeableConnection` (its trait is sealed and has no implementation for it).
pub struct Drain {
    signal: watch::Sender<()>,
}

/// One connection's end of a [`Drain`]; the drain waits until every one is dropped.
pub struct DrainWatch {
    signal: watch::Receiver<()>,
}

impl Drain {
    /// A drain no connection watches yet.
    pub fn new() -> Self {
        Self {
            signal: watch::channel(()).0,
        }
    }

    /// Taken in the accept loop, before the connection's task starts, so that a drain that
    /// begins afterwards always waits for it.
    pub fn watch(&self) -> DrainWatch {
        DrainWatch {
            signal: self.signal.subscribe(),
        }
    }

    /// Asks every connection to finish (requests in flight complete, idle connections close),
    /// then waits until all have ended.
    pub async fn shutdown(self) {
        let _ = self.signal.send(());
        self.signal.closed().await;
    }
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl DrainWatch {
    /// Whether the drain has begun (or its worker is gone): one atomic load.
    pub(super) fn has_begun(&self) -> bool {
        self.signal.has_changed().unwrap_or(true)
    }

    /// Resolves when the drain begins (or its worker is gone).
    pub(super) async fn begun(&mut self) {
        let _ = self.signal.changed().await;
    }

    /// A probe for a task that asks at many points whether the drain has begun.
    pub(super) fn probe(&self) -> DrainProbe {
        let mut notified = self.signal.clone();
        DrainProbe {
            changed: Box::pin(async move {
                let _ = notified.changed().await;
            }),
            signal: self.signal.clone(),
            stage: DrainStage::Unregistered,
        }
    }

    /// Drives `conn` to its end; when the drain begins, calls `graceful` on it once first.
    async fn serve<C, T>(self, conn: C, mut graceful: impl FnMut(Pin<&mut C>)) -> T
    where
        C: Future<Output = T>,
    {
        let mut probe = self.probe();
        let mut conn = std::pin::pin!(conn);
        let mut asked = false;
        std::future::poll_fn(move |cx| {
            if !asked && probe.poll_begun(cx).is_ready() {
                graceful(conn.as_mut());
                asked = true;
            }
            conn.as_mut().poll(cx)
        })
        .await
    }
}

/// Tells one task whether the drain has begun, and wakes it when it does.
///
/// The drain's notification future is polled only once, to register the task's waker:
/// polling it again would take its lock on every wake-up of the connection. Later polls read
/// the channel's version instead, one atomic load. That is only sound because a probe is
/// polled by its connection's own task alone, whose waker does not change.
pub(super) struct DrainProbe {
    changed: Pin<Box<dyn Future<Output = ()> + Send>>,
    signal: watch::Receiver<()>,
    stage: DrainStage,
}

impl DrainProbe {
    /// Ready once the drain has begun.
    pub(super) fn poll_begun(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        match self.stage {
            DrainStage::Unregistered => {
                if self.changed.as_mut().poll(cx).is_ready() {
                    self.stage = DrainStage::Begun;
                    return Poll::Ready(());
                }
                self.stage = DrainStage::Registered;
                Poll::Pending
            }
            DrainStage::Registered if self.signal.has_changed().unwrap_or(true) => {
                self.stage = DrainStage::Begun;
                Poll::Ready(())
            }
            DrainStage::Registered => Poll::Pending,
            DrainStage::Begun => Poll::Ready(()),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum DrainStage {
    /// The notification future has not been polled yet.
    Unregistered,
    /// This task's waker is registered; the version tells whether the drain began.
    Registered,
    /// The drain has begun.
    Begun,
}

/// Serves one accepted connection until it closes.
pub async fn serve(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    client: ClientInfo,
    dispatcher: Arc<Dispatcher>,
    live: Live,
    mut drain: DrainWatch,
) {
    // Read once per connection, so that timeouts follow reloads for new connections.
    let cfg = live.current();
    let header_wait = cfg.server.header_read_timeout;
    let Some(acceptor) = tls else {
        let protocol = tokio::select! {
            biased;
            _ = drain.begun() => return,
            sniffed = tokio::time::timeout(header_wait, sniff(&stream)) => sniffed,
        };
        match protocol {
            Ok(Ok(Some(Protocol::Http1))) => {
                super::express::serve(stream, client, dispatcher, header_wait, drain).await
            }
            Ok(Ok(Some(Protocol::Http2))) => serve_http2(stream, client, dispatcher, drain).await,
            Ok(Ok(None)) => {}
            Ok(Err(e)) => tracing::debug!(peer = %client.peer, error = %e, "connection failed"),
            Err(_) => tracing::debug!(peer = %client.peer, "no request within header_read_timeout"),
        }
        return;
    };
    let handshake = tokio::select! {
        biased;
        _ = drain.begun() => return,
        tls = tokio::time::timeout(cfg.server.tls_handshake_timeout, acceptor.accept(stream)) => tls,
    };
    match handshake {
        Ok(Ok(tls)) => match Protocol::from_alpn(tls.get_ref().1.alpn_protocol()) {
            Protocol::Http1 => {
                serve_http1(tls, client, dispatcher, header_wait, drain, false).await
            }
            // hyper's HTTP/2 server has no header-read timeout, and a TLS stream cannot be
            // peeked at: the preface gets a deadline of its own.
            Protocol::Http2 => {
                let tls = PrefaceDeadline::new(tls, header_wait);
                serve_http2(tls, client, dispatcher, drain).await
            }
        },
        Ok(Err(e)) => tracing::debug!(peer = %client.peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(peer = %client.peer, "TLS handshake timed out"),
    }
}

/// Waits until a plain connection's first bytes tell HTTP/1.1 from HTTP/2 prior knowledge,
/// without consuming them; `None` when the client closed first.
async fn sniff(stream: &TcpStream) -> io::Result<Option<Protocol>> {
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

/// The service of every connection: each request goes to the dispatcher.
fn dispatch_service(
    dispatcher: Arc<Dispatcher>,
    client: ClientInfo,
) -> impl Service<
    Request<Incoming>,
    Response = Response<BoxBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<BoxBody>, Infallible>> + Send + 'static,
> + Send
       + 'static {
    service_fn(move |req| {
        let dispatcher = dispatcher.clone();
        async move { Ok::<_, Infallible>(dispatcher.dispatch(req, client).await) }
    })
}

/// Serves HTTP/1.1 (upgrades included) until the connection ends or the drain completes it.
///
/// `request_read`: the express lane already read a request from this connection (it is at the
/// front of `io`). If the drain has begun, that request is answered as the connection's last,
/// as hyper does with a request it has begun to read itself; a connection that has read
/// nothing closes at once.
pub(super) async fn serve_http1<I>(
    io: I,
    client: ClientInfo,
    dispatcher: Arc<Dispatcher>,
    header_wait: Duration,
    drain: DrainWatch,
    request_read: bool,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder.timer(CoarseTimer).header_read_timeout(header_wait);
    let last_request = request_read && drain.has_begun();
    if last_request {
        builder.keep_alive(false);
    }
    let conn = builder
        .serve_connection(TokioIo::new(io), dispatch_service(dispatcher, client))
        .with_upgrades();
    let result = if last_request {
        // The drain still waits for this connection: `drain` lives until it ends.
        let result = conn.await;
        drop(drain);
        result
    } else {
        drain.serve(conn, |c| c.graceful_shutdown()).await
    };
    if let Err(e) = result {
        tracing::debug!(peer = %client.peer, error = %e, "connection ended with an error");
    }
}

/// Serves HTTP/2 until the connection ends or the drain completes it.
async fn serve_http2<I>(io: I, client: ClientInfo, dispatcher: Arc<Dispatcher>, drain: DrainWatch)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(io), dispatch_service(dispatcher, client));
    if let Err(e) = drain.serve(conn, |c| c.graceful_shutdown()).await {
        tracing::debug!(peer = %client.peer, error = %e, "connection ended with an error");
    }
}

/// Fails a read with `TimedOut` when the HTTP/2 preface has not fully arrived by the deadline.
///
/// Only for HTTP/2 over TLS: hyper's HTTP/2 server has no header-read timeout, so a client
/// that completes the handshake and stays silent (or sends part of the preface) would hold a
/// connection slot forever. Past the preface it costs one branch per read.
struct PrefaceDeadline<I> {
    io: I,
    /// Preface bytes still expected; the deadline is dropped when this reaches 0.
    awaited: usize,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<I> PrefaceDeadline<I> {
    fn new(io: I, wait: Duration) -> Self {
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
pub(super) use write_through;

write_through!(PrefaceDeadline);

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

    #[tokio::test]
    async fn a_drain_waits_for_its_watches_and_asks_each_to_finish() {
        let drain = Drain::new();
        let watch = drain.watch();
        let (finish_tx, finish_rx) = tokio::sync::oneshot::channel::<()>();
        // A stand-in connection: ends once asked to finish.
        let asked = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = asked.clone();
        let conn = async move {
            let _ = finish_rx.await;
            Ok::<(), ()>(())
        };
        let mut finish = Some(finish_tx);
        let task = tokio::spawn(watch.serve(conn, move |_| {
            seen.store(true, std::sync::atomic::Ordering::SeqCst);
            if let Some(tx) = finish.take() {
                let _ = tx.send(());
            }
        }));
        tokio::task::yield_now().await;
        assert!(!asked.load(std::sync::atomic::Ordering::SeqCst));
        tokio::time::timeout(Duration::from_secs(5), drain.shutdown())
            .await
            .unwrap();
        assert!(asked.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(task.await.unwrap(), Ok(()));
    }
}
