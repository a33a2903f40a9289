//! A revision on Kubernetes, built as a value: the Deployment (runtime container from the
//! ServingRuntime or the component's own container, the `serval-queue-proxy` sidecar, the
//! `serval storage-init` init container) exactly as `serval autoscaler` and `serval activator`
//! read it. Pure: the same inputs give the same object, so it is tested without a cluster.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, EnvVar, VolumeMount};
use serde_json::{json, Value};
use serval_api::annotations::knative;
use serval_api::component::{ComponentExtensionSpec, PodFields};
use serval_api::inference_service::ComponentKind;
use serval_api::predictor::{ModelSpec, PredictorImplementation};
use serval_api::revision::{ADMIN_PORT_NAME, COMPONENT_SPEC_ANNOTATION, REVISION_LABEL};
use serval_api::runtime_selection::select_runtime;
use serval_api::serving_runtime::render_arg;
use serval_api::{ClusterServingRuntime, InferenceService, ServingRuntime};

use super::labels;
use super::storage::{model_storage, StorageSecret};
use super::Settings;
use crate::rollout::TemplateProblem;

/// Where the storage initializer puts the model, and where runtimes read it (KServe's path).
pub const MODEL_MOUNT: &str = "/mnt/models";
/// The port the runtime (or the user's container) serves HTTP on, as in KServe.
pub const RUNTIME_PORT: u16 = 8080;
/// The queue-proxy's user port, which the revision's Service and the activator reach.
pub const QUEUE_PROXY_PORT: u16 = 8012;
/// The queue-proxy's admin port (`/stats`, `/healthz`, `/wait-for-drain`).
pub const ADMIN_PORT: u16 = 9091;
/// An emptyDir both containers mount: `serval runtime` also serves REST on a Unix socket
/// there and the queue-proxy reaches it through that, not the pod's loopback TCP (a fifth
/// less CPU per request for each, docs/benchmarks.md).
const SOCKETS_VOLUME: &str = "serval-sockets";
const SOCKETS_DIR: &str = "/var/run/serval-sockets";
/// KServe's default request timeout, seconds.
const DEFAULT_TIMEOUT_SECONDS: i64 = 300;
/// On the Deployment: the hash of the template it was made from.
pub const TEMPLATE_HASH_ANNOTATION: &str = "serving.serval.dev/template-hash";

/// What one component's revisions are made of, before a revision name is given.
#[derive(Clone, Debug, PartialEq)]
pub struct RevisionTemplate {
    pub kind: ComponentKind,
    /// The container that serves: the runtime's, or the component's own.
    pub container: Container,
    pub pod: PodFields,
    pub extension: ComponentExtensionSpec,
    pub storage_uri: Option<String>,
    /// `storageUris`: more locations, each with its mount path.
    pub storage_uris: Vec<serval_api::predictor::StorageUri>,
    /// Annotations the autoscaler reads (the service's, then the component's).
    pub annotations: BTreeMap<String, String>,
    /// The runtime's name, for the pods' labels.
    pub runtime: Option<String>,
}

fn problem(reason: &str, message: impl Into<String>) -> TemplateProblem {
    TemplateProblem {
        reason: reason.to_string(),
        message: message.into(),
    }
}

/// KServe lays the model spec's container fields over the runtime's container: image (or
/// `runtimeVersion` as its tag), resources and command replace, args and env add to it.
pub(crate) fn overlay(mut container: Container, model: &ModelSpec) -> Container {
    let extension = &model.extension;
    let inline = &extension.container;
    if let Some(image) = &inline.image {
        container.image = Some(image.clone());
    } else if let (Some(version), Some(image)) = (&extension.runtime_version, &container.image) {
        let repository = image.rsplit_once(':').map_or(image.as_str(), |(r, _)| r);
        container.image = Some(format!("{repository}:{version}"));
    }
    if inline.command.is_some() {
        container.command = inline.command.clone();
    }
    if let Some(args) = &inline.args {
        container
            .args
            .get_or_insert_with(Vec::new)
            .extend(args.iter().cloned());
    }
    if let Some(env) = &inline.env {
        let merged = container.env.get_or_insert_with(Vec::new);
        for var in env {
            merged.retain(|v| v.name != var.name);
            merged.push(var.clone());
        }
    }
    if inline.resources.is_some() {
        container.resources = inline.resources.clone();
    }
    if let Some(mounts) = &inline.volume_mounts {
        container
            .volume_mounts
            .get_or_insert_with(Vec::new)
            .extend(mounts.iter().cloned());
    }
    container
}

