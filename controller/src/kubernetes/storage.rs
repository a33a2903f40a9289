//! How a revision's pod gets its model, as KServe users expect: the `serval storage-init`
//! init container fetches `storageUri` (and each of `storageUris`) into emptyDirs, with
//! the credentials of the component's ServiceAccount; `pvc://` is mounted directly; and
//! with `serving.serval.dev/model-cache: "true"` the model is fetched once per node into the
//! node model cache (a hostPath) and mounted read-only from there. Pure: the reconciler
//! reads the ServiceAccount's Secrets (metadata only) and passes them in.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use serval_api::model_cache::{entry_name, MODEL_DIR};

use super::revision::{RevisionTemplate, MODEL_MOUNT};
use super::Settings;
use crate::rollout::TemplateProblem;

const MODEL_VOLUME: &str = "kserve-provision-location";
const PVC_VOLUME: &str = "kserve-pvc-source";
const CACHE_VOLUME: &str = "serval-model-cache";
const SCRATCH_VOLUME: &str = "storage-initializer-tmp";
/// Where the init container sees the node model cache.
const CACHE_MOUNT: &str = "/var/cache/serval/models";
/// Where a Secret's `gcloud-application-credentials.json` is mounted (KServe's path).
const GCS_CREDENTIALS_DIR: &str = "/var/secrets";
const GCS_CREDENTIALS_KEY: &str = "gcloud-application-credentials.json";

/// KServe's annotations on a storage Secret, and the variables they become.
const S3_ANNOTATIONS: [(&str, &str); 6] = [
    ("serving.kserve.io/s3-usehttps", "S3_USE_HTTPS"),
    ("serving.kserve.io/s3-region", "AWS_REGION"),
    ("serving.kserve.io/s3-verifyssl", "S3_VERIFY_SSL"),
    (
        "serving.kserve.io/s3-useanoncredential",
        "awsAnonymousCredential",
    ),
    (
        "serving.kserve.io/s3-usevirtualbucket",
        "S3_USER_VIRTUAL_BUCKET",
    ),
    ("serving.kserve.io/s3-cabundle", "AWS_CA_BUNDLE"),
];
const S3_ENDPOINT_ANNOTATION: &str = "serving.kserve.io/s3-endpoint";

/// Keys a storage Secret may hold, passed to the initializer by reference: S3, Azure,
/// Hugging Face, ModelScope, Git, OCI registries.
const SECRET_KEYS: [&str; 15] = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_SAS_TOKEN",
    "MODELSCOPE_API_TOKEN",
    "GIT_USERNAME",
    "OCI_USERNAME",
    "OCI_PASSWORD",
    "AZ_CLIENT_ID",
    "AZ_CLIENT_SECRET",
    "AZ_TENANT_ID",
    "AZ_SUBSCRIPTION_ID",
    "AZURE_STORAGE_ACCESS_KEY",
    "HF_TOKEN",
    "GIT_PASSWORD",
];

/// A Secret named by the component's ServiceAccount: its name, annotations and the names
/// of the keys it holds (never their values).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StorageSecret {
    pub name: String,
    pub annotations: BTreeMap<String, String>,
    pub keys: Vec<String>,
}

/// The node model cache on this cluster's nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelCacheSettings {
    /// The hostPath directory on each node.
    pub host_path: String,
    /// A PersistentVolumeClaim to keep the cache on instead of the node's disk (a
    /// ReadWriteMany claim shares it across nodes).
    pub claim: Option<String>,
    /// `--cache-max-size` for the initializer (e.g. `200Gi`).
    pub max_size: Option<String>,
}

/// What the model adds to a pod.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ModelStorage {
    pub init_container: Option<Value>,
    pub volumes: Vec<Value>,
    /// Mounts of the serving container.
    pub runtime_mounts: Vec<Value>,
    /// A modelcar (`oci://`): its image runs beside the runtime, which reads the model
    /// through the shared process namespace; an init container pulls the image first.
    pub modelcar: Option<Modelcar>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Modelcar {
    pub init_container: Value,
    pub container: Value,
}

