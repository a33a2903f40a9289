//! The autoscaler's HTTP API, for activators in other processes: pokes and reports in,
//! decisions and metrics out.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serval_api::autoscaler_wire::{ActivatorReport, Poke};

use super::{Autoscaler, Scaler};

fn unknown(revision: &str) -> Response {
    let body = serde_json::json!({ "error": format!("unknown revision {revision:?}") });
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

pub fn router<S: Scaler>(autoscaler: Arc<Autoscaler<S>>) -> Router {
    Router::new()
        .route("/poke", post(poke::<S>))
        .route("/report", post(report::<S>))
        .route("/revisions", get(revisions::<S>))
        .route("/metrics", get(metrics::<S>))
        .with_state(autoscaler)
}

async fn poke<S: Scaler>(State(a): State<Arc<Autoscaler<S>>>, Json(p): Json<Poke>) -> Response {
    if a.poke(&p.revision) {
        StatusCode::ACCEPTED.into_response()
    } else {
        unknown(&p.revision)
    }
}

async fn report<S: Scaler>(
    State(a): State<Arc<Autoscaler<S>>>,
    Json(r): Json<ActivatorReport>,
) -> Response {
    if a.report_from_activator(&r.revision, r.stat, r.queued) {
        StatusCode::ACCEPTED.into_response()
    } else {
        unknown(&r.revision)
    }
}

async fn revisions<S: Scaler>(
    State(a): State<Arc<Autoscaler<S>>>,
) -> Json<Vec<super::RevisionView>> {
    Json(a.views())
}

async fn metrics<S: Scaler>(State(a): State<Arc<Autoscaler<S>>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        a.metrics_text(),
    )
        .into_response()
}