fn merged_annotations(
    isvc: &InferenceService,
    extension: &ComponentExtensionSpec,
) -> BTreeMap<String, String> {
    let mut annotations = isvc.metadata.annotations.clone().unwrap_or_default();
    annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    annotations.extend(extension.annotations.clone().unwrap_or_default());
    annotations
}

/// The template of one component, with the runtime chosen as KServe chooses it.
pub fn revision_template(
    isvc: &InferenceService,
    kind: ComponentKind,
    namespaced: &[ServingRuntime],
    cluster: &[ClusterServingRuntime],
) -> Result<RevisionTemplate, TemplateProblem> {
    let spec = &isvc.spec;
    let name = isvc.metadata.name.clone().unwrap_or_default();
    let namespace = isvc.metadata.namespace.clone().unwrap_or_default();
    let render = |container: &mut Container, field: &str| -> Result<(), TemplateProblem> {
        for arg in container.args.iter_mut().flatten() {
            *arg = render_arg(arg, &isvc.metadata)
                .map_err(|e| problem("InvalidSpec", format!("{field}: {e}")))?;
        }
        Ok(())
    };
    let first_container = |pod: &PodFields, path: &str| {
        pod.containers
            .iter()
            .flatten()
            .next()
            .cloned()
            .ok_or_else(|| problem("InvalidSpec", format!("{path}: needs a container")))
    };
    // A ServingRuntime's own annotations reach its pods, below the service's.
    let mut runtime_annotations = BTreeMap::new();
    let mut storage_uris = Vec::new();
    let (mut container, pod, extension, storage_uri, runtime) = match kind {
        ComponentKind::Predictor => {
            let predictor = &spec.predictor;
            match predictor.implementation() {
                Some(PredictorImplementation::Model(model)) => {
                    let selected = select_runtime(&model, namespaced, cluster).map_err(|e| {
                        problem("NoSupportingRuntime", format!("spec.predictor: {e}"))
                    })?;
                    let runtime_container =
                        selected.spec.containers.first().cloned().ok_or_else(|| {
                            problem(
                                "InvalidRuntime",
                                format!("runtime {:?} has no container", selected.name),
                            )
                        })?;
                    let mut pod = predictor.pod.clone();
                    let runtime_spec = selected.spec;
                    pod.node_selector = pod.node_selector.or(runtime_spec.node_selector.clone());
                    pod.tolerations = pod.tolerations.or(runtime_spec.tolerations.clone());
                    pod.affinity = pod.affinity.or(runtime_spec.affinity.clone());
                    if let Some(secrets) = &runtime_spec.image_pull_secrets {
                        pod.image_pull_secrets
                            .get_or_insert_with(Vec::new)
                            .extend(secrets.iter().cloned());
                    }
                    runtime_annotations = runtime_spec.annotations.clone().unwrap_or_default();
                    storage_uris = model.extension.storage_uris.clone().unwrap_or_default();
                    if let Some(volumes) = &runtime_spec.volumes {
                        pod.volumes
                            .get_or_insert_with(Vec::new)
                            .extend(volumes.iter().cloned());
                    }
                    (
                        overlay(runtime_container, &model),
                        pod,
                        predictor.component.clone(),
                        model.extension.storage_uri.clone(),
                        Some(selected.name.to_string()),
                    )
                }
                Some(PredictorImplementation::Custom) => {
                    let pod = predictor.pod.clone();
                    let container = first_container(&pod, "spec.predictor.containers")?;
                    let uri = container
                        .env
                        .iter()
                        .flatten()
                        .find(|e| e.name == "STORAGE_URI")
                        .and_then(|e| e.value.clone());
                    (container, pod, predictor.component.clone(), uri, None)
                }
                None => {
                    return Err(problem(
                        "InvalidSpec",
                        "spec.predictor: no model implementation or containers",
                    ))
                }
            }
        }
        ComponentKind::Transformer | ComponentKind::Explainer => {
            let (pod, extension, path) = match kind {
                ComponentKind::Transformer => {
                    let t = spec
                        .transformer
                        .as_ref()
                        .ok_or_else(|| problem("InvalidSpec", "no transformer"))?;
                    (
                        t.pod.clone(),
                        t.component.clone(),
                        "spec.transformer.containers",
                    )
                }
                _ => {
                    let e = spec
                        .explainer
                        .as_ref()
                        .ok_or_else(|| problem("InvalidSpec", "no explainer"))?;
                    if e.art.is_some() && e.pod.containers.as_ref().is_none_or(Vec::is_empty) {
                        return Err(problem(
                            "InvalidSpec",
                            "spec.explainer.art: KServe's ART explainer image is not bundled; give the explainer `containers`",
                        ));
                    }
                    (
                        e.pod.clone(),
                        e.component.clone(),
                        "spec.explainer.containers",
                    )
                }
            };
            let mut container = first_container(&pod, path)?;
            // What KServe gives its transformers and explainers: the model's name and where
            // the predictor answers (its Service, which reaches the activator).
            container.args.get_or_insert_with(Vec::new).extend([
                "--model_name".to_string(),
                name.clone(),
                "--predictor_host".to_string(),
                format!("{name}-predictor.{namespace}"),
                "--http_port".to_string(),
                RUNTIME_PORT.to_string(),
            ]);
            (container, pod, extension, None, None)
        }
    };
    render(&mut container, &format!("spec.{}", kind.as_str()))?;
    container.name = "kserve-container".to_string();
    Ok(RevisionTemplate {
        kind,
        annotations: {
            runtime_annotations.extend(merged_annotations(isvc, &extension));
            runtime_annotations
        },
        container,
        pod,
        extension,
        storage_uri,
        storage_uris,
        runtime,
    })
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_string(),
        value: Some(value.to_string()),
        value_from: None,
    }
}

