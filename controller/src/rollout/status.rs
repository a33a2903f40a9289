//! The KServe status of an InferenceService from what was decided for its components:
//! per-component revisions, traffic and URLs, the `<Component>Ready`, `IngressReady` and
//! `Ready` conditions (a transition time changes only when a condition's status does).

use std::time::SystemTime;

use k8s_openapi::jiff::Timestamp;
use serval_api::annotations::kserve::ENABLE_TAG_ROUTING;
use serval_api::inference_service::ComponentKind;
use serval_api::status::{
    condition, Addressable, ComponentStatus, Condition, InferenceServiceStatus,
    ModelRevisionStates, ModelStatus,
};
use serval_api::InferenceService;

use super::traffic::{Decided, Readiness};
use super::Addressing;

fn condition_type(kind: ComponentKind) -> &'static str {
    match kind {
        ComponentKind::Predictor => condition::PREDICTOR_READY,
        ComponentKind::Transformer => condition::TRANSFORMER_READY,
        ComponentKind::Explainer => condition::EXPLAINER_READY,
    }
}

/// RFC 3339 to the second, as the API server writes times.
fn timestamp(now: SystemTime) -> String {
    Timestamp::try_from(now)
        .and_then(|t| Timestamp::from_second(t.as_second()))
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn stamped(
    kind: &str,
    readiness: &Readiness,
    published: &InferenceServiceStatus,
    now: SystemTime,
) -> Condition {
    let before = published
        .conditions
        .iter()
        .find(|c| c.condition_type == kind);
    let last_transition_time = match before {
        Some(c) if c.status == readiness.status => c.last_transition_time.clone(),
        _ => Some(timestamp(now)),
    };
    Condition {
        condition_type: kind.to_string(),
        status: readiness.status.to_string(),
        severity: None,
        last_transition_time,
        reason: readiness.reason.clone(),
        message: readiness.message.clone(),
    }
}

pub(crate) fn build(
    isvc: &InferenceService,
    components: &[(ComponentKind, Decided)],
    published: &InferenceServiceStatus,
    addressing: &Addressing,
    now: SystemTime,
) -> InferenceServiceStatus {
    let name = isvc.metadata.name.clone().unwrap_or_default();
    let namespace = isvc
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_string());
    let tag_routing = isvc
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ENABLE_TAG_ROUTING))
        .is_some_and(|v| v == "true");
    let external = |label: &str| format!("http://{label}.{namespace}.{}", addressing.domain);
    let internal =
        |label: &str| format!("http://{label}.{namespace}.{}", addressing.cluster_suffix);

    let mut status = InferenceServiceStatus {
        observed_generation: isvc.metadata.generation,
        url: Some(external(&name)),
        address: Some(Addressable {
            url: Some(internal(&name)),
        }),
        annotations: published.annotations.clone(),
        ..Default::default()
    };
    let mut readiness = Vec::new();
    for (kind, decided) in components {
        let label = format!("{name}-{}", kind.as_str());
        let traffic = decided
            .traffic
            .iter()
            .cloned()
            .map(|mut t| {
                if tag_routing {
                    t.url = t
                        .tag
                        .as_ref()
                        .map(|tag| external(&format!("{tag}-{label}")));
                }
                t
            })
            .collect();
        status.components.insert(
            kind.as_str().to_string(),
            ComponentStatus {
                url: Some(external(&label)),
                address: Some(Addressable {
                    url: Some(internal(&label)),
                }),
                latest_ready_revision: decided.latest_ready.clone(),
                latest_created_revision: decided.latest_created.clone(),
                previous_rolledout_revision: decided.previous_rolledout.clone(),
                latest_rolledout_revision: decided.latest_rolledout.clone(),
                traffic,
                ..Default::default()
            },
        );
        status.conditions.push(stamped(
            condition_type(*kind),
            &decided.readiness,
            published,
            now,
        ));
        readiness.push(decided.readiness.clone());
    }

    let routed = components.iter().all(|(_, d)| d.routed);
    let ingress = if routed {
        Readiness {
            status: "True",
            reason: None,
            message: None,
        }
    } else {
        Readiness {
            status: "Unknown",
            reason: Some("NoReadyRevision".to_string()),
            message: Some("waiting for a ready revision of every component".to_string()),
        }
    };
    readiness.push(ingress.clone());
    status
        .conditions
        .push(stamped(condition::INGRESS_READY, &ingress, published, now));

    let overall = readiness
        .iter()
        .find(|r| r.status == "False")
        .or_else(|| readiness.iter().find(|r| r.status == "Unknown"))
        .cloned()
        .unwrap_or(Readiness {
            status: "True",
            reason: None,
            message: None,
        });
    status
        .conditions
        .push(stamped(condition::READY, &overall, published, now));
    status.model_status = Some(model_status(components));
    status
}

/// KServe's `modelStatus` for the predictor: up to date, in progress, or blocked by a failure.
fn model_status(components: &[(ComponentKind, Decided)]) -> ModelStatus {
    let predictor = components
        .iter()
        .find(|(k, _)| *k == ComponentKind::Predictor)
        .map(|(_, d)| d);
    let (transition, active) = match predictor.map(|d| d.readiness.status) {
        Some("True") => ("UpToDate", "Loaded"),
        Some("False") => ("BlockedByFailedLoad", "FailedToLoad"),
        _ => ("InProgress", "Pending"),
    };
    ModelStatus {
        transition_status: Some(transition.to_string()),
        states: Some(ModelRevisionStates {
            active_model_state: Some(active.to_string()),
            target_model_state: Some(active.to_string()),
        }),
        ..Default::default()
    }
}
