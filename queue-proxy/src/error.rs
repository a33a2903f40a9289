//! The queue-proxy's errors and the one place they become HTTP responses.

use http::{Response, StatusCode};

use serval_proxy::body::ProxyBody;
use serval_proxy::error::json_error;

/// Why the proxy answered instead of the runtime.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("overloaded: {in_flight} requests in flight and {queued} queued (containerConcurrency {limit})")]
    Overloaded {
        limit: usize,
        in_flight: usize,
        queued: usize,
    },
    #[error("timed out after {0:?} waiting for the model")]
    Timeout(std::time::Duration),
    #[error("the model server is unavailable: {0}")]
    Upstream(String),
}

impl ProxyError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Upstream(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// KServe's error shape: `{"error": "..."}` with the matching status.
    pub(crate) fn into_response(self) -> Response<ProxyBody> {
        let status = self.status();
        let retry_after = (status == StatusCode::SERVICE_UNAVAILABLE).then_some(1);
        json_error(status, &self.to_string(), retry_after)
    }
}
