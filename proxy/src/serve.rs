//! Accepting, serving and draining connections. On the caller's runtime ([`serve`], the
//! queue-proxy), or thread per core ([`serve_on_threads`], the activator): one acceptor
//! hands each accepted connection to the least-loaded of N threads, and each runs its
//! connections on a single-threaded runtime with a stack (and so a forwarding pool) of its
//! own. A request, its upstream connection and their tasks then stay on one thread: no
//! work-stealing bookkeeping and no cross-thread wakeups between them. Either way, an accept
//! that fails backs off instead of spinning, every request carries its [`ClientAddr`], and
//! shutdown stops accepting and finishes what is in flight, for at most the drain timeout.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};
use tower::{Service, ServiceExt};

use crate::body::{ProxyBody, RequestBody};
use crate::headers::ClientAddr;

/// Accepted connections waiting for their thread; past this the acceptor waits, and the
/// kernel's backlog holds the rest.
const HANDOFF_QUEUE: usize = 256;
/// How long an accept that failed (out of file descriptors, most likely) backs off.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What every connection is served with.
#[derive(Clone, Debug, Default)]
pub struct ServeSettings {
    /// HTTP/2 streams per connection; hyper's default when unset.
    pub max_concurrent_streams: Option<u32>,
    /// Longest a drain waits for requests in flight; unbounded when unset.
    pub drain_timeout: Option<Duration>,
}

/// A request stack as a connection serves it: every error is already a response.
pub trait Stack:
    Service<
        Request<RequestBody>,
        Response = Response<ProxyBody>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static
{
}

impl<S> Stack for S where
    S: Service<
            Request<RequestBody>,
            Response = Response<ProxyBody>,
            Error = Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + 'static
{
}

/// The peer address a connection over a Unix socket carries: a hop on this machine.
const LOCAL_PEER: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

/// Where [`serve`] accepts: a TCP listener, and optionally a Unix socket beside it for the
/// hops on the same machine (see [`crate::connect`]).
#[derive(Debug)]
pub struct Listeners {
    pub tcp: TcpListener,
    pub unix: Option<UnixListener>,
}

impl From<TcpListener> for Listeners {
    fn from(tcp: TcpListener) -> Self {
        Self { tcp, unix: None }
    }
}

/// Listens on the Unix socket `path`, replacing a socket that a process which died left
/// there; never a file of another kind, nor a socket that still answers (`AddrInUse`).
/// The caller removes the file when it stops listening.
pub fn bind_unix(path: &std::path::Path) -> std::io::Result<UnixListener> {
    use std::os::unix::fs::FileTypeExt;
    let socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if socket && std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(std::io::Error::from(std::io::ErrorKind::AddrInUse));
    }
    if socket {
        std::fs::remove_file(path)?;
    }
    UnixListener::bind(path)
}

/// The next connection over the Unix socket, or never when there is none.
async fn accept_unix(listener: Option<&UnixListener>) -> UnixStream {
    let Some(listener) = listener else {
        return std::future::pending().await;
    };
    loop {
        match listener.accept().await {
            Ok((stream, _)) => return stream,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// The next connection; an accept that fails is logged and retried after a pause.
async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                return (stream, peer);
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
}

/// The connections of one runtime, and how to drain them.
struct Connections {
    builder: auto::Builder<TokioExecutor>,
    graceful: GracefulShutdown,
}

impl Connections {
    fn new(settings: &ServeSettings) -> Self {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        if let Some(streams) = settings.max_concurrent_streams {
            builder.http2().max_concurrent_streams(streams);
        }
        Self {
            builder,
            graceful: GracefulShutdown::new(),
        }
    }

    /// Serves one connection on the current runtime; `guard` is dropped when it ends.
    fn serve<S: Stack, G: Send + 'static>(
        &self,
        stream: impl AsyncRead + AsyncWrite + Unpin + Send + 'static,
        peer: SocketAddr,
        stack: S,
        guard: G,
    ) {
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let mut request = request.map(|b| b.map_err(Into::into).boxed());
            request.extensions_mut().insert(ClientAddr(peer));
            stack.clone().oneshot(request)
        });
        let connection = self
            .builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        // A combinator, not an async block: rustc cannot yet prove such a block `Send`
        // when it holds this connection (its service is generic over lifetimes).
        tokio::spawn(self.graceful.watch(connection).map(move |_| drop(guard)));
    }

    /// Waits for the connections to finish what they have in flight.
    async fn drain(self, timeout: Option<Duration>) {
        let drained = self.graceful.shutdown();
        match timeout {
            None => drained.await,
            Some(timeout) => {
                if tokio::time::timeout(timeout, drained).await.is_err() {
                    tracing::warn!("drain timed out; dropping what is still in flight");
                }
            }
        }
    }
}

