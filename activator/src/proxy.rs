//! The innermost service: forwards a request to the pod the throttler chose, over pooled
//! keep-alive connections to its queue-proxy, HTTP/1.1 for HTTP/1 callers and HTTP/2
//! cleartext for HTTP/2 callers (so gRPC passes through), both bodies streamed. A failure
//! says whether the request never left (connect failed and the body was never read), which
//! is the only case where trying another pod is safe.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response, Uri, Version};
use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serval_api::error_chain::error_chain;
use serval_api::headers::strip_hop_by_hop;
use tower::Service;

use crate::body::{reclaim, ProxyBody, Reclaimable, RequestBody};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The pod a request goes to, set by the throttle layer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PodAddress(pub(crate) SocketAddr);

/// A request that got no response from the pod.
#[derive(Debug)]
pub(crate) struct ForwardError {
    pub(crate) reason: String,
    /// The request back, when it provably never reached the pod.
    pub(crate) unsent: Option<Request<RequestBody>>,
}

#[derive(Clone, Debug)]
pub(crate) struct Forward {
    // Shared, not cloned per request: every held request keeps a copy of its service, and a
    // client clone copies its builders.
    clients: Arc<Clients>,
}

#[derive(Debug)]
struct Clients {
    http1: Client<HttpConnector, Reclaimable>,
    http2: Client<HttpConnector, Reclaimable>,
}

impl Default for Forward {
    fn default() -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let http1 = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector.clone());
        let http2 = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build(connector);
        Self {
            clients: Arc::new(Clients { http1, http2 }),
        }
    }
}

pub(crate) type ForwardFuture =
    Pin<Box<dyn Future<Output = Result<Response<ProxyBody>, ForwardError>> + Send>>;

impl Service<Request<RequestBody>> for Forward {
    type Response = Response<ProxyBody>;
    type Error = ForwardError;
    type Future = ForwardFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), ForwardError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<RequestBody>) -> ForwardFuture {
        let Some(PodAddress(pod)) = request.extensions().get().copied() else {
            let error = ForwardError {
                reason: "no pod was chosen".into(),
                unsent: None,
            };
            return Box::pin(std::future::ready(Err(error)));
        };
        let (mut parts, body) = request.into_parts();
        // What a retry needs; the body comes back only if it was never read.
        let (method, original_uri, version, headers) = (
            parts.method.clone(),
            parts.uri.clone(),
            parts.version,
            parts.headers.clone(),
        );
        let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        parts.uri = match Uri::try_from(format!("http://{pod}{path}")) {
            Ok(uri) => uri,
            Err(e) => {
                let error = ForwardError {
                    reason: format!("request target {path:?}: {e}"),
                    unsent: None,
                };
                return Box::pin(std::future::ready(Err(error)));
            }
        };
        strip_hop_by_hop(&mut parts.headers);
        let http2 = parts.version == Version::HTTP_2;
        if !http2 {
            parts.version = Version::HTTP_11;
        }
        let clients = self.clients.clone();
        let (body, slot) = Reclaimable::new(body);
        let request = Request::from_parts(parts, body);
        Box::pin(async move {
            let client = if http2 {
                &clients.http2
            } else {
                &clients.http1
            };
            match client.request(request).await {
                Ok(response) => Ok(response.map(|b| b.map_err(Into::into).boxed_unsync())),
                Err(e) => {
                    let unsent = e
                        .is_connect()
                        .then(|| reclaim(&slot))
                        .flatten()
                        .map(|body| {
                            let mut retry = Request::new(body);
                            *retry.method_mut() = method;
                            *retry.uri_mut() = original_uri;
                            *retry.version_mut() = version;
                            *retry.headers_mut() = headers;
                            retry
                        });
                    Err(ForwardError {
                        reason: error_chain(&e),
                        unsent,
                    })
                }
            }
        })
    }
}
