//! The innermost service: forwards a request to the pod the throttler chose, over this
//! thread's pooled connections to its queue-proxy, both bodies streamed. A failure says
//! whether the request never left (connect failed and the body was never read), which is
//! the only case where trying another pod is safe; only a request that may be retried pays
//! for keeping what a retry needs.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::uri::Authority;
use http::{Request, Response};
use serval_api::error_chain::error_chain;
use serval_proxy::body::{ProxyBody, RequestBody};
use serval_proxy::connect::LocalSockets;
use serval_proxy::forward::{to_next_hop, Upstreams};
use serval_proxy::reclaim::Reclaimable;
use tower::Service;

/// The pod a request goes to, set by the throttle layer.
#[derive(Clone, Debug)]
pub(crate) struct PodAddress {
    pub(crate) authority: Authority,
    /// Whether a failed connect would be tried on another pod.
    pub(crate) retriable: bool,
}

/// A request that got no response from the pod.
#[derive(Debug)]
pub(crate) struct ForwardError {
    pub(crate) reason: String,
    /// The request back, when it may be retried and provably never reached the pod.
    pub(crate) unsent: Option<Request<RequestBody>>,
}

#[derive(Clone, Debug)]
pub(crate) struct Forward {
    // Shared, not cloned per request: every held request keeps a copy of its service.
    upstreams: Arc<Upstreams<Reclaimable>>,
}

impl Forward {
    /// Forwards over TCP, or over the Unix socket `local` knows for a pod on this machine.
    pub(crate) fn new(local: Option<LocalSockets>) -> Self {
        Self {
            upstreams: Arc::new(Upstreams::new(local)),
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
        let (mut parts, body) = request.into_parts();
        let Some(pod) = parts.extensions.remove::<PodAddress>() else {
            let error = ForwardError {
                reason: "no pod was chosen".into(),
                unsent: None,
            };
            return Box::pin(std::future::ready(Err(error)));
        };
        to_next_hop(&mut parts, &pod.authority);
        // What a retry needs besides the body, which comes back only if it was never read.
        let retry = pod.retriable.then(|| {
            (
                parts.method.clone(),
                parts.uri.clone(),
                parts.version,
                parts.headers.clone(),
            )
        });
        let upstreams = self.upstreams.clone();
        let (body, slot) = Reclaimable::new(body);
        let request = Request::from_parts(parts, body);
        Box::pin(async move {
            upstreams.send(request).await.map_err(|e| {
                let unsent = retry
                    .filter(|_| e.is_connect())
                    .and_then(|retry| Some((retry, slot.reclaim()?)))
                    .map(|((method, uri, version, headers), body)| {
                        let mut again = Request::new(body);
                        *again.method_mut() = method;
                        *again.uri_mut() = uri;
                        *again.version_mut() = version;
                        *again.headers_mut() = headers;
                        again
                    });
                ForwardError {
                    reason: error_chain(&e),
                    unsent,
                }
            })
        })
    }
}
