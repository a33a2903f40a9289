//! The directory where each replica's queue-proxy also listens on a Unix socket, which the
//! activator reaches it through. `serval dev` holds it while it runs ([`HeldDir`]); one
//! nobody holds is stale, and the next `serval dev` removes it.

use std::path::Path;

use serval_proxy::connect::LocalSockets;

use super::held_dir::{self, HeldDir};

/// A socket's path is at most 107 bytes on Linux.
const MAX_SOCKET_PATH: usize = 107;

/// This process's sockets directory: locked while the value lives, removed when it drops.
#[derive(Debug)]
pub(crate) struct SocketsDir(HeldDir);

impl SocketsDir {
    /// Makes and locks `serval-dev-<pid>.sockets` (or `serval-dev-<pid>-<n>.sockets`) in
    /// `temp` (mode 0700: only this user's processes may connect through it), after removing
    /// the stale ones there. None, with the reason on stderr, when it cannot be made or its
    /// sockets' paths would be too long: the replicas are then reached over loopback TCP.
    pub(crate) fn create(temp: &Path) -> Option<Self> {
        remove_stale(temp);
        let fits = |path: &Path| {
            if LocalSockets::new(path).path(u16::MAX).as_os_str().len() > MAX_SOCKET_PATH {
                Err(format!(
                    "{}: a socket's path would be too long",
                    path.display()
                ))
            } else {
                Ok(())
            }
        };
        match HeldDir::create(temp, "serval-dev", ".sockets", fits) {
            Ok(dir) => Some(Self(dir)),
            Err(why) => {
                eprintln!("serval dev: replicas are reached over loopback TCP ({why})");
                None
            }
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.0.path()
    }

    pub(crate) fn local_sockets(&self) -> LocalSockets {
        LocalSockets::new(self.path())
    }
}

impl Drop for SocketsDir {
    // Runs before the lock is released (the field drops after this), so no other process
    // sees the directory unlocked while it still exists.
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.path());
    }
}

/// Removes every `serval-dev-*.sockets` directory in `temp` that no process holds.
fn remove_stale(temp: &Path) {
    let sockets = |name: &str| name.starts_with("serval-dev-") && name.ends_with(".sockets");
    for dir in held_dir::entries(temp, sockets) {
        held_dir::remove_if_unheld(&dir);
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::path::PathBuf;

    use super::held_dir::remove_if_unheld;
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
