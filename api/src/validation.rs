//! Semantic validation of InferenceServices and ServingRuntimes: the rules the CRD schema
//! cannot say. The same functions back `serval validate`, `serval dev` and the controller.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Container;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::annotations::AutoscalingAnnotations;
use crate::component::{ComponentExtensionSpec, PodFields, ScaleMetric};
pub use crate::field_error::FieldError;
use crate::inference_service::InferenceService;
use crate::predictor::{PredictorExtensionSpec, PredictorSpec};
use crate::serving_runtime::{render_arg, ServingRuntimeSpec};

/// Storage URI schemes a storage initializer can fetch.
pub const STORAGE_SCHEMES: [&str; 14] = [
    "s3://",
    "gs://",
    "az://",
    "https://",
    "http://",
    "pvc://",
    "file://",
    "hf://",
    "modelscope://",
    "oci://",
    "oci+fetch://",
    "oci+native://",
    "hdfs://",
    "webhdfs://",
];

/// Every rule an InferenceService must meet beyond its schema. Empty means valid.
pub fn validate_inference_service(isvc: &InferenceService) -> Vec<FieldError> {
    let mut errors = Vec::new();
    validate_name(&isvc.metadata, true, &mut errors);
    annotation_errors(
        isvc.metadata.annotations.as_ref(),
        "metadata.annotations",
        &mut errors,
    );

    let spec = &isvc.spec;
    validate_predictor(&spec.predictor, &mut errors);
    if let Some(transformer) = &spec.transformer {
        let path = "spec.transformer";
        if !has_containers(&transformer.pod) {
            errors.push(FieldError::new(
                format!("{path}.containers"),
                "a transformer needs at least one container",
            ));
        }
        validate_pod(&transformer.pod, path, &mut errors);
        validate_component(&transformer.component, path, &mut errors);
    }
    if let Some(explainer) = &spec.explainer {
        let path = "spec.explainer";
        match (&explainer.art, has_containers(&explainer.pod)) {
            (Some(_), true) => errors.push(FieldError::new(
                path,
                "set either art or containers, not both",
            )),
            (None, false) => errors.push(FieldError::new(
                path,
                "an explainer needs art or at least one container",
            )),
            _ => {}
        }
        if let Some(uri) = explainer
            .art
            .as_ref()
            .and_then(|a| a.storage_uri.as_deref())
        {
            validate_storage_uri(uri, &format!("{path}.art.storageUri"), &mut errors);
        }
        validate_pod(&explainer.pod, path, &mut errors);
        validate_component(&explainer.component, path, &mut errors);
    }
    errors
}

fn validate_predictor(predictor: &PredictorSpec, errors: &mut Vec<FieldError>) {
    let path = "spec.predictor";
    let implementations = predictor.model_implementations();
    match implementations.as_slice() {
        [] if !has_containers(&predictor.pod) => errors.push(FieldError::new(
            path,
            "no model given: set model (with modelFormat), a framework such as sklearn, or containers",
        )),
        [] | [_] => {}
        many => errors.push(FieldError::new(
            path,
            format!(
                "exactly one model implementation may be set, found {}",
                many.join(", ")
            ),
        )),
    }
    if let Some(model) = &predictor.model {
        if model.model_format.name.trim().is_empty() {
            errors.push(FieldError::new(
                format!("{path}.model.modelFormat.name"),
                "must not be empty",
            ));
        }
        if let Some(runtime) = &model.runtime {
            if runtime.trim().is_empty() {
                errors.push(FieldError::new(
                    format!("{path}.model.runtime"),
                    "must not be empty",
                ));
            }
        }
        validate_extension(&model.extension, &format!("{path}.model"), errors);
    }
    for (name, extension) in predictor.frameworks() {
        validate_extension(extension, &format!("{path}.{name}"), errors);
    }
    validate_pod(&predictor.pod, path, errors);
    validate_component(&predictor.component, path, errors);
}

