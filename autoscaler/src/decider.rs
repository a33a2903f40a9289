//! The per-revision decider: Knative's KPA algorithm (stable and panic windows, rate limits,
//! activation scale, scale-down delay, burst capacity) over several metrics at once, then the
//! KPA reconciler's rules (initial scale, min/max, scale to zero). Pure: time comes in as
//! `now`, so the live loop and the simulator run the same code.

use std::time::{Duration, Instant};

use serval_api::component::ScaleMetric;

use crate::adaptive::Adaptive;
use crate::decision::{Decision, MetricDecision};
use crate::delay::MaxWindow;
use crate::metrics::{MetricWindows, WindowAverages};
use crate::rules::{PodCounts, RevisionRules};
use crate::spec::{MetricTarget, ScalingSpec};

/// Scaling state of one revision between ticks.
#[derive(Debug, Clone)]
pub struct Decider {
    spec: ScalingSpec,
    /// Seconds of the scale-down delay window count from here.
    origin: Instant,
    /// The last time the panic threshold was crossed, while in panic mode.
    panic_since: Option<Instant>,
    /// The most pods wanted since panic mode began; panic mode never scales below it.
    max_panic_pods: u32,
    /// Present when a scale-down delay is configured.
    scale_down_delay: Option<MaxWindow>,
    /// Initial scale, bounds and scale to zero.
    rules: RevisionRules,
    /// The count decided at the previous tick, if any.
    last_desired: Option<u32>,
    /// Serval's class: what it learned of this revision's traffic.
    adaptive: Option<Adaptive>,
    /// The scale-down delay in force (Serval's class learns its own).
    delay: Duration,
    /// Serval's class: the target utilisation it learned at this tick.
    learned_utilisation: Option<f64>,
}

/// The bounds Knative puts on one step: never above `up`, never below `down`.
struct StepLimits {
    up: f64,
    down: f64,
}

impl Decider {
    /// A decider for a revision that was just created: it starts at its initial scale.
    pub fn new(spec: ScalingSpec, now: Instant) -> Self {
        Self {
            rules: RevisionRules::new(&spec),
            scale_down_delay: delay_window(spec.scale_down_delay),
            delay: spec.scale_down_delay,
            learned_utilisation: None,
            adaptive: spec.adaptive.map(|settings| Adaptive::new(settings, &spec)),
            spec,
            origin: now,
            panic_since: None,
            max_panic_pods: 0,
            last_desired: None,
        }
    }

    /// A decider for a revision that was already running at `current_scale` replicas (an
    /// autoscaler restart). The metric history is gone, so, as the KPA does, it starts in
    /// panic mode when it has more than one pod, which keeps at least the current scale
    /// until a stable window of new data has been seen.
    pub fn resume(spec: ScalingSpec, now: Instant, current_scale: u32) -> Self {
        let mut decider = Self::new(spec, now);
        decider.rules = RevisionRules::resumed(now, current_scale);
        decider.last_desired = Some(current_scale);
        if current_scale > 1 {
            decider.panic_since = Some(now);
            decider.max_panic_pods = current_scale;
        }
        decider
    }

    pub fn spec(&self) -> &ScalingSpec {
        &self.spec
    }

    /// Applies a changed spec from the next tick on.
    pub fn update_spec(&mut self, spec: ScalingSpec) {
        match (&mut self.adaptive, spec.adaptive) {
            (Some(known), Some(settings)) => known.update(settings),
            (known, settings) => *known = settings.map(|settings| Adaptive::new(settings, &spec)),
        }
        self.spec = spec;
        self.set_delay(self.wanted_delay());
    }

    /// The configured scale-down delay, or the class's learned one when that is longer.
    fn wanted_delay(&self) -> Duration {
        let learned = self
            .adaptive
            .as_ref()
            .map_or(Duration::ZERO, Adaptive::scale_down_delay);
        self.spec.scale_down_delay.max(learned)
    }

    fn set_delay(&mut self, delay: Duration) {
        if delay.as_secs() != self.delay.as_secs() || (delay.is_zero() != self.delay.is_zero()) {
            self.scale_down_delay = delay_window(delay);
        }
        self.delay = delay;
    }

