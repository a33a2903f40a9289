//! The revision reconciler, pure: from an InferenceService, the revisions a backend observed
//! and the clock, it decides per component (transformer, predictor, explainer) which revision
//! to create, how traffic splits, which revisions to delete, and the whole KServe status.
//! Kubernetes and `serval dev` apply the same [`Plan`]; neither decides anything itself.
//!
//! The rules follow KServe on Knative: a component's revision template changes only with its
//! spec (not with `canaryTrafficPercent`); the revision that last took the traffic keeps it
//! until a newer one is ready; `canaryTrafficPercent` splits between the latest rolled-out
//! revision and the previous one; a revision that fails, or is not ready within the
//! progress deadline, never takes traffic and turns the component's condition false.

mod status;
mod template;
mod traffic;

#[cfg(test)]
mod tests;

use std::time::{Duration, SystemTime};

use serval_api::inference_service::ComponentKind;
use serval_api::status::InferenceServiceStatus;
use serval_api::InferenceService;

pub use template::{component_template, revision_number, template_hash, ComponentTemplate};

/// How long a new revision may take to become ready before it counts as failed (Knative's
/// `progress-deadline` default).
pub const PROGRESS_DEADLINE: Duration = Duration::from_secs(600);

/// The components in the order requests meet them.
pub const COMPONENTS: [ComponentKind; 3] = [
    ComponentKind::Transformer,
    ComponentKind::Predictor,
    ComponentKind::Explainer,
];

/// What a backend knows about one revision.
#[derive(Clone, Debug, PartialEq)]
pub struct ObservedRevision {
    /// `<isvc>-<component>-<n>`.
    pub name: String,
    pub component: ComponentKind,
    /// The template hash it was made from ([`template_hash`]).
    pub template_hash: String,
    pub created: SystemTime,
    pub health: RevisionHealth,
}

/// Whether a revision can serve, as its pods show it.
#[derive(Clone, Debug, PartialEq)]
pub enum RevisionHealth {
    /// At least one replica answers its readiness probe.
    Ready,
    /// No replica is ready (starting, or scaled to zero).
    NotReady,
    /// No replica is ready, and the cluster says why, which may pass without a change to the
    /// service (a pod that no node can take until one with the resource it asks for joins).
    Waiting { reason: String, message: String },
    /// It cannot become ready without a change: an image that cannot be pulled, a model
    /// server that exits, a model that does not load.
    Failed { reason: String, message: String },
}

/// Why a component cannot be turned into a revision at all (no runtime for the model, a
/// template that does not render); reported as the component's condition.
#[derive(Clone, Debug, PartialEq)]
pub struct TemplateProblem {
    pub reason: String,
    pub message: String,
}

/// Where a service is reached, for the status URLs.
#[derive(Clone, Debug, PartialEq)]
pub struct Addressing {
    /// External domain: `http://<isvc>.<namespace>.<domain>`.
    pub domain: String,
    /// In-cluster suffix: `http://<isvc>.<namespace>.<suffix>`, e.g. `svc.cluster.local`.
    pub cluster_suffix: String,
}

/// A revision to create: its name and the template it comes from.
#[derive(Clone, Debug, PartialEq)]
pub struct NewRevision {
    pub name: String,
    pub component: ComponentKind,
    pub template_hash: String,
}

/// Everything a backend must do to bring one InferenceService in line.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    pub create: Vec<NewRevision>,
    /// Revisions nobody routes to or rolls out any more.
    pub delete: Vec<String>,
    /// The status to publish (traffic included: the activator routes by it).
    pub status: InferenceServiceStatus,
}

/// The whole decision for one InferenceService.
///
/// `templates` holds, per component present in the spec, its template hash or the reason it
/// has none. `observed` are the revisions the backend found (of every component, in any
/// order). `now` stamps condition transitions and bounds the progress deadline.
pub fn reconcile(
    isvc: &InferenceService,
    templates: &[(ComponentKind, Result<String, TemplateProblem>)],
    observed: &[ObservedRevision],
    addressing: &Addressing,
    now: SystemTime,
) -> Plan {
    let published = isvc.status.clone().unwrap_or_default();
    let name = isvc.metadata.name.clone().unwrap_or_default();
    let mut create = Vec::new();
    let mut delete = Vec::new();
    let mut components = Vec::new();
    for kind in COMPONENTS {
        let mine: Vec<&ObservedRevision> =
            observed.iter().filter(|r| r.component == kind).collect();
        let Some((_, template)) = templates.iter().find(|(k, _)| *k == kind) else {
            // The component left the spec: everything it ran goes.
            delete.extend(mine.iter().map(|r| r.name.clone()));
            continue;
        };
        let previous = published.components.get(kind.as_str());
        let decided = traffic::decide(
            &name,
            kind,
            template.as_ref(),
            &mine,
            previous,
            canary_percent(isvc, kind),
            now,
        );
        create.extend(decided.create.clone());
        delete.extend(decided.delete.clone());
        components.push((kind, decided));
    }
    let status = status::build(isvc, &components, &published, addressing, now);
    Plan {
        create,
        delete,
        status,
    }
}

/// KServe's `canaryTrafficPercent` of one component, clamped to 0..=100.
fn canary_percent(isvc: &InferenceService, kind: ComponentKind) -> Option<u32> {
    isvc.spec
        .extension(kind)?
        .canary_traffic_percent
        .map(|p| p.clamp(0, 100) as u32)
}

/// YAML to an InferenceService through JSON values: a direct serde_yaml read of the big
/// Kubernetes types overflows a test thread's stack in debug builds.
#[cfg(test)]
pub(crate) fn parse_isvc(yaml: &str) -> InferenceService {
    let value: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
    serde_json::from_value(serde_json::to_value(value).unwrap()).unwrap()
}
