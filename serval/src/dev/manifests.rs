//! Reading the manifests `serval dev` serves: files or directories of YAML, checked with the
//! same validation as `serval validate`; invalid documents are reported and skipped.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serval_api::manifest::{parse_documents, Resource};
use serval_controller::local::{LocalManifests, LocalService};

/// The manifests as read, and one line per problem, naming the file and the field.
#[derive(Clone, Debug, Default)]
pub(crate) struct Loaded {
    pub(crate) manifests: LocalManifests,
    pub(crate) problems: Vec<String>,
}

/// The YAML files named, directories expanded, with their modification times (to notice
/// edits). An unreadable directory counts as empty here; [`load`] reports it.
pub(crate) fn manifest_files(paths: &[PathBuf]) -> Vec<(PathBuf, Option<SystemTime>)> {
    crate::validate::manifest_files(paths)
        .unwrap_or_default()
        .into_iter()
        .map(|f| {
            let modified = std::fs::metadata(&f).and_then(|m| m.modified()).ok();
            (f, modified)
        })
        .collect()
}

pub(crate) fn load(paths: &[PathBuf]) -> Loaded {
    let mut loaded = Loaded::default();
    match crate::validate::manifest_files(paths) {
        Ok(files) => files.iter().for_each(|file| load_file(file, &mut loaded)),
        Err(e) => loaded.problems.push(format!("reading manifests: {e}")),
    }
    loaded
}

fn load_file(file: &Path, loaded: &mut Loaded) {
    let shown = file.display();
    let text = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) => return loaded.problems.push(format!("{shown}: cannot read: {e}")),
    };
    let documents = match parse_documents(&text) {
        Ok(documents) => documents,
        Err(e) => return loaded.problems.push(format!("{shown}: {e}")),
    };
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    for doc in documents {
        for error in &doc.errors {
            loaded
                .problems
                .push(format!("{shown}: {}: {error}", doc.describe()));
        }
        match doc.resource {
            Some(Resource::InferenceService(isvc)) => {
                loaded.manifests.services.push(LocalService {
                    isvc: *isvc,
                    dir: dir.clone(),
                });
            }
            Some(Resource::ServingRuntime(rt)) => loaded.manifests.runtimes.push(*rt),
            Some(Resource::ClusterServingRuntime(rt)) => {
                loaded.manifests.cluster_runtimes.push(*rt)
            }
            None => {}
        }
    }
}
