//! The rollout rules step by step, as a backend lives them: each step applies the plan
//! (creates, deletes, publishes status) and then the world changes (a revision becomes
//! ready, fails, the spec is edited, time passes).

use std::time::{Duration, SystemTime};

use serval_api::inference_service::ComponentKind;
use serval_api::InferenceService;

use super::*;

const ISVC: &str = r#"
apiVersion: serving.kserve.io/v1beta1
kind: InferenceService
metadata:
  name: iris
  namespace: ml
  generation: 1
spec:
  predictor:
    model:
      modelFormat: {name: sklearn}
      storageUri: gs://models/iris/1
"#;

struct World {
    isvc: InferenceService,
    revisions: Vec<ObservedRevision>,
    now: SystemTime,
    problems: Vec<(ComponentKind, TemplateProblem)>,
    last: Option<Plan>,
}

impl World {
    fn new(yaml: &str) -> World {
        World {
            isvc: crate::rollout::parse_isvc(yaml),
            revisions: Vec::new(),
            now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            problems: Vec::new(),
            last: None,
        }
    }

    fn edit(&mut self, from: &str, to: &str) {
        let yaml = serde_yaml::to_string(&self.isvc).unwrap();
        assert!(yaml.contains(from), "{from:?} not in {yaml}");
        let status = self.isvc.status.take();
        self.isvc = crate::rollout::parse_isvc(&yaml.replace(from, to));
        self.isvc.status = status;
        let generation = self.isvc.metadata.generation.unwrap_or(0);
        self.isvc.metadata.generation = Some(generation + 1);
    }

    /// One reconcile, applied as a backend applies it.
    fn step(&mut self) -> &Plan {
        let templates: Vec<_> = COMPONENTS
            .iter()
            .filter_map(|kind| {
                let template = component_template(&self.isvc, *kind)?;
                let problem = self.problems.iter().find(|(k, _)| k == kind);
                Some((
                    *kind,
                    match problem {
                        Some((_, p)) => Err(p.clone()),
                        None => Ok(template_hash(&template)),
                    },
                ))
            })
            .collect();
        let addressing = Addressing {
            domain: "example.com".to_string(),
            cluster_suffix: "svc.cluster.local".to_string(),
        };
        let plan = reconcile(
            &self.isvc,
            &templates,
            &self.revisions,
            &addressing,
            self.now,
        );
        for new in &plan.create {
            self.revisions.push(ObservedRevision {
                name: new.name.clone(),
                component: new.component,
                template_hash: new.template_hash.clone(),
                created: self.now,
                health: RevisionHealth::NotReady,
            });
        }
        self.revisions.retain(|r| !plan.delete.contains(&r.name));
        self.isvc.status = Some(plan.status.clone());
        self.last.insert(plan)
    }

    fn set(&mut self, revision: &str, health: RevisionHealth) {
        self.revisions
            .iter_mut()
            .find(|r| r.name == revision)
            .unwrap_or_else(|| panic!("no revision {revision}"))
            .health = health;
    }

    fn names(&self) -> Vec<&str> {
        self.revisions.iter().map(|r| r.name.as_str()).collect()
    }

    /// (revision, percent, tag) of a component's published traffic.
    fn traffic(&self, component: &str) -> Vec<(String, i64, String)> {
        self.last.as_ref().unwrap().status.components[component]
            .traffic
            .iter()
            .map(|t| {
                (
                    t.revision_name.clone().unwrap(),
                    t.percent.unwrap(),
                    t.tag.clone().unwrap(),
                )
            })
            .collect()
    }

    /// (status, reason) of a condition.
    fn condition(&self, kind: &str) -> (String, Option<String>) {
        let c = self
            .last
            .as_ref()
            .unwrap()
            .status
            .conditions
            .iter()
            .find(|c| c.condition_type == kind);
        let c = c.unwrap_or_else(|| panic!("no condition {kind}"));
        (c.status.clone(), c.reason.clone())
    }
}

fn t(revision: &str, percent: i64, tag: &str) -> (String, i64, String) {
    (revision.to_string(), percent, tag.to_string())
}

fn failed(reason: &str) -> RevisionHealth {
    RevisionHealth::Failed {
        reason: reason.to_string(),
        message: "back-off pulling image".to_string(),
    }
}

