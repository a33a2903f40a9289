//! The scaling settings of one revision, resolved once from its KServe component fields, its
//! annotations and the cluster config, with the precedence KServe on Knative gives them.

use std::collections::BTreeMap;
use std::time::Duration;

use serval_api::annotations::{knative, AutoscalingAnnotations};
use serval_api::component::{ComponentExtensionSpec, ScaleMetric, DEFAULT_MIN_REPLICAS};
use serval_api::FieldError;

use crate::config::{AutoscalerConfig, TARGET_MIN};
use crate::metrics::Aggregation;

/// Knative's annotation that picks how windows are averaged. `serval-api` does not parse it
/// yet, so it is read here from the raw annotations.
pub const METRIC_AGGREGATION_ALGORITHM: &str =
    "autoscaling.knative.dev/metric-aggregation-algorithm";

/// KServe's default target for cpu and memory utilisation (HPA style), in percent.
const RESOURCE_UTILIZATION_TARGET_DEFAULT: f64 = 80.0;

/// What one metric aims for on each pod.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricTarget {
    pub metric: ScaleMetric,
    /// The value per pod the decider divides by: `total` times the target utilisation for
    /// metrics that take one, never below 0.01.
    pub target: f64,
    /// The value per pod before utilisation: containerConcurrency, a `target` annotation or
    /// `scaleTarget`, or the config default. Burst capacity is measured against it.
    pub total: f64,
}

/// Everything the decider needs to know about one revision.
#[derive(Debug, Clone, PartialEq)]
pub struct ScalingSpec {
    /// The metrics to scale on, never empty; desired scale is the largest they ask for.
    pub metrics: Vec<MetricTarget>,
    pub stable_window: Duration,
    pub panic_window: Duration,
    /// Panic when the panic window wants this multiple of the ready pods (2.0 = 200%).
    pub panic_threshold: f64,
    pub max_scale_up_rate: f64,
    pub max_scale_down_rate: f64,
    pub min_scale: u32,
    /// 0 means no upper bound.
    pub max_scale: u32,
    pub initial_scale: u32,
    pub activation_scale: u32,
    pub scale_down_delay: Duration,
    pub enable_scale_to_zero: bool,
    pub scale_to_zero_grace_period: Duration,
    pub scale_to_zero_pod_retention_period: Duration,
    /// Requests of headroom to keep before taking the activator out of the path; 0 means
    /// the activator is in the path only at zero, -1 means always.
    pub target_burst_capacity: f64,
    /// The request metric (concurrency, or rps when that is what the revision scales on)
    /// whose headroom decides whether the activator stays in the path.
    pub burst_metric: MetricTarget,
    pub aggregation: Aggregation,
    /// Output tokens one prompt token counts as in the `tokens` metric, so a revision is
    /// sized on its prefill work as well as its decoding.
    pub prompt_token_cost: f64,
    /// Present for revisions of Serval's autoscaler class
    /// (`autoscaling.knative.dev/class: serval.autoscaling.serval.dev`).
    pub adaptive: Option<AdaptiveSettings>,
}

/// What a user of Serval's class states; the rest is learned from the traffic.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveSettings {
    /// Share of requests allowed to wait for a replica (cold starts and scale-ups). `None`
    /// when the user states none: the class then trades nothing, and keeps the KPA's
    /// behaviour except where the revision's own history shows a change that is better on
    /// both counts.
    pub cold_start_budget: Option<f64>,
}

