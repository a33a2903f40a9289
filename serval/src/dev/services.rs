//! The InferenceServices `serval dev` serves: each predictor spec becomes a revision
//! (`<namespace>/<name>-predictor-<n>`) with processes, an autoscaler entry and a route. A
//! changed spec rolls out a new revision; the old one serves until the new one is ready.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use serval_activator::{
    apply_annotations, revision_settings, Activator, Component, RouteTable, ServiceRoute,
};
use serval_api::{ClusterServingRuntime, InferenceService};
use serval_autoscaler::live::{Autoscaler, Scaler};
use serval_autoscaler::{AutoscalerConfig, ScalingSpec};
use serval_controller::local::{builtin_runtimes, predictor_replica_spec, Supervisor};
use tokio::sync::watch;

use super::manifests::{Loaded, LoadedService};
use super::view::ServiceRow;

struct ServiceState {
    loaded: LoadedService,
    spec_key: String,
    generation: u64,
    serving: String,
    pending: Option<String>,
}

pub(crate) struct Services<S: Scaler> {
    config: AutoscalerConfig,
    serval_bin: PathBuf,
    supervisor: Arc<Supervisor>,
    autoscaler: Arc<Autoscaler<S>>,
    routes: Arc<RouteTable>,
    listen: SocketAddr,
    state: BTreeMap<String, ServiceState>,
    revisions: watch::Sender<Vec<String>>,
}

/// What a rollout compares: the spec and the metadata that shape the revision.
fn spec_key(isvc: &InferenceService) -> String {
    serde_json::to_string(&(
        &isvc.spec,
        &isvc.metadata.annotations,
        &isvc.metadata.labels,
    ))
    .unwrap_or_default()
}

fn annotations(isvc: &InferenceService) -> BTreeMap<String, String> {
    let mut merged = isvc.metadata.annotations.clone().unwrap_or_default();
    merged.extend(
        isvc.spec
            .predictor
            .component
            .annotations
            .clone()
            .unwrap_or_default(),
    );
    merged
}

