//! The innermost service: forwards a request to the runtime over a pooled connection,
//! HTTP/1.1 for HTTP/1 callers and HTTP/2 cleartext for HTTP/2 callers (gRPC), streaming
//! both bodies.

use std::convert::Infallible;
use std::net::SocketAddr;
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

use crate::body::{ProxyBody, RequestBody};
use crate::error::ProxyError;
use crate::layers::ResponseFuture;

#[derive(Clone, Debug)]
pub(crate) struct Forward {
    upstream: SocketAddr,
    // Shared, not cloned per request: a client clone copies its builders and bumps several
    // reference counts, which showed in the proxy's profile.
    clients: Arc<Clients>,
}

#[derive(Debug)]
struct Clients {
    http1: Client<HttpConnector, RequestBody>,
    http2: Client<HttpConnector, RequestBody>,
}

impl Forward {
    pub(crate) fn new(upstream: SocketAddr) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let http1 = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector.clone());
        let http2 = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build(connector);
        Self {
            upstream,
            clients: Arc::new(Clients { http1, http2 }),
        }
    }
}

impl Service<Request<RequestBody>> for Forward {
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<RequestBody>) -> Self::Future {
        let (mut parts, body) = request.into_parts();
        let path = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let uri = match Uri::try_from(format!("http://{}{path}", self.upstream)) {
            Ok(uri) => uri,
            Err(e) => {
                let error = ProxyError::BadRequest(format!("request target {path:?}: {e}"));
                return Box::pin(async move { Ok(error.into_response()) });
            }
        };
        parts.uri = uri;
        strip_hop_by_hop(&mut parts.headers);
        let http2 = parts.version == Version::HTTP_2;
        if !http2 {
            parts.version = Version::HTTP_11;
        }
        let clients = self.clients.clone();
        let request = Request::from_parts(parts, body);
        Box::pin(async move {
            let client = if http2 {
                &clients.http2
            } else {
                &clients.http1
            };
            match client.request(request).await {
                Ok(response) => Ok(response.map(|b| b.map_err(Into::into).boxed_unsync())),
                Err(e) => Ok(ProxyError::Upstream(error_chain(&e)).into_response()),
            }
        })
    }
}
