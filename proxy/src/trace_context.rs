//! W3C trace context across Serval's processes. Each hop (activator, queue-proxy, runtime)
//! opens its request span as a child of the caller's `traceparent` and sends its own span
//! as the parent of the next hop, so one request is one trace in the collector.
//!
//! Propagation is off until the binary installs an exporter and calls [`enable`]: without
//! one, no span is opened on the request path and headers pass through untouched.

use std::sync::atomic::{AtomicBool, Ordering};

use http::HeaderMap;
use opentelemetry_http::{HeaderExtractor, HeaderInjector};
use tracing_opentelemetry::OpenTelemetrySpanExt;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// Turns propagation on; called once an OpenTelemetry layer and a global propagator are
/// installed.
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether request spans are opened and `traceparent` is rewritten.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Makes the caller's span, named by the request's `traceparent`, the parent of `span`.
/// A request without one starts a new trace.
pub fn continue_from(span: &tracing::Span, headers: &HeaderMap) {
    let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.extract(&HeaderExtractor(headers))
    });
    // An error here only means no OpenTelemetry layer is installed: nothing to link.
    let _ = span.set_parent(parent);
}

/// Writes `span` into `headers` as the next hop's parent (`traceparent`, `tracestate`).
pub fn inject(span: &tracing::Span, headers: &mut HeaderMap) {
    let context = span.context();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
}

/// Opens a process's request span; each process has its own, because a span's name and
/// fields are fixed where it is written.
pub type MakeSpan = fn(&http::Method, &http::Uri, &HeaderMap) -> tracing::Span;

/// A tower layer that runs each request inside a span continuing the caller's trace, and
/// records the response status on it (`http.response.status_code`, when the span declares
/// it). A proxy's layer also names its span as the next hop's parent. When propagation is
/// off it only passes requests on.
#[derive(Clone, Copy, Debug)]
pub struct TraceLayer {
    make_span: MakeSpan,
    next_hop: bool,
}

impl TraceLayer {
    /// For a process that forwards the request (activator, queue-proxy).
    pub fn proxy(make_span: MakeSpan) -> Self {
        Self {
            make_span,
            next_hop: true,
        }
    }

    /// For the process that answers it (the model server).
    pub fn server(make_span: MakeSpan) -> Self {
        Self {
            make_span,
            next_hop: false,
        }
    }
}

impl<S> tower::Layer<S> for TraceLayer {
    type Service = Trace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Trace {
            inner,
            layer: *self,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Trace<S> {
    inner: S,
    layer: TraceLayer,
}

impl<S, B, R> tower::Service<http::Request<B>> for Trace<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Traced<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if !enabled() {
            return Traced {
                inner: self.inner.call(request),
                span: None,
            };
        }
        let span = (self.layer.make_span)(request.method(), request.uri(), request.headers());
        continue_from(&span, request.headers());
        if self.layer.next_hop {
            inject(&span, request.headers_mut());
        }
        let inner = span.in_scope(|| self.inner.call(request));
        Traced {
            inner,
            span: Some(span),
        }
    }
}

pin_project_lite::pin_project! {
    /// A response future polled inside its request span.
    #[derive(Debug)]
    pub struct Traced<F> {
        #[pin]
        inner: F,
        span: Option<tracing::Span>,
    }
}

impl<F, R, E> std::future::Future for Traced<F>
where
    F: std::future::Future<Output = Result<http::Response<R>, E>>,
{
    type Output = F::Output;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let _entered = this.span.as_ref().map(tracing::Span::enter);
        let output = std::task::ready!(this.inner.poll(cx));
        if let (Some(span), Ok(response)) = (this.span.as_ref(), &output) {
            span.record("http.response.status_code", response.status().as_u16());
        }
        std::task::Poll::Ready(output)
    }
}
