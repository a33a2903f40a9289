//! What makes a revision: a component's spec (without `canaryTrafficPercent`, which moves
//! traffic, not pods) and the service's labels and annotations that reach its pods. A change
//! to any of it, or to what a backend adds (the selected runtime), makes a new revision.

use std::collections::BTreeMap;

use serde::Serialize;
use serval_api::annotations::{kserve, serval};
use serval_api::inference_service::ComponentKind;
use serval_api::InferenceService;

/// Annotations that steer routing or tooling, not pods: changing them makes no revision.
const NOT_IN_TEMPLATE: [&str; 4] = [
    "kubectl.kubernetes.io/last-applied-configuration",
    kserve::ENABLE_TAG_ROUTING,
    serval::RATE_LIMIT,
    serval::RATE_LIMIT_BURST,
];

/// The parts of an InferenceService one component's revisions are made from.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ComponentTemplate {
    pub component: &'static str,
    pub spec: serde_json::Value,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// The template of `kind`, or `None` when the spec has no such component.
pub fn component_template(
    isvc: &InferenceService,
    kind: ComponentKind,
) -> Option<ComponentTemplate> {
    let spec = &isvc.spec;
    let mut value = match kind {
        ComponentKind::Predictor => serde_json::to_value(&spec.predictor),
        ComponentKind::Transformer => serde_json::to_value(spec.transformer.as_ref()?),
        ComponentKind::Explainer => serde_json::to_value(spec.explainer.as_ref()?),
    }
    .ok()?;
    if let Some(fields) = value.as_object_mut() {
        fields.remove("canaryTrafficPercent");
    }
    let mut annotations = isvc.metadata.annotations.clone().unwrap_or_default();
    annotations.retain(|key, _| !NOT_IN_TEMPLATE.contains(&key.as_str()));
    Some(ComponentTemplate {
        component: kind.as_str(),
        spec: value,
        labels: isvc.metadata.labels.clone().unwrap_or_default(),
        annotations,
    })
}

/// A short, stable digest of anything serialisable (FNV-1a over its JSON, whose maps are
/// ordered): the same input gives the same hash in every build, so a restarted or upgraded
/// controller recognises the revisions it made.
pub fn template_hash(value: &impl Serialize) -> String {
    let json = serde_json::to_vec(value).unwrap_or_default();
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in json {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// The `<n>` of `<isvc>-<component>-<n>`, when `revision` is one of `kind`'s.
pub fn revision_number(isvc_name: &str, kind: ComponentKind, revision: &str) -> Option<u64> {
    revision
        .strip_prefix(isvc_name)?
        .strip_prefix('-')?
        .strip_prefix(kind.as_str())?
        .strip_prefix('-')?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn isvc(yaml: &str) -> InferenceService {
        crate::rollout::parse_isvc(yaml)
    }

    const BASE: &str = r#"
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: iris
  annotations:
    autoscaling.knative.dev/target: "5"
spec:
  predictor:
    canaryTrafficPercent: 10
    model:
      modelFormat: {name: sklearn}
      storageUri: gs://models/iris
"#;

    fn hash_of(yaml: &str) -> String {
        template_hash(&component_template(&isvc(yaml), ComponentKind::Predictor).unwrap())
    }

    #[test]
    fn the_canary_percent_and_routing_annotations_make_no_new_revision() {
        let base = hash_of(BASE);
        assert_eq!(
            base,
            hash_of(&BASE.replace("canaryTrafficPercent: 10", "canaryTrafficPercent: 50"))
        );
        let tagged = BASE.replace(
            "annotations:\n",
            "annotations:\n    serving.kserve.io/enable-tag-routing: \"true\"\n",
        );
        assert_eq!(base, hash_of(&tagged));
        assert_ne!(
            base,
            hash_of(&BASE.replace("gs://models/iris", "gs://models/iris-v2"))
        );
        assert_ne!(
            base,
            hash_of(&BASE.replace("target: \"5\"", "target: \"6\""))
        );
    }

    #[test]
    fn hashes_are_stable_across_builds() {
        // A fixed input and its digest: a change here would bump every revision on upgrade.
        assert_eq!(template_hash(&"serval"), "a85089f1ba0e528a");
    }

    #[test]
    fn revision_numbers_belong_to_their_component() {
        assert_eq!(
            revision_number("iris", ComponentKind::Predictor, "iris-predictor-12"),
            Some(12)
        );
        assert_eq!(
            revision_number("iris", ComponentKind::Transformer, "iris-predictor-1"),
            None
        );
        assert_eq!(
            revision_number("iris", ComponentKind::Predictor, "iris-v2-predictor-1"),
            None
        );
    }
}
