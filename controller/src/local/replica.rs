//! One replica: a model-server process and its queue-proxy, started on free ports, watched,
//! restarted with backoff when either dies, and stopped by draining the queue-proxy first.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serval_proxy::connect::LocalSockets;
use tokio::process::{Child, Command};
use tokio::sync::{oneshot, watch};

use super::ports::PortLease;

/// How to start the processes of one revision's replicas.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaSpec {
    pub revision: String,
    /// The model server: program and arguments. `{http_port}` and `{grpc_port}` in the
    /// arguments and environment values are replaced with the replica's ports.
    pub runtime_command: Vec<String>,
    pub runtime_env: Vec<(String, String)>,
    /// Extra `serval queue-proxy` flags (containerConcurrency, timeouts, probe path).
    pub queue_proxy_args: Vec<String>,
}

/// A running replica as routing and autoscaling see it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaInfo {
    pub name: String,
    pub revision: String,
    /// The queue-proxy's user port.
    pub proxy: SocketAddr,
    /// The queue-proxy's admin port (`/healthz`, `/stats`).
    pub admin: SocketAddr,
    /// Whether the queue-proxy reports the runtime ready.
    pub ready: bool,
    pub runtime_pid: Option<u32>,
    pub proxy_pid: Option<u32>,
    /// Exits in a row that came before the replica had run for a while (a crash loop).
    pub crashes: u32,
    /// Why it last exited, and where its log is.
    pub last_exit: Option<String>,
}

/// Names the supervising process to a child `serval` role; see `serval`'s main.
pub const EXIT_WITH_PARENT_ENV: &str = "SERVAL_EXIT_WITH_PARENT";

const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A replica that ran this long before dying is restarted without accumulated backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(30);
const READINESS_POLL: Duration = Duration::from_millis(50);
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// How a replica's queue-proxy is started: the program and the arguments before its flags,
/// and the directory of Unix sockets through which the activator reaches it and it reaches
/// the model server, on this machine.
#[derive(Clone, Debug)]
pub struct QueueProxyCommand {
    pub program: PathBuf,
    pub args: Vec<String>,
    pub local_sockets: Option<LocalSockets>,
}

impl QueueProxyCommand {
    /// The lean `serval-queue-proxy` sidecar binary beside `serval_bin`, as pods run it, or
    /// `serval_bin queue-proxy` when that binary is not there.
    pub fn beside(serval_bin: &Path) -> Self {
        let sidecar = serval_bin.with_file_name("serval-queue-proxy");
        if sidecar.is_file() {
            Self {
                program: sidecar,
                args: Vec::new(),
                local_sockets: None,
            }
        } else {
            Self {
                program: serval_bin.to_path_buf(),
                args: vec!["queue-proxy".to_string()],
                local_sockets: None,
            }
        }
    }

    /// Each queue-proxy also listens on its socket in `local` (see [`LocalSockets`]), and
    /// reaches its model server through the model server's socket there when it has one.
    pub fn with_local_sockets(self, local: LocalSockets) -> Self {
        Self {
            local_sockets: Some(local),
            ..self
        }
    }
}

/// What a replica's supervising task needs.
pub(crate) struct ReplicaTask {
    pub(crate) queue_proxy: QueueProxyCommand,
    pub(crate) log_dir: Option<PathBuf>,
    pub(crate) spec: ReplicaSpec,
    pub(crate) name: String,
    pub(crate) info: watch::Sender<Option<ReplicaInfo>>,
    pub(crate) changed: Arc<watch::Sender<u64>>,
}

struct Processes {
    runtime: Child,
    proxy: Child,
    /// Held until both processes are gone.
    _ports: PortLease,
}

fn output(log_dir: &Option<PathBuf>, file: &str) -> std::io::Result<(Stdio, Stdio)> {
    match log_dir {
        None => Ok((Stdio::inherit(), Stdio::inherit())),
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(dir.join(file))?;
            Ok((Stdio::from(log.try_clone()?), Stdio::from(log)))
        }
    }
}

