//! The hybrid histogram policy of "Serverless in the Wild" (Shahrad et al., ATC'20): each
//! service keeps a histogram of its idle times (1-minute bins over a 4-hour range). When
//! the histogram is representative, the replica is unloaded after an invocation, loaded
//! again at the pre-warm window (the 5th percentile, less a 10% margin) and kept until the
//! keep-alive window ends (the 99th percentile, plus 10%). Otherwise it falls back to a
//! fixed keep-alive. Deviations: no ARIMA for idle times beyond the range (those services
//! fall back too), and while busy, replicas are kept per concurrency slot like the
//! keep-alive policy, for the keep-alive window.

use super::keepalive::TrailingMax;
use super::{Observation, Policy, KEEP_ALIVE_S};

const BIN_S: f64 = 60.0;
const BINS: usize = 240;
/// Fewer idle times than this are not a pattern yet.
const MIN_SAMPLES: u32 = 5;
/// The coefficient of variation of bin counts below which the histogram says nothing.
const MIN_CV: f64 = 2.0;
const MARGIN: f64 = 0.1;

#[derive(Debug, Clone)]
pub struct Hybrid {
    bins: Vec<u32>,
    samples: u32,
    out_of_range: u32,
    /// When the service last became idle (nothing in flight or held).
    idle_since: Option<f64>,
    needed: TrailingMax,
}

/// Pre-warm and keep-alive windows, seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Windows {
    prewarm: f64,
    keep_alive: f64,
}

impl Default for Hybrid {
    fn default() -> Self {
        Self::new()
    }
}

impl Hybrid {
    pub fn new() -> Self {
        Self {
            bins: vec![0; BINS],
            samples: 0,
            out_of_range: 0,
            idle_since: Some(0.0),
            needed: TrailingMax::default(),
        }
    }

    fn record_idle(&mut self, idle_s: f64) {
        let bin = (idle_s / BIN_S).floor() as usize;
        if bin < BINS {
            self.bins[bin] += 1;
            self.samples += 1;
        } else {
            self.out_of_range += 1;
        }
    }

    /// An arrival after the service went idle ends the idle time and records it.
    fn end_idle(&mut self, last_arrival: Option<f64>) {
        if let (Some(since), Some(arrival)) = (self.idle_since, last_arrival) {
            if arrival > since {
                self.record_idle(arrival - since);
                self.idle_since = None;
            }
        }
    }

    fn windows(&self) -> Windows {
        let fallback = Windows {
            prewarm: 0.0,
            keep_alive: KEEP_ALIVE_S,
        };
        if self.samples < MIN_SAMPLES || self.out_of_range > self.samples {
            return fallback;
        }
        let n = BINS as f64;
        let mean = f64::from(self.samples) / n;
        let var = self
            .bins
            .iter()
            .map(|&c| (f64::from(c) - mean).powi(2))
            .sum::<f64>()
            / n;
        if var.sqrt() / mean < MIN_CV {
            return fallback;
        }
        let percentile = |p: f64| {
            let want = (p / 100.0 * f64::from(self.samples)).ceil().max(1.0) as u32;
            let mut seen = 0;
            self.bins
                .iter()
                .position(|&c| {
                    seen += c;
                    seen >= want
                })
                .unwrap_or(BINS - 1) as f64
        };
        let prewarm = percentile(5.0) * BIN_S * (1.0 - MARGIN);
        let end = (percentile(99.0) + 1.0) * BIN_S * (1.0 + MARGIN);
        Windows {
            prewarm,
            keep_alive: end - prewarm,
        }
    }
}

impl Policy for Hybrid {
    fn tick(&mut self, o: &Observation<'_>) -> u32 {
        let busy = o.in_flight + o.queued > 0;
        let windows = self.windows();
        let peak = o.peak_demand.div_ceil(o.concurrency.max(1));
        self.needed.record(o.now, peak.max(o.needed_now()));
        self.end_idle(o.last_arrival);
        if busy {
            self.idle_since = None;
        } else if self.idle_since.is_none() {
            self.idle_since = Some(o.now);
        }
        let Some(since) = self.idle_since else {
            return self.needed.max(o.now, windows.keep_alive);
        };
        let idle = o.now - since;
        if windows.prewarm > 0.0 {
            u32::from(idle >= windows.prewarm && idle < windows.prewarm + windows.keep_alive)
        } else {
            self.needed.max(o.now, windows.keep_alive)
        }
    }

    fn poke(&mut self, o: &Observation<'_>) -> u32 {
        self.end_idle(o.last_arrival);
        let needed = o.needed_now();
        self.needed.record(o.now, needed);
        o.current.max(needed)
    }

    fn quiet_until(&self, now: f64) -> Option<f64> {
        let since = self.idle_since?;
        let windows = self.windows();
        if !self.needed.is_zero() {
            return None;
        }
        if windows.prewarm > 0.0 && now < since + windows.prewarm {
            return Some(since + windows.prewarm);
        }
        (now >= since + windows.prewarm + windows.keep_alive).then_some(f64::INFINITY)
    }
}
