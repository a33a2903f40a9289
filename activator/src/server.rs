//! The activator as a value: the layer stack, the background tasks (endpoints and probes,
//! reports and pokes), serving a listener, and drain on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use serval_api::headers::REQUEST_ID;
use serval_proxy::body::{BoxError, ProxyBody, RequestBody};
use serval_proxy::connect::LocalSockets;
use serval_proxy::serve::{serve_on_threads, ServeSettings};
use serval_proxy::trace_context::TraceLayer;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tower::util::BoxCloneSyncService;
use tower::{ServiceBuilder, ServiceExt};

use crate::autoscaler::AutoscalerClient;
use crate::config::Config;
use crate::endpoints::Endpoints;
use crate::layers::headers::HeadersLayer;
use crate::layers::rate_limit::RateLimitLayer;
use crate::layers::routing::RoutingLayer;
use crate::layers::throttle::ThrottleLayer;
use crate::probe::{self, Periods};
use crate::proxy::Forward;
use crate::report;
use crate::routes::RouteTable;
use crate::throttler::Throttler;

/// Pokes waiting for the reporter; past this they are dropped (the reports carry the queue).
const POKE_QUEUE: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid configuration: {0}")]
    Config(String),
}

pub(crate) type Stack = BoxCloneSyncService<Request<RequestBody>, Response<ProxyBody>, Infallible>;

/// The activator's span of one request, when traces are exported. The wait for a pod is
/// its child `activator.wait`, opened by the throttle layer.
fn request_span(
    method: &http::Method,
    uri: &http::Uri,
    headers: &http::HeaderMap,
) -> tracing::Span {
    let request_id = headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    tracing::info_span!(
        "activator.request",
        otel.kind = "server",
        http.request.method = %method,
        url.path = uri.path(),
        serval.request_id = request_id,
        http.response.status_code = tracing::field::Empty,
    )
}

/// The activator's concerns, outermost first.
fn stack(routes: Arc<RouteTable>, throttler: Arc<Throttler>, config: &Config) -> Stack {
    let stack = ServiceBuilder::new()
        // Request id and forwarding headers first, so every answer carries the id.
        .layer(HeadersLayer)
        // A span per request, continuing the caller's trace, when an exporter is installed.
        .layer(TraceLayer::proxy(request_span))
        // Host or path -> service -> revision; unknown services get 404 before anything waits.
        .layer(RoutingLayer::new(routes.clone()))
        // The service's rate limit: a refused request never takes a place in line.
        .layer(RateLimitLayer)
        // A slot on a pod, waiting at zero; a retry only when the request never left.
        .layer(ThrottleLayer::new(throttler, routes, config.max_retries))
        .service(Forward::new(
            config.local_sockets.clone().map(LocalSockets::new),
        ));
    BoxCloneSyncService::new(stack)
}

/// A running activator: its request stack and background tasks (stopped when dropped).
#[derive(Debug)]
pub struct Activator {
    config: Config,
    routes: Arc<RouteTable>,
    throttler: Arc<Throttler>,
    stack: Stack,
    _tasks: JoinSet<()>,
}

impl Activator {
    /// Starts the background tasks; requests go through [`Activator::handle`] or
    /// [`Activator::serve`]. Must be called inside a Tokio runtime.
    pub fn start<E: Endpoints, A: AutoscalerClient>(
        config: Config,
        routes: Arc<RouteTable>,
        endpoints: E,
        autoscaler: A,
    ) -> Result<Self, ServeError> {
        config.validate().map_err(ServeError::Config)?;
        let (pokes, poke_rx) = mpsc::channel(POKE_QUEUE);
        let throttler = Arc::new(Throttler::new(
            config.queue_bound,
            config.total_queue_bound,
            pokes,
        ));
        let periods = Periods {
            unhealthy: config.probe_period,
            healthy: config.healthy_probe_period,
        };
        let mut tasks = JoinSet::new();
        tasks.spawn(probe::sync_endpoints(
            throttler.clone(),
            endpoints.subscribe(),
            periods,
        ));
        tasks.spawn(report::run(
            throttler.clone(),
            Arc::new(autoscaler),
            config.name.clone(),
            config.report_interval,
            poke_rx,
        ));
        let stack = stack(routes.clone(), throttler.clone(), &config);
        Ok(Self {
            config,
            routes,
            throttler,
            stack,
            _tasks: tasks,
        })
    }

    /// Serves one request in-process, as a connection would.
    pub async fn handle<B>(
        &self,
        request: Request<B>,
    ) -> Response<http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>>
    where
        B: http_body::Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        let request = request.map(|b| b.map_err(Into::into).boxed());
        match self.stack.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        }
    }

    /// Requests `revision` holds waiting for a pod now.
    pub fn queued(&self, revision: &str) -> usize {
        self.throttler.get(revision).map_or(0, |r| r.queued())
    }

    /// Requests held over all revisions now.
    pub fn total_queued(&self) -> usize {
        self.throttler.total_queued()
    }

    /// Pods of `revision` that passed the activator's probe and take requests.
    pub fn healthy_pods(&self, revision: &str) -> usize {
        self.throttler.get(revision).map_or(0, |r| r.healthy_pods())
    }

    /// Serves `listener` until `shutdown` completes, then stops accepting and finishes what
    /// is in flight (for at most the drain timeout). Connections are served on threads of
    /// their own, one per core unless the configuration says otherwise.
    pub async fn serve(&self, listener: TcpListener, shutdown: impl Future<Output = ()>) {
        let threads = match self.config.serve_threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        tracing::info!(
            listen = ?listener.local_addr().ok(),
            domain = %self.config.domain,
            threads,
            "activator serving"
        );
        let settings = ServeSettings {
            max_concurrent_streams: Some(self.config.max_concurrent_streams),
            drain_timeout: Some(self.config.drain_timeout),
        };
        // Each thread forwards over a pool of its own, so a request and its upstream
        // connection stay on one thread.
        let make_stack = || stack(self.routes.clone(), self.throttler.clone(), &self.config);
        serve_on_threads(
            listener,
            threads,
            "activator",
            make_stack,
            settings,
            shutdown,
        )
        .await;
    }
}

/// Runs until `shutdown` completes, then drains.
pub async fn run<E: Endpoints, A: AutoscalerClient>(
    config: Config,
    routes: Arc<RouteTable>,
    endpoints: E,
    autoscaler: A,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServeError> {
    let addr = config.listen;
    let activator = Activator::start(config, routes, endpoints, autoscaler)?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })?;
    activator.serve(listener, shutdown).await;
    Ok(())
}
