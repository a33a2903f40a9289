//! A revision's health as its Deployment and pods show it: ready when a replica is ready;
//! failed when a pod cannot start without a change (an image that cannot be pulled, a
//! model server or storage initializer that keeps exiting, a Deployment past its progress
//! deadline); waiting when the scheduler cannot place a pod (until a node can take it); not
//! ready otherwise (starting, or scaled to zero).

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

use crate::rollout::RevisionHealth;

/// Waiting reasons that a pod does not recover from by itself.
const STUCK: [&str; 6] = [
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "CreateContainerError",
];

fn stuck(status: &ContainerStatus, init: bool) -> Option<(String, String)> {
    let state = status.state.as_ref()?;
    if let Some(waiting) = &state.waiting {
        let reason = waiting.reason.clone().unwrap_or_default();
        if STUCK.contains(&reason.as_str()) {
            let last = status
                .last_state
                .as_ref()
                .and_then(|s| s.terminated.as_ref())
                .and_then(|t| t.message.clone());
            let message = last.or_else(|| waiting.message.clone()).unwrap_or_default();
            let reason = match (init, reason.as_str()) {
                (true, "CrashLoopBackOff") => "StorageInitializerFailed".to_string(),
                (false, "CrashLoopBackOff") if status.name == "kserve-container" => {
                    "ModelLoadFailed".to_string()
                }
                _ => reason,
            };
            return Some((
                reason,
                format!("container {}: {}", status.name, message.trim()),
            ));
        }
    }
    None
}

/// A pod the scheduler could not place, with the scheduler's reason ("0/3 nodes are
/// available: 3 Insufficient nvidia.com/gpu.").
fn unschedulable(pod: &Pod) -> Option<RevisionHealth> {
    let conditions = pod.status.as_ref()?.conditions.as_ref()?;
    let scheduled = conditions.iter().find(|c| c.type_ == "PodScheduled")?;
    (scheduled.status == "False" && scheduled.reason.as_deref() == Some("Unschedulable")).then(
        || RevisionHealth::Waiting {
            reason: "Unschedulable".to_string(),
            message: format!(
                "pod {}: {}",
                pod.metadata.name.as_deref().unwrap_or_default(),
                scheduled
                    .message
                    .as_deref()
                    .unwrap_or("no node can take it")
            ),
        },
    )
}

/// The health of the revision whose Deployment is `deployment` and pods are `pods`.
pub fn revision_health(deployment: &Deployment, pods: &[&Pod]) -> RevisionHealth {
    let status = deployment.status.as_ref();
    if status.and_then(|s| s.ready_replicas).unwrap_or(0) > 0 {
        return RevisionHealth::Ready;
    }
    for pod in pods {
        let Some(pod_status) = &pod.status else {
            continue;
        };
        let containers = pod_status
            .init_container_statuses
            .iter()
            .flatten()
            .map(|s| (s, true))
            .chain(
                pod_status
                    .container_statuses
                    .iter()
                    .flatten()
                    .map(|s| (s, false)),
            );
        for (container, init) in containers {
            if let Some((reason, message)) = stuck(container, init) {
                return RevisionHealth::Failed { reason, message };
            }
        }
    }
    if let Some(waiting) = pods.iter().find_map(|pod| unschedulable(pod)) {
        return waiting;
    }
    let conditions = status.and_then(|s| s.conditions.as_ref());
    for condition in conditions.into_iter().flatten() {
        let failed_progress = condition.type_ == "Progressing"
            && condition.status == "False"
            && condition.reason.as_deref() == Some("ProgressDeadlineExceeded");
        let replica_failure = condition.type_ == "ReplicaFailure" && condition.status == "True";
        if failed_progress || replica_failure {
            return RevisionHealth::Failed {
                reason: condition
                    .reason
                    .clone()
                    .unwrap_or_else(|| condition.type_.clone()),
                message: condition.message.clone().unwrap_or_default(),
            };
        }
    }
    RevisionHealth::NotReady
}
