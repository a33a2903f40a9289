//! The route table the controller keeps current: InferenceService -> component -> traffic
//! split over revisions, with each revision's throttling settings and the service's rate
//! limit. Resolving a request (Host or `/serving/<ns>/<isvc>/` path, tag host or header,
//! then a roll for the split) is a pure lookup.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
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

/// Services by namespace, then name.
type Services = HashMap<String, HashMap<String, Arc<ServiceEntry>>>;

/// What a host label without a tag names.
#[derive(Debug, Clone)]
struct Label {
    service: Arc<ServiceEntry>,
    component: Option<Component>,
}

/// The table as requests read it: replaced whole on every change, never locked.
#[derive(Debug, Default)]
struct Snapshot {
    services: Services,
    /// By namespace, then host label: `<isvc>` and `<isvc>-<component>` of every service,
    /// so the common host is one lookup; only a tag reading searches.
    labels: HashMap<String, HashMap<String, Label>>,
}

impl Snapshot {
    fn new(services: Services) -> Self {
        let mut labels: HashMap<String, HashMap<String, Label>> = HashMap::new();
        for (namespace, named) in &services {
            let labels = labels.entry(namespace.clone()).or_default();
            for (name, service) in named {
                for component in Component::ALL {
                    let label = Label {
                        service: service.clone(),
                        component: Some(component),
                    };
                    labels
                        .entry(format!("{name}{}", component.suffix()))
                        .or_insert(label);
                }
            }
            // The plain name wins over another service's component reading.
            for (name, service) in named {
                let label = Label {
                    service: service.clone(),
                    component: None,
                };
                labels.insert(name.clone(), label);
            }
        }
        Self { services, labels }
    }

    fn get(&self, namespace: &str, name: &str) -> Option<&Arc<ServiceEntry>> {
        self.services.get(namespace)?.get(name)
    }

    fn label(&self, namespace: &str, label: &str) -> Option<&Label> {
        self.labels.get(namespace)?.get(label)
    }
}

/// InferenceServices by namespace and name; shared by the controller and the request path.
#[derive(Debug)]
pub struct RouteTable {
    domain: String,
    snapshot: ArcSwap<Snapshot>,
    /// Serialises changes, each of which copies the table.
    writing: Mutex<()>,
    /// Bumped on every change, so requests held for a revision learn when traffic moves.
    changes: watch::Sender<u64>,
}

impl RouteTable {
    pub fn new(domain: impl Into<String>) -> Self {
        Self {
            domain: domain.into().trim_matches('.').to_ascii_lowercase(),
            snapshot: ArcSwap::default(),
            writing: Mutex::new(()),
            changes: watch::Sender::new(0),
        }
    }

    /// Wakes on every change of the table after this call.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Applies `change` to a copy of the services and publishes it.
    fn change(&self, change: impl FnOnce(&mut Services)) {
        let writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let mut services = self.snapshot.load().services.clone();
        change(&mut services);
        services.retain(|_, named| !named.is_empty());
        self.snapshot.store(Arc::new(Snapshot::new(services)));
        drop(writing);
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
        self.change(|services| {
            let named = services.entry(route.namespace.clone()).or_default();
            let limiter = match (named.get(&route.name), route.rate_limit) {
                (Some(old), Some(limit)) if old.route.rate_limit == Some(limit) => {
                    old.limiter.clone()
                }
                (_, limit) => limit.map(|l| Arc::new(Limiter::new(l))),
            };
            let name = route.name.clone();
            let entry = ServiceEntry {
                route,
                id,
                limiter,
                components,
            };
            named.insert(name, Arc::new(entry));
        });
        Ok(())
    }

    pub fn remove(&self, namespace: &str, name: &str) {
        self.change(|services| {
            if let Some(named) = services.get_mut(namespace) {
                named.remove(name);
            }
        });
    }

    #[cfg(test)]
    fn get(&self, namespace: &str, name: &str) -> Option<Arc<ServiceEntry>> {
        self.snapshot.load().get(namespace, name).cloned()
    }

    /// The routes known now, sorted by namespace and name.
    pub fn routes(&self) -> Vec<ServiceRoute> {
        let snapshot = self.snapshot.load();
        let mut routes: Vec<_> = snapshot
            .services
            .values()
            .flat_map(|named| named.values().map(|s| s.route.clone()))
            .collect();
        routes.sort_by_key(ServiceRoute::key);
        routes
    }
}

#[cfg(test)]
mod tests;
