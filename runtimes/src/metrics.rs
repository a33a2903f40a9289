//! Prometheus metrics under KServe's names, so dashboards built for KServe's model servers
//! work unchanged, plus the batcher's batch sizes.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Latency buckets in seconds: KServe's Python defaults start at 5 ms, which is slower
/// than most requests here, so finer buckets come first.
const LATENCY_BUCKETS: [f64; 16] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
const BATCH_BUCKETS: [f64; 10] = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model_name: String,
}

/// Handles to the histograms of the one served model; observing is a few atomic adds.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    pub(crate) preprocess: Histogram,
    pub(crate) predict: Histogram,
    pub(crate) postprocess: Histogram,
    /// Requests merged into each model call by the batcher.
    pub(crate) batch_requests: Histogram,
}

fn latency() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

impl Metrics {
    pub fn new(model_name: &str) -> Self {
        let mut registry = Registry::default();
        let labels = ModelLabels {
            model_name: model_name.to_owned(),
        };
        let mut family = |name: &str, help: &str| {
            let family =
                Family::<ModelLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency);
            registry.register(name, help, family.clone());
            let histogram = family.get_or_create(&labels).clone();
            histogram
        };
        let preprocess = family("request_preprocess_seconds", "pre-process request latency");
        let predict = family("request_predict_seconds", "predict request latency");
        let postprocess = family(
            "request_postprocess_seconds",
            "post-process request latency",
        );
        // Served by KServe's explainers; present (and empty) so the set of names matches.
        let _explain = family("request_explain_seconds", "explain request latency");
        let batch_requests = Histogram::new(BATCH_BUCKETS);
        registry.register(
            "serval_runtime_batch_requests",
            "requests merged into one model call by the batcher",
            batch_requests.clone(),
        );
        Self {
            registry: Mutex::new(registry),
            preprocess,
            predict,
            postprocess,
            batch_requests,
        }
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        encode(&self.registry)
    }
}

/// A registry's Prometheus text exposition.
pub(crate) fn encode(registry: &Mutex<Registry>) -> String {
    let mut out = String::new();
    let registry = registry
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Writing to a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uses_kserve_names() {
        let metrics = Metrics::new("iris");
        metrics.predict.observe(0.001);
        let text = metrics.encode();
        for name in [
            "request_preprocess_seconds",
            "request_predict_seconds",
            "request_postprocess_seconds",
            "request_explain_seconds",
        ] {
            assert!(
                text.contains(&format!("# TYPE {name} histogram")),
                "{name} in {text}"
            );
        }
        assert!(
            text.contains("request_predict_seconds_count{model_name=\"iris\"} 1"),
            "{text}"
        );
    }
}
