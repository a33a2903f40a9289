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

/// How much of a body over the limit is still read (and dropped) before the 413 goes out,
/// and for how long. A server that answers and closes while a proxy in front of it is still
/// sending makes that proxy fail with a broken pipe (a 502 to the client) instead of
/// passing the 413 on; reading the rest first lets every hop finish sending.
const DRAIN_BYTES: usize = 64 << 20;
const DRAIN_TIME: std::time::Duration = std::time::Duration::from_secs(10);

async fn drain(mut body: axum::body::BodyDataStream) {
    use futures_util::StreamExt;
    let mut read = 0;
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        while let Some(Ok(chunk)) = body.next().await {
            read += chunk.len();
            if read > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

/// Reads a request body up to `limit` bytes; more is 413, whether announced by
/// Content-Length or found while reading.
pub(crate) async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
) -> Result<Bytes, InferError> {
    use futures_util::StreamExt;
    let mut body = body.into_data_stream();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        drain(body).await;
        return Err(InferError::TooLarge { limit });
    }
    let mut bytes = bytes::BytesMut::with_capacity(declared.map_or(0, |n| n as usize));
    while let Some(chunk) = body.next().await {
        let chunk = chunk
            .map_err(|e| InferError::Malformed(format!("cannot read the request body: {e}")))?;
        if bytes.len() + chunk.len() > limit {
            drain(body).await;
            return Err(InferError::TooLarge { limit });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes.freeze())
}
