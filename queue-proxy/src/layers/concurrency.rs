//! `containerConcurrency`: at most CC requests reach the runtime at once, up to
//! `queue_capacity` more wait in line, and anything past that is refused at once with 503 so
//! callers (the activator) can go elsewhere instead of piling up.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{Request, Response};
use serval_proxy::body::{observe_response, Hold, ProxyBody};
use serval_proxy::trace_context;
use tokio::sync::Semaphore;
use tower::{Layer, Service};
use tracing::Instrument;

use crate::error::ProxyError;
use crate::layers::ResponseFuture;

#[derive(Clone, Debug)]
pub(crate) struct ConcurrencyLimitLayer {
    limit: usize,
    queue_capacity: usize,
}

impl ConcurrencyLimitLayer {
    /// `limit` 0 means no limit.
    pub(crate) fn new(limit: usize, queue_capacity: usize) -> Self {
        Self {
            limit,
            queue_capacity,
        }
    }
}

impl<S> Layer<S> for ConcurrencyLimitLayer {
    type Service = ConcurrencyLimit<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ConcurrencyLimit {
            inner,
            limit: self.limit,
            queue_capacity: self.queue_capacity,
            slots: Arc::new(Semaphore::new(self.limit)),
            waiting: Arc::new(AtomicUsize::new(0)),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct ConcurrencyLimit<S> {
    inner: S,
    limit: usize,
    queue_capacity: usize,
    slots: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
}

/// Counts a request as waiting until it gets a slot or gives up (its caller went away).
struct Waiting(Arc<AtomicUsize>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<S, B> Service<Request<B>> for ConcurrencyLimit<S>
where
    S: Service<Request<B>, Response = Response<ProxyBody>, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = Response<ProxyBody>;
    type Error = std::convert::Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let mut inner = self.inner.clone();
        if self.limit == 0 {
            return Box::pin(async move { inner.call(request).await });
        }
        let slot = match self.slots.clone().try_acquire_owned() {
            Ok(slot) => Ok(slot),
            Err(_) => {
                let queued = self.waiting.fetch_add(1, Ordering::AcqRel);
                let waiting = Waiting(self.waiting.clone());
                if queued >= self.queue_capacity {
                    drop(waiting);
                    let error = ProxyError::Overloaded {
                        limit: self.limit,
                        in_flight: self.limit - self.slots.available_permits().min(self.limit),
                        queued,
                    };
                    return Box::pin(async move { Ok(error.into_response()) });
                }
                Err((self.slots.clone(), waiting))
            }
        };
        Box::pin(async move {
            let slot = match slot {
                Ok(slot) => slot,
                Err((slots, waiting)) => {
                    let acquire = slots.acquire_owned();
                    let acquired = if trace_context::enabled() {
                        acquire
                            .instrument(tracing::info_span!("queue_proxy.queue"))
                            .await
                    } else {
                        acquire.await
                    };
                    let slot = acquired.expect("the semaphore is never closed");
                    drop(waiting);
                    slot
                }
            };
            let response = inner.call(request).await?;
            // The slot is held until the response body has been sent: a streaming response
            // keeps the runtime busy until its last byte.
            Ok(observe_response(response, Hold(slot)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use serval_proxy::body::empty_request;
    use std::convert::Infallible;
    use tower::ServiceExt;

    /// A backend that records how many calls it holds at once, each until `gate` lets it go.
    #[derive(Clone)]
    struct Gated {
        gate: Arc<Semaphore>,
        current: Arc<AtomicUsize>,
        peak: Arc<AtomicUsize>,
    }

    impl<B> Service<Request<B>> for Gated {
        type Response = Response<ProxyBody>;
        type Error = Infallible;
        type Future = ResponseFuture;

        fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _request: Request<B>) -> ResponseFuture {
            let this = self.clone();
            Box::pin(async move {
                let now = this.current.fetch_add(1, Ordering::SeqCst) + 1;
                this.peak.fetch_max(now, Ordering::SeqCst);
                this.gate.acquire().await.expect("open gate").forget();
                this.current.fetch_sub(1, Ordering::SeqCst);
                Ok(Response::new(serval_proxy::body::full(bytes::Bytes::new())))
            })
        }
    }

    #[tokio::test]
    async fn limits_in_flight_queues_then_refuses() {
        let backend = Gated {
            gate: Arc::new(Semaphore::new(0)),
            current: Arc::new(AtomicUsize::new(0)),
            peak: Arc::new(AtomicUsize::new(0)),
        };
        let service = ConcurrencyLimitLayer::new(2, 3).layer(backend.clone());
        let calls: Vec<_> = (0..5)
            .map(|_| {
                // `call` gives a boxed, spawnable future (the limit is always ready).
                let call = service.clone().call(Request::new(empty_request()));
                tokio::spawn(async move { call.await.map(|r| r.status()) })
            })
            .collect();
        while service.waiting.load(Ordering::SeqCst) < 3
            || backend.current.load(Ordering::SeqCst) < 2
        {
            tokio::task::yield_now().await;
        }
        // Two running and three waiting: the sixth is refused at once, in KServe's shape.
        let refused = service
            .clone()
            .oneshot(Request::new(empty_request()))
            .await
            .unwrap();
        assert_eq!(refused.status(), http::StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.headers()["retry-after"], "1");
        let body = refused.into_body().collect().await.unwrap().to_bytes();
        assert!(body.starts_with(br#"{"error":"overloaded"#), "{body:?}");

        backend.gate.add_permits(5);
        for call in calls {
            assert_eq!(call.await.unwrap().unwrap(), http::StatusCode::OK);
        }
        assert_eq!(backend.peak.load(Ordering::SeqCst), 2);
        assert_eq!(service.waiting.load(Ordering::SeqCst), 0);
    }
}
