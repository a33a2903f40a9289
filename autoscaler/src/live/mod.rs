//! The live autoscaler around the pure decider: it scrapes each revision's queue-proxies
//! every tick, takes the activators' pushed stats and pokes, decides, and actuates through
//! a [`Scaler`]. Only this module reads the clock; the decisions stay pure.

mod http;
mod scaler;
mod scrape;
mod telemetry;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serval_api::Stat;
use tokio::sync::mpsc;

pub use http::router;
pub use scaler::{RecordingScaler, ScaleError, Scaler};
pub use scrape::PodTarget;

use crate::collect::{activator_sample, merge_windows, pod_sample, sample_size};
use crate::metrics::MetricWindows;
use crate::{AutoscalerConfig, Decider, Decision, ScalingSpec};
use scrape::Scraper;
use telemetry::Telemetry;

/// Activator reports older than this are ignored (an activator that went away).
const ACTIVATOR_REPORT_TTL: Duration = Duration::from_secs(3);
/// Pokes waiting to be handled; past this the tick picks the revision up anyway.
const POKE_QUEUE: usize = 1024;

/// One revision's autoscaling state.
struct Revision {
    decider: Decider,
    windows: MetricWindows,
    pods: Vec<PodTarget>,
    activators: HashMap<String, ActivatorReports>,
    /// The metric bucket the last tick recorded into: ticks faster than once a second
    /// record once per bucket.
    recorded_bucket: Option<u64>,
    /// What the last scrape measured, extrapolated to the ready pods, for display.
    observed: Observed,
    last: Option<Decision>,
    actuated: Option<u32>,
}

/// One activator's reports for one revision.
#[derive(Debug)]
struct ActivatorReports {
    /// Windows reported since the last recording tick, merged; each is recorded once.
    unrecorded: Option<Stat>,
    /// Requests it held at its last report, until that report expires.
    queued: u32,
    at: Instant,
}

/// The autoscaler shared by the tick loop, the HTTP API and in-process callers.
pub struct Autoscaler<S> {
    config: AutoscalerConfig,
    scaler: S,
    revisions: Mutex<HashMap<String, Revision>>,
    scraper: Scraper,
    pokes: mpsc::Sender<String>,
    poke_rx: Mutex<Option<mpsc::Receiver<String>>>,
    telemetry: Telemetry,
    rounds: std::sync::atomic::AtomicUsize,
}

impl<S> std::fmt::Debug for Autoscaler<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Autoscaler")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Load a revision's pods reported in the last scrape, summed over its ready pods.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct Observed {
    pub concurrency: f64,
    pub requests_per_second: f64,
    pub tokens_per_second: f64,
    pub prompt_tokens_per_second: f64,
}

impl Observed {
    fn from_sample(stats: &[Stat], ready: u32) -> Self {
        if stats.is_empty() {
            return Self::default();
        }
        let scale = f64::from(ready) / stats.len() as f64;
        let sum = |f: fn(&Stat) -> f64| stats.iter().map(f).sum::<f64>() * scale;
        Self {
            concurrency: sum(|s| s.average_concurrency),
            requests_per_second: sum(Stat::requests_per_second),
            tokens_per_second: sum(Stat::tokens_per_second),
            prompt_tokens_per_second: sum(Stat::prompt_tokens_per_second),
        }
    }
}

/// What `GET /revisions` shows for one revision.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RevisionView {
    pub revision: String,
    pub ready_pods: usize,
    pub desired: Option<u32>,
    pub in_panic: bool,
    pub excess_burst_capacity: i64,
    pub winner: Option<String>,
    pub reason: String,
    pub observed: Observed,
}

