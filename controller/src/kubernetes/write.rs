//! What the controller writes besides revisions: the Services every InferenceService
//! keeps (created once, or applied only when they differ), and how API errors are named.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::ResourceExt;
use serval_api::InferenceService;

use super::reconciler::{ControllerError, MANAGER};
use super::services::entry_service;
use super::Settings;
use crate::rollout::{component_template, COMPONENTS};

pub(super) fn api_error(
    action: &'static str,
    kind: &'static str,
    namespace: &str,
    name: &str,
) -> impl FnOnce(kube::Error) -> ControllerError {
    let (namespace, name) = (namespace.to_string(), name.to_string());
    move |source| ControllerError::Api {
        action,
        kind,
        namespace,
        name,
        source,
    }
}

pub(super) fn is_status(error: &kube::Error, code: u16) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == code)
}

pub(super) async fn create_service(
    services: &Api<Service>,
    service: &Service,
    namespace: &str,
) -> Result<(), ControllerError> {
    let name = service.name_any();
    match services.create(&PostParams::default(), service).await {
        Ok(_) => Ok(()),
        Err(e) if is_status(&e, 409) => Ok(()),
        Err(e) => Err(api_error("create", "Service", namespace, &name)(e)),
    }
}

/// `<isvc>` and `<isvc>-<component>` point at the activator; a removed component's goes.
pub(super) async fn apply_entry_services(
    isvc: &InferenceService,
    settings: &Settings,
    services: &Api<Service>,
    existing: &[Service],
) -> Result<(), ControllerError> {
    let namespace = isvc.namespace().unwrap_or_default();
    let name = isvc.name_any();
    let mut wanted: BTreeMap<String, Service> = BTreeMap::new();
    wanted.insert(name.clone(), entry_service(isvc, &name, None, settings));
    for kind in COMPONENTS {
        if component_template(isvc, kind).is_some() {
            let service_name = format!("{name}-{}", kind.as_str());
            wanted.insert(
                service_name.clone(),
                entry_service(isvc, &service_name, Some(kind), settings),
            );
        }
    }
    for (service_name, service) in &wanted {
        let current = existing.iter().find(|s| &s.name_any() == service_name);
        let same = current.is_some_and(|s| {
            s.spec.as_ref().and_then(|spec| spec.external_name.as_ref())
                == service
                    .spec
                    .as_ref()
                    .and_then(|spec| spec.external_name.as_ref())
        });
        if !same {
            services
                .patch(
                    service_name,
                    &PatchParams::apply(MANAGER).force(),
                    &Patch::Apply(service),
                )
                .await
                .map_err(api_error("apply", "Service", &namespace, service_name))?;
        }
    }
    for service in existing {
        let service_name = service.name_any();
        let entry = service
            .spec
            .as_ref()
            .is_some_and(|s| s.type_.as_deref() == Some("ExternalName"));
        if entry && !wanted.contains_key(&service_name) {
            match services
                .delete(&service_name, &DeleteParams::background())
                .await
            {
                Ok(_) => {}
                Err(e) if is_status(&e, 404) => {}
                Err(e) => return Err(api_error("delete", "Service", &namespace, &service_name)(e)),
            }
        }
    }
    Ok(())
}
