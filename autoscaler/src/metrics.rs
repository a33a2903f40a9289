//! The windowed metric store of one revision: every metric's revision-wide totals in 1 s
//! buckets, averaged over the stable and the panic window.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serval_api::component::ScaleMetric;

use crate::buckets::{bucket_count, smoothing_coefficient, WindowBuckets};
use crate::spec::ScalingSpec;

/// How a window's buckets are averaged (Knative's
/// `autoscaling.knative.dev/metric-aggregation-algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Aggregation {
    /// Every second of the window weighs the same.
    #[default]
    Linear,
    /// Recent seconds weigh more; the decay follows from the window length.
    WeightedExponential,
}

impl Aggregation {
    /// Parses Knative's spellings: `linear`, `weighted-exponential`, `weightedExponential`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "linear" => Some(Self::Linear),
            "weighted-exponential" | "weightedExponential" => Some(Self::WeightedExponential),
            _ => None,
        }
    }
}

/// Revision-wide totals measured at one instant, one optional value per metric. A metric
/// nobody measured is absent, which is not the same as zero.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetricSample {
    values: HashMap<ScaleMetric, f64>,
    /// Requests that found no free replica and waited (activator reports); not a metric
    /// to scale on, but what Serval's class measures its budget against.
    held_requests: Option<f64>,
}

impl MetricSample {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `metric` to `value`; a value that is not a finite number is dropped.
    pub fn set(&mut self, metric: ScaleMetric, value: f64) {
        if value.is_finite() {
            self.values.insert(metric, value);
        }
    }

    pub fn get(&self, metric: ScaleMetric) -> Option<f64> {
        self.values.get(&metric).copied()
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty() && self.held_requests.is_none()
    }

    pub fn set_held_requests(&mut self, count: f64) {
        if count.is_finite() {
            self.held_requests = Some(count.max(0.0));
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = (ScaleMetric, f64)> + '_ {
        self.values.iter().map(|(m, v)| (*m, *v))
    }
}

/// A metric's averages at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WindowAverages {
    pub stable: f64,
    pub panic: f64,
}

/// The windows of one metric; each keeps its own first write, as Knative's do.
#[derive(Debug, Clone)]
struct MetricSeries {
    stable: WindowBuckets,
    panic: WindowBuckets,
}

/// Every metric of one revision over its stable and panic windows. Bounded memory: each
/// metric holds at most one stable window and one panic window of 1 s buckets.
#[derive(Debug, Clone)]
pub struct MetricWindows {
    /// Buckets are whole seconds counted from here.
    origin: Instant,
    stable_window: Duration,
    panic_window: Duration,
    aggregation: Aggregation,
    series: HashMap<ScaleMetric, MetricSeries>,
    /// Held requests recorded in the latest second that had any: (second, count).
    held: Option<(u64, f64)>,
}

impl MetricWindows {
    /// An empty store whose 1 s buckets count from `origin`; instants before it are ignored.
    pub fn new(origin: Instant, spec: &ScalingSpec) -> Self {
        Self {
            origin,
            stable_window: spec.stable_window,
            panic_window: spec.panic_window,
            aggregation: spec.aggregation,
            series: HashMap::new(),
            held: None,
        }
    }

    /// Follows a changed spec: windows are resized keeping the data that still fits.
    pub fn reconfigure(&mut self, spec: &ScalingSpec) {
        self.stable_window = spec.stable_window;
        self.panic_window = spec.panic_window;
        self.aggregation = spec.aggregation;
        for series in self.series.values_mut() {
            series.stable.resize(spec.stable_window);
            series.panic.resize(spec.panic_window);
        }
    }

    fn second(&self, at: Instant) -> Option<u64> {
        at.checked_duration_since(self.origin).map(|d| d.as_secs())
    }

    /// The bucket `at` falls in: a caller that ticks more than once a second records each
    /// source once per bucket, or the bucket would count it once per tick.
    pub fn bucket_of(&self, at: Instant) -> Option<u64> {
        self.second(at)
    }

    /// Adds one source's totals measured at `at`. Sources reporting in the same second add
    /// up, so record the scraper's sample and each activator's once per bucket.
    pub fn record(&mut self, at: Instant, sample: &MetricSample) {
        for (metric, value) in sample.iter() {
            self.record_value(at, metric, value);
        }
        if let (Some(count), Some(second)) = (sample.held_requests, self.second(at)) {
            self.held = match self.held {
                Some((s, total)) if s == second => Some((s, total + count)),
                Some((s, total)) if s > second => Some((s, total)),
                _ => Some((second, count)),
            };
        }
    }

    /// Requests reported held in the second of `now`.
    pub fn held_this_second(&self, now: Instant) -> f64 {
        match (self.held, self.second(now)) {
            (Some((s, count)), Some(second)) if s == second => count,
            _ => 0.0,
        }
    }

    /// Adds one value of one metric measured at `at`.
    pub fn record_value(&mut self, at: Instant, metric: ScaleMetric, value: f64) {
        let Some(second) = self.second(at) else {
            return;
        };
        if !value.is_finite() {
            return;
        }
        let (stable_window, panic_window) = (self.stable_window, self.panic_window);
        let series = self.series.entry(metric).or_insert_with(|| MetricSeries {
            stable: WindowBuckets::new(stable_window),
            panic: WindowBuckets::new(panic_window),
        });
        series.stable.record(second, value);
        series.panic.record(second, value);
    }

