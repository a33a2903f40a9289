//! Git repositories (`https://host/org/repo.git`, a branch or tag after `@`): a shallow
//! `git clone` (a full one where the server cannot serve shallow) into a scratch directory,
//! then copied like a local directory. Credentials come from `GIT_USERNAME`/`GIT_PASSWORD`
//! through a credential helper that reads them from the environment, so they never appear
//! on a command line.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::OnceLock;

use futures_util::future::BoxFuture;

use super::object::ObjectSource;
use super::{ByteStream, RemoteFile, Source};
use crate::error::StorageError;
use crate::redact::Redactor;

pub(super) struct GitSource {
    url: String,
    reference: Option<String>,
    scratch: PathBuf,
    clone: OnceLock<ObjectSource>,
    what: String,
    redactor: Redactor,
}

impl GitSource {
    pub(super) fn new(
        url: &str,
        reference: Option<&str>,
        what: String,
        redactor: Redactor,
    ) -> Self {
        let scratch = std::env::temp_dir().join(format!(
            "serval-git-{}-{}",
            std::process::id(),
            serval_api::model_cache::entry_name(url)
        ));
        Self {
            url: url.to_string(),
            reference: reference.map(str::to_string),
            scratch,
            clone: OnceLock::new(),
            what,
            redactor,
        }
    }

    /// A shallow clone, or a full one from servers that cannot serve shallow clones (Git's
    /// "dumb" HTTP protocol: a bare repository on a static file server).
    async fn clone_repository(&self) -> Result<(), StorageError> {
        match self.run_clone(true).await {
            Err(StorageError::Remote { detail, .. }) if detail.contains("shallow") => {
                self.run_clone(false).await
            }
            other => other,
        }
    }

    async fn run_clone(&self, shallow: bool) -> Result<(), StorageError> {
        let _ = tokio::fs::remove_dir_all(&self.scratch).await;
        let mut command = tokio::process::Command::new("git");
        command
            .args([
                "-c",
                "credential.helper=",
                "-c",
                "credential.helper=!f() { test -n \"$GIT_USERNAME\" && echo \"username=$GIT_USERNAME\"; test -n \"$GIT_PASSWORD\" && echo \"password=$GIT_PASSWORD\"; }; f",
                "clone",
                "--quiet",
            ])
            .env("GIT_TERMINAL_PROMPT", "0")
            .kill_on_drop(true);
        if shallow {
            command.arg("--depth=1");
        }
        if let Some(reference) = &self.reference {
            command.arg(format!("--branch={reference}"));
        }
        command.arg(&self.url).arg(&self.scratch);
        let output = command.output().await.map_err(|e| StorageError::Remote {
            what: self.what.clone(),
            detail: format!("cannot run git: {e}"),
            transient: false,
        })?;
        if output.status.success() {
            return Ok(());
        }
        let said = String::from_utf8_lossy(&output.stderr);
        let line = said
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("git clone failed");
        let detail = self.redactor.clean(line.trim_start_matches("fatal: "));
        Err(
            if said.contains("Authentication failed") || said.contains("could not read Username") {
                StorageError::Denied {
                    what: self.what.clone(),
                    detail,
                }
            } else if said.contains("not found") || said.contains("does not exist") {
                StorageError::NotFound {
                    what: self.what.clone(),
                    detail: format!(" ({detail})"),
                }
            } else {
                StorageError::Remote {
                    what: self.what.clone(),
                    detail,
                    transient: said.contains("Could not resolve") || said.contains("Connection"),
                }
            },
        )
    }
}

impl GitSource {
    /// Large files tracked by Git LFS are pointers in the clone: `git lfs pull` brings them,
    /// and without git-lfs they are refused rather than served as pointers.
    async fn fetch_lfs_objects(&self) -> Result<(), StorageError> {
        let attributes = tokio::fs::read_to_string(self.scratch.join(".gitattributes"))
            .await
            .unwrap_or_default();
        if !attributes.contains("filter=lfs") {
            return Ok(());
        }
        let pulled = tokio::process::Command::new("git")
            .args(["lfs", "pull"])
            .current_dir(&self.scratch)
            .env("GIT_TERMINAL_PROMPT", "0")
            .output()
            .await;
        match pulled {
            Ok(output) if output.status.success() => Ok(()),
            _ => Err(StorageError::Remote {
                what: self.what.clone(),
                detail: "the repository keeps files in Git LFS, and `git lfs pull` failed (is git-lfs installed?)".into(),
                transient: false,
            }),
        }
    }
}

/// Refuses a clone with symbolic links: copying follows them, and one could point at a
/// credential file or anywhere else on the machine.
fn check_tree(
    root: &std::path::Path,
    dir: &std::path::Path,
    what: &str,
) -> Result<(), StorageError> {
    let entries = std::fs::read_dir(dir).map_err(|e| StorageError::io(dir, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io(dir, e))?;
        let kind = entry
            .file_type()
            .map_err(|e| StorageError::io(entry.path(), e))?;
        if kind.is_symlink() {
            return Err(StorageError::UnsafeEntry {
                archive: what.to_string(),
                entry: entry
                    .path()
                    .strip_prefix(root)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default(),
            });
        }
        if kind.is_dir() {
            check_tree(root, &entry.path(), what)?;
        }
    }
    Ok(())
}

impl Drop for GitSource {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

impl Source for GitSource {
    fn list(&self) -> BoxFuture<'_, Result<Vec<RemoteFile>, StorageError>> {
        Box::pin(async move {
            if self.clone.get().is_none() {
                self.clone_repository().await?;
                self.fetch_lfs_objects().await?;
                let _ = tokio::fs::remove_dir_all(self.scratch.join(".git")).await;
                let scratch = self.scratch.clone();
                let what = self.what.clone();
                tokio::task::spawn_blocking(move || check_tree(&scratch, &scratch, &what))
                    .await
                    .map_err(|e| StorageError::io(&self.scratch, std::io::Error::other(e)))??;
                let (store, prefix) = super::object::local(&self.scratch, &self.what)?;
                let _ = self.clone.set(ObjectSource::new(
                    store,
                    &prefix,
                    self.what.clone(),
                    self.redactor.clone(),
                ));
            }
            match self.clone.get() {
                Some(clone) => clone.list().await,
                None => Err(StorageError::Empty {
                    what: self.what.clone(),
                }),
            }
        })
    }

    fn read(
        &self,
        file: &RemoteFile,
        range: Option<Range<u64>>,
    ) -> BoxFuture<'_, Result<ByteStream, StorageError>> {
        let file = file.clone();
        Box::pin(async move {
            match self.clone.get() {
                Some(clone) => clone.read(&file, range).await,
                None => Err(StorageError::Empty {
                    what: self.what.clone(),
                }),
            }
        })
    }

    fn ranged(&self) -> bool {
        true
    }

    fn unpacks_archives(&self) -> bool {
        false
    }
}