impl<S: Scaler> Autoscaler<S> {
    pub fn new(config: AutoscalerConfig, scaler: S) -> Arc<Self> {
        let (pokes, poke_rx) = mpsc::channel(POKE_QUEUE);
        Arc::new(Self {
            config,
            scaler,
            revisions: Mutex::new(HashMap::new()),
            scraper: Scraper::new(),
            pokes,
            poke_rx: Mutex::new(Some(poke_rx)),
            telemetry: Telemetry::new(),
            rounds: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Revision>> {
        self.revisions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts tracking a new revision (or updates the spec of a known one).
    pub fn upsert_revision(&self, revision: &str, spec: ScalingSpec) {
        self.track(revision, spec, None);
    }

    /// Like [`Autoscaler::upsert_revision`] for a revision that already runs at
    /// `current_scale` (after this autoscaler restarted): that count is kept until fresh
    /// stats say otherwise, so missing data never scales it down, to zero least of all.
    pub fn resume_revision(&self, revision: &str, spec: ScalingSpec, current_scale: u32) {
        self.track(revision, spec, Some(current_scale));
    }

    fn track(&self, revision: &str, spec: ScalingSpec, current_scale: Option<u32>) {
        let now = Instant::now();
        let mut revisions = self.lock();
        match revisions.get_mut(revision) {
            Some(known) => {
                known.windows.reconfigure(&spec);
                known.decider.update_spec(spec);
            }
            None => {
                let windows = MetricWindows::new(now, &spec);
                let decider = match current_scale {
                    Some(current) => Decider::resume(spec, now, current),
                    None => Decider::new(spec, now),
                };
                revisions.insert(
                    revision.to_string(),
                    Revision {
                        decider,
                        windows,
                        pods: Vec::new(),
                        activators: HashMap::new(),
                        recorded_bucket: None,
                        observed: Observed::default(),
                        last: None,
                        actuated: current_scale,
                    },
                );
            }
        }
    }

    /// The replica count the revision is set to now, when something other than this
    /// autoscaler may have changed it (`kubectl scale`): the next decision that differs is
    /// applied again, as the HPA does.
    pub fn observe_scale(&self, revision: &str, replicas: u32) {
        if let Some(known) = self.lock().get_mut(revision) {
            known.actuated = Some(replicas);
        }
    }

    pub fn remove_revision(&self, revision: &str) {
        self.lock().remove(revision);
        self.telemetry.forget(revision);
    }

    /// The revision's ready pods, as the controller sees them.
    pub fn set_pods(&self, revision: &str, pods: Vec<PodTarget>) {
        if let Some(known) = self.lock().get_mut(revision) {
            known.pods = pods;
        }
    }

    /// An activator's report for one revision: what it held and proxied over a window, and
    /// how many requests it is holding now.
    pub fn report_from_activator(&self, revision: &str, stat: Stat, queued: u32) -> bool {
        let mut revisions = self.lock();
        let Some(known) = revisions.get_mut(revision) else {
            return false;
        };
        let now = Instant::now();
        let reports = known
            .activators
            .entry(stat.pod_name.clone())
            .or_insert(ActivatorReports {
                unrecorded: None,
                queued,
                at: now,
            });
        reports.unrecorded = Some(match reports.unrecorded.take() {
            Some(earlier) => merge_windows(&earlier, stat),
            None => stat,
        });
        reports.queued = queued;
        reports.at = now;
        true
    }

    /// A request arrived for `revision` and found no pod: decide now, not at the next tick.
    pub fn poke(&self, revision: &str) -> bool {
        if !self.lock().contains_key(revision) {
            return false;
        }
        // A full queue means a tick is already behind; that tick will see the revision.
        let _ = self.pokes.try_send(revision.to_string());
        true
    }

    pub fn views(&self) -> Vec<RevisionView> {
        let revisions = self.lock();
        let mut views: Vec<RevisionView> = revisions
            .iter()
            .map(|(name, r)| RevisionView {
                revision: name.clone(),
                ready_pods: r.pods.len(),
                desired: r.last.as_ref().map(|d| d.desired),
                in_panic: r.last.as_ref().is_some_and(|d| d.in_panic),
                excess_burst_capacity: r.last.as_ref().map_or(-1, |d| d.excess_burst_capacity),
                winner: r
                    .last
                    .as_ref()
                    .and_then(|d| d.winner)
                    .map(|m| m.to_string()),
                reason: r
                    .last
                    .as_ref()
                    .map(|d| d.reason.clone())
                    .unwrap_or_default(),
                observed: r.observed,
            })
            .collect();
        views.sort_by(|a, b| a.revision.cmp(&b.revision));
        views
    }

    /// Prometheus text for `/metrics`.
    pub fn metrics_text(&self) -> String {
        self.telemetry.encode()
    }

    /// Scrapes, decides and actuates one revision; `poked` means a request is waiting.
    async fn tick_revision(&self, revision: &str, poked: bool) {
        let Some((pods, sample_n)) = self.lock().get(revision).map(|r| {
            let n = sample_size(r.pods.len() as u32) as usize;
            (r.pods.clone(), n)
        }) else {
            return;
        };
        let round = self
            .rounds
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stats = if poked {
            Vec::new()
        } else {
            self.scraper.scrape_sample(&pods, sample_n, round).await
        };
        let now = Instant::now();
        let decision = {
            let mut revisions = self.lock();
            let Some(r) = revisions.get_mut(revision) else {
                return;
            };
            let ready = r.pods.len() as u32;
            r.activators
                .retain(|_, a| now.duration_since(a.at) <= ACTIVATOR_REPORT_TTL);
            let mut queued: u32 = r.activators.values().map(|a| a.queued).sum();
            if poked {
                queued = queued.max(1);
            } else {
                r.observed = Observed::from_sample(&stats, ready);
                let bucket = r.windows.bucket_of(now);
                if bucket.is_some() && bucket != r.recorded_bucket {
                    r.recorded_bucket = bucket;
                    if !stats.is_empty() {
                        let cost = r.decider.spec().prompt_token_cost;
                        r.windows.record(now, &pod_sample(&stats, ready, cost));
                    }
                    let reports: Vec<Stat> = r
                        .activators
                        .values_mut()
                        .filter_map(|a| a.unrecorded.take())
                        .collect();
                    let from_activators = activator_sample(&reports);
                    if !from_activators.is_empty() {
                        r.windows.record(now, &from_activators);
                    }
                }
            }
            let decision = r.decider.decide(now, &r.windows, ready, queued);
            if r.last.as_ref().map(|d| (d.desired, d.in_panic))
                != Some((decision.desired, decision.in_panic))
            {
                tracing::info!(%revision, desired = decision.desired, ready, in_panic = decision.in_panic,
                    winner = ?decision.winner, reason = %decision.reason, "scaling decision");
            }
            self.telemetry.record(revision, &decision, ready);
            r.last = Some(decision.clone());
            decision
        };
        let actuated = self.lock().get(revision).and_then(|r| r.actuated);
        if actuated != Some(decision.desired) {
            match self.scaler.scale(revision, decision.desired).await {
                Ok(()) => {
                    if let Some(r) = self.lock().get_mut(revision) {
                        r.actuated = Some(decision.desired);
                    }
                }
                Err(e) => {
                    tracing::warn!(%revision, desired = decision.desired, error = %e, "scaling failed; will retry")
                }
            }
        }
    }

    /// Runs the tick loop and handles pokes until the task is dropped.
    pub async fn run(self: Arc<Self>) {
        let Some(mut pokes) = self
            .poke_rx
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        else {
            tracing::error!("autoscaler loop started twice");
            return;
        };
        let mut ticker = tokio::time::interval(self.config.tick_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    let names: Vec<String> = self.lock().keys().cloned().collect();
                    let ticks = names.iter().map(|name| self.tick_revision(name, false));
                    futures_util::future::join_all(ticks).await;
                }
                Some(revision) = pokes.recv() => self.tick_revision(&revision, true).await,
            }
        }
    }
}
