//! Transparent pass-through to the upstream Chamilo.
//!
//! INTERFACE STUB: the signatures below are the contract with `server`; the bodies are
//! placeholders until the pass-through lands.

use std::net::SocketAddr;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use prometheus_client::registry::Registry;
use tokio_util::task::TaskTracker;

use crate::body::{full, BoxBody};
use crate::config::{Config, UpstreamConfig};

/// Who sent a request, as the listener saw it.
#[derive(Debug, Clone, Copy)]
pub struct ClientInfo {
    /// The TCP peer address.
    pub peer: SocketAddr,
    /// Whether the client connection is TLS (sets `X-Forwarded-Proto`).
    pub tls: bool,
}

/// Why the pass-through could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProxyError(pub String);

/// The pass-through: one pooled upstream client shared by all connections.
pub struct Proxy {
    _tunnels: TaskTracker,
}

impl Proxy {
    /// Builds the pooled client (settings in `upstream` that need a new pool are fixed for the
    /// life of the process) and registers the proxy's metrics. Upgraded tunnels (WebSocket) are
    /// spawned on `tunnels` so that graceful shutdown can wait for them.
    pub fn new(
        _upstream: &UpstreamConfig,
        _registry: &mut Registry,
        tunnels: TaskTracker,
    ) -> Result<Self, ProxyError> {
        Ok(Self { _tunnels: tunnels })
    }

    /// Passes `req` to the upstream named in `cfg` (the snapshot this request started with).
    /// `path` is the normalised path the router decided on; access rules are checked on it.
    pub async fn forward(
        &self,
        _req: Request<Incoming>,
        _client: ClientInfo,
        _cfg: &Config,
        _path: &str,
    ) -> Response<BoxBody> {
        let mut resp = Response::new(full("pass-through not implemented yet\n"));
        *resp.status_mut() = StatusCode::NOT_IMPLEMENTED;
        resp
    }
}
