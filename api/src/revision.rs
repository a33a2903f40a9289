//! How a revision looks on Kubernetes: the labels and annotations the controller puts on a
//! revision's Deployment and pods, which the autoscaler and activators select and read.

use std::collections::BTreeMap;

use crate::component::ComponentExtensionSpec;
use crate::FieldError;

/// On a revision's Deployment and pods: the revision's name (`<isvc>-<component>-<n>`).
pub const REVISION_LABEL: &str = "serving.serval.dev/revision";
/// On a revision's Deployment: the component's KServe extension fields (`minReplicas`,
/// `scaleMetric`, `containerConcurrency`, ...) as JSON, as the user wrote them.
pub const COMPONENT_SPEC_ANNOTATION: &str = "serving.serval.dev/component-spec";
/// The name of the queue-proxy's admin container port (`/stats`, `/healthz`).
pub const ADMIN_PORT_NAME: &str = "serval-admin";
/// The queue-proxy's admin port when the pod does not name one.
pub const DEFAULT_ADMIN_PORT: u16 = 9091;

/// The component spec a Deployment carries; an absent annotation means KServe's defaults.
pub fn component_spec(
    annotations: &BTreeMap<String, String>,
) -> Result<ComponentExtensionSpec, FieldError> {
    match annotations.get(COMPONENT_SPEC_ANNOTATION) {
        None => Ok(ComponentExtensionSpec::default()),
        Some(json) => serde_json::from_str(json).map_err(|e| {
            FieldError::new(
                format!("metadata.annotations[{COMPONENT_SPEC_ANNOTATION}]"),
                format!("not a component spec: {e}"),
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_component_spec_or_defaults() {
        let mut annotations = BTreeMap::new();
        assert_eq!(
            component_spec(&annotations).unwrap(),
            ComponentExtensionSpec::default()
        );
        annotations.insert(
            COMPONENT_SPEC_ANNOTATION.to_string(),
            r#"{"minReplicas":0,"containerConcurrency":4}"#.to_string(),
        );
        let spec = component_spec(&annotations).unwrap();
        assert_eq!(spec.min_replicas, Some(0));
        assert_eq!(spec.container_concurrency, Some(4));
        annotations.insert(COMPONENT_SPEC_ANNOTATION.to_string(), "{".to_string());
        let error = component_spec(&annotations).unwrap_err();
        assert!(
            error.to_string().contains(COMPONENT_SPEC_ANNOTATION),
            "{error}"
        );
    }
}