    /// The stable and panic averages of `metric` at `now`, or `None` when nothing was
    /// recorded for it within the stable window: no data is not zero traffic.
    pub fn averages(&self, now: Instant, metric: ScaleMetric) -> Option<WindowAverages> {
        let now = self.second(now)?;
        let series = self.series.get(&metric)?;
        if series.stable.is_empty(now) {
            return None;
        }
        Some(match self.aggregation {
            Aggregation::Linear => WindowAverages {
                stable: series.stable.linear_average(now),
                panic: series.panic.linear_average(now),
            },
            Aggregation::WeightedExponential => WindowAverages {
                stable: series
                    .stable
                    .weighted_average(now, smoothing_coefficient(series.stable.len())),
                panic: series
                    .panic
                    .weighted_average(now, smoothing_coefficient(series.panic.len())),
            },
        })
    }

    /// The total recorded for `metric` in the second of `now` (the sources reported at this
    /// tick), or `None` when nothing was ever recorded for it.
    pub fn this_second(&self, now: Instant, metric: ScaleMetric) -> Option<f64> {
        let second = self.second(now)?;
        Some(self.series.get(&metric)?.panic.value_at(second))
    }

    /// Buckets in the stable window.
    pub fn stable_buckets(&self) -> u64 {
        bucket_count(self.stable_window)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AutoscalerConfig;
    use serval_api::annotations::AutoscalingAnnotations;
    use serval_api::component::ComponentExtensionSpec;

    fn spec(aggregation: Aggregation) -> ScalingSpec {
        ScalingSpec {
            aggregation,
            ..ScalingSpec::resolve(
                &ComponentExtensionSpec::default(),
                &AutoscalingAnnotations::default(),
                &AutoscalerConfig::default(),
            )
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn stable_and_panic_windows_average_separately() {
        let base = Instant::now();
        let mut windows = MetricWindows::new(base, &spec(Aggregation::Linear));
        for s in 0..54 {
            windows.record_value(base + secs(s), ScaleMetric::Concurrency, 1.0);
        }
        for s in 54..60 {
            windows.record_value(base + secs(s), ScaleMetric::Concurrency, 11.0);
        }
        let averages = windows
            .averages(base + secs(59), ScaleMetric::Concurrency)
            .expect("data");
        assert_eq!(averages.panic, 11.0);
        assert_eq!(averages.stable, 2.0);
        assert_eq!(windows.stable_buckets(), 60);
    }

    #[test]
    fn no_data_is_none_and_zero_is_zero() {
        let base = Instant::now();
        let mut windows = MetricWindows::new(base, &spec(Aggregation::Linear));
        assert_eq!(windows.averages(base, ScaleMetric::Concurrency), None);
        windows.record_value(base, ScaleMetric::Concurrency, 0.0);
        let zero = WindowAverages {
            stable: 0.0,
            panic: 0.0,
        };
        assert_eq!(windows.averages(base, ScaleMetric::Concurrency), Some(zero));
        assert_eq!(windows.averages(base, ScaleMetric::Tokens), None);
        // A whole window later with nothing new, the data has aged out.
        assert_eq!(
            windows.averages(base + secs(61), ScaleMetric::Concurrency),
            None
        );
    }

    #[test]
    fn sources_in_the_same_second_add_up() {
        let base = Instant::now();
        let mut windows = MetricWindows::new(base, &spec(Aggregation::Linear));
        let mut scraped = MetricSample::new();
        scraped.set(ScaleMetric::Concurrency, 3.0);
        scraped.set(ScaleMetric::Gpu, f64::NAN);
        let mut activator = MetricSample::new();
        activator.set(ScaleMetric::Concurrency, 2.0);
        windows.record(base, &scraped);
        windows.record(base + Duration::from_millis(300), &activator);
        let averages = windows.averages(base, ScaleMetric::Concurrency);
        assert_eq!(averages.map(|a| a.stable), Some(5.0));
        assert_eq!(windows.averages(base, ScaleMetric::Gpu), None);
    }

    #[test]
    fn weighted_aggregation_reacts_faster_than_linear() {
        let base = Instant::now();
        let mut linear = MetricWindows::new(base, &spec(Aggregation::Linear));
        let mut weighted = MetricWindows::new(base, &spec(Aggregation::WeightedExponential));
        for s in 0..60 {
            let value = if s < 50 { 1.0 } else { 10.0 };
            linear.record_value(base + secs(s), ScaleMetric::Rps, value);
            weighted.record_value(base + secs(s), ScaleMetric::Rps, value);
        }
        let now = base + secs(59);
        let linear = linear.averages(now, ScaleMetric::Rps).expect("data");
        let weighted = weighted.averages(now, ScaleMetric::Rps).expect("data");
        assert!(
            weighted.stable > linear.stable + 5.0,
            "{weighted:?} {linear:?}"
        );
    }

    #[test]
    fn parses_knative_aggregation_names() {
        assert_eq!(Aggregation::parse("linear"), Some(Aggregation::Linear));
        for name in ["weighted-exponential", "weightedExponential"] {
            assert_eq!(
                Aggregation::parse(name),
                Some(Aggregation::WeightedExponential)
            );
        }
        assert_eq!(Aggregation::parse("median"), None);
    }
}
