//! Directories in the temp dir that a running `serval dev` holds an exclusive `flock` on.
//! The kernel drops the lock however the process ends, SIGKILL included, so a directory
//! nobody holds belongs to no running `serval dev`. A process id would not tell: two
//! `serval dev`s in different PID namespaces that share one temp dir see each other's ids
//! as gone, or even as their own.

use std::fs::File;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// How often a name is tried: after `<stem>-<pid><suffix>`, held by another namespace's
/// process with the same id, come `<stem>-<pid>-<n><suffix>`.
const NAME_ATTEMPTS: u32 = 16;

/// A directory this process made and holds the lock on while the value lives.
#[derive(Debug)]
pub(crate) struct HeldDir {
    path: PathBuf,
    _lock: File,
}

impl HeldDir {
    /// Makes and locks `<stem>-<pid><suffix>` in `temp`, or `<stem>-<pid>-<n><suffix>`
    /// when another process holds that name (mode 0700: only this user's processes may use
    /// it). `fits` says whether a candidate path may be used at all.
    pub(crate) fn create(
        temp: &Path,
        stem: &str,
        suffix: &str,
        fits: impl Fn(&Path) -> Result<(), String>,
    ) -> Result<Self, String> {
        let pid = std::process::id();
        let mut last_error = None;
        let mut n = 0;
        for _ in 0..NAME_ATTEMPTS {
            let name = match n {
                0 => format!("{stem}-{pid}{suffix}"),
                n => format!("{stem}-{pid}-{n}{suffix}"),
            };
            let path = temp.join(name);
            fits(&path)?;
            match claim(&path) {
                Ok(Claim::Ours(lock)) => return Ok(Self { path, _lock: lock }),
                Ok(Claim::Held) => n += 1,
                // Removed as stale by another `serval dev` before it was locked: again.
                Ok(Claim::Lost) => {}
                Err(e) => {
                    last_error = Some(format!("{}: {e}", path.display()));
                    n += 1;
                }
            }
        }
        Err(last_error
            .unwrap_or_else(|| format!("no directory could be claimed in {}", temp.display())))
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

enum Claim {
    /// This process made the directory and holds it.
    Ours(File),
    /// A running process holds the directory already there.
    Held,
    /// Another `serval dev` found the new directory unlocked and removed it as stale.
    Lost,
}

/// Makes `path` and locks it.
fn claim(path: &Path) -> io::Result<Claim> {
    match std::fs::DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            if !remove_if_unheld(path) {
                return Ok(Claim::Held);
            }
            std::fs::DirBuilder::new().mode(0o700).create(path)?;
        }
        Err(e) => return Err(e),
    }
    let lock = match File::open(path) {
        Ok(lock) => lock,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Claim::Lost),
        Err(e) => return Err(e),
    };
    // Waits out another `serval dev` that found the new directory unlocked and is removing
    // it as stale; the directory is ours only if it is still the one at `path`.
    lock.lock()?;
    let ours = std::fs::metadata(path).is_ok_and(|now| {
        lock.metadata()
            .is_ok_and(|held| (held.dev(), held.ino()) == (now.dev(), now.ino()))
    });
    Ok(if ours { Claim::Ours(lock) } else { Claim::Lost })
}

/// Removes `dir` when no process holds its lock, holding it while removing; true when
/// `dir` is gone. Another user's cannot be opened (mode 0700 in a sticky temp dir) and is
/// left.
pub(crate) fn remove_if_unheld(dir: &Path) -> bool {
    let Ok(lock) = File::open(dir) else {
        return !dir.exists();
    };
    match lock.try_lock() {
        Ok(()) => std::fs::remove_dir_all(dir).is_ok() || !dir.exists(),
        Err(_) => false,
    }
}

/// The directories in `temp` whose names `matches` picks.
pub(crate) fn entries(temp: &Path, matches: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(temp) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|entry| entry.file_name().to_str().is_some_and(&matches))
        .filter(|entry| entry.file_type().is_ok_and(|t| t.is_dir()))
        .map(|entry| entry.path())
        .collect()
}
