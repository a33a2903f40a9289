//! One revision's pods (each a breaker with its in-flight count and health) and its line of
//! waiting requests. All state sits behind one lock that is never held across an await;
//! leases are handed to waiters after it is released.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use http::uri::Authority;
use serval_proxy::window::ConcurrencyWindow;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use super::policy::Policy;
use super::{Shared, POKE_INTERVAL};
use crate::endpoints::PodEndpoint;
use crate::error::ActivatorError;
use crate::rng::Rng;
use crate::routes::RevisionSettings;

#[derive(Debug)]
struct Pod {
    id: u64,
    endpoint: Arc<PodEndpoint>,
    /// Where requests go, made once per pod.
    authority: Authority,
    in_flight: usize,
    healthy: bool,
    wake: Arc<Notify>,
}

#[derive(Debug)]
struct State {
    container_concurrency: usize,
    queue_bound: usize,
    pods: Vec<Pod>,
    waiters: VecDeque<oneshot::Sender<Lease>>,
    /// Live waiters (`waiters` may also hold ones that gave up).
    queued: usize,
    next: usize,
    next_id: u64,
    rng: Rng,
    last_poke: Option<Instant>,
    loads: Vec<usize>,
}

/// A new pod for the prober to watch.
#[derive(Debug, Clone)]
pub(crate) struct PodHandle {
    pub(crate) id: u64,
    pub(crate) endpoint: Arc<PodEndpoint>,
    pub(crate) wake: Arc<Notify>,
}

/// One revision's throttle.
#[derive(Debug)]
pub(crate) struct RevisionThrottle {
    name: String,
    shared: Arc<Shared>,
    state: Mutex<State>,
    /// The revision's concurrency for the autoscaler, queueing included.
    pub(crate) stats: ConcurrencyWindow,
    /// Requests that had to wait for a slot since the last report.
    held: AtomicU64,
}

/// A slot on one pod, held until the response has been sent.
#[derive(Debug)]
pub(crate) struct Lease {
    revision: Arc<RevisionThrottle>,
    pod: u64,
    pub(crate) endpoint: Arc<PodEndpoint>,
    pub(crate) authority: Authority,
}

impl Lease {
    /// The pod failed a request: no new requests until it probes healthy again.
    pub(crate) fn mark_unhealthy(&self) {
        self.revision.set_healthy(self.pod, false);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.revision.release(self.pod);
    }
}

/// Counts a request as waiting until it has a lease or gives up.
struct Waiting(Arc<RevisionThrottle>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.lock().queued -= 1;
        self.0.shared.total_queued.fetch_sub(1, Ordering::AcqRel);
    }
}

type Handoff = Vec<(oneshot::Sender<Lease>, Lease)>;

