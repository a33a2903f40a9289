//! The per-pod metrics window that queue-proxies serve on `GET /stats`, activators push, and
//! the autoscaler consumes.

use serde::{Deserialize, Serialize};

/// What one pod observed over one reporting window.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Stat {
    /// The pod (or, for activator reports, the activator) that measured this window.
    pub pod_name: String,
    /// End of the window, in milliseconds since the Unix epoch.
    pub timestamp_ms: u64,
    /// Length of the window in milliseconds.
    pub window_ms: u64,
    /// Time-weighted average number of requests in flight over the window.
    pub average_concurrency: f64,
    /// The part of `average_concurrency` that arrived through the activator, so the
    /// autoscaler does not count it twice.
    pub average_proxied_concurrency: f64,
    /// Requests that completed or started in the window.
    pub request_count: u64,
    /// The part of `request_count` that arrived through the activator.
    pub proxied_request_count: u64,
    /// Request and response body bytes proxied in the window.
    #[serde(default)]
    pub proxied_bytes: u64,
    /// Output tokens counted from OpenAI-style responses in the window.
    #[serde(default)]
    pub output_tokens: u64,
    /// Prompt tokens of the completions that finished in the window, from the `usage` the
    /// server reported (absent from streams that asked for no usage).
    #[serde(default)]
    pub prompt_tokens: u64,
    /// The runtime's own queue depth (e.g. `vllm:num_requests_waiting`), when it exposes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_queue_depth: Option<f64>,
    /// The share of the runtime's KV cache in use, 0 to 1 (e.g. vLLM's
    /// `vllm:kv_cache_usage_perc`), when it exposes one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_kv_cache_usage: Option<f64>,
    /// GPU readings from NVML; absent without a GPU or driver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<GpuStat>,
    /// How long the reporting process has been up, in milliseconds.
    #[serde(default)]
    pub process_uptime_ms: u64,
    /// Activator reports: requests that found no free replica and waited, in the window.
    #[serde(default)]
    pub held_request_count: u64,
}

/// GPU readings summed (memory) or averaged (utilisation) over the pod's visible devices.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct GpuStat {
    pub devices: u32,
    pub utilization_percent: f64,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
}

impl Stat {
    fn window_seconds(&self) -> f64 {
        self.window_ms as f64 / 1000.0
    }

    /// Requests per second over the window; 0 for an empty window.
    pub fn requests_per_second(&self) -> f64 {
        per_second(self.request_count, self.window_seconds())
    }

    /// Output tokens per second over the window; 0 for an empty window.
    pub fn tokens_per_second(&self) -> f64 {
        per_second(self.output_tokens, self.window_seconds())
    }

    /// Prompt tokens per second over the window; 0 for an empty window.
    pub fn prompt_tokens_per_second(&self) -> f64 {
        per_second(self.prompt_tokens, self.window_seconds())
    }
}

fn per_second(count: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shape_is_camel_case_and_omits_absent_gpu() {
        let stat = Stat {
            pod_name: "iris-predictor-1-abc".into(),
            window_ms: 2000,
            request_count: 10,
            output_tokens: 300,
            prompt_tokens: 1000,
            ..Stat::default()
        };
        let json = serde_json::to_value(&stat).unwrap();
        assert_eq!(json["podName"], "iris-predictor-1-abc");
        assert!(json.get("gpu").is_none());
        assert_eq!(stat.requests_per_second(), 5.0);
        assert_eq!(stat.tokens_per_second(), 150.0);
        assert_eq!(stat.prompt_tokens_per_second(), 500.0);
        assert_eq!(json["promptTokens"], 1000);
        let back: Stat = serde_json::from_value(json).unwrap();
        assert_eq!(back, stat);
    }
}
