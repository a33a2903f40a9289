//! `serving.kserve.io/v1beta1 InferenceService`.

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::component::ComponentExtensionSpec;
use crate::predictor::{ExplainerSpec, PredictorSpec, TransformerSpec};
use crate::status::InferenceServiceStatus;

/// A model served behind one URL: a predictor, optionally fronted by a transformer and
/// accompanied by an explainer. Each component scales on its own.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "serving.kserve.io",
    version = "v1beta1",
    kind = "InferenceService",
    plural = "inferenceservices",
    singular = "inferenceservice",
    shortname = "isvc",
    category = "kserve",
    derive = "PartialEq",
    namespaced,
    status = "InferenceServiceStatus",
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".status.url"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type=='Ready')].status"}"#,
    printcolumn = r#"{"name":"Prev","type":"integer","jsonPath":".status.components.predictor.traffic[?(@.tag=='prev')].percent"}"#,
    printcolumn = r#"{"name":"Latest","type":"integer","jsonPath":".status.components.predictor.traffic[?(@.latestRevision==true)].percent"}"#,
    printcolumn = r#"{"name":"LatestReadyRevision","type":"string","jsonPath":".status.components.predictor.latestReadyRevision"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct InferenceServiceSpec {
    pub predictor: PredictorSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transformer: Option<TransformerSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub explainer: Option<ExplainerSpec>,
}

/// The components of an InferenceService, in the order requests meet them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ComponentKind {
    Transformer,
    Predictor,
    Explainer,
}

impl ComponentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Transformer => "transformer",
            Self::Predictor => "predictor",
            Self::Explainer => "explainer",
        }
    }
}

impl InferenceServiceSpec {
    /// The KServe extension fields (scaling, traffic, timeouts) of `kind`, when the spec has
    /// that component.
    pub fn extension(&self, kind: ComponentKind) -> Option<&ComponentExtensionSpec> {
        match kind {
            ComponentKind::Predictor => Some(&self.predictor.component),
            ComponentKind::Transformer => self.transformer.as_ref().map(|t| &t.component),
            ComponentKind::Explainer => self.explainer.as_ref().map(|e| &e.component),
        }
    }

    /// The component that receives a client's requests: the transformer when there is one.
    pub fn entry_component(&self) -> ComponentKind {
        if self.transformer.is_some() {
            ComponentKind::Transformer
        } else {
            ComponentKind::Predictor
        }
    }
}