/// Why a component's storage cannot be built on this cluster, if it cannot.
pub fn storage_problem(
    template: &RevisionTemplate,
    settings: &Settings,
) -> Option<TemplateProblem> {
    let native = locations(template)
        .into_iter()
        .any(|(uri, _)| uri.starts_with("oci+native://"));
    (native && !settings.image_volumes).then(|| TemplateProblem {
        reason: "ImageVolumeUnsupported".to_string(),
        message: "storageUri oci+native:// mounts the model image as a Kubernetes image volume \
                  (the ImageVolume feature, Kubernetes 1.33+), which this installation does not \
                  enable: set the chart's imageVolumes: true on a cluster that has it, or use \
                  oci:// (a modelcar) or oci+fetch:// (unpacked by the storage initializer)"
            .to_string(),
    })
}

/// The user the runtime and its modelcar share (KServe's).
pub const MODELCAR_UID: i64 = 1010;

/// The modelcar of `image`: KServe's shape, so modelcar images built for KServe work; it
/// runs as `uid`, the runtime's user.
fn modelcar(image: &str, mount: &str, uid: i64) -> Modelcar {
    let resources = json!({
        "requests": {"cpu": "10m", "memory": "16Mi"},
        "limits": {"cpu": "100m", "memory": "64Mi"}
    });
    Modelcar {
        init_container: json!({
            "name": "modelcar-init",
            "image": image,
            // Pulls the image before the runtime starts; does nothing else.
            "command": ["sh", "-c", "true"],
            "resources": resources,
            "terminationMessagePolicy": "FallbackToLogsOnError"
        }),
        container: json!({
            "name": "modelcar",
            "image": image,
            // `$$$$` is the shell's `$$` once Kubernetes has expanded `$$` to `$`.
            "command": ["sh", "-c", format!("ln -sfn /proc/$$$$/root/models {mount} && sleep infinity")],
            // The runtime reads the model through /proc/<pid>/root, which needs the same user.
            "securityContext": {"runAsUser": uid, "runAsGroup": uid},
            "volumeMounts": [{"name": MODEL_VOLUME, "mountPath": parent(mount)}],
            "resources": resources,
            "terminationMessagePolicy": "FallbackToLogsOnError"
        }),
    }
}

fn parent(mount: &str) -> String {
    match mount.trim_end_matches('/').rsplit_once('/') {
        Some(("", _)) | None => "/".to_string(),
        Some((parent, _)) => parent.to_string(),
    }
}

/// Every (URI, mount path) the component's model names: `storageUri` at `/mnt/models`,
/// then `storageUris` at their mount paths.
fn locations(template: &RevisionTemplate) -> Vec<(String, String)> {
    let mut all: Vec<(String, String)> = template
        .storage_uri
        .iter()
        .map(|uri| (uri.clone(), MODEL_MOUNT.to_string()))
        .collect();
    for extra in &template.storage_uris {
        let mount = extra
            .mount_path
            .clone()
            .unwrap_or_else(|| MODEL_MOUNT.to_string());
        if !all.iter().any(|(_, m)| *m == mount) {
            all.push((extra.uri.clone(), mount));
        }
    }
    all
}

/// `pvc://<claim>/<path>` as (claim, path).
fn pvc(uri: &str) -> Option<(&str, &str)> {
    let rest = uri.strip_prefix("pvc://")?;
    let (claim, path) = rest.split_once('/').unwrap_or((rest, ""));
    Some((claim, path.trim_matches('/')))
}

