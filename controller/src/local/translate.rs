//! Turning an InferenceService's components into local processes: the predictor's
//! ServingRuntime is chosen as on Kubernetes, its container becomes a command on this
//! machine, and the model comes from a local directory instead of a storage initializer;
//! transformers and explainers run their own container's command.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serval_api::component::ComponentExtensionSpec;
use serval_api::inference_service::ComponentKind;
use serval_api::predictor::{ModelSpec, PredictorImplementation};
use serval_api::runtime_selection::{select_runtime, RuntimeSelectionError};
use serval_api::serving_runtime::{render_arg, TemplateError};
use serval_api::{ClusterServingRuntime, InferenceService, ServingRuntime};

use super::replica::ReplicaSpec;
use crate::kubernetes::revision::overlay;

/// The image of Serval's own runtime: its containers run the `serval` binary locally.
pub const SERVAL_IMAGE: &str = "ghcr.io/serval-dev/serval";
/// Where KServe's storage initializer puts the model, and where runtimes look for it.
const MODEL_MOUNT: &str = "/mnt/models";

#[derive(Debug, thiserror::Error)]
pub enum TranslateError {
    #[error("spec.predictor: {0}")]
    Runtime(#[from] RuntimeSelectionError),
    #[error("spec.predictor: no model implementation or containers")]
    NoImplementation,
    #[error("{path}: storage {uri:?} is not available locally: use a local path or file:// (serval dev fetches s3://, gs://, az://, https:// and hf:// models itself)")]
    RemoteStorage { path: &'static str, uri: String },
    #[error("{path}: model directory {dir} does not exist")]
    MissingModel { path: &'static str, dir: PathBuf },
    #[error("{path}: needs a container whose command runs on this machine")]
    NoContainer { path: &'static str },
    #[error("{path}: runs only from its image on a cluster; locally, give the component `containers` with a command that runs on this machine")]
    ImageOnly { path: &'static str },
    #[error("runtime {runtime:?}: container has neither command nor args to run locally")]
    NothingToRun { runtime: String },
    #[error("runtime {runtime:?}: {source}")]
    Template {
        runtime: String,
        #[source]
        source: TemplateError,
    },
}

/// The model directory a storage URI names on this machine; relative paths are taken from
/// the manifest's directory.
pub fn local_model_dir(uri: &str, manifest_dir: &Path) -> Result<PathBuf, TranslateError> {
    let path = if let Some(rest) = uri.strip_prefix("file://") {
        PathBuf::from(rest)
    } else if uri.contains("://") {
        return Err(TranslateError::RemoteStorage {
            path: "spec.predictor.model.storageUri",
            uri: uri.to_string(),
        });
    } else {
        PathBuf::from(uri)
    };
    let path = if path.is_absolute() {
        path
    } else {
        manifest_dir.join(path)
    };
    match path.canonicalize() {
        Ok(dir) if dir.is_dir() => Ok(dir),
        _ => Err(TranslateError::MissingModel {
            path: "spec.predictor.model.storageUri",
            dir: path,
        }),
    }
}

/// The predictor's processes for revision `revision`.
pub fn predictor_replica_spec(
    isvc: &InferenceService,
    revision: &str,
    namespaced: &[ServingRuntime],
    cluster: &[ClusterServingRuntime],
    serval_bin: &Path,
    manifest_dir: &Path,
) -> Result<ReplicaSpec, TranslateError> {
    let predictor = &isvc.spec.predictor;
    let mut runtime_annotations = BTreeMap::new();
    let (container, runtime_name, model_dir) = match predictor.implementation() {
        Some(PredictorImplementation::Model(model)) => {
            let selected = select_runtime(&model, namespaced, cluster)?;
            runtime_annotations = selected.spec.annotations.clone().unwrap_or_default();
            let container = selected.spec.containers.first().cloned().ok_or_else(|| {
                TranslateError::NothingToRun {
                    runtime: selected.name.to_string(),
                }
            })?;
            let model_dir = model_directory(&model, manifest_dir)?;
            (
                overlay(container, &model),
                selected.name.to_string(),
                model_dir,
            )
        }
        Some(PredictorImplementation::Custom) => {
            let container = predictor
                .pod
                .containers
                .iter()
                .flatten()
                .next()
                .cloned()
                .ok_or(TranslateError::NoImplementation)?;
            (container, "custom container".to_string(), None)
        }
        None => return Err(TranslateError::NoImplementation),
    };
    let mut command = rendered(container.command.iter().flatten(), isvc, &runtime_name)?;
    let mut args = rendered(container.args.iter().flatten(), isvc, &runtime_name)?;
    let serval_runtime = container
        .image
        .as_deref()
        .is_some_and(|image| image.starts_with(SERVAL_IMAGE));
    if serval_runtime {
        // Serval's image runs the serval binary; here that is this very binary.
        command = vec![serval_bin.display().to_string()];
        args.retain(|a| {
            !a.starts_with("--http-port")
                && !a.starts_with("--grpc-port")
                && !a.starts_with("--bind-address")
        });
        args.extend(
            [
                "--bind-address=127.0.0.1",
                "--http-port={http_port}",
                "--grpc-port={grpc_port}",
            ]
            .map(String::from),
        );
    }
    if let Some(dir) = &model_dir {
        let local = dir.display().to_string();
        for arg in command.iter_mut().chain(args.iter_mut()) {
            *arg = arg.replace(MODEL_MOUNT, &local);
        }
    }
    command.extend(args);
    if command.is_empty() {
        return Err(TranslateError::NothingToRun {
            runtime: runtime_name,
        });
    }
    let mut env: Vec<(String, String)> = container
        .env
        .iter()
        .flatten()
        .filter_map(|e| e.value.clone().map(|v| (e.name.clone(), v)))
        .collect();
    // A user's own server learns its port the twelve-factor way.
    env.push(("PORT".into(), "{http_port}".into()));
    let mut queue_proxy_args = queue_proxy_args(&predictor.component);
    if serval_runtime {
        queue_proxy_args.push("--probe-path=/v2/health/ready".into());
    }
    // The service's own annotations win over its runtime's, as on Kubernetes.
    runtime_annotations.extend(isvc.metadata.annotations.clone().unwrap_or_default());
    queue_proxy_args.extend(crate::runtime_metric_args(&runtime_annotations));
    Ok(ReplicaSpec {
        revision: revision.to_string(),
        runtime_command: command,
        runtime_env: env,
        queue_proxy_args,
    })
}

/// `args` with KServe's `{{.Name}}`-style placeholders filled from the service's metadata.
fn rendered<'a>(
    args: impl Iterator<Item = &'a String>,
    isvc: &InferenceService,
    runtime: &str,
) -> Result<Vec<String>, TranslateError> {
    args.map(|arg| {
        render_arg(arg, &isvc.metadata).map_err(|source| TranslateError::Template {
            runtime: runtime.to_string(),
            source,
        })
    })
    .collect()
}

/// The queue-proxy flags a component's KServe fields set.
fn queue_proxy_args(component: &ComponentExtensionSpec) -> Vec<String> {
    let mut args = vec![format!(
        "--container-concurrency={}",
        component.container_concurrency.unwrap_or(0).max(0)
    )];
    if let Some(timeout) = component.timeout_seconds {
        args.push(format!("--request-timeout={timeout}s"));
    }
    args
}

/// A transformer's or explainer's processes: its first container as a local command, given
/// what KServe gives it (`--model_name`, `--predictor_host`, `--http_port`), so KServe's own
/// transformer and explainer code runs unchanged. `predictor_host` is where the predictor is
/// reached, through the activator.
pub fn companion_replica_spec(
    isvc: &InferenceService,
    kind: ComponentKind,
    revision: &str,
    predictor_host: &str,
) -> Result<ReplicaSpec, TranslateError> {
    let spec = &isvc.spec;
    let (pod, component, path) = match kind {
        ComponentKind::Transformer => {
            let t = spec
                .transformer
                .as_ref()
                .ok_or(TranslateError::NoImplementation)?;
            (&t.pod, &t.component, "spec.transformer.containers")
        }
        ComponentKind::Explainer => {
            let e = spec
                .explainer
                .as_ref()
                .ok_or(TranslateError::NoImplementation)?;
            if e.art.is_some() {
                return Err(TranslateError::ImageOnly {
                    path: "spec.explainer.art",
                });
            }
            (&e.pod, &e.component, "spec.explainer.containers")
        }
        ComponentKind::Predictor => return Err(TranslateError::NoImplementation),
    };
    let container = pod
        .containers
        .iter()
        .flatten()
        .next()
        .ok_or(TranslateError::NoContainer { path })?;
    let mut command = rendered(
        container
            .command
            .iter()
            .flatten()
            .chain(container.args.iter().flatten()),
        isvc,
        path,
    )?;
    if command.is_empty() {
        return Err(TranslateError::NoContainer { path });
    }
    let name = isvc.metadata.name.clone().unwrap_or_default();
    command.extend([
        "--model_name".to_string(),
        name,
        "--predictor_host".to_string(),
        predictor_host.to_string(),
        "--http_port".to_string(),
        "{http_port}".to_string(),
    ]);
    let mut env: Vec<(String, String)> = container
        .env
        .iter()
        .flatten()
        .filter_map(|e| e.value.clone().map(|v| (e.name.clone(), v)))
        .collect();
    env.push(("PORT".into(), "{http_port}".into()));
    Ok(ReplicaSpec {
        revision: revision.to_string(),
        runtime_command: command,
        runtime_env: env,
        queue_proxy_args: queue_proxy_args(component),
    })
}

fn model_directory(
    model: &ModelSpec,
    manifest_dir: &Path,
) -> Result<Option<PathBuf>, TranslateError> {
    model
        .extension
        .storage_uri
        .as_deref()
        .map(|uri| local_model_dir(uri, manifest_dir))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::builtin_runtimes;
    use serval_api::manifest::{parse_documents, Resource};

    fn isvc(yaml: &str) -> InferenceService {
        let docs = parse_documents(yaml).unwrap();
        match docs.into_iter().next().and_then(|d| d.resource) {
            Some(Resource::InferenceService(isvc)) => *isvc,
            other => panic!("not a valid InferenceService: {other:?}"),
        }
    }

    fn model_dir(test: &str) -> (PathBuf, PathBuf) {
        let base =
            std::env::temp_dir().join(format!("serval-translate-{test}-{}", std::process::id()));
        let dir = base.join("models/iris");
        std::fs::create_dir_all(&dir).unwrap();
        (base, dir.canonicalize().unwrap())
    }

    #[test]
    fn serval_runtime_runs_this_binary_on_the_local_model() {
        let (base, dir) = model_dir("serval");
        let isvc = isvc(
            "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {name: iris}\n\
             spec:\n  predictor:\n    containerConcurrency: 4\n    timeout: 30\n    model:\n      modelFormat: {name: xgboost}\n      storageUri: ./models/iris\n",
        );
        let spec = predictor_replica_spec(
            &isvc,
            "default/iris-predictor-1",
            &[],
            &builtin_runtimes(),
            Path::new("/bin/serval"),
            &base,
        )
        .unwrap();
        assert_eq!(
            spec.runtime_command,
            vec![
                "/bin/serval".to_string(),
                "runtime".into(),
                "--model-name=iris".into(),
                format!("--model-dir={}", dir.display()),
                "--bind-address=127.0.0.1".into(),
                "--http-port={http_port}".into(),
                "--grpc-port={grpc_port}".into(),
            ]
        );
        assert_eq!(
            spec.queue_proxy_args,
            vec![
                "--container-concurrency=4",
                "--request-timeout=30s",
                "--probe-path=/v2/health/ready"
            ]
        );
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn remote_storage_and_missing_models_are_clear_errors() {
        let (base, _) = model_dir("errors");
        let remote = isvc("apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {name: r}\nspec:\n  predictor:\n    onnx: {storageUri: \"s3://bucket/model\"}\n");
        let err = predictor_replica_spec(
            &remote,
            "r",
            &[],
            &builtin_runtimes(),
            Path::new("serval"),
            &base,
        )
        .unwrap_err();
        assert!(err.to_string().contains("not available locally"), "{err}");
        let missing = isvc("apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {name: m}\nspec:\n  predictor:\n    onnx: {storageUri: \"./nowhere\"}\n");
        let err = predictor_replica_spec(
            &missing,
            "m",
            &[],
            &builtin_runtimes(),
            Path::new("serval"),
            &base,
        )
        .unwrap_err();
        assert!(matches!(err, TranslateError::MissingModel { .. }), "{err}");
        let pmml = isvc("apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {name: p}\nspec:\n  predictor:\n    pmml: {storageUri: \"./models/iris\"}\n");
        let err = predictor_replica_spec(
            &pmml,
            "p",
            &[],
            &builtin_runtimes(),
            Path::new("serval"),
            &base,
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("no runtime found to serve model format pmml"),
            "{err}"
        );
        std::fs::remove_dir_all(base).unwrap();
    }

    #[test]
    fn custom_containers_run_their_command_with_a_port() {
        let isvc = isvc(
            "apiVersion: serving.kserve.io/v1beta1\nkind: InferenceService\nmetadata: {name: own}\n\
             spec:\n  predictor:\n    containers:\n      - name: kserve-container\n        image: local\n        command: [python3, -m, http.server]\n        args: [\"{http_port}\"]\n",
        );
        let spec =
            predictor_replica_spec(&isvc, "own", &[], &[], Path::new("serval"), Path::new("/"))
                .unwrap();
        assert_eq!(
            spec.runtime_command,
            vec!["python3", "-m", "http.server", "{http_port}"]
        );
        assert!(spec
            .runtime_env
            .contains(&("PORT".to_string(), "{http_port}".to_string())));
    }
}
