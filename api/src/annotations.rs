//! Annotation keys Serval honours, and their typed, validated values.
//!
//! Knative's `autoscaling.knative.dev/*` keys mean what they mean in KServe on Knative;
//! KServe's `serving.kserve.io/*` keys likewise; Serval's own live under `serving.serval.dev/`.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::duration::parse_go_duration;
use crate::field_error::FieldError;
use crate::metric::ScaleMetric;

/// Knative's autoscaling annotations.
pub mod knative {
    pub const CLASS: &str = "autoscaling.knative.dev/class";
    pub const METRIC: &str = "autoscaling.knative.dev/metric";
    pub const TARGET: &str = "autoscaling.knative.dev/target";
    pub const TARGET_UTILIZATION_PERCENTAGE: &str =
        "autoscaling.knative.dev/target-utilization-percentage";
    pub const WINDOW: &str = "autoscaling.knative.dev/window";
    pub const PANIC_WINDOW_PERCENTAGE: &str = "autoscaling.knative.dev/panic-window-percentage";
    pub const PANIC_THRESHOLD_PERCENTAGE: &str =
        "autoscaling.knative.dev/panic-threshold-percentage";
    pub const MIN_SCALE: &str = "autoscaling.knative.dev/min-scale";
    pub const MAX_SCALE: &str = "autoscaling.knative.dev/max-scale";
    pub const INITIAL_SCALE: &str = "autoscaling.knative.dev/initial-scale";
    pub const ACTIVATION_SCALE: &str = "autoscaling.knative.dev/activation-scale";
    pub const SCALE_DOWN_DELAY: &str = "autoscaling.knative.dev/scale-down-delay";
    pub const SCALE_TO_ZERO_POD_RETENTION_PERIOD: &str =
        "autoscaling.knative.dev/scale-to-zero-pod-retention-period";
    pub const TARGET_BURST_CAPACITY: &str = "autoscaling.knative.dev/target-burst-capacity";

    /// Knative's pod autoscaler class (the default).
    pub const CLASS_KPA: &str = "kpa.autoscaling.knative.dev";
    /// Knative's HPA class, for cpu/memory scaling.
    pub const CLASS_HPA: &str = "hpa.autoscaling.knative.dev";
    /// Serval's adaptive class: learns each revision's traffic and spends the fewest
    /// replica-seconds that keep cold starts within `serving.serval.dev/cold-start-budget`.
    pub const CLASS_SERVAL: &str = "serval.autoscaling.serval.dev";
}

/// KServe's annotations.
pub mod kserve {
    pub const DEPLOYMENT_MODE: &str = "serving.kserve.io/deploymentMode";
    pub const ENABLE_TAG_ROUTING: &str = "serving.kserve.io/enable-tag-routing";
    pub const STOP: &str = "serving.kserve.io/stop";
    pub const DEPLOYMENT_MODES: [&str; 4] =
        ["Serverless", "RawDeployment", "Standard", "ModelMesh"];
}

/// Serval's own annotations.
pub mod serval {
    /// Comma-separated metrics to scale on at once; desired scale is the largest.
    pub const METRICS: &str = "serving.serval.dev/metrics";
    /// Requests per second allowed into the InferenceService at the activator.
    pub const RATE_LIMIT: &str = "serving.serval.dev/rate-limit";
    /// Burst for `rate-limit`; defaults to the rate.
    pub const RATE_LIMIT_BURST: &str = "serving.serval.dev/rate-limit-burst";
    /// Prometheus metric of the runtime that holds its queue depth (for the `queue` metric).
    pub const QUEUE_DEPTH_METRIC: &str = "serving.serval.dev/queue-depth-metric";
    /// Prometheus metric of the runtime that holds its KV-cache usage, 0 to 1 (reported in
    /// the queue-proxy's stats beside the queue depth).
    pub const KV_CACHE_METRIC: &str = "serving.serval.dev/kv-cache-metric";
    /// `"true"`: the model is fetched once per node into the node model cache and mounted
    /// read-only, shared by every pod on the node that names the same storageUri.
    pub const MODEL_CACHE: &str = "serving.serval.dev/model-cache";
    /// With Serval's autoscaler class: the share of requests allowed to wait for a
    /// replica, as a percentage (`"1%"`) or a fraction (`"0.01"`).
    pub const COLD_START_BUDGET: &str = "serving.serval.dev/cold-start-budget";
    /// With the `tokens` metric: what one prompt token costs a replica, in output tokens
    /// (prefill against decode capacity); 0 scales on output tokens alone.
    pub const PROMPT_TOKEN_COST: &str = "serving.serval.dev/prompt-token-cost";
}

