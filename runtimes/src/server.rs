//! The `serval runtime` process: load the model, then serve REST and gRPC until shutdown.
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use serval_proxy::trace_context::TraceLayer;
use tokio::net::TcpListener;

use crate::config::Config;
use crate::error::RuntimeError;
use crate::served::Served;

/// The model server's span of one REST or gRPC request, when traces are exported; the
/// model call inside it is `runtime.inference`.
fn request_span(method: &http::Method, uri: &http::Uri, _: &http::HeaderMap) -> tracing::Span {
    tracing::info_span!(
        "runtime.request",
        otel.kind = "server",
        http.request.method = %method,
        url.path = uri.path(),
        http.response.status_code = tracing::field::Empty,
    )
}

/// `shutdown` as a signal several servers can wait on.
pub(crate) fn stop_signal(
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> tokio::sync::watch::Receiver<bool> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });
    stop_rx
}

/// Completes once `rx` says stop.
async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// Loads the model, binds both ports, and serves until `shutdown` completes; then stops
/// accepting and finishes the requests in flight. Nothing listens before the model has
/// loaded, so a model that fails to load is never reported ready.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RuntimeError> {
    config.validate()?;
    if let Some(file) = crate::model::language_model(&config)? {
        return serve_language_model(config, file, shutdown).await;
    }
    let loading = config.clone();
    let load_started = std::time::Instant::now();
    // Loading parses files and may build ONNX Runtime sessions: keep it off the reactor.
    let model = tokio::task::spawn_blocking(move || crate::model::load(&loading))
        .await
        .map_err(|e| RuntimeError::Load {
            path: config.model_dir.clone(),
            reason: e.to_string(),
        })??;
    let served = Arc::new(Served::new(&config, model));
    let bind = |port: u16| {
        let addr = SocketAddr::new(config.bind_address, port);
        async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| RuntimeError::Bind { addr, source })
        }
    };
    let http_listener = bind(config.http_port).await?;
    let grpc_listener = bind(config.grpc_port).await?;
    let http_socket = bind_rest_socket(&config)?;
    tracing::info!(
        model = %config.model_name,
        platform = served.model.platform(),
        http = %http_listener.local_addr().map_or_else(|e| e.to_string(), |a| a.to_string()),
        grpc = %grpc_listener.local_addr().map_or_else(|e| e.to_string(), |a| a.to_string()),
        batching = config.batching(),
        load_ms = load_started.elapsed().as_secs_f64() * 1e3,
        "model server ready"
    );

    let stop_rx = stop_signal(shutdown);
    let router = crate::http::router(served.clone()).layer(TraceLayer::server(request_span));
    let http = serve_rest(http_listener, http_socket, router, stop_rx.clone());
    let grpc = tonic::transport::Server::builder()
        .layer(TraceLayer::server(request_span))
        .add_service(crate::grpc::service(served.clone()))
        .serve_with_incoming_shutdown(
            tonic::transport::server::TcpIncoming::from(grpc_listener).with_nodelay(Some(true)),
            stopped(stop_rx),
        );
    let (http, grpc) = tokio::join!(http, grpc);
    http?;
    grpc.map_err(|e| RuntimeError::Serve {
        protocol: "gRPC",
        reason: e.to_string(),
    })?;
    tracing::info!("stopped");
    Ok(())
}

/// Binds the Unix socket REST is also served on, when one is configured; before anything
/// is served, so that a refusal ends the process at once.
pub(crate) fn bind_rest_socket(config: &Config) -> Result<Option<RestSocket>, RuntimeError> {
    let Some(path) = &config.http_listen_unix else {
        return Ok(None);
    };
    let failed = |source| RuntimeError::BindUnix {
        path: path.clone(),
        source,
    };
    let listener = serval_proxy::serve::bind_unix(path).map_err(failed)?;
    // The queue-proxy may run as another user: whoever can reach the directory (the
    // pod's own volume, `serval dev`'s private directory) may connect.
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .map_err(failed)?;
    Ok(Some(RestSocket {
        listener,
        path: path.clone(),
    }))
}

/// A bound Unix socket for REST, and its file, removed once served.
pub(crate) struct RestSocket {
    listener: tokio::net::UnixListener,
    path: std::path::PathBuf,
}

/// Serves `router` on `tcp` and on `unix` when there is one, until `stop` says so; then
/// finishes the requests in flight on both and removes the socket file.
pub(crate) async fn serve_rest(
    tcp: TcpListener,
    unix: Option<RestSocket>,
    router: axum::Router,
    stop: tokio::sync::watch::Receiver<bool>,
) -> Result<(), RuntimeError> {
    let over_tcp = axum::serve(tcp, router.clone()).with_graceful_shutdown(stopped(stop.clone()));
    let served = match unix {
        None => over_tcp.await,
        Some(unix) => {
            tracing::info!(socket = %unix.path.display(), "REST also on a Unix socket");
            let over_unix =
                axum::serve(unix.listener, router).with_graceful_shutdown(stopped(stop));
            let (over_tcp, over_unix) = tokio::join!(over_tcp, over_unix);
            let _ = std::fs::remove_file(&unix.path);
            over_tcp.and(over_unix)
        }
    };
    served.map_err(|e| RuntimeError::Serve {
        protocol: "REST",
        reason: e.to_string(),
    })
}

#[cfg(feature = "llm")]
async fn serve_language_model(
    config: Config,
    file: std::path::PathBuf,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RuntimeError> {
    crate::llm::serve(config, file, shutdown).await
}

#[cfg(not(feature = "llm"))]
async fn serve_language_model(
    _: Config,
    file: std::path::PathBuf,
    _: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RuntimeError> {
    Err(RuntimeError::Load {
        path: file,
        reason: "this build of serval has no language-model support (build with the `llm` feature)"
            .into(),
    })
}
