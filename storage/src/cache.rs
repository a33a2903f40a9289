//! The node model cache: one copy of each model per machine, under
//! `<root>/<entry_name(uri)>/model`, filled under a file lock so that pods starting
//! together download once, and evicted least-recently-used past a size budget.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serval_api::model_cache::{entry_name, MODEL_DIR};

use crate::environment::Environment;
use crate::error::StorageError;
use crate::fetch::{FetchOptions, FetchReport};
use crate::image::fetch_uri;
use crate::source::SourceOptions;
use crate::uri::StorageUri;

const LOCK: &str = ".lock";
const LAST_USED: &str = ".last-used";

#[derive(Clone, Debug)]
pub struct ModelCache {
    root: PathBuf,
    /// Evict least-recently-used entries until the cache holds at most this much.
    max_bytes: Option<u64>,
}

/// What filling the cache did.
#[derive(Clone, Debug)]
pub struct CacheFill {
    pub model_dir: PathBuf,
    pub report: FetchReport,
}

impl ModelCache {
    pub fn new(root: impl Into<PathBuf>, max_bytes: Option<u64>) -> Self {
        Self {
            root: root.into(),
            max_bytes,
        }
    }

    /// Where `uri`'s model is (or will be) in this cache.
    pub fn model_dir(&self, uri: &str) -> PathBuf {
        self.root.join(entry_name(uri)).join(MODEL_DIR)
    }

    /// Makes sure `uri`'s model is complete in the cache, fetching it from `source` if not.
    /// Concurrent fills of one URI (threads or processes) wait for each other, so it is
    /// downloaded once.
    pub async fn fill(
        &self,
        uri: &StorageUri,
        env: &Environment,
        source_options: &SourceOptions,
        options: &FetchOptions,
    ) -> Result<CacheFill, StorageError> {
        let entry = self.root.join(entry_name(&uri.text));
        tokio::fs::create_dir_all(&entry)
            .await
            .map_err(|e| StorageError::io(&entry, e))?;
        let lock_path = entry.join(LOCK);
        let lock = tokio::task::spawn_blocking(move || -> Result<File, StorageError> {
            let file = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(|e| StorageError::io(&lock_path, e))?;
            file.lock().map_err(|e| StorageError::io(&lock_path, e))?;
            Ok(file)
        })
        .await
        .map_err(|e| StorageError::io(&entry, std::io::Error::other(e)))??;

        let model_dir = entry.join(MODEL_DIR);
        let report = fetch_uri(uri, env, source_options, &model_dir, options).await;
        let touched = std::fs::write(entry.join(LAST_USED), b"");
        drop(lock);
        let report = report?;
        touched.map_err(|e| StorageError::io(entry.join(LAST_USED), e))?;
        Ok(CacheFill { model_dir, report })
    }

    /// Removes least-recently-used entries until the cache fits its budget, never one of
    /// `keep` (the models of the pod being started) nor one being filled. Returns the
    /// entries removed.
    pub async fn evict(&self, keep: &[PathBuf]) -> Vec<String> {
        let Some(max) = self.max_bytes else {
            return Vec::new();
        };
        let root = self.root.clone();
        let keep: Vec<PathBuf> = keep
            .iter()
            .filter_map(|dir| dir.parent().map(Path::to_path_buf))
            .collect();
        tokio::task::spawn_blocking(move || evict(&root, max, &keep))
            .await
            .unwrap_or_default()
    }
}

/// Removes least-recently-used entries (never one of `keep`, never one being filled)
/// until the cache holds at most `max` bytes.
fn evict(root: &Path, max: u64, keep: &[PathBuf]) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(root) else {
        return Vec::new();
    };
    let mut entries: Vec<(SystemTime, u64, PathBuf)> = dir
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .map(|p| {
            let used = std::fs::metadata(p.join(LAST_USED))
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            (used, disk_usage(&p), p)
        })
        .collect();
    let mut total: u64 = entries.iter().map(|(_, size, _)| size).sum();
    entries.sort_by_key(|(used, _, _)| *used);
    let mut evicted = Vec::new();
    for (_, size, path) in entries {
        if total <= max {
            break;
        }
        if keep.contains(&path) {
            continue;
        }
        let Ok(lock) = File::options().write(true).open(path.join(LOCK)) else {
            continue;
        };
        if lock.try_lock().is_err() {
            continue;
        }
        if std::fs::remove_dir_all(path.join(MODEL_DIR)).is_ok() {
            let _ = std::fs::remove_file(path.join(LAST_USED));
            total = total.saturating_sub(size);
            evicted.push(
                path.file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
        }
    }
    evicted
}

fn disk_usage(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|dir| {
            dir.filter_map(Result::ok)
                .map(|e| disk_usage(&e.path()))
                .sum()
        })
        .unwrap_or(0)
}
