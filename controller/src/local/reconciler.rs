//! `serval dev`'s controller: the revision reconciler ([`crate::rollout`]) applied to local
//! processes. Each component's spec becomes a revision with supervised replicas; the status
//! it decides (traffic included) goes to the activator through [`LocalPlatform`], the same
//! status a cluster's activator reads from the API server. Canaries, tags, transformers and
//! explainers therefore behave here as on Kubernetes.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use serval_api::inference_service::ComponentKind;
use serval_api::{ClusterServingRuntime, InferenceService, ServingRuntime};
use tokio::sync::watch;

use super::builtin::builtin_runtimes;
use super::replica::{ReplicaInfo, ReplicaSpec};
use super::supervisor::Supervisor;
use super::translate::{companion_replica_spec, predictor_replica_spec, TranslateError};
use crate::rollout::{
    component_template, reconcile, template_hash, Addressing, ObservedRevision, RevisionHealth,
    TemplateProblem, COMPONENTS,
};

/// What `serval dev` wires around the reconciler: the autoscaler, the activator's routes and
/// the console.
pub trait LocalPlatform: Send + Sync {
    /// A revision's replicas can be started: scale it from now on. `key` is
    /// `<namespace>/<revision>`, as the supervisor, autoscaler and activator name it.
    fn add_revision(
        &self,
        key: &str,
        isvc: &InferenceService,
        kind: ComponentKind,
    ) -> Result<(), String>;
    fn remove_revision(&self, key: &str);
    /// The service with its freshly decided status; the activator routes by its traffic.
    fn publish(&self, isvc: &InferenceService);
    fn unpublish(&self, namespace: &str, name: &str);
    /// A line for the person running `serval dev`.
    fn note(&self, line: String);
}

/// An InferenceService and the directory its manifest came from (for relative model paths).
#[derive(Clone, Debug)]
pub struct LocalService {
    pub isvc: InferenceService,
    pub dir: PathBuf,
}

/// Everything the manifests declare.
#[derive(Clone, Debug, Default)]
pub struct LocalManifests {
    pub services: Vec<LocalService>,
    pub runtimes: Vec<ServingRuntime>,
    pub cluster_runtimes: Vec<ClusterServingRuntime>,
}

#[derive(Debug)]
struct ServiceState {
    /// The spec as last loaded, with the status last decided.
    isvc: InferenceService,
    dir: PathBuf,
    revisions: Vec<ObservedRevision>,
}

/// The local backend of the revision reconciler.
pub struct LocalReconciler<P: LocalPlatform> {
    supervisor: Arc<Supervisor>,
    platform: P,
    serval_bin: PathBuf,
    /// Where the activator listens: transformers reach their predictor through it.
    activator: SocketAddr,
    addressing: Addressing,
    runtimes: Vec<ServingRuntime>,
    cluster_runtimes: Vec<ClusterServingRuntime>,
    services: BTreeMap<(String, String), ServiceState>,
    revisions: watch::Sender<Vec<String>>,
}

impl<P: LocalPlatform> std::fmt::Debug for LocalReconciler<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalReconciler")
            .field("services", &self.services.len())
            .finish_non_exhaustive()
    }
}

/// Exits in a row, each soon after a start, that make a replica's revision failed.
const CRASH_LOOP: u32 = 3;

/// A revision's health from its replicas, as a pod's would read: ready when one is, failed
/// when every replica keeps exiting soon after it starts.
fn local_health(replicas: &[ReplicaInfo]) -> RevisionHealth {
    if replicas.iter().any(|r| r.ready) {
        return RevisionHealth::Ready;
    }
    let all_looping = !replicas.is_empty() && replicas.iter().all(|r| r.crashes >= CRASH_LOOP);
    match replicas.iter().max_by_key(|r| r.crashes) {
        Some(replica) if all_looping => RevisionHealth::Failed {
            reason: "CrashLoopBackOff".to_string(),
            message: format!(
                "exited {} times in a row: {}",
                replica.crashes,
                replica.last_exit.as_deref().unwrap_or("no reason recorded")
            ),
        },
        _ => RevisionHealth::NotReady,
    }
}

