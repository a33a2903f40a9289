//! Measures the pod: time-weighted concurrency (total and the part that came through the
//! activator), requests, bytes, output and prompt tokens, closed into one `Stat` per window. A
//! request counts as in flight from arrival (queueing included, as Knative counts it) until
//! its response body has been sent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_util::FutureExt;
use http::{Request, Response};
use serval_api::headers::VIA_ACTIVATOR;
use serval_proxy::body::{observe_request, observe_response, BodyObserver, ProxyBody, RequestBody};
use serval_proxy::window::{ConcurrencyWindow, Started};
use tower::{Layer, Service};

use crate::layers::ResponseFuture;

/// What one closed window measured; the caller adds pod name, timestamps, GPU and queue.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WindowStats {
    pub average_concurrency: f64,
    pub average_proxied_concurrency: f64,
    pub request_count: u64,
    pub proxied_request_count: u64,
    pub proxied_bytes: u64,
    pub output_tokens: u64,
    pub prompt_tokens: u64,
    pub in_flight: u64,
}

/// Counts since the process started, for Prometheus counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub requests: u64,
    pub output_tokens: u64,
    pub prompt_tokens: u64,
}

/// Shared by the stats layer (which records) and the reporter (which closes windows).
#[derive(Debug)]
pub struct StatsRecorder {
    all: ConcurrencyWindow,
    /// The requests that came through the activator, which it has counted already.
    proxied: ConcurrencyWindow,
    bytes: AtomicU64,
    tokens: AtomicU64,
    prompt_tokens: AtomicU64,
    total_requests: AtomicU64,
    total_tokens: AtomicU64,
    total_prompt_tokens: AtomicU64,
}

/// Where a request was counted, to count its end in the same place.
#[derive(Debug, Clone, Copy)]
pub struct Counted {
    all: Started,
    proxied: Option<Started>,
}

impl StatsRecorder {
    pub fn new(now: Instant) -> Self {
        let now = tokio::time::Instant::from_std(now);
        Self {
            all: ConcurrencyWindow::new(now),
            proxied: ConcurrencyWindow::new(now),
            bytes: AtomicU64::new(0),
            tokens: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            total_requests: AtomicU64::new(0),
            total_tokens: AtomicU64::new(0),
            total_prompt_tokens: AtomicU64::new(0),
        }
    }

    /// A request arrived.
    pub fn request_started(&self, proxied: bool, now: Instant) -> Counted {
        let now = tokio::time::Instant::from_std(now);
        self.total_requests.fetch_add(1, Ordering::Relaxed);
        Counted {
            all: self.all.start(now),
            proxied: proxied.then(|| self.proxied.start(now)),
        }
    }

    /// A request's response has been sent (or abandoned).
    pub fn request_finished(&self, counted: Counted, now: Instant) {
        let now = tokio::time::Instant::from_std(now);
        self.all.finish(counted.all, now);
        if let Some(proxied) = counted.proxied {
            self.proxied.finish(proxied, now);
        }
    }

