//! How the activator reaches the autoscaler: a poke when a request finds no pod, and a
//! report per revision every second. Over its HTTP API (`POST /poke`, `POST /report`) on
//! Kubernetes; `serval dev` implements [`AutoscalerClient`] over the autoscaler in its own
//! process.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serval_api::autoscaler_wire::{ActivatorReport, Poke};
use serval_api::Stat;

const HTTP_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum AutoscalerClientError {
    #[error("the autoscaler does not know revision {0:?}")]
    UnknownRevision(String),
    #[error("the autoscaler is unreachable: {0}")]
    Unreachable(String),
    #[error("the autoscaler answered {status}: {body}")]
    Rejected { status: u16, body: String },
}

/// The autoscaler, as the activator sees it.
pub trait AutoscalerClient: Send + Sync + 'static {
    /// A request is waiting for `revision`, which has no ready pod: decide now.
    fn poke(
        &self,
        revision: &str,
    ) -> impl Future<Output = Result<(), AutoscalerClientError>> + Send;

    /// What the activator observed for `revision` over a window, and what it holds now.
    fn report(
        &self,
        revision: &str,
        stat: Stat,
        queued: u32,
    ) -> impl Future<Output = Result<(), AutoscalerClientError>> + Send;
}

/// The autoscaler's HTTP API at `base` (e.g. `http://serval-autoscaler:8080`).
#[derive(Debug, Clone)]
pub struct HttpAutoscaler {
    base: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl HttpAutoscaler {
    pub fn new(base: impl Into<String>) -> Self {
        Self {
            base: base.into().trim_end_matches('/').to_string(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    async fn post(
        &self,
        path: &str,
        body: &impl serde::Serialize,
    ) -> Result<(), AutoscalerClientError> {
        let body = serde_json::to_vec(body)
            .map_err(|e| AutoscalerClientError::Unreachable(e.to_string()))?;
        let request = http::Request::post(format!("{}{path}", self.base))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| AutoscalerClientError::Unreachable(e.to_string()))?;
        let exchange = async {
            let response = self.client.request(request).await.map_err(|e| {
                AutoscalerClientError::Unreachable(format!("{e}: {}", e.source_message()))
            })?;
            let status = response.status();
            let body = response
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            match status.as_u16() {
                200..=299 => Ok(()),
                404 => Err(AutoscalerClientError::UnknownRevision(
                    String::from_utf8_lossy(&body).into_owned(),
                )),
                status => Err(AutoscalerClientError::Rejected {
                    status,
                    body: String::from_utf8_lossy(&body).chars().take(200).collect(),
                }),
            }
        };
        tokio::time::timeout(HTTP_TIMEOUT, exchange)
            .await
            .unwrap_or_else(|_| Err(AutoscalerClientError::Unreachable("timed out".into())))
    }
}

trait SourceMessage {
    fn source_message(&self) -> String;
}

impl<E: std::error::Error> SourceMessage for E {
    fn source_message(&self) -> String {
        self.source().map(|s| s.to_string()).unwrap_or_default()
    }
}

impl AutoscalerClient for HttpAutoscaler {
    async fn poke(&self, revision: &str) -> Result<(), AutoscalerClientError> {
        let poke = Poke {
            revision: revision.to_string(),
        };
        self.post("/poke", &poke).await
    }

    async fn report(
        &self,
        revision: &str,
        stat: Stat,
        queued: u32,
    ) -> Result<(), AutoscalerClientError> {
        let report = ActivatorReport {
            revision: revision.to_string(),
            queued,
            stat,
        };
        self.post("/report", &report).await
    }
}

/// Records pokes and reports; for tests and for running without an autoscaler.
#[derive(Debug, Default)]
pub struct RecordingAutoscaler {
    pokes: Mutex<Vec<String>>,
    reports: Mutex<Vec<(String, Stat, u32)>>,
}

impl RecordingAutoscaler {
    pub fn pokes(&self) -> Vec<String> {
        self.pokes.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub fn reports(&self) -> Vec<(String, Stat, u32)> {
        self.reports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl AutoscalerClient for RecordingAutoscaler {
    async fn poke(&self, revision: &str) -> Result<(), AutoscalerClientError> {
        self.pokes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(revision.to_string());
        Ok(())
    }

    async fn report(
        &self,
        revision: &str,
        stat: Stat,
        queued: u32,
    ) -> Result<(), AutoscalerClientError> {
        let mut reports = self.reports.lock().unwrap_or_else(|e| e.into_inner());
        reports.push((revision.to_string(), stat, queued));
        // Bounded: keep the latest reports only.
        if reports.len() > 10_000 {
            reports.drain(..5_000);
        }
        Ok(())
    }
}

impl<T: AutoscalerClient> AutoscalerClient for Arc<T> {
    fn poke(
        &self,
        revision: &str,
    ) -> impl Future<Output = Result<(), AutoscalerClientError>> + Send {
        T::poke(self, revision)
    }

    fn report(
        &self,
        revision: &str,
        stat: Stat,
        queued: u32,
    ) -> impl Future<Output = Result<(), AutoscalerClientError>> + Send {
        T::report(self, revision, stat, queued)
    }
}
