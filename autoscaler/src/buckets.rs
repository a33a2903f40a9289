//! One window of one metric in 1 s buckets, averaged the way Knative's
//! `TimedFloat64Buckets` and `WeightedFloat64Buckets` average.

use std::collections::VecDeque;
use std::time::Duration;

/// Values recorded in one window, one bucket per second. Memory is bounded by the window:
/// buckets older than it are dropped as new ones arrive.
#[derive(Debug, Clone)]
pub(crate) struct WindowBuckets {
    /// Buckets in the window.
    len: u64,
    /// Contiguous buckets ending at `last_write`, oldest first; gaps hold zeros.
    buckets: VecDeque<f64>,
    /// The latest second written.
    last_write: Option<u64>,
    /// The first second written since the window was last empty. A window that started
    /// recently is averaged over the seconds it has seen, not the whole window, so the
    /// first seconds of traffic are not diluted by seconds nobody measured.
    first_write: u64,
}

/// Each bucket is one second.
pub(crate) fn bucket_count(window: Duration) -> u64 {
    window.as_secs_f64().ceil().max(1.0) as u64
}

impl WindowBuckets {
    pub(crate) fn new(window: Duration) -> Self {
        Self {
            len: bucket_count(window),
            buckets: VecDeque::new(),
            last_write: None,
            first_write: 0,
        }
    }

    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    /// Changes the window length, keeping the buckets that still fit.
    pub(crate) fn resize(&mut self, window: Duration) {
        self.len = bucket_count(window);
        while self.buckets.len() as u64 > self.len {
            self.buckets.pop_front();
        }
    }

    /// Adds `value` to the bucket of `second`. Values from the same second add up (the
    /// scraper's and each activator's reports are separate parts of one total).
    pub(crate) fn record(&mut self, second: u64, value: f64) {
        let Some(last) = self.last_write else {
            self.restart_at(second, value);
            return;
        };
        if second >= last {
            let gap = second - last;
            if gap >= self.len {
                // Nothing for a whole window: what came before no longer counts.
                self.restart_at(second, value);
                return;
            }
            for _ in 0..gap {
                self.buckets.push_back(0.0);
            }
            if let Some(newest) = self.buckets.back_mut() {
                *newest += value;
            }
            self.last_write = Some(second);
            while self.buckets.len() as u64 > self.len {
                self.buckets.pop_front();
            }
            return;
        }
        let age = last - second;
        if age >= self.len {
            return; // older than the window: ignored, as Knative does
        }
        self.first_write = self.first_write.min(second);
        while (self.buckets.len() as u64) <= age {
            self.buckets.push_front(0.0);
        }
        let index = self.buckets.len() - 1 - age as usize;
        self.buckets[index] += value;
    }

    fn restart_at(&mut self, second: u64, value: f64) {
        self.buckets.clear();
        self.buckets.push_back(value);
        self.first_write = second;
        self.last_write = Some(second);
    }

    /// No write within the window before `now`.
    pub(crate) fn is_empty(&self, now: u64) -> bool {
        self.last_write
            .is_none_or(|last| now.saturating_sub(last) > self.len)
    }

    /// What was recorded for `second` (zero when nothing was, or it fell out).
    pub(crate) fn value_at(&self, second: u64) -> f64 {
        self.last_write.map_or(0.0, |last| self.at(last, second))
    }

    /// The bucket of `second`, zero when it was never written or fell out.
    fn at(&self, last: u64, second: u64) -> f64 {
        let Some(age) = last.checked_sub(second) else {
            return 0.0;
        };
        let len = self.buckets.len() as u64;
        if age >= len {
            return 0.0;
        }
        self.buckets[(len - 1 - age) as usize]
    }

    /// Plain average per second over the window ending at `now`, counting only the seconds
    /// since the first write, and treating seconds after the last write as missing rather
    /// than zero. Rounded down to 6 digits so float noise cannot push `ceil` up a pod.
    pub(crate) fn linear_average(&self, now: u64) -> f64 {
        let Some(last) = self.last_write else {
            return 0.0;
        };
        let silent = now.saturating_sub(last);
        if silent >= self.len {
            return 0.0;
        }
        let window_start = (now.max(last) + 1).saturating_sub(self.len);
        let start = window_start.max(self.first_write);
        if start > last {
            return 0.0;
        }
        let sum: f64 = (start..=last).map(|s| self.at(last, s)).sum();
        let seconds = (last - start + 1) as f64;
        round_down_6(sum / seconds)
    }

