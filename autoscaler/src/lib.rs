//! `serval-autoscaler` decides how many replicas each revision needs. It turns per-pod
//! `Stat`s into revision totals ([`pod_sample`], [`activator_sample`]), keeps them in 1 s
//! buckets over the stable and panic windows ([`MetricWindows`]), and runs Knative's KPA
//! algorithm over one or more metrics ([`Decider`]) with the settings resolved from the
//! KServe component, its annotations and the `config-autoscaler` ConfigMap
//! ([`ScalingSpec`], [`AutoscalerConfig`]). Everything here is pure: time is passed in as
//! `now`, so the live loop and the simulator run the same code.

mod adaptive;
mod buckets;
mod collect;
mod config;
mod decider;
mod decision;
mod delay;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
pub mod live;
mod metrics;
mod rules;
mod spec;
mod zero;

pub use adaptive::{Prediction, TargetChoice, ZeroPlan};
pub use collect::{activator_sample, pod_sample, sample_size};
pub use config::{AutoscalerConfig, ConfigError};
pub use decider::Decider;
pub use decision::{Decision, MetricDecision};
pub use metrics::{Aggregation, MetricSample, MetricWindows, WindowAverages};
pub use serval_api::component::ScaleMetric;
pub use spec::{AdaptiveSettings, MetricTarget, ScalingSpec, METRIC_AGGREGATION_ALGORITHM};
