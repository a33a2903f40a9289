//! The route table the controller keeps current: InferenceService -> component -> traffic
//! split over revisions, with each revision's throttling settings and the service's rate
//! limit. Resolving a request (Host or `/serving/<ns>/<isvc>/` path, tag host or header,
//! then a roll for the split) is a pure lookup.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;

use crate::layers::rate_limit::Limiter;
use crate::split;

mod from_spec;
mod from_status;
mod resolve;

pub use from_spec::{apply_annotations, revision_settings};
pub use from_status::service_route;

pub(crate) use resolve::{RequestTarget, Resolved};

/// The header that selects a revision by tag (`latest`, `prev`) when tag routing is on.
pub const REVISION_TAG_HEADER: &str = "x-serval-revision-tag";

/// An InferenceService component; each scales and is addressed on its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Component {
    Predictor,
    Transformer,
    Explainer,
}

impl Component {
    const ALL: [Self; 3] = [Self::Predictor, Self::Transformer, Self::Explainer];

    fn suffix(self) -> &'static str {
        match self {
            Self::Predictor => "-predictor",
            Self::Transformer => "-transformer",
            Self::Explainer => "-explainer",
        }
    }
}

/// How the activator treats one revision.
#[derive(Clone, Debug, PartialEq)]
pub struct RevisionSettings {
    /// The revision's key, the same in the endpoints and the autoscaler
    /// (e.g. `default/iris-predictor-1`).
    pub name: String,
    /// Most requests one pod gets at once; 0 means no limit (KServe's default).
    pub container_concurrency: usize,
    /// Longest a request may wait for its response headers, queueing included.
    pub timeout: Duration,
    /// Requests this revision may hold; the activator's `--queue-bound` when unset.
    pub queue_bound: Option<usize>,
}

impl RevisionSettings {
    /// KServe's defaults: no concurrency limit, 300 s timeout.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            container_concurrency: 0,
            timeout: Duration::from_secs(300),
            queue_bound: None,
        }
    }
}

/// One revision's share of a component's traffic.
#[derive(Clone, Debug, PartialEq)]
pub struct TrafficTarget {
    pub revision: RevisionSettings,
    pub percent: u32,
    pub tag: Option<String>,
}

impl TrafficTarget {
    pub fn new(revision: RevisionSettings, percent: u32) -> Self {
        Self {
            revision,
            percent,
            tag: None,
        }
    }

    pub fn tagged(mut self, tag: impl Into<String>) -> Self {
        self.tag = Some(tag.into());
        self
    }
}

/// `serving.serval.dev/rate-limit` and `-burst`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

impl RateLimit {
    /// The burst defaults to the rate (at least 1), as the annotation documents.
    pub fn new(per_second: f64, burst: Option<u32>) -> Self {
        let burst = burst.unwrap_or(per_second.ceil().clamp(1.0, f64::from(u32::MAX)) as u32);
        Self {
            per_second,
            burst: burst.max(1),
        }
    }
}

/// What the controller tells the activator about one InferenceService.
#[derive(Clone, Debug, PartialEq)]
pub struct ServiceRoute {
    pub namespace: String,
    pub name: String,
    pub components: BTreeMap<Component, Vec<TrafficTarget>>,
    pub rate_limit: Option<RateLimit>,
    /// `serving.kserve.io/enable-tag-routing`: `latest-`/`prev-` hosts and the tag header.
    pub tag_routing: bool,
}

