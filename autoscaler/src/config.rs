//! The cluster-wide autoscaler settings: Knative's `config-autoscaler` ConfigMap keys with
//! Knative's defaults, plus Serval's targets for the metrics Knative does not have.

use std::collections::BTreeMap;
use std::time::Duration;

use serval_api::duration::parse_go_duration;

/// A `config-autoscaler` value that does not parse or is out of range.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("config-autoscaler key {key}: {message}")]
pub struct ConfigError {
    /// The ConfigMap key at fault.
    pub key: &'static str,
    pub message: String,
}

impl ConfigError {
    fn new(key: &'static str, message: impl Into<String>) -> Self {
        Self {
            key,
            message: message.into(),
        }
    }
}

/// Smallest target per pod Knative allows; a smaller one would ask for unbounded pods.
pub(crate) const TARGET_MIN: f64 = 0.01;

/// On a GPU a replica prefills a whole prompt in one compute-bound pass while decoding is
/// bound by memory bandwidth, so prompt tokens go through roughly ten times as fast as output
/// tokens; a prompt token counts as a tenth of one unless the revision says otherwise. Not
/// measured here (no GPU); `bench/prompt_token_cost.py` measures a real server.
pub(crate) const DEFAULT_PROMPT_TOKEN_COST: f64 = 0.1;

/// Cluster-wide autoscaling settings. Per-revision annotations and KServe fields override
/// most of them; see `ScalingSpec::resolve`.
#[derive(Debug, Clone, PartialEq)]
pub struct AutoscalerConfig {
    /// `stable-window`: the averaging window of stable mode.
    pub stable_window: Duration,
    /// `panic-window-percentage`: the panic window as a percentage of the stable window.
    pub panic_window_percentage: f64,
    /// `panic-threshold-percentage`: panic when the panic window asks for this share of the
    /// ready pods (200 = twice as many).
    pub panic_threshold_percentage: f64,
    /// `container-concurrency-target-percentage`: target utilisation, in percent. Knative's
    /// legacy fraction form (0.7) is accepted and converted.
    pub container_concurrency_target_percentage: f64,
    /// `container-concurrency-target-default`: concurrency per pod when containerConcurrency
    /// is 0 and no target is set.
    pub container_concurrency_target_default: f64,
    /// `requests-per-second-target-default`.
    pub requests_per_second_target_default: f64,
    /// `tokens-target-default` (Serval): output tokens per second per pod.
    pub tokens_target_default: f64,
    /// `prompt-token-cost` (Serval): output tokens one prompt token counts as in the
    /// `tokens` metric (a replica's decode rate over its prefill rate); 0 leaves prompts out.
    pub prompt_token_cost: f64,
    /// `gpu-utilization-target-default` (Serval): GPU utilisation percent per pod.
    pub gpu_utilization_target_default: f64,
    /// `queue-target-default` (Serval): requests waiting in the runtime's own queue per pod.
    pub queue_target_default: f64,
    /// `target-burst-capacity`: spare requests the revision should absorb without the
    /// activator; 0 puts the activator in the path only at zero, -1 always.
    pub target_burst_capacity: f64,
    /// `max-scale-up-rate`: at most this many times the ready pods in one decision.
    pub max_scale_up_rate: f64,
    /// `max-scale-down-rate`: at least ready pods divided by this in one decision.
    pub max_scale_down_rate: f64,
    /// `scale-to-zero-grace-period`: how long the activator is in the path before the last
    /// pod goes.
    pub scale_to_zero_grace_period: Duration,
    /// `scale-to-zero-pod-retention-period`: how long the last pod stays after traffic stops.
    pub scale_to_zero_pod_retention_period: Duration,
    /// `enable-scale-to-zero`.
    pub enable_scale_to_zero: bool,
    /// `initial-scale`: pods a new revision starts with.
    pub initial_scale: u32,
    /// `allow-zero-initial-scale`: whether `initial-scale` may be 0.
    pub allow_zero_initial_scale: bool,
    /// `min-scale`. Accepted for Knative compatibility; InferenceService components always
    /// carry a minimum (KServe's `minReplicas`, default 1), so it does not apply to them.
    pub min_scale: u32,
    /// `max-scale`: default upper bound; 0 means none.
    pub max_scale: u32,
    /// `activation-scale`: the least pods to scale to when leaving zero.
    pub activation_scale: u32,
    /// `scale-down-delay`: scale down only to the highest count wanted over this period.
    pub scale_down_delay: Duration,
    /// `tick-interval` (Serval): how often the loop scrapes and decides.
    pub tick_interval: Duration,
}