#[test]
fn a_new_service_gets_its_first_revision_and_becomes_ready_with_it() {
    let mut w = World::new(ISVC);
    let plan = w.step().clone();
    assert_eq!(plan.create.len(), 1);
    assert_eq!(plan.create[0].name, "iris-predictor-1");
    assert_eq!(
        plan.status.url.as_deref(),
        Some("http://iris.ml.example.com")
    );
    assert_eq!(
        plan.status.address.as_ref().unwrap().url.as_deref(),
        Some("http://iris.ml.svc.cluster.local")
    );
    assert_eq!(plan.status.observed_generation, Some(1));
    assert_eq!(w.condition("PredictorReady").0, "Unknown");
    assert_eq!(w.condition("Ready").0, "Unknown");
    assert_eq!(w.condition("IngressReady").0, "Unknown");
    // The first revision takes the traffic while it starts: requests wait for it.
    assert_eq!(
        w.traffic("predictor"),
        [t("iris-predictor-1", 100, "latest")]
    );

    // Nothing changed: nothing to do, and still starting.
    assert!(w.step().create.is_empty());
    assert_eq!(w.condition("PredictorReady").0, "Unknown");
    assert_eq!(
        w.traffic("predictor"),
        [t("iris-predictor-1", 100, "latest")]
    );

    w.set("iris-predictor-1", RevisionHealth::Ready);
    w.step();
    assert_eq!(
        w.traffic("predictor"),
        [t("iris-predictor-1", 100, "latest")]
    );
    assert_eq!(w.condition("PredictorReady").0, "True");
    assert_eq!(w.condition("IngressReady").0, "True");
    assert_eq!(w.condition("Ready").0, "True");
    let predictor = &w.last.as_ref().unwrap().status.components["predictor"];
    assert_eq!(
        predictor.latest_ready_revision.as_deref(),
        Some("iris-predictor-1")
    );
    assert_eq!(
        predictor.url.as_deref(),
        Some("http://iris-predictor.ml.example.com")
    );

    // Scaled to zero: no ready pod, still Ready and still routed.
    w.set("iris-predictor-1", RevisionHealth::NotReady);
    w.now += PROGRESS_DEADLINE * 2;
    w.step();
    assert_eq!(w.condition("Ready").0, "True");
    assert_eq!(
        w.traffic("predictor"),
        [t("iris-predictor-1", 100, "latest")]
    );
}

#[test]
fn an_update_keeps_the_old_revision_serving_until_the_new_one_is_ready() {
    let mut w = World::new(ISVC);
    w.step();
    w.set("iris-predictor-1", RevisionHealth::Ready);
    w.step();
    w.edit("gs://models/iris/1", "gs://models/iris/2");
    let plan = w.step().clone();
    assert_eq!(plan.create[0].name, "iris-predictor-2");
    assert_eq!(
        w.traffic("predictor"),
        [t("iris-predictor-1", 100, "latest")]
    );
    assert_eq!(w.condition("PredictorReady").0, "Unknown");
    let predictor = &plan.status.components["predictor"];
    assert_eq!(
        predictor.latest_created_revision.as_deref(),
        Some("iris-predictor-2")
    );
    assert_eq!(
        predictor.latest_ready_revision.as_deref(),
        Some("iris-predictor-1")
    );

    w.set("iris-predictor-2", RevisionHealth::Ready);
    let plan = w.step().clone();
    assert_eq!(
        w.traffic("predictor"),
        [t("iris-predictor-2", 100, "latest")]
    );
    assert_eq!(plan.delete, ["iris-predictor-1"]);
    assert_eq!(w.names(), ["iris-predictor-2"]);
    assert_eq!(w.condition("Ready").0, "True");
}

