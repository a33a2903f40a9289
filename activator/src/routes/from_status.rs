//! Routes from InferenceServices: each component's traffic as the controller published it
//! in `status.components.<component>.traffic` (revision, percent, tag), the throttling
//! settings from the component's spec, the rate limit and tag routing from annotations.

use serval_api::component::ComponentExtensionSpec;
use serval_api::inference_service::InferenceService;
use serval_api::status::ComponentStatus;

use super::{apply_annotations, revision_settings, Component, ServiceRoute, TrafficTarget};

/// The service's route, or `None` while no component has a revision to send traffic to.
pub fn service_route(isvc: &InferenceService) -> Option<ServiceRoute> {
    let namespace = isvc.metadata.namespace.clone()?;
    let name = isvc.metadata.name.clone()?;
    let status = isvc.status.as_ref()?;
    let spec = &isvc.spec;
    let components = [
        (Component::Predictor, Some(&spec.predictor.component)),
        (
            Component::Transformer,
            spec.transformer.as_ref().map(|t| &t.component),
        ),
        (
            Component::Explainer,
            spec.explainer.as_ref().map(|e| &e.component),
        ),
    ];
    let mut route = ServiceRoute::new(&namespace, &name);
    for (component, extension) in components {
        let Some(extension) = extension else {
            continue;
        };
        // A component of the spec with nothing to route to yet is still there: requests for
        // it get 503, and a transformer that is not up is never skipped for its predictor.
        let traffic = status
            .components
            .get(component_key(component))
            .map(|published| traffic(&namespace, extension, published))
            .unwrap_or_default();
        route.components.insert(component, traffic);
    }
    if route.components.values().all(Vec::is_empty) {
        return None;
    }
    let mut annotations = isvc.metadata.annotations.clone().unwrap_or_default();
    annotations.extend(
        spec.predictor
            .component
            .annotations
            .clone()
            .unwrap_or_default(),
    );
    apply_annotations(&mut route, &annotations);
    Some(route)
}

fn component_key(component: Component) -> &'static str {
    match component {
        Component::Predictor => "predictor",
        Component::Transformer => "transformer",
        Component::Explainer => "explainer",
    }
}

/// The published traffic targets, or all of it to the latest ready revision when the
/// controller has not split it.
fn traffic(
    namespace: &str,
    extension: &ComponentExtensionSpec,
    published: &ComponentStatus,
) -> Vec<TrafficTarget> {
    let settings =
        |revision: &str| revision_settings(&format!("{namespace}/{revision}"), extension);
    let split: Vec<TrafficTarget> = published
        .traffic
        .iter()
        .filter_map(|t| {
            let revision = t.revision_name.as_deref()?;
            let percent = u32::try_from(t.percent.unwrap_or(0).clamp(0, 100)).ok()?;
            let target = TrafficTarget::new(settings(revision), percent);
            Some(match &t.tag {
                Some(tag) => target.tagged(tag.clone()),
                None => target,
            })
        })
        .collect();
    if !split.is_empty() {
        return split;
    }
    published
        .latest_ready_revision
        .as_deref()
        .map(|revision| vec![TrafficTarget::new(settings(revision), 100).tagged("latest")])
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn isvc(status: serde_json::Value) -> InferenceService {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "serving.kserve.io/v1beta1",
            "kind": "InferenceService",
            "metadata": {
                "name": "iris", "namespace": "ml",
                "annotations": { "serving.serval.dev/rate-limit": "20" }
            },
            "spec": { "predictor": {
                "containerConcurrency": 4, "timeout": 30,
                "model": { "modelFormat": { "name": "onnx" }, "storageUri": "s3://m/iris" }
            }},
            "status": status
        }))
        .unwrap()
    }

    #[test]
    fn the_published_split_becomes_the_route() {
        let route = service_route(&isvc(serde_json::json!({ "components": { "predictor": {
            "latestReadyRevision": "iris-predictor-2",
            "traffic": [
                { "revisionName": "iris-predictor-2", "percent": 20, "tag": "latest", "latestRevision": true },
                { "revisionName": "iris-predictor-1", "percent": 80, "tag": "prev" }
            ]
        }}})))
        .unwrap();
        let traffic = &route.components[&Component::Predictor];
        assert_eq!(traffic.len(), 2);
        assert_eq!(traffic[0].revision.name, "ml/iris-predictor-2");
        assert_eq!(traffic[0].percent, 20);
        assert_eq!(traffic[1].tag.as_deref(), Some("prev"));
        assert_eq!(traffic[1].revision.container_concurrency, 4);
        assert_eq!(traffic[1].revision.timeout, Duration::from_secs(30));
        assert_eq!(route.rate_limit.unwrap().per_second, 20.0);
    }

    #[test]
    fn latest_ready_without_a_split_takes_everything_and_nothing_ready_is_no_route() {
        let route = service_route(&isvc(serde_json::json!({ "components": { "predictor": {
            "latestReadyRevision": "iris-predictor-1"
        }}})))
        .unwrap();
        assert_eq!(route.components[&Component::Predictor][0].percent, 100);
        assert!(service_route(&isvc(serde_json::json!({}))).is_none());
        assert!(service_route(&isvc(
            serde_json::json!({ "components": { "predictor": {} } })
        ))
        .is_none());
    }

    #[test]
    fn a_transformer_not_up_yet_is_the_entry_with_nothing_to_route_to() {
        let mut with_transformer = isvc(serde_json::json!({ "components": { "predictor": {
            "latestReadyRevision": "iris-predictor-1"
        }}}));
        with_transformer.spec.transformer = Some(
            serde_json::from_value(serde_json::json!({
                "containers": [{ "name": "kserve-container", "image": "t" }]
            }))
            .unwrap(),
        );
        let route = service_route(&with_transformer).unwrap();
        assert_eq!(route.entry(), Component::Transformer);
        assert!(route.components[&Component::Transformer].is_empty());
    }
}
