//! Concurrency integrated over time: a request counts from its start until its response
//! has been sent, and each closed window reports the time-weighted average, the requests
//! that started in it and those still in flight. Both proxies record every request here, so
//! the record is split into shards, one picked per thread: a request's start and finish
//! take only their own shard's lock, and only closing a window (once a second) takes all.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// Most shards; threads beyond it share.
const MAX_SHARDS: usize = 64;

#[derive(Debug)]
struct Shard {
    last_change: Instant,
    in_flight: u64,
    area: f64,
    requests: u64,
}

impl Shard {
    fn advance(&mut self, now: Instant) {
        let dt = now
            .saturating_duration_since(self.last_change)
            .as_secs_f64();
        self.area += self.in_flight as f64 * dt;
        self.last_change = self.last_change.max(now);
    }
}

/// A shard on a cache line of its own, so threads recording at once do not share one.
#[derive(Debug)]
#[repr(align(128))]
struct Padded(Mutex<Shard>);

/// One closed window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowSummary {
    pub average_concurrency: f64,
    /// Requests that started in the window.
    pub requests: u64,
    /// Requests in flight when it closed.
    pub in_flight: u64,
    pub length: Duration,
}

/// The open window.
#[derive(Debug)]
pub struct ConcurrencyWindow {
    shards: Box<[Padded]>,
    opened: Mutex<Instant>,
}

/// Where a started request was counted; it finishes there too.
#[derive(Debug, Clone, Copy)]
pub struct Started(usize);

thread_local! {
    static THREAD_INDEX: Cell<Option<usize>> = const { Cell::new(None) };
}

/// A small number per thread, handed out in order, so the first threads get distinct shards.
fn thread_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    THREAD_INDEX.with(|index| match index.get() {
        Some(i) => i,
        None => {
            let i = NEXT.fetch_add(1, Ordering::Relaxed);
            index.set(Some(i));
            i
        }
    })
}

impl ConcurrencyWindow {
    /// Opens the first window at `now`, with a shard per core.
    pub fn new(now: Instant) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::with_shards(now, cores * 2)
    }

    fn with_shards(now: Instant, shards: usize) -> Self {
        let shard = || {
            Padded(Mutex::new(Shard {
                last_change: now,
                in_flight: 0,
                area: 0.0,
                requests: 0,
            }))
        };
        Self {
            shards: (0..shards.clamp(1, MAX_SHARDS)).map(|_| shard()).collect(),
            opened: Mutex::new(now),
        }
    }

    fn shard(&self, index: usize) -> MutexGuard<'_, Shard> {
        // A poisoned shard only means a panic elsewhere mid-update; the numbers stay usable.
        self.shards[index]
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// A request started at `now`.
    pub fn start(&self, now: Instant) -> Started {
        let index = thread_index() % self.shards.len();
        let mut shard = self.shard(index);
        shard.advance(now);
        shard.in_flight += 1;
        shard.requests += 1;
        Started(index)
    }

    /// The request counted by `started` finished at `now`.
    pub fn finish(&self, started: Started, now: Instant) {
        let mut shard = self.shard(started.0 % self.shards.len());
        shard.advance(now);
        shard.in_flight = shard.in_flight.saturating_sub(1);
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> u64 {
        (0..self.shards.len())
            .map(|i| self.shard(i).in_flight)
            .sum()
    }

    /// Closes the window at `now` and opens the next one.
    pub fn close(&self, now: Instant) -> WindowSummary {
        let mut opened = self.opened.lock().unwrap_or_else(|e| e.into_inner());
        let (mut area, mut requests, mut in_flight) = (0.0, 0, 0);
        for i in 0..self.shards.len() {
            let mut shard = self.shard(i);
            shard.advance(now);
            area += shard.area;
            requests += shard.requests;
            in_flight += shard.in_flight;
            shard.area = 0.0;
            shard.requests = 0;
        }
        let length = now.saturating_duration_since(*opened);
        let seconds = length.as_secs_f64();
        *opened = now;
        WindowSummary {
            average_concurrency: if seconds > 0.0 { area / seconds } else { 0.0 },
            requests,
            in_flight,
            length,
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
        let window = ConcurrencyWindow::with_shards(t0, 4);
        let long = window.start(at(0));
        let short = window.start(at(250));
        window.finish(short, at(750));
        let first = window.close(at(1000));
        assert!((first.average_concurrency - 1.5).abs() < 1e-9, "{first:?}");
        assert_eq!((first.requests, first.in_flight), (2, 1));
        window.finish(long, at(1500));
        let second = window.close(at(2000));
        assert!(
            (second.average_concurrency - 0.5).abs() < 1e-9,
            "{second:?}"
        );
        assert_eq!((second.requests, second.in_flight), (0, 0));
        assert_eq!(second.length, Duration::from_secs(1));
    }

    #[test]
    fn requests_on_many_threads_add_up_whichever_shard_they_land_in() {
        let t0 = Instant::now();
        let window = std::sync::Arc::new(ConcurrencyWindow::with_shards(t0, 3));
        // Eight threads each hold one request over [0, 500 ms] and start another that is
        // still open at the close: 8 x 0.5 s + 8 x 0.5 s over one second is 8. The barrier
        // keeps each shard's clock moving forward, as real time does.
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (window, barrier) = (window.clone(), barrier.clone());
                std::thread::spawn(move || {
                    let first = window.start(t0);
                    barrier.wait();
                    window.finish(first, t0 + Duration::from_millis(500));
                    window.start(t0 + Duration::from_millis(500));
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(window.in_flight(), 8);
        let summary = window.close(t0 + Duration::from_secs(1));
        assert!(
            (summary.average_concurrency - 8.0).abs() < 1e-9,
            "{summary:?}"
        );
        assert_eq!((summary.requests, summary.in_flight), (16, 8));
    }
}
