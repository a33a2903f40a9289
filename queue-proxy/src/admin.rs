//! The admin server: `/stats` (the last closed window as a `Stat`), `/metrics`
//! (Prometheus), `/healthz` (ready and not draining) and `/wait-for-drain` (for the
//! runtime's preStop hook).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serval_api::Stat;
use std::sync::atomic::AtomicU64;
use tokio::sync::watch;

use crate::layers::stats::{StatsRecorder, Totals};

type FloatGauge = Gauge<f64, AtomicU64>;

/// The Prometheus view of the pod.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    registry: Registry,
    average_concurrency: FloatGauge,
    average_proxied_concurrency: FloatGauge,
    requests_per_second: FloatGauge,
    output_tokens_per_second: FloatGauge,
    prompt_tokens_per_second: FloatGauge,
    in_flight: Gauge,
    requests: Counter,
    output_tokens: Counter,
    prompt_tokens: Counter,
    runtime_queue_depth: FloatGauge,
    runtime_kv_cache_usage: FloatGauge,
    gpu_utilization: FloatGauge,
    gpu_memory_used: Gauge,
    ready: Gauge,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut m = Self::default();
        let r = &mut m.registry;
        let prefix = "serval_queue_proxy_";
        r.register(
            format!("{prefix}average_concurrency"),
            "Time-weighted requests in flight over the last window",
            m.average_concurrency.clone(),
        );
        r.register(
            format!("{prefix}average_proxied_concurrency"),
            "Part of the concurrency that came through the activator",
            m.average_proxied_concurrency.clone(),
        );
        r.register(
            format!("{prefix}requests_per_second"),
            "Requests per second over the last window",
            m.requests_per_second.clone(),
        );
        r.register(
            format!("{prefix}output_tokens_per_second"),
            "Output tokens per second over the last window",
            m.output_tokens_per_second.clone(),
        );
        r.register(
            format!("{prefix}prompt_tokens_per_second"),
            "Prompt tokens per second of the completions that finished in the last window",
            m.prompt_tokens_per_second.clone(),
        );
        r.register(
            format!("{prefix}in_flight"),
            "Requests in flight now",
            m.in_flight.clone(),
        );
        r.register(
            format!("{prefix}requests"),
            "Requests received",
            m.requests.clone(),
        );
        r.register(
            format!("{prefix}output_tokens"),
            "Output tokens counted from completions",
            m.output_tokens.clone(),
        );
        r.register(
            format!("{prefix}prompt_tokens"),
            "Prompt tokens counted from the usage of completions",
            m.prompt_tokens.clone(),
        );
        r.register(
            format!("{prefix}runtime_queue_depth"),
            "The runtime's own queue depth",
            m.runtime_queue_depth.clone(),
        );
        r.register(
            format!("{prefix}runtime_kv_cache_usage"),
            "The share of the runtime's KV cache in use, 0 to 1",
            m.runtime_kv_cache_usage.clone(),
        );
        r.register(
            format!("{prefix}gpu_utilization_percent"),
            "GPU utilisation averaged over visible devices",
            m.gpu_utilization.clone(),
        );
        r.register(
            format!("{prefix}gpu_memory_used_bytes"),
            "GPU memory used over visible devices",
            m.gpu_memory_used.clone(),
        );
        r.register(
            format!("{prefix}ready"),
            "1 when the runtime is ready and the proxy is not draining",
            m.ready.clone(),
        );
        m
    }

    fn record(&self, stat: &Stat, in_flight: u64, totals: Totals, ready: bool) {
        self.average_concurrency.set(stat.average_concurrency);
        self.average_proxied_concurrency
            .set(stat.average_proxied_concurrency);
        self.requests_per_second.set(stat.requests_per_second());
        self.output_tokens_per_second.set(stat.tokens_per_second());
        self.prompt_tokens_per_second
            .set(stat.prompt_tokens_per_second());
        self.in_flight.set(in_flight as i64);
        // Counters only move up: each adds what the recorder counted since the last call.
        self.requests
            .inc_by(totals.requests.saturating_sub(self.requests.get()));
        self.output_tokens.inc_by(
            totals
                .output_tokens
                .saturating_sub(self.output_tokens.get()),
        );
        self.prompt_tokens.inc_by(
            totals
                .prompt_tokens
                .saturating_sub(self.prompt_tokens.get()),
        );
        self.runtime_queue_depth
            .set(stat.runtime_queue_depth.unwrap_or(0.0));
        self.runtime_kv_cache_usage
            .set(stat.runtime_kv_cache_usage.unwrap_or(0.0));
        if let Some(gpu) = &stat.gpu {
            self.gpu_utilization.set(gpu.utilization_percent);
            self.gpu_memory_used.set(gpu.memory_used_bytes as i64);
        }
        self.ready.set(i64::from(ready));
    }
}