impl ServiceRoute {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            components: BTreeMap::new(),
            rate_limit: None,
            tag_routing: false,
        }
    }

    /// Sets a component's traffic as KServe's `canaryTrafficPercent` splits it between the
    /// latest ready revision and the previous one.
    pub fn with_canary(
        mut self,
        component: Component,
        latest: RevisionSettings,
        previous: Option<RevisionSettings>,
        canary_percent: Option<u32>,
    ) -> Self {
        let traffic = split::canary(latest, previous, canary_percent);
        self.components.insert(component, traffic);
        self
    }

    /// The component that takes the service's traffic: the transformer when there is one.
    pub fn entry(&self) -> Component {
        if self.components.contains_key(&Component::Transformer) {
            Component::Transformer
        } else {
            Component::Predictor
        }
    }

    fn key(&self) -> (String, String) {
        (self.namespace.clone(), self.name.clone())
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RouteError {
    #[error("InferenceService {service}, {component:?}: {reason}")]
    Traffic {
        service: String,
        component: Component,
        reason: String,
    },
}

/// One traffic target as the request path sees it.
#[derive(Debug)]
pub(crate) struct Target {
    revision: Arc<RevisionSettings>,
    percent: u32,
    tag: Option<String>,
}

/// A service as the request path sees it.
#[derive(Debug)]
pub(crate) struct ServiceEntry {
    pub(crate) route: ServiceRoute,
    pub(crate) id: String,
    pub(crate) limiter: Option<Arc<Limiter>>,
    components: BTreeMap<Component, Vec<Target>>,
}

/// InferenceServices by (namespace, name); shared by the controller and the request path.
#[derive(Debug)]
pub struct RouteTable {
    domain: String,
    services: RwLock<HashMap<(String, String), Arc<ServiceEntry>>>,
    /// Bumped on every change, so requests held for a revision learn when traffic moves.
    changes: watch::Sender<u64>,
}

impl RouteTable {
    pub fn new(domain: impl Into<String>) -> Self {
        Self {
            domain: domain.into().trim_matches('.').to_ascii_lowercase(),
            services: RwLock::new(HashMap::new()),
            changes: watch::Sender::new(0),
        }
    }

    /// Wakes on every change of the table after this call.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    fn changed(&self) {
        self.changes.send_modify(|generation| *generation += 1);
    }

    /// Adds or replaces a service. A rate limiter survives an update that keeps its limit.
    pub fn upsert(&self, route: ServiceRoute) -> Result<(), RouteError> {
        let id = format!("{}/{}", route.namespace, route.name);
        let mut components = BTreeMap::new();
        for (component, traffic) in &route.components {
            split::check(traffic).map_err(|reason| RouteError::Traffic {
                service: id.clone(),
                component: *component,
                reason,
            })?;
            let targets = traffic
                .iter()
                .map(|t| Target {
                    revision: Arc::new(t.revision.clone()),
                    percent: t.percent,
                    tag: t.tag.clone(),
                })
                .collect();
            components.insert(*component, targets);
        }
        let key = route.key();
        let mut services = self.services.write().unwrap_or_else(|e| e.into_inner());
        let limiter = match (services.get(&key), route.rate_limit) {
            (Some(old), Some(limit)) if old.route.rate_limit == Some(limit) => old.limiter.clone(),
            (_, limit) => limit.map(|l| Arc::new(Limiter::new(l))),
        };
        let entry = ServiceEntry {
            route,
            id,
            limiter,
            components,
        };
        services.insert(key, Arc::new(entry));
        drop(services);
        self.changed();
        Ok(())
    }

    pub fn remove(&self, namespace: &str, name: &str) {
        self.write()
            .remove(&(namespace.to_string(), name.to_string()));
        self.changed();
    }

    /// The routes known now, sorted by namespace and name.
    pub fn routes(&self) -> Vec<ServiceRoute> {
        let services = self.services.read().unwrap_or_else(|e| e.into_inner());
        let mut routes: Vec<_> = services.values().map(|s| s.route.clone()).collect();
        routes.sort_by_key(ServiceRoute::key);
        routes
    }

    fn write(
        &self,
    ) -> std::sync::RwLockWriteGuard<'_, HashMap<(String, String), Arc<ServiceEntry>>> {
        self.services.write().unwrap_or_else(|e| e.into_inner())
    }

    fn get(&self, namespace: &str, name: &str) -> Option<Arc<ServiceEntry>> {
        let services = self.services.read().unwrap_or_else(|e| e.into_inner());
        services
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }
}

#[cfg(test)]
mod tests;
