//! What every forwarded request carries: a request id (the client's, when it sent a sane
//! one), `X-Forwarded-For/Proto/Host`, and the header that tells the queue-proxy the request
//! came through the activator. `traceparent` and all other end-to-end headers pass through
//! untouched. The request id is echoed on the response, errors included.

use std::convert::Infallible;
use std::task::{Context, Poll};

use futures_util::FutureExt;
use http::header::{HeaderName, HeaderValue, HOST};
use http::{HeaderMap, Request, Response};
use serval_api::headers::{REQUEST_ID, VIA_ACTIVATOR};
use serval_proxy::body::{ProxyBody, RequestBody};
use serval_proxy::headers::ClientAddr;
use tower::{Layer, Service};

use super::ResponseFuture;
use crate::rng::Rng;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
/// Longer client request ids are replaced rather than forwarded.
const MAX_REQUEST_ID: usize = 128;

#[derive(Clone, Debug, Default)]
pub(crate) struct HeadersLayer;

impl<S> Layer<S> for HeadersLayer {
    type Service = Headers<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Headers { inner }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Headers<S> {
    inner: S,
}

fn request_id(headers: &HeaderMap) -> HeaderValue {
    let sane = |v: &&HeaderValue| {
        !v.is_empty()
            && v.len() <= MAX_REQUEST_ID
            && v.as_bytes().iter().all(|b| b.is_ascii_graphic())
    };
    if let Some(id) = headers.get(REQUEST_ID).filter(sane) {
        return id.clone();
    }
    let mut rng = Rng::per_request();
    let id = format!("{:016x}{:016x}", rng.next_u64(), rng.next_u64());
    HeaderValue::try_from(id).unwrap_or(HeaderValue::from_static("0"))
}

/// Adds the forwarding headers to `request`; returns the request id.
pub(crate) fn decorate(request: &mut Request<RequestBody>) -> HeaderValue {
    let client = request.extensions().get::<ClientAddr>().map(|c| c.0.ip());
    let host = request.headers().get(HOST).cloned().or_else(|| {
        request
            .uri()
            .authority()
            .and_then(|a| HeaderValue::try_from(a.as_str()).ok())
    });
    let headers = request.headers_mut();
    let id = request_id(headers);
    headers.insert(REQUEST_ID, id.clone());
    if let Some(ip) = client {
        let chain: Vec<&str> = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let ip = ip.to_string();
        let value = if chain.is_empty() {
            ip
        } else {
            format!("{}, {ip}", chain.join(", "))
        };
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.insert(X_FORWARDED_FOR, value);
        }
    }
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    if let Some(host) = host.filter(|_| !headers.contains_key(&X_FORWARDED_HOST)) {
        headers.insert(X_FORWARDED_HOST, host);
    }
    headers.insert(VIA_ACTIVATOR, HeaderValue::from_static("1"));
    id
}

impl<S> Service<Request<RequestBody>> for Headers<S>
where
    S: Service<Request<RequestBody>, Response = Response<ProxyBody>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<RequestBody>) -> ResponseFuture {
        let id = decorate(&mut request);
        Box::pin(self.inner.call(request).map(move |result| {
            result.map(|mut response| {
                response.headers_mut().entry(REQUEST_ID).or_insert(id);
                response
            })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serval_proxy::body::full_request;

    #[test]
    fn adds_forwarding_headers_and_keeps_a_sane_request_id() {
        let mut request = Request::builder()
            .uri("/v1/models/m:predict")
            .header(HOST, "iris.default.example.com")
            .header(REQUEST_ID, "abc-123")
            .header("x-forwarded-for", "203.0.113.7")
            .header(
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            )
            .body(full_request(""))
            .unwrap();
        request
            .extensions_mut()
            .insert(ClientAddr(([10, 0, 0, 2], 5555).into()));
        let id = decorate(&mut request);
        let h = request.headers();
        assert_eq!(id, "abc-123");
        assert_eq!(h[REQUEST_ID], "abc-123");
        assert_eq!(h["x-forwarded-for"], "203.0.113.7, 10.0.0.2");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "iris.default.example.com");
        assert_eq!(h[VIA_ACTIVATOR], "1");
        assert!(h["traceparent"].to_str().unwrap().starts_with("00-0af7"));
    }

    #[test]
    fn replaces_a_missing_or_odd_request_id() {
        let mut request = Request::builder()
            .uri("http://iris.default.example.com/")
            .header(REQUEST_ID, "x".repeat(500))
            .body(full_request(""))
            .unwrap();
        let id = decorate(&mut request);
        assert_eq!(id.len(), 32);
        // HTTP/2 requests carry the host in the URI.
        assert_eq!(
            request.headers()["x-forwarded-host"],
            "iris.default.example.com"
        );
    }
}
