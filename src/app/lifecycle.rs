//! The process from start to exit: bind, serve, reload, drain.
//!
//! Order at start: configuration loaded (before this is called) → admin listener bound →
//! public listener bound → ready. Order at SIGTERM/SIGINT: not ready → `shutdown.drain_delay`
//! still serving → stop accepting → in-flight requests and tunnels finish → exit, or exit
//! anyway after `shutdown.grace_period`. A second signal while draining exits at once.

use std::sync::Arc;

use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::chamilo_metrics::ChamiloCallMetrics;
use super::scim_backend::scim_service;
use crate::admin::{Admin, Health};
use crate::config::load::{Loaded, Source};
use crate::config::reload::{ReloadMetrics, Reloader};
use crate::config::Live;
use crate::proxy::Proxy;
use crate::server::dispatch::Dispatcher;
use crate::server::metrics::HttpMetrics;
use crate::server::worker::Worker;
use crate::server::{bind_reuseport, tls, worker_count};
use crate::telemetry::LogControl;

/// Why the process could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot bind the {which} listener on {addr}: {source}")]
    Bind {
        which: &'static str,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("TLS setup: {0}")]
    Tls(#[from] rustls::Error),
    #[error("pass-through setup: {0}")]
    Proxy(#[from] crate::proxy::ProxyError),
    #[error("cannot start a worker thread: {0}")]
    Worker(std::io::Error),
}

/// Runs the sidecar until a shutdown signal, then drains. `initial` must come from
/// `config::load::load(&source)`.
pub async fn run(
    source: Source,
    initial: Loaded,
    log: Option<LogControl>,
) -> Result<(), StartError> {
    let mut terminate = signal(SignalKind::terminate()).map_err(StartError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(StartError::Signals)?;
    let mut hangup = signal(SignalKind::hangup()).map_err(StartError::Signals)?;

    crate::config::reload::log_warnings(&initial.warnings);
    let live = Live::new(&initial);
    let health = Arc::new(Health::default());
    health.set_config_loaded();

    let mut registry = Registry::default();
    let reload_metrics = ReloadMetrics::register(&mut registry);
    let http_metrics = HttpMetrics::register(&mut registry);
    let chamilo_calls = ChamiloCallMetrics::register(&mut registry);
    let tunnels = TaskTracker::new();
    let proxy = Arc::new(Proxy::new(
        &initial.config.upstream,
        &mut registry,
        tunnels.clone(),
    )?);
    let registry = Arc::new(registry);

    let reloader = Reloader::new(source, live.clone(), &initial, reload_metrics);
    let trigger = reloader.trigger();
    let background = CancellationToken::new();

    let cfg = live.current();
    let admin_listener = bind("admin", cfg.admin.listen).await?;
    let admin = Arc::new(Admin {
        health: health.clone(),
        registry,
        reload: trigger.clone(),
    });
    tokio::spawn(admin.serve(admin_listener, background.clone()));

    let tls = match cfg.server.tls {
        Some(_) => Some(tls::acceptor(live.clone())?),
        None => None,
    };
    let workers = worker_count(cfg.server.workers);
    let listeners =
        bind_reuseport(cfg.server.listen, workers).map_err(|source| StartError::Bind {
            which: "public",
            addr: cfg.server.listen,
            source,
        })?;
    let bound = listeners
        .first()
        .and_then(|l| l.local_addr().ok())
        .unwrap_or(cfg.server.listen);
    // Tests and scripts read the bound address (port 0 picks a free one) from this line.
    tracing::info!(listener = "public", address = %bound, workers, "listening");
    follow_certificate(&live, &http_metrics, background.clone());
    let dispatcher = Arc::new(Dispatcher::new(
        live.clone(),
        proxy,
        Arc::new(scim_service(
            &live,
            health.clone(),
            chamilo_calls,
            background.clone(),
        )),
        http_metrics.clone(),
    ));
    let limit = Arc::new(tokio::sync::Semaphore::new(
        cfg.server.max_connections.max(1),
    ));
    let stop_accepting = CancellationToken::new();
    let exit_workers = CancellationToken::new();
    let mut drained_workers = Vec::new();
    for (index, listener) in listeners.into_iter().enumerate() {
        let (done, drained) = tokio::sync::oneshot::channel();
        drained_workers.push(drained);
        let worker = Worker {
            index,
            listener,
            tls: tls.clone(),
            dispatcher: dispatcher.clone(),
            live: live.clone(),
            metrics: http_metrics.clone(),
            limit: limit.clone(),
            stop: stop_accepting.clone(),
            exit: exit_workers.clone(),
            done,
        };
        worker.spawn().map_err(StartError::Worker)?;
    }
    health.set_listener_bound();

    tokio::spawn(reloader.run(background.clone()));
    if let Some(log) = log {
        tokio::spawn(log.follow(live.subscribe()));
    }
    tracing::info!("ready");

    let which = loop {
        tokio::select! {
            _ = terminate.recv() => break "SIGTERM",
            _ = interrupt.recv() => break "SIGINT",
            _ = hangup.recv() => {
                tracing::info!("SIGHUP: reloading the configuration");
                trigger.request();
            }
        }
    };

    let shutdown = live.current().shutdown.clone();
    health.set_draining();
    tracing::info!(
        signal = which,
        drain_delay_ms = shutdown.drain_delay.as_millis() as u64,
        grace_period_ms = shutdown.grace_period.as_millis() as u64,
        "shutting down: not ready, still serving during the drain delay"
    );
    if !wait_or_signal(
        tokio::time::sleep(shutdown.drain_delay),
        &mut terminate,
        &mut interrupt,
    )
    .await
    {
        tracing::warn!("second signal: exiting now");
        return Ok(());
    }

    stop_accepting.cancel();
    tracing::info!(
        tunnels = tunnels.len(),
        "stopped accepting; waiting for in-flight requests and tunnels"
    );
    tunnels.close();
    let drained = async {
        for worker in drained_workers {
            let _ = worker.await;
        }
        tunnels.wait().await;
    };
    let finished = wait_or_signal(
        tokio::time::timeout(shutdown.grace_period, drained),
        &mut terminate,
        &mut interrupt,
    )
    .await;
    // Workers keep driving their tunnels until here; dropping their runtimes ends the rest.
    exit_workers.cancel();
    background.cancel();
    if finished {
        tracing::info!("all requests finished; exiting");
    }
    Ok(())
}

/// Waits for `fut`; `Ok(..)` of a timeout counts as finished. Returns false on a second signal
/// or when a timeout expired.
async fn wait_or_signal<F: std::future::Future>(
    fut: F,
    terminate: &mut Signal,
    interrupt: &mut Signal,
) -> bool
where
    F::Output: Finished,
{
    tokio::select! {
        out = fut => out.finished(),
        _ = terminate.recv() => false,
        _ = interrupt.recv() => false,
    }
}

trait Finished {
    fn finished(self) -> bool;
}

impl Finished for () {
    fn finished(self) -> bool {
        true
    }
}

impl Finished for Result<(), tokio::time::error::Elapsed> {
    fn finished(self) -> bool {
        if self.is_err() {
            tracing::warn!("grace period over: closing the remaining connections");
        }
        self.is_ok()
    }
}

async fn bind(which: &'static str, addr: std::net::SocketAddr) -> Result<TcpListener, StartError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            which,
            addr,
            source,
        })?;
    // Tests and scripts read the bound address (port 0 picks a free one) from this line.
    let bound = listener.local_addr().unwrap_or(addr);
    tracing::info!(listener = which, address = %bound, "listening");
    Ok(listener)
}

/// Keeps `tls_certificate_expiry_timestamp_seconds` in step with the served certificate.
fn follow_certificate(live: &Live, metrics: &HttpMetrics, stop: CancellationToken) {
    let gauge = metrics.certificate_expiry.clone();
    let set = {
        let gauge = gauge.clone();
        move |live: &Live| {
            let expiry = live.tls().and_then(|m| m.not_after).unwrap_or(0);
            gauge.set(expiry);
        }
    };
    set(live);
    let live = live.clone();
    let mut changes = live.subscribe();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                changed = changes.changed() => {
                    if changed.is_err() {
                        break;
                    }
                    set(&live);
                }
            }
        }
    });
}
