//! The Kubernetes backend of the revision reconciler: what a revision is on a cluster
//! (a Deployment and a private Service, [`revision`], [`services`]), how a revision's health
//! is read back from it ([`health`]), and, with the `kubernetes` feature, the kube-rs
//! controller that applies [`crate::rollout`]'s plan to the API server ([`run`]).

pub mod admission;
pub mod health;
pub mod labels;
pub mod revision;
pub mod services;
pub mod status_patch;
pub mod storage;

#[cfg(feature = "kubernetes")]
mod cache;
#[cfg(feature = "kubernetes")]
mod leader;
#[cfg(feature = "kubernetes")]
mod reconciler;
#[cfg(feature = "kubernetes")]
mod server;
#[cfg(feature = "kubernetes")]
mod webhook;
#[cfg(feature = "kubernetes")]
mod write;

#[cfg(feature = "kubernetes")]
pub use leader::LEASE_NAME;
#[cfg(feature = "kubernetes")]
pub use reconciler::{run, ControllerError, Options};
#[cfg(feature = "kubernetes")]
pub use webhook::{WebhookError, WebhookOptions, MUTATING_WEBHOOK, VALIDATING_WEBHOOK};

/// What the controller is told about the cluster it runs in.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// Serval's image: the queue-proxy sidecar and the storage initializer of model pods.
    pub image: String,
    /// External domain of service URLs: `http://<isvc>.<namespace>.<domain>`.
    pub domain: String,
    /// Where Serval runs (the activator's namespace).
    pub system_namespace: String,
    /// The activator's Service, which every InferenceService's Services point at.
    pub activator_service: String,
    /// The cluster's DNS suffix for Services.
    pub cluster_suffix: String,
    /// The node model cache, when the chart enables it.
    pub model_cache: Option<storage::ModelCacheSettings>,
    /// The cluster mounts images as volumes (the ImageVolume feature), for `oci+native://`.
    pub image_volumes: bool,
}

impl Settings {
    /// The activator's in-cluster host.
    pub fn activator_host(&self) -> String {
        format!(
            "{}.{}.{}",
            self.activator_service, self.system_namespace, self.cluster_suffix
        )
    }
}

#[cfg(test)]
mod tests;