/// Serves `listeners` with `stack` on the caller's runtime until `shutdown` completes; then
/// stops accepting and finishes what is in flight.
pub async fn serve<S: Stack>(
    listeners: impl Into<Listeners>,
    stack: S,
    settings: ServeSettings,
    shutdown: impl Future<Output = ()>,
) {
    let listeners = listeners.into();
    let connections = Connections::new(&settings);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            (stream, peer) = accept(&listeners.tcp) => connections.serve(stream, peer, stack.clone(), ()),
            stream = accept_unix(listeners.unix.as_ref()) => {
                connections.serve(stream, LOCAL_PEER, stack.clone(), ());
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listeners);
    connections.drain(settings.drain_timeout).await;
}

struct Worker {
    connections: mpsc::Sender<(std::net::TcpStream, SocketAddr)>,
    /// Open connections: the acceptor picks the worker with the fewest.
    load: Arc<AtomicUsize>,
    done: oneshot::Receiver<()>,
}

/// Serves `listener` on `threads` threads named `<name>-<i>`, each with a stack from
/// `make_stack`, until `shutdown` completes; then stops accepting, and each thread finishes
/// what it has in flight.
pub async fn serve_on_threads<S: Stack>(
    listener: TcpListener,
    threads: usize,
    name: &str,
    make_stack: impl Fn() -> S,
    settings: ServeSettings,
    shutdown: impl Future<Output = ()>,
) {
    let workers: Vec<Worker> = (0..threads.max(1))
        .map(|index| start_worker(format!("{name}-{index}"), make_stack(), settings.clone()))
        .collect();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            (stream, peer) = accept(&listener) => {
                // Leaves this runtime's reactor; the worker registers it with its own.
                let stream = match stream.into_std() {
                    Ok(stream) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot hand off a connection");
                        continue;
                    }
                };
                let worker = least_loaded(&workers);
                worker.load.fetch_add(1, Ordering::Relaxed);
                if worker.connections.send((stream, peer)).await.is_err() {
                    // Its thread is gone (a panic): it is never picked again.
                    worker.load.store(usize::MAX / 2, Ordering::Relaxed);
                    tracing::error!("a serving thread is gone; connection dropped");
                }
            }
            _ = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!(drain_timeout = ?settings.drain_timeout, "draining");
    let mut done = Vec::with_capacity(workers.len());
    for worker in workers {
        // Closing the hand-off tells the worker to drain.
        drop(worker.connections);
        done.push(worker.done);
    }
    for worker in done {
        let _ = worker.await;
    }
}

fn least_loaded(workers: &[Worker]) -> &Worker {
    workers
        .iter()
        .min_by_key(|w| w.load.load(Ordering::Relaxed))
        .expect("at least one worker")
}

/// A worker on a thread of its own, or, when no thread can be had, a task on the caller's
/// runtime (serving slower beats not serving).
fn start_worker<S: Stack>(name: String, stack: S, settings: ServeSettings) -> Worker {
    let (connections, handoff) = mpsc::channel(HANDOFF_QUEUE);
    let load = Arc::new(AtomicUsize::new(0));
    let (finished, done) = oneshot::channel();
    let work = serve_handed_off(handoff, stack, load.clone(), settings);
    if let Err((work, finished, e)) = spawn_thread(name, work, finished) {
        tracing::warn!(error = %e, "no thread for serving; serving on the shared runtime");
        tokio::spawn(async move {
            work.await;
            let _ = finished.send(());
        });
    }
    Worker {
        connections,
        load,
        done,
    }
}

type Failed<F> = (F, oneshot::Sender<()>, std::io::Error);

/// Runs `work` on a new thread with a single-threaded runtime of its own and sends
/// `finished` when it is done; when either cannot be had, both come back.
fn spawn_thread<F>(name: String, work: F, finished: oneshot::Sender<()>) -> Result<(), Failed<F>>
where
    F: Future<Output = ()> + Send + 'static,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return Err((work, finished, e)),
    };
    // The work moves into the thread only once the thread exists: a failed spawn drops its
    // closure, and the work must come back.
    let (start, started) = std::sync::mpsc::sync_channel::<(F, oneshot::Sender<()>)>(1);
    let spawned = std::thread::Builder::new().name(name).spawn(move || {
        if let Ok((work, finished)) = started.recv() {
            runtime.block_on(work);
            // Connections still open past the drain timeout end here.
            drop(runtime);
            let _ = finished.send(());
        }
    });
    match spawned {
        Ok(_) => {
            let _ = start.send((work, finished));
            Ok(())
        }
        Err(e) => Err((work, finished, e)),
    }
}