    /// Exponentially weighted average with decay `coefficient` per second, newest first;
    /// seconds after the last write count as zeros.
    pub(crate) fn weighted_average(&self, now: u64, coefficient: f64) -> f64 {
        let Some(last) = self.last_write else {
            return 0.0;
        };
        if self.is_empty(now) {
            return 0.0;
        }
        let silent = now.saturating_sub(last);
        let mut weight = coefficient * (1.0 - coefficient).powf(silent as f64);
        let mut total = 0.0;
        for age in 0..self.len.saturating_sub(silent) {
            let Some(second) = last.checked_sub(age) else {
                break;
            };
            total += self.at(last, second) * weight;
            weight *= 1.0 - coefficient;
        }
        total
    }
}

/// The decay per bucket for a window of `buckets`: fast enough that the window's own
/// buckets carry 99.99% of the weight, and never slower than 0.2 per second, so that long
/// windows still favour recent seconds instead of drifting back to a plain average. These
/// are Knative's constants; keeping them keeps its behaviour for the same annotation.
pub(crate) fn smoothing_coefficient(buckets: u64) -> f64 {
    const WEIGHT_COVERED: f64 = 0.9999;
    const MIN_COEFFICIENT: f64 = 0.2;
    let from_precision = 1.0 - (1.0 - WEIGHT_COVERED).powf(1.0 / buckets.max(1) as f64);
    from_precision.max(MIN_COEFFICIENT)
}

fn round_down_6(value: f64) -> f64 {
    (value * 1e6).floor() / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(seconds: u64) -> WindowBuckets {
        WindowBuckets::new(Duration::from_secs(seconds))
    }

    #[test]
    fn averages_only_the_seconds_seen_since_the_first_write() {
        let mut w = window(60);
        w.record(100, 10.0);
        w.record(101, 20.0);
        assert_eq!(w.linear_average(101), 15.0);
        // Silence after the last write shrinks the window instead of adding zeros.
        assert_eq!(w.linear_average(105), 15.0);
        assert!(!w.is_empty(160));
        assert_eq!(w.linear_average(161), 0.0);
        assert!(w.is_empty(162));
    }

    #[test]
    fn gaps_between_writes_count_as_zero_and_old_buckets_drop() {
        let mut w = window(4);
        w.record(0, 8.0);
        w.record(2, 4.0); // second 1 is a zero
        assert_eq!(w.linear_average(2), 4.0);
        for s in 3..10 {
            w.record(s, 1.0);
        }
        assert_eq!(w.linear_average(9), 1.0);
        assert!(w.buckets.len() <= 4);
    }

    #[test]
    fn late_values_land_in_their_own_second() {
        let mut w = window(10);
        w.record(5, 1.0);
        w.record(6, 1.0);
        w.record(5, 2.0);
        assert_eq!(w.linear_average(6), 2.0);
        w.record(100, 1.0);
        w.record(50, 9.0); // a window too old: ignored
        assert_eq!(w.linear_average(100), 1.0);
    }

    #[test]
    fn weighted_average_favours_recent_seconds() {
        let coefficient = 0.6;
        let mut rising = window(4);
        let mut falling = window(4);
        for (s, (up, down)) in [(5.0, 10.0), (5.0, 10.0), (10.0, 5.0), (10.0, 5.0)]
            .into_iter()
            .enumerate()
        {
            rising.record(s as u64, up);
            falling.record(s as u64, down);
        }
        let recent_high = rising.weighted_average(3, coefficient);
        let recent_low = falling.weighted_average(3, coefficient);
        assert!((recent_low - 5.544).abs() < 1e-9, "{recent_low}");
        assert!((recent_high - 9.072).abs() < 1e-9, "{recent_high}");
    }

    #[test]
    fn smoothing_coefficient_has_a_floor() {
        assert_eq!(smoothing_coefficient(60), 0.2);
        let six = smoothing_coefficient(6);
        assert!((six - (1.0 - 0.0001f64.powf(1.0 / 6.0))).abs() < 1e-12);
    }
}
