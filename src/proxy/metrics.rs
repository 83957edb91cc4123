//! The pass-through's Prometheus metrics.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Why a request could not be passed to the upstream (the `kind` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// TCP connect refused or failed.
    Connect,
    /// TCP connect took longer than `upstream.connect_timeout`.
    ConnectTimeout,
    /// No response headers within `upstream.response_header_timeout`.
    ResponseTimeout,
    /// The request body made no progress for `upstream.body_idle_timeout`.
    BodyTimeout,
    /// The connection broke or the upstream spoke invalid HTTP.
    Reset,
    /// The response body broke off after its head had been passed on.
    Truncated,
    /// `upstream.url` unusable.
    Config,
    /// A `101` that does not match the upgrade asked for, or a failed tunnel.
    Upgrade,
}

impl ErrorKind {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::ConnectTimeout => "connect_timeout",
            Self::ResponseTimeout => "response_timeout",
            Self::BodyTimeout => "body_timeout",
            Self::Reset => "reset",
            Self::Truncated => "truncated",
            Self::Config => "config",
            Self::Upgrade => "upgrade",
        }
    }

    /// The status the client gets.
    pub fn status(self) -> http::StatusCode {
        match self {
            Self::ConnectTimeout | Self::ResponseTimeout | Self::BodyTimeout => {
                http::StatusCode::GATEWAY_TIMEOUT
            }
            _ => http::StatusCode::BAD_GATEWAY,
        }
    }

    /// Whether `err` is the client's doing rather than the upstream's: its request body broke
    /// (bad chunked framing, a connection that went away) or did not match its
    /// `Content-Length`. The idle timeout of an upload stays an upstream `body_timeout`.
    pub fn is_client_fault(err: &super::upstream::UpstreamError) -> bool {
        use super::upstream::UpstreamError;
        match err {
            UpstreamError::RequestBody(cause) => !cause.is::<super::idle::BodyIdleTimeout>(),
            UpstreamError::RequestBodyLength => true,
            _ => false,
        }
    }

    /// Classifies a failed upstream request.
    pub fn of(err: &super::upstream::UpstreamError) -> Self {
        use super::upstream::UpstreamError;
        match err {
            UpstreamError::ConnectTimeout => Self::ConnectTimeout,
            UpstreamError::Connect(io) if io.kind() == std::io::ErrorKind::TimedOut => {
                Self::ConnectTimeout
            }
            UpstreamError::Connect(_) => Self::Connect,
            UpstreamError::RequestBody(cause) if cause.is::<super::idle::BodyIdleTimeout>() => {
                Self::BodyTimeout
            }
            _ => Self::Reset,
        }
    }
}

/// Handles to the registered metrics; cheap to clone.
#[derive(Clone)]
pub struct ProxyMetrics {
    upstream_errors: Family<[(&'static str, &'static str); 1], Counter>,
    /// WebSocket (and other upgraded) tunnels open now.
    pub open_tunnels: Gauge,
    /// Requests refused by an access rule.
    pub access_denied: Counter,
    /// `upstream_errors{kind="truncated"}`, resolved once: every response body carries it.
    pub truncated: Counter,
    /// `client_errors{kind="request_body"}`: requests whose body the client broke.
    pub client_body_errors: Counter,
    /// `upstream_errors{kind="body_timeout"}`, resolved once for response bodies.
    pub body_timeouts: Counter,
}

impl ProxyMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let upstream_errors: Family<[(&'static str, &'static str); 1], Counter> = Family::default();
        let truncated = upstream_errors
            .get_or_create(&[("kind", ErrorKind::Truncated.as_str())])
            .clone();
        let body_timeouts = upstream_errors
            .get_or_create(&[("kind", ErrorKind::BodyTimeout.as_str())])
            .clone();
        let client_errors: Family<[(&'static str, &'static str); 1], Counter> = Family::default();
        let client_body_errors = client_errors
            .get_or_create(&[("kind", "request_body")])
            .clone();
        let metrics = Self {
            upstream_errors,
            open_tunnels: Gauge::default(),
            access_denied: Counter::default(),
            truncated,
            client_body_errors,
            body_timeouts,
        };
        registry.register(
            "proxy_client_errors",
            "Pass-through requests that failed on the client's side (a broken request body), by kind",
            client_errors,
        );
        registry.register(
            "proxy_upstream_errors",
            "Pass-through requests that failed at the upstream, by kind",
            metrics.upstream_errors.clone(),
        );
        registry.register(
            "proxy_open_tunnels",
            "Upgraded (WebSocket) tunnels currently open",
            metrics.open_tunnels.clone(),
        );
        registry.register(
            "proxy_access_denied",
            "Pass-through requests refused by an access rule",
            metrics.access_denied.clone(),
        );
        metrics
    }

    /// Counts one upstream error.
    pub fn error(&self, kind: ErrorKind) {
        self.upstream_errors
            .get_or_create(&[("kind", kind.as_str())])
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_exposed() {
        let mut registry = Registry::default();
        let m = ProxyMetrics::register(&mut registry);
        m.error(ErrorKind::ConnectTimeout);
        m.error(ErrorKind::ConnectTimeout);
        m.open_tunnels.inc();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.contains("proxy_upstream_errors_total{kind=\"connect_timeout\"} 2"),
            "{text}"
        );
        assert!(text.contains("proxy_open_tunnels 1"), "{text}");
        assert!(text.contains("proxy_access_denied_total 0"), "{text}");
    }
}