/// Decrements a worker's load when its connection ends, however it ends.
struct OpenConnection(Arc<AtomicUsize>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// One worker: serves the connections handed to it until the hand-off closes, then drains.
async fn serve_handed_off<S: Stack>(
    mut handoff: mpsc::Receiver<(std::net::TcpStream, SocketAddr)>,
    stack: S,
    load: Arc<AtomicUsize>,
    settings: ServeSettings,
) {
    let connections = Connections::new(&settings);
    while let Some((stream, peer)) = handoff.recv().await {
        let open = OpenConnection(load.clone());
        match TcpStream::from_std(stream) {
            Ok(stream) => connections.serve(stream, peer, stack.clone(), open),
            Err(e) => tracing::warn!(error = %e, "cannot serve a handed-off connection"),
        }
    }
    connections.drain(settings.drain_timeout).await;
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http::Response;
    use http_body_util::Full;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn text(body: String) -> ProxyBody {
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync()
    }

    /// Answers with the name of the thread that served the request, after `delay`.
    fn thread_name_stack(delay: Duration) -> impl Stack {
        tower::util::BoxCloneSyncService::new(tower::service_fn(
            move |_: Request<RequestBody>| async move {
                tokio::time::sleep(delay).await;
                let name = std::thread::current().name().unwrap_or("?").to_string();
                Ok::<_, Infallible>(Response::new(text(name)))
            },
        ))
    }

    fn settings(drain_timeout: Duration) -> ServeSettings {
        ServeSettings {
            max_concurrent_streams: Some(16),
            drain_timeout: Some(drain_timeout),
        }
    }

    /// One HTTP/1.1 request on `stream`; the response's body, or what went wrong.
    async fn get(stream: &mut tokio::net::TcpStream) -> Result<String, String> {
        stream
            .write_all(b"GET / HTTP/1.1\r\nhost: test\r\n\r\n")
            .await
            .map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        let mut buffer = [0u8; 1024];
        loop {
            let n = stream.read(&mut buffer).await.map_err(|e| e.to_string())?;
            if n == 0 {
                return Err("connection closed".into());
            }
            response.extend_from_slice(&buffer[..n]);
            let text = String::from_utf8_lossy(&response).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|l| l.parse::<usize>().ok())
                    .ok_or_else(|| format!("no content-length in {head:?}"))?;
                if body.len() >= length {
                    return Ok(body[..length].to_string());
                }
            }
        }
    }

    /// Serves on `threads` threads with [`thread_name_stack`]; serving stops once the
    /// sender is used or dropped.
    async fn start(
        threads: usize,
        delay: Duration,
        drain_timeout: Duration,
    ) -> (SocketAddr, oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve_on_threads(
            listener,
            threads,
            "activator",
            move || thread_name_stack(delay),
            settings(drain_timeout),
            async move {
                let _ = stopped.await;
            },
        ));
        (addr, stop, server)
    }

    #[tokio::test]
    async fn connections_go_to_the_least_loaded_serving_thread() {
        let (addr, stop, server) = start(2, Duration::ZERO, Duration::from_secs(5)).await;
        let mut names = Vec::new();
        let mut open = Vec::new();
        // Connections stay open, so each new one finds the other thread less loaded.
        for _ in 0..4 {
            let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
            names.push(get(&mut stream).await.unwrap());
            open.push(stream);
        }
        assert_eq!(
            names,
            ["activator-0", "activator-1", "activator-0", "activator-1"]
        );
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("serving stops once idle connections are closed")
            .unwrap();
    }

    #[tokio::test]
    async fn shutdown_finishes_requests_in_flight_and_stops_accepting() {
        let (addr, stop, server) =
            start(2, Duration::from_millis(300), Duration::from_secs(5)).await;
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let in_flight = tokio::spawn(async move { get(&mut stream).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = stop.send(());
        let answer = in_flight.await.unwrap();
        assert!(
            answer
                .as_deref()
                .is_ok_and(|name| name.starts_with("activator-")),
            "{answer:?}"
        );
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("serving stops after the drain")
            .unwrap();
        assert!(tokio::net::TcpStream::connect(addr).await.is_err());
    }

    #[tokio::test]
    async fn a_request_past_the_drain_timeout_is_dropped_and_serving_ends() {
        let (addr, stop, server) =
            start(1, Duration::from_secs(3600), Duration::from_millis(200)).await;
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let in_flight = tokio::spawn(async move { get(&mut stream).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("serving ends at the drain timeout")
            .unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(5), in_flight)
            .await
            .expect("the client learns the connection is gone")
            .unwrap();
        assert_eq!(answer, Err("connection closed".to_string()));
    }
}