fn validate_extension(ext: &PredictorExtensionSpec, path: &str, errors: &mut Vec<FieldError>) {
    if let Some(uri) = &ext.storage_uri {
        validate_storage_uri(uri, &format!("{path}.storageUri"), errors);
    }
    for (i, storage) in ext.storage_uris.iter().flatten().enumerate() {
        let item = format!("{path}.storageUris[{i}]");
        validate_storage_uri(&storage.uri, &format!("{item}.uri"), errors);
        if let Some(mount) = &storage.mount_path {
            if !mount.starts_with('/') || mount.split('/').any(|part| part == "..") {
                errors.push(FieldError::new(
                    format!("{item}.mountPath"),
                    format!("{mount:?} must be an absolute path without '..'"),
                ));
            }
        }
    }
}

fn validate_storage_uri(uri: &str, path: &str, errors: &mut Vec<FieldError>) {
    let known = STORAGE_SCHEMES.iter().any(|scheme| uri.starts_with(scheme));
    // A path is a model directory on this machine (`serval dev`), as file:// would be.
    let local_path = ["/", "./", "../"]
        .iter()
        .any(|prefix| uri.starts_with(prefix));
    if !known && !local_path {
        errors.push(FieldError::new(
            path,
            format!(
                "unsupported storage URI {uri:?}: use one of {}, or a local path starting with / or ./",
                STORAGE_SCHEMES.join(", ")
            ),
        ));
    }
}

fn has_containers(pod: &PodFields) -> bool {
    pod.containers.as_ref().is_some_and(|c| !c.is_empty())
}

fn validate_pod(pod: &PodFields, path: &str, errors: &mut Vec<FieldError>) {
    validate_containers(
        pod.containers.as_deref().unwrap_or_default(),
        &format!("{path}.containers"),
        errors,
    );
}

fn validate_containers(containers: &[Container], path: &str, errors: &mut Vec<FieldError>) {
    let mut seen = BTreeSet::new();
    for (i, container) in containers.iter().enumerate() {
        let item = format!("{path}[{i}]");
        if container
            .image
            .as_deref()
            .is_none_or(|image| image.trim().is_empty())
        {
            errors.push(FieldError::new(format!("{item}.image"), "required"));
        }
        if !container.name.is_empty() && !seen.insert(container.name.as_str()) {
            errors.push(FieldError::new(
                format!("{item}.name"),
                format!("duplicate container name {:?}", container.name),
            ));
        }
    }
}

fn validate_component(c: &ComponentExtensionSpec, path: &str, errors: &mut Vec<FieldError>) {
    let mut check = |field: &str, ok: bool, message: String| {
        if !ok {
            errors.push(FieldError::new(format!("{path}.{field}"), message));
        }
    };
    if let Some(min) = c.min_replicas {
        check("minReplicas", min >= 0, format!("{min} must be >= 0"));
    }
    if let Some(max) = c.max_replicas {
        check(
            "maxReplicas",
            max >= 0,
            format!("{max} must be >= 0 (0 means no limit)"),
        );
    }
    if let (Some(max), min) = (c.max_replicas, c.min_replicas_or_default()) {
        check(
            "minReplicas",
            max == 0 || min <= max,
            format!("{min} must not exceed maxReplicas {max}"),
        );
    }
    if let Some(target) = c.scale_target {
        check("scaleTarget", target > 0, format!("{target} must be > 0"));
        if c.scale_metric == Some(ScaleMetric::Gpu) {
            check(
                "scaleTarget",
                target <= 100,
                format!("{target} is a GPU utilisation percent and must be <= 100"),
            );
        }
    }
    if let Some(cc) = c.container_concurrency {
        check(
            "containerConcurrency",
            cc >= 0,
            format!("{cc} must be >= 0 (0 means no limit)"),
        );
    }
    if let Some(timeout) = c.timeout_seconds {
        check(
            "timeout",
            timeout > 0,
            format!("{timeout} must be > 0 seconds"),
        );
    }
    if let Some(percent) = c.canary_traffic_percent {
        check(
            "canaryTrafficPercent",
            (0..=100).contains(&percent),
            format!("{percent} must be between 0 and 100"),
        );
    }
    if let Some(batcher) = &c.batcher {
        for (field, value) in [
            ("batcher.maxBatchSize", batcher.max_batch_size),
            ("batcher.maxLatency", batcher.max_latency),
            ("batcher.timeout", batcher.timeout),
        ] {
            if let Some(v) = value {
                check(field, v > 0, format!("{v} must be > 0"));
            }
        }
    }
    if let Some(url) = c.logger.as_ref().and_then(|l| l.url.as_deref()) {
        check(
            "logger.url",
            url.starts_with("http://") || url.starts_with("https://"),
            format!("{url:?} must be an http:// or https:// URL"),
        );
    }
    annotation_errors(
        c.annotations.as_ref(),
        &format!("{path}.annotations"),
        errors,
    );
}

