//! `serval-queue-proxy` is the sidecar in every model pod. It proxies the user port to the
//! runtime (HTTP/1.1 and HTTP/2 cleartext, bodies streamed), enforces
//! `containerConcurrency` with a bounded queue, measures the pod (time-weighted
//! concurrency, requests, bytes, output tokens, the runtime's queue depth, GPU through NVML)
//! and serves each window as a `Stat` on its admin port, probes the runtime for readiness,
//! and drains on SIGTERM without losing an accepted request.

mod admin;
mod config;
mod error;
mod forward;
pub mod gpu;
mod layers;
mod probe;
mod reporter;
pub mod runtime_metrics;
mod server;

pub use config::Config;
pub use error::ProxyError;
pub use layers::stats::{Counted, StatsRecorder, WindowStats};
pub use server::{run, QueueProxy, QueueProxyError};