impl<S: Scaler> Services<S> {
    pub(crate) fn new(
        config: AutoscalerConfig,
        serval_bin: PathBuf,
        supervisor: Arc<Supervisor>,
        autoscaler: Arc<Autoscaler<S>>,
        routes: Arc<RouteTable>,
        listen: SocketAddr,
    ) -> Self {
        Self {
            config,
            serval_bin,
            supervisor,
            autoscaler,
            routes,
            listen,
            state: BTreeMap::new(),
            revisions: watch::channel(Vec::new()).0,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.state.is_empty()
    }

    /// Every revision that has processes, for keeping endpoints in step.
    pub(crate) fn revisions(&self) -> watch::Receiver<Vec<String>> {
        self.revisions.subscribe()
    }

    /// Wakes the endpoint sync only when the set of revisions changed (this runs every
    /// second from the rollout check).
    fn publish_revisions(&self) {
        let names: Vec<String> = self
            .state
            .values()
            .flat_map(|s| std::iter::once(s.serving.clone()).chain(s.pending.clone()))
            .collect();
        self.revisions.send_if_modified(|current| {
            let changed = *current != names;
            if changed {
                *current = names;
            }
            changed
        });
    }

    /// Brings the served set in line with freshly loaded manifests.
    pub(crate) fn apply(&mut self, loaded: &Loaded) {
        let mut cluster: Vec<ClusterServingRuntime> = loaded.cluster_runtimes.clone();
        cluster.extend(builtin_runtimes());
        let mut seen = Vec::new();
        for service in &loaded.services {
            let key = format!("{}/{}", service.namespace(), service.name());
            seen.push(key.clone());
            let new_key = spec_key(&service.isvc);
            let generation = match self.state.get(&key) {
                Some(known) if known.spec_key == new_key => continue,
                Some(known) => known.generation + 1,
                None => 1,
            };
            let revision = format!("{key}-predictor-{generation}");
            if let Err(problem) = self.start_revision(service, &revision, loaded, &cluster) {
                eprintln!(
                    "{key}: {problem}; {}",
                    if generation == 1 {
                        "not served"
                    } else {
                        "keeping the running revision"
                    }
                );
                continue;
            }
            match self.state.get_mut(&key) {
                Some(known) => {
                    eprintln!(
                        "{key}: rolling out {revision}; {} serves until it is ready",
                        known.serving
                    );
                    let abandoned = known.pending.replace(revision);
                    known.spec_key = new_key;
                    known.generation = generation;
                    known.loaded = service.clone();
                    if let Some(abandoned) = abandoned {
                        self.retire(abandoned);
                    }
                }
                None => {
                    self.route(service, &revision);
                    self.state.insert(
                        key,
                        ServiceState {
                            loaded: service.clone(),
                            spec_key: new_key,
                            generation,
                            serving: revision,
                            pending: None,
                        },
                    );
                }
            }
        }
        let gone: Vec<String> = self
            .state
            .keys()
            .filter(|k| !seen.contains(k))
            .cloned()
            .collect();
        for key in gone {
            if let Some(state) = self.state.remove(&key) {
                eprintln!("{key}: no longer in the manifests; stopping it");
                self.routes
                    .remove(state.loaded.namespace(), state.loaded.name());
                self.retire(state.serving);
                if let Some(pending) = state.pending {
                    self.retire(pending);
                }
            }
        }
        self.publish_revisions();
    }

    fn start_revision(
        &self,
        service: &LoadedService,
        revision: &str,
        loaded: &Loaded,
        cluster: &[ClusterServingRuntime],
    ) -> Result<(), String> {
        let isvc = &service.isvc;
        if isvc.spec.transformer.is_some() || isvc.spec.explainer.is_some() {
            eprintln!("{revision}: transformers and explainers do not run locally yet; serving the predictor only");
        }
        let replica = predictor_replica_spec(
            isvc,
            revision,
            &loaded.runtimes,
            cluster,
            &self.serval_bin,
            &service.dir,
        )
        .map_err(|e| e.to_string())?;
        let component = &isvc.spec.predictor.component;
        let scaling = ScalingSpec::from_annotations(
            component,
            &annotations(isvc),
            "metadata.annotations",
            &self.config,
        )
        .map_err(|errors| {
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        })?;
        self.supervisor.upsert(replica);
        self.autoscaler.upsert_revision(revision, scaling);
        Ok(())
    }

    fn route(&self, service: &LoadedService, revision: &str) {
        let isvc = &service.isvc;
        let component = &isvc.spec.predictor.component;
        let settings = revision_settings(revision, component);
        let mut route = ServiceRoute::new(service.namespace(), service.name()).with_canary(
            Component::Predictor,
            settings,
            None,
            None,
        );
        apply_annotations(&mut route, &annotations(isvc));
        if let Err(e) = self.routes.upsert(route) {
            eprintln!("{revision}: cannot route: {e}");
        }
    }

    /// Stops a revision's processes in the background and forgets it.
    fn retire(&self, revision: String) {
        self.autoscaler.remove_revision(&revision);
        let supervisor = self.supervisor.clone();
        tokio::spawn(async move { supervisor.remove(&revision).await });
    }

    /// Switches each rollout whose new revision has a ready replica.
    pub(crate) async fn advance_rollouts(&mut self) {
        let ready: Vec<String> = self
            .state
            .iter()
            .filter(|(_, s)| {
                s.pending
                    .as_ref()
                    .is_some_and(|p| !self.supervisor.ready(p).is_empty())
            })
            .map(|(k, _)| k.clone())
            .collect();
        for key in ready {
            let Some(state) = self.state.get_mut(&key) else {
                continue;
            };
            let Some(new) = state.pending.take() else {
                continue;
            };
            let old = std::mem::replace(&mut state.serving, new.clone());
            let service = state.loaded.clone();
            self.route(&service, &new);
            eprintln!("{key}: {new} is ready and serving; draining {old}");
            self.retire(old);
        }
        self.publish_revisions();
    }

    pub(crate) fn rows(&self, activator: &Activator) -> Vec<ServiceRow> {
        let views = self.autoscaler.views();
        self.state
            .values()
            .map(|s| {
                let url = format!(
                    "http://{}/serving/{}/{}/",
                    self.listen,
                    s.loaded.namespace(),
                    s.loaded.name()
                );
                ServiceRow {
                    service: format!("{}/{}", s.loaded.namespace(), s.loaded.name()),
                    url,
                    revision: s.serving.clone(),
                    replicas: self.supervisor.replicas(&s.serving).len(),
                    ready: self.supervisor.ready(&s.serving).len(),
                    queued: activator.queued(&s.serving),
                    decision: views.iter().find(|v| v.revision == s.serving).cloned(),
                }
            })
            .collect()
    }
}
