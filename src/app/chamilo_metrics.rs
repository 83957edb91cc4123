//! `chamilo_calls_total`, `chamilo_call_duration_seconds` and `chamilo_writes_total`: the
//! Chamilo backend's [`CallObserver`], registered with the admin port's metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::chamilo::write::WriteOutcome;
use crate::chamilo::{CallObserver, CallOutcome};

/// `chamilo_calls_total{action,outcome}` and `chamilo_call_duration_seconds{action}`: every
/// web-service call the SCIM backend makes, so an operator sees what each SCIM operation costs
/// Chamilo and when Chamilo starts refusing or timing out.
#[derive(Clone)]
pub struct ChamiloCallMetrics {
    calls: Family<CallLabels, Counter>,
    duration: Family<ActionLabel, Histogram, fn() -> Histogram>,
    writes: Family<WriteLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WriteLabels {
    operation: String,
    outcome: &'static str,
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
            writes: Family::default(),
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
        registry.register(
            "chamilo_writes",
            "SCIM writes carried out in Chamilo, by operation and outcome (applied, repaired, incomplete, refused); incomplete ones were answered 503 and logged at ERROR",
            metrics.writes.clone(),
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

    fn write_outcome(&self, operation: &str, outcome: WriteOutcome) {
        self.writes
            .get_or_create(&WriteLabels {
                operation: operation.to_owned(),
                outcome: outcome.as_str(),
            })
            .inc();
    }
}
