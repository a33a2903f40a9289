//! Fields shared by every InferenceService component (predictor, transformer, explainer):
//! KServe's `ComponentExtensionSpec` and the inlined pod fields.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, Container, LocalObjectReference, PodSecurityContext, Toleration,
    TopologySpreadConstraint, Volume,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::metric::ScaleMetric;

/// Default for `minReplicas` when unset: one warm replica, as in KServe.
pub const DEFAULT_MIN_REPLICAS: i32 = 1;

/// KServe's `ComponentExtensionSpec`: scaling, traffic, logging and batching for one component.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ComponentExtensionSpec {
    /// Minimum number of replicas; 0 lets the component scale to zero. Defaults to 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<i32>,
    /// Maximum number of replicas; 0 (or unset) means no upper bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replicas: Option<i32>,
    /// Target value of `scaleMetric` per replica.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_target: Option<i32>,
    /// The metric that drives autoscaling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_metric: Option<ScaleMetric>,
    /// `Utilization` or `AverageValue`, for resource metrics (KServe raw deployments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_metric_type: Option<String>,
    /// KServe's KEDA-style autoscaling block, passed through as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub auto_scaling: Option<serde_json::Value>,
    /// Hard limit of requests in flight per replica; 0 means no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_concurrency: Option<i64>,
    /// Request timeout in seconds.
    #[serde(default, rename = "timeout", skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<i64>,
    /// Share of traffic (0..100) the latest revision gets; the rest goes to the last ready one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_traffic_percent: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logger: Option<LoggerSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batcher: Option<Batcher>,
    /// Labels added to the component's pods.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations added to the component's pods and revisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// Deployment strategy (raw deployments), passed through as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub deployment_strategy: Option<serde_json::Value>,
}

impl ComponentExtensionSpec {
    /// `minReplicas` with KServe's default applied.
    pub fn min_replicas_or_default(&self) -> i32 {
        self.min_replicas.unwrap_or(DEFAULT_MIN_REPLICAS)
    }
}

/// Where and what to log for each request (KServe's `logger`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LoggerSpec {
    /// Sink URL for CloudEvents; defaults to the broker in KServe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<LoggerMode>,
    /// Request headers copied into the logged event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_headers: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LoggerMode {
    All,
    Request,
    Response,
}

/// Adaptive batching of concurrent requests into one model call (KServe's `batcher`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Batcher {
    /// Most rows merged into one call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_batch_size: Option<i64>,
    /// Longest a request waits for a batch to fill, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_latency: Option<i64>,
    /// Timeout of a batched call, in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
}

/// The pod fields KServe inlines into each component (a subset of `corev1.PodSpec` with
/// `containers` optional).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PodFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub containers: Option<Vec<Container>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_list")]
    pub init_containers: Option<Vec<Container>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_list")]
    pub volumes: Option<Vec<Volume>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub affinity: Option<Affinity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_list")]
    pub topology_spread_constraints: Option<Vec<TopologySpreadConstraint>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub security_context: Option<PodSecurityContext>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_class_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub termination_grace_period_seconds: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ipc: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_policy: Option<String>,
}
