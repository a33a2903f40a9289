//! A small model-server stand-in for proxy tests: echoes, sleeps on request, answers
//! OpenAI-style completions (plain and streamed), exposes a queue-depth metric, and records
//! the peak number of requests it served at once.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{header, Request, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;

#[derive(Debug, Default)]
pub struct BackendState {
    in_flight: AtomicUsize,
    peak: AtomicUsize,
    served: AtomicUsize,
}

impl BackendState {
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }

    pub fn served(&self) -> usize {
        self.served.load(Ordering::SeqCst)
    }

    /// Requests being answered now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }
}

/// Counts a request in flight for its lifetime.
struct Tracked(Arc<BackendState>);

impl Tracked {
    fn new(state: &Arc<BackendState>) -> Self {
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.peak.fetch_max(now, Ordering::SeqCst);
        Self(state.clone())
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.served.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(serde::Deserialize)]
struct SlowQuery {
    ms: u64,
}

async fn slow(State(state): State<Arc<BackendState>>, Query(q): Query<SlowQuery>) -> &'static str {
    let _tracked = Tracked::new(&state);
    tokio::time::sleep(Duration::from_millis(q.ms)).await;
    "slow done"
}

async fn echo(State(state): State<Arc<BackendState>>, request: Request<Body>) -> Response {
    let _tracked = Tracked::new(&state);
    let version = format!("{:?}", request.version());
    let body = axum::body::to_bytes(request.into_body(), 64 << 20)
        .await
        .unwrap_or_default();
    ([("x-backend-version", version)], body).into_response()
}

async fn completions(State(state): State<Arc<BackendState>>, body: String) -> Response {
    let _tracked = Tracked::new(&state);
    let streamed = body.contains("\"stream\":true") || body.contains("\"stream\": true");
    if !streamed {
        let json = r#"{"id":"cmpl-1","object":"text_completion","choices":[{"index":0,"text":"one two three four five"}],"usage":{"prompt_tokens":4,"completion_tokens":5,"total_tokens":9}}"#;
        return ([(header::CONTENT_TYPE, "application/json")], json).into_response();
    }
    // Seven content chunks, one at a time, as a token-by-token server sends them.
    let chunks = (0..7).map(|i| {
        let event = format!(
            "data: {{\"choices\":[{{\"index\":0,\"delta\":{{\"content\":\"t{i} \"}}}}]}}\n\n"
        );
        Ok::<_, std::convert::Infallible>(event)
    });
    let done = std::iter::once(Ok("data: [DONE]\n\n".to_string()));
    let stream = futures_util::stream::iter(chunks.chain(done)).then(|chunk| async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        chunk
    });
    (
        [(header::CONTENT_TYPE, "text/event-stream")],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn metrics() -> &'static str {
    "# TYPE test_queue_depth gauge\ntest_queue_depth{model=\"a\"} 2\ntest_queue_depth{model=\"b\"} 1\n\
     # TYPE test_kv_cache_usage gauge\ntest_kv_cache_usage{model=\"a\"} 0.25\n"
}

pub fn router(state: Arc<BackendState>) -> Router {
    Router::new()
        .route("/slow", get(slow))
        .route("/echo", any(echo))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(completions))
        .route("/metrics", get(metrics))
        .route(
            "/fail",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .with_state(state)
}

/// Serves the backend on a loopback port of its own (HTTP/1.1 and HTTP/2 cleartext) in the
/// background; its address and state.
pub async fn start() -> (SocketAddr, Arc<BackendState>) {
    let listener = crate::bind_loopback().await;
    let addr = listener.local_addr().expect("backend address");
    (addr, serve(listener))
}

/// Serves the backend on `port`, leased by a test that had to name the port before the
/// backend came up.
pub async fn start_on(port: &crate::PortLease) -> Arc<BackendState> {
    let listener = tokio::net::TcpListener::bind(port.addr())
        .await
        .expect("bind backend");
    serve(listener)
}

fn serve(listener: tokio::net::TcpListener) -> Arc<BackendState> {
    let state = Arc::new(BackendState::default());
    let app = router(state.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    state
}

use futures_util::StreamExt;
