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
    /// Serval's class: what it learned and predicted.
    class: ClassGauges,
}

type FloatFamily = Family<RevisionLabel, Gauge<f64, AtomicU64>>;

#[derive(Debug, Default)]
struct ClassGauges {
    target_utilisation: FloatFamily,
    keep_alive: FloatFamily,
    prewarm: FloatFamily,
    predicted_cold_share: FloatFamily,
    held_share: FloatFamily,
    cold_start: FloatFamily,
    service_time: FloatFamily,
}

impl ClassGauges {
    fn register(&self, registry: &mut Registry) {
        let gauges: [(&str, &str, &FloatFamily); 7] = [
            ("class_target_utilization", "Serval's class: the target utilisation it learned", &self.target_utilisation),
            ("class_keep_alive_seconds", "Serval's class: seconds an idle revision keeps its last replica", &self.keep_alive),
            ("class_prewarm_seconds", "Serval's class: seconds into an idle period a replica is started again; absent without a pre-warm", &self.prewarm),
            ("class_predicted_cold_share", "Serval's class: share of requests the zero plan predicts cold, over the idle gaps seen", &self.predicted_cold_share),
            ("class_held_share", "Serval's class: share of requests the activators reported waiting for a replica (decaying)", &self.held_share),
            ("class_cold_start_seconds", "Serval's class: measured seconds from asking for a replica at zero to one being ready", &self.cold_start),
            ("class_service_time_seconds", "Serval's class: mean seconds a request spends in service (load over rate without a backlog); sizes the replicas held requests ask for", &self.service_time),
        ];
        for (name, help, family) in gauges {
            registry.register(name, help, family.clone());
        }
    }

    fn record(&self, label: &RevisionLabel, prediction: &crate::Prediction) {
        match prediction.target.utilisation {
            Some(utilisation) => {
                self.target_utilisation
                    .get_or_create(label)
                    .set(utilisation);
            }
            None => {
                self.target_utilisation.remove(label);
            }
        }
        self.keep_alive
            .get_or_create(label)
            .set(prediction.plan.keep_alive_s);
        match prediction.plan.prewarm_at_s {
            Some(at) => {
                self.prewarm.get_or_create(label).set(at);
            }
            None => {
                self.prewarm.remove(label);
            }
        }
        if let Some(share) = prediction.plan.predicted_cold_share {
            self.predicted_cold_share.get_or_create(label).set(share);
        }
        if let Some(share) = prediction.target.held_share {
            self.held_share.get_or_create(label).set(share);
        }
        self.cold_start
            .get_or_create(label)
            .set(prediction.cold_start_s);
        if let Some(seconds) = prediction.service_time_s {
            self.service_time.get_or_create(label).set(seconds);
        }
    }

    fn forget(&self, label: &RevisionLabel) {
        for family in [
            &self.target_utilisation,
            &self.keep_alive,
            &self.prewarm,
            &self.predicted_cold_share,
            &self.held_share,
            &self.cold_start,
            &self.service_time,
        ] {
            family.remove(label);
        }
    }
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
            class: ClassGauges::default(),
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
        t.class.register(&mut registry);
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
        if let Some(prediction) = &decision.prediction {
            self.class.record(&label, prediction);
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
        self.class.forget(&label);
    }

    pub(crate) fn encode(&self) -> String {
        let mut text = String::new();
        // Encoding into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}
