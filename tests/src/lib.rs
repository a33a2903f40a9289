//! `serval-tests` holds the end-to-end tests: they start the real `serval` binary, talk to it
//! over real sockets on loopback, and assert on what a user would see. Helpers shared by the
//! test files live here.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The repository root, for reaching `examples/`, `tests/manifests/` and `helm/`.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the repository root")
        .to_path_buf()
}

/// The `serval` binary, built once per test process into the same target directory and
/// profile as the tests themselves (cargo does not build another package's binaries for
/// integration tests).
pub fn serval_bin() -> &'static Path {
    &serval_bins().0
}

/// The lean sidecar binary `serval-queue-proxy`, built with [`serval_bin`].
pub fn queue_proxy_bin() -> &'static Path {
    &serval_bins().1
}

fn serval_bins() -> &'static (PathBuf, PathBuf) {
    static BINS: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    BINS.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test> (or target/<profile>/<bin>) -> target/<profile>
        let parent = exe.parent().expect("target/<profile>/deps");
        let profile_dir = if parent.file_name().is_some_and(|n| n == "deps") {
            parent.parent().expect("target/<profile>")
        } else {
            parent
        };
        let target_dir = profile_dir.parent().expect("target dir");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut build = Command::new(cargo);
        build
            .current_dir(repo_root())
            .args(["build", "--quiet", "-p", "serval", "--bins"])
            .arg("--target-dir")
            .arg(target_dir);
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            build.arg("--release");
        }
        let status = build
            .status()
            .expect("run cargo build for the serval binary");
        assert!(status.success(), "building the serval binaries failed");
        (
            profile_dir.join("serval"),
            profile_dir.join("serval-queue-proxy"),
        )
    })
}

/// Runs `serval` with `args` and returns (exit code, stdout, stderr).
pub fn run_serval<I, S>(args: I) -> (i32, String, String)
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let output = Command::new(serval_bin())
        .current_dir(repo_root())
        .args(args)
        .output()
        .expect("start serval");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A real `helm` binary: the one on PATH, or the one `tools/install-k8s-clients.sh` puts in
/// `tools/bin` (installed on first use).
pub fn helm_bin() -> PathBuf {
    static HELM: OnceLock<PathBuf> = OnceLock::new();
    HELM.get_or_init(|| {
        let local = repo_root().join("tools/bin/helm");
        if !local.exists() {
            let status = Command::new("bash")
                .arg(repo_root().join("tools/install-k8s-clients.sh"))
                .status()
                .expect("run tools/install-k8s-clients.sh");
            assert!(status.success(), "installing helm failed");
        }
        local
    })
    .clone()
}

pub mod apiserver;
pub mod backend;
pub mod cluster;
pub mod dev;
pub mod http_client;
pub mod otlp;
pub mod ports;
pub mod readme;

pub use ports::{bind_loopback, lease_port, PortLease};

/// The lines a child process writes to `stream`, gathered as they come by a thread of their
/// own (so a test can wait for a line while the process runs).
pub fn collect_lines(
    stream: impl std::io::Read + Send + 'static,
) -> std::sync::Arc<std::sync::Mutex<Vec<String>>> {
    use std::io::BufRead;
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stream)
            .lines()
            .map_while(Result::ok)
        {
            sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    });
    lines
}

/// Polls `check` every 20 ms until it holds; panics with `what` if it does not within
/// `limit`. For waiting on what the system under test shows, never on a fixed sleep.
pub async fn eventually<F, Fut>(limit: std::time::Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = std::time::Instant::now() + limit;
    while !check().await {
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within {limit:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Polls `check` every 20 ms for `period`, panicking with `what` the first time it fails.
/// Only for what no event shows: that something does *not* happen during a period.
pub async fn throughout<F, Fut>(period: std::time::Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let end = std::time::Instant::now() + period;
    loop {
        assert!(check().await, "{what}");
        if std::time::Instant::now() >= end {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A `serval` child process that is killed when dropped, so no test leaves one behind.
#[derive(Debug)]
pub struct ServalProcess {
    child: std::process::Child,
    /// The ports it was given, held while it runs.
    ports: Vec<PortLease>,
}

impl ServalProcess {
    /// Starts `serval` with `args`, logging to this test's stderr.
    pub fn start<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        Self::start_program(serval_bin(), args)
    }

    /// Starts another of Serval's binaries (such as [`queue_proxy_bin`]) the same way.
    pub fn start_program<I, S>(program: &Path, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let child = Command::new(program)
            .current_dir(repo_root())
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .spawn()
            .expect("start serval");
        Self {
            child,
            ports: Vec::new(),
        }
    }

    /// Holds `port` (one this process was told to listen on) for as long as it runs.
    pub fn holding(mut self, port: PortLease) -> Self {
        self.ports.push(port);
        self
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM, as the kubelet does.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// Waits up to `limit` for the process to exit; its exit code, or `None` if still running.
    pub fn wait_exit(&mut self, limit: std::time::Duration) -> Option<i32> {
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.code().unwrap_or(-1));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        None
    }
}

impl Drop for ServalProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
pub mod revision_pod;
pub mod runtime;
pub mod storage;
