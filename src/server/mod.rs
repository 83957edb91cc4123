//! The public listener: workers, connections, routing to `scim` / `proxy`, graceful drain.
//!
//! A request's path: [`worker::Worker`] (one event loop per core) → [`accept`] →
//! [`connection::serve`] (TLS, protocol choice) → the [`express`] lane or hyper's server
//! ([`hyper_lane`]) → [`dispatch::Dispatcher`], which routes by [`route::classify`] to the
//! pass-through or the SCIM service. [`crate::app`] builds the parts and runs the process.

pub mod connection;
pub mod dispatch;
pub mod drain;
pub mod express;
pub mod hyper_lane;
mod io;
pub mod metrics;
pub mod protocol;
pub mod route;
pub mod tls;
pub mod worker;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use self::dispatch::Dispatcher;
use self::drain::Drain;
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

/// Accepts connections until `stop` fires, then returns the [`Drain`] of those still open.
///
/// `server.max_connections` is enforced by not serving (and not accepting more) while at the
/// limit; the kernel's backlog queues the rest, which is gentler than accepting and closing.
pub async fn accept(public: PublicListener, stop: CancellationToken) -> Drain {
    let drain = Drain::new();
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
        let watch = drain.watch();
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
            connection::serve(stream, tls, client, dispatcher, live, watch).await;
        });
    }
    drain
}
