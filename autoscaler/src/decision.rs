//! What the decider says after each tick, with enough detail to log and plot it.

use serval_api::component::ScaleMetric;

/// One metric's view in one decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricDecision {
    pub metric: ScaleMetric,
    /// Target per pod the observed totals were divided by.
    pub target: f64,
    /// Revision-wide average over the stable window.
    pub observed_stable: f64,
    /// Revision-wide average over the panic window.
    pub observed_panic: f64,
    /// Pods the stable window asks for, after the scale-up/down rate limits and
    /// activation scale.
    pub stable_desired: u32,
    /// Pods the panic window asks for, likewise limited.
    pub panic_desired: u32,
}

/// The decider's answer for one revision at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The replica count to actuate.
    pub desired: u32,
    /// The metric that asked for the most pods; `None` when no metric had data.
    pub winner: Option<ScaleMetric>,
    /// The largest stable-window count over the metrics (0 without data).
    pub stable_desired: u32,
    /// The largest panic-window count over the metrics (0 without data).
    pub panic_desired: u32,
    /// Whether the decider is in panic mode (never scaling down).
    pub in_panic: bool,
    /// Spare request capacity after the target burst capacity: negative means the activator
    /// must stay in the request path; -1 when target-burst-capacity is -1 (always) or the
    /// request metric has no data yet; 0 when target-burst-capacity is 0.
    pub excess_burst_capacity: i64,
    /// Every metric that had data, in the configured order.
    pub metrics: Vec<MetricDecision>,
    /// A short explanation for logs.
    pub reason: String,
    /// What Serval's class learned and predicted; `None` for the KPA class.
    pub prediction: Option<crate::Prediction>,
}

impl Decision {
    /// The winning metric's view, if any metric had data.
    pub fn winning_metric(&self) -> Option<&MetricDecision> {
        let winner = self.winner?;
        self.metrics.iter().find(|m| m.metric == winner)
    }

    /// Whether the activator should stay in the request path to absorb bursts.
    pub fn activator_in_path(&self) -> bool {
        self.excess_burst_capacity < 0
    }
}
