//! The autoscaler on Kubernetes: revisions are the Deployments the controller labels with
//! [`REVISION_LABEL`], their scaling settings are read from the Deployment's annotations,
//! their pods are the ready pods with the same label (scraped on the queue-proxy's admin
//! port), and decisions go to each Deployment's `/scale` subresource. Activators reach the
//! same HTTP API as in `serval dev`, naming revisions `<namespace>/<revision>`.

mod pods;
mod scaler;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use serval_api::revision::{component_spec, REVISION_LABEL};

pub use scaler::DeploymentScaler;

use crate::live::{router, Autoscaler, PodTarget, Scaler};
use crate::{AutoscalerConfig, ScalingSpec};

/// A revision as the autoscaler names it: `<namespace>/<revision>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RevisionKey {
    pub namespace: String,
    pub name: String,
}

impl RevisionKey {
    pub fn parse(key: &str) -> Option<Self> {
        let (namespace, name) = key.split_once('/')?;
        (!namespace.is_empty() && !name.is_empty()).then(|| Self {
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
    }
}

impl std::fmt::Display for RevisionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    #[error("cannot reach the Kubernetes API server: {0}")]
    Client(#[source] kube::Error),
    #[error("reading ConfigMap {namespace}/{name}: {source}")]
    ConfigMap {
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("ConfigMap {namespace}/{name}: {source}")]
    Config {
        namespace: String,
        name: String,
        #[source]
        source: crate::ConfigError,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Where the `config-autoscaler` settings come from.
#[derive(Debug, Clone)]
pub enum ConfigSource {
    /// Given by the caller (a file, or defaults).
    Given(AutoscalerConfig),
    /// A ConfigMap's `data`, as Knative's `config-autoscaler`; Knative's defaults when it
    /// does not exist.
    ConfigMap { namespace: String, name: String },
}

/// What `serval autoscaler` runs with on Kubernetes.
#[derive(Debug, Clone)]
pub struct Options {
    /// The HTTP API for activators (`/poke`, `/report`) and for people (`/revisions`,
    /// `/metrics`, `/healthz`).
    pub listen: SocketAddr,
    /// Watch only this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
    pub config: ConfigSource,
}

/// Runs until `shutdown` completes: watches revisions and their pods, scrapes, decides,
/// scales, and serves the HTTP API. The API server is found as kubectl finds it
/// (`KUBECONFIG`, `~/.kube/config`, or the pod's service account).
pub async fn run(
    options: Options,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), KubernetesError> {
    let client = Client::try_default()
        .await
        .map_err(KubernetesError::Client)?;
    let config = match options.config {
        ConfigSource::Given(config) => config,
        ConfigSource::ConfigMap { namespace, name } => {
            read_config_map(client.clone(), &namespace, &name).await?
        }
    };
    let listener = tokio::net::TcpListener::bind(options.listen)
        .await
        .map_err(|source| KubernetesError::Bind {
            addr: options.listen,
            source,
        })?;
    let autoscaler = Autoscaler::new(config.clone(), DeploymentScaler::new(client.clone()));
    tracing::info!(listen = %options.listen, namespace = options.namespace.as_deref().unwrap_or("(all)"),
        "autoscaler watching revision Deployments");
    let app = router(autoscaler.clone()).route("/healthz", axum::routing::get(|| async { "ok" }));
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(autoscaler.clone().run());
    tasks.spawn(sync_revisions(
        client,
        options.namespace,
        autoscaler,
        config,
    ));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| KubernetesError::Bind {
            addr: options.listen,
            source,
        })?;
    tasks.abort_all();
    Ok(())
}

async fn read_config_map(
    client: Client,
    namespace: &str,
    name: &str,
) -> Result<AutoscalerConfig, KubernetesError> {
    let api: Api<ConfigMap> = Api::namespaced(client, namespace);
    let found = api
        .get_opt(name)
        .await
        .map_err(|source| KubernetesError::ConfigMap {
            namespace: namespace.into(),
            name: name.into(),
            source,
        })?;
    let Some(map) = found else {
        tracing::info!(%namespace, %name, "no config-autoscaler ConfigMap; using Knative's defaults");
        return Ok(AutoscalerConfig::default());
    };
    let data = map.data.unwrap_or_default();
    AutoscalerConfig::from_map(&data).map_err(|source| KubernetesError::Config {
        namespace: namespace.into(),
        name: name.into(),
        source,
    })
}

/// The scaling spec a revision Deployment asks for.
fn scaling_spec(deployment: &Deployment, config: &AutoscalerConfig) -> Result<ScalingSpec, String> {
    let annotations: BTreeMap<String, String> =
        deployment.metadata.annotations.clone().unwrap_or_default();
    let component = component_spec(&annotations).map_err(|e| e.to_string())?;
    ScalingSpec::from_annotations(&component, &annotations, "metadata.annotations", config).map_err(
        |errors| {
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        },
    )
}

fn deployment_key(deployment: &Deployment) -> Option<RevisionKey> {
    Some(RevisionKey {
        namespace: deployment.metadata.namespace.clone()?,
        name: deployment.metadata.name.clone()?,
    })
}

/// Keeps the autoscaler's revisions and their pods in step with the API server: one loop
/// over both watches, so a revision learns its pods whichever arrives first. After a
/// restart the lists rebuild everything; revisions gone meanwhile are forgotten.
async fn sync_revisions<S: Scaler>(
    client: Client,
    namespace: Option<String>,
    autoscaler: Arc<Autoscaler<S>>,
    config: AutoscalerConfig,
) {
    let (deployments, pods): (Api<Deployment>, Api<Pod>) = match &namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client, ns),
        ),
        None => (Api::all(client.clone()), Api::all(client)),
    };
    let selector = watcher::Config::default().labels(REVISION_LABEL);
    let mut deployment_events = watcher::watcher(deployments, selector.clone())
        .default_backoff()
        .boxed();
    let (pod_store, pod_writer) = reflector::store::<Pod>();
    let mut pod_events = reflector::reflector(pod_writer, watcher::watcher(pods, selector))
        .default_backoff()
        .boxed();

