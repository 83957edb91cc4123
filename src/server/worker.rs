//! One event loop of the public listener (`server.workers` of them).

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::dispatch::Dispatcher;
use super::metrics::HttpMetrics;
use super::{accept, PublicListener};
use crate::config::Live;

/// One event loop: a single-threaded runtime on its own thread, accepting on its own
/// `SO_REUSEPORT` socket. A connection, its upstream connection and its tunnel all stay on
/// this thread, which avoids cross-thread wake-ups on every hop.
pub struct Worker {
    pub index: usize,
    pub listener: std::net::TcpListener,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub dispatcher: Arc<Dispatcher>,
    pub live: Live,
    pub metrics: HttpMetrics,
    pub limit: Arc<tokio::sync::Semaphore>,
    /// Stop accepting, drain this worker's connections, then report on `done`.
    pub stop: CancellationToken,
    /// Leave: the grace period is over or everything is drained.
    pub exit: CancellationToken,
    pub done: tokio::sync::oneshot::Sender<()>,
}

impl Worker {
    /// Starts the worker on a thread of its own, named `worker-{index}`.
    pub fn spawn(self) -> std::io::Result<()> {
        std::thread::Builder::new()
            .name(format!("worker-{}", self.index))
            .spawn(move || self.run())
            .map(drop)
    }

    fn run(self) {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(worker = self.index, error = %e, "cannot start a worker runtime");
                return;
            }
        };
        let Worker {
            index,
            listener,
            tls,
            dispatcher,
            live,
            metrics,
            limit,
            stop,
            exit,
            done,
        } = self;
        runtime.block_on(async move {
            let listener = match TcpListener::from_std(listener) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(worker = index, error = %e, "cannot register the listener");
                    return;
                }
            };
            let public = PublicListener {
                listener,
                limit,
                tls,
                dispatcher,
                live,
                metrics,
            };
            let serve = async {
                let graceful = accept(public, stop).await;
                graceful.shutdown().await;
            };
            tokio::select! {
                _ = serve => {}
                _ = exit.cancelled() => {}
            }
            let _ = done.send(());
            // Tunnels spawned on this runtime need it driven until the process is done.
            exit.cancelled().await;
        });
    }
}
