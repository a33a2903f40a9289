//! The ServingRuntimes Serval brings: its own model server for the formats it evaluates,
//! and the same server for GGUF language models over OpenAI's API.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Container;
use serval_api::predictor::Protocol;
use serval_api::serving_runtime::{ClusterServingRuntimeSpec, SupportedModelFormat};
use serval_api::{ClusterServingRuntime, ServingRuntimeSpec};

use super::translate::SERVAL_IMAGE;

/// `serval-runtime`: ONNX, XGBoost and LightGBM over V1, V2 and gRPC, auto-selected; and
/// `serval-llm`: GGUF language models over OpenAI's API, its queue depth and KV-cache usage
/// scraped from the runtime's `vllm:num_requests_waiting` and `vllm:kv_cache_usage_perc`.
pub fn builtin_runtimes() -> Vec<ClusterServingRuntime> {
    let format = |name: &str| SupportedModelFormat {
        name: name.to_string(),
        version: None,
        auto_select: Some(true),
        priority: Some(1),
    };
    let runtime = |extra_args: &[&str]| {
        let mut args = vec![
            "runtime".to_string(),
            "--model-name={{.Name}}".to_string(),
            "--model-dir=/mnt/models".to_string(),
        ];
        args.extend(extra_args.iter().map(|a| a.to_string()));
        vec![Container {
            name: "kserve-container".into(),
            image: Some(format!("{SERVAL_IMAGE}:latest")),
            args: Some(args),
            ..Container::default()
        }]
    };
    let spec = ServingRuntimeSpec {
        supported_model_formats: vec![format("onnx"), format("xgboost"), format("lightgbm")],
        protocol_versions: vec![Protocol::V1, Protocol::V2, Protocol::GrpcV2],
        containers: runtime(&[]),
        ..ServingRuntimeSpec::default()
    };
    let llm = ServingRuntimeSpec {
        supported_model_formats: vec![format("gguf")],
        protocol_versions: Vec::new(),
        annotations: Some(BTreeMap::from([
            (
                serval_api::annotations::serval::QUEUE_DEPTH_METRIC.to_string(),
                "vllm:num_requests_waiting".to_string(),
            ),
            (
                serval_api::annotations::serval::KV_CACHE_METRIC.to_string(),
                "vllm:kv_cache_usage_perc".to_string(),
            ),
        ])),
        containers: runtime(&["--model-format=gguf"]),
        ..ServingRuntimeSpec::default()
    };
    vec![
        ClusterServingRuntime::new(
            "serval-runtime",
            ClusterServingRuntimeSpec { runtime: spec },
        ),
        ClusterServingRuntime::new("serval-llm", ClusterServingRuntimeSpec { runtime: llm }),
    ]
}
