//! Tracing: when an exporter is installed, each request gets a `queue_proxy.request` span,
//! a child of the caller's `traceparent`, and the runtime is told this span is its parent.
//! Without one the layer only passes the request on.

use std::task::{Context, Poll};

use http::{Request, Response};
use serval_api::trace_context;
use tower::{Layer, Service};
use tracing::Instrument;

use crate::body::ProxyBody;
use crate::layers::ResponseFuture;

#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct TraceLayer;

impl<S> Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Trace { inner }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Trace<S> {
    inner: S,
}

impl<S, B> Service<Request<B>> for Trace<S>
where
    S: Service<
        Request<B>,
        Response = Response<ProxyBody>,
        Error = std::convert::Infallible,
        Future = ResponseFuture,
    >,
{
    type Response = Response<ProxyBody>;
    type Error = std::convert::Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> ResponseFuture {
        if !trace_context::enabled() {
            return self.inner.call(request);
        }
        let span = tracing::info_span!(
            "queue_proxy.request",
            otel.kind = "server",
            http.request.method = %request.method(),
            url.path = request.uri().path(),
            http.response.status_code = tracing::field::Empty,
        );
        trace_context::continue_from(&span, request.headers());
        trace_context::inject(&span, request.headers_mut());
        let response = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        Box::pin(
            async move {
                let response = response.await?;
                tracing::Span::current()
                    .record("http.response.status_code", response.status().as_u16());
                Ok(response)
            }
            .instrument(span),
        )
    }
}