    let mut known: HashSet<RevisionKey> = HashSet::new();
    let mut listing: Option<HashSet<RevisionKey>> = None;
    let mut published: HashMap<RevisionKey, Vec<PodTarget>> = HashMap::new();
    loop {
        tokio::select! {
            event = deployment_events.next() => match event {
                None => return,
                Some(Err(e)) => tracing::warn!(error = %e, "watching revision Deployments"),
                Some(Ok(event)) => {
                    let changed = apply_deployment_event(
                        event, &autoscaler, &config, &mut known, &mut listing,
                    );
                    for key in changed {
                        published.remove(&key);
                    }
                    publish_pods(&autoscaler, &pod_store, &known, &mut published);
                }
            },
            event = pod_events.next() => match event {
                None => return,
                Some(Err(e)) => tracing::warn!(error = %e, "watching revision pods"),
                Some(Ok(_)) => publish_pods(&autoscaler, &pod_store, &known, &mut published),
            },
        }
    }
}

/// Applies one Deployment event; returns the revisions that were (re)added.
fn apply_deployment_event<S: Scaler>(
    event: Event<Deployment>,
    autoscaler: &Autoscaler<S>,
    config: &AutoscalerConfig,
    known: &mut HashSet<RevisionKey>,
    listing: &mut Option<HashSet<RevisionKey>>,
) -> Vec<RevisionKey> {
    let upsert = |deployment: &Deployment| -> Option<RevisionKey> {
        let key = deployment_key(deployment)?;
        match scaling_spec(deployment, config) {
            Ok(spec) => {
                // The Deployment's replicas are what an earlier decision (or the
                // controller's initial scale) set: resume from there.
                let current = deployment
                    .spec
                    .as_ref()
                    .and_then(|s| s.replicas)
                    .map_or(1, |r| r.max(0) as u32);
                autoscaler.resume_revision(&key.to_string(), spec, current);
                autoscaler.observe_scale(&key.to_string(), current);
                Some(key)
            }
            Err(problem) => {
                // Keeping the last good spec beats scaling on settings nobody asked for.
                tracing::warn!(revision = %key, %problem, "revision Deployment has invalid scaling settings; not updated");
                known.contains(&key).then_some(key)
            }
        }
    };
    match event {
        Event::Init => {
            *listing = Some(HashSet::new());
            Vec::new()
        }
        Event::InitApply(deployment) => {
            let key = upsert(&deployment);
            if let (Some(key), Some(seen)) = (key.clone(), listing.as_mut()) {
                seen.insert(key);
            }
            key.into_iter().collect()
        }
        Event::InitDone => {
            let seen = listing.take().unwrap_or_default();
            for gone in known.difference(&seen) {
                autoscaler.remove_revision(&gone.to_string());
            }
            let added: Vec<RevisionKey> = seen.difference(known).cloned().collect();
            *known = seen;
            added
        }
        Event::Apply(deployment) => {
            let key = upsert(&deployment);
            if let Some(key) = &key {
                known.insert(key.clone());
            }
            key.into_iter().collect()
        }
        Event::Delete(deployment) => {
            if let Some(key) = deployment_key(&deployment) {
                known.remove(&key);
                autoscaler.remove_revision(&key.to_string());
            }
            Vec::new()
        }
    }
}

