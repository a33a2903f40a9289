//! The controller's own HTTP endpoints for the kubelet and Prometheus: `/healthz` (the
//! process answers), `/readyz` (it leads, or stands by ready to), `/metrics`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

/// What the endpoints report.
#[derive(Debug, Default)]
pub(crate) struct Health {
    leading: AtomicBool,
    reconciles: AtomicU64,
}

impl Health {
    pub(crate) fn leading(&self) {
        self.leading.store(true, Ordering::Relaxed);
    }

    pub(crate) fn reconciled(&self) {
        self.reconciles.fetch_add(1, Ordering::Relaxed);
    }
}

async fn metrics(State(health): State<Arc<Health>>) -> String {
    format!(
        "# HELP serval_controller_leading Whether this replica holds the leader Lease.\n\
         # TYPE serval_controller_leading gauge\n\
         serval_controller_leading {}\n\
         # HELP serval_controller_reconciles_total InferenceService reconciles that succeeded.\n\
         # TYPE serval_controller_reconciles_total counter\n\
         serval_controller_reconciles_total {}\n",
        u8::from(health.leading.load(Ordering::Relaxed)),
        health.reconciles.load(Ordering::Relaxed)
    )
}

pub(crate) fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(|| async { (StatusCode::OK, "ok") }))
        .route("/metrics", get(metrics))
        .with_state(health)
}

pub(crate) async fn serve(listener: tokio::net::TcpListener, health: Arc<Health>) {
    if let Err(e) = axum::serve(listener, router(health)).await {
        tracing::error!(error = %e, "health server stopped");
    }
}
