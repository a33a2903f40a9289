//! `serval dev`: the whole platform on one machine — the activator on a local port, the
//! autoscaler and the controller's local reconciler in this process, and one queue-proxy +
//! runtime process pair per replica. Editing a manifest rolls out a new revision.

mod held_dir;
mod in_process;
mod logs;
mod manifests;
mod platform;
mod sockets;
mod storage;
mod view;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use serval_activator::{Activator, LocalEndpoints, PodEndpoint, RouteTable};
use serval_autoscaler::live::{Autoscaler, PodTarget, ScaleError, Scaler};
use serval_autoscaler::AutoscalerConfig;
use serval_controller::local::{LocalPlatform, LocalReconciler, QueueProxyCommand, Supervisor};
use serval_storage::ModelCache;

use in_process::InProcessAutoscaler;
use logs::LogDir;
use platform::DevPlatform;
use sockets::SocketsDir;
use view::ServiceRow;

/// Flags of `serval dev`.
#[derive(clap::Args, Debug)]
pub(crate) struct DevArgs {
    /// Where the activator listens for requests.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// A YAML map of `config-autoscaler` keys, e.g. `stable-window: 6s`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Domain of service hosts: `<isvc>.<namespace>.<domain>`.
    #[arg(long, default_value = "example.com")]
    domain: String,
    /// Threads the activator serves connections on; 0 is one per core. One thread proxies
    /// more requests than a workstation's models answer, and it leaves the other cores to
    /// the replicas and their queue-proxies.
    #[arg(long, default_value_t = 1)]
    activator_threads: usize,
    /// Directory for the replicas' logs (default: a directory under the system temp dir).
    #[arg(long)]
    log_dir: Option<PathBuf>,
    /// Where models from remote storage (s3://, gs://, az://, https://, hf://) are kept
    /// between runs [default: ~/.cache/serval/models].
    #[arg(long)]
    model_cache_dir: Option<PathBuf>,
    /// InferenceService and ServingRuntime manifests, or directories of them.
    #[arg(required = true)]
    manifests: Vec<PathBuf>,
}

/// Scales by starting and draining replica processes, without holding up the autoscaler:
/// a drain can take as long as the slowest request.
#[derive(Debug)]
struct ProcessScaler(Arc<Supervisor>);

impl Scaler for ProcessScaler {
    async fn scale(&self, revision: &str, desired: u32) -> Result<(), ScaleError> {
        let supervisor = self.0.clone();
        let name = revision.to_string();
        tokio::spawn(async move {
            if let Err(e) = supervisor.scale(&name, desired as usize).await {
                tracing::warn!(revision = %name, error = %e, "scaling failed");
            }
        });
        Ok(())
    }
}

pub(crate) fn autoscaler_config(path: Option<&PathBuf>) -> anyhow::Result<AutoscalerConfig> {
    let Some(path) = path else {
        return Ok(AutoscalerConfig::default());
    };
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let yaml: BTreeMap<String, serde_yaml::Value> =
        serde_yaml::from_str(&text).with_context(|| {
            format!(
                "{}: expected a map of config-autoscaler keys",
                path.display()
            )
        })?;
    let map: BTreeMap<String, String> = yaml
        .into_iter()
        .map(|(k, v)| {
            let value = match v {
                serde_yaml::Value::String(s) => s,
                other => serde_yaml::to_string(&other)
                    .unwrap_or_default()
                    .trim()
                    .to_string(),
            };
            (k, value)
        })
        .collect();
    AutoscalerConfig::from_map(&map).with_context(|| format!("{}", path.display()))
}