impl Default for AutoscalerConfig {
    fn default() -> Self {
        Self {
            stable_window: Duration::from_secs(60),
            panic_window_percentage: 10.0,
            panic_threshold_percentage: 200.0,
            container_concurrency_target_percentage: 70.0,
            container_concurrency_target_default: 100.0,
            requests_per_second_target_default: 200.0,
            tokens_target_default: 1000.0,
            prompt_token_cost: DEFAULT_PROMPT_TOKEN_COST,
            gpu_utilization_target_default: 70.0,
            queue_target_default: 4.0,
            // Knative's shipped ConfigMap value (its code default is 200).
            target_burst_capacity: 211.0,
            max_scale_up_rate: 1000.0,
            max_scale_down_rate: 2.0,
            scale_to_zero_grace_period: Duration::from_secs(30),
            scale_to_zero_pod_retention_period: Duration::ZERO,
            enable_scale_to_zero: true,
            initial_scale: 1,
            allow_zero_initial_scale: false,
            min_scale: 0,
            max_scale: 0,
            activation_scale: 1,
            scale_down_delay: Duration::ZERO,
            tick_interval: Duration::from_secs(1),
        }
    }
}

/// Stable windows Knative accepts.
const WINDOW_MIN: Duration = Duration::from_secs(6);
const WINDOW_MAX: Duration = Duration::from_secs(3600);

