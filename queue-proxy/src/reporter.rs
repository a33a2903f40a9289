//! Background work that feeds `/stats`: closing a window every period with the GPU and
//! runtime queue readings of the moment, and scraping the runtime's queue depth.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serval_api::Stat;

use crate::admin::Shared;
use crate::gpu::GpuReader;
use crate::runtime_metrics::sum_metric;

/// Closes a stats window every `window` and publishes it.
pub(crate) async fn report(
    shared: Arc<Shared>,
    pod_name: String,
    window: Duration,
    gpu: Option<Arc<dyn GpuReader>>,
) {
    let started = Instant::now();
    let mut ticker = tokio::time::interval(window);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let mut opened = Instant::now();
    loop {
        ticker.tick().await;
        // NVML calls block for a while; off the thread that serves requests (the sidecar
        // runs on one).
        let gpu_stat = match gpu.clone() {
            Some(reader) => tokio::task::spawn_blocking(move || reader.read())
                .await
                .ok()
                .flatten(),
            None => None,
        };
        let now = Instant::now();
        let window_stats = shared.recorder.close_window(now);
        let stat = Stat {
            pod_name: pod_name.clone(),
            timestamp_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            window_ms: now.duration_since(opened).as_millis() as u64,
            average_concurrency: window_stats.average_concurrency,
            average_proxied_concurrency: window_stats.average_proxied_concurrency,
            request_count: window_stats.request_count,
            proxied_request_count: window_stats.proxied_request_count,
            proxied_bytes: window_stats.proxied_bytes,
            output_tokens: window_stats.output_tokens,
            prompt_tokens: window_stats.prompt_tokens,
            runtime_queue_depth: *shared.queue_depth.read().unwrap_or_else(|e| e.into_inner()),
            runtime_kv_cache_usage: *shared
                .kv_cache_usage
                .read()
                .unwrap_or_else(|e| e.into_inner()),
            gpu: gpu_stat,
            process_uptime_ms: now.duration_since(started).as_millis() as u64,
            held_request_count: 0,
        };
        opened = now;
        shared.publish(stat);
    }
}

/// The runtime metrics the queue-proxy reads: each is summed over its label sets.
#[derive(Debug, Clone)]
pub(crate) struct RuntimeMetricNames {
    pub(crate) queue_depth: Option<String>,
    pub(crate) kv_cache_usage: Option<String>,
}

/// Scrapes the runtime's Prometheus endpoint for the queue depth and KV-cache usage every
/// `period`.
pub(crate) async fn scrape_runtime_metrics(
    shared: Arc<Shared>,
    upstream: SocketAddr,
    path: String,
    names: RuntimeMetricNames,
    period: Duration,
) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>();
    let uri: http::Uri = match format!("http://{upstream}{path}").parse() {
        Ok(uri) => uri,
        Err(e) => {
            tracing::warn!(%path, error = %e, "runtime metrics path is not a valid URI; queue depth and KV-cache usage will be absent");
            return;
        }
    };
    let mut warned = false;
    loop {
        let scraped = async {
            let response = client.get(uri.clone()).await.ok()?;
            let body = response.into_body().collect().await.ok()?.to_bytes();
            Some(String::from_utf8_lossy(&body).into_owned())
        };
        let text = tokio::time::timeout(period.max(Duration::from_millis(200)), scraped)
            .await
            .ok()
            .flatten();
        let read = |name: &Option<String>| {
            name.as_deref()
                .and_then(|name| sum_metric(text.as_deref()?, name))
        };
        let (depth, kv_cache_usage) = (read(&names.queue_depth), read(&names.kv_cache_usage));
        let missing = [
            (&names.queue_depth, depth),
            (&names.kv_cache_usage, kv_cache_usage),
        ]
        .into_iter()
        .find_map(|(name, value)| name.as_deref().filter(|_| value.is_none()));
        if let Some(metric) = missing.filter(|_| {
            !warned
                && shared
                    .runtime_ready
                    .load(std::sync::atomic::Ordering::Acquire)
        }) {
            tracing::warn!(%metric, %uri, "runtime does not expose the metric");
            warned = true;
        }
        *shared
            .queue_depth
            .write()
            .unwrap_or_else(|e| e.into_inner()) = depth;
        *shared
            .kv_cache_usage
            .write()
            .unwrap_or_else(|e| e.into_inner()) = kv_cache_usage;
        tokio::time::sleep(period).await;
    }
}
