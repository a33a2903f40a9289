//! `serving.kserve.io/v1alpha1 ServingRuntime` and `ClusterServingRuntime`: which container
//! serves which model formats over which protocols.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Affinity, Container, LocalObjectReference, Toleration, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::predictor::Protocol;

/// A model format a runtime can serve.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SupportedModelFormat {
    pub name: String,
    /// Major version is recommended (`"1"`, not `"1.15.4"`); a model version `1.x` matches it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Whether the runtime may be chosen for this format when a model names no runtime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_select: Option<bool>,
    /// Among auto-selectable runtimes for a format, the higher priority wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
}

/// What both runtime kinds declare.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "serving.kserve.io",
    version = "v1alpha1",
    kind = "ServingRuntime",
    plural = "servingruntimes",
    singular = "servingruntime",
    category = "kserve",
    derive = "PartialEq",
    namespaced,
    printcolumn = r#"{"name":"Disabled","type":"boolean","jsonPath":".spec.disabled"}"#,
    printcolumn = r#"{"name":"ModelType","type":"string","jsonPath":".spec.supportedModelFormats[*].name"}"#,
    printcolumn = r#"{"name":"Containers","type":"string","jsonPath":".spec.containers[*].name"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ServingRuntimeSpec {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supported_model_formats: Vec<SupportedModelFormat>,
    /// Protocols the runtime speaks; empty accepts any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub protocol_versions: Vec<Protocol>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_model: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// The serving containers; args may use `{{.Name}}`, `{{.Namespace}}`,
    /// `{{.Labels.<key>}}` and `{{.Annotations.<key>}}` of the InferenceService.
    pub containers: Vec<Container>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_list")]
    pub volumes: Option<Vec<Volume>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub affinity: Option<Affinity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerations: Option<Vec<Toleration>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secrets: Option<Vec<LocalObjectReference>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduler_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_ipc: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_policy: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_data_endpoint: Option<String>,
    #[serde(
        default,
        rename = "grpcEndpoint",
        skip_serializing_if = "Option::is_none"
    )]
    pub grpc_management_endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_data_endpoint: Option<String>,
    /// ModelMesh and multi-node settings, passed through as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub storage_helper: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub built_in_adapter: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "crate::schema::preserve_unknown_object")]
    pub worker_spec: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u16>,
}

/// The cluster-wide twin of `ServingRuntime`, usable from every namespace.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "serving.kserve.io",
    version = "v1alpha1",
    kind = "ClusterServingRuntime",
    plural = "clusterservingruntimes",
    singular = "clusterservingruntime",
    category = "kserve",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Disabled","type":"boolean","jsonPath":".spec.disabled"}"#,
    printcolumn = r#"{"name":"ModelType","type":"string","jsonPath":".spec.supportedModelFormats[*].name"}"#,
    printcolumn = r#"{"name":"Containers","type":"string","jsonPath":".spec.containers[*].name"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
pub struct ClusterServingRuntimeSpec {
    #[serde(flatten)]
    pub runtime: ServingRuntimeSpec,
}

impl ServingRuntimeSpec {
    pub fn is_disabled(&self) -> bool {
        self.disabled.unwrap_or(false)
    }

    pub fn is_multi_model(&self) -> bool {
        self.multi_model.unwrap_or(false)
    }

    /// Whether the runtime speaks `protocol`; a runtime that lists none accepts any.
    pub fn supports_protocol(&self, protocol: Protocol) -> bool {
        self.protocol_versions.is_empty() || self.protocol_versions.contains(&protocol)
    }
}

/// An error in a `{{...}}` placeholder of a runtime container's args.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TemplateError {
    #[error("unclosed placeholder in {0:?}")]
    Unclosed(String),
    #[error("unknown placeholder {{{{{0}}}}}: use .Name, .Namespace, .Labels.<key> or .Annotations.<key>")]
    Unknown(String),
}

/// Renders KServe's Go-template placeholders in one container argument with the
/// InferenceService's metadata. A missing label or annotation renders empty.
pub fn render_arg(arg: &str, meta: &ObjectMeta) -> Result<String, TemplateError> {
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| TemplateError::Unclosed(arg.to_string()))?;
        out.push_str(&resolve_placeholder(after[..end].trim(), meta)?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn resolve_placeholder(expr: &str, meta: &ObjectMeta) -> Result<String, TemplateError> {
    let lookup = |map: &Option<BTreeMap<String, String>>, key: &str| {
        map.as_ref()
            .and_then(|m| m.get(key))
            .cloned()
            .unwrap_or_default()
    };
    match expr {
        ".Name" => Ok(meta.name.clone().unwrap_or_default()),
        ".Namespace" => Ok(meta.namespace.clone().unwrap_or_default()),
        _ => {
            if let Some(key) = expr.strip_prefix(".Labels.") {
                Ok(lookup(&meta.labels, key))
            } else if let Some(key) = expr.strip_prefix(".Annotations.") {
                Ok(lookup(&meta.annotations, key))
            } else {
                Err(TemplateError::Unknown(expr.to_string()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> ObjectMeta {
        ObjectMeta {
            name: Some("iris".into()),
            namespace: Some("ml".into()),
            labels: Some([("team".to_string(), "search".to_string())].into()),
            ..ObjectMeta::default()
        }
    }

    #[test]
    fn renders_kserve_placeholders() {
        assert_eq!(
            render_arg("--model_name={{.Name}}", &meta()).unwrap(),
            "--model_name=iris"
        );
        assert_eq!(
            render_arg(
                "{{ .Namespace }}/{{.Labels.team}}/{{.Annotations.x}}",
                &meta()
            )
            .unwrap(),
            "ml/search/"
        );
        assert_eq!(render_arg("--port=8080", &meta()).unwrap(), "--port=8080");
    }

    #[test]
    fn rejects_unknown_and_unclosed_placeholders() {
        assert_eq!(
            render_arg("{{.Spec}}", &meta()),
            Err(TemplateError::Unknown(".Spec".into()))
        );
        assert!(matches!(
            render_arg("{{.Name", &meta()),
            Err(TemplateError::Unclosed(_))
        ));
    }
}
