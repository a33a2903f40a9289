//! `serval-queue-proxy` is the sidecar in every model pod. It proxies the user port to the
//! runtime, enforces `containerConcurrency`, measures the pod (concurrency, requests, output
//! tokens, runtime queue depth, GPU through NVML) and serves that window as a `Stat` on its
//! admin port, probes the runtime for readiness and drains on shutdown. Not built yet: see
//! the queue-proxy issue.
