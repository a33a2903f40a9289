//! One component's rollout: the revision to create, which revision serves (and with what
//! share), which are no longer needed, and how the component's condition reads.

use std::collections::BTreeSet;
use std::time::SystemTime;

use serval_api::inference_service::ComponentKind;
use serval_api::status::{ComponentStatus, TrafficTarget};

use super::template::revision_number;
use super::{NewRevision, ObservedRevision, RevisionHealth, TemplateProblem, PROGRESS_DEADLINE};

/// The tag of the revision that takes the canary share (or everything), as in KServe.
pub(crate) const LATEST_TAG: &str = "latest";
/// The tag of the revision that keeps the rest during a canary.
pub(crate) const PREV_TAG: &str = "prev";

/// A component condition before it is stamped with a transition time.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Readiness {
    /// `True`, `False` or `Unknown`.
    pub(crate) status: &'static str,
    pub(crate) reason: Option<String>,
    pub(crate) message: Option<String>,
}

impl Readiness {
    fn ready() -> Self {
        Self {
            status: "True",
            reason: None,
            message: None,
        }
    }

    fn unknown(reason: &str, message: String) -> Self {
        Self {
            status: "Unknown",
            reason: Some(reason.to_string()),
            message: Some(message),
        }
    }

    fn failed(reason: &str, message: String) -> Self {
        Self {
            status: "False",
            reason: Some(reason.to_string()),
            message: Some(message),
        }
    }
}

/// What was decided for one component.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Decided {
    pub(crate) create: Option<NewRevision>,
    pub(crate) delete: Vec<String>,
    pub(crate) latest_created: Option<String>,
    pub(crate) latest_ready: Option<String>,
    pub(crate) latest_rolledout: Option<String>,
    pub(crate) previous_rolledout: Option<String>,
    pub(crate) traffic: Vec<TrafficTarget>,
    /// Whether a ready revision takes the traffic (not just the first one starting).
    pub(crate) routed: bool,
    pub(crate) readiness: Readiness,
}

/// A revision's health once history and the deadline are taken into account: one that was
/// published ready and now has no pods is scaled to zero, still ready; one that never became
/// ready within the progress deadline has failed.
fn effective(
    revision: &ObservedRevision,
    was_ready: &BTreeSet<&str>,
    now: SystemTime,
) -> RevisionHealth {
    match &revision.health {
        RevisionHealth::NotReady | RevisionHealth::Waiting { .. }
            if was_ready.contains(revision.name.as_str()) =>
        {
            RevisionHealth::Ready
        }
        RevisionHealth::NotReady | RevisionHealth::Waiting { .. }
            if now
                .duration_since(revision.created)
                .is_ok_and(|age| age > PROGRESS_DEADLINE) =>
        {
            let why = match &revision.health {
                RevisionHealth::Waiting { message, .. } => format!(": {message}"),
                _ => String::new(),
            };
            RevisionHealth::Failed {
                reason: "ProgressDeadlineExceeded".to_string(),
                message: format!(
                    "no replica became ready within {} s{why}",
                    PROGRESS_DEADLINE.as_secs()
                ),
            }
        }
        health => health.clone(),
    }
}

/// Revisions the published status already counted as ready. (Not every revision in the
/// traffic: a first revision takes it while it is still starting.)
fn published_ready(previous: Option<&ComponentStatus>) -> BTreeSet<&str> {
    let Some(previous) = previous else {
        return BTreeSet::new();
    };
    [
        &previous.latest_ready_revision,
        &previous.latest_rolledout_revision,
        &previous.previous_rolledout_revision,
    ]
    .into_iter()
    .filter_map(|n| n.as_deref())
    .collect()
}

fn target(revision: &str, percent: u32, tag: &str, latest: bool) -> TrafficTarget {
    TrafficTarget {
        tag: Some(tag.to_string()),
        revision_name: Some(revision.to_string()),
        latest_revision: Some(latest),
        percent: Some(i64::from(percent)),
        url: None,
    }
}