/// The pod parts that bring `template`'s model to `/mnt/models`.
pub fn model_storage(
    template: &RevisionTemplate,
    settings: &Settings,
    secrets: &[StorageSecret],
) -> ModelStorage {
    let mut storage = ModelStorage::default();
    let cache = template
        .annotations
        .get(serval_api::annotations::serval::MODEL_CACHE)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        .then_some(settings.model_cache.as_ref())
        .flatten();
    let mut fetch_args: Vec<String> = Vec::new();
    let mut cached_args: Vec<String> = Vec::new();
    let mut init_mounts: Vec<Value> = Vec::new();
    for (index, (uri, mount)) in locations(template).into_iter().enumerate() {
        let volume = if index == 0 {
            MODEL_VOLUME.to_string()
        } else {
            format!("{MODEL_VOLUME}-{index}")
        };
        if let Some(image) = uri.strip_prefix("oci://") {
            if index == 0 {
                let uid = template
                    .container
                    .security_context
                    .as_ref()
                    .and_then(|c| c.run_as_user)
                    .unwrap_or(MODELCAR_UID);
                storage.modelcar = Some(modelcar(image, &mount, uid));
                storage
                    .volumes
                    .push(json!({"name": MODEL_VOLUME, "emptyDir": {}}));
                storage
                    .runtime_mounts
                    .push(json!({"name": MODEL_VOLUME, "mountPath": parent(&mount)}));
            }
        } else if let Some(image) = uri.strip_prefix("oci+native://") {
            let name = format!("kserve-model-image-{index}");
            storage.volumes.push(json!({
                "name": name,
                "image": {"reference": image, "pullPolicy": "IfNotPresent"}
            }));
            storage.runtime_mounts.push(json!({
                "name": name, "mountPath": mount, "subPath": "models", "readOnly": true
            }));
        } else if let Some((claim, path)) = pvc(&uri) {
            // A claim is mounted where the model is read, as KServe does by default.
            let name = format!("{PVC_VOLUME}-{index}");
            storage.volumes.push(json!({
                "name": name,
                "persistentVolumeClaim": {"claimName": claim, "readOnly": true}
            }));
            storage.runtime_mounts.push(json!({
                "name": name, "mountPath": mount, "subPath": path, "readOnly": true
            }));
        } else if let Some(cache) = cache {
            cached_args.push(uri.clone());
            storage.runtime_mounts.push(json!({
                "name": CACHE_VOLUME,
                "mountPath": mount,
                "subPath": format!("{}/{MODEL_DIR}", entry_name(&uri)),
                "readOnly": true
            }));
            if !storage.volumes.iter().any(|v| v["name"] == CACHE_VOLUME) {
                storage.volumes.push(match &cache.claim {
                    Some(claim) => json!({
                        "name": CACHE_VOLUME,
                        "persistentVolumeClaim": {"claimName": claim}
                    }),
                    None => json!({
                        "name": CACHE_VOLUME,
                        "hostPath": {"path": cache.host_path, "type": "DirectoryOrCreate"}
                    }),
                });
            }
        } else {
            fetch_args.extend([uri.clone(), mount.clone()]);
            storage
                .volumes
                .push(json!({"name": volume, "emptyDir": {}}));
            init_mounts.push(json!({"name": volume, "mountPath": mount}));
            storage.runtime_mounts.push(json!({
                "name": volume, "mountPath": mount, "readOnly": true
            }));
        }
    }
    if fetch_args.is_empty() && cached_args.is_empty() {
        return storage;
    }
    let (env, credential_volumes, credential_mounts) = credentials(secrets);
    storage.volumes.extend(credential_volumes);
    init_mounts.extend(credential_mounts);
    // The root filesystem is read-only; Git clones into a scratch directory first.
    storage
        .volumes
        .push(json!({"name": SCRATCH_VOLUME, "emptyDir": {}}));
    init_mounts.push(json!({"name": SCRATCH_VOLUME, "mountPath": "/tmp"}));
    let mut args = vec!["storage-init".to_string()];
    let mut security = json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "capabilities": {"drop": ["ALL"]}
    });
    if let Some(cache) = cache {
        args.push(format!("--cache-dir={CACHE_MOUNT}"));
        if let Some(max) = &cache.max_size {
            args.push(format!("--cache-max-size={max}"));
        }
        args.extend(cached_args);
        init_mounts.push(json!({"name": CACHE_VOLUME, "mountPath": CACHE_MOUNT}));
        // The node's cache directory belongs to root; the initializer writes there as root,
        // with no capabilities, and the runtime reads it as anyone.
        security["runAsNonRoot"] = json!(false);
        security["runAsUser"] = json!(0);
    } else {
        args.extend(fetch_args);
    }
    storage.init_container = Some(json!({
        "name": "storage-initializer",
        "image": settings.image,
        "command": ["/usr/local/bin/serval"],
        "args": args,
        "env": env,
        "volumeMounts": init_mounts,
        "resources": {
            "requests": {"cpu": "100m", "memory": "100Mi"},
            "limits": {"cpu": "1", "memory": "1Gi"}
        },
        "securityContext": security,
        "terminationMessagePolicy": "FallbackToLogsOnError"
    }));
    storage
}

