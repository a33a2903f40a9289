//! The queue-proxy process: the layer stack, the listeners, and drain on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use http::{Request, Response};
use serval_proxy::body::{ProxyBody, RequestBody};
use serval_proxy::connect::LocalSockets;
use serval_proxy::serve::{serve, Listeners, ServeSettings};
use serval_proxy::trace_context::TraceLayer;
use tokio::net::TcpListener;
use tower::util::BoxCloneService;
use tower::{ServiceBuilder, ServiceExt};

use crate::admin::{self, Shared};
use crate::config::Config;
use crate::forward::Forward;
use crate::gpu::{GpuReader, NvmlReader, VisibleDevices};
use crate::layers::concurrency::ConcurrencyLimitLayer;
use crate::layers::stats::{StatsLayer, StatsRecorder};
use crate::layers::timeout::{TimeoutLayer, Timeouts};
use crate::layers::tokens::TokenCountLayer;
use crate::probe::{self, Probe};
use crate::reporter;

#[derive(Debug, thiserror::Error)]
pub enum QueueProxyError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot listen on the Unix socket {path}: {source}")]
    BindUnix {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
}

type Stack = BoxCloneService<Request<RequestBody>, Response<ProxyBody>, Infallible>;

/// The queue-proxy's span of one request, when traces are exported.
fn request_span(method: &http::Method, uri: &http::Uri, _: &http::HeaderMap) -> tracing::Span {
    tracing::info_span!(
        "queue_proxy.request",
        otel.kind = "server",
        http.request.method = %method,
        url.path = uri.path(),
        http.response.status_code = tracing::field::Empty,
    )
}

/// The proxy's concerns, outermost first.
fn stack(config: &Config, recorder: Arc<StatsRecorder>) -> Stack {
    let timeouts = Timeouts {
        total: config.request_timeout,
        first_byte: config.first_byte_timeout,
        idle: config.idle_timeout,
    };
    ServiceBuilder::new()
        // A span per request, continuing the caller's trace, when an exporter is installed.
        .layer(TraceLayer::proxy(request_span))
        // Measure everything that arrives, queued requests included, as Knative does.
        .layer(StatsLayer::new(recorder.clone()))
        // Time spent queueing counts against the request's timeout.
        .layer(TimeoutLayer::new(timeouts))
        // Protect the runtime: CC in flight, a bounded line, 503 past it.
        .layer(ConcurrencyLimitLayer::new(
            config.container_concurrency,
            config.queue_capacity().unwrap_or(0),
        ))
        // Count output tokens only of what the runtime actually answered.
        .layer(TokenCountLayer::new(recorder))
        .service(Forward::new(
            config.upstream,
            config.local_sockets.as_ref().map(LocalSockets::new),
        ))
        .boxed_clone()
}

fn gpu_reader(config: &Config) -> Option<Arc<dyn GpuReader>> {
    if !config.gpu {
        return None;
    }
    let visible = std::env::var("NVIDIA_VISIBLE_DEVICES").ok();
    match NvmlReader::new(VisibleDevices::parse(visible.as_deref())) {
        Ok(reader) => Some(Arc::new(reader)),
        Err(reason) => {
            tracing::info!("GPU metrics absent: {reason}");
            None
        }
    }
}

/// A queue-proxy: its request stack, what the admin port serves, and its background tasks
/// (readiness probe, stats windows, runtime metrics), stopped when dropped.
#[derive(Debug)]
pub struct QueueProxy {
    config: Config,
    shared: Arc<Shared>,
    stack: Stack,
    tasks: tokio::task::JoinSet<()>,
}

impl QueueProxy {
    /// Starts the background tasks. Must be called inside a Tokio runtime.
    pub fn start(config: Config) -> Result<Self, QueueProxyError> {
        let probe = Probe::new(config.upstream, config.probe_path.as_deref())
            .map_err(QueueProxyError::Config)?;
        let recorder = Arc::new(StatsRecorder::new(Instant::now()));
        let shared = Arc::new(Shared::new(recorder.clone()));
        let stack = stack(&config, recorder);

        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(probe::run(
            probe,
            config.probe_period,
            shared.runtime_ready.clone(),
        ));
        tasks.spawn(reporter::report(
            shared.clone(),
            config.pod_name.clone(),
            config.stats_window,
            gpu_reader(&config),
        ));
        let names = reporter::RuntimeMetricNames {
            queue_depth: config.queue_depth_metric.clone(),
            kv_cache_usage: config.kv_cache_metric.clone(),
        };
        if names.queue_depth.is_some() || names.kv_cache_usage.is_some() {
            tasks.spawn(reporter::scrape_runtime_metrics(
                shared.clone(),
                config.upstream,
                config.runtime_metrics_path.clone(),
                names,
                config.stats_window,
            ));
        }
        Ok(Self {
            config,
            shared,
            stack,
            tasks,
        })
    }

    /// Serves the user port on `listeners` and the admin port on `admin` until `shutdown`
    /// completes; then fails readiness, keeps serving for the drain period, stops accepting,
    /// finishes what is in flight and returns.
    pub async fn serve(
        mut self,
        listeners: impl Into<Listeners>,
        admin: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) {
        let listeners = listeners.into();
        let admin_addr = admin.local_addr().unwrap_or(self.config.admin_listen);
        let listen = listeners.tcp.local_addr().unwrap_or(self.config.listen);
        let admin_router = admin::router(self.shared.clone());
        self.tasks.spawn(async move {
            if let Err(e) = axum::serve(admin, admin_router).await {
                tracing::error!(error = %e, "admin server stopped");
            }
        });
        let unix = self
            .config
            .listen_unix
            .as_ref()
            .map(|p| p.display().to_string());
        tracing::info!(%listen, ?unix, upstream = %self.config.upstream, admin = %admin_addr,
            container_concurrency = self.config.container_concurrency, "queue-proxy serving");
        let (shared, drain_period) = (self.shared.clone(), self.config.drain_period);
        let drained = async move {
            shutdown.await;
            tracing::info!(
                ?drain_period,
                "shutting down: failing readiness and draining"
            );
            shared.draining.store(true, Ordering::Release);
            tokio::time::sleep(drain_period).await;
        };
        serve(
            listeners,
            self.stack.clone(),
            ServeSettings::default(),
            drained,
        )
        .await;
        tracing::info!("drained");
        let _ = self.shared.drained.send(true);
        // Give `/wait-for-drain` callers a moment to read their answer before the process ends.
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        self.tasks.abort_all();
    }
}

/// Binds the configured ports and serves until `shutdown` completes, then drains.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), QueueProxyError> {
    let bind = |addr| async move {
        TcpListener::bind(addr)
            .await
            .map_err(|source| QueueProxyError::Bind { addr, source })
    };
    let tcp = bind(config.listen).await?;
    let admin = bind(config.admin_listen).await?;
    let unix = match &config.listen_unix {
        Some(path) => Some(serval_proxy::serve::bind_unix(path).map_err(|source| {
            QueueProxyError::BindUnix {
                path: path.clone(),
                source,
            }
        })?),
        None => None,
    };
    let socket = config.listen_unix.clone();
    QueueProxy::start(config)?
        .serve(Listeners { tcp, unix }, admin, shutdown)
        .await;
    if let Some(path) = socket {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}