fn namespace_of(isvc: &InferenceService) -> String {
    isvc.metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".to_string())
}

impl<P: LocalPlatform> LocalReconciler<P> {
    pub fn new(
        supervisor: Arc<Supervisor>,
        platform: P,
        serval_bin: PathBuf,
        activator: SocketAddr,
        domain: String,
    ) -> Self {
        Self {
            supervisor,
            platform,
            serval_bin,
            activator,
            addressing: Addressing {
                domain,
                cluster_suffix: "svc.cluster.local".to_string(),
            },
            runtimes: Vec::new(),
            cluster_runtimes: Vec::new(),
            services: BTreeMap::new(),
            revisions: watch::channel(Vec::new()).0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    /// The services with the status last decided, for the console.
    pub fn services(&self) -> impl Iterator<Item = &InferenceService> {
        self.services.values().map(|s| &s.isvc)
    }

    /// Every revision that has processes (`<namespace>/<revision>`), to keep endpoints in step.
    pub fn revisions(&self) -> watch::Receiver<Vec<String>> {
        self.revisions.subscribe()
    }

    /// Takes freshly loaded manifests: a changed spec counts as a new generation, a service
    /// that is gone loses its revisions.
    pub fn load(&mut self, manifests: LocalManifests, now: SystemTime) {
        self.runtimes = manifests.runtimes;
        self.cluster_runtimes = manifests.cluster_runtimes;
        self.cluster_runtimes.extend(builtin_runtimes());
        let mut seen = Vec::new();
        for service in manifests.services {
            let key = (
                namespace_of(&service.isvc),
                service.isvc.metadata.name.clone().unwrap_or_default(),
            );
            seen.push(key.clone());
            let mut isvc = service.isvc;
            // Routes and status name the namespace even where the manifest leaves it out.
            isvc.metadata.namespace = Some(key.0.clone());
            match self.services.get_mut(&key) {
                Some(known) => {
                    let same = known.isvc.spec == isvc.spec
                        && known.isvc.metadata.annotations == isvc.metadata.annotations
                        && known.isvc.metadata.labels == isvc.metadata.labels;
                    if !same {
                        let generation = known.isvc.metadata.generation.unwrap_or(1) + 1;
                        isvc.metadata.generation = Some(generation);
                        isvc.status = known.isvc.status.take();
                        known.isvc = isvc;
                        known.dir = service.dir;
                    }
                }
                None => {
                    isvc.metadata.generation = Some(1);
                    self.services.insert(
                        key,
                        ServiceState {
                            isvc,
                            dir: service.dir,
                            revisions: Vec::new(),
                        },
                    );
                }
            }
        }
        let gone: Vec<_> = self
            .services
            .keys()
            .filter(|k| !seen.contains(k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(state) = self.services.remove(&key) {
                self.platform.note(format!(
                    "{}/{}: no longer in the manifests; stopping it",
                    key.0, key.1
                ));
                self.platform.unpublish(&key.0, &key.1);
                for revision in state.revisions {
                    self.retire(&format!("{}/{}", key.0, revision.name));
                }
            }
        }
        self.reconcile(now);
    }

    /// One pass of the reconciler over every service.
    pub fn reconcile(&mut self, now: SystemTime) {
        let keys: Vec<_> = self.services.keys().cloned().collect();
        for key in keys {
            self.reconcile_service(&key, now);
        }
        let names: Vec<String> = self
            .services
            .iter()
            .flat_map(|((ns, _), s)| s.revisions.iter().map(move |r| format!("{ns}/{}", r.name)))
            .collect();
        self.revisions.send_if_modified(|current| {
            let changed = *current != names;
            if changed {
                *current = names;
            }
            changed
        });
    }

    /// The local processes of one component's revision (named `revision`).
    fn replica_spec(
        &self,
        state: &ServiceState,
        kind: ComponentKind,
        revision: &str,
    ) -> Result<ReplicaSpec, TranslateError> {
        let isvc = &state.isvc;
        match kind {
            ComponentKind::Predictor => predictor_replica_spec(
                isvc,
                revision,
                &self.runtimes,
                &self.cluster_runtimes,
                &self.serval_bin,
                &state.dir,
            ),
            _ => {
                let predictor_host = format!(
                    "{}/serving/{}/{}-predictor",
                    self.activator,
                    namespace_of(isvc),
                    isvc.metadata.name.as_deref().unwrap_or_default()
                );
                companion_replica_spec(isvc, kind, revision, &predictor_host)
            }
        }
    }

    fn reconcile_service(&mut self, key: &(String, String), now: SystemTime) {
        let Some(state) = self.services.get(key) else {
            return;
        };
        let namespace = &key.0;
        let templates: Vec<_> = COMPONENTS
            .iter()
            .filter_map(|kind| {
                let template = component_template(&state.isvc, *kind)?;
                let hash = self
                    .replica_spec(state, *kind, "")
                    .map(|spec| template_hash(&(template, format!("{spec:?}"))))
                    .map_err(|e| TemplateProblem {
                        reason: "InvalidSpec".to_string(),
                        message: e.to_string(),
                    });
                Some((*kind, hash))
            })
            .collect();
        let observed: Vec<ObservedRevision> = state
            .revisions
            .iter()
            .map(|r| {
                let key = format!("{namespace}/{}", r.name);
                let health = local_health(&self.supervisor.replicas(&key));
                ObservedRevision {
                    health,
                    ..r.clone()
                }
            })
            .collect();
        let plan = reconcile(&state.isvc, &templates, &observed, &self.addressing, now);

        let mut created = Vec::new();
        for new in &plan.create {
            let revision_key = format!("{namespace}/{}", new.name);
            let spec = match self.replica_spec(state, new.component, &revision_key) {
                Ok(spec) => spec,
                Err(e) => {
                    self.platform.note(format!("{revision_key}: {e}"));
                    continue;
                }
            };
            self.supervisor.upsert(spec);
            if let Err(e) = self
                .platform
                .add_revision(&revision_key, &state.isvc, new.component)
            {
                self.platform.note(format!("{revision_key}: {e}"));
            }
            let serving = plan
                .status
                .components
                .get(new.component.as_str())
                .and_then(|c| c.latest_rolledout_revision.as_deref());
            let note = match serving {
                Some(old) => format!(
                    "rolling out {revision_key}; {namespace}/{old} serves until it is ready"
                ),
                None => format!("starting {revision_key}"),
            };
            self.platform.note(note);
            created.push(ObservedRevision {
                name: new.name.clone(),
                component: new.component,
                template_hash: new.template_hash.clone(),
                created: now,
                health: RevisionHealth::NotReady,
            });
        }
        for name in &plan.delete {
            self.platform
                .note(format!("{namespace}/{name}: no longer routed; draining it"));
            self.retire(&format!("{namespace}/{name}"));
        }

        let Some(state) = self.services.get_mut(key) else {
            return;
        };
        state.revisions.retain(|r| !plan.delete.contains(&r.name));
        state.revisions.extend(created);
        let before = state.isvc.status.as_ref();
        for condition in plan
            .status
            .conditions
            .iter()
            .filter(|c| c.status == "False")
        {
            let already = before.is_some_and(|b| {
                b.conditions.iter().any(|c| {
                    c.condition_type == condition.condition_type
                        && c.status == "False"
                        && c.reason == condition.reason
                })
            });
            if !already && condition.condition_type != "Ready" {
                self.platform.note(format!(
                    "{namespace}/{}: {} is False: {}: {}",
                    key.1,
                    condition.condition_type,
                    condition.reason.as_deref().unwrap_or_default(),
                    condition.message.as_deref().unwrap_or_default()
                ));
            }
        }
        let changed = state.isvc.status.as_ref() != Some(&plan.status);
        state.isvc.status = Some(plan.status);
        if changed {
            self.platform.publish(&state.isvc);
        }
    }

    /// Stops a revision's processes in the background and forgets it.
    fn retire(&self, revision_key: &str) {
        self.platform.remove_revision(revision_key);
        let supervisor = self.supervisor.clone();
        let revision = revision_key.to_string();
        tokio::spawn(async move { supervisor.remove(&revision).await });
    }

    /// Stops every revision and waits for their processes to exit.
    pub async fn shutdown(&self) {
        self.supervisor.shutdown().await;
    }
}
