//! Upgraded connections (WebSocket): after a matching `101`, bytes flow both ways untouched.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use super::metrics::{ErrorKind, ProxyMetrics};
use super::upstream::UpstreamConn;

/// Splices the client's upgraded connection and the upstream's connection in a task on
/// `tunnels`, so that graceful shutdown waits for it (the HTTP connection future ends at the
/// upgrade). The tunnel is closed after `idle` without a byte in either direction.
pub fn splice(
    tunnels: &TaskTracker,
    client: OnUpgrade,
    upstream: UpstreamConn,
    idle: Duration,
    metrics: ProxyMetrics,
) {
    tunnels.spawn(async move {
        let client = match client.await {
            Ok(client) => client,
            Err(err) => {
                metrics.error(ErrorKind::Upgrade);
                tracing::warn!(error = %err, "upgrade failed");
                return;
            }
        };
        let activity = Activity::default();
        let mut client = Watched::new(TokioIo::new(client), &activity);
        // Bytes the upstream sent right behind its 101 go first.
        let (upstream, early) = upstream.into_parts();
        if !early.is_empty() {
            if let Err(err) = tokio::io::AsyncWriteExt::write_all(&mut client, &early).await {
                tracing::debug!(error = %err, "tunnel ended with an error");
                return;
            }
        }
        let mut upstream = Watched::new(upstream, &activity);
        metrics.open_tunnels.inc();
        tokio::select! {
            result = tokio::io::copy_bidirectional(&mut client, &mut upstream) => match result {
                Ok((up, down)) => tracing::debug!(up, down, "tunnel closed"),
                Err(err) => tracing::debug!(error = %err, "tunnel ended with an error"),
            },
            () = activity.idle_for(idle) => {
                tracing::debug!(idle = ?idle, "tunnel closed after its idle timeout");
            }
        }
        metrics.open_tunnels.dec();
    });
}

/// When a tunnel last moved a byte, shared by its two directions.
#[derive(Clone)]
struct Activity(Arc<std::sync::Mutex<Instant>>);

impl Default for Activity {
    fn default() -> Self {
        Self(Arc::new(std::sync::Mutex::new(Instant::now())))
    }
}

impl Activity {
    fn touch(&self) {
        if let Ok(mut last) = self.0.lock() {
            *last = Instant::now();
        }
    }

    fn last(&self) -> Instant {
        self.0.lock().map_or_else(|_| Instant::now(), |last| *last)
    }

    /// Resolves once nothing has moved for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let deadline = self.last() + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// An I/O object that records a successful read (data arriving) in its tunnel's activity.
struct Watched<I> {
    io: I,
    activity: Activity,
}

impl<I> Watched<I> {
    fn new(io: I, activity: &Activity) -> Self {
        Self {
            io,
            activity: activity.clone(),
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.touch();
        }
        polled
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