/// Gives each known revision its ready pods, telling the autoscaler only what changed.
fn publish_pods<S: Scaler>(
    autoscaler: &Autoscaler<S>,
    store: &Store<Pod>,
    known: &HashSet<RevisionKey>,
    published: &mut HashMap<RevisionKey, Vec<PodTarget>>,
) {
    let mut current: HashMap<RevisionKey, Vec<PodTarget>> =
        known.iter().map(|k| (k.clone(), Vec::new())).collect();
    for pod in store.state() {
        let Some(key) = pods::revision_of(&pod) else {
            continue;
        };
        if let (Some(targets), Some(target)) = (current.get_mut(&key), pods::scrape_target(&pod)) {
            targets.push(target);
        }
    }
    for (key, mut targets) in current {
        targets.sort_by(|a, b| a.name.cmp(&b.name));
        if published.get(&key) != Some(&targets) {
            autoscaler.set_pods(&key.to_string(), targets.clone());
            published.insert(key, targets);
        }
    }
    published.retain(|key, _| known.contains(key));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(annotations: &[(&str, &str)]) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "iris-predictor-1",
                "annotations": annotations
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect::<BTreeMap<String, String>>(),
            },
        }))
        .expect("a Deployment")
    }

    #[test]
    fn a_revision_asks_for_servals_class_through_its_annotations() {
        let config = AutoscalerConfig::default();
        let spec = scaling_spec(
            &deployment(&[
                (
                    "autoscaling.knative.dev/class",
                    "serval.autoscaling.serval.dev",
                ),
                ("serving.serval.dev/cold-start-budget", "0.5%"),
            ]),
            &config,
        )
        .expect("valid");
        assert_eq!(
            spec.adaptive.map(|a| a.cold_start_budget),
            Some(Some(0.005))
        );
        // Knative's class, named or not, is the KPA.
        for annotations in [
            vec![(
                "autoscaling.knative.dev/class",
                "kpa.autoscaling.knative.dev",
            )],
            vec![],
        ] {
            let spec = scaling_spec(&deployment(&annotations), &config).expect("valid");
            assert!(spec.adaptive.is_none());
        }
        let refused = scaling_spec(
            &deployment(&[("serving.serval.dev/cold-start-budget", "all of them")]),
            &config,
        )
        .unwrap_err();
        assert!(
            refused.contains("serving.serval.dev/cold-start-budget"),
            "{refused}"
        );
    }
}
