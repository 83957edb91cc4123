//! The admin listener: `/livez`, `/readyz`, `/metrics`, and `POST /reload`.
//!
//! It is a separate port (loopback by default) so that health and metrics are never exposed
//! through the proxied site.

use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::body::{full, BoxBody};
use crate::config::reload::ReloadTrigger;

/// What `/readyz` reports: ready once the configuration is loaded and the public listener is
/// bound, and not ready again from the moment draining starts.
#[derive(Debug, Default)]
pub struct Health {
    config_loaded: AtomicBool,
    listener_bound: AtomicBool,
    draining: AtomicBool,
    backend_required: AtomicBool,
    backend_ready: AtomicBool,
}

impl Health {
    pub fn set_config_loaded(&self) {
        self.config_loaded.store(true, Ordering::Release);
    }

    pub fn set_listener_bound(&self) {
        self.listener_bound.store(true, Ordering::Release);
    }

    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Makes readiness wait for [`Health::set_backend_ready`] (`scim.ready_requires_backend`).
    pub fn require_backend(&self, required: bool) {
        self.backend_required.store(required, Ordering::Release);
    }

    /// The SCIM backend is checked and its user index loaded.
    pub fn set_backend_ready(&self, ready: bool) {
        self.backend_ready.store(ready, Ordering::Release);
    }

    /// Whether the SCIM backend is ready, required or not.
    pub fn backend_ready(&self) -> bool {
        self.backend_ready.load(Ordering::Acquire)
    }

    /// `Ok` when ready, otherwise the reason.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if self.draining.load(Ordering::Acquire) {
            Err("draining")
        } else if !self.config_loaded.load(Ordering::Acquire) {
            Err("configuration not loaded")
        } else if !self.listener_bound.load(Ordering::Acquire) {
            Err("listener not bound")
        } else if self.backend_required.load(Ordering::Acquire)
            && !self.backend_ready.load(Ordering::Acquire)
        {
            Err("SCIM backend not ready")
        } else {
            Ok(())
        }
    }
}

/// Shared state of the admin endpoints.
pub struct Admin {
    pub health: Arc<Health>,
    pub registry: Arc<Registry>,
    pub reload: ReloadTrigger,
}

impl Admin {
    /// Answers one admin request.
    pub fn respond<B>(&self, req: &Request<B>) -> Response<BoxBody> {
        match (req.method(), req.uri().path()) {
            (&Method::GET | &Method::HEAD, "/livez") => text(StatusCode::OK, "ok\n"),
            (&Method::GET | &Method::HEAD, "/readyz") => match self.health.readiness() {
                Ok(()) => text(StatusCode::OK, "ready\n"),
                Err(reason) => text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {reason}\n"),
                ),
            },
            (&Method::GET, "/metrics") => {
                let mut out = String::new();
                match prometheus_client::encoding::text::encode(&mut out, &self.registry) {
                    Ok(()) => {
                        let mut resp = Response::new(full(out));
                        resp.headers_mut().insert(
                            http::header::CONTENT_TYPE,
                            http::HeaderValue::from_static(
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            ),
                        );
                        resp
                    }
                    Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "cannot encode metrics\n"),
                }
            }
            (&Method::POST, "/reload") => {
                self.reload.request();
                text(StatusCode::ACCEPTED, "reload requested\n")
            }
            (_, "/livez" | "/readyz" | "/metrics" | "/reload") => {
                text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n")
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }

    /// Serves the admin listener until `stop`.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, stop: CancellationToken) {
        loop {
            let (stream, _) = tokio::select! {
                _ = stop.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "admin accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let admin = self.clone();
            let stop = stop.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let resp = admin.respond(&req);
                    async move { Ok::<_, Infallible>(resp) }
                });
                let mut builder = auto::Builder::new(TokioExecutor::new());
                builder
                    .http1()
                    .timer(TokioTimer::new())
                    .header_read_timeout(std::time::Duration::from_secs(10));
                let conn = builder.serve_connection(TokioIo::new(stream), service);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    _ = stop.cancelled() => {}
                }
            });
        }
    }
}

fn text(status: StatusCode, body: impl Into<String>) -> Response<BoxBody> {
    let mut resp = Response::new(full(body.into()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn admin() -> Admin {
        Admin {
            health: Arc::new(Health::default()),
            registry: Arc::new(Registry::default()),
            reload: ReloadTrigger::default(),
        }
    }

    fn get(path: &str) -> Request<()> {
        Request::get(path).body(()).unwrap()
    }

    #[test]
    fn readiness_follows_the_lifecycle() {
        let h = Health::default();
        assert_eq!(h.readiness(), Err("configuration not loaded"));
        h.set_config_loaded();
        assert_eq!(h.readiness(), Err("listener not bound"));
        h.set_listener_bound();
        assert_eq!(h.readiness(), Ok(()));
        h.set_draining();
        assert_eq!(h.readiness(), Err("draining"));
    }

    #[test]
    fn readiness_waits_for_the_backend_only_when_required() {
        let h = Health::default();
        h.set_config_loaded();
        h.set_listener_bound();
        assert_eq!(h.readiness(), Ok(()));
        h.require_backend(true);
        assert_eq!(h.readiness(), Err("SCIM backend not ready"));
        h.set_backend_ready(true);
        assert_eq!(h.readiness(), Ok(()));
    }

    #[test]
    fn endpoints_answer() {
        let a = admin();
        assert_eq!(a.respond(&get("/livez")).status(), StatusCode::OK);
        assert_eq!(
            a.respond(&get("/readyz")).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(a.respond(&get("/metrics")).status(), StatusCode::OK);
        assert_eq!(a.respond(&get("/nope")).status(), StatusCode::NOT_FOUND);
        let post = Request::post("/reload").body(()).unwrap();
        assert_eq!(a.respond(&post).status(), StatusCode::ACCEPTED);
        let post = Request::post("/livez").body(()).unwrap();
        assert_eq!(a.respond(&post).status(), StatusCode::METHOD_NOT_ALLOWED);
    }
}
