//! The language-model server's metrics under vLLM's names, so the queue-proxy's
//! `--queue-depth-metric=vllm:num_requests_waiting` and dashboards made for vLLM work for
//! Serval's runtime unchanged.

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// vLLM's buckets for time to first token, in seconds.
const TTFT_BUCKETS: [f64; 17] = [
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0,
];
/// vLLM's buckets for the time between output tokens, in seconds.
const TPOT_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5,
];
const E2E_BUCKETS: [f64; 12] = [
    0.1, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 5.0, 10.0, 20.0, 40.0, 60.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model_name: String,
}

/// Handles the engine and the handlers update; each update is an atomic operation.
#[derive(Debug)]
pub(crate) struct LlmMetrics {
    registry: Mutex<Registry>,
    pub(crate) running: Gauge,
    pub(crate) waiting: Gauge,
    /// Share of the KV cache holding tokens, 0 to 1.
    pub(crate) kv_cache_usage: Gauge<f64, AtomicU64>,
    pub(crate) prompt_tokens: Counter,
    pub(crate) generation_tokens: Counter,
    pub(crate) time_to_first_token: Histogram,
    pub(crate) time_per_output_token: Histogram,
    pub(crate) e2e_latency: Histogram,
}

impl LlmMetrics {
    pub(crate) fn new(model_name: &str) -> Self {
        let mut registry = Registry::default();
        let labels = ModelLabels {
            model_name: model_name.to_owned(),
        };
        macro_rules! metric {
            ($name:expr, $help:expr, $make:expr) => {{
                let family = Family::<ModelLabels, _, _>::new_with_constructor($make);
                registry.register($name, $help, family.clone());
                let metric = family.get_or_create(&labels).clone();
                metric
            }};
        }
        let running: Gauge = metric!(
            "vllm:num_requests_running",
            "Number of requests in the running batch.",
            Gauge::default as fn() -> Gauge
        );
        let waiting: Gauge = metric!(
            "vllm:num_requests_waiting",
            "Number of requests waiting to join the batch.",
            Gauge::default as fn() -> Gauge
        );
        let kv_cache_usage: Gauge<f64, AtomicU64> = metric!(
            "vllm:kv_cache_usage_perc",
            "KV-cache usage: 1 means 100 percent.",
            Gauge::<f64, AtomicU64>::default as fn() -> Gauge<f64, AtomicU64>
        );
        // prometheus-client appends `_total` to counters.
        let prompt_tokens: Counter = metric!(
            "vllm:prompt_tokens",
            "Number of prefill tokens processed.",
            Counter::default as fn() -> Counter
        );
        let generation_tokens: Counter = metric!(
            "vllm:generation_tokens",
            "Number of generation tokens processed.",
            Counter::default as fn() -> Counter
        );
        let ttft: Histogram = metric!(
            "vllm:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.",
            (|| Histogram::new(TTFT_BUCKETS)) as fn() -> Histogram
        );
        let tpot: Histogram = metric!(
            "vllm:time_per_output_token_seconds",
            "Histogram of time per output token in seconds.",
            (|| Histogram::new(TPOT_BUCKETS)) as fn() -> Histogram
        );
        let e2e: Histogram = metric!(
            "vllm:e2e_request_latency_seconds",
            "Histogram of end to end request latency in seconds.",
            (|| Histogram::new(E2E_BUCKETS)) as fn() -> Histogram
        );
        Self {
            registry: Mutex::new(registry),
            running,
            waiting,
            kv_cache_usage,
            prompt_tokens,
            generation_tokens,
            time_to_first_token: ttft,
            time_per_output_token: tpot,
            e2e_latency: e2e,
        }
    }

    /// The Prometheus text exposition.
    pub(crate) fn encode(&self) -> String {
        crate::metrics::encode(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uses_vllm_names() {
        let metrics = LlmMetrics::new("smol");
        metrics.waiting.set(3);
        metrics.generation_tokens.inc_by(5);
        let text = metrics.encode();
        for line in [
            "vllm:num_requests_waiting{model_name=\"smol\"} 3",
            "vllm:num_requests_running{model_name=\"smol\"} 0",
            "vllm:generation_tokens_total{model_name=\"smol\"} 5",
            "vllm:prompt_tokens_total{model_name=\"smol\"} 0",
            "# TYPE vllm:time_to_first_token_seconds histogram",
            "# TYPE vllm:time_per_output_token_seconds histogram",
            "# TYPE vllm:kv_cache_usage_perc gauge",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
    }
}