#[test]
fn a_canary_splits_between_latest_and_previous_then_promotes_or_rolls_back() {
    let mut w = World::new(ISVC);
    w.step();
    w.set("iris-predictor-1", RevisionHealth::Ready);
    w.step();
    w.edit("    model:\n", "    canaryTrafficPercent: 20\n    model:\n");
    // The percent alone makes no revision.
    assert!(w.step().create.is_empty());
    w.edit("gs://models/iris/1", "gs://models/iris/2");
    w.step();
    assert_eq!(
        w.traffic("predictor"),
        [t("iris-predictor-1", 100, "latest")]
    );
    w.set("iris-predictor-2", RevisionHealth::Ready);
    w.step();
    assert_eq!(
        w.traffic("predictor"),
        [
            t("iris-predictor-2", 20, "latest"),
            t("iris-predictor-1", 80, "prev")
        ]
    );
    let predictor = &w.last.as_ref().unwrap().status.components["predictor"];
    assert_eq!(
        predictor.previous_rolledout_revision.as_deref(),
        Some("iris-predictor-1")
    );
    assert_eq!(
        predictor.latest_rolledout_revision.as_deref(),
        Some("iris-predictor-2")
    );

    // Rollback: all to the previous revision, both kept.
    w.edit("canaryTrafficPercent: 20", "canaryTrafficPercent: 0");
    assert!(w.step().delete.is_empty());
    assert_eq!(
        w.traffic("predictor"),
        [
            t("iris-predictor-2", 0, "latest"),
            t("iris-predictor-1", 100, "prev")
        ]
    );

    // A third revision during the canary: the canary becomes the previous one.
    w.edit("canaryTrafficPercent: 0", "canaryTrafficPercent: 10");
    w.edit("gs://models/iris/2", "gs://models/iris/3");
    w.step();
    assert_eq!(
        w.traffic("predictor"),
        [
            t("iris-predictor-2", 10, "latest"),
            t("iris-predictor-1", 90, "prev")
        ]
    );
    w.set("iris-predictor-3", RevisionHealth::Ready);
    let plan = w.step().clone();
    assert_eq!(
        w.traffic("predictor"),
        [
            t("iris-predictor-3", 10, "latest"),
            t("iris-predictor-2", 90, "prev")
        ]
    );
    assert_eq!(plan.delete, ["iris-predictor-1"]);

    // Promotion: the canary percent removed, the previous revision collected.
    w.edit("    canaryTrafficPercent: 10\n", "");
    let plan = w.step().clone();
    assert_eq!(
        w.traffic("predictor"),
        [t("iris-predictor-3", 100, "latest")]
    );
    assert_eq!(plan.delete, ["iris-predictor-2"]);
    assert!(plan.create.is_empty());
}

#[test]
fn a_revision_that_fails_or_never_gets_ready_takes_no_traffic_and_says_why() {
    let mut w = World::new(ISVC);
    w.step();
    w.set("iris-predictor-1", RevisionHealth::Ready);
    w.step();
    w.edit("gs://models/iris/1", "gs://models/iris/broken");
    w.step();
    w.set("iris-predictor-2", failed("ImagePullBackOff"));
    w.step();
    assert_eq!(
        w.traffic("predictor"),
        [t("iris-predictor-1", 100, "latest")]
    );
    assert_eq!(
        w.condition("PredictorReady"),
        ("False".to_string(), Some("ImagePullBackOff".to_string()))
    );
    assert_eq!(w.condition("Ready").0, "False");
    let model = w
        .last
        .as_ref()
        .unwrap()
        .status
        .model_status
        .clone()
        .unwrap();
    assert_eq!(
        model.transition_status.as_deref(),
        Some("BlockedByFailedLoad")
    );

    // Fixing the spec replaces the failed revision; the serving one stays until then.
    w.edit("gs://models/iris/broken", "gs://models/iris/3");
    let plan = w.step().clone();
    assert_eq!(plan.create[0].name, "iris-predictor-3");
    assert_eq!(plan.delete, ["iris-predictor-2"]);

    // Never ready within the deadline: failed, still no traffic.
    w.now += PROGRESS_DEADLINE + Duration::from_secs(1);
    w.step();
    assert_eq!(
        w.condition("PredictorReady"),
        (
            "False".to_string(),
            Some("ProgressDeadlineExceeded".to_string())
        )
    );
    assert_eq!(
        w.traffic("predictor"),
        [t("iris-predictor-1", 100, "latest")]
    );
}

#[test]
fn a_component_without_a_template_reports_the_reason_and_keeps_what_serves() {
    let mut w = World::new(ISVC);
    w.problems.push((
        ComponentKind::Predictor,
        TemplateProblem {
            reason: "RuntimeNotRecognized".to_string(),
            message: "no runtime supports sklearn".to_string(),
        },
    ));
    let plan = w.step().clone();
    assert!(plan.create.is_empty());
    assert_eq!(
        w.condition("PredictorReady"),
        (
            "False".to_string(),
            Some("RuntimeNotRecognized".to_string())
        )
    );
    assert_eq!(
        w.condition("Ready"),
        (
            "False".to_string(),
            Some("RuntimeNotRecognized".to_string())
        )
    );
    assert!(w.traffic("predictor").is_empty());
}

