//! The policies that run the real decider: each tick, the replicas' reports go through
//! [`pod_sample`] and the activator's through [`activator_sample`] into [`MetricWindows`],
//! exactly as the live loop records them, and [`Decider::decide`] answers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serval_api::annotations;
use serval_api::component::ComponentExtensionSpec;
use serval_autoscaler::{
    activator_sample, pod_sample, AutoscalerConfig, Decider, MetricWindows, ScalingSpec,
};

use super::{Observation, Policy, PolicyContext};

/// The live autoscaler's decider on a simulated clock.
#[derive(Debug, Clone)]
pub struct DeciderPolicy {
    pub decider: Decider,
    windows: MetricWindows,
    base: Instant,
    /// When a non-empty sample was last recorded.
    last_data: Option<f64>,
    last_desired: u32,
}

impl DeciderPolicy {
    /// A revision with `minReplicas: 0`, `containerConcurrency` from the simulation, the
    /// given annotations and `config-autoscaler` data. Settings that do not parse are a
    /// programming error in the simulator, so they fall back to the defaults.
    pub fn with_settings(
        context: &PolicyContext,
        annotations: &[(&str, String)],
        config: &[(&str, String)],
    ) -> Self {
        let component = ComponentExtensionSpec {
            min_replicas: Some(0),
            container_concurrency: Some(i64::from(context.config.concurrency)),
            ..ComponentExtensionSpec::default()
        };
        let to_map = |pairs: &[(&str, String)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_string(), v.clone()))
                .collect()
        };
        let config = AutoscalerConfig::from_map(&to_map(config)).unwrap_or_default();
        let spec =
            ScalingSpec::from_annotations(&component, &to_map(annotations), "simulate", &config)
                .unwrap_or_else(|_| ScalingSpec::resolve(&component, &Default::default(), &config));
        Self::from_spec(spec, context.base)
    }

    pub fn from_spec(spec: ScalingSpec, base: Instant) -> Self {
        Self {
            windows: MetricWindows::new(base, &spec),
            decider: Decider::new(spec, base),
            base,
            last_data: None,
            last_desired: 0,
        }
    }

    /// Knative's KPA defaults.
    pub fn kpa(context: &PolicyContext) -> Self {
        Self::with_settings(context, &[], &[])
    }

    /// Serval's autoscaler class with `cold_start_budget` (a share of requests), as a
    /// revision annotated with it gets it, or without one (`None`), as a revision that
    /// only names the class gets it. Nothing else is set: the class learns the rest from
    /// the traffic. For LLM traces the `tokens`
    /// metric goes beside concurrency, its total a full replica's decode rate, with prompt
    /// tokens at what their prefill costs in decode time.
    pub fn serval(context: &PolicyContext, cold_start_budget: Option<f64>) -> Self {
        Self::serval_with(context, cold_start_budget, &[], &[])
    }

    /// [`DeciderPolicy::serval`] with extra annotations and autoscaler config.
    pub fn serval_with(
        context: &PolicyContext,
        cold_start_budget: Option<f64>,
        extra: &[(&str, String)],
        extra_config: &[(&str, String)],
    ) -> Self {
        let mut annotations = vec![(
            annotations::knative::CLASS,
            annotations::knative::CLASS_SERVAL.to_string(),
        )];
        if let Some(budget) = cold_start_budget {
            annotations.push((annotations::serval::COLD_START_BUDGET, format!("{budget}")));
        }
        annotations.extend(extra.iter().cloned());
        let mut config = extra_config.to_vec();
        if context.llm {
            annotations.push((annotations::serval::METRICS, "concurrency,tokens".into()));
            let full = f64::from(context.config.concurrency) * context.decode_tps;
            config.push(("tokens-target-default", format!("{full}")));
            // A prompt token holds a slot for 1/prefill s, an output token for 1/decode s.
            let cost = context.decode_tps / context.prefill_tps.max(1e-9);
            config.push(("prompt-token-cost", format!("{cost}")));
        }
        Self::with_settings(context, &annotations, &config)
    }

    fn at(&self, now: f64) -> Instant {
        self.base + Duration::from_secs_f64(now.max(0.0))
    }

    /// The stable window in seconds.
    fn stable_s(&self) -> f64 {
        self.decider.spec().stable_window.as_secs_f64()
    }
}

impl Policy for DeciderPolicy {
    fn tick(&mut self, o: &Observation<'_>) -> u32 {
        let at = self.at(o.now);
        let pods = pod_sample(o.stats, o.ready, self.decider.spec().prompt_token_cost);
        if !pods.is_empty() {
            self.windows.record(at, &pods);
            self.last_data = Some(o.now);
        }
        if let Some(activator) = o.activator {
            self.windows
                .record(at, &activator_sample(std::slice::from_ref(activator)));
            self.last_data = Some(o.now);
        }
        let decision = self.decider.decide(at, &self.windows, o.ready, o.queued);
        self.last_desired = decision.desired;
        decision.desired
    }

    /// As the live loop does on an activator's poke: decide at once, but only for a
    /// revision at zero.
    fn poke(&mut self, o: &Observation<'_>) -> u32 {
        if o.current > 0 {
            return o.current;
        }
        let at = self.at(o.now);
        let decision = self
            .decider
            .decide(at, &self.windows, o.ready, o.queued.max(1));
        self.last_desired = decision.desired;
        decision.desired
    }

    fn quiet_until(&self, now: f64) -> Option<f64> {
        let aged = self
            .last_data
            .is_none_or(|t| now - t > self.stable_s() + 2.0);
        if self.last_desired != 0 || !aged {
            return None;
        }
        // Serval's class may have planned a pre-warm: the quiet ends there.
        Some(
            self.decider
                .planned_start(self.at(now))
                .map_or(f64::INFINITY, |at| {
                    at.saturating_duration_since(self.base).as_secs_f64()
                }),
        )
    }
}
