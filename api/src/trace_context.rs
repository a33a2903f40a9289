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