impl ScalingSpec {
    /// Resolves a revision's settings. Precedence, as in KServe on Knative: the component's
    /// fields (minReplicas, maxReplicas, scaleMetric, scaleTarget) over the
    /// `autoscaling.knative.dev/*` annotations over the cluster config.
    pub fn resolve(
        component: &ComponentExtensionSpec,
        annotations: &AutoscalingAnnotations,
        config: &AutoscalerConfig,
    ) -> Self {
        let container_concurrency = component.container_concurrency.unwrap_or(0).max(0) as f64;
        let explicit_target = component
            .scale_target
            .map(f64::from)
            .or(annotations.target)
            .filter(|t| t.is_finite() && *t > 0.0);
        let utilisation_percent = annotations
            .target_utilization_percentage
            .unwrap_or(config.container_concurrency_target_percentage);
        let targets = TargetInputs {
            container_concurrency,
            explicit_target,
            utilisation: utilisation_percent / 100.0,
            config,
        };

        let named = component.scale_metric.or(annotations.metric);
        let metric_names = if annotations.metrics.is_empty() {
            vec![named.unwrap_or(ScaleMetric::Concurrency)]
        } else {
            dedup(&annotations.metrics)
        };
        // The one `target`/`scaleTarget` applies to: the named metric when it is in the
        // list, else the first listed.
        let primary = named
            .filter(|m| metric_names.contains(m))
            .unwrap_or(metric_names[0]);
        let metrics = metric_names
            .iter()
            .map(|&m| targets.for_metric(m, m == primary))
            .collect();
        let burst_metric = if primary == ScaleMetric::Rps {
            targets.for_metric(ScaleMetric::Rps, true)
        } else {
            targets.for_metric(
                ScaleMetric::Concurrency,
                primary == ScaleMetric::Concurrency,
            )
        };

        let stable_window = annotations.window.unwrap_or(config.stable_window);
        let panic_percentage = annotations
            .panic_window_percentage
            .unwrap_or(config.panic_window_percentage);
        // Knative never lets the panic window be shorter than one bucket.
        let panic_window = stable_window
            .mul_f64(panic_percentage / 100.0)
            .max(Duration::from_secs(1));

        let min_scale = component
            .min_replicas
            .or(annotations.min_scale)
            .unwrap_or(DEFAULT_MIN_REPLICAS)
            .max(0) as u32;
        let max_scale = component
            .max_replicas
            .filter(|m| *m > 0)
            .or(annotations.max_scale)
            .map_or(config.max_scale, |m| m.max(0) as u32);
        // A conflict is reported by validation; here the upper bound wins.
        let min_scale = if max_scale != 0 {
            min_scale.min(max_scale)
        } else {
            min_scale
        };

        Self {
            metrics,
            stable_window,
            panic_window,
            panic_threshold: annotations
                .panic_threshold_percentage
                .unwrap_or(config.panic_threshold_percentage)
                / 100.0,
            max_scale_up_rate: config.max_scale_up_rate,
            max_scale_down_rate: config.max_scale_down_rate,
            min_scale,
            max_scale,
            initial_scale: initial_scale(component, annotations, config),
            activation_scale: annotations
                .activation_scale
                .map_or(config.activation_scale, |a| a.max(1) as u32),
            scale_down_delay: annotations
                .scale_down_delay
                .unwrap_or(config.scale_down_delay),
            enable_scale_to_zero: config.enable_scale_to_zero,
            scale_to_zero_grace_period: config.scale_to_zero_grace_period,
            scale_to_zero_pod_retention_period: annotations
                .scale_to_zero_pod_retention_period
                .unwrap_or(config.scale_to_zero_pod_retention_period),
            target_burst_capacity: annotations
                .target_burst_capacity
                .unwrap_or(config.target_burst_capacity),
            burst_metric,
            aggregation: Aggregation::Linear,
            prompt_token_cost: annotations
                .prompt_token_cost
                .unwrap_or(config.prompt_token_cost),
            adaptive: (annotations.class.as_deref() == Some(knative::CLASS_SERVAL)).then_some(
                AdaptiveSettings {
                    cold_start_budget: annotations.cold_start_budget,
                },
            ),
        }
    }