impl RevisionThrottle {
    pub(crate) fn new(name: &str, shared: Arc<Shared>) -> Self {
        let state = State {
            container_concurrency: 0,
            queue_bound: shared.default_bound,
            pods: Vec::new(),
            waiters: VecDeque::new(),
            queued: 0,
            next: 0,
            next_id: 0,
            rng: Rng::per_request(),
            last_poke: None,
            loads: Vec::new(),
        };
        Self {
            name: name.to_string(),
            shared,
            state: Mutex::new(state),
            stats: ConcurrencyWindow::new(Instant::now()),
            held: AtomicU64::new(0),
        }
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot on a pod: at once when one is free and nobody waits, else after waiting in
    /// line until `deadline` (504), or never when the line is full (503).
    pub(crate) async fn acquire(
        self: &Arc<Self>,
        settings: &RevisionSettings,
        deadline: Instant,
    ) -> Result<Lease, ActivatorError> {
        let (waiter, poke, handoff) = {
            let mut st = self.lock();
            st.container_concurrency = settings.container_concurrency;
            st.queue_bound = settings.queue_bound.unwrap_or(self.shared.default_bound);
            if st.queued == 0 {
                if let Some(lease) = self.try_reserve(&mut st) {
                    return Ok(lease);
                }
            }
            let total = self.shared.total_queued.load(Ordering::Acquire);
            if st.queued >= st.queue_bound || total >= self.shared.total_bound {
                return Err(ActivatorError::Overloaded {
                    revision: self.name.clone(),
                    queued: st.queued,
                });
            }
            if st.waiters.len() >= st.queue_bound {
                st.waiters.retain(|w| !w.is_closed());
            }
            let (tx, rx) = oneshot::channel();
            st.waiters.push_back(tx);
            st.queued += 1;
            self.shared.total_queued.fetch_add(1, Ordering::AcqRel);
            self.held.fetch_add(1, Ordering::Relaxed);
            let now = Instant::now();
            let at_zero = !st.pods.iter().any(|p| p.healthy);
            let poke = at_zero
                && st
                    .last_poke
                    .is_none_or(|at| now.saturating_duration_since(at) >= POKE_INTERVAL);
            if poke {
                st.last_poke = Some(now);
            }
            (rx, poke, self.dispatch(&mut st))
        };
        let _waiting = Waiting(self.clone());
        hand_off(handoff);
        if poke {
            // A full channel means the reporter is behind; the next report carries the queue.
            let _ = self.shared.pokes.try_send(self.name.clone());
        }
        match tokio::time::timeout_at(deadline, waiter).await {
            Ok(Ok(lease)) => Ok(lease),
            Ok(Err(_)) => Err(ActivatorError::Upstream {
                revision: self.name.clone(),
                reason: "the revision went away".into(),
            }),
            Err(_) => Err(ActivatorError::Timeout {
                revision: self.name.clone(),
                waited: settings.timeout,
            }),
        }
    }

    fn try_reserve(self: &Arc<Self>, st: &mut State) -> Option<Lease> {
        let capacity = match st.container_concurrency {
            0 => usize::MAX,
            cc => cc,
        };
        let mut loads = std::mem::take(&mut st.loads);
        loads.clear();
        loads.extend(st.pods.iter().filter(|p| p.healthy).map(|p| p.in_flight));
        let policy = Policy::for_concurrency(st.container_concurrency);
        let State { next, rng, .. } = st;
        let chosen = policy.pick(&loads, capacity, next, rng);
        st.loads = loads;
        let pod = st.pods.iter_mut().filter(|p| p.healthy).nth(chosen?)?;
        pod.in_flight += 1;
        Some(Lease {
            revision: self.clone(),
            pod: pod.id,
            endpoint: pod.endpoint.clone(),
            authority: pod.authority.clone(),
        })
    }

    /// Leases for the waiters at the head of the line, while slots are free.
    fn dispatch(self: &Arc<Self>, st: &mut State) -> Handoff {
        let mut handoff = Vec::new();
        while let Some(front) = st.waiters.front() {
            if front.is_closed() {
                st.waiters.pop_front();
                continue;
            }
            let Some(lease) = self.try_reserve(st) else {
                break;
            };
            if let Some(waiter) = st.waiters.pop_front() {
                handoff.push((waiter, lease));
            }
        }
        handoff
    }

    fn release(self: &Arc<Self>, pod: u64) {
        let handoff = {
            let mut st = self.lock();
            if let Some(p) = st.pods.iter_mut().find(|p| p.id == pod) {
                p.in_flight = p.in_flight.saturating_sub(1);
            }
            self.dispatch(&mut st)
        };
        hand_off(handoff);
    }

    /// Replaces the pod list; returns the new pods, which start unhealthy until probed.
    pub(crate) fn set_pods(&self, endpoints: &[PodEndpoint]) -> Vec<PodHandle> {
        let mut st = self.lock();
        st.pods.retain(|p| endpoints.contains(p.endpoint.as_ref()));
        let mut added = Vec::new();
        for endpoint in endpoints {
            if st.pods.iter().any(|p| *p.endpoint == *endpoint) {
                continue;
            }
            st.next_id += 1;
            let handle = PodHandle {
                id: st.next_id,
                endpoint: Arc::new(endpoint.clone()),
                wake: Arc::new(Notify::new()),
            };
            st.pods.push(Pod {
                id: handle.id,
                endpoint: handle.endpoint.clone(),
                authority: serval_proxy::forward::authority(endpoint.address),
                in_flight: 0,
                healthy: false,
                wake: handle.wake.clone(),
            });
            added.push(handle);
        }
        added
    }

    /// Whether the pod is healthy; `None` once it is gone from the endpoints.
    pub(crate) fn pod_health(&self, pod: u64) -> Option<bool> {
        self.lock()
            .pods
            .iter()
            .find(|p| p.id == pod)
            .map(|p| p.healthy)
    }

    /// Records a probe result or a failed request; a pod turning healthy serves the line.
    pub(crate) fn set_healthy(self: &Arc<Self>, pod: u64, healthy: bool) {
        let handoff = {
            let mut st = self.lock();
            let Some(p) = st.pods.iter_mut().find(|p| p.id == pod) else {
                return;
            };
            if p.healthy == healthy {
                return;
            }
            p.healthy = healthy;
            tracing::info!(revision = %self.name, pod = %p.endpoint.name, healthy, "pod health changed");
            if !healthy {
                p.wake.notify_one();
            }
            self.dispatch(&mut st)
        };
        hand_off(handoff);
    }

    /// Requests that had to wait for a slot since this was last called.
    pub(crate) fn take_held(&self) -> u64 {
        self.held.swap(0, Ordering::Relaxed)
    }

    /// Requests waiting for a slot now.
    pub(crate) fn queued(&self) -> usize {
        self.lock().queued
    }

    /// Pods that take requests now.
    pub(crate) fn healthy_pods(&self) -> usize {
        self.lock().pods.iter().filter(|p| p.healthy).count()
    }
}

/// Gives each waiter its lease, outside the lock; a waiter that just gave up drops its
/// lease, which frees the slot for the next one.
fn hand_off(handoff: Handoff) {
    for (waiter, lease) in handoff {
        drop(waiter.send(lease));
    }
}
