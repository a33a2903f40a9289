//! The queue-proxy's one configuration struct: flags, each also read from an environment
//! variable because the controller configures the sidecar through the pod's env.

use std::net::SocketAddr;
use std::time::Duration;

/// How `serval queue-proxy` is configured.
#[derive(clap::Args, Clone, Debug)]
pub struct Config {
    /// Address that receives user traffic.
    #[arg(long, env = "SERVAL_QP_LISTEN", default_value = "0.0.0.0:8012")]
    pub listen: SocketAddr,
    /// A Unix socket to accept user traffic on as well, for callers on the same machine
    /// (`serval dev`'s activator); a stale socket file there is replaced. Unset: TCP only.
    #[arg(long, env = "SERVAL_QP_LISTEN_UNIX")]
    pub listen_unix: Option<std::path::PathBuf>,
    /// The runtime container's address.
    #[arg(long, env = "SERVAL_QP_UPSTREAM", default_value = "127.0.0.1:8080")]
    pub upstream: SocketAddr,
    /// A directory where a runtime on loopback port `P` may also listen on `P.sock`; the
    /// runtime is reached through that socket when it exists, over TCP otherwise. Unset:
    /// TCP only.
    #[arg(long, env = "SERVAL_QP_LOCAL_SOCKETS")]
    pub local_sockets: Option<std::path::PathBuf>,
    /// Address of the admin server (`/stats`, `/metrics`, `/healthz`, `/wait-for-drain`).
    #[arg(long, env = "SERVAL_QP_ADMIN_LISTEN", default_value = "0.0.0.0:9091")]
    pub admin_listen: SocketAddr,
    /// Most requests the runtime gets at once; 0 means no limit.
    #[arg(long, env = "SERVAL_QP_CONTAINER_CONCURRENCY", default_value_t = 0)]
    pub container_concurrency: usize,
    /// Requests allowed to wait per unit of containerConcurrency before 503s.
    #[arg(long, env = "SERVAL_QP_QUEUE_DEPTH_FACTOR", default_value_t = 10)]
    pub queue_depth_factor: usize,
    /// Longest a request may take, queueing and response body included (0 = no limit).
    #[arg(long, env = "SERVAL_QP_REQUEST_TIMEOUT", default_value = "300s", value_parser = parse_duration)]
    pub request_timeout: Duration,
    /// Longest to wait for the runtime's response headers (0 = no limit).
    #[arg(long, env = "SERVAL_QP_FIRST_BYTE_TIMEOUT", default_value = "0s", value_parser = parse_duration)]
    pub first_byte_timeout: Duration,
    /// Longest gap between two chunks of a response body (0 = no limit).
    #[arg(long, env = "SERVAL_QP_IDLE_TIMEOUT", default_value = "0s", value_parser = parse_duration)]
    pub idle_timeout: Duration,
    /// After SIGTERM, how long to keep accepting requests while endpoints are updated.
    #[arg(long, env = "SERVAL_QP_DRAIN_PERIOD", default_value = "30s", value_parser = parse_duration)]
    pub drain_period: Duration,
    /// HTTP path to probe on the runtime for readiness; a TCP connect when unset.
    #[arg(long, env = "SERVAL_QP_PROBE_PATH")]
    pub probe_path: Option<String>,
    /// Probe period once the runtime has been ready (50 ms until it first answers).
    #[arg(long, env = "SERVAL_QP_PROBE_PERIOD", default_value = "1s", value_parser = parse_duration)]
    pub probe_period: Duration,
    /// Length of one stats window.
    #[arg(long, env = "SERVAL_QP_STATS_WINDOW", default_value = "1s", value_parser = parse_duration)]
    pub stats_window: Duration,
    /// The runtime's Prometheus endpoint path, scraped for its queue depth.
    #[arg(
        long,
        env = "SERVAL_QP_RUNTIME_METRICS_PATH",
        default_value = "/metrics"
    )]
    pub runtime_metrics_path: String,
    /// The runtime's queue-depth metric, e.g. `vllm:num_requests_waiting`; none when unset.
    #[arg(long, env = "SERVAL_QP_QUEUE_DEPTH_METRIC")]
    pub queue_depth_metric: Option<String>,
    /// The runtime's KV-cache usage metric (0 to 1), e.g. `vllm:kv_cache_usage_perc`;
    /// none when unset.
    #[arg(long, env = "SERVAL_QP_KV_CACHE_METRIC")]
    pub kv_cache_metric: Option<String>,
    /// Name reported in stats.
    #[arg(long, env = "POD_NAME", default_value = "local")]
    pub pod_name: String,
    /// Threads serving requests. One, the default, runs everything on a single-threaded
    /// runtime: on a small pod it added the least latency and memory and reached the
    /// highest throughput (see docs/benchmarks.md).
    #[arg(long, env = "SERVAL_QP_WORKER_THREADS", default_value_t = 1)]
    pub worker_threads: usize,
    /// Whether to read GPU metrics through NVML.
    #[arg(long, env = "SERVAL_QP_GPU", default_value_t = true, action = clap::ArgAction::Set)]
    pub gpu: bool,
}

impl Config {
    /// Most requests that may wait for a slot, or `None` when there is no limit.
    pub fn queue_capacity(&self) -> Option<usize> {
        (self.container_concurrency > 0).then(|| {
            self.container_concurrency
                .saturating_mul(self.queue_depth_factor)
        })
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    serval_api::duration::parse_go_duration(s).map_err(|e| e.to_string())
}