pub(crate) async fn run(args: DevArgs) -> anyhow::Result<()> {
    let config = autoscaler_config(args.config.as_ref())?;
    let serval_bin = std::env::current_exe().context("locating the serval binary")?;
    // Held until `serval dev` ends (the binding lives to the end of `run`), then left for
    // reading.
    let mut _held_log_dir = None;
    let log_dir = match &args.log_dir {
        Some(dir) => dir.clone(),
        None => {
            let held = LogDir::create(&std::env::temp_dir())
                .map_err(|why| anyhow::anyhow!("making the replicas' log directory: {why}"))?;
            let path = held.path().to_path_buf();
            _held_log_dir = Some(held);
            path
        }
    };
    let sockets = SocketsDir::create(&std::env::temp_dir());
    let mut queue_proxy = QueueProxyCommand::beside(&serval_bin);
    if let Some(sockets) = &sockets {
        queue_proxy = queue_proxy.with_local_sockets(sockets.local_sockets());
    }
    let supervisor = Supervisor::new(queue_proxy, Some(log_dir.clone()));
    let autoscaler = Autoscaler::new(config.clone(), ProcessScaler(supervisor.clone()));
    let routes = Arc::new(RouteTable::new(args.domain.clone()));
    let endpoints = Arc::new(LocalEndpoints::new());
    let mut activator_config = serval_activator::Config::new(args.listen);
    activator_config.domain = args.domain.clone();
    activator_config.serve_threads = args.activator_threads;
    activator_config.local_sockets = sockets.as_ref().map(|s| s.path().to_path_buf());
    // Replicas are on loopback: probing a starting one often costs nothing and takes a
    // cold start's last wait from up to 200 ms down to 25 ms.
    activator_config.probe_period = Duration::from_millis(25);
    let activator = Arc::new(
        Activator::start(
            activator_config,
            routes.clone(),
            endpoints.clone(),
            InProcessAutoscaler::new(autoscaler.clone()),
        )
        .map_err(|e| anyhow::anyhow!("starting the activator: {e}"))?,
    );
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;

    let platform = DevPlatform {
        config,
        autoscaler: autoscaler.clone(),
        routes: routes.clone(),
    };
    let mut services = LocalReconciler::new(
        supervisor.clone(),
        platform,
        serval_bin,
        args.listen,
        args.domain.clone(),
    );
    let model_cache = ModelCache::new(
        args.model_cache_dir
            .clone()
            .unwrap_or_else(storage::default_cache_dir),
        None,
    );
    let mut loaded = manifests::load(&args.manifests);
    storage::fetch_remote_models(&mut loaded, &model_cache).await;
    for problem in &loaded.problems {
        eprintln!("{problem}");
    }
    services.load(loaded.manifests, SystemTime::now());
    if services.is_empty() {
        anyhow::bail!("no valid InferenceService to serve in {:?}", args.manifests);
    }
    eprintln!(
        "serval dev: activator on http://{}; replica logs in {}",
        args.listen,
        log_dir.display()
    );

    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(autoscaler.clone().run());
    tasks.spawn(sync_pods(
        supervisor.clone(),
        autoscaler.clone(),
        endpoints.clone(),
        services.revisions(),
    ));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let serve_activator = activator.clone();
    let mut stopped = stop_rx.clone();
    let server = tokio::spawn(async move {
        serve_activator
            .serve(listener, async move {
                let _ = stopped.wait_for(|s| *s).await;
            })
            .await;
    });

    let mut files = manifests::manifest_files(&args.manifests);
    let mut view = view::LiveView::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let shutdown = serval::signal::shutdown();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => {
                let now = manifests::manifest_files(&args.manifests);
                if now != files {
                    files = now;
                    let mut loaded = manifests::load(&args.manifests);
                    storage::fetch_remote_models(&mut loaded, &model_cache).await;
                    for problem in &loaded.problems {
                        eprintln!("{problem}");
                    }
                    services.load(loaded.manifests, SystemTime::now());
                }
                services.reconcile(SystemTime::now());
                view.show(&rows(&services, &autoscaler, &supervisor, &activator, args.listen));
            }
        }
    }
    eprintln!("serval dev: stopping — draining every replica");
    let _ = stop_tx.send(true);
    let _ = server.await;
    tasks.abort_all();
    supervisor.shutdown().await;
    Ok(())
}

/// Keeps the activator's endpoints (every replica, so it can probe new ones itself) and the
/// autoscaler's pods (ready ones) in step with the supervisor.
async fn sync_pods<S: Scaler>(
    supervisor: Arc<Supervisor>,
    autoscaler: Arc<Autoscaler<S>>,
    endpoints: Arc<LocalEndpoints>,
    mut revisions: tokio::sync::watch::Receiver<Vec<String>>,
) {
    let mut changes = supervisor.subscribe();
    let mut known: Vec<String> = Vec::new();
    loop {
        let names = revisions.borrow_and_update().clone();
        for gone in known.iter().filter(|r| !names.contains(r)) {
            endpoints.remove_revision(gone);
        }
        known = names.clone();
        for revision in &names {
            let replicas = supervisor.replicas(revision);
            let pods = replicas
                .iter()
                .map(|r| {
                    PodEndpoint::new(
                        r.name.clone(),
                        r.proxy,
                        format!("http://{}/healthz", r.admin).parse().ok(),
                    )
                })
                .collect();
            endpoints.set_pods(revision, pods);
            let ready = replicas
                .iter()
                .filter(|r| r.ready)
                .map(|r| PodTarget {
                    name: r.name.clone(),
                    stats_url: format!("http://{}/stats", r.admin),
                })
                .collect();
            autoscaler.set_pods(revision, ready);
        }
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return },
            changed = revisions.changed() => if changed.is_err() { return },
        }
    }
}

/// The live view's rows: per service, each revision that takes traffic (and one rolling out).
fn rows<P: LocalPlatform, S: Scaler>(
    services: &LocalReconciler<P>,
    autoscaler: &Autoscaler<S>,
    supervisor: &Supervisor,
    activator: &Activator,
    listen: SocketAddr,
) -> Vec<ServiceRow> {
    let views = autoscaler.views();
    let mut rows = Vec::new();
    for isvc in services.services() {
        let namespace = isvc.metadata.namespace.as_deref().unwrap_or("default");
        let name = isvc.metadata.name.as_deref().unwrap_or_default();
        let url = format!("http://{listen}/serving/{namespace}/{name}/");
        let Some(status) = &isvc.status else { continue };
        for component in status.components.values() {
            let mut shown: Vec<(String, Option<i64>)> = component
                .traffic
                .iter()
                .filter_map(|t| Some((t.revision_name.clone()?, t.percent)))
                .collect();
            if let Some(latest) = &component.latest_created_revision {
                if !shown.iter().any(|(r, _)| r == latest) {
                    shown.push((latest.clone(), None));
                }
            }
            for (revision, percent) in shown {
                let key = format!("{namespace}/{revision}");
                let replicas = supervisor.replicas(&key);
                rows.push(ServiceRow {
                    service: format!("{namespace}/{name}"),
                    url: url.clone(),
                    percent,
                    replicas: replicas.len(),
                    ready: replicas.iter().filter(|r| r.ready).count(),
                    queued: activator.queued(&key),
                    decision: views.iter().find(|v| v.revision == key).cloned(),
                    revision: key,
                });
            }
        }
    }
    rows
}
