//! What the activator tells the autoscaler: per revision and per window, the time-weighted
//! average number of requests it held or proxied (a request counts from arrival, queueing
//! included, until its response has been sent, as the queue-proxy counts), the requests
//! that arrived, and how many it holds now. Also forwards pokes as they come.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serval_api::Stat;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::autoscaler::AutoscalerClient;
use crate::throttler::{RevisionThrottle, Throttler};

/// Concurrency integrated over time since the window opened.
#[derive(Debug)]
pub(crate) struct ConcurrencyWindow {
    opened: Instant,
    last_change: Instant,
    in_flight: u64,
    area: f64,
    requests: u64,
}

/// One closed window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct WindowSummary {
    pub(crate) average_concurrency: f64,
    pub(crate) requests: u64,
    pub(crate) in_flight: u64,
    pub(crate) length: Duration,
}

impl ConcurrencyWindow {
    pub(crate) fn new(now: Instant) -> Self {
        Self {
            opened: now,
            last_change: now,
            in_flight: 0,
            area: 0.0,
            requests: 0,
        }
    }

    fn advance(&mut self, now: Instant) {
        let dt = now
            .saturating_duration_since(self.last_change)
            .as_secs_f64();
        self.area += self.in_flight as f64 * dt;
        self.last_change = self.last_change.max(now);
    }

    pub(crate) fn started(&mut self, now: Instant) {
        self.advance(now);
        self.in_flight += 1;
        self.requests += 1;
    }

    pub(crate) fn finished(&mut self, now: Instant) {
        self.advance(now);
        self.in_flight = self.in_flight.saturating_sub(1);
    }

    /// Closes the window at `now` and opens the next one.
    pub(crate) fn close(&mut self, now: Instant) -> WindowSummary {
        self.advance(now);
        let length = now.saturating_duration_since(self.opened);
        let seconds = length.as_secs_f64();
        let summary = WindowSummary {
            average_concurrency: if seconds > 0.0 {
                self.area / seconds
            } else {
                0.0
            },
            requests: self.requests,
            in_flight: self.in_flight,
            length,
        };
        self.opened = now;
        self.area = 0.0;
        self.requests = 0;
        summary
    }
}

/// Counts one request in its revision's window until dropped.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<RevisionThrottle>);

impl InFlight {
    pub(crate) fn start(revision: Arc<RevisionThrottle>) -> Self {
        lock(&revision).started(Instant::now());
        Self(revision)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        lock(&self.0).finished(Instant::now());
    }
}

fn lock(revision: &RevisionThrottle) -> std::sync::MutexGuard<'_, ConcurrencyWindow> {
    revision.stats.lock().unwrap_or_else(|e| e.into_inner())
}

/// The `Stat` for one window; `None` when the revision saw nothing and holds nothing.
fn stat(name: &str, summary: WindowSummary, queued: usize) -> Option<Stat> {
    let idle = summary.requests == 0 && summary.in_flight == 0 && queued == 0;
    if idle && summary.average_concurrency == 0.0 {
        return None;
    }
    let timestamp_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Some(Stat {
        pod_name: name.to_string(),
        timestamp_ms,
        window_ms: summary.length.as_millis() as u64,
        average_concurrency: summary.average_concurrency,
        average_proxied_concurrency: summary.average_concurrency,
        request_count: summary.requests,
        proxied_request_count: summary.requests,
        ..Stat::default()
    })
}

/// Reports every `interval` and forwards pokes until dropped.
pub(crate) async fn run<A: AutoscalerClient>(
    throttler: Arc<Throttler>,
    client: Arc<A>,
    name: String,
    interval: Duration,
    mut pokes: mpsc::Receiver<String>,
) {
    let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            Some(revision) = pokes.recv() => {
                let client = client.clone();
                tokio::spawn(async move {
                    if let Err(e) = client.poke(&revision).await {
                        tracing::warn!(%revision, error = %e, "poking the autoscaler failed");
                    }
                });
            }
            _ = ticker.tick() => {
                let now = Instant::now();
                let reports = throttler.all().into_iter().filter_map(|revision| {
                    let summary = lock(&revision).close(now);
                    let queued = revision.queued();
                    let stat = stat(&name, summary, queued)?;
                    let client = client.clone();
                    Some(async move {
                        let queued = u32::try_from(queued).unwrap_or(u32::MAX);
                        if let Err(e) = client.report(revision.name(), stat, queued).await {
                            tracing::debug!(revision = %revision.name(), error = %e, "report not taken");
                        }
                    })
                });
                futures_util::future::join_all(reports.collect::<Vec<_>>()).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn concurrency_is_time_weighted_and_carries_over() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut window = ConcurrencyWindow::new(t0);
        window.started(at(0));
        window.started(at(250));
        window.finished(at(750));
        let first = window.close(at(1000));
        assert!((first.average_concurrency - 1.5).abs() < 1e-9, "{first:?}");
        assert_eq!((first.requests, first.in_flight), (2, 1));
        window.finished(at(1500));
        let second = window.close(at(2000));
        assert!((second.average_concurrency - 0.5).abs() < 1e-9);
        assert_eq!(second.requests, 0);
        let stat = stat("activator", second, 3).unwrap();
        assert_eq!((stat.window_ms, stat.request_count), (1000, 0));
        let idle = window.close(at(3000));
        assert!(stat_is_skipped(idle));
    }

    fn stat_is_skipped(summary: WindowSummary) -> bool {
        stat("a", summary, 0).is_none()
    }
}
