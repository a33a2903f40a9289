//! The queue-proxy's errors and the one place they become HTTP responses.

use http::{Response, StatusCode};

use crate::body::ProxyBody;

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
    #[error("bad request: {0}")]
    BadRequest(String),
}

impl ProxyError {
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            Self::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Self::Upstream(_) => StatusCode::BAD_GATEWAY,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// KServe's error shape: `{"error": "..."}` with the matching status.
    pub(crate) fn into_response(self) -> Response<ProxyBody> {
        json_error(self.status(), &self.to_string())
    }
}

pub(crate) fn json_error(status: StatusCode, message: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut response = Response::new(crate::body::full(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("1"),
        );
    }
    response
}
