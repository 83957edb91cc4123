//! One request: load the configuration snapshot once, route, answer, count, log.

use std::sync::Arc;
use std::time::Instant;

use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;

use super::metrics::{GaugeGuard, HttpMetrics, RouteKind};
use super::route::{classify, host_problem, Route};
use crate::body::{plain_text, BoxBody, BoxError};
use crate::config::{Config, Live};
use crate::proxy::{ClientInfo, Proxy};
use crate::scim::{ClientScheme, ScimService};

/// Sends each request to the SCIM service, the pass-through, or a refusal.
pub struct Dispatcher {
    live: Live,
    proxy: Arc<Proxy>,
    scim: Arc<ScimService>,
    metrics: HttpMetrics,
}

impl Dispatcher {
    pub fn new(
        live: Live,
        proxy: Arc<Proxy>,
        scim: Arc<ScimService>,
        metrics: HttpMetrics,
    ) -> Self {
        Self {
            live,
            proxy,
            scim,
            metrics,
        }
    }

    /// The public listener's metrics.
    pub(super) fn metrics(&self) -> &HttpMetrics {
        &self.metrics
    }

    /// Answers one request. Never fails: every outcome is an HTTP response.
    pub async fn dispatch(&self, req: Request<Incoming>, client: ClientInfo) -> Response<BoxBody> {
        let route =
            host_problem(req.version(), req.headers()).unwrap_or_else(|| classify(req.uri()));
        match route {
            Route::PassThrough { path } => self.pass_through(req, client, path).await,
            Route::Scim { sub_path } => {
                let mut req = req;
                let visit = Visit::begin(&self.metrics, &req, client);
                // One snapshot for the whole request: a reload in the middle does not affect it.
                let cfg = self.live.current();
                let scheme = client_scheme(&req, client, &cfg);
                req.extensions_mut().insert(scheme);
                let response = if cfg.scim.enabled {
                    // Boxed: the SCIM engine's state (Chamilo calls through reqwest) is large,
                    // and would otherwise size every request's future, which hyper moves by
                    // value, pass-through ones included.
                    Box::pin(self.scim.handle(req, &sub_path, &cfg.scim)).await
                } else {
                    plain_text(StatusCode::NOT_FOUND, "Not Found\n")
                };
                let path = format!("/scim/v2{sub_path}");
                visit.end(&self.metrics, RouteKind::Scim, &path, response)
            }
            Route::Reject { status, reason } => {
                let visit = Visit::begin(&self.metrics, &req, client);
                tracing::debug!(peer = %client.peer, reason, "request target rejected");
                let response = plain_text(status, status_text(status));
                visit.end(&self.metrics, RouteKind::Reject, "-", response)
            }
        }
    }

    /// Passes a request the router sent to the upstream on; `path` is its normalised path.
    /// Also the entry of the express lane, whose requests carry no body.
    pub async fn pass_through<B>(
        &self,
        req: Request<B>,
        client: ClientInfo,
        path: String,
    ) -> Response<BoxBody>
    where
        B: http_body::Body<Data = bytes::Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let visit = Visit::begin(&self.metrics, &req, client);
        // One snapshot for the whole request: a reload in the middle does not affect it.
        let cfg = self.live.current();
        let response = self.proxy.forward(req, client, &cfg, &path).await;
        visit.end(&self.metrics, RouteKind::PassThrough, &path, response)
    }
}

/// One request from its start to its response: counted in flight meanwhile, then measured
/// and logged.
struct Visit {
    started: Instant,
    _in_flight: GaugeGuard,
    method: Method,
    version: Version,
    client: ClientInfo,
}

impl Visit {
    fn begin<B>(metrics: &HttpMetrics, req: &Request<B>, client: ClientInfo) -> Self {
        Self {
            started: Instant::now(),
            _in_flight: GaugeGuard::enter(&metrics.in_flight),
            method: req.method().clone(),
            version: req.version(),
            client,
        }
    }

    fn end(
        self,
        metrics: &HttpMetrics,
        label: RouteKind,
        path: &str,
        response: Response<BoxBody>,
    ) -> Response<BoxBody> {
        let status = response.status().as_u16();
        let elapsed = self.started.elapsed();
        metrics.observe(label, status, elapsed.as_secs_f64());
        // A fixed field list: no headers and no query string, so no credential can leak here.
        tracing::info!(
            target: "access",
            method = %self.method,
            route = label.label(),
            path,
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            peer = %self.client.peer,
            tls = self.client.tls,
            version = ?self.version,
            "request"
        );
        response
    }
}

fn status_text(status: StatusCode) -> String {
    format!(
        "{} {}\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("Error")
    )
}

/// The scheme the client used to reach the site: TLS to the proxy, or what a trusted peer
/// (a TLS-terminating ingress) says in `X-Forwarded-Proto`. Anyone else's claim is ignored.
fn client_scheme<B>(req: &Request<B>, client: ClientInfo, cfg: &Config) -> ClientScheme {
    let trusted = crate::proxy::forwarded::is_trusted(
        client.peer.ip().to_canonical(),
        &cfg.forwarding.trusted_networks,
    );
    let forwarded_https = trusted
        && req
            .headers()
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .is_some_and(|p| p.trim().eq_ignore_ascii_case("https"));
    ClientScheme {
        https: client.tls || forwarded_https,
    }
}
