//! Per-revision throttling, the heart of the activator (Knative's throttler): every pod has
//! a breaker of `containerConcurrency` slots (unbounded at 0), requests that find no free
//! slot wait in a bounded FIFO line per revision (and a bound over all revisions), the line
//! is served the moment a slot frees or a pod turns healthy, and a lease on a slot is held
//! until the response has been sent. A request that finds no healthy pod pokes the
//! autoscaler.

mod policy;
mod revision;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;

pub(crate) use revision::{Lease, PodHandle, RevisionThrottle};

/// A revision without a healthy pod pokes the autoscaler at most this often.
const POKE_INTERVAL: Duration = Duration::from_secs(1);

/// What all revisions share: the total bound and where pokes go.
#[derive(Debug)]
pub(crate) struct Shared {
    total_queued: AtomicUsize,
    total_bound: usize,
    default_bound: usize,
    pokes: mpsc::Sender<String>,
}

type Revisions = HashMap<String, Arc<RevisionThrottle>>;

/// Every revision's throttle, created on first use (a request or a pod list). Requests only
/// read the map, without a lock; a new revision copies it.
#[derive(Debug)]
pub(crate) struct Throttler {
    revisions: ArcSwap<Revisions>,
    /// Serialises the copies that add revisions.
    adding: Mutex<()>,
    shared: Arc<Shared>,
}

impl Throttler {
    /// `default_bound` requests may wait per revision (unless it sets its own), `total_bound`
    /// over all; revisions that need a pod are sent on `pokes`.
    pub(crate) fn new(
        default_bound: usize,
        total_bound: usize,
        pokes: mpsc::Sender<String>,
    ) -> Self {
        Self {
            revisions: ArcSwap::default(),
            adding: Mutex::new(()),
            shared: Arc::new(Shared {
                total_queued: AtomicUsize::new(0),
                total_bound,
                default_bound,
                pokes,
            }),
        }
    }

    /// The revision's throttle, created when it is first asked for.
    pub(crate) fn revision(&self, name: &str) -> Arc<RevisionThrottle> {
        if let Some(known) = self.get(name) {
            return known;
        }
        let _adding = self.adding.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(known) = self.get(name) {
            return known;
        }
        let revision = Arc::new(RevisionThrottle::new(name, self.shared.clone()));
        let mut revisions = Revisions::clone(&self.revisions.load());
        revisions.insert(name.to_string(), revision.clone());
        self.revisions.store(Arc::new(revisions));
        revision
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<RevisionThrottle>> {
        self.revisions.load().get(name).cloned()
    }

    pub(crate) fn all(&self) -> Vec<Arc<RevisionThrottle>> {
        self.revisions.load().values().cloned().collect()
    }

    /// Requests held over all revisions.
    pub(crate) fn total_queued(&self) -> usize {
        self.shared.total_queued.load(Ordering::Acquire)
    }
}