impl AutoscalerConfig {
    /// Parses the `config-autoscaler` ConfigMap data. Missing keys keep their defaults and
    /// unknown keys are ignored (Knative's ConfigMap carries keys Serval has no use for);
    /// the result is validated.
    pub fn from_map(data: &BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let mut config = Self::default();
        let read = MapReader(data);
        read.duration("stable-window", &mut config.stable_window)?;
        read.number(
            "panic-window-percentage",
            &mut config.panic_window_percentage,
        )?;
        read.number(
            "panic-threshold-percentage",
            &mut config.panic_threshold_percentage,
        )?;
        let utilisation_key = "container-concurrency-target-percentage";
        read.number(
            utilisation_key,
            &mut config.container_concurrency_target_percentage,
        )?;
        if data.contains_key(utilisation_key)
            && config.container_concurrency_target_percentage <= 1.0
        {
            // Knative still accepts the old fraction form (0.7 for 70%).
            config.container_concurrency_target_percentage *= 100.0;
        }
        read.number(
            "container-concurrency-target-default",
            &mut config.container_concurrency_target_default,
        )?;
        read.number(
            "requests-per-second-target-default",
            &mut config.requests_per_second_target_default,
        )?;
        read.number("tokens-target-default", &mut config.tokens_target_default)?;
        read.number("prompt-token-cost", &mut config.prompt_token_cost)?;
        read.number(
            "gpu-utilization-target-default",
            &mut config.gpu_utilization_target_default,
        )?;
        read.number("queue-target-default", &mut config.queue_target_default)?;
        read.number("target-burst-capacity", &mut config.target_burst_capacity)?;
        read.number("max-scale-up-rate", &mut config.max_scale_up_rate)?;
        read.number("max-scale-down-rate", &mut config.max_scale_down_rate)?;
        read.duration(
            "scale-to-zero-grace-period",
            &mut config.scale_to_zero_grace_period,
        )?;
        read.duration(
            "scale-to-zero-pod-retention-period",
            &mut config.scale_to_zero_pod_retention_period,
        )?;
        read.boolean("enable-scale-to-zero", &mut config.enable_scale_to_zero)?;
        read.count("initial-scale", &mut config.initial_scale)?;
        read.boolean(
            "allow-zero-initial-scale",
            &mut config.allow_zero_initial_scale,
        )?;
        read.count("min-scale", &mut config.min_scale)?;
        read.count("max-scale", &mut config.max_scale)?;
        read.count("activation-scale", &mut config.activation_scale)?;
        read.duration("scale-down-delay", &mut config.scale_down_delay)?;
        read.duration("tick-interval", &mut config.tick_interval)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks the ranges Knative checks, plus Serval's own keys.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |key, message: String| Err(ConfigError::new(key, message));
        if self.stable_window < WINDOW_MIN || self.stable_window > WINDOW_MAX {
            return fail("stable-window", "must be between 6s and 1h".into());
        }
        if self.stable_window.subsec_nanos() != 0 {
            return fail("stable-window", "must be a whole number of seconds".into());
        }
        if !(1.0..=100.0).contains(&self.panic_window_percentage) {
            return fail("panic-window-percentage", "must be in [1, 100]".into());
        }
        if !(110.0..=1000.0).contains(&self.panic_threshold_percentage) {
            return fail(
                "panic-threshold-percentage",
                "must be in [110, 1000]".into(),
            );
        }
        let utilisation = self.container_concurrency_target_percentage;
        if !(utilisation > 0.0 && utilisation <= 100.0) {
            return fail(
                "container-concurrency-target-percentage",
                "must be in (0, 100]".into(),
            );
        }
        if self.container_concurrency_target_default * utilisation / 100.0 < TARGET_MIN {
            return fail(
                "container-concurrency-target-default",
                format!("yields a target below {TARGET_MIN} with the target percentage"),
            );
        }
        for (key, value) in [
            (
                "requests-per-second-target-default",
                self.requests_per_second_target_default,
            ),
            ("tokens-target-default", self.tokens_target_default),
            (
                "gpu-utilization-target-default",
                self.gpu_utilization_target_default,
            ),
            ("queue-target-default", self.queue_target_default),
        ] {
            if value.is_nan() || value < TARGET_MIN {
                return fail(key, format!("must be at least {TARGET_MIN}"));
            }
        }
        if !(0.0..=100.0).contains(&self.prompt_token_cost) {
            return fail("prompt-token-cost", "must be in [0, 100]".into());
        }
        if self.gpu_utilization_target_default > 100.0 {
            return fail(
                "gpu-utilization-target-default",
                "must be at most 100".into(),
            );
        }
        if self.target_burst_capacity < 0.0 && self.target_burst_capacity != -1.0 {
            return fail(
                "target-burst-capacity",
                "must be non-negative, or -1 for an activator always in the path".into(),
            );
        }
        if self.max_scale_up_rate.is_nan() || self.max_scale_up_rate <= 1.0 {
            return fail("max-scale-up-rate", "must be greater than 1".into());
        }
        if self.max_scale_down_rate.is_nan() || self.max_scale_down_rate <= 1.0 {
            return fail("max-scale-down-rate", "must be greater than 1".into());
        }
        if self.scale_to_zero_grace_period.is_zero() {
            return fail("scale-to-zero-grace-period", "must be positive".into());
        }
        if self.scale_down_delay.subsec_nanos() != 0 {
            return fail(
                "scale-down-delay",
                "must be a whole number of seconds".into(),
            );
        }
        if self.initial_scale == 0 && !self.allow_zero_initial_scale {
            return fail(
                "initial-scale",
                "must be at least 1 unless allow-zero-initial-scale is true".into(),
            );
        }
        if self.max_scale != 0 && self.min_scale > self.max_scale {
            return fail("min-scale", "must not exceed max-scale".into());
        }
        if self.activation_scale == 0 {
            return fail("activation-scale", "must be at least 1".into());
        }
        if self.tick_interval < Duration::from_millis(100) {
            return fail("tick-interval", "must be at least 100ms".into());
        }
        Ok(())
    }
}

/// Reads typed values out of ConfigMap data, naming the key when one does not parse.
struct MapReader<'a>(&'a BTreeMap<String, String>);

impl MapReader<'_> {
    fn raw(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.trim())
    }

    fn number(&self, key: &'static str, out: &mut f64) -> Result<(), ConfigError> {
        if let Some(raw) = self.raw(key) {
            *out = raw
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| ConfigError::new(key, format!("{raw:?} is not a number")))?;
        }
        Ok(())
    }

    fn count(&self, key: &'static str, out: &mut u32) -> Result<(), ConfigError> {
        if let Some(raw) = self.raw(key) {
            *out = raw.parse::<u32>().map_err(|_| {
                ConfigError::new(key, format!("{raw:?} is not a non-negative integer"))
            })?;
        }
        Ok(())
    }

    fn boolean(&self, key: &'static str, out: &mut bool) -> Result<(), ConfigError> {
        if let Some(raw) = self.raw(key) {
            *out = raw
                .parse::<bool>()
                .map_err(|_| ConfigError::new(key, format!("{raw:?} is not true or false")))?;
        }
        Ok(())
    }

    fn duration(&self, key: &'static str, out: &mut Duration) -> Result<(), ConfigError> {
        if let Some(raw) = self.raw(key) {
            *out = parse_go_duration(raw).map_err(|e| ConfigError::new(key, e.to_string()))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
