//! The predictor: a model (`model`, or one of KServe's legacy framework fields) or custom
//! containers, plus the shared component fields.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    ContainerPort, EnvFromSource, EnvVar, Lifecycle, Probe, ResourceRequirements, SecurityContext,
    VolumeMount,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::component::{ComponentExtensionSpec, PodFields};

/// The wire protocol a model is served with.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
pub enum Protocol {
    /// KServe V1 (TensorFlow-serving style `instances` → `predictions`).
    #[serde(rename = "v1")]
    V1,
    /// Open Inference Protocol (KServe V2) over REST.
    #[serde(rename = "v2")]
    V2,
    #[serde(rename = "grpc-v1")]
    GrpcV1,
    /// Open Inference Protocol over gRPC.
    #[serde(rename = "grpc-v2")]
    GrpcV2,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
            Self::GrpcV1 => "grpc-v1",
            Self::GrpcV2 => "grpc-v2",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A model format and, optionally, its version (`modelFormat`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct ModelFormat {
    /// Format name, e.g. `sklearn`, `onnx`, `xgboost`, `huggingface`.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// One extra storage location and where it is mounted (`storageUris`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageUri {
    pub uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_path: Option<String>,
}

/// KServe's `PredictorExtensionSpec`: where the model lives, how it is spoken to, and the
/// container fields inlined next to them.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PredictorExtensionSpec {
    /// Where the model is downloaded from: s3://, gs://, az://, https://, pvc://, file://, hf://.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_uris: Option<Vec<StorageUri>>,
    /// Storage given by key into the storage config secret, passed through as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub storage: Option<serde_json::Value>,
    /// The runtime image tag to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<Protocol>,
    #[serde(flatten)]
    pub container: InlineContainer,
}

/// The `corev1.Container` fields KServe inlines into a model spec; `name` is optional here.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InlineContainer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<Vec<EnvVar>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_from: Option<Vec<EnvFromSource>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<ContainerPort>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_mounts: Option<Vec<VolumeMount>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub liveness_probe: Option<Probe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub readiness_probe: Option<Probe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub startup_probe: Option<Probe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub lifecycle: Option<Lifecycle>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub security_context: Option<SecurityContext>,
}

/// KServe's `ModelSpec`: the model-format-first way to declare a predictor.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelSpec {
    pub model_format: ModelFormat,
    /// Name of a ServingRuntime (namespaced) or ClusterServingRuntime to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<String>,
    #[serde(flatten)]
    pub extension: PredictorExtensionSpec,
}

impl ModelSpec {
    /// The protocol the model is served with; V1 when unset, as in KServe.
    pub fn protocol(&self) -> Protocol {
        self.extension.protocol_version.unwrap_or(Protocol::V1)
    }
}

/// The predictor component.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PredictorSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sklearn: Option<PredictorExtensionSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xgboost: Option<PredictorExtensionSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lightgbm: Option<PredictorExtensionSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub onnx: Option<PredictorExtensionSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tensorflow: Option<PredictorExtensionSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pytorch: Option<PredictorExtensionSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub triton: Option<PredictorExtensionSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pmml: Option<PredictorExtensionSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paddle: Option<PredictorExtensionSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub huggingface: Option<PredictorExtensionSpec>,
    /// Multi-node worker settings (KServe's `workerSpec`), passed through as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub worker_spec: Option<serde_json::Value>,
    #[serde(flatten)]
    pub pod: PodFields,
    #[serde(flatten)]
    pub component: ComponentExtensionSpec,
}

/// How a predictor is implemented once the legacy framework fields are normalised.
#[derive(Clone, Debug, PartialEq)]
pub enum PredictorImplementation {
    /// A model served by a ServingRuntime.
    Model(Box<ModelSpec>),
    /// The user's own containers.
    Custom,
}

impl PredictorSpec {
    /// The legacy framework fields that are set, with their model format names.
    pub fn frameworks(&self) -> Vec<(&'static str, &PredictorExtensionSpec)> {
        let all = [
            ("sklearn", &self.sklearn),
            ("xgboost", &self.xgboost),
            ("lightgbm", &self.lightgbm),
            ("onnx", &self.onnx),
            ("tensorflow", &self.tensorflow),
            ("pytorch", &self.pytorch),
            ("triton", &self.triton),
            ("pmml", &self.pmml),
            ("paddle", &self.paddle),
            ("huggingface", &self.huggingface),
        ];
        all.into_iter()
            .filter_map(|(name, spec)| spec.as_ref().map(|s| (name, s)))
            .collect()
    }

    /// Names of every model implementation that is set (`model` and framework fields).
    pub fn model_implementations(&self) -> Vec<&'static str> {
        let mut names: Vec<&'static str> = self.model.iter().map(|_| "model").collect();
        names.extend(self.frameworks().into_iter().map(|(name, _)| name));
        names
    }

    /// The predictor as a `ModelSpec`, with a legacy framework field turned into
    /// `model.modelFormat.name`, or `Custom` when only containers are given. `None` when no
    /// implementation, or more than one, is set (validation reports which).
    pub fn implementation(&self) -> Option<PredictorImplementation> {
        let frameworks = self.frameworks();
        match (&self.model, frameworks.as_slice()) {
            (Some(model), []) => Some(PredictorImplementation::Model(Box::new(model.clone()))),
            (None, [(name, spec)]) => Some(PredictorImplementation::Model(Box::new(ModelSpec {
                model_format: ModelFormat {
                    name: (*name).to_string(),
                    version: None,
                },
                runtime: None,
                extension: (*spec).clone(),
            }))),
            (None, []) if self.pod.containers.as_ref().is_some_and(|c| !c.is_empty()) => {
                Some(PredictorImplementation::Custom)
            }
            _ => None,
        }
    }
}

/// The transformer component: the user's containers, in front of the predictor.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TransformerSpec {
    #[serde(flatten)]
    pub pod: PodFields,
    #[serde(flatten)]
    pub component: ComponentExtensionSpec,
}

/// The explainer component: KServe's ART explainer or the user's containers.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExplainerSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub art: Option<ArtExplainerSpec>,
    #[serde(flatten)]
    pub pod: PodFields,
    #[serde(flatten)]
    pub component: ComponentExtensionSpec,
}

/// KServe's Adversarial Robustness Toolbox explainer.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ArtExplainerSpec {
    /// The attack type, e.g. `SquareAttack`.
    #[serde(rename = "type")]
    pub explainer_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<BTreeMap<String, String>>,
    #[serde(flatten)]
    pub container: InlineContainer,
}