/// The initializer's environment, volumes and mounts for the ServiceAccount's Secrets, in
/// KServe's shape: each key a Secret holds by reference, `serving.kserve.io/s3-*`
/// annotations as variables, a GCS key file mounted. Where two Secrets hold the same key,
/// the first listed wins.
fn credentials(secrets: &[StorageSecret]) -> (Vec<Value>, Vec<Value>, Vec<Value>) {
    let mut env: Vec<Value> = Vec::new();
    let set = |name: &str, value: Value, env: &mut Vec<Value>| {
        if !env.iter().any(|e| e["name"] == name) {
            let mut var = json!({"name": name});
            var.as_object_mut()
                .expect("object")
                .extend(value.as_object().cloned().unwrap_or_default());
            env.push(var);
        }
    };
    let mut volumes = Vec::new();
    let mut mounts = Vec::new();
    for (index, secret) in secrets.iter().enumerate() {
        for key in SECRET_KEYS
            .iter()
            .filter(|k| secret.keys.iter().any(|h| h == *k))
        {
            set(
                key,
                json!({"valueFrom": {"secretKeyRef": {"name": secret.name, "key": key}}}),
                &mut env,
            );
        }
        let annotation = |key: &str| secret.annotations.get(key).map(String::as_str);
        let https =
            annotation("serving.kserve.io/s3-usehttps").is_none_or(|v| v != "0" && v != "false");
        if let Some(endpoint) = annotation(S3_ENDPOINT_ANNOTATION) {
            let url = if endpoint.contains("://") {
                endpoint.to_string()
            } else {
                format!("{}://{endpoint}", if https { "https" } else { "http" })
            };
            set("S3_ENDPOINT", json!({"value": endpoint}), &mut env);
            set("AWS_ENDPOINT_URL", json!({"value": url}), &mut env);
        }
        for (key, variable) in S3_ANNOTATIONS {
            if let Some(value) = annotation(key) {
                set(variable, json!({"value": value}), &mut env);
            }
        }
        if secret.keys.iter().any(|k| k == GCS_CREDENTIALS_KEY) {
            // Volume names are DNS labels; Secret names need not be.
            let volume = format!("storage-secret-{index}");
            let dir = format!("{GCS_CREDENTIALS_DIR}/{index}");
            volumes.push(json!({
                "name": volume,
                "secret": {
                    "secretName": secret.name,
                    "items": [{"key": GCS_CREDENTIALS_KEY, "path": GCS_CREDENTIALS_KEY}]
                }
            }));
            mounts.push(json!({"name": volume, "mountPath": dir, "readOnly": true}));
            set(
                "GOOGLE_APPLICATION_CREDENTIALS",
                json!({"value": format!("{dir}/{GCS_CREDENTIALS_KEY}")}),
                &mut env,
            );
        }
    }
    (env, volumes, mounts)
}
