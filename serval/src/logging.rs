//! Log output and traces. Logs: human lines on a terminal, JSON lines otherwise (for log
//! collectors), filtered by `RUST_LOG` (default `info`). Traces: when the standard
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) is set, request spans go to that
//! collector over OTLP/HTTP, and `traceparent` is continued across processes.

use std::io::IsTerminal;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::filter::filter_fn;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Flushes the spans not yet exported when dropped, at the end of the process.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take() {
            if let Err(e) = provider.shutdown() {
                eprintln!("serval: flushing traces failed: {e}");
            }
        }
    }
}

/// Installs logging, and tracing export when the environment asks for it. Call outside
/// any async runtime: the exporter's HTTP client runs its own.
pub fn init(role: &str) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = if std::io::stderr().is_terminal() {
        tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_writer(std::io::stderr)
            .boxed()
    };
    let (provider, problem) = match tracer_provider(role) {
        Ok(provider) => (provider, None),
        Err(problem) => (None, Some(problem)),
    };
    // Only our request spans (info and above) are exported, whatever RUST_LOG says.
    let traces = provider.as_ref().map(|provider| {
        tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("serval"))
            .with_filter(filter_fn(|meta| {
                meta.is_span() && *meta.level() <= tracing::Level::INFO
            }))
    });
    let _ = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(traces)
        .try_init();
    if let Some(problem) = problem {
        tracing::warn!("traces are not exported: {problem}");
    }
    if provider.is_some() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        serval_proxy::trace_context::enable();
    }
    Telemetry { provider }
}

/// An OTLP/HTTP exporter configured by the standard `OTEL_*` variables, or none when no
/// endpoint is set or the SDK is disabled.
fn tracer_provider(role: &str) -> Result<Option<SdkTracerProvider>, String> {
    let set = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    if set("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || set("OTEL_TRACES_EXPORTER").is_some_and(|v| v.eq_ignore_ascii_case("none"))
        || (set("OTEL_EXPORTER_OTLP_ENDPOINT").is_none()
            && set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_none())
    {
        return Ok(None);
    }
    let protocol = set("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|| set("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|| "http/protobuf".into());
    if protocol != "http/protobuf" {
        return Err(format!(
            "OTLP protocol {protocol:?} is not supported; set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf \
             and point OTEL_EXPORTER_OTLP_ENDPOINT at the collector's HTTP port (4318)"
        ));
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .map_err(|e| format!("cannot build the OTLP exporter: {e}"))?;
    let mut resource = Resource::builder();
    if set("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name(format!("serval-{role}"));
    }
    Ok(Some(
        SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource.build())
            .build(),
    ))
}
