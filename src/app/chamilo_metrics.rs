//! `chamilo_calls_total` and `chamilo_call_duration_seconds`: the Chamilo backend's
//! [`CallObserver`], registered with the admin port's metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::chamilo::{CallObserver, CallOutcome};

/// `chamilo_calls_total{action,outcome}` and `chamilo_call_duration_seconds{action}`: every
/// web-service call the SCIM backend makes, so an operator sees what each SCIM operation costs
/// Chamilo and when Chamilo starts refusing or timing out.
#[derive(Clone)]
pub struct ChamiloCallMetrics {
    calls: Family<CallLabels, Counter>,
    duration: Family<ActionLabel, Histogram, fn() -> Histogram>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    action: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ActionLabel {
    action: String,
}

fn chamilo_histogram() -> Histogram {
    // 1 ms … ~32 s: a PHP web service, and the listing of everyone.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl ChamiloCallMetrics {
    /// Creates the metrics and registers them.
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            calls: Family::default(),
            duration: Family::new_with_constructor(chamilo_histogram),
        };
        registry.register(
            "chamilo_calls",
            "Chamilo web-service calls made by the SCIM backend, by action and outcome (ok, refused, unreachable, timeout, unexpected)",
            metrics.calls.clone(),
        );
        registry.register(
            "chamilo_call_duration_seconds",
            "Duration of Chamilo web-service calls, by action",
            metrics.duration.clone(),
        );
        metrics
    }
}

impl CallObserver for ChamiloCallMetrics {
    fn observe(&self, action: &str, outcome: CallOutcome, elapsed: std::time::Duration) {
        self.calls
            .get_or_create(&CallLabels {
                action: action.to_owned(),
                outcome: outcome.as_str(),
            })
            .inc();
        self.duration
            .get_or_create(&ActionLabel {
                action: action.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
    }
}
