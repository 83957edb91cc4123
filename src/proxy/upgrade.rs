//! Upgraded connections (WebSocket): after a matching `101`, bytes flow both ways untouched.

use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio_util::task::TaskTracker;

use super::metrics::{ErrorKind, ProxyMetrics};

/// Splices the client's and the upstream's upgraded connections in a task on `tunnels`, so
/// that graceful shutdown waits for it (the HTTP connection future ends at the upgrade).
pub fn splice(
    tunnels: &TaskTracker,
    client: OnUpgrade,
    upstream: OnUpgrade,
    metrics: ProxyMetrics,
) {
    tunnels.spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(err) => {
                metrics.error(ErrorKind::Upgrade);
                tracing::warn!(error = %err, "upgrade failed");
                return;
            }
        };
        let mut client = TokioIo::new(client);
        let mut upstream = TokioIo::new(upstream);
        metrics.open_tunnels.inc();
        let result = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        metrics.open_tunnels.dec();
        match result {
            Ok((up, down)) => tracing::debug!(up, down, "tunnel closed"),
            Err(err) => tracing::debug!(error = %err, "tunnel ended with an error"),
        }
    });
}
