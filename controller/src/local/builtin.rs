//! The ServingRuntimes Serval brings: its own model server for the formats it evaluates.

use k8s_openapi::api::core::v1::Container;
use serval_api::predictor::Protocol;
use serval_api::serving_runtime::{ClusterServingRuntimeSpec, SupportedModelFormat};
use serval_api::{ClusterServingRuntime, ServingRuntimeSpec};

use super::translate::SERVAL_IMAGE;

/// `serval-runtime`: ONNX, XGBoost and LightGBM over V1, V2 and gRPC, auto-selected.
pub fn builtin_runtimes() -> Vec<ClusterServingRuntime> {
    let format = |name: &str| SupportedModelFormat {
        name: name.to_string(),
        version: None,
        auto_select: Some(true),
        priority: Some(1),
    };
    let spec = ServingRuntimeSpec {
        supported_model_formats: vec![format("onnx"), format("xgboost"), format("lightgbm")],
        protocol_versions: vec![Protocol::V1, Protocol::V2, Protocol::GrpcV2],
        containers: vec![Container {
            name: "kserve-container".into(),
            image: Some(format!("{SERVAL_IMAGE}:latest")),
            args: Some(vec![
                "runtime".into(),
                "--model-name={{.Name}}".into(),
                "--model-dir=/mnt/models".into(),
            ]),
            ..Container::default()
        }],
        ..ServingRuntimeSpec::default()
    };
    vec![ClusterServingRuntime::new(
        "serval-runtime",
        ClusterServingRuntimeSpec { runtime: spec },
    )]
}
