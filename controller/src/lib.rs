//! `serval-controller` turns InferenceServices into revisions, pods and routes, with one
//! backend for Kubernetes (kube-rs, to come) and one for local processes ([`local`], used
//! by `serval dev`), and writes status from what it observed.

pub mod kubernetes;
pub mod local;
pub mod rollout;

/// The variable that tells `serval runtime` to serve REST on a Unix socket as well (its
/// `--http-listen-unix`), which the replica's queue-proxy then reaches it through; other
/// model servers ignore it and are reached over TCP.
pub const RUNTIME_SOCKET_ENV: &str = "SERVAL_HTTP_LISTEN_UNIX";

/// The queue-proxy flags that name the runtime's own metrics to scrape (queue depth,
/// KV-cache usage), from a revision's annotations (its runtime's, then its own).
pub fn runtime_metric_args(
    annotations: &std::collections::BTreeMap<String, String>,
) -> Vec<String> {
    use serval_api::annotations::serval::{KV_CACHE_METRIC, QUEUE_DEPTH_METRIC};
    [
        (QUEUE_DEPTH_METRIC, "--queue-depth-metric"),
        (KV_CACHE_METRIC, "--kv-cache-metric"),
    ]
    .into_iter()
    .filter_map(|(key, flag)| Some(format!("{flag}={}", annotations.get(key)?)))
    .collect()
}
