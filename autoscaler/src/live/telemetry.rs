//! The autoscaler's Prometheus metrics: per revision, what it wanted and why.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::Decision;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RevisionLabel {
    revision: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WinnerLabel {
    revision: String,
    metric: String,
}

#[derive(Debug)]
pub(crate) struct Telemetry {
    registry: Registry,
    desired: Family<RevisionLabel, Gauge>,
    ready: Family<RevisionLabel, Gauge>,
    panic: Family<RevisionLabel, Gauge>,
    excess_burst_capacity: Family<RevisionLabel, Gauge>,
    stable_desired: Family<RevisionLabel, Gauge>,
    panic_desired: Family<RevisionLabel, Gauge>,
    winner: Family<WinnerLabel, Gauge<f64, AtomicU64>>,
}

impl Telemetry {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("serval_autoscaler");
        let t = Self {
            registry: Registry::default(),
            desired: Family::default(),
            ready: Family::default(),
            panic: Family::default(),
            excess_burst_capacity: Family::default(),
            stable_desired: Family::default(),
            panic_desired: Family::default(),
            winner: Family::default(),
        };
        registry.register(
            "desired_pods",
            "Replicas the autoscaler wants",
            t.desired.clone(),
        );
        registry.register("ready_pods", "Ready replicas it saw", t.ready.clone());
        registry.register("panic_mode", "1 while in panic mode", t.panic.clone());
        registry.register("excess_burst_capacity", "Spare capacity after the target burst capacity; negative keeps the activator in the path", t.excess_burst_capacity.clone());
        registry.register(
            "stable_desired_pods",
            "Replicas wanted over the stable window",
            t.stable_desired.clone(),
        );
        registry.register(
            "panic_desired_pods",
            "Replicas wanted over the panic window",
            t.panic_desired.clone(),
        );
        registry.register(
            "winning_metric_value",
            "Stable-window value of the metric that decided",
            t.winner.clone(),
        );
        Self { registry, ..t }
    }

    pub(crate) fn record(&self, revision: &str, decision: &Decision, ready: u32) {
        let label = RevisionLabel {
            revision: revision.to_string(),
        };
        self.desired
            .get_or_create(&label)
            .set(i64::from(decision.desired));
        self.ready.get_or_create(&label).set(i64::from(ready));
        self.panic
            .get_or_create(&label)
            .set(i64::from(decision.in_panic));
        self.excess_burst_capacity
            .get_or_create(&label)
            .set(decision.excess_burst_capacity);
        self.stable_desired
            .get_or_create(&label)
            .set(i64::from(decision.stable_desired));
        self.panic_desired
            .get_or_create(&label)
            .set(i64::from(decision.panic_desired));
        if let Some(winner) = decision.winning_metric() {
            let label = WinnerLabel {
                revision: revision.to_string(),
                metric: winner.metric.to_string(),
            };
            self.winner
                .get_or_create(&label)
                .set(winner.observed_stable);
        }
    }

    pub(crate) fn forget(&self, revision: &str) {
        let label = RevisionLabel {
            revision: revision.to_string(),
        };
        for family in [
            &self.desired,
            &self.ready,
            &self.panic,
            &self.excess_burst_capacity,
            &self.stable_desired,
            &self.panic_desired,
        ] {
            family.remove(&label);
        }
    }

    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
