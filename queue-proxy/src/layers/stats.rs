//! Measures the pod: time-weighted concurrency (total and the part that came through the
//! activator), requests, bytes and output tokens, closed into one `Stat` per window. A
//! request counts as in flight from arrival (queueing included, as Knative counts it) until
//! its response body has been sent.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use futures_util::FutureExt;
use http::{Request, Response};
use serval_api::headers::VIA_ACTIVATOR;
use tower::{Layer, Service};

use crate::body::{observe_request, observe_response, BodyObserver, ProxyBody, RequestBody};
use crate::layers::ResponseFuture;

/// Concurrency integrated over time since the window opened.
#[derive(Debug)]
struct Window {
    opened: Instant,
    last_change: Instant,
    in_flight: u64,
    proxied_in_flight: u64,
    concurrency_seconds: f64,
    proxied_concurrency_seconds: f64,
    requests: u64,
    proxied_requests: u64,
}

impl Window {
    fn advance(&mut self, now: Instant) {
        let dt = now
            .saturating_duration_since(self.last_change)
            .as_secs_f64();
        self.concurrency_seconds += self.in_flight as f64 * dt;
        self.proxied_concurrency_seconds += self.proxied_in_flight as f64 * dt;
        self.last_change = self.last_change.max(now);
    }
}

/// What one closed window measured; the caller adds pod name, timestamps, GPU and queue.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WindowStats {
    pub average_concurrency: f64,
    pub average_proxied_concurrency: f64,
    pub request_count: u64,
    pub proxied_request_count: u64,
    pub proxied_bytes: u64,
    pub output_tokens: u64,
    pub in_flight: u64,
}

/// Shared by the stats layer (which records) and the reporter (which closes windows).
#[derive(Debug)]
pub struct StatsRecorder {
    window: Mutex<Window>,
    bytes: AtomicU64,
    tokens: AtomicU64,
    total_requests: AtomicU64,
    total_tokens: AtomicU64,
}

impl StatsRecorder {
    pub fn new(now: Instant) -> Self {
        Self {
            window: Mutex::new(Window {
                opened: now,
                last_change: now,
                in_flight: 0,
                proxied_in_flight: 0,
                concurrency_seconds: 0.0,
                proxied_concurrency_seconds: 0.0,
                requests: 0,
                proxied_requests: 0,
            }),
            bytes: AtomicU64::new(0),
            tokens: AtomicU64::new(0),
            total_requests: AtomicU64::new(0),
            total_tokens: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        // A poisoned window only means a panic elsewhere mid-update; the numbers stay usable.
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A request arrived.
    pub fn request_started(&self, proxied: bool, now: Instant) {
        let mut w = self.lock();
        w.advance(now);
        w.in_flight += 1;
        w.requests += 1;
        if proxied {
            w.proxied_in_flight += 1;
            w.proxied_requests += 1;
        }
        self.total_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// A request's response has been sent (or abandoned).
    pub fn request_finished(&self, proxied: bool, now: Instant) {
        let mut w = self.lock();
        w.advance(now);
        w.in_flight = w.in_flight.saturating_sub(1);
        if proxied {
            w.proxied_in_flight = w.proxied_in_flight.saturating_sub(1);
        }
    }

    pub fn add_bytes(&self, n: u64) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    pub fn add_output_tokens(&self, n: u64) {
        self.tokens.fetch_add(n, Ordering::Relaxed);
        self.total_tokens.fetch_add(n, Ordering::Relaxed);
    }

    /// Requests in flight right now.
    pub fn in_flight(&self) -> u64 {
        self.lock().in_flight
    }

    /// Requests and output tokens since start, for Prometheus counters.
    pub fn totals(&self) -> (u64, u64) {
        (
            self.total_requests.load(Ordering::Relaxed),
            self.total_tokens.load(Ordering::Relaxed),
        )
    }

    /// Closes the current window at `now` and opens the next one.
    pub fn close_window(&self, now: Instant) -> WindowStats {
        let mut w = self.lock();
        w.advance(now);
        let length = now.saturating_duration_since(w.opened).as_secs_f64();
        let average = |area: f64| if length > 0.0 { area / length } else { 0.0 };
        let stats = WindowStats {
            average_concurrency: average(w.concurrency_seconds),
            average_proxied_concurrency: average(w.proxied_concurrency_seconds),
            request_count: w.requests,
            proxied_request_count: w.proxied_requests,
            proxied_bytes: self.bytes.swap(0, Ordering::Relaxed),
            output_tokens: self.tokens.swap(0, Ordering::Relaxed),
            in_flight: w.in_flight,
        };
        w.opened = now;
        w.concurrency_seconds = 0.0;
        w.proxied_concurrency_seconds = 0.0;
        w.requests = 0;
        w.proxied_requests = 0;
        stats
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
    proxied: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.recorder.request_finished(self.proxied, Instant::now());
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
        self.recorder.request_started(proxied, Instant::now());
        let in_flight = InFlight {
            recorder: self.recorder.clone(),
            proxied,
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
        recorder.request_started(false, at(0));
        recorder.request_started(true, at(250));
        recorder.request_finished(true, at(750));
        recorder.add_output_tokens(42);
        let first = recorder.close_window(at(1000));
        assert!((first.average_concurrency - 1.5).abs() < 1e-9, "{first:?}");
        assert!((first.average_proxied_concurrency - 0.5).abs() < 1e-9);
        assert_eq!((first.request_count, first.proxied_request_count), (2, 1));
        assert_eq!(first.output_tokens, 42);
        assert_eq!(first.in_flight, 1);

        // The long request carries over into the next window, which counts no new request.
        recorder.request_finished(false, at(1500));
        let second = recorder.close_window(at(2000));
        assert!(
            (second.average_concurrency - 0.5).abs() < 1e-9,
            "{second:?}"
        );
        assert_eq!(second.request_count, 0);
        assert_eq!(second.output_tokens, 0);
        assert_eq!(recorder.totals(), (2, 42));
    }
}