    pub fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_output_tokens(&self, n: u64) {
        self.tokens.fetch_add(n, Ordering::Relaxed);
        self.total_tokens.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_prompt_tokens(&self, n: u64) {
        self.prompt_tokens.fetch_add(n, Ordering::Relaxed);
        self.total_prompt_tokens.fetch_add(n, Ordering::Relaxed);
    }

    /// Requests in flight right now.
    pub fn in_flight(&self) -> u64 {
        self.all.in_flight()
    }

    /// Requests and tokens since start, for Prometheus counters.
    pub fn totals(&self) -> Totals {
        Totals {
            requests: self.total_requests.load(Ordering::Relaxed),
            output_tokens: self.total_tokens.load(Ordering::Relaxed),
            prompt_tokens: self.total_prompt_tokens.load(Ordering::Relaxed),
        }
    }

    /// Closes the current window at `now` and opens the next one.
    pub fn close_window(&self, now: Instant) -> WindowStats {
        let now = tokio::time::Instant::from_std(now);
        let all = self.all.close(now);
        let proxied = self.proxied.close(now);
        WindowStats {
            average_concurrency: all.average_concurrency,
            average_proxied_concurrency: proxied.average_concurrency,
            request_count: all.requests,
            proxied_request_count: proxied.requests,
            proxied_bytes: self.bytes.swap(0, Ordering::Relaxed),
            output_tokens: self.tokens.swap(0, Ordering::Relaxed),
            prompt_tokens: self.prompt_tokens.swap(0, Ordering::Relaxed),
            in_flight: all.in_flight,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct StatsLayer {
    recorder: Arc<StatsRecorder>,
}

impl StatsLayer {
    pub(crate) fn new(recorder: Arc<StatsRecorder>) -> Self {
        Self { recorder }
    }
}

impl<S> Layer<S> for StatsLayer {
    type Service = Stats<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Stats {
            inner,
            recorder: self.recorder.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Stats<S> {
    inner: S,
    recorder: Arc<StatsRecorder>,
}

/// Holds a request in flight; counts the bytes of the body it rides on.
struct InFlight {
    recorder: Arc<StatsRecorder>,
    counted: Counted,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.recorder.request_finished(self.counted, Instant::now());
    }
}

impl BodyObserver for InFlight {
    fn on_data(&mut self, data: &Bytes) {
        self.recorder.add_bytes(data.len() as u64);
    }
}

struct CountBytes(Arc<StatsRecorder>);

impl BodyObserver for CountBytes {
    fn on_data(&mut self, data: &Bytes) {
        self.0.add_bytes(data.len() as u64);
    }
}

impl<S> Service<Request<RequestBody>> for Stats<S>
where
    S: Service<
            Request<RequestBody>,
            Response = Response<ProxyBody>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    type Response = Response<ProxyBody>;
    type Error = std::convert::Infallible;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<RequestBody>) -> Self::Future {
        let proxied = request.headers().contains_key(VIA_ACTIVATOR);
        let in_flight = InFlight {
            counted: self.recorder.request_started(proxied, Instant::now()),
            recorder: self.recorder.clone(),
        };
        let request = observe_request(request, CountBytes(self.recorder.clone()));
        // If the caller goes away first, dropping this future drops `in_flight` too. (A
        // combinator rather than an async block: rustc cannot prove the latter `Send` here.)
        let response = self.inner.clone().call(request);
        Box::pin(response.map(move |r| r.map(|response| observe_response(response, in_flight))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn concurrency_is_time_weighted_over_the_window() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let recorder = StatsRecorder::new(t0);
        // One request for the whole second, a second one (via the activator) for half of it.
        let long = recorder.request_started(false, at(0));
        let short = recorder.request_started(true, at(250));
        recorder.request_finished(short, at(750));
        recorder.add_output_tokens(42);
        recorder.add_prompt_tokens(700);
        let first = recorder.close_window(at(1000));
        assert!((first.average_concurrency - 1.5).abs() < 1e-9, "{first:?}");
        assert!((first.average_proxied_concurrency - 0.5).abs() < 1e-9);
        assert_eq!((first.request_count, first.proxied_request_count), (2, 1));
        assert_eq!(first.output_tokens, 42);
        assert_eq!(first.prompt_tokens, 700);
        assert_eq!(first.in_flight, 1);

        // The long request carries over into the next window, which counts no new request.
        recorder.request_finished(long, at(1500));
        let second = recorder.close_window(at(2000));
        assert!(
            (second.average_concurrency - 0.5).abs() < 1e-9,
            "{second:?}"
        );
        assert_eq!(second.request_count, 0);
        assert_eq!((second.output_tokens, second.prompt_tokens), (0, 0));
        assert_eq!(
            recorder.totals(),
            Totals {
                requests: 2,
                output_tokens: 42,
                prompt_tokens: 700
            }
        );
    }
}
