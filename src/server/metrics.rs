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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct HandoverLabel {
    pub reason: &'static str,
}

type HistogramFamily = Family<RouteLabel, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 100 µs … ~6.5 s
    Histogram::new(exponential_buckets(0.0001, 2.0, 17))
}

/// Where a request went: the `route` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RouteKind {
    Scim,
    PassThrough,
    Reject,
}

impl RouteKind {
    const ALL: [RouteKind; 3] = [RouteKind::Scim, RouteKind::PassThrough, RouteKind::Reject];

    pub(crate) fn label(self) -> &'static str {
        match self {
            RouteKind::Scim => "scim",
            RouteKind::PassThrough => "pass_through",
            RouteKind::Reject => "reject",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Statuses 100–599 have a counter cell each; handles are looked up once and then reused, so
/// counting a request costs no lock and no hashing of labels.
const STATUS_CELLS: usize = 500;

/// `http_requests_total{route,status}`, `http_request_duration_seconds{route}`,
/// `http_requests_in_flight`, `http_connections_open`, `http_express_handovers_total{reason}`,
/// `tls_certificate_expiry_timestamp_seconds`.
#[derive(Clone)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    /// Handles into `requests`, by route index × status.
    request_cells: std::sync::Arc<[std::sync::OnceLock<Counter>]>,
    /// One histogram per route, resolved at registration.
    durations: [Histogram; RouteKind::ALL.len()],
    pub(crate) in_flight: Gauge,
    pub(crate) connections: Gauge,
    /// Plain HTTP/1.1 connections the express lane gave to hyper's server, by why.
    pub(crate) handovers: Family<HandoverLabel, Counter>,
    pub(crate) certificate_expiry: Gauge,
}

impl HttpMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let duration: HistogramFamily = Family::new_with_constructor(latency_histogram);
        let durations = RouteKind::ALL.map(|kind| {
            duration
                .get_or_create(&RouteLabel {
                    route: kind.label(),
                })
                .clone()
        });
        let metrics = Self {
            requests: Family::default(),
            request_cells: (0..RouteKind::ALL.len() * STATUS_CELLS)
                .map(|_| std::sync::OnceLock::new())
                .collect(),
            durations,
            in_flight: Gauge::default(),
            connections: Gauge::default(),
            handovers: Family::default(),
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
            duration,
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
            "http_express_handovers",
            "Plain HTTP/1.1 connections the express lane handed to the full HTTP server, by the \
             first request it does not serve itself (request body, expect, upgrade, HTTP/1.0, \
             scim route, ...)",
            metrics.handovers.clone(),
        );
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "notAfter of the served certificate as Unix time (0 without TLS)",
            metrics.certificate_expiry.clone(),
        );
        metrics
    }
}

impl HttpMetrics {
    /// Counts one answered request and its time to response headers.
    pub(crate) fn observe(&self, route: RouteKind, status: u16, seconds: f64) {
        self.durations[route.index()].observe(seconds);
        let labels = || RequestLabels {
            route: route.label(),
            status,
        };
        match usize::from(status).checked_sub(100) {
            Some(offset) if offset < STATUS_CELLS => self.request_cells
                [route.index() * STATUS_CELLS + offset]
                .get_or_init(|| self.requests.get_or_create(&labels()).clone())
                .inc(),
            _ => self.requests.get_or_create(&labels()).inc(),
        };
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