/// The autoscaling-related annotations of one object, parsed and range-checked. Unset keys
/// are `None`; defaults are the autoscaler's business.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AutoscalingAnnotations {
    pub class: Option<String>,
    /// Share of requests allowed to wait for a cold start, 0.001 to 0.5.
    pub cold_start_budget: Option<f64>,
    /// Output tokens one prompt token is worth to the `tokens` metric, 0 to 100.
    pub prompt_token_cost: Option<f64>,
    pub metric: Option<ScaleMetric>,
    pub target: Option<f64>,
    pub target_utilization_percentage: Option<f64>,
    pub window: Option<Duration>,
    pub panic_window_percentage: Option<f64>,
    pub panic_threshold_percentage: Option<f64>,
    pub min_scale: Option<i32>,
    pub max_scale: Option<i32>,
    pub initial_scale: Option<i32>,
    pub activation_scale: Option<i32>,
    pub scale_down_delay: Option<Duration>,
    pub scale_to_zero_pod_retention_period: Option<Duration>,
    pub target_burst_capacity: Option<f64>,
    pub metrics: Vec<ScaleMetric>,
    pub rate_limit: Option<f64>,
    pub rate_limit_burst: Option<u32>,
    pub deployment_mode: Option<String>,
    pub enable_tag_routing: Option<bool>,
    pub stop: Option<bool>,
}

const HOUR: Duration = Duration::from_secs(3600);

impl AutoscalingAnnotations {
    /// Parses the keys Serval knows from `annotations`. Every bad value is reported with
    /// `path` (e.g. `metadata.annotations`) and its key; the other values are still parsed.
    pub fn parse(annotations: &BTreeMap<String, String>, path: &str) -> (Self, Vec<FieldError>) {
        let mut parser = Parser {
            annotations,
            path,
            errors: Vec::new(),
        };
        let parsed = Self {
            class: parser.class(),
            cold_start_budget: parser.value(
                serval::COLD_START_BUDGET,
                "a share between 0.1% and 50%, like 1% or 0.01",
                parse_share,
            ),
            prompt_token_cost: parser.number(serval::PROMPT_TOKEN_COST, 0.0, 100.0),
            metric: parser.value(knative::METRIC, "a metric name", ScaleMetric::parse),
            target: parser.number(knative::TARGET, 0.01, f64::MAX),
            target_utilization_percentage: parser.number(
                knative::TARGET_UTILIZATION_PERCENTAGE,
                1.0,
                100.0,
            ),
            window: parser.duration(knative::WINDOW, Duration::from_secs(6), HOUR),
            panic_window_percentage: parser.number(knative::PANIC_WINDOW_PERCENTAGE, 1.0, 100.0),
            panic_threshold_percentage: parser.number(
                knative::PANIC_THRESHOLD_PERCENTAGE,
                110.0,
                1000.0,
            ),
            min_scale: parser.integer(knative::MIN_SCALE, 0),
            max_scale: parser.integer(knative::MAX_SCALE, 0),
            initial_scale: parser.integer(knative::INITIAL_SCALE, 0),
            activation_scale: parser.integer(knative::ACTIVATION_SCALE, 1),
            scale_down_delay: parser.duration(knative::SCALE_DOWN_DELAY, Duration::ZERO, HOUR),
            scale_to_zero_pod_retention_period: parser.duration(
                knative::SCALE_TO_ZERO_POD_RETENTION_PERIOD,
                Duration::ZERO,
                HOUR,
            ),
            target_burst_capacity: parser.number(knative::TARGET_BURST_CAPACITY, -1.0, f64::MAX),
            metrics: parser.metrics(),
            rate_limit: parser.number(serval::RATE_LIMIT, 0.001, f64::MAX),
            rate_limit_burst: parser
                .integer(serval::RATE_LIMIT_BURST, 1)
                .map(|b| b.unsigned_abs()),
            deployment_mode: parser.value(
                kserve::DEPLOYMENT_MODE,
                "one of Serverless, RawDeployment, Standard, ModelMesh",
                |v| kserve::DEPLOYMENT_MODES.contains(&v).then(|| v.to_string()),
            ),
            enable_tag_routing: parser.boolean(kserve::ENABLE_TAG_ROUTING),
            stop: parser.boolean(kserve::STOP),
        };
        if let (Some(min), Some(max)) = (parsed.min_scale, parsed.max_scale) {
            if max != 0 && min > max {
                parser.fail(
                    knative::MIN_SCALE,
                    format!("min-scale {min} is greater than max-scale {max}"),
                );
            }
        }
        (parsed, parser.errors)
    }
}

