//! The one shape both proxies answer in when they answer instead of a model: KServe's
//! `{"error": "..."}` with the matching status, and `Retry-After` where waiting helps.

use http::{header, HeaderValue, Response, StatusCode};

use crate::body::{full, ProxyBody};

/// `{"error": message}` with `status`, and `Retry-After: seconds` when given.
pub fn json_error(
    status: StatusCode,
    message: &str,
    retry_after_seconds: Option<u64>,
) -> Response<ProxyBody> {
    let body = serde_json::json!({ "error": message }).to_string();
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(seconds) = retry_after_seconds {
        headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn a_message_with_quotes_is_valid_json_and_retry_after_is_optional() {
        let response = json_error(StatusCode::SERVICE_UNAVAILABLE, "say \"hi\"", Some(1));
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["error"], "say \"hi\"");
        let plain = json_error(StatusCode::BAD_GATEWAY, "x", None);
        assert!(plain.headers().get(header::RETRY_AFTER).is_none());
    }
}
