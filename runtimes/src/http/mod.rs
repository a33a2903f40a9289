//! The REST server: KServe V1, Open Inference Protocol V2, health and `/metrics`.
//! Every error leaves as `{"error": ...}` through [`InferError`]'s one mapping.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, Uri};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;

use crate::error::InferError;
use crate::served::Served;

mod v1;
pub(crate) mod v2;
mod v2_codec;

pub(crate) use v2::EXTENSIONS;

pub(crate) type AppState = Arc<Served>;

/// All REST routes over one served model.
pub fn router(served: Arc<Served>) -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { axum::Json(serde_json::json!({ "status": "alive" })) }),
        )
        .route("/metrics", get(metrics))
        .route("/v1/models", get(v1::list))
        // `{name}:predict` is one path segment; the handler splits off the verb.
        .route("/v1/models/{name}", get(v1::status).post(v1::verb))
        .route("/v2", get(v2::server_metadata))
        .route("/v2/health/live", get(v2::live))
        .route("/v2/health/ready", get(v2::ready))
        .route("/v2/models/{name}", get(v2::model_metadata))
        .route("/v2/models/{name}/ready", get(v2::model_ready))
        .route("/v2/models/{name}/infer", post(v2::infer))
        .route(
            "/v2/models/{name}/versions/{version}",
            get(v2::model_metadata_version),
        )
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            get(v2::model_ready_version),
        )
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            post(v2::infer_version),
        )
        .fallback(|uri: Uri| async move { InferError::RouteNotFound(uri.path().to_owned()) })
        .with_state(served)
}

async fn metrics(State(served): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        served.metrics.encode(),
    )
}

/// Reads a request body up to `limit` bytes; more is 413, whether announced by
/// Content-Length or found while reading.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, InferError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(InferError::TooLarge { limit });
    }
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        let too_large = std::error::Error::source(&e)
            .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
        if too_large {
            InferError::TooLarge { limit }
        } else {
            InferError::Malformed(format!("cannot read the request body: {e}"))
        }
    })
}