struct Parser<'a> {
    annotations: &'a BTreeMap<String, String>,
    path: &'a str,
    errors: Vec<FieldError>,
}

impl Parser<'_> {
    fn fail(&mut self, key: &str, message: String) {
        self.errors
            .push(FieldError::new(format!("{}[{key}]", self.path), message));
    }

    fn value<T>(
        &mut self,
        key: &str,
        expected: &str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Option<T> {
        let raw = self.annotations.get(key)?;
        let parsed = parse(raw.trim());
        if parsed.is_none() {
            self.fail(key, format!("invalid value {raw:?}: expected {expected}"));
        }
        parsed
    }

    fn number(&mut self, key: &str, min: f64, max: f64) -> Option<f64> {
        let expected = if max == f64::MAX {
            format!("a number >= {min}")
        } else {
            format!("a number in [{min}, {max}]")
        };
        self.value(key, &expected, |v| {
            v.parse::<f64>()
                .ok()
                .filter(|n| n.is_finite() && *n >= min && *n <= max)
        })
    }

    fn integer(&mut self, key: &str, min: i32) -> Option<i32> {
        self.value(key, &format!("an integer >= {min}"), |v| {
            v.parse::<i32>().ok().filter(|n| *n >= min)
        })
    }

    fn duration(&mut self, key: &str, min: Duration, max: Duration) -> Option<Duration> {
        let expected = format!(
            "a duration between {} and {}, like 60s",
            go_format(min),
            go_format(max)
        );
        self.value(key, &expected, |v| {
            parse_go_duration(v).ok().filter(|d| *d >= min && *d <= max)
        })
    }

    fn boolean(&mut self, key: &str) -> Option<bool> {
        self.value(key, "true or false", |v| v.parse::<bool>().ok())
    }

    fn class(&mut self) -> Option<String> {
        self.value(
            knative::CLASS,
            &format!(
                "{}, {} or {}",
                knative::CLASS_KPA,
                knative::CLASS_HPA,
                knative::CLASS_SERVAL
            ),
            |v| {
                [
                    knative::CLASS_KPA,
                    knative::CLASS_HPA,
                    knative::CLASS_SERVAL,
                ]
                .contains(&v)
                .then(|| v.to_string())
            },
        )
    }

    fn metrics(&mut self) -> Vec<ScaleMetric> {
        let names: Vec<String> = ScaleMetric::ALL.iter().map(|m| m.to_string()).collect();
        let expected = format!("a comma-separated list of {}", names.join(", "));
        self.value(serval::METRICS, &expected, |v| {
            v.split(',')
                .map(|m| ScaleMetric::parse(m.trim()))
                .collect::<Option<Vec<_>>>()
        })
        .unwrap_or_default()
    }
}

