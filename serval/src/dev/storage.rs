//! Remote models for `serval dev`: a `storageUri` on S3, GCS, Azure, HTTP(S) or Hugging
//! Face is fetched into the user's model cache before the service starts, and the manifest
//! then names that directory, so a second start does not download again.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use serval_api::inference_service::InferenceService;
use serval_storage::{source, Environment, FetchOptions, ModelCache, ProgressStyle, StorageUri};

use super::manifests::Loaded;

const REMOTE: [&str; 8] = [
    "oci+fetch://",
    "s3://",
    "gs://",
    "az://",
    "http://",
    "https://",
    "hf://",
    "modelscope://",
];

/// `$SERVAL_MODEL_CACHE_DIR`, else `$XDG_CACHE_HOME/serval/models`, else
/// `~/.cache/serval/models`.
pub(crate) fn default_cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SERVAL_MODEL_CACHE_DIR") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("serval/models")
}

/// Fetches every remote model `loaded` names into `cache` and points its manifest at the
/// local copy. A service whose model cannot be fetched is dropped with one problem line.
pub(crate) async fn fetch_remote_models(loaded: &mut Loaded, cache: &ModelCache) {
    let env = Environment::from_process();
    let options = FetchOptions {
        progress: if std::io::stderr().is_terminal() {
            ProgressStyle::Bar
        } else {
            ProgressStyle::Lines {
                every: Duration::from_secs(5),
            }
        },
        ..FetchOptions::default()
    };
    let mut kept = Vec::with_capacity(loaded.manifests.services.len());
    for mut service in std::mem::take(&mut loaded.manifests.services) {
        let name = service.isvc.metadata.name.clone().unwrap_or_default();
        let mut failed = None;
        for (path, uri) in storage_uris_mut(&mut service.isvc) {
            if !REMOTE.iter().any(|scheme| uri.starts_with(scheme)) {
                continue;
            }
            let fetched = async {
                let parsed = StorageUri::parse(uri, std::path::Path::new("/mnt/pvc"))?;
                eprintln!("serval dev: {name}: fetching {parsed} into the model cache");
                cache
                    .fill(&parsed, &env, &source::SourceOptions::default(), &options)
                    .await
            }
            .await;
            match fetched {
                Ok(fill) => {
                    let report = &fill.report;
                    if report.already_complete {
                        eprintln!("serval dev: {name}: model already complete in the cache");
                    } else {
                        eprintln!(
                            "serval dev: {name}: fetched {} of {} files ({:.1} MiB) in {:.1} s",
                            report.fetched_files,
                            report.files,
                            report.downloaded as f64 / (1024.0 * 1024.0),
                            report.elapsed.as_secs_f64()
                        );
                    }
                    *uri = fill.model_dir.display().to_string();
                }
                Err(e) => {
                    failed = Some(format!("InferenceService {name}: {path}: {e}"));
                    break;
                }
            }
        }
        match failed {
            Some(problem) => loaded.problems.push(problem),
            None => kept.push(service),
        }
    }
    loaded.manifests.services = kept;
}

/// Every storage URI an InferenceService names, with its field path.
fn storage_uris_mut(isvc: &mut InferenceService) -> Vec<(String, &mut String)> {
    let mut uris = Vec::new();
    let predictor = &mut isvc.spec.predictor;
    if let Some(uri) = predictor
        .model
        .as_mut()
        .and_then(|m| m.extension.storage_uri.as_mut())
    {
        uris.push(("spec.predictor.model.storageUri".to_string(), uri));
    }
    let frameworks = [
        ("sklearn", &mut predictor.sklearn),
        ("xgboost", &mut predictor.xgboost),
        ("lightgbm", &mut predictor.lightgbm),
        ("onnx", &mut predictor.onnx),
        ("tensorflow", &mut predictor.tensorflow),
        ("pytorch", &mut predictor.pytorch),
        ("triton", &mut predictor.triton),
        ("pmml", &mut predictor.pmml),
        ("paddle", &mut predictor.paddle),
        ("huggingface", &mut predictor.huggingface),
    ];
    for (name, spec) in frameworks {
        if let Some(uri) = spec.as_mut().and_then(|s| s.storage_uri.as_mut()) {
            uris.push((format!("spec.predictor.{name}.storageUri"), uri));
        }
    }
    if let Some(uri) = isvc
        .spec
        .explainer
        .as_mut()
        .and_then(|e| e.art.as_mut())
        .and_then(|art| art.storage_uri.as_mut())
    {
        uris.push(("spec.explainer.art.storageUri".to_string(), uri));
    }
    uris
}
