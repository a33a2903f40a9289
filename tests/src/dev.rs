//! `serval dev` as the tests run it: the real binary on manifests, its live view
//! collected line by line, its replicas found through /proc, Ctrl-C on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::{collect_lines, lease_port, repo_root, serval_bin, PortLease};

/// `serval dev` with its live-view lines collected.
#[derive(Debug)]
pub struct Dev {
    pub child: Child,
    pub port: u16,
    /// Its listening port, held while it runs.
    _lease: PortLease,
    pub lines: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
    /// Its config and replica logs: removed when it is dropped, kept when a test fails.
    dir: PathBuf,
}

impl Dev {
    pub fn start(config: &str, manifests: &[&str]) -> Dev {
        Dev::start_with_env(config, manifests, &[])
    }

    pub fn start_with_env(config: &str, manifests: &[&str], env: &[(&str, &str)]) -> Dev {
        let lease = lease_port();
        let port = lease.port();
        let dir = std::env::temp_dir().join(format!("serval-dev-test-{port}"));
        std::fs::create_dir_all(&dir).unwrap();
        let config_file = dir.join("autoscaler.yaml");
        std::fs::write(&config_file, config).unwrap();
        let mut child = Command::new(serval_bin())
            .current_dir(repo_root())
            .arg("dev")
            .arg(format!("--listen=127.0.0.1:{port}"))
            .arg(format!("--config={}", config_file.display()))
            .arg(format!("--log-dir={}", dir.join("logs").display()))
            .args(manifests)
            .env("RUST_LOG", "warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start serval dev");
        let lines = collect_lines(child.stdout.take().unwrap());
        let stderr = collect_lines(child.stderr.take().unwrap());
        Dev {
            child,
            port,
            _lease: lease,
            lines,
            stderr,
            dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn saw(&self, needle: &str) -> bool {
        self.saw_all(&[needle])
    }

    /// Whether one live-view line held every needle.
    pub fn saw_all(&self, needles: &[&str]) -> bool {
        let lines = self.lines.lock().unwrap();
        lines.iter().any(|l| needles.iter().all(|n| l.contains(n)))
    }

    pub fn last_line(&self) -> String {
        self.lines
            .lock()
            .unwrap()
            .last()
            .cloned()
            .unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Processes whose parent is `serval dev`: its replicas.
    pub fn children(&self) -> Vec<u32> {
        let parent = self.child.id().to_string();
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .ok()
                    .and_then(|s| {
                        s.rsplit(')')
                            .next()
                            .map(|r| r.split_whitespace().nth(1) == Some(parent.as_str()))
                    })
                    .unwrap_or(false)
            })
            .collect()
    }

    /// The queue-proxies of its replicas, read from their command lines: (the replica's
    /// `--pod-name`, the admin server's `host:port`).
    pub fn queue_proxies(&self) -> Vec<(String, String)> {
        self.children()
            .into_iter()
            .filter_map(|pid| {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
                let args: Vec<String> = cmdline
                    .split(|b| *b == 0)
                    .map(|a| String::from_utf8_lossy(a).into_owned())
                    .collect();
                let flag = |name: &str| {
                    args.iter()
                        .find_map(|a| a.strip_prefix(name).map(str::to_string))
                };
                Some((flag("--pod-name=")?, flag("--admin-listen=")?))
            })
            .collect()
    }

    /// Requests the queue-proxies of the replicas whose name starts with `replica_prefix`
    /// counted (`serval_queue_proxy_requests_total`, published once per stats window);
    /// `None` while one of them does not answer.
    pub async fn requests_counted(&self, replica_prefix: &str) -> Option<u64> {
        let client = crate::http_client::http1();
        let mut total = 0;
        for (name, admin) in self.queue_proxies() {
            if !name.starts_with(replica_prefix) {
                continue;
            }
            let metrics = crate::http_client::get(&client, &format!("http://{admin}/metrics"))
                .await
                .ok()?;
            total += metrics.body.lines().find_map(|line| {
                line.strip_prefix("serval_queue_proxy_requests_total ")?
                    .trim()
                    .parse::<u64>()
                    .ok()
            })?;
        }
        Some(total)
    }

    pub fn interrupt_and_wait(mut self) -> (Option<i32>, Vec<u32>) {
        let children = self.children();
        Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let code = loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                break status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        (code, children)
    }
}

impl Drop for Dev {
    /// A failed test still stops `serval dev` the clean way, so its replicas go with it.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-INT", &self.child.id().to_string()])
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline && matches!(self.child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "serval dev's config and replica logs are kept in {}",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
