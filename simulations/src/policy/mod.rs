//! Scaling policies. Each sees what the live autoscaler would see at every 1 s tick (the
//! replicas' and the activator's reports) and answers with a replica count; a poke (a
//! request held with no free replica) lets it answer at once. `kpa` and `serval` run the
//! real [`serval_autoscaler::Decider`] (Knative's class and Serval's); the others are the
//! baselines of the serverless literature.

mod decider;
mod hybrid;
mod keepalive;

use std::str::FromStr;
use std::time::Instant;

use serval_api::Stat;

pub use decider::DeciderPolicy;
pub use hybrid::Hybrid;
pub use keepalive::KeepAlive;

use crate::engine::SimConfig;
use crate::trace::Request;

/// What a policy sees at a tick (or, with no reports, at a poke).
#[derive(Debug, Clone)]
pub struct Observation<'a> {
    /// Seconds from the start of the trace.
    pub now: f64,
    /// The ready replicas' reports for the window that just ended; empty at a poke.
    pub stats: &'a [Stat],
    /// The activator's report (requests it held), when it held any.
    pub activator: Option<&'a Stat>,
    /// Replicas ready, draining ones included.
    pub ready: u32,
    pub starting: u32,
    /// Replicas serving or starting: what the last actuation asked for.
    pub current: u32,
    /// Requests the activator holds now.
    pub queued: u32,
    pub in_flight: u32,
    /// The most requests in flight or held at once during the window.
    pub peak_demand: u32,
    /// Requests that arrived during the window.
    pub arrivals: u32,
    /// When the latest request arrived.
    pub last_arrival: Option<f64>,
    /// containerConcurrency.
    pub concurrency: u32,
}

impl Observation<'_> {
    /// Replicas the requests in flight or held need right now.
    pub fn needed_now(&self) -> u32 {
        (self.in_flight + self.queued).div_ceil(self.concurrency.max(1))
    }
}

/// A scaling policy driven by the simulator.
pub trait Policy {
    /// The replica count wanted after the tick at `observation.now`.
    fn tick(&mut self, observation: &Observation<'_>) -> u32;
    /// A request was held because no ready replica had a free slot.
    fn poke(&mut self, observation: &Observation<'_>) -> u32;
    /// With no replicas and nothing held: until when the policy, fed nothing, keeps
    /// answering zero without changing its state (so the simulator may skip those ticks).
    fn quiet_until(&self, _now: f64) -> Option<f64> {
        None
    }
    /// Replicas already warm when the trace starts.
    fn initial_ready(&self) -> u32 {
        0
    }
}

/// The policies `serval simulate` compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    /// Knative's KPA with its defaults (the decider on concurrency).
    Kpa,
    /// Serval's autoscaler class at its default cold-start budget: keep-alive, pre-warm,
    /// target and scale-down delay learned per service; tokens beside concurrency for LLM
    /// traces.
    Serval,
    /// One replica per concurrency slot, kept 10 minutes after its last use.
    Keepalive,
    /// "Serverless in the Wild": histogram of idle times, pre-warm and keep-alive windows.
    Hybrid,
    /// Always on at the peak replica count.
    Peak,
}

impl PolicyKind {
    pub const ALL: [PolicyKind; 5] = [
        Self::Kpa,
        Self::Serval,
        Self::Keepalive,
        Self::Hybrid,
        Self::Peak,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Kpa => "kpa",
            Self::Serval => "serval",
            Self::Keepalive => "keepalive",
            Self::Hybrid => "hybrid",
            Self::Peak => "peak",
        }
    }
}

impl FromStr for PolicyKind {
    type Err = String;
    fn from_str(name: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == name.trim())
            .ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|k| k.as_str()).collect();
                format!(
                    "unknown policy {name:?}: expected one of {}",
                    known.join(", ")
                )
            })
    }
}

/// What a policy may know about the service before the run.
#[derive(Debug, Clone, Copy)]
pub struct PolicyContext {
    /// The simulated clock's origin (the decider takes `Instant`s).
    pub base: Instant,
    pub config: SimConfig,
    /// Whether requests carry output tokens (the tokens metric applies).
    pub llm: bool,
    /// Output tokens per second one sequence decodes, for the tokens target.
    pub decode_tps: f64,
    /// Prompt tokens per second one sequence prefills, for the cost of a prompt token.
    pub prefill_tps: f64,
    /// The cold-start budget `serval` runs with; `None`, the class's default, states none.
    pub cold_start_budget: Option<f64>,
}

/// Builds `kind` for one service's `requests`.
pub fn build(kind: PolicyKind, requests: &[Request], context: &PolicyContext) -> Box<dyn Policy> {
    match kind {
        PolicyKind::Kpa => Box::new(DeciderPolicy::kpa(context)),
        PolicyKind::Serval => Box::new(DeciderPolicy::serval(context, context.cold_start_budget)),
        PolicyKind::Keepalive => Box::new(KeepAlive::new(KEEP_ALIVE_S)),
        PolicyKind::Hybrid => Box::new(Hybrid::new()),
        PolicyKind::Peak => Box::new(Peak(peak_replicas(requests, context.config.concurrency))),
    }
}

/// Cloud functions' usual idle keep-alive.
pub const KEEP_ALIVE_S: f64 = 600.0;

/// Always `.0` replicas: the most requests ever in service at once with no waiting,
/// divided by the concurrency limit, rounded up.
#[derive(Debug, Clone, Copy)]
pub struct Peak(pub u32);

impl Policy for Peak {
    fn tick(&mut self, _: &Observation<'_>) -> u32 {
        self.0
    }
    fn poke(&mut self, _: &Observation<'_>) -> u32 {
        self.0
    }
    fn initial_ready(&self) -> u32 {
        self.0
    }
}

/// The peak replica count of `requests` served without waiting.
pub fn peak_replicas(requests: &[Request], concurrency: u32) -> u32 {
    let mut edges: Vec<(f64, i32)> = requests
        .iter()
        .flat_map(|r| [(r.at, 1), (r.at + r.service_s, -1)])
        .collect();
    // Ends before starts at the same instant.
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let (mut now, mut most) = (0i64, 0i64);
    for (_, delta) in edges {
        now += i64::from(delta);
        most = most.max(now);
    }
    (most as u32).div_ceil(concurrency.max(1)).max(1)
}
