//! The Services of an InferenceService: per revision a private ClusterIP Service over its
//! pods (its EndpointSlices are what the activator balances over), and per component an
//! ExternalName Service to the activator, so `<isvc>.<ns>.svc.cluster.local` and
//! `<isvc>-predictor.<ns>.svc.cluster.local` work inside the cluster without a mesh.

use k8s_openapi::api::core::v1::Service;
use serde_json::json;
use serval_api::inference_service::ComponentKind;
use serval_api::revision::{ADMIN_PORT_NAME, REVISION_LABEL};
use serval_api::InferenceService;

use super::labels;
use super::revision::{ADMIN_PORT, QUEUE_PROXY_PORT};
use super::Settings;

/// The private Service of one revision.
pub fn revision_service(isvc: &InferenceService, kind: ComponentKind, revision: &str) -> Service {
    let name = isvc.metadata.name.clone().unwrap_or_default();
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": revision,
            "namespace": isvc.metadata.namespace,
            "labels": labels::revision(&name, kind, revision),
            "ownerReferences": [labels::owner(isvc)],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": {REVISION_LABEL: revision},
            "ports": [
                {"name": "http", "port": 80, "targetPort": QUEUE_PROXY_PORT, "protocol": "TCP"},
                {"name": ADMIN_PORT_NAME, "port": ADMIN_PORT, "targetPort": ADMIN_PORT, "protocol": "TCP"},
            ],
        },
    }))
    .expect("a revision Service is a valid Service")
}

/// The Service named `service_name` that reaches the activator (`<isvc>` or
/// `<isvc>-<component>`); the activator routes by the Host it is called with.
pub fn entry_service(
    isvc: &InferenceService,
    service_name: &str,
    kind: Option<ComponentKind>,
    settings: &Settings,
) -> Service {
    let name = isvc.metadata.name.clone().unwrap_or_default();
    let labels = match kind {
        Some(kind) => labels::component(&name, kind),
        None => labels::service(&name),
    };
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name,
            "namespace": isvc.metadata.namespace,
            "labels": labels,
            "ownerReferences": [labels::owner(isvc)],
        },
        "spec": {
            "type": "ExternalName",
            "externalName": settings.activator_host(),
            "sessionAffinity": "None",
        },
    }))
    .expect("an entry Service is a valid Service")
}
