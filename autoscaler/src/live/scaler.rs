//! Actuation: where a decided replica count goes. On Kubernetes it is the Deployment's
//! `/scale` subresource; in `serval dev` it is the process supervisor.

use std::future::Future;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Debug, thiserror::Error)]
#[error("scaling {revision} to {desired}: {reason}")]
pub struct ScaleError {
    pub revision: String,
    pub desired: u32,
    pub reason: String,
}

/// Sets a revision's replica count.
pub trait Scaler: Send + Sync + 'static {
    fn scale(
        &self,
        revision: &str,
        desired: u32,
    ) -> impl Future<Output = Result<(), ScaleError>> + Send;
}

/// A scaler that only records what it was asked, with when; for tests and dry runs.
#[derive(Debug, Default)]
pub struct RecordingScaler {
    calls: Mutex<Vec<(String, u32, Instant)>>,
}

impl RecordingScaler {
    pub fn calls(&self) -> Vec<(String, u32, Instant)> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Scaler for RecordingScaler {
    async fn scale(&self, revision: &str, desired: u32) -> Result<(), ScaleError> {
        self.calls.lock().unwrap_or_else(|e| e.into_inner()).push((
            revision.to_string(),
            desired,
            Instant::now(),
        ));
        Ok(())
    }
}

impl<T: Scaler> Scaler for std::sync::Arc<T> {
    fn scale(
        &self,
        revision: &str,
        desired: u32,
    ) -> impl Future<Output = Result<(), ScaleError>> + Send {
        T::scale(self, revision, desired)
    }
}
