//! Serving connections thread per core: one acceptor hands each accepted connection to the
//! least-loaded of N worker threads, and each worker runs its connections on a
//! single-threaded runtime with its own forwarding pool. A request, its upstream connection
//! and their tasks then stay on one thread: no work-stealing bookkeeping and no cross-thread
//! wakeups between a request and its upstream connection. Only the throttler (a slot on a
//! pod, the line at zero) is shared between threads.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use http::Request;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tower::ServiceExt;

use crate::layers::headers::ClientAddr;
use crate::server::Stack;

/// Accepted connections waiting for their worker; past this the acceptor waits, and the
/// kernel's backlog holds the rest.
const HANDOFF_QUEUE: usize = 256;

/// What every worker serves with.
#[derive(Clone, Debug)]
pub(crate) struct ConnectionSettings {
    pub(crate) max_concurrent_streams: u32,
    pub(crate) drain_timeout: Duration,
}

struct Worker {
    connections: mpsc::Sender<(std::net::TcpStream, SocketAddr)>,
    /// Open connections: the acceptor picks the worker with the fewest.
    load: Arc<AtomicUsize>,
    done: oneshot::Receiver<()>,
}

/// Serves `listener` on `threads` workers (each with a stack from `make_stack`) until
/// `shutdown` completes; then stops accepting, and each worker finishes what it has in
/// flight for at most the drain timeout.
pub(crate) async fn serve(
    listener: TcpListener,
    threads: usize,
    make_stack: impl Fn() -> Stack,
    settings: ConnectionSettings,
    shutdown: impl Future<Output = ()>,
) {
    let workers: Vec<Worker> = (0..threads.max(1))
        .map(|index| start_worker(index, make_stack(), settings.clone()))
        .collect();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of file descriptors, most likely: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
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
    tracing::info!(drain_timeout = ?settings.drain_timeout, "activator draining");
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
fn start_worker(index: usize, stack: Stack, settings: ConnectionSettings) -> Worker {
    let (connections, handoff) = mpsc::channel(HANDOFF_QUEUE);
    let load = Arc::new(AtomicUsize::new(0));
    let (finished, done) = oneshot::channel();
    let work = serve_connections(handoff, stack, load.clone(), settings);
    if let Err((work, finished, e)) = spawn_thread(format!("activator-{index}"), work, finished) {
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
async fn serve_connections(
    mut handoff: mpsc::Receiver<(std::net::TcpStream, SocketAddr)>,
    stack: Stack,
    load: Arc<AtomicUsize>,
    settings: ConnectionSettings,
) {
    let graceful = GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http2()
        .max_concurrent_streams(settings.max_concurrent_streams);
    while let Some((stream, peer)) = handoff.recv().await {
        let open = OpenConnection(load.clone());
        let stream = match TcpStream::from_std(stream) {
            Ok(stream) => stream,
            Err(e) => {
                tracing::warn!(error = %e, "cannot serve a handed-off connection");
                continue;
            }
        };
        let stack = stack.clone();
        let service = hyper::service::service_fn(move |request: Request<Incoming>| {
            let mut request = request.map(|b| b.map_err(Into::into).boxed());
            request.extensions_mut().insert(ClientAddr(peer));
            stack.clone().oneshot(request)
        });
        let connection = builder
            .serve_connection(TokioIo::new(stream), service)
            .into_owned();
        // A combinator, not an async block: rustc cannot yet prove such a block `Send`
        // when it holds this connection (its service is generic over lifetimes).
        tokio::spawn(graceful.watch(connection).map(move |_| drop(open)));
    }
    if tokio::time::timeout(settings.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("drain timed out; dropping what is still in flight");
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http::Response;
    use http_body_util::Full;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tower::util::BoxCloneSyncService;

    use super::*;
    use crate::body::{ProxyBody, RequestBody};

    fn text(body: String) -> ProxyBody {
        Full::new(Bytes::from(body))
            .map_err(|never| match never {})
            .boxed_unsync()
    }

    /// Answers with the name of the thread that served the request, after `delay`.
    fn thread_name_stack(delay: Duration) -> Stack {
        BoxCloneSyncService::new(tower::service_fn(
            move |_: Request<RequestBody>| async move {
                tokio::time::sleep(delay).await;
                let name = std::thread::current().name().unwrap_or("?").to_string();
                Ok::<_, Infallible>(Response::new(text(name)))
            },
        ))
    }

    fn settings(drain_timeout: Duration) -> ConnectionSettings {
        ConnectionSettings {
            max_concurrent_streams: 16,
            drain_timeout,
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
        let server = tokio::spawn(serve(
            listener,
            threads,
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