pub(crate) fn decide(
    isvc_name: &str,
    kind: ComponentKind,
    template: Result<&String, &TemplateProblem>,
    revisions: &[&ObservedRevision],
    previous: Option<&ComponentStatus>,
    canary_percent: Option<u32>,
    now: SystemTime,
) -> Decided {
    let mut numbered: Vec<(u64, &ObservedRevision)> = revisions
        .iter()
        .filter_map(|r| Some((revision_number(isvc_name, kind, &r.name)?, *r)))
        .collect();
    numbered.sort_by_key(|(n, _)| *n);
    let number_of = |name: &str| {
        numbered
            .iter()
            .find(|(_, r)| r.name == name)
            .map(|(n, _)| *n)
    };
    let latest = numbered.last();

    let create = match template {
        Ok(hash) if latest.is_none_or(|(_, r)| &r.template_hash != hash) => Some(NewRevision {
            name: format!(
                "{isvc_name}-{}-{}",
                kind.as_str(),
                latest.map_or(1, |(n, _)| n + 1)
            ),
            component: kind,
            template_hash: hash.clone(),
        }),
        _ => None,
    };

    let was_ready = published_ready(previous);
    let health: Vec<(u64, &str, RevisionHealth)> = numbered
        .iter()
        .map(|(n, r)| (*n, r.name.as_str(), effective(r, &was_ready, now)))
        .collect();
    let latest_ready = health
        .iter()
        .rev()
        .find(|(_, _, h)| *h == RevisionHealth::Ready)
        .map(|(n, name, _)| (*n, name.to_string()));

    // Rolled out: the revision holding the traffic, and the one before it.
    let still_there = |name: &Option<String>| name.clone().filter(|n| number_of(n).is_some());
    let mut latest_rolledout =
        still_there(&previous.and_then(|p| p.latest_rolledout_revision.clone()));
    let mut previous_rolledout =
        still_there(&previous.and_then(|p| p.previous_rolledout_revision.clone()));
    if let Some((ready_number, ready_name)) = &latest_ready {
        let rolled_number = latest_rolledout.as_deref().and_then(number_of).unwrap_or(0);
        if *ready_number > rolled_number {
            previous_rolledout = latest_rolledout.take();
            latest_rolledout = Some(ready_name.clone());
        }
    }

    let latest_created = create
        .as_ref()
        .map(|c| c.name.clone())
        .or_else(|| latest.map(|(_, r)| r.name.clone()));
    // Nothing rolled out yet: the first revision takes the traffic while it starts, so the
    // activator holds requests as for a cold start instead of answering 404; it loses it
    // when it fails.
    let first_failed = matches!(health.last(), Some((_, _, RevisionHealth::Failed { .. })));
    let starting = match (&latest_rolledout, &latest_created) {
        (None, Some(first)) if create.is_some() || !first_failed => Some(first.clone()),
        _ => None,
    };

    let percent = canary_percent.unwrap_or(100).min(100);
    let traffic = match (&latest_rolledout, &previous_rolledout) {
        (Some(latest), Some(prev)) if percent < 100 => vec![
            target(latest, percent, LATEST_TAG, true),
            target(prev, 100 - percent, PREV_TAG, false),
        ],
        (Some(latest), _) => {
            // Promoted: the previous revision takes nothing and is collected.
            previous_rolledout = None;
            vec![target(latest, 100, LATEST_TAG, true)]
        }
        (None, _) => starting
            .iter()
            .map(|first| target(first, 100, LATEST_TAG, true))
            .collect(),
    };
    let keep: BTreeSet<&str> = [&latest_created, &latest_rolledout, &previous_rolledout]
        .into_iter()
        .filter_map(|n| n.as_deref())
        .collect();
    let delete = numbered
        .iter()
        .filter(|(_, r)| !keep.contains(r.name.as_str()))
        .map(|(_, r)| r.name.clone())
        .collect();

    let readiness = match (template, &create) {
        (Err(problem), _) => Readiness::failed(&problem.reason, problem.message.clone()),
        (Ok(_), Some(new)) => Readiness::unknown(
            "RevisionProgressing",
            format!("revision {} is being created", new.name),
        ),
        (Ok(_), None) => match health.last() {
            Some((_, _, RevisionHealth::Ready)) => Readiness::ready(),
            Some((_, name, RevisionHealth::Failed { reason, message })) => {
                Readiness::failed(reason, format!("revision {name}: {message}"))
            }
            Some((_, name, RevisionHealth::NotReady)) => Readiness::unknown(
                "RevisionProgressing",
                format!("revision {name} has no ready replica yet"),
            ),
            Some((_, name, RevisionHealth::Waiting { reason, message })) => {
                Readiness::unknown(reason, format!("revision {name}: {message}"))
            }
            None => Readiness::unknown("RevisionMissing", "no revision yet".to_string()),
        },
    };

    Decided {
        create,
        delete,
        latest_created,
        latest_ready: latest_ready.map(|(_, name)| name),
        routed: latest_rolledout.is_some(),
        latest_rolledout,
        previous_rolledout,
        traffic,
        readiness,
    }
}
