//! What `serval dev` wires around the local reconciler: the in-process autoscaler scales each
//! revision, the activator routes each service by the status the reconciler decided (the same
//! reading of `status.components.*.traffic` as on a cluster), and notes go to stderr.

use std::collections::BTreeMap;
use std::sync::Arc;

use serval_activator::{service_route, RouteTable};
use serval_api::inference_service::ComponentKind;
use serval_api::InferenceService;
use serval_autoscaler::live::{Autoscaler, Scaler};
use serval_autoscaler::{AutoscalerConfig, ScalingSpec};
use serval_controller::local::LocalPlatform;

pub(crate) struct DevPlatform<S: Scaler> {
    pub(crate) config: AutoscalerConfig,
    pub(crate) autoscaler: Arc<Autoscaler<S>>,
    pub(crate) routes: Arc<RouteTable>,
}

impl<S: Scaler> LocalPlatform for DevPlatform<S> {
    fn add_revision(
        &self,
        key: &str,
        isvc: &InferenceService,
        kind: ComponentKind,
    ) -> Result<(), String> {
        let extension = isvc.spec.extension(kind).ok_or("no such component")?;
        // The component's own annotations win over the service's, as in KServe.
        let mut annotations: BTreeMap<String, String> =
            isvc.metadata.annotations.clone().unwrap_or_default();
        annotations.extend(extension.annotations.clone().unwrap_or_default());
        let scaling = ScalingSpec::from_annotations(
            extension,
            &annotations,
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
        self.autoscaler.upsert_revision(key, scaling);
        Ok(())
    }

    fn remove_revision(&self, key: &str) {
        self.autoscaler.remove_revision(key);
    }

    fn publish(&self, isvc: &InferenceService) {
        let namespace = isvc.metadata.namespace.as_deref().unwrap_or("default");
        let name = isvc.metadata.name.as_deref().unwrap_or_default();
        match service_route(isvc) {
            Some(route) => {
                if let Err(e) = self.routes.upsert(route) {
                    eprintln!("{namespace}/{name}: cannot route: {e}");
                }
            }
            None => self.routes.remove(namespace, name),
        }
    }

    fn unpublish(&self, namespace: &str, name: &str) {
        self.routes.remove(namespace, name);
    }

    fn note(&self, line: String) {
        eprintln!("{line}");
    }
}
