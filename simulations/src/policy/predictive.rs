//! Serval's predictive policy: the decider with Serval's settings, plus a predictor of
//! periodic arrivals. It remembers the last gaps of at least 30 s between arrivals; when the
//! last four agree (within 10% + 2 s), the next arrival is expected one median gap after
//! the latest, so one replica is started a cold start (plus a lead) ahead of it and kept
//! until a tolerance after it. While such a pattern holds, an idle replica is released 30 s
//! after the last arrival instead of waiting out the stable window and grace period.

use std::collections::VecDeque;

use super::decider::DeciderPolicy;
use super::{Observation, Policy, PolicyContext};

/// Gaps shorter than this are within a burst.
const MIN_GAP_S: f64 = 30.0;
const GAPS_KEPT: usize = 8;
const GAPS_AGREEING: usize = 4;

#[derive(Debug, Clone)]
pub struct Predictive {
    inner: DeciderPolicy,
    cold_start_s: f64,
    gaps: VecDeque<f64>,
    seen: Option<f64>,
}

impl Predictive {
    pub fn new(context: &PolicyContext) -> Self {
        Self {
            inner: DeciderPolicy::serval(context),
            cold_start_s: context.config.cold_start_s,
            gaps: VecDeque::new(),
            seen: None,
        }
    }

    fn observe_arrival(&mut self, last_arrival: Option<f64>) {
        let Some(arrival) = last_arrival else {
            return;
        };
        if let Some(previous) = self.seen {
            let gap = arrival - previous;
            if gap >= MIN_GAP_S {
                self.gaps.push_back(gap);
                if self.gaps.len() > GAPS_KEPT {
                    self.gaps.pop_front();
                }
            }
        }
        self.seen = Some(arrival);
    }

    /// The expected gap, when the recent long gaps agree.
    fn period(&self) -> Option<f64> {
        if self.gaps.len() < GAPS_AGREEING {
            return None;
        }
        let recent: Vec<f64> = self
            .gaps
            .iter()
            .rev()
            .take(GAPS_AGREEING)
            .copied()
            .collect();
        let lo = recent.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = recent.iter().copied().fold(0.0, f64::max);
        let mut sorted = recent.clone();
        sorted.sort_by(f64::total_cmp);
        let median = (sorted[1] + sorted[2]) / 2.0;
        (hi - lo <= 0.1 * median + 2.0).then_some(median)
    }

    /// The window to hold one warm replica in: (from, until).
    fn warm_window(&self) -> Option<(f64, f64)> {
        let period = self.period()?;
        let next = self.seen? + period;
        let lead = 5.0 + 0.02 * period;
        Some((next - self.cold_start_s - lead, next + 0.1 * period + 5.0))
    }

    fn shape(&self, now: f64, busy: bool, desired: u32) -> u32 {
        let Some((from, until)) = self.warm_window() else {
            return desired;
        };
        if now >= from && now <= until {
            return desired.max(1);
        }
        let idle_for = self.seen.map_or(f64::INFINITY, |a| now - a);
        if !busy && now < from && idle_for >= MIN_GAP_S {
            return 0;
        }
        desired
    }
}

impl Policy for Predictive {
    fn tick(&mut self, o: &Observation<'_>) -> u32 {
        self.observe_arrival(o.last_arrival);
        let desired = self.inner.tick(o);
        self.shape(o.now, o.in_flight + o.queued > 0, desired)
    }

    fn poke(&mut self, o: &Observation<'_>) -> u32 {
        self.observe_arrival(o.last_arrival);
        let desired = self.inner.poke(o);
        self.shape(o.now, true, desired)
    }

    fn quiet_until(&self, now: f64) -> Option<f64> {
        let inner = self.inner.quiet_until(now)?;
        match self.warm_window() {
            Some((from, _)) if now < from => Some(inner.min(from)),
            Some((_, until)) if now <= until => None,
            _ => Some(inner),
        }
    }
}
