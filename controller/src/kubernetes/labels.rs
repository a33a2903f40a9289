//! The labels and owner reference every object of an InferenceService carries: KServe's
//! `serving.kserve.io/inferenceservice` and `component`, and Serval's revision label, which
//! the autoscaler and the activator select on.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use serval_api::inference_service::ComponentKind;
use serval_api::revision::REVISION_LABEL;
use serval_api::InferenceService;

/// KServe's label naming the InferenceService an object belongs to.
pub const INFERENCE_SERVICE: &str = "serving.kserve.io/inferenceservice";
/// KServe's label naming the component (`predictor`, `transformer`, `explainer`).
pub const COMPONENT: &str = "component";
/// The ServingRuntime a predictor revision runs.
pub const RUNTIME: &str = "serving.kserve.io/servingruntime";
/// Marks what the controller made, so it lists only its own objects.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGER: &str = "serval";

/// The labels of an InferenceService's objects that belong to no revision.
pub fn service(isvc_name: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (INFERENCE_SERVICE.to_string(), isvc_name.to_string()),
        (MANAGED_BY.to_string(), MANAGER.to_string()),
    ])
}

/// The labels of one component's objects.
pub fn component(isvc_name: &str, kind: ComponentKind) -> BTreeMap<String, String> {
    let mut labels = service(isvc_name);
    labels.insert(COMPONENT.to_string(), kind.as_str().to_string());
    labels
}

/// The labels of one revision's Deployment, pods and Service.
pub fn revision(isvc_name: &str, kind: ComponentKind, revision: &str) -> BTreeMap<String, String> {
    let mut labels = component(isvc_name, kind);
    labels.insert(REVISION_LABEL.to_string(), revision.to_string());
    labels
}

/// The owner reference that lets Kubernetes collect an object with its InferenceService.
pub fn owner(isvc: &InferenceService) -> Value {
    json!({
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "name": isvc.metadata.name,
        "uid": isvc.metadata.uid,
        "controller": true,
        "blockOwnerDeletion": true,
    })
}
