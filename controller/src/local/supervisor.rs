//! Keeps each revision at the replica count it was asked for.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::replica::{QueueProxyCommand, ReplicaInfo, ReplicaSpec, ReplicaTask};

#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error("unknown revision {0:?}")]
    UnknownRevision(String),
}

struct Replica {
    info: watch::Receiver<Option<ReplicaInfo>>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct Revision {
    spec: Option<ReplicaSpec>,
    replicas: Vec<Replica>,
}

/// The process supervisor behind `serval dev`.
pub struct Supervisor {
    queue_proxy: QueueProxyCommand,
    log_dir: Option<PathBuf>,
    revisions: Mutex<HashMap<String, Revision>>,
    changed: Arc<watch::Sender<u64>>,
    next_id: AtomicU64,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("queue_proxy", &self.queue_proxy)
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    /// `queue_proxy` starts the replicas' queue-proxies; with `log_dir`, each process logs to
    /// its own file there instead of this process's output.
    pub fn new(queue_proxy: QueueProxyCommand, log_dir: Option<PathBuf>) -> Arc<Self> {
        Arc::new(Self {
            queue_proxy,
            log_dir,
            revisions: Mutex::new(HashMap::new()),
            changed: Arc::new(watch::channel(0).0),
            next_id: AtomicU64::new(1),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Revision>> {
        self.revisions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sets how new replicas of `spec.revision` start; running replicas keep going.
    pub fn upsert(&self, spec: ReplicaSpec) {
        let revision = spec.revision.clone();
        self.lock().entry(revision).or_default().spec = Some(spec);
    }

    /// Bumps whenever a replica starts, stops, dies or changes readiness.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Replicas of `revision` that exist now, ready or not.
    pub fn replicas(&self, revision: &str) -> Vec<ReplicaInfo> {
        self.lock()
            .get(revision)
            .map(|r| {
                r.replicas
                    .iter()
                    .filter_map(|replica| replica.info.borrow().clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Replicas whose runtime is ready to serve.
    pub fn ready(&self, revision: &str) -> Vec<ReplicaInfo> {
        self.replicas(revision)
            .into_iter()
            .filter(|r| r.ready)
            .collect()
    }

    /// Starts or drains replicas until `revision` has `desired`. Scaling down returns once
    /// the removed replicas have drained and exited.
    pub async fn scale(&self, revision: &str, desired: usize) -> Result<(), SupervisorError> {
        let removed: Vec<Replica> = {
            let mut revisions = self.lock();
            let unknown = || SupervisorError::UnknownRevision(revision.to_string());
            let entry = revisions.get_mut(revision).ok_or_else(unknown)?;
            let spec = entry.spec.clone().ok_or_else(unknown)?;
            while entry.replicas.len() < desired {
                entry.replicas.push(self.launch(spec.clone()));
            }
            let keep = desired.min(entry.replicas.len());
            entry.replicas.drain(keep..).collect()
        };
        if !removed.is_empty() {
            tracing::info!(%revision, desired, removing = removed.len(), "draining replicas");
        }
        for replica in removed {
            let _ = replica.stop.send(());
            let _ = replica.task.await;
        }
        Ok(())
    }

    fn launch(&self, spec: ReplicaSpec) -> Replica {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let name = format!("{}-{id}", spec.revision.replace('/', "-"));
        let (info_tx, info) = watch::channel(None);
        let (stop, stop_rx) = oneshot::channel();
        let task = ReplicaTask {
            queue_proxy: self.queue_proxy.clone(),
            log_dir: self.log_dir.clone(),
            spec,
            name,
            info: info_tx,
            changed: self.changed.clone(),
        };
        Replica {
            info,
            stop,
            task: tokio::spawn(task.run(stop_rx)),
        }
    }

    /// Stops every replica of every revision, draining each.
    pub async fn shutdown(&self) {
        let names: Vec<String> = self.lock().keys().cloned().collect();
        let drains = names.iter().map(|name| self.scale(name, 0));
        for result in futures_util::future::join_all(drains).await {
            if let Err(e) = result {
                tracing::warn!(error = %e, "stopping replicas");
            }
        }
    }

    /// Forgets a revision after stopping its replicas.
    pub async fn remove(&self, revision: &str) {
        let _ = self.scale(revision, 0).await;
        self.lock().remove(revision);
    }
}
