//! Tracing: when an exporter is installed, each REST or gRPC request gets a
//! `runtime.request` span, a child of the caller's `traceparent` (the queue-proxy's span);
//! the model call inside it is `runtime.inference`. Without one, spans are never opened.

use std::task::{Context, Poll};

use http::Request;
use serval_api::trace_context;
use tower::{Layer, Service};
use tracing::instrument::Instrumented;
use tracing::Instrument;

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
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Instrumented<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        if !trace_context::enabled() {
            return self.inner.call(request).instrument(tracing::Span::none());
        }
        let span = tracing::info_span!(
            "runtime.request",
            otel.kind = "server",
            http.request.method = %request.method(),
            url.path = request.uri().path(),
        );
        trace_context::continue_from(&span, request.headers());
        let _entered = span.enter();
        self.inner.call(request).instrument(span.clone())
    }
}
