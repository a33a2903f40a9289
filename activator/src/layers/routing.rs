//! Routing: Host or `/serving/<ns>/<isvc>/` path -> InferenceService -> component ->
//! revision (tag, else the canary split by a per-request roll). Unknown services get 404
//! here, before anything is held; the resolved target rides on the request's extensions.

use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::HOST;
use http::{Request, Response, Uri};
use serval_proxy::body::{ProxyBody, RequestBody};
use tower::{Layer, Service};

use super::{ready, ResponseFuture};
use crate::error::ActivatorError;
use crate::rng::Rng;
use crate::routes::{RequestTarget, RouteTable, REVISION_TAG_HEADER};

#[derive(Clone, Debug)]
pub(crate) struct RoutingLayer {
    routes: Arc<RouteTable>,
}

impl RoutingLayer {
    pub(crate) fn new(routes: Arc<RouteTable>) -> Self {
        Self { routes }
    }
}

impl<S> Layer<S> for RoutingLayer {
    type Service = Routing<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Routing {
            inner,
            routes: self.routes.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Routing<S> {
    inner: S,
    routes: Arc<RouteTable>,
}

impl<S> Service<Request<RequestBody>> for Routing<S>
where
    S: Service<
        Request<RequestBody>,
        Response = Response<ProxyBody>,
        Error = Infallible,
        Future = ResponseFuture,
    >,
{
    type Response = Response<ProxyBody>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<RequestBody>) -> ResponseFuture {
        let headers = request.headers();
        let host = headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| request.uri().authority().map(|a| a.as_str()));
        let target = RequestTarget {
            host,
            path_and_query: request.uri().path_and_query().map_or("/", |p| p.as_str()),
            tag_header: headers
                .get(REVISION_TAG_HEADER)
                .and_then(|t| t.to_str().ok()),
            roll: Rng::per_request().below(100) as u32,
        };
        let resolved = match self.routes.resolve(target) {
            Ok(resolved) => resolved,
            Err(error) => return ready(error.into_response()),
        };
        if let Some(path) = &resolved.path {
            match Uri::try_from(path.as_str()) {
                Ok(uri) => *request.uri_mut() = uri,
                Err(e) => {
                    let error = ActivatorError::BadRequest(format!("path {path:?}: {e}"));
                    return ready(error.into_response());
                }
            }
        }
        request.extensions_mut().insert(resolved);
        self.inner.call(request)
    }
}
