//! Where the replicas' logs go when `--log-dir` is not given: `serval-dev-<pid>` in the
//! temp dir, held while `serval dev` runs ([`HeldDir`]) and left behind when it ends, to be
//! read. Each `serval dev` keeps the newest [`KEPT`] of them and removes older ones that no
//! running `serval dev` holds, so they do not pile up.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::held_dir::{self, HeldDir};

/// Log directories of earlier runs kept, newest first, besides the running ones.
pub(crate) const KEPT: usize = 5;

/// This process's log directory: locked while the value lives, kept when it drops.
#[derive(Debug)]
pub(crate) struct LogDir(HeldDir);

impl LogDir {
    /// Removes the log directories of earlier runs beyond the newest [`KEPT`], then makes
    /// and locks this run's.
    pub(crate) fn create(temp: &Path) -> Result<Self, String> {
        prune(temp, KEPT);
        HeldDir::create(temp, "serval-dev", "", |_| Ok(())).map(Self)
    }

    pub(crate) fn path(&self) -> &Path {
        self.0.path()
    }
}

/// `serval-dev-<pid>` or `serval-dev-<pid>-<n>`.
fn is_log_dir(name: &str) -> bool {
    let Some(rest) = name.strip_prefix("serval-dev-") else {
        return false;
    };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match rest.split_once('-') {
        Some((pid, n)) => digits(pid) && digits(n),
        None => digits(rest),
    }
}

/// Removes the log directories in `temp` that nobody holds, except the newest `keep`.
fn prune(temp: &Path, keep: usize) {
    let mut dirs: Vec<(SystemTime, PathBuf)> = held_dir::entries(temp, is_log_dir)
        .into_iter()
        .map(|dir| {
            let modified = std::fs::metadata(&dir)
                .and_then(|m| m.modified())
                .unwrap_or(SystemTime::UNIX_EPOCH);
            (modified, dir)
        })
        .collect();
    dirs.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    for (_, dir) in dirs.into_iter().skip(keep) {
        held_dir::remove_if_unheld(&dir);
    }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::time::Duration;

    use super::*;

    #[test]
    fn log_dir_names() {
        for name in ["serval-dev-1", "serval-dev-4242", "serval-dev-17-2"] {
            assert!(is_log_dir(name), "{name}");
        }
        for name in [
            "serval-dev-17.sockets",
            "serval-dev-",
            "serval-dev-17-",
            "serval-dev-x",
            "serval-dev-1-2-3",
            "serval-dev-cache",
            "serval-bench-ab-1",
        ] {
            assert!(!is_log_dir(name), "{name}");
        }
    }

    #[test]
    fn the_newest_runs_logs_and_the_running_ones_stay() {
        let temp = std::env::temp_dir().join(format!("serval-logs-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&temp);
        std::fs::create_dir(&temp).unwrap();
        let old = SystemTime::now() - Duration::from_secs(86_400);
        // Earlier runs, oldest first, each with a log file; the oldest still running.
        let runs: Vec<PathBuf> = (1..=KEPT + 3)
            .map(|i| {
                let dir = temp.join(format!("serval-dev-{i}"));
                std::fs::create_dir(&dir).unwrap();
                std::fs::write(dir.join("iris-1.runtime.log"), b"log").unwrap();
                let modified = old + Duration::from_secs(60 * i as u64);
                File::open(&dir).unwrap().set_modified(modified).unwrap();
                dir
            })
            .collect();
        let running = File::open(&runs[0]).unwrap();
        running.lock().unwrap();
        // Not a log directory: never touched.
        let sockets = temp.join("serval-dev-3.sockets");
        std::fs::create_dir(&sockets).unwrap();

        let ours = LogDir::create(&temp).expect("a log directory");
        assert_eq!(
            ours.path(),
            temp.join(format!("serval-dev-{}", std::process::id()))
        );
        let left: Vec<bool> = runs.iter().map(|dir| dir.exists()).collect();
        let mut expected = vec![false; runs.len()];
        expected[0] = true; // held by a running `serval dev`
        for kept in &mut expected[runs.len() - KEPT..] {
            *kept = true;
        }
        assert_eq!(left, expected, "which earlier runs' logs are left");
        assert!(sockets.exists());

        // Ours is held while it lives and kept after.
        assert!(!held_dir::remove_if_unheld(ours.path()));
        let path = ours.path().to_path_buf();
        drop(ours);
        assert!(path.exists(), "a run's logs are kept after it ends");
        drop(running);
        std::fs::remove_dir_all(&temp).unwrap();
    }
}
