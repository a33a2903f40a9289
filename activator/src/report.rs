//! What the activator tells the autoscaler: per revision and per window, the time-weighted
//! average number of requests it held or proxied (a request counts from arrival, queueing
//! included, until its response has been sent, as the queue-proxy counts), the requests
//! that arrived, and how many it holds now. Also forwards pokes as they come.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serval_api::Stat;
use serval_proxy::window::{Started, WindowSummary};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::autoscaler::AutoscalerClient;
use crate::throttler::{RevisionThrottle, Throttler};

/// Counts one request in its revision's window until dropped.
#[derive(Debug)]
pub(crate) struct InFlight {
    revision: Arc<RevisionThrottle>,
    started: Started,
}

impl InFlight {
    pub(crate) fn start(revision: Arc<RevisionThrottle>) -> Self {
        let started = revision.stats.start(Instant::now());
        Self { revision, started }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.revision.stats.finish(self.started, Instant::now());
    }
}

/// The `Stat` for one window; `None` when the revision saw nothing and holds nothing.
fn stat(name: &str, summary: WindowSummary, queued: usize, held: u64) -> Option<Stat> {
    let idle = summary.requests == 0 && summary.in_flight == 0 && queued == 0 && held == 0;
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
        held_request_count: held,
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
                    let summary = revision.stats.close(now);
                    let queued = revision.queued();
                    let stat = stat(&name, summary, queued, revision.take_held())?;
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
    fn a_window_becomes_a_stat_unless_the_revision_was_idle() {
        let busy = WindowSummary {
            average_concurrency: 0.5,
            requests: 0,
            in_flight: 0,
            length: Duration::from_secs(1),
        };
        let reported = stat("activator", busy, 3, 2).unwrap();
        assert_eq!(reported.held_request_count, 2);
        assert_eq!((reported.window_ms, reported.request_count), (1000, 0));
        assert_eq!(reported.average_proxied_concurrency, 0.5);
        let idle = WindowSummary {
            average_concurrency: 0.0,
            ..busy
        };
        assert!(stat("a", idle, 0, 0).is_none());
        assert!(stat("a", idle, 1, 0).is_some(), "a held request is news");
        assert!(stat("a", idle, 0, 1).is_some(), "so is one that waited");
    }
}
