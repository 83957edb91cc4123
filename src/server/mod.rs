//! Listeners, connections, routing to `scim` / `proxy`, graceful drain.
//!
//! [`lifecycle::run`] wires everything together; [`accept`] serves the public listener with
//! hyper-util's auto builder (HTTP/1.1 and HTTP/2, upgrades enabled), optionally behind TLS.

pub mod dispatch;
pub mod lifecycle;
pub mod metrics;
pub mod route;
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
    /// `Some` when `server.tls` is configured (fixed for the life of the process).
    pub tls: Option<TlsAcceptor>,
    pub dispatcher: Arc<Dispatcher>,
    pub live: Live,
    pub metrics: HttpMetrics,
}

/// Accepts connections until `stop` fires, then returns the handle that drains them.
///
/// `server.max_connections` is enforced by not accepting while at the limit (the kernel's
/// backlog queues the rest), which is gentler than accepting and closing.
pub async fn accept(public: PublicListener, stop: CancellationToken) -> GracefulShutdown {
    let graceful = GracefulShutdown::new();
    let max = public.live.current().server.max_connections.max(1);
    let limit = Arc::new(Semaphore::new(max));
    loop {
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
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
    // The auto builder's protocol sniffing has no timeout of its own: a client that connects
    // and sends nothing would hold a connection slot forever.
    let wait = live.current().server.header_read_timeout;
    let mut probe = [0u8; 1];
    match tokio::time::timeout(wait, stream.peek(&mut probe)).await {
        Ok(Ok(n)) if n > 0 => {}
        _ => return,
    }
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
        Ok(Ok(tls)) => serve_io(tls, client, dispatcher, live, watcher).await,
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
