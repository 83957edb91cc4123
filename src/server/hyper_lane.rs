//! hyper's server for what the express lane does not serve: HTTP/2, TLS connections, and
//! HTTP/1.1 connections from the request the lane handed over. Every request goes to the
//! [`Dispatcher`].

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper::service::{service_fn, Service};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};

use super::dispatch::Dispatcher;
use super::drain::DrainWatch;
use crate::body::BoxBody;
use crate::proxy::ClientInfo;
use crate::timer::CoarseTimer;

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
    // The express lane's limits, so that a request gets the same answer whichever lane
    // serves it (`tests/lanes_differential.rs`): a head of at most MAX_HEAD bytes and
    // MAX_FIELDS fields, else 431.
    builder
        .timer(CoarseTimer)
        .header_read_timeout(header_wait)
        .max_header_size(crate::http1::MAX_HEAD)
        .max_headers(crate::http1::MAX_FIELDS);
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
pub(super) async fn serve_http2<I>(
    io: I,
    client: ClientInfo,
    dispatcher: Arc<Dispatcher>,
    drain: DrainWatch,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(io), dispatch_service(dispatcher, client));
    if let Err(e) = drain.serve(conn, |c| c.graceful_shutdown()).await {
        tracing::debug!(peer = %client.peer, error = %e, "connection ended with an error");
    }
}
