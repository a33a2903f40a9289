//! KServe's `LocalModelCache`: a model (by its storage URI) that nodes should keep locally.
//! Serval honours it with its node model cache: an InferenceService whose storage URI lies
//! under a LocalModelCache's `sourceModelUri` is served from the cache, as if annotated
//! `serving.serval.dev/model-cache: "true"`.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "serving.kserve.io",
    version = "v1alpha1",
    kind = "LocalModelCache",
    plural = "localmodelcaches",
    singular = "localmodelcache",
    category = "kserve",
    derive = "PartialEq",
    printcolumn = r#"{"name":"Source","type":"string","jsonPath":".spec.sourceModelUri"}"#,
    printcolumn = r#"{"name":"Size","type":"string","jsonPath":".spec.modelSize"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct LocalModelCacheSpec {
    /// The model's storage URI; InferenceServices whose storageUri starts with it use the
    /// cache.
    pub source_model_uri: String,
    /// The model's size on disk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_size: Option<Quantity>,
    /// Node groups that keep the model (Serval's cache is on every node that serves it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_groups: Option<Vec<String>>,
}

/// Whether a LocalModelCache with `source` covers `uri`: the same URI, or a prefix of it at
/// a path boundary.
pub fn covers(source: &str, uri: &str) -> bool {
    let source = source.trim_end_matches('/');
    uri == source
        || uri
            .strip_prefix(source)
            .is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::covers;

    #[test]
    fn a_cache_covers_its_uri_and_what_lies_under_it() {
        assert!(covers(
            "hf://meta-llama/llama-3-8b",
            "hf://meta-llama/llama-3-8b"
        ));
        assert!(covers("s3://models/llama/", "s3://models/llama/v1"));
        assert!(!covers("s3://models/llama", "s3://models/llama-2"));
    }
}