/// State shared by the proxy, its background tasks and the admin server.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) recorder: Arc<StatsRecorder>,
    pub(crate) latest: RwLock<Stat>,
    pub(crate) runtime_ready: Arc<AtomicBool>,
    pub(crate) draining: AtomicBool,
    pub(crate) drained: watch::Sender<bool>,
    pub(crate) queue_depth: RwLock<Option<f64>>,
    pub(crate) kv_cache_usage: RwLock<Option<f64>>,
    pub(crate) metrics: Metrics,
}

impl Shared {
    pub(crate) fn new(recorder: Arc<StatsRecorder>) -> Self {
        Self {
            recorder,
            latest: RwLock::new(Stat::default()),
            runtime_ready: Arc::new(AtomicBool::new(false)),
            draining: AtomicBool::new(false),
            drained: watch::channel(false).0,
            queue_depth: RwLock::new(None),
            kv_cache_usage: RwLock::new(None),
            metrics: Metrics::new(),
        }
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.runtime_ready.load(Ordering::Acquire) && !self.draining.load(Ordering::Acquire)
    }

    /// Publishes a closed window.
    pub(crate) fn publish(&self, stat: Stat) {
        let in_flight = self.recorder.in_flight();
        self.metrics
            .record(&stat, in_flight, self.recorder.totals(), self.is_ready());
        *self.latest.write().unwrap_or_else(|e| e.into_inner()) = stat;
    }
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/wait-for-drain", get(wait_for_drain))
        // Kubelets before 1.23 join the hook's port and path with a '/' of their own, so the
        // model server's preStop hook asks for `//wait-for-drain`; unanswered, it would
        // return at once and the model server would stop before the queue-proxy drained.
        .route("//wait-for-drain", get(wait_for_drain))
        .with_state(shared)
}

async fn stats(State(shared): State<Arc<Shared>>) -> Json<Stat> {
    Json(
        shared
            .latest
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
    )
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &shared.metrics.registry) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics: {e}"),
        )
            .into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    let body = serde_json::json!({
        "ready": shared.runtime_ready.load(Ordering::Acquire),
        "draining": shared.draining.load(Ordering::Acquire),
    });
    let status = if shared.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(body)).into_response()
}

async fn wait_for_drain(State(shared): State<Arc<Shared>>) -> StatusCode {
    let mut drained = shared.drained.subscribe();
    // The sender lives in `shared`, which this handler holds, so the wait cannot fail.
    let _ = drained.wait_for(|done| *done).await;
    StatusCode::OK
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use http_body_util::BodyExt;
    use std::time::Instant;
    use tower::ServiceExt;

    fn shared() -> Arc<Shared> {
        Arc::new(Shared::new(Arc::new(StatsRecorder::new(Instant::now()))))
    }

    async fn get(shared: &Arc<Shared>, path: &str) -> (StatusCode, String) {
        let request = http::Request::get(path).body(Body::empty()).unwrap();
        let response = router(shared.clone()).oneshot(request).await.unwrap();
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    #[tokio::test]
    async fn healthz_follows_readiness_and_drain() {
        let shared = shared();
        assert_eq!(
            get(&shared, "/healthz").await.0,
            StatusCode::SERVICE_UNAVAILABLE
        );
        shared.runtime_ready.store(true, Ordering::Release);
        assert_eq!(get(&shared, "/healthz").await.0, StatusCode::OK);
        shared.draining.store(true, Ordering::Release);
        let (status, body) = get(&shared, "/healthz").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body, r#"{"draining":true,"ready":true}"#);
    }

    #[tokio::test]
    async fn wait_for_drain_answers_once_drained_under_both_spellings() {
        for path in ["/wait-for-drain", "//wait-for-drain"] {
            let shared = shared();
            let waiting = tokio::spawn({
                let shared = shared.clone();
                async move { get(&shared, path).await.0 }
            });
            // Let the request run as far as it can before the drain ends.
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            assert!(!waiting.is_finished(), "{path} answered before the drain");
            let _ = shared.drained.send(true);
            assert_eq!(waiting.await.unwrap(), StatusCode::OK, "{path}");
        }
    }

    #[tokio::test]
    async fn stats_and_metrics_show_the_published_window() {
        let shared = shared();
        shared.publish(Stat {
            pod_name: "p".into(),
            window_ms: 1000,
            average_concurrency: 2.5,
            request_count: 7,
            ..Stat::default()
        });
        let (status, body) = get(&shared, "/stats").await;
        assert_eq!(status, StatusCode::OK);
        let stat: Stat = serde_json::from_str(&body).unwrap();
        assert_eq!((stat.average_concurrency, stat.request_count), (2.5, 7));
        let (_, text) = get(&shared, "/metrics").await;
        assert!(
            text.contains("serval_queue_proxy_average_concurrency 2.5"),
            "{text}"
        );
        assert!(
            text.contains("serval_queue_proxy_requests_per_second 7.0"),
            "{text}"
        );
    }
}
