//! `serval-api` holds the shapes every other Serval crate agrees on: the KServe-compatible
//! `serving.kserve.io` resources (`InferenceService`, `ServingRuntime`,
//! `ClusterServingRuntime`), the annotation keys Serval honours, the `Stat` that queue-proxies
//! report, the poke and report an activator sends the autoscaler, and the pure functions
//! that validate manifests and select a runtime for a model. It holds types and pure
//! functions only: callers parse, validate and decide with it, and do the talking elsewhere.
//!
//! The Kubernetes resource types sit behind the default `kubernetes` feature, so the
//! queue-proxy can share `Stat`, headers and annotation parsing without compiling them.

pub mod annotations;
pub mod autoscaler_wire;
pub mod duration;
pub mod error_chain;
pub mod field_error;
pub mod headers;
pub mod metric;
pub mod model_cache;
pub mod stat;

#[cfg(feature = "kubernetes")]
pub mod component;
#[cfg(feature = "kubernetes")]
pub mod crd;
#[cfg(feature = "kubernetes")]
pub mod inference_service;
#[cfg(feature = "kubernetes")]
pub mod local_model_cache;
#[cfg(feature = "kubernetes")]
pub mod manifest;
#[cfg(feature = "kubernetes")]
pub mod predictor;
#[cfg(feature = "kubernetes")]
pub mod revision;
#[cfg(feature = "kubernetes")]
pub mod runtime_selection;
#[cfg(feature = "kubernetes")]
mod schema;
#[cfg(feature = "kubernetes")]
pub mod schema_check;
#[cfg(feature = "kubernetes")]
pub mod serving_runtime;
#[cfg(feature = "kubernetes")]
pub mod status;
#[cfg(feature = "kubernetes")]
pub mod validation;

pub use field_error::FieldError;
pub use metric::ScaleMetric;
pub use stat::Stat;

#[cfg(feature = "kubernetes")]
pub use inference_service::{InferenceService, InferenceServiceSpec};
#[cfg(feature = "kubernetes")]
pub use local_model_cache::LocalModelCache;
#[cfg(feature = "kubernetes")]
pub use serving_runtime::{ClusterServingRuntime, ServingRuntime, ServingRuntimeSpec};

/// The API group of KServe's serving resources, which Serval serves unchanged.
pub const GROUP: &str = "serving.kserve.io";
