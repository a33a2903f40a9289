//! Open Inference Protocol V2 over REST: server and model metadata, health, and infer.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;
use tokio::time::Instant;

use super::v2_codec::{encode_response, parse_request, HEADER_LENGTH};
use super::{read_body, AppState};
use crate::error::InferError;
use crate::model::TensorSpec;
use crate::served::{select_outputs, Served};

/// Protocol extensions this server implements, as Triton names them.
pub(crate) const EXTENSIONS: [&str; 1] = ["binary_tensor_data"];

pub(super) async fn server_metadata() -> Response {
    Json(json!({
        "name": "serval",
        "version": env!("CARGO_PKG_VERSION"),
        "extensions": EXTENSIONS,
    }))
    .into_response()
}

pub(super) async fn live() -> Response {
    Json(json!({ "live": true })).into_response()
}

/// Ready as soon as it answers: the server listens only after the model has loaded.
pub(super) async fn ready() -> Response {
    Json(json!({ "ready": true })).into_response()
}

fn specs_json(specs: &[TensorSpec]) -> Vec<serde_json::Value> {
    specs
        .iter()
        .map(|s| json!({ "name": s.name, "datatype": s.datatype.name(), "shape": s.shape }))
        .collect()
}

fn metadata(served: &Served, name: &str) -> Response {
    if let Err(e) = served.check_name(name) {
        return e.into_response();
    }
    Json(json!({
        "name": served.name,
        "versions": [],
        "platform": served.model.platform(),
        "inputs": specs_json(served.model.inputs()),
        "outputs": specs_json(served.model.outputs()),
    }))
    .into_response()
}

pub(super) async fn model_metadata(
    State(served): State<AppState>,
    Path(name): Path<String>,
) -> Response {
    metadata(&served, &name)
}

pub(super) async fn model_metadata_version(
    State(served): State<AppState>,
    Path((name, _version)): Path<(String, String)>,
) -> Response {
    metadata(&served, &name)
}

fn model_ready_response(served: &Served, name: &str) -> Response {
    match served.check_name(name) {
        Ok(()) => Json(json!({ "name": name, "ready": true })).into_response(),
        Err(e) => e.into_response(),
    }
}

pub(super) async fn model_ready(
    State(served): State<AppState>,
    Path(name): Path<String>,
) -> Response {
    model_ready_response(&served, &name)
}

pub(super) async fn model_ready_version(
    State(served): State<AppState>,
    Path((name, _version)): Path<(String, String)>,
) -> Response {
    model_ready_response(&served, &name)
}

pub(super) async fn infer(
    State(served): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    run_infer(&served, &name, None, &headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

pub(super) async fn infer_version(
    State(served): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    run_infer(&served, &name, Some(&version), &headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn run_infer(
    served: &Served,
    name: &str,
    version: Option<&str>,
    headers: &HeaderMap,
    body: Body,
) -> Result<Response, InferError> {
    served.check_name(name)?;
    let json_len = match headers.get(HEADER_LENGTH) {
        None => None,
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or_else(|| {
                    InferError::Malformed(format!("{HEADER_LENGTH} must be a byte count"))
                })?,
        ),
    };
    let body = read_body(headers, body, served.max_body_bytes).await?;
    let received = Instant::now();
    let request = parse_request(&body, json_len)?;
    served.check_outputs(request.outputs.iter().map(|(n, _)| n.as_str()))?;
    let outputs = served.infer(request.inputs, received).await?;
    let started = Instant::now();
    let requested: Vec<&str> = request.outputs.iter().map(|(n, _)| n.as_str()).collect();
    let outputs = select_outputs(outputs, &requested);
    let binary = |output: &str| {
        request
            .outputs
            .iter()
            .find(|(n, _)| n == output)
            .map_or(request.binary_by_default, |&(_, b)| b)
    };
    let encoded = encode_response(
        &served.name,
        version,
        request.id.as_deref(),
        &outputs,
        binary,
    )?;
    let mut response = encoded.body.into_response();
    let headers = response.headers_mut();
    match encoded.json_len {
        Some(n) => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            headers.insert(HEADER_LENGTH, HeaderValue::from(n));
        }
        None => {
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
    }
    served
        .metrics
        .postprocess
        .observe(started.elapsed().as_secs_f64());
    Ok(response)
}
