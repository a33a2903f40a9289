//! The directory where each replica's queue-proxy also listens on a Unix socket, which the
//! activator reaches it through. `serval dev` holds an exclusive `flock` on the directory
//! for as long as it runs: the kernel drops it however the process ends, SIGKILL included,
//! so a directory nobody holds is stale and the next `serval dev` removes it. A process id
//! would not tell: two `serval dev`s in different PID namespaces that share one temp dir
//! see each other's ids as gone, or even as their own.

use std::fs::File;
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use serval_proxy::connect::LocalSockets;

/// A socket's path is at most 107 bytes on Linux.
const MAX_SOCKET_PATH: usize = 107;
/// How often a name is tried: after `serval-dev-<pid>.sockets`, held by another
/// namespace's process with the same id, come `serval-dev-<pid>-<n>.sockets`.
const NAME_ATTEMPTS: u32 = 16;

/// This process's sockets directory: locked while the value lives, removed when it drops.
#[derive(Debug)]
pub(crate) struct SocketsDir {
    path: PathBuf,
    // Declared after `path` and dropped after `Drop::drop` has removed the directory, so
    // no other process sees it unlocked while it still exists.
    _lock: File,
}

impl SocketsDir {
    /// Makes and locks `serval-dev-<pid>.sockets` (or `serval-dev-<pid>-<n>.sockets`) in
    /// `temp` (mode 0700: only this user's processes may connect through it), after removing
    /// the stale ones there. None, with the reason on stderr, when it cannot be made or its
    /// sockets' paths would be too long: the replicas are then reached over loopback TCP.
    pub(crate) fn create(temp: &Path) -> Option<Self> {
        remove_stale(temp);
        let pid = std::process::id();
        let mut last_error = None;
        let mut suffix = 0;
        for _ in 0..NAME_ATTEMPTS {
            let name = match suffix {
                0 => format!("serval-dev-{pid}.sockets"),
                n => format!("serval-dev-{pid}-{n}.sockets"),
            };
            let path = temp.join(name);
            if LocalSockets::new(&path).path(u16::MAX).as_os_str().len() > MAX_SOCKET_PATH {
                eprintln!(
                    "serval dev: replicas are reached over loopback TCP ({}: a socket's path would be too long)",
                    path.display()
                );
                return None;
            }
            match claim(&path) {
                Ok(Claim::Ours(lock)) => return Some(Self { path, _lock: lock }),
                Ok(Claim::Held) => suffix += 1,
                // Removed as stale by another `serval dev` before it was locked: again.
                Ok(Claim::Lost) => {}
                Err(e) => {
                    last_error = Some((path, e));
                    suffix += 1;
                }
            }
        }
        match last_error {
            Some((path, e)) => eprintln!(
                "serval dev: replicas are reached over loopback TCP ({}: {e})",
                path.display()
            ),
            None => eprintln!(
                "serval dev: replicas are reached over loopback TCP (no sockets directory could be claimed in {})",
                temp.display()
            ),
        }
        None
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn local_sockets(&self) -> LocalSockets {
        LocalSockets::new(&self.path)
    }
}

impl Drop for SocketsDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
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

/// Removes every `serval-dev-*.sockets` directory in `temp` that no process holds.
/// Another user's cannot be opened (mode 0700 in a sticky temp dir) and are left.
fn remove_stale(temp: &Path) {
    let Ok(entries) = std::fs::read_dir(temp) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let is_sockets_dir = name
            .to_str()
            .is_some_and(|n| n.starts_with("serval-dev-") && n.ends_with(".sockets"));
        if is_sockets_dir {
            remove_if_unheld(&entry.path());
        }
    }
}

/// Removes `dir` when no process holds its lock, holding it while removing; true when
/// `dir` is gone.
fn remove_if_unheld(dir: &Path) -> bool {
    let Ok(lock) = File::open(dir) else {
        return !dir.exists();
    };
    match lock.try_lock() {
        Ok(()) => std::fs::remove_dir_all(dir).is_ok() || !dir.exists(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "serval-sockets-test-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir(&dir).unwrap();
        dir
    }

    #[test]
    fn a_held_directory_stays_and_an_unheld_one_goes() {
        let temp = temp();
        // Another process's directory under any id, even this one's: held, so it stays.
        let held = temp.join(format!("serval-dev-{}.sockets", std::process::id()));
        std::fs::create_dir(&held).unwrap();
        let holder = File::open(&held).unwrap();
        holder.lock().unwrap();
        // One whose process died: nobody holds it, whatever its id says.
        let stale = temp.join("serval-dev-1.sockets");
        std::fs::create_dir(&stale).unwrap();
        std::fs::write(stale.join("8080.sock"), b"").unwrap();
        // Not ours to judge.
        let other = temp.join("serval-dev-1.log");
        std::fs::create_dir(&other).unwrap();

        let dir = SocketsDir::create(&temp).expect("a sockets directory");
        assert!(held.exists(), "a held directory was removed");
        assert!(!stale.exists(), "an unheld directory was left");
        assert!(other.exists());
        assert_eq!(
            dir.path(),
            temp.join(format!("serval-dev-{}-1.sockets", std::process::id())),
            "the held name was taken"
        );
        assert!(!remove_if_unheld(dir.path()), "this process's own lock");

        let path = dir.path().to_path_buf();
        drop(dir);
        assert!(!path.exists(), "left behind at drop");
        drop(holder);
        remove_stale(&temp);
        assert!(!held.exists(), "released, so stale");
        std::fs::remove_dir_all(&temp).unwrap();
    }
}