fn spawn(
    program: &Path,
    args: &[String],
    env: &[(String, String)],
    logs: (Stdio, Stdio),
) -> std::io::Result<Child> {
    Command::new(program)
        .args(args)
        // Each process names itself in traces (serval-queue-proxy, serval-runtime) unless
        // its own spec sets a name; the supervisor's name would make them all look alike.
        .env_remove("OTEL_SERVICE_NAME")
        .envs(env.iter().cloned())
        // Serval's own roles exit when this process is gone, even if it was SIGKILLed and
        // never got to stop them.
        .env(EXIT_WITH_PARENT_ENV, std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(logs.0)
        .stderr(logs.1)
        .kill_on_drop(true)
        .spawn()
}

impl ReplicaTask {
    fn notify(&self) {
        self.changed.send_modify(|generation| *generation += 1);
    }

    fn publish(&self, info: Option<ReplicaInfo>) {
        self.info.send_replace(info);
        self.notify();
    }

    fn start(&self) -> std::io::Result<(Processes, ReplicaInfo)> {
        let ports = PortLease::take(4)?;
        let &[http_port, grpc_port, proxy_port, admin_port] = ports.ports() else {
            return Err(std::io::Error::other("a lease of four ports"));
        };
        let Some((program, args)) = self.spec.runtime_command.split_first() else {
            return Err(std::io::Error::other("the runtime command is empty"));
        };
        let args: Vec<String> = args
            .iter()
            .map(|a| {
                a.replace("{http_port}", &http_port.to_string())
                    .replace("{grpc_port}", &grpc_port.to_string())
            })
            .collect();
        let mut env: Vec<(String, String)> = self
            .spec
            .runtime_env
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.replace("{http_port}", &http_port.to_string())
                        .replace("{grpc_port}", &grpc_port.to_string()),
                )
            })
            .collect();
        if let Some(local) = &self.queue_proxy.local_sockets {
            env.push((
                crate::RUNTIME_SOCKET_ENV.to_string(),
                local.path(http_port).display().to_string(),
            ));
        }
        let runtime = spawn(
            Path::new(program),
            &args,
            &env,
            output(&self.log_dir, &format!("{}.runtime.log", self.name))?,
        )?;
        let mut proxy_args = self.queue_proxy.args.clone();
        proxy_args.extend([
            format!("--listen=127.0.0.1:{proxy_port}"),
            format!("--admin-listen=127.0.0.1:{admin_port}"),
            format!("--upstream=127.0.0.1:{http_port}"),
            format!("--pod-name={}", self.name),
            // Locally no endpoint update has to propagate: the supervisor stops routing to
            // a replica before it drains it.
            "--drain-period=0s".to_string(),
        ]);
        if let Some(local) = &self.queue_proxy.local_sockets {
            proxy_args.extend([
                format!("--listen-unix={}", local.path(proxy_port).display()),
                format!("--local-sockets={}", local.dir().display()),
            ]);
        }
        proxy_args.extend(self.spec.queue_proxy_args.iter().cloned());
        let proxy = spawn(
            &self.queue_proxy.program,
            &proxy_args,
            &[],
            output(&self.log_dir, &format!("{}.queue-proxy.log", self.name))?,
        )?;
        let info = ReplicaInfo {
            name: self.name.clone(),
            revision: self.spec.revision.clone(),
            proxy: SocketAddr::from(([127, 0, 0, 1], proxy_port)),
            admin: SocketAddr::from(([127, 0, 0, 1], admin_port)),
            ready: false,
            runtime_pid: runtime.id(),
            proxy_pid: proxy.id(),
            crashes: 0,
            last_exit: None,
        };
        let processes = Processes {
            runtime,
            proxy,
            _ports: ports,
        };
        Ok((processes, info))
    }

    /// Runs the replica until `stop` fires, restarting it whenever it dies.
    pub(crate) async fn run(self, mut stop: oneshot::Receiver<()>) {
        let mut backoff = Duration::from_millis(500);
        let (mut crashes, mut last_exit) = (0, None);
        loop {
            let started = Instant::now();
            let (mut processes, mut info) = match self.start() {
                Ok(started) => started,
                Err(e) => {
                    tracing::warn!(replica = %self.name, error = %e, "cannot start replica");
                    if wait_or_stop(backoff, &mut stop).await {
                        return;
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            tracing::info!(replica = %self.name, proxy = %info.proxy, "replica started");
            info.crashes = crashes;
            info.last_exit.clone_from(&last_exit);
            self.publish(Some(info.clone()));
            let exit = tokio::select! {
                _ = &mut stop => {
                    self.publish(None);
                    drain(processes).await;
                    return;
                }
                status = processes.runtime.wait() => format!("runtime exited ({})", describe(status)),
                status = processes.proxy.wait() => format!("queue-proxy exited ({})", describe(status)),
                _ = self.watch_readiness(info.clone()) => "readiness watcher stopped".to_string(),
            };
            tracing::warn!(replica = %self.name, "{exit}; replacing it");
            let _ = processes.runtime.start_kill();
            let _ = processes.proxy.start_kill();
            let _ = processes.runtime.wait().await;
            let _ = processes.proxy.wait().await;
            if started.elapsed() >= HEALTHY_RUN {
                backoff = Duration::from_millis(500);
                crashes = 0;
            } else {
                crashes += 1;
            }
            last_exit = Some(match &self.log_dir {
                Some(dir) => format!(
                    "{exit} (log: {})",
                    dir.join(format!("{}.runtime.log", self.name)).display()
                ),
                None => exit,
            });
            // While it waits to be replaced it is there, not ready, and says why: like a
            // pod in CrashLoopBackOff.
            self.publish(Some(ReplicaInfo {
                ready: false,
                runtime_pid: None,
                proxy_pid: None,
                crashes,
                last_exit: last_exit.clone(),
                ..info
            }));
            if wait_or_stop(backoff, &mut stop).await {
                return;
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Polls the queue-proxy's `/healthz` and publishes readiness changes; never returns.
    async fn watch_readiness(&self, mut info: ReplicaInfo) {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let Ok(url) = format!("http://{}/healthz", info.admin).parse::<http::Uri>() else {
            return std::future::pending().await;
        };
        loop {
            let ready = matches!(
                tokio::time::timeout(Duration::from_secs(1), client.get(url.clone())).await,
                Ok(Ok(response)) if response.status().is_success()
            );
            if ready != info.ready {
                info.ready = ready;
                tracing::info!(replica = %info.name, ready, "replica readiness changed");
                self.publish(Some(info.clone()));
            }
            tokio::time::sleep(READINESS_POLL).await;
        }
    }
}

fn describe(status: std::io::Result<std::process::ExitStatus>) -> String {
    match status {
        Ok(status) => status.to_string(),
        Err(e) => e.to_string(),
    }
}

/// Sleeps `delay`; true when `stop` fired first.
async fn wait_or_stop(delay: Duration, stop: &mut oneshot::Receiver<()>) -> bool {
    tokio::select! {
        _ = stop => true,
        _ = tokio::time::sleep(delay) => false,
    }
}

fn terminate(child: &Child) {
    if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
}

/// Stops a replica the way the kubelet stops a pod: SIGTERM to the queue-proxy, which
/// finishes what is in flight, then to the runtime; SIGKILL for whatever overstays.
async fn drain(mut processes: Processes) {
    for child in [&mut processes.proxy, &mut processes.runtime] {
        terminate(child);
        if tokio::time::timeout(DRAIN_LIMIT, child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
        }
    }
}