    /// Parses `annotations` (reporting bad values under `path`) and resolves the spec,
    /// including the aggregation algorithm annotation.
    pub fn from_annotations(
        component: &ComponentExtensionSpec,
        annotations: &BTreeMap<String, String>,
        path: &str,
        config: &AutoscalerConfig,
    ) -> Result<Self, Vec<FieldError>> {
        let (parsed, mut errors) = AutoscalingAnnotations::parse(annotations, path);
        let aggregation = match annotations.get(METRIC_AGGREGATION_ALGORITHM) {
            None => Aggregation::Linear,
            Some(raw) => Aggregation::parse(raw.trim()).unwrap_or_else(|| {
                errors.push(FieldError::new(
                    format!("{path}[{METRIC_AGGREGATION_ALGORITHM}]"),
                    format!("invalid value {raw:?}: expected linear or weighted-exponential"),
                ));
                Aggregation::Linear
            }),
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            aggregation,
            ..Self::resolve(component, &parsed, config)
        })
    }

    /// How long the KPA keeps the last replica after the last request: the stable window for
    /// the average to reach zero, then the grace period.
    pub(crate) fn kpa_keep_alive(&self) -> Duration {
        self.stable_window + self.scale_to_zero_grace_period
    }

    /// The lowest scale allowed, counting `enable-scale-to-zero: false` as a floor of one.
    pub(crate) fn floor(&self) -> u32 {
        if self.enable_scale_to_zero {
            self.min_scale
        } else {
            self.min_scale.max(1)
        }
    }
}

/// Knative's initial scale, with KServe's rule that `minReplicas: 0` starts at zero when the
/// cluster allows it and no `initial-scale` annotation says otherwise.
fn initial_scale(
    component: &ComponentExtensionSpec,
    annotations: &AutoscalingAnnotations,
    config: &AutoscalerConfig,
) -> u32 {
    match annotations.initial_scale {
        Some(n) if n > 0 || config.allow_zero_initial_scale => n.max(0) as u32,
        Some(_) => config.initial_scale,
        None if component.min_replicas == Some(0) && config.allow_zero_initial_scale => 0,
        None => config.initial_scale,
    }
}

fn dedup(metrics: &[ScaleMetric]) -> Vec<ScaleMetric> {
    let mut out = Vec::with_capacity(metrics.len());
    for m in metrics {
        if !out.contains(m) {
            out.push(*m);
        }
    }
    out
}

struct TargetInputs<'a> {
    container_concurrency: f64,
    explicit_target: Option<f64>,
    /// As a fraction.
    utilisation: f64,
    config: &'a AutoscalerConfig,
}

impl TargetInputs<'_> {
    fn for_metric(&self, metric: ScaleMetric, primary: bool) -> MetricTarget {
        let config = self.config;
        let default_total = match metric {
            ScaleMetric::Concurrency if self.container_concurrency > 0.0 => {
                self.container_concurrency
            }
            ScaleMetric::Concurrency => config.container_concurrency_target_default,
            ScaleMetric::Rps => config.requests_per_second_target_default,
            ScaleMetric::Tokens => config.tokens_target_default,
            ScaleMetric::Gpu => config.gpu_utilization_target_default,
            ScaleMetric::Queue => config.queue_target_default,
            ScaleMetric::Cpu | ScaleMetric::Memory => RESOURCE_UTILIZATION_TARGET_DEFAULT,
        };
        let mut total = match self.explicit_target {
            Some(target) if primary => target,
            _ => default_total,
        };
        // A pod never takes more than containerConcurrency, so a higher target could
        // never be reached.
        if metric == ScaleMetric::Concurrency && self.container_concurrency > 0.0 {
            total = total.min(self.container_concurrency);
        }
        // Headroom applies to request and throughput targets; gpu, cpu and memory are
        // already utilisation percentages and a queue target is a depth to hold.
        let utilisation = match metric {
            ScaleMetric::Concurrency | ScaleMetric::Rps | ScaleMetric::Tokens => self.utilisation,
            ScaleMetric::Gpu | ScaleMetric::Queue | ScaleMetric::Cpu | ScaleMetric::Memory => 1.0,
        };
        MetricTarget {
            metric,
            target: (total * utilisation).max(TARGET_MIN),
            total,
        }
    }
}

#[cfg(test)]
mod tests;
