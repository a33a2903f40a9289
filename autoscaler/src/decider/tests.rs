//! Table-driven decider tests on explicit instants (`base + n seconds`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serval_api::annotations::AutoscalingAnnotations;
use serval_api::component::ComponentExtensionSpec;

use super::*;
use crate::config::AutoscalerConfig;
use crate::metrics::MetricWindows;
use crate::spec::{MetricTarget, ScalingSpec};

mod rules;
mod scaling;
mod zero;

/// Defaults, minReplicas 0 and one metric: concurrency with a target of exactly 10 per pod.
fn base_spec() -> ScalingSpec {
    let component = ComponentExtensionSpec {
        min_replicas: Some(0),
        ..ComponentExtensionSpec::default()
    };
    let mut spec = ScalingSpec::resolve(
        &component,
        &AutoscalingAnnotations::default(),
        &AutoscalerConfig::default(),
    );
    let concurrency = target(ScaleMetric::Concurrency, 10.0);
    spec.metrics = vec![concurrency];
    spec.burst_metric = concurrency;
    spec
}

fn target(metric: ScaleMetric, per_pod: f64) -> MetricTarget {
    MetricTarget {
        metric,
        target: per_pod,
        total: per_pod,
    }
}

/// A revision's metric store and decider on a clock counted in seconds from `base`. Fed
/// values wait until a decision at or after their second, the way scrapes arrive.
struct Revision {
    base: Instant,
    windows: MetricWindows,
    decider: Decider,
    pending: BTreeMap<u64, Vec<(ScaleMetric, f64)>>,
}

impl Revision {
    fn new(spec: ScalingSpec) -> Self {
        let base = Instant::now();
        Self {
            base,
            windows: MetricWindows::new(base, &spec),
            decider: Decider::new(spec, base),
            pending: BTreeMap::new(),
        }
    }

    /// A revision already running at `current_scale` when the autoscaler (re)starts.
    fn resumed(spec: ScalingSpec, current_scale: u32) -> Self {
        let base = Instant::now();
        Self {
            base,
            windows: MetricWindows::new(base, &spec),
            decider: Decider::resume(spec, base, current_scale),
            pending: BTreeMap::new(),
        }
    }

    fn at(&self, second: u64) -> Instant {
        self.base + Duration::from_secs(second)
    }

    /// Schedules `value` of `metric` for every second of `seconds`.
    fn feed(&mut self, seconds: std::ops::Range<u64>, metric: ScaleMetric, value: f64) {
        for s in seconds {
            self.pending.entry(s).or_default().push((metric, value));
        }
    }

    /// Records what was fed up to `second`, then decides there.
    fn decide(&mut self, second: u64, ready: u32, queued: u32) -> Decision {
        let later = self.pending.split_off(&(second + 1));
        for (s, values) in std::mem::replace(&mut self.pending, later) {
            let at = self.at(s);
            for (metric, value) in values {
                self.windows.record_value(at, metric, value);
            }
        }
        let now = self.at(second);
        self.decider.decide(now, &self.windows, ready, queued)
    }
}
