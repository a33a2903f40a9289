//! The activator's errors and the one place they become HTTP responses: KServe's
//! `{"error": "..."}` with the matching status, and `Retry-After` where waiting helps.

use std::time::Duration;

use http::{Response, StatusCode};
use serval_proxy::body::ProxyBody;
use serval_proxy::error::json_error;

/// Why the activator answered instead of a model pod.
#[derive(Debug, thiserror::Error)]
pub enum ActivatorError {
    #[error("no InferenceService serves {0}")]
    UnknownService(String),
    #[error("InferenceService {service} has no revision tagged {tag:?}")]
    UnknownTag { service: String, tag: String },
    #[error("InferenceService {service} has no ready revision")]
    NoRevision { service: String },
    #[error("rate limited: InferenceService {service} allows {per_second} requests per second")]
    RateLimited {
        service: String,
        per_second: f64,
        retry_after: Duration,
    },
    #[error("overloaded: {queued} requests already wait for revision {revision}")]
    Overloaded { revision: String, queued: usize },
    #[error("timed out after {waited:?} waiting for revision {revision}")]
    Timeout { revision: String, waited: Duration },
    #[error("revision {revision} is unavailable: {reason}")]
    Upstream { revision: String, reason: String },
    #[error("bad request: {0}")]
    BadRequest(String),
}

impl ActivatorError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::UnknownService(_) | Self::UnknownTag { .. } => StatusCode::NOT_FOUND,
            Self::NoRevision { .. } | Self::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::Upstream { .. } => StatusCode::BAD_GATEWAY,
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// Seconds a caller should wait before trying again, where that is known to help.
    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::RateLimited { retry_after, .. } => {
                Some(retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0))
                    .map(|s| s.max(1))
            }
            Self::NoRevision { .. } | Self::Overloaded { .. } => Some(1),
            _ => None,
        }
    }

    pub(crate) fn into_response(self) -> Response<ProxyBody> {
        json_error(self.status(), &self.to_string(), self.retry_after())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn errors_render_as_kserve_json_with_retry_after_where_it_helps() {
        let limited = ActivatorError::RateLimited {
            service: "default/iris".into(),
            per_second: 2.0,
            retry_after: Duration::from_millis(1500),
        }
        .into_response();
        assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(limited.headers()[header::RETRY_AFTER], "2");
        let full = ActivatorError::Overloaded {
            revision: "iris-predictor-1".into(),
            queued: 10,
        }
        .into_response();
        assert_eq!(full.headers()[header::RETRY_AFTER], "1");
        let timeout = ActivatorError::Timeout {
            revision: "r".into(),
            waited: Duration::from_secs(1),
        }
        .into_response();
        assert_eq!(timeout.status(), StatusCode::GATEWAY_TIMEOUT);
        assert!(timeout.headers().get(header::RETRY_AFTER).is_none());
        let body = timeout.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(json["error"].as_str().unwrap().starts_with("timed out"));
    }
}
