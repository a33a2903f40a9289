//! Actuation on Kubernetes: the revision Deployment's `/scale` subresource, as the HPA
//! does, so the controller never has to write `replicas` after creating the Deployment.

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, Patch, PatchParams};
use kube::Client;

use super::RevisionKey;
use crate::live::{ScaleError, Scaler};

/// Field manager named in the API server's managed fields.
const FIELD_MANAGER: &str = "serval-autoscaler";

#[derive(Clone)]
pub struct DeploymentScaler {
    client: Client,
}

impl std::fmt::Debug for DeploymentScaler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeploymentScaler").finish_non_exhaustive()
    }
}

impl DeploymentScaler {
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

impl Scaler for DeploymentScaler {
    async fn scale(&self, revision: &str, desired: u32) -> Result<(), ScaleError> {
        let error = |reason: String| ScaleError {
            revision: revision.to_string(),
            desired,
            reason,
        };
        let key = RevisionKey::parse(revision)
            .ok_or_else(|| error("not a namespace/name revision key".into()))?;
        let deployments: Api<Deployment> = Api::namespaced(self.client.clone(), &key.namespace);
        let patch = serde_json::json!({ "spec": { "replicas": desired } });
        deployments
            .patch_scale(
                &key.name,
                &PatchParams::apply(FIELD_MANAGER),
                &Patch::Merge(&patch),
            )
            .await
            .map(|_| ())
            .map_err(|e| error(e.to_string()))
    }
}