    /// When Serval's class plans to start a replica for a revision that is idle at zero (a
    /// pre-warm), if it does: until then, deciding changes nothing.
    pub fn planned_start(&self, now: Instant) -> Option<Instant> {
        self.adaptive.as_ref()?.planned_start(now)
    }

    /// Decides the replica count at `now` from the revision's `metrics`, its `ready_pods`
    /// and the requests the activators hold for it (`activator_queued`, which a poke from
    /// an activator makes non-zero before any metric shows it).
    pub fn decide(
        &mut self,
        now: Instant,
        metrics: &MetricWindows,
        ready_pods: u32,
        activator_queued: u32,
    ) -> Decision {
        if let Some(adaptive) = &mut self.adaptive {
            adaptive.observe(now, &self.spec, metrics, ready_pods, activator_queued);
            self.learned_utilisation = adaptive.target().utilisation;
            self.set_delay(self.wanted_delay());
        }
        let views = self.evaluate(now, metrics, ready_pods);
        let mut decision = if views.is_empty() {
            let keep = self.last_desired.unwrap_or(ready_pods);
            Decision {
                desired: keep,
                winner: None,
                stable_desired: 0,
                panic_desired: 0,
                in_panic: self.panic_since.is_some(),
                excess_burst_capacity: 0,
                metrics: Vec::new(),
                reason: format!("no metrics yet: keeping {keep}"),
                prediction: None,
            }
        } else {
            self.scale_on(now, views)
        };
        decision.excess_burst_capacity = self.excess_burst_capacity(now, metrics, ready_pods);
        let current = self.last_desired.unwrap_or(ready_pods);
        let pods = PodCounts {
            ready: ready_pods,
            activator_queued,
            current,
        };
        self.rules.apply(now, &self.spec, &mut decision, pods);
        if let Some(adaptive) = &mut self.adaptive {
            adaptive.shape(now, &self.spec, &mut decision, pods);
        }
        self.last_desired = Some(decision.desired);
        decision
    }

    /// Each configured metric that has data, with what it asks for on its own.
    fn evaluate(
        &self,
        now: Instant,
        metrics: &MetricWindows,
        ready_pods: u32,
    ) -> Vec<(MetricDecision, bool)> {
        // Knative divides by at least one pod, so a revision at zero can still be scaled.
        let ready = f64::from(ready_pods.max(1));
        let limits = StepLimits {
            up: (self.spec.max_scale_up_rate * ready).ceil(),
            down: (ready / self.spec.max_scale_down_rate).floor(),
        };
        self.spec
            .metrics
            .iter()
            .filter_map(|target| {
                let averages = metrics.averages(now, target.metric)?;
                Some(self.metric_view(target, averages, ready, &limits))
            })
            .collect()
    }

    /// One metric's stable and panic counts, and whether it crosses the panic threshold.
    fn metric_view(
        &self,
        target: &MetricTarget,
        averages: WindowAverages,
        ready: f64,
        limits: &StepLimits,
    ) -> (MetricDecision, bool) {
        let per_pod = Self::target_of(target, self.learned_utilisation);
        let stable_wanted = (averages.stable / per_pod).ceil();
        let panic_wanted = (averages.panic / per_pod).ceil();
        let limit = |wanted: f64| wanted.max(limits.down).min(limits.up) as u32;
        let mut stable_desired = limit(stable_wanted);
        let mut panic_desired = limit(panic_wanted);
        // Any traffic at all gets at least activation-scale pods.
        let activation = self.spec.activation_scale;
        if stable_wanted > 0.0 {
            stable_desired = stable_desired.max(activation);
        }
        if panic_wanted > 0.0 {
            panic_desired = panic_desired.max(activation);
        }
        let over_threshold = panic_wanted / ready >= self.spec.panic_threshold;
        let view = MetricDecision {
            metric: target.metric,
            target: per_pod,
            observed_stable: averages.stable,
            observed_panic: averages.panic,
            stable_desired,
            panic_desired,
        };
        (view, over_threshold)
    }

