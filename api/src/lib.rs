//! `serval-api` holds the shapes every other Serval crate agrees on: the KServe-compatible
//! `serving.kserve.io` resources (`InferenceService`, `ServingRuntime`,
//! `ClusterServingRuntime`), the annotation keys Serval honours, the `Stat` that queue-proxies
//! report, and the pure functions that validate manifests and select a runtime for a model.
//! It performs no I/O: callers parse, validate and decide with it, and do the talking elsewhere.

pub mod annotations;
pub mod component;
pub mod crd;
pub mod duration;
pub mod inference_service;
pub mod manifest;
pub mod predictor;
pub mod runtime_selection;
mod schema;
pub mod schema_check;
pub mod serving_runtime;
pub mod stat;
pub mod status;
pub mod validation;

pub use inference_service::{InferenceService, InferenceServiceSpec};
pub use serving_runtime::{ClusterServingRuntime, ServingRuntime, ServingRuntimeSpec};
pub use stat::Stat;
pub use validation::FieldError;

/// The API group of KServe's serving resources, which Serval serves unchanged.
pub const GROUP: &str = "serving.kserve.io";
