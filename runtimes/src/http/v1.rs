//! KServe V1: `GET /v1/models`, `GET /v1/models/{name}`, `POST /v1/models/{name}:predict`
//! with `instances` (or `inputs`) as rows, answered as `predictions`.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::time::Instant;

use super::{read_body, AppState};
use crate::error::InferError;
use crate::served::Served;
use crate::tensor::json::{parse_nested, NestedJson};
use crate::tensor::Tensor;

pub(super) async fn list(State(served): State<AppState>) -> Response {
    Json(serde_json::json!({ "models": [served.name] })).into_response()
}

pub(super) async fn status(State(served): State<AppState>, Path(name): Path<String>) -> Response {
    match served.check_name(&name) {
        // The server only listens once the model has loaded.
        Ok(()) => Json(serde_json::json!({ "name": name, "ready": true })).into_response(),
        Err(e) => e.into_response(),
    }
}

pub(super) async fn verb(
    State(served): State<AppState>,
    Path(segment): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let result = match segment.rsplit_once(':') {
        Some((name, "predict")) => predict(&served, name, &headers, body).await,
        Some((name, "explain")) => served
            .check_name(name)
            .and(Err(InferError::Unsupported("explain".into()))),
        _ => Err(InferError::RouteNotFound(format!("/v1/models/{segment}"))),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

#[derive(Deserialize)]
struct PredictRequest<'a> {
    #[serde(borrow, default)]
    instances: Option<&'a RawValue>,
    #[serde(borrow, default)]
    inputs: Option<&'a RawValue>,
}

async fn predict(
    served: &Served,
    name: &str,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, InferError> {
    served.check_name(name)?;
    let body = read_body(headers, body, served.max_body_bytes).await?;
    let received = Instant::now();
    let request: PredictRequest<'_> = serde_json::from_slice(&body)
        .map_err(|e| InferError::Malformed(format!("invalid JSON: {e}")))?;
    let rows = request.instances.or(request.inputs).ok_or_else(|| {
        InferError::Malformed("expected {\"instances\": [...]} or {\"inputs\": [...]}".into())
    })?;
    let [spec] = served.model.inputs() else {
        return Err(InferError::Unsupported(
            "V1 prediction for a model with several inputs (use V2)".into(),
        ));
    };
    let (data, shape) =
        parse_nested(spec.datatype, rows.get()).map_err(|e| InferError::input("instances", e))?;
    let tensor = Tensor {
        name: "instances".into(),
        shape,
        data,
    };
    let outputs = served.infer(vec![tensor], received).await?;
    let started = Instant::now();
    // Like KServe's servers, V1 answers with the model's first output (a classifier's
    // labels); a single column comes back as plain values, as Python's `predict` returns.
    let output = outputs
        .first()
        .ok_or_else(|| InferError::Model("the model returned no output".into()))?;
    let shape: &[usize] = match output.shape.as_slice() {
        [n, 1] => std::slice::from_ref(n),
        shape => shape,
    };
    let body = serde_json::to_vec(&PredictResponse {
        predictions: NestedJson {
            data: &output.data,
            shape,
        },
    })
    .map_err(|e| InferError::Model(e.to_string()))?;
    let response = ([(http::header::CONTENT_TYPE, "application/json")], body).into_response();
    served
        .metrics
        .postprocess
        .observe(started.elapsed().as_secs_f64());
    Ok(response)
}

#[derive(serde::Serialize)]
struct PredictResponse<'a> {
    predictions: NestedJson<'a>,
}