/// `"1%"` or `"0.01"` as a fraction, within [0.001, 0.5]: how
/// `serving.serval.dev/cold-start-budget` is read.
pub fn parse_share(value: &str) -> Option<f64> {
    let share = match value.strip_suffix('%') {
        Some(percent) => percent.trim().parse::<f64>().ok()? / 100.0,
        None => value.parse::<f64>().ok()?,
    };
    (share.is_finite() && (0.001..=0.5).contains(&share)).then_some(share)
}

/// Whole-second durations the way Go prints them (`1h`, `6s`, `1m30s`).
fn go_format(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&str, &str)]) -> (AutoscalingAnnotations, Vec<FieldError>) {
        let map = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        AutoscalingAnnotations::parse(&map, "metadata.annotations")
    }

    #[test]
    fn parses_knative_and_serval_keys() {
        let (a, errors) = parse(&[
            (knative::TARGET, "10"),
            (knative::WINDOW, "2m"),
            (knative::MIN_SCALE, "0"),
            (knative::MAX_SCALE, "5"),
            (knative::METRIC, "rps"),
            (serval::METRICS, "concurrency, tokens"),
            (serval::RATE_LIMIT, "20"),
        ]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(a.target, Some(10.0));
        assert_eq!(a.window, Some(Duration::from_secs(120)));
        assert_eq!(a.min_scale, Some(0));
        assert_eq!(a.metric, Some(ScaleMetric::Rps));
        assert_eq!(
            a.metrics,
            vec![ScaleMetric::Concurrency, ScaleMetric::Tokens]
        );
        assert_eq!(a.rate_limit, Some(20.0));
    }

    #[test]
    fn serval_class_and_its_cold_start_budget() {
        let (a, errors) = parse(&[
            (knative::CLASS, knative::CLASS_SERVAL),
            (serval::COLD_START_BUDGET, "1.5%"),
        ]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(a.class.as_deref(), Some(knative::CLASS_SERVAL));
        assert_eq!(a.cold_start_budget, Some(0.015));
        let (a, _) = parse(&[(serval::COLD_START_BUDGET, "0.02")]);
        assert_eq!(a.cold_start_budget, Some(0.02));
        for bad in ["0%", "80%", "one percent", "NaN"] {
            let (a, errors) = parse(&[(serval::COLD_START_BUDGET, bad)]);
            assert_eq!(a.cold_start_budget, None, "{bad}");
            assert_eq!(
                errors[0].path,
                format!("metadata.annotations[{}]", serval::COLD_START_BUDGET)
            );
        }
    }

    #[test]
    fn prompt_token_cost_is_a_bounded_number() {
        let (a, errors) = parse(&[(serval::PROMPT_TOKEN_COST, "0.05")]);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(a.prompt_token_cost, Some(0.05));
        let (a, _) = parse(&[(serval::PROMPT_TOKEN_COST, "0")]);
        assert_eq!(a.prompt_token_cost, Some(0.0));
        for bad in ["-1", "101", "cheap"] {
            let (a, errors) = parse(&[(serval::PROMPT_TOKEN_COST, bad)]);
            assert_eq!(a.prompt_token_cost, None, "{bad}");
            assert_eq!(
                errors[0].path,
                format!("metadata.annotations[{}]", serval::PROMPT_TOKEN_COST)
            );
        }
    }

    #[test]
    fn out_of_range_values_name_the_key() {
        let (_, errors) = parse(&[
            (knative::WINDOW, "2s"),
            (knative::PANIC_THRESHOLD_PERCENTAGE, "100"),
            (knative::MIN_SCALE, "3"),
            (knative::MAX_SCALE, "2"),
            (serval::METRICS, "concurrency,latency"),
        ]);
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            vec![
                "metadata.annotations[autoscaling.knative.dev/window]",
                "metadata.annotations[autoscaling.knative.dev/panic-threshold-percentage]",
                "metadata.annotations[serving.serval.dev/metrics]",
                "metadata.annotations[autoscaling.knative.dev/min-scale]",
            ]
        );
    }
}
