//! Prometheus metrics of the client's calls (cargo feature `prometheus`): the one
//! implementation of [`CallObserver`] that every process exporting HubSpot call metrics embeds.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::observer::CallObserver;

/// Latency buckets of one HTTP request to HubSpot, in seconds.
const LATENCY_BUCKETS: [f64; 9] = [0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HubSpotCallLabels {
    pub operation: String,
    pub outcome: String,
}

/// HubSpot API calls by operation and outcome, and the latency of their requests.
pub struct CallMetrics {
    /// HubSpot API calls by operation and outcome (ok, retried status, error).
    pub requests: Family<HubSpotCallLabels, Counter>,
    /// HubSpot API request latency in seconds.
    pub latency: Histogram,
}

impl Default for CallMetrics {
    fn default() -> Self {
        CallMetrics { requests: Family::default(), latency: Histogram::new(LATENCY_BUCKETS) }
    }
}

impl CallMetrics {
    /// Registers the families in `registry` (whose prefix the names get):
    /// `hubspot_requests` and `hubspot_request_duration_seconds`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register("hubspot_requests", "HubSpot API calls by operation and outcome", self.requests.clone());
        registry.register("hubspot_request_duration_seconds", "HubSpot API call latency", self.latency.clone());
    }
}

impl CallObserver for CallMetrics {
    fn call_ended(&self, operation: &str, outcome: &str) {
        self.requests.get_or_create(&HubSpotCallLabels { operation: operation.into(), outcome: outcome.into() }).inc();
    }

    fn request_took(&self, seconds: f64) {
        self.latency.observe(seconds);
    }

    /// Batch sizes are the sync's concern: a process that exports them keeps its own histogram.
    fn batch_read(&self, _objects: usize) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_are_exported_under_the_registry_prefix() {
        let metrics = CallMetrics::default();
        let mut registry = Registry::with_prefix("hubspot_operator");
        metrics.register(&mut registry);
        metrics.call_ended("batch_read", "ok");
        metrics.call_ended("batch_read", "ok");
        metrics.call_ended("upsert", "429");
        metrics.request_took(0.2);
        metrics.batch_read(100);

        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "# HELP hubspot_operator_hubspot_requests HubSpot API calls by operation and outcome.",
            "# TYPE hubspot_operator_hubspot_requests counter",
            r#"hubspot_operator_hubspot_requests_total{operation="batch_read",outcome="ok"} 2"#,
            r#"hubspot_operator_hubspot_requests_total{operation="upsert",outcome="429"} 1"#,
            "# HELP hubspot_operator_hubspot_request_duration_seconds HubSpot API call latency.",
            "# TYPE hubspot_operator_hubspot_request_duration_seconds histogram",
            "hubspot_operator_hubspot_request_duration_seconds_sum 0.2",
            "hubspot_operator_hubspot_request_duration_seconds_count 1",
            r#"hubspot_operator_hubspot_request_duration_seconds_bucket{le="0.1"} 0"#,
            r#"hubspot_operator_hubspot_request_duration_seconds_bucket{le="0.25"} 1"#,
            r#"hubspot_operator_hubspot_request_duration_seconds_bucket{le="+Inf"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
        }
    }
}