fn annotation_errors(
    annotations: Option<&BTreeMap<String, String>>,
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    if let Some(annotations) = annotations {
        errors.extend(AutoscalingAnnotations::parse(annotations, path).1);
    }
}

/// `metadata.name`: a DNS-1035 label for InferenceServices (it becomes a host name part),
/// a DNS-1123 subdomain otherwise.
fn validate_name(meta: &ObjectMeta, dns_label: bool, errors: &mut Vec<FieldError>) {
    let path = "metadata.name";
    let Some(name) = meta.name.as_deref().filter(|n| !n.is_empty()) else {
        errors.push(FieldError::new(path, "required"));
        return;
    };
    let (ok, rule, max) = if dns_label {
        (is_dns1035_label(name), "lowercase letters, digits and '-', starting with a letter and ending with a letter or digit", 63)
    } else {
        (
            name.split('.').all(is_dns1123_label),
            "lowercase letters, digits, '-' and '.', starting and ending with a letter or digit",
            253,
        )
    };
    if !ok || name.len() > max {
        errors.push(FieldError::new(
            path,
            format!("{name:?} is not a valid name: at most {max} characters of {rule}"),
        ));
    }
}

fn is_dns1123_label(s: &str) -> bool {
    let bytes = s.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

/// Every rule a ServingRuntime or ClusterServingRuntime spec must meet beyond its schema.
pub fn validate_serving_runtime(meta: &ObjectMeta, spec: &ServingRuntimeSpec) -> Vec<FieldError> {
    let mut errors = Vec::new();
    validate_name(meta, false, &mut errors);
    if spec.containers.is_empty() {
        errors.push(FieldError::new(
            "spec.containers",
            "at least one container is required",
        ));
    }
    validate_containers(&spec.containers, "spec.containers", &mut errors);
    for (i, container) in spec.containers.iter().enumerate() {
        if container.name.is_empty() {
            errors.push(FieldError::new(
                format!("spec.containers[{i}].name"),
                "required",
            ));
        }
        for (j, arg) in container.args.iter().flatten().enumerate() {
            if let Err(e) = render_arg(arg, meta) {
                errors.push(FieldError::new(
                    format!("spec.containers[{i}].args[{j}]"),
                    e.to_string(),
                ));
            }
        }
    }
    for (i, format) in spec.supported_model_formats.iter().enumerate() {
        let path = format!("spec.supportedModelFormats[{i}]");
        if format.name.trim().is_empty() {
            errors.push(FieldError::new(format!("{path}.name"), "must not be empty"));
        }
        if let Some(priority) = format.priority {
            if priority < 1 {
                errors.push(FieldError::new(
                    format!("{path}.priority"),
                    format!("{priority} must be >= 1"),
                ));
            }
            if format.auto_select != Some(true) {
                errors.push(FieldError::new(
                    format!("{path}.priority"),
                    "priority only applies with autoSelect: true",
                ));
            }
        }
    }
    errors
}
