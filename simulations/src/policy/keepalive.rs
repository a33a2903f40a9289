//! Fixed keep-alive, as cloud functions do it: a replica per concurrency slot that was
//! needed, started at once when a request finds none free, kept for a fixed time after
//! it was last needed, then removed (down to zero).

use std::collections::VecDeque;

use super::{Observation, Policy};

/// The largest value recorded over a trailing time window.
#[derive(Debug, Clone, Default)]
pub(crate) struct TrailingMax {
    /// (time, value), values strictly decreasing from front to back.
    entries: VecDeque<(f64, u32)>,
}

impl TrailingMax {
    pub(crate) fn record(&mut self, now: f64, value: u32) {
        while self.entries.back().is_some_and(|&(_, v)| v <= value) {
            self.entries.pop_back();
        }
        self.entries.push_back((now, value));
    }

    /// The largest value recorded within `window` seconds before `now`.
    pub(crate) fn max(&mut self, now: f64, window: f64) -> u32 {
        while self.entries.front().is_some_and(|&(t, _)| now - t > window) {
            self.entries.pop_front();
        }
        self.entries.front().map_or(0, |&(_, v)| v)
    }

    pub(crate) fn is_zero(&self) -> bool {
        self.entries.iter().all(|&(_, v)| v == 0)
    }
}

/// A fixed keep-alive of `keep_alive_s` seconds per replica.
#[derive(Debug, Clone)]
pub struct KeepAlive {
    keep_alive_s: f64,
    needed: TrailingMax,
}

impl KeepAlive {
    pub fn new(keep_alive_s: f64) -> Self {
        Self {
            keep_alive_s,
            needed: TrailingMax::default(),
        }
    }
}

impl Policy for KeepAlive {
    fn tick(&mut self, o: &Observation<'_>) -> u32 {
        let peak = o.peak_demand.div_ceil(o.concurrency.max(1));
        self.needed.record(o.now, peak.max(o.needed_now()));
        self.needed.max(o.now, self.keep_alive_s)
    }

    fn poke(&mut self, o: &Observation<'_>) -> u32 {
        let needed = o.needed_now();
        self.needed.record(o.now, needed);
        o.current.max(needed)
    }

    fn quiet_until(&self, _now: f64) -> Option<f64> {
        self.needed.is_zero().then_some(f64::INFINITY)
    }
}
