//! `serval activator` on Kubernetes: routes come from InferenceServices (the traffic the
//! controller publishes in their status), pods from the EndpointSlices of each revision's
//! private Service, and the autoscaler is reached over HTTP. Revisions are named
//! `<namespace>/<revision>`, as the autoscaler names them.

mod slices;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use futures_util::StreamExt;
use kube::api::{Api, DynamicObject};
use kube::discovery::ApiResource;
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use serval_api::inference_service::InferenceService;
use serval_api::revision::REVISION_LABEL;

pub use slices::HTTP_PORT_NAME;

use crate::endpoints::{LocalEndpoints, PodEndpoint};
use crate::routes::{service_route, RouteTable};
use crate::{Config, HttpAutoscaler, ServeError};

#[derive(Debug, thiserror::Error)]
pub enum KubernetesError {
    #[error("cannot reach the Kubernetes API server: {0}")]
    Client(#[source] kube::Error),
    #[error("the API server serves no EndpointSlice kind in discovery.k8s.io")]
    NoEndpointSlices,
    #[error(transparent)]
    Serve(#[from] ServeError),
}

/// What `serval activator` runs with on Kubernetes.
#[derive(Debug, Clone)]
pub struct Options {
    pub config: Config,
    /// The autoscaler's HTTP API (`http://serval-autoscaler.serval-system:8090`).
    pub autoscaler_url: String,
    /// Serve InferenceServices in this namespace only; all namespaces when `None`.
    pub namespace: Option<String>,
}

/// Serves until `shutdown` completes, then drains. The API server is found as kubectl
/// finds it (`KUBECONFIG`, `~/.kube/config`, or the pod's service account).
pub async fn run(
    options: Options,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), KubernetesError> {
    let client = Client::try_default()
        .await
        .map_err(KubernetesError::Client)?;
    let slices = kube::discovery::group(&client, "discovery.k8s.io")
        .await
        .map_err(KubernetesError::Client)?
        .recommended_kind("EndpointSlice")
        .map(|(resource, _)| resource)
        .ok_or(KubernetesError::NoEndpointSlices)?;
    tracing::info!(version = %slices.api_version, namespace = options.namespace.as_deref().unwrap_or("(all)"),
        "activator watching InferenceServices and EndpointSlices");
    let routes = Arc::new(RouteTable::new(options.config.domain.clone()));
    let endpoints = Arc::new(LocalEndpoints::new());
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(sync_routes(
        client.clone(),
        options.namespace.clone(),
        routes.clone(),
    ));
    tasks.spawn(sync_endpoints(
        client,
        options.namespace,
        slices,
        endpoints.clone(),
    ));
    let autoscaler = HttpAutoscaler::new(options.autoscaler_url);
    let served = crate::run(options.config, routes, endpoints, autoscaler, shutdown).await;
    tasks.abort_all();
    Ok(served?)
}

/// Keeps the route table equal to the InferenceServices that have a revision to route to.
async fn sync_routes(client: Client, namespace: Option<String>, routes: Arc<RouteTable>) {
    let api: Api<InferenceService> = match &namespace {
        Some(ns) => Api::namespaced(client, ns),
        None => Api::all(client),
    };
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut routed: HashSet<(String, String)> = HashSet::new();
    let mut listing: Option<HashSet<(String, String)>> = None;
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(error = %e, "watching InferenceServices");
                continue;
            }
        };
        match event {
            Event::Init => listing = Some(HashSet::new()),
            Event::InitApply(isvc) | Event::Apply(isvc) => {
                let Some(key) = key_of(&isvc) else { continue };
                match service_route(&isvc) {
                    Some(route) => match routes.upsert(route) {
                        Ok(()) => {
                            routed.insert(key.clone());
                        }
                        Err(e) => tracing::warn!(error = %e, "InferenceService not routed"),
                    },
                    None => {
                        routes.remove(&key.0, &key.1);
                        routed.remove(&key);
                    }
                }
                if let Some(seen) = listing.as_mut() {
                    seen.insert(key);
                }
            }
            Event::InitDone => {
                let seen = listing.take().unwrap_or_default();
                for gone in routed.difference(&seen) {
                    routes.remove(&gone.0, &gone.1);
                }
                routed.retain(|key| seen.contains(key));
            }
            Event::Delete(isvc) => {
                if let Some(key) = key_of(&isvc) {
                    routes.remove(&key.0, &key.1);
                    routed.remove(&key);
                }
            }
        }
    }
}