#[test]
fn a_first_revision_that_fails_loses_the_traffic_it_was_starting_with() {
    let mut w = World::new(ISVC);
    w.step();
    assert_eq!(
        w.traffic("predictor"),
        [t("iris-predictor-1", 100, "latest")]
    );
    w.set("iris-predictor-1", failed("CrashLoopBackOff"));
    w.step();
    assert!(w.traffic("predictor").is_empty());
    assert_eq!(w.condition("PredictorReady").0, "False");
}

#[test]
fn transformers_and_explainers_are_components_of_their_own() {
    let mut w = World::new(ISVC);
    w.step();
    w.set("iris-predictor-1", RevisionHealth::Ready);
    w.step();
    w.edit(
        "spec:\n",
        "spec:\n  transformer:\n    containers:\n    - name: kserve-container\n      image: example/transformer\n",
    );
    let plan = w.step().clone();
    // The predictor's spec did not change: only the transformer gets a revision.
    assert_eq!(
        plan.create
            .iter()
            .map(|c| c.name.as_str())
            .collect::<Vec<_>>(),
        ["iris-transformer-1"]
    );
    assert_eq!(w.condition("IngressReady").0, "Unknown");
    assert_eq!(w.condition("TransformerReady").0, "Unknown");
    w.set("iris-transformer-1", RevisionHealth::Ready);
    w.step();
    assert_eq!(w.condition("Ready").0, "True");
    assert_eq!(
        w.traffic("transformer"),
        [t("iris-transformer-1", 100, "latest")]
    );

    // Removing it deletes its revisions and its condition.
    w.edit(
        "  transformer:\n    containers:\n    - image: example/transformer\n      name: kserve-container\n",
        "",
    );
    let plan = w.step().clone();
    assert_eq!(plan.delete, ["iris-transformer-1"]);
    assert!(!plan.status.components.contains_key("transformer"));
    assert!(plan
        .status
        .conditions
        .iter()
        .all(|c| c.condition_type != "TransformerReady"));
}

#[test]
fn a_transition_time_moves_only_when_the_status_does() {
    let mut w = World::new(ISVC);
    w.step();
    w.set("iris-predictor-1", RevisionHealth::Ready);
    w.step();
    let time = |w: &World| {
        w.last
            .as_ref()
            .unwrap()
            .status
            .conditions
            .iter()
            .find(|c| c.condition_type == "Ready")
            .unwrap()
            .last_transition_time
            .clone()
    };
    let first = time(&w);
    assert_eq!(first.as_deref(), Some("2023-11-14T22:13:20Z"));
    w.now += Duration::from_secs(60);
    w.step();
    assert_eq!(time(&w), first);
    w.set("iris-predictor-1", failed("CrashLoopBackOff"));
    w.step();
    assert_eq!(time(&w).as_deref(), Some("2023-11-14T22:14:20Z"));
}

#[test]
fn tag_routing_publishes_a_url_per_tag() {
    let mut w = World::new(&ISVC.replace(
        "  generation: 1\n",
        "  generation: 1\n  annotations:\n    serving.kserve.io/enable-tag-routing: \"true\"\n",
    ));
    w.step();
    w.set("iris-predictor-1", RevisionHealth::Ready);
    let plan = w.step().clone();
    let traffic = &plan.status.components["predictor"].traffic;
    assert_eq!(
        traffic[0].url.as_deref(),
        Some("http://latest-iris-predictor.ml.example.com")
    );
    assert_eq!(traffic[0].latest_revision, Some(true));
}

#[test]
fn a_revision_no_node_can_take_says_why_and_fails_only_past_the_deadline() {
    let mut w = World::new(ISVC);
    w.step();
    let waiting = RevisionHealth::Waiting {
        reason: "Unschedulable".to_string(),
        message: "pod p: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu.".to_string(),
    };
    w.set("iris-predictor-1", waiting);
    w.step();
    let (status, reason) = w.condition("PredictorReady");
    assert_eq!(
        (status.as_str(), reason.as_deref()),
        ("Unknown", Some("Unschedulable"))
    );
    assert_eq!(w.condition("Ready").1.as_deref(), Some("Unschedulable"));
    // Still the revision requests wait for (a GPU node may join).
    assert_eq!(
        w.traffic("predictor"),
        [t("iris-predictor-1", 100, "latest")]
    );

    w.now += PROGRESS_DEADLINE * 2;
    w.step();
    let (status, reason) = w.condition("PredictorReady");
    assert_eq!(
        (status.as_str(), reason.as_deref()),
        ("False", Some("ProgressDeadlineExceeded"))
    );
}