/// Replicas a new revision starts with: Knative's `initial-scale` (1 unless annotated),
/// never below `minReplicas`.
fn initial_replicas(template: &RevisionTemplate) -> i32 {
    let initial = template
        .annotations
        .get(knative::INITIAL_SCALE)
        .and_then(|v| v.parse::<i32>().ok())
        .unwrap_or(1)
        .max(0);
    let min = template.extension.min_replicas.unwrap_or(1).max(0);
    initial.max(min)
}

/// The Deployment of revision `revision` of `isvc`.
pub fn revision_deployment(
    isvc: &InferenceService,
    template: &RevisionTemplate,
    revision: &str,
    template_hash: &str,
    settings: &Settings,
    secrets: &[StorageSecret],
) -> Deployment {
    let name = isvc.metadata.name.clone().unwrap_or_default();
    let namespace = isvc.metadata.namespace.clone().unwrap_or_default();
    let timeout = template
        .extension
        .timeout_seconds
        .unwrap_or(DEFAULT_TIMEOUT_SECONDS)
        .max(1);

    let mut runtime = template.container.clone();
    runtime.ports = Some(
        serde_json::from_value(json!([
            {"name": "user-port", "containerPort": RUNTIME_PORT, "protocol": "TCP"}
        ]))
        .unwrap_or_default(),
    );
    let mut volumes: Vec<Value> = template
        .pod
        .volumes
        .iter()
        .flatten()
        .map(|v| serde_json::to_value(v).unwrap_or_default())
        .collect();
    let mut init_containers: Vec<Value> = template
        .pod
        .init_containers
        .iter()
        .flatten()
        .map(|c| serde_json::to_value(c).unwrap_or_default())
        .collect();
    let model = model_storage(template, settings, secrets);
    volumes.extend(model.volumes);
    let mut modelcar = None;
    if let Some(car) = model.modelcar {
        init_containers.push(car.init_container);
        modelcar = Some(car.container);
        let context = runtime
            .security_context
            .get_or_insert_with(Default::default);
        context
            .run_as_user
            .get_or_insert(super::storage::MODELCAR_UID);
    }
    init_containers.extend(model.init_container);
    runtime.volume_mounts.get_or_insert_with(Vec::new).extend(
        model
            .runtime_mounts
            .into_iter()
            .filter_map(|m| serde_json::from_value::<VolumeMount>(m).ok()),
    );
    runtime.env.get_or_insert_with(Vec::new).extend([
        env("PORT", &RUNTIME_PORT.to_string()),
        env(
            crate::RUNTIME_SOCKET_ENV,
            &format!("{SOCKETS_DIR}/{RUNTIME_PORT}.sock"),
        ),
    ]);
    volumes.push(json!({"name": SOCKETS_VOLUME, "emptyDir": {}}));
    runtime
        .volume_mounts
        .get_or_insert_with(Vec::new)
        .push(VolumeMount {
            name: SOCKETS_VOLUME.to_string(),
            mount_path: SOCKETS_DIR.to_string(),
            ..Default::default()
        });
    runtime.termination_message_policy = Some("FallbackToLogsOnError".to_string());
    // As Knative does for the user container: when the pod is told to stop, the model server
    // keeps serving until the queue-proxy has drained (it fails readiness, takes what is
    // still routed to it, finishes what it holds), so no accepted request finds the model
    // server gone. The queue-proxy itself drains on its own SIGTERM.
    let lifecycle = runtime.lifecycle.get_or_insert_with(Default::default);
    if lifecycle.pre_stop.is_none() {
        lifecycle.pre_stop = serde_json::from_value(json!({
            "httpGet": {"path": "/wait-for-drain", "port": ADMIN_PORT}
        }))
        .ok();
    }

    let mut queue_proxy_args = vec![
        format!("--listen=0.0.0.0:{QUEUE_PROXY_PORT}"),
        format!("--upstream=127.0.0.1:{RUNTIME_PORT}"),
        format!("--local-sockets={SOCKETS_DIR}"),
        format!("--admin-listen=0.0.0.0:{ADMIN_PORT}"),
        format!(
            "--container-concurrency={}",
            template.extension.container_concurrency.unwrap_or(0).max(0)
        ),
        format!("--request-timeout={timeout}s"),
    ];
    queue_proxy_args.extend(crate::runtime_metric_args(&template.annotations));
    let queue_proxy = json!({
        "name": "queue-proxy",
        "image": settings.image,
        "command": ["/usr/local/bin/serval-queue-proxy"],
        "args": queue_proxy_args,
        "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
        "volumeMounts": [{"name": SOCKETS_VOLUME, "mountPath": SOCKETS_DIR}],
        "ports": [
            {"name": "http", "containerPort": QUEUE_PROXY_PORT, "protocol": "TCP"},
            {"name": ADMIN_PORT_NAME, "containerPort": ADMIN_PORT, "protocol": "TCP"}
        ],
        "readinessProbe": {
            "httpGet": {"path": "/healthz", "port": ADMIN_PORT_NAME},
            "periodSeconds": 1,
            "failureThreshold": 1
        },
        "resources": {
            "requests": {"cpu": "25m", "memory": "16Mi"},
            "limits": {"memory": "128Mi"}
        },
        "securityContext": {
            "allowPrivilegeEscalation": false,
            "readOnlyRootFilesystem": true,
            "runAsNonRoot": true,
            "capabilities": {"drop": ["ALL"]}
        }
    });

    let mut pod_labels = template.extension.labels.clone().unwrap_or_default();
    pod_labels.extend(labels::revision(&name, template.kind, revision));
    let mut pod_spec = serde_json::to_value(&template.pod).unwrap_or_else(|_| json!({}));
    let fields = pod_spec.as_object_mut().expect("pod fields are an object");
    fields.insert(
        "containers".to_string(),
        Value::Array(
            [
                serde_json::to_value(&runtime).unwrap_or_default(),
                queue_proxy,
            ]
            .into_iter()
            .chain(modelcar.clone())
            .collect(),
        ),
    );
    if modelcar.is_some() {
        fields.insert("shareProcessNamespace".to_string(), json!(true));
    }
    if init_containers.is_empty() {
        fields.remove("initContainers");
    } else {
        fields.insert("initContainers".to_string(), Value::Array(init_containers));
    }
    if volumes.is_empty() {
        fields.remove("volumes");
    } else {
        fields.insert("volumes".to_string(), Value::Array(volumes));
    }
    // Long enough for the longest request to finish after the pod is told to stop.
    fields
        .entry("terminationGracePeriodSeconds")
        .or_insert(json!(timeout + 30));

    let mut annotations = template.annotations.clone();
    annotations.insert(
        COMPONENT_SPEC_ANNOTATION.to_string(),
        serde_json::to_string(&template.extension).unwrap_or_default(),
    );
    annotations.insert(
        TEMPLATE_HASH_ANNOTATION.to_string(),
        template_hash.to_string(),
    );
    let mut deployment_labels = labels::revision(&name, template.kind, revision);
    if let Some(runtime) = &template.runtime {
        deployment_labels.insert(labels::RUNTIME.to_string(), runtime.clone());
    }
    let mut pod_annotations = template.annotations.clone();
    pod_annotations.retain(|k, _| !k.starts_with("autoscaling.knative.dev/"));
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": revision,
            "namespace": namespace,
            "labels": deployment_labels,
            "annotations": annotations,
            "ownerReferences": [labels::owner(isvc)],
        },
        "spec": {
            "replicas": initial_replicas(template),
            "selector": {"matchLabels": {REVISION_LABEL: revision}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "25%"}},
            // Knative's progress deadline: past it the revision counts as failed.
            "progressDeadlineSeconds": crate::rollout::PROGRESS_DEADLINE.as_secs(),
            "template": {
                "metadata": {"labels": pod_labels, "annotations": pod_annotations},
                "spec": pod_spec,
            },
        },
    }))
    .expect("a revision Deployment is a valid Deployment")
}