fn key_of(isvc: &InferenceService) -> Option<(String, String)> {
    Some((
        isvc.metadata.namespace.clone()?,
        isvc.metadata.name.clone()?,
    ))
}

/// One EndpointSlice's contribution: its revision and the pods it lists.
type SlicePods = (String, Vec<PodEndpoint>);

/// Keeps every revision's pods equal to what its EndpointSlices list.
async fn sync_endpoints(
    client: Client,
    namespace: Option<String>,
    resource: ApiResource,
    endpoints: Arc<LocalEndpoints>,
) {
    let api: Api<DynamicObject> = match &namespace {
        Some(ns) => Api::namespaced_with(client, ns, &resource),
        None => Api::all_with(client, &resource),
    };
    let selector = watcher::Config::default().labels(REVISION_LABEL);
    let mut events = watcher::watcher(api, selector).default_backoff().boxed();
    let mut slices: HashMap<(String, String), SlicePods> = HashMap::new();
    let mut listing: Option<HashMap<(String, String), SlicePods>> = None;
    let mut published: BTreeMap<String, Vec<PodEndpoint>> = BTreeMap::new();
    while let Some(event) = events.next().await {
        let event = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::warn!(error = %e, "watching EndpointSlices");
                continue;
            }
        };
        match event {
            Event::Init => listing = Some(HashMap::new()),
            Event::InitApply(slice) => {
                if let (Some(seen), Some((key, pods))) = (listing.as_mut(), slice_pods(&slice)) {
                    seen.insert(key, pods);
                }
                continue;
            }
            Event::InitDone => slices = listing.take().unwrap_or_default(),
            Event::Apply(slice) => {
                if let Some((key, pods)) = slice_pods(&slice) {
                    slices.insert(key, pods);
                }
            }
            Event::Delete(slice) => {
                if let Some((key, _)) = slice_pods(&slice) {
                    slices.remove(&key);
                }
            }
        }
        publish(&endpoints, &slices, &mut published);
    }
}

fn slice_pods(slice: &DynamicObject) -> Option<((String, String), SlicePods)> {
    let namespace = slice.metadata.namespace.clone()?;
    let name = slice.metadata.name.clone()?;
    let labels = slice.metadata.labels.clone().unwrap_or_default();
    let revision = slices::revision_of(Some(&namespace), &labels)?;
    let data: slices::SliceData = serde_json::from_value(slice.data.clone()).unwrap_or_default();
    Some(((namespace, name), (revision, data.pods())))
}

/// Tells the activator each revision's pods, only where they changed.
fn publish(
    endpoints: &LocalEndpoints,
    slices: &HashMap<(String, String), SlicePods>,
    published: &mut BTreeMap<String, Vec<PodEndpoint>>,
) {
    let mut current: BTreeMap<String, Vec<PodEndpoint>> = BTreeMap::new();
    for (revision, pods) in slices.values() {
        current
            .entry(revision.clone())
            .or_default()
            .extend(pods.iter().cloned());
    }
    for pods in current.values_mut() {
        pods.sort_by(|a, b| a.name.cmp(&b.name));
    }
    for gone in published.keys().filter(|k| !current.contains_key(*k)) {
        endpoints.remove_revision(gone);
    }
    for (revision, pods) in &current {
        if published.get(revision) != Some(pods) {
            endpoints.set_pods(revision, pods.clone());
        }
    }
    *published = current;
}
