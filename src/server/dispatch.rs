//! One request: load the configuration snapshot once, route, answer, count, log.

use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::metrics::{GaugeGuard, HttpMetrics, RouteKind};
use super::route::{classify, Route};
use crate::body::{full, BoxBody};
use crate::config::Live;
use crate::proxy::{ClientInfo, Proxy};
use crate::scim::ScimService;

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

    /// Answers one request. Never fails: every outcome is an HTTP response.
    pub async fn dispatch(&self, req: Request<Incoming>, client: ClientInfo) -> Response<BoxBody> {
        let started = Instant::now();
        let _in_flight = GaugeGuard::enter(&self.metrics.in_flight);
        // One snapshot for the whole request: a reload in the middle does not affect it.
        let cfg = self.live.current();
        let method = req.method().clone();
        let version = req.version();
        let (label, path, response) = match classify(req.uri()) {
            Route::Scim { sub_path } => {
                let response = if cfg.scim.enabled {
                    // Boxed: the SCIM engine's state (Chamilo calls through reqwest) is large,
                    // and would otherwise size every request's future, which hyper moves by
                    // value, pass-through ones included.
                    Box::pin(self.scim.handle(req, &sub_path, &cfg.scim)).await
                } else {
                    plain(StatusCode::NOT_FOUND, "Not Found\n")
                };
                (RouteKind::Scim, format!("/scim/v2{sub_path}"), response)
            }
            Route::PassThrough { path } => {
                let response = self.proxy.forward(req, client, &cfg, &path).await;
                (RouteKind::PassThrough, path, response)
            }
            Route::Reject { status, reason } => {
                tracing::debug!(peer = %client.peer, reason, "request target rejected");
                (
                    RouteKind::Reject,
                    "-".to_owned(),
                    plain(status, status_text(status)),
                )
            }
        };
        let status = response.status().as_u16();
        let elapsed = started.elapsed();
        self.metrics.observe(label, status, elapsed.as_secs_f64());
        // A fixed field list: no headers and no query string, so no credential can leak here.
        tracing::info!(
            target: "access",
            method = %method,
            route = label.label(),
            path = %path,
            status,
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            peer = %client.peer,
            tls = client.tls,
            version = ?version,
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

fn plain(status: StatusCode, text: impl Into<String>) -> Response<BoxBody> {
    let mut response = Response::new(full(text.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