    /// The value per pod to divide by: Serval's class learns the utilisation of request
    /// and throughput metrics; the rest are as configured.
    fn target_of(target: &MetricTarget, learned_utilisation: Option<f64>) -> f64 {
        match (learned_utilisation, target.metric) {
            (
                Some(utilisation),
                ScaleMetric::Concurrency | ScaleMetric::Rps | ScaleMetric::Tokens,
            ) => (target.total * utilisation).max(crate::config::TARGET_MIN),
            _ => target.target,
        }
    }

    /// Knative's stable/panic state machine and scale-down delay over the largest counts.
    fn scale_on(&mut self, now: Instant, views: Vec<(MetricDecision, bool)>) -> Decision {
        let over_threshold = views.iter().any(|(_, over)| *over);
        let metrics: Vec<MetricDecision> = views.into_iter().map(|(view, _)| view).collect();
        let stable_desired = metrics.iter().map(|m| m.stable_desired).max().unwrap_or(0);
        let panic_desired = metrics.iter().map(|m| m.panic_desired).max().unwrap_or(0);

        let mut reason = String::new();
        if over_threshold {
            if self.panic_since.is_none() {
                reason.push_str("entering panic; ");
            }
            self.panic_since = Some(now);
        } else if let Some(since) = self.panic_since {
            // Panic ends once the burst has had a whole stable window to show up there.
            if since
                .checked_add(self.spec.stable_window)
                .is_some_and(|end| now > end)
            {
                self.panic_since = None;
                self.max_panic_pods = 0;
                reason.push_str("leaving panic; ");
            }
        }
        let in_panic = self.panic_since.is_some();

        let mut desired = stable_desired;
        if in_panic {
            desired = desired.max(panic_desired);
            self.max_panic_pods = self.max_panic_pods.max(desired);
            desired = self.max_panic_pods;
        }
        let winner = pick_winner(&metrics, in_panic);
        let winner_name = winner.map_or("none", ScaleMetric::as_str);
        reason.push_str(&format!(
            "{} mode: {winner_name} wants {}",
            if in_panic { "panic" } else { "stable" },
            if in_panic {
                stable_desired.max(panic_desired)
            } else {
                stable_desired
            }
        ));
        if in_panic && desired > stable_desired.max(panic_desired) {
            reason.push_str(&format!(", holding {desired} until panic ends"));
        }
        if let Some(window) = &mut self.scale_down_delay {
            let second = now.saturating_duration_since(self.origin).as_secs();
            let delayed = window.record(second, desired);
            if delayed != desired {
                reason.push_str(&format!(", scale-down delayed: staying at {delayed}"));
                desired = delayed;
            }
        }
        Decision {
            desired,
            winner,
            stable_desired,
            panic_desired,
            in_panic,
            excess_burst_capacity: 0,
            metrics,
            reason,
            prediction: None,
        }
    }

    /// Spare request capacity: ready pods times the per-pod total, less the target burst
    /// capacity, less the requests seen in the panic window.
    fn excess_burst_capacity(&self, now: Instant, metrics: &MetricWindows, ready: u32) -> i64 {
        let tbc = self.spec.target_burst_capacity;
        if tbc == 0.0 {
            return 0;
        }
        if tbc < 0.0 {
            return -1;
        }
        let burst = &self.spec.burst_metric;
        // Without data the headroom is unknown, so the activator stays in the path.
        let Some(averages) = metrics.averages(now, burst.metric) else {
            return -1;
        };
        (f64::from(ready) * burst.total - tbc - averages.panic).floor() as i64
    }
}

fn delay_window(delay: Duration) -> Option<MaxWindow> {
    (!delay.is_zero()).then(|| MaxWindow::new(delay))
}

/// The metric asking for the most pods (the first configured on a tie).
fn pick_winner(metrics: &[MetricDecision], in_panic: bool) -> Option<ScaleMetric> {
    let wanted = |m: &MetricDecision| {
        if in_panic {
            m.stable_desired.max(m.panic_desired)
        } else {
            m.stable_desired
        }
    };
    let most = metrics.iter().map(wanted).max()?;
    metrics.iter().find(|m| wanted(m) == most).map(|m| m.metric)
}

#[cfg(test)]
mod tests;
