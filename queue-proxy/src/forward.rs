//! The innermost service: forwards a request to the runtime over a pooled connection,
//! HTTP/1.1 for HTTP/1 callers and HTTP/2 cleartext for HTTP/2 callers (gRPC), streaming
//! both bodies.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::uri::Authority;
use http::{Request, Response};
use serval_api::error_chain::error_chain;
use serval_proxy::body::{ProxyBody, RequestBody};
use serval_proxy::connect::LocalSockets;
use serval_proxy::forward::{authority, to_next_hop, Upstreams};
use tower::Service;

use crate::error::ProxyError;
use crate::layers::ResponseFuture;

#[derive(Clone, Debug)]
pub(crate) struct Forward {
    upstream: Authority,
    // Shared, not cloned per request: a client clone copies its builders and bumps several
    // reference counts, which showed in the proxy's profile.
    upstreams: Arc<Upstreams<RequestBody>>,
}

impl Forward {
    /// Forwards to `upstream`, through its Unix socket where `local` has one.
    pub(crate) fn new(upstream: SocketAddr, local: Option<LocalSockets>) -> Self {
        Self {
            upstream: authority(upstream),
            upstreams: Arc::new(Upstreams::new(local)),
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
        to_next_hop(&mut parts, &self.upstream);
        let request = Request::from_parts(parts, body);
        let upstreams = self.upstreams.clone();
        Box::pin(async move {
            match upstreams.send(request).await {
                Ok(response) => Ok(response),
                Err(e) => Ok(ProxyError::Upstream(error_chain(&e)).into_response()),
            }
        })
    }
}
