//! Listeners, connections, routing to `scim` / `proxy`, graceful drain.
//!
//! [`lifecycle::run`] wires everything together; [`accept`] serves the public listener with
//! hyper-util's auto builder (HTTP/1.1 and HTTP/2, upgrades enabled), optionally behind TLS.

pub mod dispatch;
pub mod lifecycle;
pub mod metrics;
pub mod route;
pub mod scim_backend;
pub mod tls;

use std::convert::Infallible;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use self::dispatch::Dispatcher;
use self::metrics::{GaugeGuard, HttpMetrics};
use crate::config::Live;
use crate::proxy::ClientInfo;

/// Everything the accept loop needs.
pub struct PublicListener {
    pub listener: TcpListener,
    /// `server.max_connections`, shared by every worker's listener.
    pub limit: Arc<Semaphore>,
    /// `Some` when `server.tls` is configured (fixed for the life of the process).
    pub tls: Option<TlsAcceptor>,
    pub dispatcher: Arc<Dispatcher>,
    pub live: Live,
    pub metrics: HttpMetrics,
}

/// The number of event loops for `server.workers` (0 = one per available CPU).
pub fn worker_count(configured: usize) -> usize {
    if configured > 0 {
        configured
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// Binds `count` sockets to `addr` with `SO_REUSEPORT`, so that each worker accepts on its own
/// socket and the kernel spreads connections. With port 0 the first socket picks the port and
/// the others join it. The sockets are returned as non-blocking std listeners, ready to be
/// registered with each worker's runtime.
pub fn bind_reuseport(
    addr: std::net::SocketAddr,
    count: usize,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    let mut bound = addr;
    let mut listeners = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let socket = if bound.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.set_reuseaddr(true)?;
        socket.set_reuseport(true)?;
        socket.bind(bound)?;
        let listener = socket.listen(1024)?;
        bound = listener.local_addr()?;
        listeners.push(listener.into_std()?);
    }
    Ok(listeners)
}

/// Accepts connections until `stop` fires, then returns the handle that drains them.
///
/// `server.max_connections` is enforced by not serving (and not accepting more) while at the
/// limit; the kernel's backlog queues the rest, which is gentler than accepting and closing.
pub async fn accept(public: PublicListener, stop: CancellationToken) -> GracefulShutdown {
    let graceful = GracefulShutdown::new();
    let limit = public.limit.clone();
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            accepted = public.listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // The slot is taken after accepting: with one socket per worker, a worker that waited
        // for a slot *before* accepting could hold it while the waiting client sits in another
        // worker's backlog. So each worker holds at most one accepted connection that waits,
        // and accepts nothing more until it has a slot.
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        let watcher = graceful.watcher();
        let tls = public.tls.clone();
        let dispatcher = public.dispatcher.clone();
        let live = public.live.clone();
        let open = GaugeGuard::enter(&public.metrics.connections);
        tokio::spawn(async move {
            let _permit = permit;
            let _open = open;
            let client = ClientInfo {
                peer,
                tls: tls.is_some(),
            };
            match tls {
                None => serve_plain(stream, client, dispatcher, live, watcher).await,
                Some(acceptor) => {
                    serve_tls(stream, acceptor, client, dispatcher, live, watcher).await
                }
            }
        });
    }
    graceful
}

async fn serve_plain(
    stream: TcpStream,
    client: ClientInfo,
    dispatcher: Arc<Dispatcher>,
    live: Live,
    watcher: Watcher,
) {
    let wait = live.current().server.header_read_timeout;
    let stream = FirstByteDeadline::new(stream, wait);
    serve_io(stream, client, dispatcher, live, watcher).await;
}

async fn serve_tls(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    client: ClientInfo,
    dispatcher: Arc<Dispatcher>,
    live: Live,
    watcher: Watcher,
) {
    let wait = live.current().server.tls_handshake_timeout;
    match tokio::time::timeout(wait, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => {
            let wait = live.current().server.header_read_timeout;
            let tls = FirstByteDeadline::new(tls, wait);
            serve_io(tls, client, dispatcher, live, watcher).await
        }
        Ok(Err(e)) => tracing::debug!(peer = %client.peer, error = %e, "TLS handshake failed"),
        Err(_) => tracing::debug!(peer = %client.peer, "TLS handshake timed out"),
    }
}

async fn serve_io<I>(
    io: I,
    client: ClientInfo,
    dispatcher: Arc<Dispatcher>,
    live: Live,
    watcher: Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // Built per connection from the live configuration, so timeouts follow reloads.
    let cfg = live.current();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.server.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let service = service_fn(move |req| {
        let dispatcher = dispatcher.clone();
        async move { Ok::<_, Infallible>(dispatcher.dispatch(req, client).await) }
    });
    let conn = builder
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .into_owned();
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(peer = %client.peer, error = %e, "connection ended with an error");
    }
}

/// Fails the first read with `TimedOut` when no byte arrives within the deadline.
///
/// hyper-util's auto builder sniffs the protocol (HTTP/1 or the HTTP/2 preface) before hyper's
/// own header-read timeout starts, and that sniffing has no timeout: a client that connects
/// (or completes a TLS handshake) and then stays silent would hold a connection slot forever.
/// Wrapping the stream covers plain and TLS alike, including bytes rustls already buffered.
struct FirstByteDeadline<I> {
    io: I,
    deadline: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<I> FirstByteDeadline<I> {
    fn new(io: I, wait: std::time::Duration) -> Self {
        Self {
            io,
            deadline: Some(Box::pin(tokio::time::sleep(wait))),
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for FirstByteDeadline<I> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::future::Future;
        use std::task::Poll;
        let this = self.get_mut();
        let before = buf.filled().len();
        match std::pin::Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.deadline = None;
                }
                Poll::Ready(result)
            }
            Poll::Pending => {
                let expired = match this.deadline.as_mut() {
                    Some(deadline) => deadline.as_mut().poll(cx).is_ready(),
                    None => false,
                };
                if expired {
                    Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "no request received",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for FirstByteDeadline<I> {
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
