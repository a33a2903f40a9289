//! Where a revision's pods come from: a watch of every revision's pod list. The local
//! implementation is fed by the `serval dev` controller; on Kubernetes an implementation
//! over the EndpointSlices of each revision's private Service feeds the same watch. Pods
//! listed here are not used until the activator's own probe finds them healthy.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::watch;

/// One pod of a revision: where its queue-proxy takes traffic and answers health probes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodEndpoint {
    pub name: String,
    /// The queue-proxy's user port.
    pub address: SocketAddr,
    /// The queue-proxy's readiness URL (its admin `/healthz`); a TCP connect to `address`
    /// when absent.
    pub health_url: Option<http::Uri>,
}

impl PodEndpoint {
    pub fn new(
        name: impl Into<String>,
        address: SocketAddr,
        health_url: Option<http::Uri>,
    ) -> Self {
        Self {
            name: name.into(),
            address,
            health_url,
        }
    }
}

/// Every revision's pods, by revision name.
pub type EndpointsSnapshot = Arc<BTreeMap<String, Vec<PodEndpoint>>>;

/// A source of pod lists.
pub trait Endpoints: Send + Sync + 'static {
    /// The current pods of every revision, updated as they change.
    fn subscribe(&self) -> watch::Receiver<EndpointsSnapshot>;
}

impl<T: Endpoints> Endpoints for Arc<T> {
    fn subscribe(&self) -> watch::Receiver<EndpointsSnapshot> {
        T::subscribe(self)
    }
}

/// Pod lists pushed in by a local controller (`serval dev`) or a test.
#[derive(Debug)]
pub struct LocalEndpoints {
    tx: watch::Sender<EndpointsSnapshot>,
}

impl Default for LocalEndpoints {
    fn default() -> Self {
        Self::new()
    }
}

impl LocalEndpoints {
    pub fn new() -> Self {
        Self {
            tx: watch::Sender::new(Arc::new(BTreeMap::new())),
        }
    }

    /// Replaces the revision's pods.
    pub fn set_pods(&self, revision: &str, pods: Vec<PodEndpoint>) {
        self.tx.send_modify(|all| {
            Arc::make_mut(all).insert(revision.to_string(), pods);
        });
    }

    pub fn remove_revision(&self, revision: &str) {
        self.tx.send_modify(|all| {
            Arc::make_mut(all).remove(revision);
        });
    }
}

impl Endpoints for LocalEndpoints {
    fn subscribe(&self) -> watch::Receiver<EndpointsSnapshot> {
        self.tx.subscribe()
    }
}
