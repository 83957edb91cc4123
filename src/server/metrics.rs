//! Request metrics of the public listener.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub route: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabel {
    pub route: &'static str,
}

type HistogramFamily = Family<RouteLabel, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 100 µs … ~6.5 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

/// `http_requests_total{route,status}`, `http_request_duration_seconds{route}`,
/// `http_requests_in_flight`, `http_connections_open`, `tls_certificate_expiry_timestamp_seconds`.
#[derive(Clone)]
pub struct HttpMetrics {
    pub(crate) requests: Family<RequestLabels, Counter>,
    pub(crate) duration: HistogramFamily,
    pub(crate) in_flight: Gauge,
    pub(crate) connections: Gauge,
    pub(crate) certificate_expiry: Gauge,
}

impl HttpMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            duration: Family::new_with_constructor(latency_histogram),
            in_flight: Gauge::default(),
            connections: Gauge::default(),
            certificate_expiry: Gauge::default(),
        };
        registry.register(
            "http_requests",
            "Requests answered on the public listener, by route (scim, pass_through, reject) and status",
            metrics.requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from request to response headers, by route",
            metrics.duration.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "Requests being answered now",
            metrics.in_flight.clone(),
        );
        registry.register(
            "http_connections_open",
            "Client connections open on the public listener",
            metrics.connections.clone(),
        );
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "notAfter of the served certificate as Unix time (0 without TLS)",
            metrics.certificate_expiry.clone(),
        );
        metrics
    }
}

/// Decrements a gauge when dropped, so a cancelled request or closed connection is counted out.
pub(crate) struct GaugeGuard(Gauge);

impl GaugeGuard {
    pub(crate) fn enter(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}
